//! A group's health as one pass sees it, and its healthy floor: what a terminate step
//! and a rollback decide on. The floor (`replicas - maxUnavailable`) is the planner's own
//! ([`RolloutLimits::healthy_floor`]), so planned rounds and executed terminations agree.

use std::collections::HashMap;

use phoenix_core::InstanceGroup;
use phoenix_core::plan::RolloutLimits;

use super::Executor;
use super::context::{Pass, StepCx};
use super::doc::PlanDoc;
use super::health::{self, Verdict};

impl Executor {
    /// The group's live members as this pass knows them (its inventory view, see
    /// `fleet`), each with a verdict: health observed earlier in the pass, else judged
    /// from the inventory (and probed, for `check: http`). `None` when the inventory is
    /// incomplete: nothing may be terminated on it. Costs the group's size, not the
    /// fleet's.
    pub(super) async fn group_health(
        &self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        doc: &PlanDoc,
    ) -> Option<GroupHealth> {
        let fleet = pass.fleets.of(cx.provider_name);
        fleet.load(cx.provider.as_ref(), &self.owner).await;
        if !fleet.is_complete() {
            return None;
        }
        let members = fleet.members(doc.group.name().as_str());
        let mut verdicts = HashMap::with_capacity(members.len());
        let mut unobserved = Vec::new();
        for m in &members {
            match fleet.observed(&m.id) {
                Some(v) => {
                    verdicts.insert(m.id.to_string(), v);
                }
                None => unobserved.push(*m),
            }
        }
        verdicts.extend(health::judge(&self.http, &doc.group.spec.health, &unobserved).await);
        let members: Vec<String> = members.iter().map(|m| m.id.to_string()).collect();
        // With traffic, only instances in service in every target group count.
        if !self.in_service_verdicts(pass, cx, doc, &mut verdicts).await {
            return None;
        }
        let healthy = count_healthy(&verdicts, members.iter().map(String::as_str));
        Some(GroupHealth {
            floor: healthy_floor(&doc.group).min(healthy),
            members,
            verdicts,
            healthy,
        })
    }
}

/// A group's live members in the pass's inventory view, with a verdict for each: what a
/// terminate or a rollback decides on.
pub(super) struct GroupHealth {
    /// Live member ids, sorted.
    pub members: Vec<String>,
    /// A verdict per member.
    pub verdicts: HashMap<String, Verdict>,
    /// How many members are healthy now.
    pub healthy: u32,
    /// Healthy instances that must remain: `min(replicas - maxUnavailable, healthy)`.
    pub floor: u32,
}

impl GroupHealth {
    pub fn is_healthy(&self, id: &str) -> bool {
        self.verdicts.get(id) == Some(&Verdict::Healthy)
    }

    pub fn count_healthy(&self, ids: &[String]) -> u32 {
        count_healthy(&self.verdicts, ids.iter().map(String::as_str))
    }
}

fn count_healthy<'a>(
    verdicts: &HashMap<String, Verdict>,
    ids: impl Iterator<Item = &'a str>,
) -> u32 {
    let n = ids
        .filter(|i| verdicts.get(*i) == Some(&Verdict::Healthy))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The group's healthy floor, as the planner computes it ([`RolloutLimits::healthy_floor`]).
fn healthy_floor(group: &InstanceGroup) -> u32 {
    RolloutLimits::of(group).healthy_floor(group.spec.replicas.get())
}
