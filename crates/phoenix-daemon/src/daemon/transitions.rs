//! What the loop does with executor transitions and operator commands: log them, stream
//! them to SSE subscribers, count them, and turn them into plan alerts; and the API's
//! answer to approve and cancel.

use std::collections::HashMap;
use std::time::SystemTime;

use phoenix_api::{ApiEvent, PlanCommandError};
use phoenix_core::plan::PlanDocument;

use super::Daemon;
use crate::alerts::{DriftObservations, PlanAlert, PlanAlertKind};
use crate::executor::{ExecutorError, Transition};
use crate::view;

impl Daemon {
    /// Log executor transitions, stream them to SSE subscribers and count results.
    pub(super) fn transitions(&mut self, transitions: &[Transition], now: SystemTime) {
        use phoenix_api::{PlanResult, PlanState, StepState};
        let observed = if transitions.iter().any(|t| {
            matches!(
                t,
                Transition::PlanStarted { .. }
                    | Transition::PlanSucceeded { .. }
                    | Transition::PlanFailed { .. }
                    | Transition::RolledBack { .. }
            )
        }) {
            observed_hashes(self.document.as_ref())
        } else {
            HashMap::new()
        };
        for transition in transitions {
            let plan = transition.plan();
            tracing::info!(plan = %plan.plan, group = %plan.group, kind = transition.kind(), message = transition.message(), "plan transition");
            let plan_event = |state: PlanState| ApiEvent::PlanTransition {
                plan_id: plan.plan.to_string(),
                group: plan.group.to_string(),
                target_hash: plan.target_hash,
                state,
                at: now,
            };
            let event = match transition {
                Transition::PlanStarted { .. } => plan_event(PlanState::Running),
                Transition::AwaitingApproval { .. } => plan_event(PlanState::AwaitingApproval),
                Transition::PlanSucceeded { .. } => {
                    self.channels.metrics.plan_finished(PlanResult::Succeeded);
                    plan_event(PlanState::Succeeded)
                }
                Transition::PlanFailed { .. } => {
                    self.channels.metrics.plan_finished(PlanResult::Failed);
                    plan_event(PlanState::Failed)
                }
                Transition::RolledBack { .. } => {
                    self.channels.metrics.plan_finished(PlanResult::RolledBack);
                    plan_event(PlanState::RolledBack)
                }
                Transition::PlanCancelled { .. } | Transition::Superseded { .. } => {
                    self.channels.metrics.plan_finished(PlanResult::Cancelled);
                    plan_event(PlanState::Cancelled)
                }
                Transition::StepStarted { index, action, .. } => ApiEvent::StepTransition {
                    plan_id: plan.plan.to_string(),
                    index: *index,
                    action: action.clone(),
                    state: StepState::Running,
                    at: now,
                },
                Transition::StepFinished { index, action, .. } => ApiEvent::StepTransition {
                    plan_id: plan.plan.to_string(),
                    index: *index,
                    action: action.clone(),
                    state: StepState::Succeeded,
                    at: now,
                },
            };
            let _ = self.channels.events.send(event);
            let kind = match transition {
                Transition::PlanStarted { .. } => Some(PlanAlertKind::Started),
                Transition::PlanSucceeded { .. } => Some(PlanAlertKind::Succeeded),
                Transition::PlanFailed { .. } => Some(PlanAlertKind::Failed),
                Transition::RolledBack { .. } => Some(PlanAlertKind::RolledBack),
                _ => None,
            };
            if let Some(kind) = kind {
                let alert = PlanAlert {
                    kind,
                    plan_id: plan.plan.clone(),
                    group: plan.group.clone(),
                    target_hash: plan.target_hash,
                    observed_hashes: observed
                        .get(plan.group.as_str())
                        .cloned()
                        .unwrap_or_default(),
                    commit: plan.commit.clone(),
                    message: transition.message().to_string(),
                };
                if let Err(err) = self.alerts.plan_event(&mut self.store, alert, now) {
                    tracing::error!(error = %phoenix_core::chain(&err), "cannot record the plan alert");
                }
            }
        }
    }

