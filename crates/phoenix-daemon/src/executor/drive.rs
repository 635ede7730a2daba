//! Driving a rollout plan: run its next step until one blocks or the plan ends, then
//! finish it (succeeded), hand it over (superseded by a newer target once no step is in
//! flight), or fail it (see `rollback`). `run_step` dispatches a step to its kind's
//! module: `launch`, `wait` (`wait_healthy`, `bake`) or `terminate`.

use std::sync::Arc;
use std::time::Duration;

use phoenix_cloud::Provider;
use phoenix_core::SpecHash;
use phoenix_core::plan::Step;
use phoenix_store::{GenerationOutcome, PlanStatus, StepAction, StepRecord, StepStatus};

use super::context::{Pass, StepCx, set_outcome, step_detail};
use super::doc::RolloutPlan;
use super::error::{ExecutorError, store_err};
use super::traffic::TrafficStep;
use super::transition::Transition;
use super::{Executor, StepOutcome};

impl Executor {
    /// Run one rollout plan until it blocks or ends. Returns how long until it wants to
    /// run again.
    pub(super) async fn drive(
        &mut self,
        pass: &mut Pass<'_>,
        mut plan: RolloutPlan,
    ) -> Result<Option<Duration>, ExecutorError> {
        let Some(provider) = self.providers.get(&plan.doc.provider).cloned() else {
            return Ok(None);
        };
        // Steps before `done_before` are done in the snapshot: the search for the next step
        // starts there, so a plan of S steps costs O(S) per pass, not O(S^2). Reset to 0
        // whenever the snapshot is read again.
        let mut done_before = 0;
        loop {
            // A rollback step, once appended, is the only step that still matters. It is
            // always the last step: only `fail_plan` appends steps, and only one rollback.
            if let Some(rb) = plan
                .steps
                .last()
                .filter(|s| s.action == StepAction::Rollback)
                .cloned()
            {
                if let Some(wait) = self.drive_rollback(pass, &provider, &mut plan, &rb).await? {
                    return Ok(Some(wait));
                }
                done_before = 0;
                continue;
            }
            let next = plan.steps[done_before..]
                .iter()
                .position(|s| s.status != StepStatus::Done)
                .map(|p| done_before + p);
            let Some(step) = next.map(|i| {
                done_before = i;
                plan.steps[i].clone()
            }) else {
                return self.succeed(pass, &plan).map(Some);
            };
            if step.status != StepStatus::Intent
                && let Some(by) = self.runtime.get(&plan.record.id).and_then(|r| r.supersede)
            {
                return self.supersede_after_step(pass, &plan, by).map(Some);
            }
            let outcome = if step.status == StepStatus::Failed && !self.retryable(&step) {
                StepOutcome::Failed(
                    step.error
                        .clone()
                        .unwrap_or_else(|| format!("step {} failed", step.index)),
                )
            } else {
                self.run_step(pass, &provider, &plan, &step).await?
            };
            match outcome {
                StepOutcome::Done(detail) => {
                    if let Some(rt) = self.runtime.get_mut(&plan.record.id) {
                        rt.retry_at = None;
                        rt.held_since = None;
                    }
                    // Patch the snapshot instead of reading the plan again: a plan of a
                    // thousand rounds would otherwise re-read every step after each one.
                    match plan
                        .steps
                        .get_mut(done_before)
                        .filter(|s| s.index == step.index)
                    {
                        Some(s) => {
                            s.status = StepStatus::Done;
                            if let Some(detail) = detail {
                                s.detail = detail;
                            }
                        }
                        None => {
                            plan.reload(pass.store)?;
                            done_before = 0;
                        }
                    }
                }
                StepOutcome::Wait(d) => return Ok(Some(d)),
                StepOutcome::Failed(why) => {
                    self.fail_plan(pass, &plan, &why)?;
                    plan.reload(pass.store)?;
                    done_before = 0;
                    if plan.record.status != PlanStatus::Running {
                        return Ok(Some(Duration::ZERO));
                    }
                }
            }
        }
    }

