//! The sim's load balancer target groups (design section 11), persisted beside the
//! instance log as `targets.json` in the sim's folder and read and written under the
//! same cross-process lock, so a daemon killed at any point and the tests watching it
//! see one truth.
//!
//! A target's state is a function of when it was registered or deregistered and the
//! target group's configured delays:
//! - registered: `initial` for `registration_delay`, then `healthy`, or `unhealthy` for
//!   ever when the instance is not running or runs one of the target group's
//!   `unhealthy_images`;
//! - deregistered: `draining` for `deregistration_delay`, then gone (`unused`).
//!
//! Terminating an instance that is still registered or draining is what Phoenix must
//! never do: the sim counts every such terminate in `violations` (kept in the file, so
//! a chaos test reads them after the killed daemon is gone), then drops the targets, as
//! ELBv2 does for a terminated instance.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use phoenix_core::config::SimTargetGroup;
use phoenix_core::model::InstanceState;
use phoenix_core::traffic::{Target, TargetState};
use serde::{Deserialize, Serialize};

use super::world::{World, parse_id};

/// The file, in the sim's folder.
pub(crate) const FILE: &str = "targets.json";

/// One registration of one instance in one target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Registration {
    /// The port registered on.
    pub port: u16,
    /// When it was (last) registered, unix ms.
    pub registered_ms: u64,
    /// When it was deregistered, unix ms; `None` while registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistered_ms: Option<u64>,
}

/// A terminate of an instance that was registered or draining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficViolation {
    /// The instance.
    pub instance_id: String,
    /// The target group it was attached to.
    pub target_group: String,
    /// Its state when it was terminated.
    pub state: TargetState,
    /// When, unix ms.
    pub at_ms: u64,
}

/// Every target group's registrations, by target group and instance id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Targets {
    #[serde(default)]
    pub groups: BTreeMap<String, BTreeMap<String, Registration>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<TrafficViolation>,
}