    /// Approve and cancel change a plan's state outside `advance`: stream it too.
    pub(super) fn announce_plan_state(
        &mut self,
        id: &phoenix_store::PlanId,
        result: &Result<phoenix_store::PlanStatus, ExecutorError>,
    ) {
        let Ok(status) = result else { return };
        match self.store.plan(id) {
            Ok(Some(plan)) => {
                tracing::info!(plan = %id, group = %plan.plan.group, status = ?status, "plan changed by an operator");
                let _ = self.channels.events.send(ApiEvent::PlanTransition {
                    plan_id: id.to_string(),
                    group: plan.plan.group.to_string(),
                    target_hash: plan.plan.kind.target_hash(),
                    state: view::plan_state(*status),
                    at: SystemTime::now(),
                });
            }
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %phoenix_core::chain(&err), plan = %id, "cannot read the plan")
            }
        }
    }
}

/// A plan document as the drift alerts read it: every report is a group of the pass.
pub(super) struct DocumentPass<'a> {
    pub(super) commit: &'a str,
    pub(super) document: &'a PlanDocument,
}

impl DriftObservations for DocumentPass<'_> {
    fn commit(&self) -> &str {
        self.commit
    }

    fn groups(&self) -> usize {
        self.document.groups.len()
    }

    fn group(&self, index: usize) -> (&phoenix_core::GroupName, &[phoenix_core::drift::Finding]) {
        let report = &self.document.groups[index];
        (&report.name, &report.drift)
    }

    fn desired_hash(&self, index: usize) -> Option<phoenix_core::SpecHash> {
        self.document.groups[index].desired_hash
    }

    /// The observed hashes that are spec hashes (`(none)` is not; the findings say so).
    fn observed_hashes(&self, index: usize) -> Vec<phoenix_core::SpecHash> {
        self.document.groups[index]
            .observed_hashes
            .iter()
            .filter_map(|h| h.hash.parse().ok())
            .collect()
    }
}

/// The distinct spec hashes running in each group, per the plan document (the planner
/// counted them from the same inventories): built once per batch of transitions, so a
/// pass with many plans does not scan the fleet once per plan.
fn observed_hashes(document: Option<&PlanDocument>) -> HashMap<&str, Vec<phoenix_core::SpecHash>> {
    let Some(document) = document else {
        return HashMap::new();
    };
    // A group can have two reports (its instances on a provider it moved away from are
    // reported as orphans under the same name): its hashes are the union.
    let mut by_group: HashMap<&str, Vec<phoenix_core::SpecHash>> = HashMap::new();
    for report in &document.groups {
        by_group.entry(report.name.as_str()).or_default().extend(
            report
                .observed_hashes
                .iter()
                .filter_map(|h| h.hash.parse::<phoenix_core::SpecHash>().ok()),
        );
    }
    for hashes in by_group.values_mut() {
        hashes.sort();
        hashes.dedup();
    }
    by_group
}

/// The API's answer to approve or cancel; `None` for an internal failure (the API then
/// answers 503 rather than a wrong verdict).
pub(super) fn plan_reply(
    plan_id: String,
    result: Result<phoenix_store::PlanStatus, ExecutorError>,
) -> Option<phoenix_api::PlanReply> {
    match result {
        Ok(status) => Some(Ok(view::plan_state(status))),
        Err(ExecutorError::PlanNotFound { .. }) => {
            Some(Err(PlanCommandError::NotFound { plan_id }))
        }
        Err(
            ExecutorError::NotAwaitingApproval { status, .. }
            | ExecutorError::NotActive { status, .. },
        ) => Some(Err(PlanCommandError::WrongState {
            plan_id,
            state: view::plan_state(status),
        })),
        Err(err) => {
            tracing::error!(error = %phoenix_core::chain(&err), plan = %plan_id, "plan command failed");
            None
        }
    }
}
