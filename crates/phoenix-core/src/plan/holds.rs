//! Phase 5 of a pass, and what it decides for every plan: the mass-removal hold
//! ([`mass_removal_hold`], counted from the revision and sticky until its groups are
//! back or gone) and whether a plan may run on its own ([`approval`]).

use std::collections::BTreeSet;

use super::partition::Partition;
use super::{GroupReport, GroupStatus, Hold, PlanApproval, PlanInput, Step, plan_id};
use crate::config::ReconcileConfig;
use crate::hash::SpecHash;

/// The hold for a revision that removes every group, or more than `max_prune_fraction`
/// of them, and the hold in force from an earlier pass while it lasts.
///
/// "Removed" groups are counted from the revision (issue 17, defect 7): groups desired
/// on the last pass ([`PlanMemory::desired_groups`]) and gone now, plus groups that still
/// have our instances on a complete inventory but are not desired (the only evidence on
/// a first pass). So an incomplete inventory cannot hide a removal. The fraction is
/// `removed / (desired + removed)`.
///
/// A hold sticks ([`PlanMemory::hold`]): it is not recomputed away when part of the
/// removal is done or a budget defers the rest. It lasts while any of its groups is still
/// absent from Git and may still have instances (an inventory is incomplete, or a
/// complete one shows some); groups removed meanwhile join it.
///
/// [`PlanMemory::desired_groups`]: super::PlanMemory::desired_groups
/// [`PlanMemory::hold`]: super::PlanMemory::hold
pub(super) fn mass_removal_hold(input: &PlanInput<'_>, parts: &Partition<'_>) -> Option<Hold> {
    let desired = |g: &str| parts.desired.contains_key(g);
    let mut removed: BTreeSet<&str> = parts.removed_groups().into_iter().collect();
    if let Some(before) = &input.memory.desired_groups {
        removed.extend(before.iter().map(String::as_str).filter(|g| !desired(g)));
    }
    if let Some(sticky) = &input.memory.hold {
        let every_inventory_complete = parts.complete.values().all(|complete| *complete);
        let may_have_instances = |g: &str| {
            !every_inventory_complete || parts.orphans.keys().any(|(group, _)| *group == g)
        };
        let pending: Vec<&str> = sticky
            .removed_groups
            .iter()
            .map(String::as_str)
            .filter(|g| !desired(g) && may_have_instances(g))
            .collect();
        if !pending.is_empty() {
            removed.extend(pending);
            return Some(Hold {
                reason: sticky.reason.clone(),
                removed_groups: removed.into_iter().map(str::to_owned).collect(),
            });
        }
    }
    let removed: Vec<&str> = removed.into_iter().collect();
    fraction_hold(&removed, parts.desired.len(), input.config)
}

/// The hold for `removed` groups beside `desired` ones, if they are too many.
fn fraction_hold(removed: &[&str], desired: usize, config: &ReconcileConfig) -> Option<Hold> {
    if removed.is_empty() {
        return None;
    }
    let total = desired + removed.len();
    #[allow(clippy::cast_precision_loss)]
    let fraction = removed.len() as f64 / total as f64;
    let limit = if config.max_prune_fraction.is_finite() {
        config.max_prune_fraction
    } else {
        0.0
    };
    let reason = if desired == 0 {
        format!(
            "the revision removes every group ({} of them)",
            removed.len()
        )
    } else if fraction > limit {
        format!(
            "the revision removes {} of {} groups ({:.0}% > max_prune_fraction {:.0}%)",
            removed.len(),
            total,
            fraction * 100.0,
            limit * 100.0
        )
    } else {
        return None;
    };
    Some(Hold {
        reason,
        removed_groups: removed.iter().map(|g| (*g).to_owned()).collect(),
    })
}

/// The desired group names of this pass, sorted, for the next pass's removal count.
pub(super) fn desired_names(parts: &Partition<'_>) -> Vec<String> {
    parts
        .order
        .iter()
        .map(|g| g.group.name().as_str().to_owned())
        .collect()
}

/// Whether a plan runs on its own: held when the revision is, waiting when its group
/// says `approval: manual`, else free.
pub(super) fn approval(held: bool, manual: bool) -> PlanApproval {
    if held {
        PlanApproval::Held
    } else if manual {
        PlanApproval::Manual
    } else {
        PlanApproval::Auto
    }
}

/// A plan to put on a report.
pub(super) struct Approve<'r, 'h> {
    pub revision: &'r str,
    pub target: Option<&'h SpecHash>,
    pub approval: PlanApproval,
    pub steps: Vec<Step>,
    pub report: &'r mut GroupReport,
}

/// Put the plan on its report: its id, approval, status and steps.
pub(super) fn approve(plan: Approve<'_, '_>) {
    let report = plan.report;
    report.plan_id = Some(plan_id(
        plan.revision,
        &report.provider,
        report.name.as_str(),
        plan.target,
        &plan.steps,
    ));
    report.status = if plan.approval == PlanApproval::Auto {
        GroupStatus::Planned
    } else {
        GroupStatus::AwaitingApproval
    };
    report.approval = Some(plan.approval);
    report.steps = plan.steps;
}