impl Targets {
    /// Read the file in `dir` (absent: nothing registered anywhere).
    pub fn load(dir: &Path) -> Result<Self, std::io::Error> {
        match fs::read(dir.join(FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// Write the file in `dir` atomically (a temp file, fsynced, renamed over).
    pub fn save(&self, dir: &Path) -> Result<(), std::io::Error> {
        let tmp = dir.join(format!("{FILE}.tmp"));
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(self).expect("targets always serialize"))?;
        file.sync_all()?;
        fs::rename(&tmp, dir.join(FILE))
    }

    /// Register `targets` (id, port) in `tg` at `now_ms`: new ones and draining ones
    /// (registered again); registered ones are left as they are.
    pub fn register(&mut self, tg: &SimTargetGroup, targets: &[(String, u16)], now_ms: u64) {
        let group = self.groups.entry(tg.name.clone()).or_default();
        for (id, port) in targets {
            let live = group
                .get(id)
                .is_some_and(|r| r.deregistered_ms.is_none() && r.port == *port);
            if !live {
                group.insert(
                    id.clone(),
                    Registration {
                        port: *port,
                        registered_ms: now_ms,
                        deregistered_ms: None,
                    },
                );
            }
        }
    }

    /// Deregister `ids` from `tg` at `now_ms` (not registered: nothing happens).
    pub fn deregister(&mut self, tg: &SimTargetGroup, ids: &[String], now_ms: u64) {
        let Some(group) = self.groups.get_mut(&tg.name) else {
            return;
        };
        for id in ids {
            if let Some(r) = group.get_mut(id)
                && r.deregistered_ms.is_none()
            {
                r.deregistered_ms = Some(now_ms);
            }
        }
        self.forget_drained(tg, now_ms);
    }

    /// Drop targets of `tg` whose draining ended.
    fn forget_drained(&mut self, tg: &SimTargetGroup, now_ms: u64) {
        let delay = millis(tg.deregistration_delay);
        if let Some(group) = self.groups.get_mut(&tg.name) {
            group.retain(|_, r| {
                r.deregistered_ms
                    .is_none_or(|d| now_ms < d.saturating_add(delay))
            });
        }
    }

    /// The targets of `tg` at `now_ms`, sorted by id.
    pub fn health(&self, tg: &SimTargetGroup, world: &World, now_ms: u64) -> Vec<Target> {
        let Some(group) = self.groups.get(&tg.name) else {
            return Vec::new();
        };
        let unhealthy: Vec<u32> = tg
            .unhealthy_images
            .iter()
            .filter_map(|i| world.lookup(i))
            .collect();
        group
            .iter()
            .filter_map(|(id, r)| {
                let state = state_of(tg, r, id, world, &unhealthy, now_ms)?;
                Some(Target {
                    id: id.as_str().into(),
                    port: Some(r.port),
                    state,
                })
            })
            .collect()
    }

    /// Record every target of `ids` that is still attached somewhere as a violation,
    /// then drop their registrations (ELBv2 deregisters a terminated instance).
    /// Returns whether anything changed.
    pub fn terminated(
        &mut self,
        groups: &BTreeMap<String, SimTargetGroup>,
        world: &World,
        ids: &[String],
        now_ms: u64,
    ) -> bool {
        let mut changed = false;
        for (name, group) in &mut self.groups {
            for id in ids {
                let Some(r) = group.remove(id) else {
                    continue;
                };
                changed = true;
                let state = groups
                    .get(name)
                    .and_then(|tg| state_of(tg, &r, id, world, &[], now_ms));
                if let Some(state) = state.filter(|s| s.is_attached()) {
                    self.violations.push(TrafficViolation {
                        instance_id: id.clone(),
                        target_group: name.clone(),
                        state,
                        at_ms: now_ms,
                    });
                }
            }
        }
        changed
    }
}

/// The state of one registration at `now_ms`; `None` once draining ended.
fn state_of(
    tg: &SimTargetGroup,
    r: &Registration,
    id: &str,
    world: &World,
    unhealthy_images: &[u32],
    now_ms: u64,
) -> Option<TargetState> {
    if let Some(d) = r.deregistered_ms {
        return (now_ms < d.saturating_add(millis(tg.deregistration_delay)))
            .then_some(TargetState::Draining);
    }
    if now_ms
        < r.registered_ms
            .saturating_add(millis(tg.registration_delay))
    {
        return Some(TargetState::Initial);
    }
    let healthy = parse_id(id)
        .and_then(|n| world.get(n))
        .is_some_and(|entry| {
            World::state(&entry.slot, now_ms) == InstanceState::Running
                && !unhealthy_images.contains(&entry.slot.image)
        });
    Some(if healthy {
        TargetState::Healthy
    } else {
        TargetState::Unhealthy
    })
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tg() -> SimTargetGroup {
        SimTargetGroup {
            registration_delay: Duration::from_secs(5),
            deregistration_delay: Duration::from_secs(10),
            ..SimTargetGroup::named("web")
        }
    }

    #[test]
    fn registration_and_draining_follow_the_delays() {
        let (tg, world) = (tg(), World::default());
        let mut t = Targets::default();
        t.register(&tg, &[("i-00000000000000001".into(), 80)], 1_000);
        let state = |t: &Targets, at| t.health(&tg, &world, at).first().map(|x| x.state);
        assert_eq!(state(&t, 1_000), Some(TargetState::Initial));
        // Not a live instance of this (empty) world: unhealthy once out of `initial`.
        assert_eq!(state(&t, 6_000), Some(TargetState::Unhealthy));
        t.deregister(&tg, &["i-00000000000000001".into()], 7_000);
        assert_eq!(state(&t, 16_999), Some(TargetState::Draining));
        assert_eq!(state(&t, 17_000), None, "gone once drained");
        // Registered again while draining: initial again.
        t.register(&tg, &[("i-00000000000000001".into(), 80)], 8_000);
        assert_eq!(state(&t, 8_000), Some(TargetState::Initial));
    }

    #[test]
    fn terminating_an_attached_instance_is_a_violation() {
        let (tg, world) = (tg(), World::default());
        let groups: BTreeMap<String, SimTargetGroup> = [(tg.name.clone(), tg.clone())].into();
        let mut t = Targets::default();
        t.register(&tg, &[("i-1".into(), 80), ("i-2".into(), 80)], 0);
        t.deregister(&tg, &["i-2".into()], 0);
        assert!(t.terminated(&groups, &world, &["i-2".into()], 20_000));
        assert!(t.violations.is_empty(), "drained before it was terminated");
        assert!(t.terminated(&groups, &world, &["i-1".into()], 20_000));
        assert_eq!(t.violations.len(), 1);
        assert_eq!(t.violations[0].instance_id, "i-1");
        assert!(t.health(&tg, &world, 20_000).is_empty());
    }
}