    /// The plan's rollback step, appended when it failed: finish the plan once it is
    /// done, else run it. `None` when it just finished (drive on: the next round ends
    /// the plan), else how long until the plan wants to run again.
    async fn drive_rollback(
        &mut self,
        pass: &mut Pass<'_>,
        provider: &Arc<dyn Provider>,
        plan: &mut RolloutPlan,
        rb: &StepRecord,
    ) -> Result<Option<Duration>, ExecutorError> {
        if rb.status == StepStatus::Done {
            let detail = step_detail(&plan.record.id, rb)?;
            self.finish_failed(pass, plan, true, &detail)?;
            return Ok(Some(Duration::ZERO));
        }
        let cx = StepCx {
            provider,
            provider_name: &plan.doc.provider,
            plan: &plan.pref,
            step: rb,
        };
        match self.run_rollback(pass, &cx, plan).await? {
            StepOutcome::Done(_) => {
                plan.reload(pass.store)?;
                Ok(None)
            }
            StepOutcome::Wait(d) => Ok(Some(d)),
            StepOutcome::Failed(why) => {
                // Rollback could not finish within its attempts: give up loudly,
                // leaving what is there (every instance carries its group tag).
                self.fail_plan(pass, plan, &why)?;
                Ok(Some(Duration::ZERO))
            }
        }
    }

    /// Every step done: the plan succeeded.
    fn succeed(
        &mut self,
        pass: &mut Pass<'_>,
        plan: &RolloutPlan,
    ) -> Result<Duration, ExecutorError> {
        let id = &plan.record.id;
        set_outcome(
            pass.store,
            &plan.record.group,
            &plan.target,
            GenerationOutcome::Succeeded,
        )?;
        pass.store
            .set_plan_status(id, PlanStatus::Succeeded, pass.now)
            .map_err(store_err("finish plan", id))?;
        self.runtime.remove(id);
        pass.out.push(Transition::PlanSucceeded {
            plan: plan.pref.clone(),
            message: format!("all {} steps done", plan.steps.len()),
        });
        Ok(Duration::ZERO)
    }

    /// A newer target waited for the in-flight step: now that none is, hand over.
    fn supersede_after_step(
        &mut self,
        pass: &mut Pass<'_>,
        plan: &RolloutPlan,
        by: SpecHash,
    ) -> Result<Duration, ExecutorError> {
        let id = &plan.record.id;
        set_outcome(
            pass.store,
            &plan.record.group,
            &plan.target,
            GenerationOutcome::Superseded,
        )?;
        pass.store
            .set_plan_status(id, PlanStatus::Superseded, pass.now)
            .map_err(store_err("supersede plan", id))?;
        self.runtime.remove(id);
        pass.out.push(Transition::Superseded {
            plan: plan.pref.clone(),
            by: None,
            message: format!(
                "superseded by target {by} after its in-flight step finished; the group is re-planned"
            ),
        });
        Ok(Duration::ZERO)
    }

    /// Run one step of a rollout plan by its kind.
    async fn run_step(
        &mut self,
        pass: &mut Pass<'_>,
        provider: &Arc<dyn Provider>,
        plan: &RolloutPlan,
        step: &StepRecord,
    ) -> Result<StepOutcome, ExecutorError> {
        let detail = step_detail(&plan.record.id, step)?;
        let Some(planned) = detail.step.clone() else {
            return Ok(StepOutcome::Failed(format!(
                "step {} has no planner step",
                step.index
            )));
        };
        let cx = StepCx {
            provider,
            provider_name: &plan.doc.provider,
            plan: &plan.pref,
            step,
        };
        match planned {
            Step::Launch { count } => self.launch(pass, &cx, plan, detail, count).await,
            Step::WaitHealthy {
                instance_ids,
                grace,
                deadline,
            } => {
                let gate = super::wait::HealthGate {
                    instance_ids: &instance_ids,
                    grace,
                    deadline,
                };
                self.wait_healthy(pass, &cx, plan, gate).await
            }
            Step::Bake { duration } => self.bake(pass, &cx, plan, duration).await,
            Step::Terminate { instance_ids } => {
                self.terminate_step(pass, &cx, plan, detail, instance_ids)
                    .await
            }
            Step::Register {
                instance_ids,
                target_groups,
            } => {
                let step = TrafficStep {
                    instance_ids: &instance_ids,
                    target_groups: &target_groups,
                };
                self.register_step(pass, &cx, plan, detail, step).await
            }
            Step::WaitInService {
                instance_ids,
                target_groups,
                deadline,
            } => {
                let step = TrafficStep {
                    instance_ids: &instance_ids,
                    target_groups: &target_groups,
                };
                self.wait_in_service(pass, &cx, plan, step, deadline).await
            }
            Step::Deregister {
                instance_ids,
                target_groups,
            } => {
                let step = TrafficStep {
                    instance_ids: &instance_ids,
                    target_groups: &target_groups,
                };
                self.deregister_step(pass, &cx, plan, detail, step).await
            }
            Step::WaitDrained {
                instance_ids,
                target_groups,
                drain,
            } => {
                let step = TrafficStep {
                    instance_ids: &instance_ids,
                    target_groups: &target_groups,
                };
                self.wait_drained(pass, &cx, detail, step, drain).await
            }
        }
    }
}
