//! Phase 5 of a pass, and what it decides for every plan: the mass-removal hold
//! ([`mass_removal_hold`]) and whether a plan may run on its own ([`approval`]).

use super::{GroupReport, GroupStatus, Hold, PlanApproval, Step, plan_id};
use crate::config::ReconcileConfig;
use crate::hash::SpecHash;

/// The hold for a revision that removes every group, or more than `max_prune_fraction`
/// of them. "Removed" groups are those that still have our instances on a complete
/// inventory but are gone from the desired state; the fraction is
/// `removed / (desired + removed)`.
pub(super) fn mass_removal_hold(
    removed: &[&str],
    desired: usize,
    config: &ReconcileConfig,
) -> Option<Hold> {
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
            "the revision removes every group ({} with running instances)",
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
