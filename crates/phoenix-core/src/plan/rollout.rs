//! Phase 3 of a pass: each group that wants steps, most urgent first, gets its share of
//! the budget and the steps of its rollout (`rollout_steps` simulates it), held or
//! waiting for approval as [`super::holds`] says.

use std::collections::VecDeque;

use super::budget::Ledger;
use super::groups::Pending;
use super::holds::{self, Approve};
use super::traffic::GroupTraffic;
use super::{GroupReport, PlanInput, Step};
use crate::drift::{Member, MemberHealth, RemovalClass};
use crate::spec::{Approval, InstanceGroup, Strategy};

/// Rollout numbers of a group after rounding and the safety adjustments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutLimits {
    /// `maxSurge` resolved (percentages round up); at least 1 when `maxUnavailable`
    /// resolves to 0, so a rollout can always progress.
    pub surge: u32,
    /// `maxUnavailable` resolved (percentages round down), capped at `replicas - 1` so
    /// that a replacement never terminates the last healthy instance.
    pub unavailable: u32,
}

impl RolloutLimits {
    /// Resolve a group's rollout numbers.
    pub fn of(group: &InstanceGroup) -> Self {
        let spec = &group.spec;
        let replicas = spec.replicas.get();
        let unavailable = spec
            .rollout
            .max_unavailable
            .resolve(replicas, false)
            .min(replicas.saturating_sub(1));
        let mut surge = spec.rollout.max_surge.resolve(replicas, true);
        if surge == 0 && unavailable == 0 {
            surge = 1;
        }
        Self { surge, unavailable }
    }

    /// The healthy floor of a group of `replicas`: `replicas - maxUnavailable`, at least 1
    /// (`unavailable` is capped at `replicas - 1`). The one definition the planner's
    /// rounds and the executor's terminate and rollback checks share.
    pub fn healthy_floor(self, replicas: u32) -> u32 {
        replicas.saturating_sub(self.unavailable)
    }
}

/// Plan the rollouts of `pending` (served by urgency class, then by name: the order of
/// `pending`), drawing terminations from `budget`.
pub(super) fn plan_rollouts(
    input: &PlanInput<'_>,
    mut pending: Vec<Pending<'_>>,
    reports: &mut [GroupReport],
    budget: &mut Ledger,
    held: bool,
) {
    pending.sort_by_key(|p| {
        p.removals
            .first()
            .and_then(|m| m.removal)
            .unwrap_or(RemovalClass::Surplus)
    });
    for p in &pending {
        let report = &mut reports[p.index];
        // A traffic group whose target groups could not all be read removes nothing:
        // which instances are in service is not known.
        let removable = if p.traffic.as_ref().is_some_and(|t| !t.known) {
            0
        } else {
            p.removals.len()
        };
        let granted = budget.grant(removable, report);
        let group_steps = rollout_steps(p, &p.removals[..granted]);
        if group_steps.blocked {
            report
                .notes
                .push("stopped early: no further step is safe until the group is healthier".into());
        }
        if !group_steps.steps.is_empty() {
            let spec = &p.parsed.group.spec;
            report.strategy = Some(spec.rollout.strategy);
            let manual = spec.approval == Approval::Manual;
            holds::approve(Approve {
                revision: input.revision,
                target: Some(&p.parsed.hash),
                approval: holds::approval(held, manual),
                steps: group_steps.steps,
                report,
            });
        }
    }
}

struct GroupSteps {
    steps: Vec<Step>,
    blocked: bool,
}

