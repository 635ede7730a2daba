//! Terminating: the `terminate` step of a rollout (only while the group's healthy floor
//! holds; never on an incomplete inventory; held back up to the health deadline), and
//! the part every terminating step shares (a rollout's terminate, a prune, a rollback):
//! write the intent with the ids before acting, terminate, keep the pass's inventory
//! view exact, and mark the step done or failed with a retry scheduled.

use std::collections::BTreeSet;

use phoenix_cloud::{ErrorKind, ProviderError};
use phoenix_store::{StepIntent, StepStatus};

use super::context::{Pass, StepCx, elapsed, to_json};
use super::doc::{RolloutPlan, StepDetail};
use super::error::{ExecutorError, store_err};
use super::{Executor, StepOutcome};

/// What a terminating step is about to do.
pub(super) struct Termination<'a> {
    /// The step detail to record with the intent (its `terminated` ids set).
    pub detail: &'a StepDetail,
    /// The ids to terminate.
    pub ids: &'a [String],
    /// The attempt.
    pub attempt: u32,
    /// How to announce the step the first time it starts.
    pub started: String,
}

impl Executor {
    /// Run a rollout's terminate step of the named instances.
    pub(super) async fn terminate_step(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        detail: StepDetail,
        instance_ids: Vec<String>,
    ) -> Result<StepOutcome, ExecutorError> {
        let attempt = match self.next_attempt(cx.id(), cx.step, pass.now) {
            Ok(a) => a,
            Err(wait) => return Ok(StepOutcome::Wait(wait)),
        };
        let Some(group) = self.group_health(pass, cx, &plan.doc).await else {
            // Never terminate on an incomplete inventory.
            return Ok(StepOutcome::Wait(self.options.poll_interval));
        };
        let wanted: BTreeSet<&str> = instance_ids.iter().map(String::as_str).collect();
        let existing: Vec<String> = group
            .members
            .iter()
            .filter(|m| wanted.contains(m.as_str()))
            .cloned()
            .collect();
        let healthy_now = group.healthy;
        let healthy_going = group.count_healthy(&existing);
        let required = group.floor;
        if healthy_now - healthy_going < required {
            let rt = self.runtime.entry(cx.id().clone()).or_default();
            let held = *rt.held_since.get_or_insert(pass.now);
            if elapsed(held, pass.now) >= plan.doc.group.spec.health.deadline {
                return Ok(StepOutcome::Failed(format!(
                    "terminating {} would leave {} healthy instances, below the floor of {required}",
                    existing.join(", "),
                    healthy_now - healthy_going
                )));
            }
            return Ok(StepOutcome::Wait(self.options.poll_interval));
        }
        self.terminate(pass, cx, detail, existing, instance_ids.len(), attempt)
            .await
    }

    /// Write a terminate step's intent for `existing` (the `named` instances that passed
    /// the caller's checks), terminate them, and mark the step done, or failed with a
    /// retry scheduled. Shared by a rollout's terminate step and a prune.
    pub(super) async fn terminate(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        mut detail: StepDetail,
        existing: Vec<String>,
        named: usize,
        attempt: u32,
    ) -> Result<StepOutcome, ExecutorError> {
        let id = cx.id();
        detail.terminated = existing.clone();
        let order = Termination {
            detail: &detail,
            ids: &existing,
            attempt,
            started: format!("terminate {}", existing.join(", ")),
        };
        if let Err(err) = terminate_recorded(pass, cx, order).await? {
            let why = format!("terminate attempt {attempt} failed: {err}");
            pass.store
                .mark_step_failed(id, cx.step.index, &why, None, pass.now)
                .map_err(store_err("mark terminate failed", id))?;
            if attempt < self.options.terminate_attempts {
                let delay = self.schedule_retry(id, attempt, pass.now);
                return Ok(StepOutcome::Wait(delay));
            }
            return Ok(StepOutcome::Failed(why));
        }
        pass.store
            .mark_step_done(id, cx.step.index, None, pass.now)
            .map_err(store_err("mark terminate done", id))?;
        let skipped = named - existing.len();
        pass.step_finished(
            cx,
            if skipped == 0 {
                format!("terminated {}", existing.join(", "))
            } else {
                format!(
                    "terminated {} ({skipped} named instances were already gone)",
                    existing.join(", ")
                )
            },
        );
        Ok(StepOutcome::Done(Some(to_json(&detail))))
    }
}

/// The part every terminating step shares: write the intent (with the ids in the
/// detail) before acting, announce the step the first time, terminate the ids, and keep
/// the pass's inventory view exact. The provider's answer is returned; "not found"
/// counts as done.
pub(super) async fn terminate_recorded(
    pass: &mut Pass<'_>,
    cx: &StepCx<'_>,
    order: Termination<'_>,
) -> Result<Result<(), ProviderError>, ExecutorError> {
    let id = cx.id();
    let resumed = cx.step.status == StepStatus::Intent;
    pass.store
        .write_intent(
            id,
            cx.step.index,
            &StepIntent {
                attempt: order.attempt,
                launch_token: None,
                detail: Some(to_json(order.detail)),
            },
            pass.now,
        )
        .map_err(store_err("write terminate intent", id))?;
    if !resumed {
        pass.step_started(cx, order.started);
    }
    let ids = order.ids;
    let result = if ids.is_empty() {
        Ok(())
    } else {
        cx.provider.terminate(ids).await
    };
    let fleet = pass.fleets.of(cx.provider_name);
    Ok(match result {
        Ok(()) => {
            fleet.terminated(ids);
            Ok(())
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {
            tracing::info!(plan = %id, error = %phoenix_core::chain(&err), "instances already gone");
            fleet.terminated(ids);
            Ok(())
        }
        Err(err) => {
            fleet.uncertain(ids);
            Err(err)
        }
    })
}
