//! The traffic model (design section 11): what a load balancer says about the targets of
//! one target group, in provider-neutral terms, and the questions the planner, the
//! executor and the status API ask of it ("is this instance in service in every target
//! group of its group?", "is it still registered or draining?").
//!
//! Providers (in `phoenix-cloud`) fill a [`TargetGroupHealth`] from one
//! DescribeTargetHealth call per target group; the daemon gathers them in a
//! [`TrafficView`] per pass. A target group whose read failed is `complete: false`:
//! nothing is declared `unregistered` from it, and none of its targets counts as in
//! service (so no step that needs the healthy floor goes ahead on it).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::text::Text;

/// The state of one target in one target group, as ELBv2 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Registered, health checks not passed yet.
    Initial,
    /// Registered and passing health checks: in service.
    Healthy,
    /// Registered and failing health checks.
    Unhealthy,
    /// Deregistered, connections draining.
    Draining,
    /// Not registered (or deregistration finished).
    Unused,
    /// Registered, but the load balancer cannot check it (e.g. its zone is disabled).
    Unavailable,
}

impl TargetState {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Initial => "initial",
            TargetState::Healthy => "healthy",
            TargetState::Unhealthy => "unhealthy",
            TargetState::Draining => "draining",
            TargetState::Unused => "unused",
            TargetState::Unavailable => "unavailable",
        }
    }

    /// Parse an ELBv2 `TargetHealth.State` value (`unhealthy.draining` and other
    /// unknown values read as their nearest state: anything unknown is `unavailable`,
    /// which counts as registered and not in service, the safe reading).
    pub fn from_elb(text: &str) -> Self {
        match text {
            "initial" => TargetState::Initial,
            "healthy" => TargetState::Healthy,
            "unhealthy" => TargetState::Unhealthy,
            "draining" | "unhealthy.draining" => TargetState::Draining,
            "unused" => TargetState::Unused,
            _ => TargetState::Unavailable,
        }
    }

    /// Registered and not leaving: initial, healthy, unhealthy or unavailable.
    pub fn is_registered(self) -> bool {
        !matches!(self, TargetState::Draining | TargetState::Unused)
    }

    /// Still attached to the load balancer in any way (registered or draining): an
    /// instance in this state is never terminated.
    pub fn is_attached(self) -> bool {
        self != TargetState::Unused
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One target of a target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The instance id.
    pub id: Text,
    /// The port it is registered on, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Its state.
    pub state: TargetState,
}

/// One target group's targets, as one read saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroupHealth {
    /// The provider's config name.
    pub provider: String,
    /// The target group (ARN, or the sim's name).
    pub target_group: String,
    /// Whether the read succeeded. An incomplete read lists nothing.
    pub complete: bool,
    /// Every target listed (registered or draining), sorted by id.
    pub targets: Vec<Target>,
    /// Why the read failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TargetGroupHealth {
    /// A complete read of `targets` (sorted here).
    pub fn complete(provider: &str, target_group: &str, mut targets: Vec<Target>) -> Self {
        targets.sort_by(|a, b| a.id.cmp(&b.id));
        Self {
            provider: provider.to_string(),
            target_group: target_group.to_string(),
            complete: true,
            targets,
            error: None,
        }
    }

    /// A failed read.
    pub fn failed(provider: &str, target_group: &str, error: String) -> Self {
        Self {
            provider: provider.to_string(),
            target_group: target_group.to_string(),
            complete: false,
            targets: Vec::new(),
            error: Some(error),
        }
    }

    /// The state of one instance: `Unused` when it is not listed; `None` when the read
    /// was incomplete (nothing is known).
    pub fn state_of(&self, id: &str) -> Option<TargetState> {
        if !self.complete {
            return None;
        }
        Some(
            self.targets
                .binary_search_by(|t| t.id.as_str().cmp(id))
                .map(|i| self.targets[i].state)
                .unwrap_or(TargetState::Unused),
        )
    }
}

/// Every target group read in one pass, by provider and target group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficView {
    groups: BTreeMap<(String, String), TargetGroupHealth>,
    /// Which target groups each (provider, group) serves, as the reads were asked for.
    named: BTreeMap<(String, String), Vec<String>>,
}

/// The view of a pass that read no target group (no group has `spec.traffic`).
pub static NO_TRAFFIC: TrafficView = TrafficView {
    groups: BTreeMap::new(),
    named: BTreeMap::new(),
};

