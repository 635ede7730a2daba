//! Change windows in the executor (design section 14): a replacement plan that is already
//! running stops at its next launch while its group is blocked, and waits there; the
//! group keeps what it has, which the plan's own order already keeps at or above its
//! floor. Capacity healing goes on: a launch is held only when a step still ahead of it
//! terminates an instance that is healthy now, which is what replacing (not healing)
//! means. A launch whose intent is already written (in flight) always completes, and
//! rollbacks never launch.
//!
//! The evaluation itself is `phoenix_core::window`; this module holds the compiled
//! windows and the operator's override the loop hands over, and the decision.

use std::time::{Duration, SystemTime};

use phoenix_core::model::{InstanceHealth, InstanceState};
use phoenix_core::plan::Step;
use phoenix_core::window::{WindowConfig, Windows};
use phoenix_store::{StepRecord, StepStatus};

use super::doc::StepDetail;
use super::fleet::Fleet;
use super::health::Verdict;

/// Longest wait before a held launch is looked at again (a window may be lifted).
const RECHECK: Duration = Duration::from_secs(60);

/// The windows the executor obeys, and the override lifting them.
#[derive(Debug, Clone, Default)]
pub struct WindowGate {
    windows: Windows,
    lifted_until: Option<SystemTime>,
}

impl WindowGate {
    /// Compile `reconcile.windows` (a validated config always compiles; otherwise every
    /// group counts as blocked).
    pub fn new(configs: &[WindowConfig]) -> Self {
        Self {
            windows: Windows::compile_or_closed(configs),
            lifted_until: None,
        }
    }

    /// Whether there is no window, so nothing is ever held.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Lift every window until `until` (`None`: no override).
    pub fn set_override(&mut self, until: Option<SystemTime>) {
        self.lifted_until = until;
    }

    /// How long the launch at step `index` of a plan with these `steps` must wait, if its group is blocked
    /// and a later step replaces a healthy instance.
    pub(super) fn hold_launch(
        &self,
        group: &str,
        steps: &[StepRecord],
        index: u32,
        fleet: &Fleet,
        now: SystemTime,
    ) -> Option<Duration> {
        if self.windows.is_empty() {
            return None;
        }
        let state = self.windows.state(group, now, self.lifted_until);
        if !state.blocked || !replaces_healthy(steps, index, fleet) {
            return None;
        }
        let wait = state
            .until
            .and_then(|u| u.duration_since(now).ok())
            .unwrap_or(RECHECK);
        Some(wait.clamp(Duration::from_secs(1), RECHECK))
    }
}

/// Whether a step after `index` that has not run yet terminates an instance that is
/// running and healthy now.
fn replaces_healthy(steps: &[StepRecord], index: u32, fleet: &Fleet) -> bool {
    steps
        .iter()
        .filter(|s| s.index > index && s.status == StepStatus::Pending)
        .filter_map(|s| serde_json::from_value::<StepDetail>(s.detail.clone()).ok())
        .filter_map(|d| match d.step {
            Some(Step::Terminate { instance_ids }) => Some(instance_ids),
            _ => None,
        })
        .flatten()
        .any(|id| {
            let observed = fleet.observed(&id);
            fleet.get(&id).is_some_and(|i| {
                i.state == InstanceState::Running
                    && match observed {
                        Some(verdict) => verdict == Verdict::Healthy,
                        None => i.health == InstanceHealth::Healthy,
                    }
            })
        })
}
