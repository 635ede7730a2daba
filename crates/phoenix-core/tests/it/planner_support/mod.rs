//! Builders shared by the drift and planner tests: groups from YAML snippets,
//! instances with a fluent builder, and a one-provider pass runner.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use phoenix_core::config::ReconcileConfig;
use phoenix_core::model::{Instance, InstanceHealth, InstanceState, Inventory};
use phoenix_core::plan::{self, FailedGeneration, PlanInput, PlanMemory, PlanOutcome};
use phoenix_core::spec::ParsedGroup;
use phoenix_core::{Text, parse_group, tags};

/// The owner every test daemon runs as.
pub const OWNER: &str = "acme";
/// The one provider most tests use.
pub const PROVIDER: &str = "aws";
/// The revision most tests plan.
pub const REVISION: &str = "c0ffee";

/// A fixed "now": 2025-01-01T00:00:00Z.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600)
}

/// A group named `name` with `replicas`, the standard template, and extra `spec`
/// lines (YAML, two-space indented under `spec:`), e.g. `"  rollout: {maxSurge: 2}"`.
pub fn group(name: &str, replicas: u32, extra: &str) -> ParsedGroup {
    group_with_image(name, replicas, "ami-new", extra)
}

/// Like [`group`] with another image (so another hash).
pub fn group_with_image(name: &str, replicas: u32, image: &str, extra: &str) -> ParsedGroup {
    let yaml = format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  provider: {PROVIDER}\n  replicas: {replicas}\n  template:\n    image: {image}\n    instanceType: t3.micro\n    subnetIds: [subnet-a, subnet-b]\n    securityGroupIds: [sg-1, sg-2]\n{extra}\n"
    );
    parse_group(&yaml).unwrap_or_else(|e| panic!("test group does not parse: {e}\n{yaml}"))
}

/// An instance builder. Defaults: ours, running, healthy, launched an hour ago,
/// matching the standard template.
#[derive(Debug, Clone)]
pub struct I(pub Instance);

/// An instance of `group` at `hash` (use `&g.hash.to_string()` for current).
pub fn inst(id: &str, group: &str, hash: &str) -> I {
    let mut tags = BTreeMap::new();
    tags.insert(tags::OWNER.to_owned(), OWNER.to_owned());
    tags.insert(tags::GROUP.to_owned(), group.to_owned());
    tags.insert(tags::SPEC_HASH.to_owned(), hash.to_owned());
    tags.insert(tags::COMMIT.to_owned(), "old".to_owned());
    I(Instance {
        id: id.into(),
        state: InstanceState::Running,
        health: InstanceHealth::Healthy,
        image: "ami-new".into(),
        instance_type: "t3.micro".into(),
        subnet_id: Some("subnet-a".into()),
        security_group_ids: ["sg-1", "sg-2"].into_iter().map(Text::from).collect(),
        launch_time: Some(now() - Duration::from_secs(3600)),
        private_ip: Some(std::net::Ipv4Addr::new(10, 0, 0, 1)),
        tags: tags.into(),
    })
}

/// A current, healthy instance of `g`.
pub fn cur(id: &str, g: &ParsedGroup) -> I {
    inst(id, g.group.name().as_str(), &g.hash.to_string())
}

/// A healthy instance of `g`'s group from an older generation.
pub fn old(id: &str, g: &ParsedGroup) -> I {
    let previous = group_with_image(g.group.name().as_str(), 1, "ami-old", "");
    inst(id, g.group.name().as_str(), &previous.hash.to_string()).image("ami-old")
}

impl I {
    pub fn health(mut self, h: InstanceHealth) -> Self {
        self.0.health = h;
        self
    }
    pub fn state(mut self, s: InstanceState) -> Self {
        self.0.state = s;
        self
    }
    /// Launched `secs` seconds before [`now`].
    pub fn age(mut self, secs: u64) -> Self {
        self.0.launch_time = Some(now() - Duration::from_secs(secs));
        self
    }
    pub fn image(mut self, image: &str) -> Self {
        self.0.image = image.into();
        self
    }
    pub fn itype(mut self, t: &str) -> Self {
        self.0.instance_type = t.into();
        self
    }
    pub fn subnet(mut self, s: Option<&str>) -> Self {
        self.0.subnet_id = s.map(Text::from);
        self
    }
    pub fn sgs(mut self, sgs: &[&str]) -> Self {
        self.0.security_group_ids = sgs.iter().map(|s| Text::from(*s)).collect();
        self
    }
    pub fn tag(mut self, k: &str, v: Option<&str>) -> Self {
        match v {
            Some(v) => self.0.tags.insert(k, v),
            None => self.0.tags.remove(k),
        };
        self
    }
}

/// A complete inventory of [`PROVIDER`].
pub fn inventory(instances: Vec<I>) -> Inventory {
    Inventory {
        provider: PROVIDER.to_owned(),
        complete: true,
        collected_at: now(),
        instances: instances.into_iter().map(|i| i.0).collect(),
        error: None,
    }
}

/// A config with generous caps, so that only the test's subject limits the plan.
pub fn open_config() -> ReconcileConfig {
    ReconcileConfig {
        max_replacements: 1000,
        max_replacement_fraction: 1.0,
        prune: true,
        ..ReconcileConfig::default()
    }
}

/// The knobs a case may turn besides desired and observed state.
#[derive(Debug, Clone)]
pub struct Pass {
    pub config: ReconcileConfig,
    pub memory: PlanMemory,
    pub failed: Vec<FailedGeneration>,
    pub revision: String,
    /// `policy.images` verdicts (default: no policy).
    pub images: phoenix_core::policy::ImageVerdicts,
    /// Target groups read this pass (default: none).
    pub traffic: phoenix_core::traffic::TrafficView,
}

impl Default for Pass {
    fn default() -> Self {
        Self {
            config: open_config(),
            memory: PlanMemory::default(),
            failed: Vec::new(),
            revision: REVISION.to_owned(),
            images: phoenix_core::policy::ImageVerdicts::default(),
            traffic: phoenix_core::traffic::TrafficView::new(),
        }
    }
}

/// The planner's input for one pass.
pub fn input<'a>(
    pass: &'a Pass,
    desired: &'a [ParsedGroup],
    observed: &'a [Inventory],
) -> PlanInput<'a> {
    PlanInput {
        revision: &pass.revision,
        owner: OWNER,
        groups: desired,
        inventories: observed,
        config: &pass.config,
        memory: &pass.memory,
        failed: &pass.failed,
        images: &pass.images,
        traffic: &pass.traffic,
        now: now(),
    }
}

/// Run one planning pass.
pub fn run(pass: &Pass, desired: &[ParsedGroup], observed: &[Inventory]) -> PlanOutcome {
    plan::plan(&input(pass, desired, observed)).expect("test input is consistent")
}