/// Simulate the rollout of one group and emit its steps.
///
/// State tracked: live instances, healthy instances, target-generation instances still
/// starting. Each round launches as many as the strategy and `maxSurge` allow, waits for
/// them to be healthy, bakes when healthy old instances are about to go, then
/// terminates removal candidates (not-healthy first) while the healthy count stays at or
/// above the floor. When a round can neither launch nor terminate, it waits for the
/// pre-existing starting instances (only then: a plan is not made to depend on them
/// otherwise); if there are none, it stops (`blocked`).
fn rollout_steps(p: &Pending<'_>, removals: &[Member<'_>]) -> GroupSteps {
    let spec = &p.parsed.group.spec;
    let replicas = spec.replicas.get();
    let limits = RolloutLimits::of(&p.parsed.group);
    let total_initial = u32::try_from(p.drift.total()).unwrap_or(u32::MAX);
    let removed = u32::try_from(removals.len()).unwrap_or(u32::MAX);
    let kept = total_initial - removed;
    let target = if p.complete {
        replicas
    } else {
        replicas.min(total_initial)
    };
    let mut to_launch = target.saturating_sub(kept);

    let traffic = p.traffic.as_ref();
    // With traffic, only instances in service in every target group count (or about to
    // be registered again: the plan starts with that).
    let serving = |m: &Member<'_>| {
        m.health == MemberHealth::Healthy
            && traffic.is_none_or(|t| t.serving(m.instance.id.as_str()))
    };
    let healthy_of = |ms: &[Member<'_>]| {
        u32::try_from(ms.iter().filter(|m| serving(m)).count()).unwrap_or(u32::MAX)
    };
    let mut healthy = healthy_of(&p.drift.current) + healthy_of(&p.drift.replace);
    let floor = limits.healthy_floor(replicas).min(healthy);
    let mut starting: Vec<String> = p
        .keep
        .iter()
        .filter(|m| m.health == MemberHealth::Starting)
        .map(|m| m.instance.id.to_string())
        .collect();
    starting.sort_unstable();

    let mut queue: VecDeque<(&str, bool)> = {
        let mut v: Vec<(&str, bool)> = removals
            .iter()
            .map(|m| (m.instance.id.as_str(), serving(m)))
            .collect();
        // Not-healthy first; otherwise keep the pick order.
        v.sort_by_key(|(_, h)| *h);
        v.into()
    };

    let cap = replicas.saturating_add(limits.surge);
    let mut total = total_initial;
    let mut first_launch = true;
    let mut steps = Vec::new();
    let mut blocked = false;
    let mut joining = traffic.map(|t| t.prelude(&mut steps)).unwrap_or_default();
    let wait = |ids: Vec<String>| Step::WaitHealthy {
        instance_ids: ids,
        grace: spec.health.grace,
        deadline: spec.health.deadline,
    };
    while !(queue.is_empty() && to_launch == 0) {
        let room = cap.saturating_sub(total);
        let replacing = !queue.is_empty();
        let launch = if to_launch == 0 {
            0
        } else {
            match spec.rollout.strategy {
                Strategy::BlueGreen if first_launch => to_launch,
                Strategy::Canary if first_launch && replacing => to_launch.min(room).min(1),
                _ => to_launch.min(room),
            }
        };
        if launch > 0 {
            steps.push(Step::Launch { count: launch });
            total += launch;
            to_launch -= launch;
            healthy += launch;
            steps.push(wait(Vec::new()));
            traffic.inspect(|t| t.join(&mut steps, Vec::new()));
            first_launch = false;
        }
        let mut batch = Vec::new();
        let mut batch_has_healthy = false;
        while let Some(&(id, is_healthy)) = queue.front() {
            if is_healthy {
                if healthy <= floor {
                    break;
                }
                healthy -= 1;
                batch_has_healthy = true;
            }
            batch.push(id.to_owned());
            queue.pop_front();
            total -= 1;
        }
        if !batch.is_empty() {
            if launch > 0 && batch_has_healthy && !spec.rollout.bake.is_zero() {
                steps.push(Step::Bake {
                    duration: spec.rollout.bake,
                });
            }
            batch.sort_unstable();
            traffic.inspect(|t| t.leave(&mut steps, &batch));
            steps.push(Step::Terminate {
                instance_ids: batch,
            });
        } else if launch == 0 {
            if starting.is_empty() && joining.is_empty() {
                blocked = true;
                break;
            }
            healthy += wait_for_existing(&mut steps, &wait, traffic, (&mut starting, &mut joining));
        }
    }
    GroupSteps { steps, blocked }
}

/// Wait for the pre-existing instances still starting (with traffic, then register them
/// and wait them in service) and, with traffic, for the registered ones not in service
/// yet. Returns how many instances that makes healthy.
fn wait_for_existing(
    steps: &mut Vec<Step>,
    wait: &dyn Fn(Vec<String>) -> Step,
    traffic: Option<&GroupTraffic<'_>>,
    (starting, joining): (&mut Vec<String>, &mut Vec<String>),
) -> u32 {
    let added = u32::try_from(starting.len() + joining.len()).unwrap_or(u32::MAX);
    if !starting.is_empty() {
        let ids = std::mem::take(starting);
        steps.push(wait(ids.clone()));
        if let Some(t) = traffic {
            t.join(steps, ids);
        }
    }
    if let Some(t) = traffic.filter(|_| !joining.is_empty()) {
        t.wait_in_service(steps, std::mem::take(joining));
    }
    added
}