/// How one instance stands in all the target groups of its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// `healthy` in every target group.
    InService,
    /// Known, and not `healthy` in at least one.
    OutOfService,
    /// A target group's read is missing or incomplete.
    Unknown,
}

impl TrafficView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) one target group's read.
    pub fn insert(&mut self, health: TargetGroupHealth) {
        self.groups.insert(
            (health.provider.clone(), health.target_group.clone()),
            health,
        );
    }

    /// Remember that `group` on `provider` serves `target_groups` (the status API shows
    /// each of its instances' state in them).
    pub fn name_group(&mut self, provider: &str, group: &str, target_groups: Vec<String>) {
        self.named
            .insert((provider.to_string(), group.to_string()), target_groups);
    }

    /// The target groups `group` on `provider` serves (empty: none named).
    pub fn target_groups_of(&self, provider: &str, group: &str) -> &[String] {
        if self.named.is_empty() {
            return &[];
        }
        self.named
            .get(&(provider.to_string(), group.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// One target group's read.
    pub fn get(&self, provider: &str, target_group: &str) -> Option<&TargetGroupHealth> {
        // A tuple of owned strings cannot be looked up by borrowed parts; the map is
        // small (one entry per target group in use), so a range scan over the provider
        // would cost as much as this.
        self.groups
            .iter()
            .find(|((p, t), _)| p == provider && t == target_group)
            .map(|(_, h)| h)
    }

    /// Every read, by provider and target group.
    pub fn iter(&self) -> impl Iterator<Item = &TargetGroupHealth> {
        self.groups.values()
    }

    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The state of `id` in each of `target_groups` (`None`: not known).
    pub fn states(
        &self,
        provider: &str,
        target_groups: &[String],
        id: &str,
    ) -> Vec<(String, Option<TargetState>)> {
        target_groups
            .iter()
            .map(|tg| {
                let state = self.get(provider, tg).and_then(|h| h.state_of(id));
                (tg.clone(), state)
            })
            .collect()
    }

    /// Whether `id` is in service in every one of `target_groups`.
    pub fn serving(&self, provider: &str, target_groups: &[String], id: &str) -> Serving {
        let mut out = Serving::InService;
        for tg in target_groups {
            match self.get(provider, tg).and_then(|h| h.state_of(id)) {
                None => return Serving::Unknown,
                Some(TargetState::Healthy) => {}
                Some(_) => out = Serving::OutOfService,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, state: TargetState) -> Target {
        Target {
            id: id.into(),
            port: Some(80),
            state,
        }
    }

    #[test]
    fn states_of_listed_unlisted_and_unknown_targets() {
        let mut view = TrafficView::new();
        view.insert(TargetGroupHealth::complete(
            "aws",
            "tg-a",
            vec![
                target("i-2", TargetState::Draining),
                target("i-1", TargetState::Healthy),
            ],
        ));
        view.insert(TargetGroupHealth::complete(
            "aws",
            "tg-b",
            vec![target("i-1", TargetState::Healthy)],
        ));
        view.insert(TargetGroupHealth::failed("aws", "tg-c", "throttled".into()));
        let ab = ["tg-a".to_string(), "tg-b".to_string()];
        assert_eq!(view.serving("aws", &ab, "i-1"), Serving::InService);
        assert_eq!(view.serving("aws", &ab, "i-2"), Serving::OutOfService);
        assert_eq!(view.serving("aws", &ab, "i-3"), Serving::OutOfService);
        assert_eq!(
            view.serving("aws", &["tg-a".into(), "tg-c".into()], "i-1"),
            Serving::Unknown
        );
        assert_eq!(
            view.serving("other", &["tg-a".into()], "i-1"),
            Serving::Unknown,
            "a target group never read is unknown"
        );
        let a = view.get("aws", "tg-a").expect("read");
        assert_eq!(a.state_of("i-2"), Some(TargetState::Draining));
        assert_eq!(a.state_of("i-9"), Some(TargetState::Unused));
        assert!(TargetState::Draining.is_attached() && !TargetState::Draining.is_registered());
        assert!(!TargetState::Unused.is_attached());
        assert_eq!(
            TargetState::from_elb("unhealthy.draining"),
            TargetState::Draining
        );
        assert_eq!(TargetState::from_elb("new"), TargetState::Unavailable);
    }
}
