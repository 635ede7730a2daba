//! Prune plans: terminate the named instances of a group that is no longer in the
//! desired state (orphans, `reconcile.prune: true`).
//!
//! Before anything is terminated (also when a terminate left in `intent` by a crash is
//! re-run): the group must still be absent from the desired state of the current
//! revision (the last `submit`) on the plan's provider, else the plan is superseded
//! without terminating; the provider's inventory must be complete; and only named
//! instances that still exist, are not shutting down, and still carry our owner and the
//! group's tag are terminated. No health floor applies: the group is not desired. Failed
//! terminate calls are retried like any terminate step.
//!
//! A prune waiting for approval is also checked: a held prune whose group came back is
//! withdrawn.

use std::sync::Arc;
use std::time::Duration;

use phoenix_cloud::Provider;
use phoenix_core::plan::Step;
use phoenix_store::{PlanStatus, StepRecord, StepStatus};

use super::context::{Pass, StepCx, step_detail};
use super::doc::PrunePlan;
use super::error::{ExecutorError, store_err};
use super::transition::Transition;
use super::{Executor, StepOutcome};

impl Executor {
    /// Run a prune plan (see the module docs). Returns how long until it wants to run
    /// again.
    pub(super) async fn drive_prune(
        &mut self,
        pass: &mut Pass<'_>,
        mut plan: PrunePlan,
    ) -> Result<Option<Duration>, ExecutorError> {
        if self.desired.is_none() {
            // After a start, before the first `submit`: the current desired state is not
            // known yet, so nothing is pruned.
            return Ok(
                (plan.record.status == PlanStatus::Running).then_some(self.options.poll_interval)
            );
        }
        if let Some(why) = self.prune_withdrawn(&plan) {
            self.withdraw_prune(pass, &plan, why)?;
            return Ok(Some(Duration::ZERO));
        }
        if plan.record.status != PlanStatus::Running {
            return Ok(None);
        }
        let Some(provider) = self.providers.get(&plan.doc.provider).cloned() else {
            return Ok(None);
        };
        loop {
            let Some(step) = plan
                .steps
                .iter()
                .find(|s| s.status != StepStatus::Done)
                .cloned()
            else {
                pass.store
                    .set_plan_status(&plan.record.id, PlanStatus::Succeeded, pass.now)
                    .map_err(store_err("finish plan", &plan.record.id))?;
                self.runtime.remove(&plan.record.id);
                pass.out.push(Transition::PlanSucceeded {
                    plan: plan.pref.clone(),
                    message: format!(
                        "pruned group `{}`: all {} steps done",
                        plan.doc.group,
                        plan.steps.len()
                    ),
                });
                return Ok(Some(Duration::ZERO));
            };
            let outcome = if step.status == StepStatus::Failed && !self.retryable(&step) {
                StepOutcome::Failed(
                    step.error
                        .clone()
                        .unwrap_or_else(|| format!("step {} failed", step.index)),
                )
            } else {
                self.run_prune_step(pass, &provider, &plan, &step).await?
            };
            match outcome {
                StepOutcome::Done(_) => {
                    if let Some(rt) = self.runtime.get_mut(&plan.record.id) {
                        rt.retry_at = None;
                    }
                    plan.reload(pass.store)?;
                }
                StepOutcome::Wait(d) => return Ok(Some(d)),
                StepOutcome::Failed(why) => {
                    self.fail_prune(pass, &plan, &why)?;
                    return Ok(Some(Duration::ZERO));
                }
            }
        }
    }

    /// Why the prune must stop without terminating anything more, if it must: its group
    /// is desired again, or a newer target waits (and no step is in flight).
    fn prune_withdrawn(&self, plan: &PrunePlan) -> Option<String> {
        let desired = self.desired.as_ref()?;
        let doc = &plan.doc;
        let in_flight = plan.steps.iter().any(|s| s.status == StepStatus::Intent);
        if desired.contains(&doc.group, &doc.provider) {
            Some(format!(
                "group `{}` is desired again at revision {}; the prune stopped, nothing more terminated",
                doc.group, desired.revision
            ))
        } else if !in_flight
            && let Some(by) = self.runtime.get(&plan.record.id).and_then(|r| r.supersede)
        {
            Some(format!(
                "superseded by target {by}; the group is re-planned"
            ))
        } else {
            None
        }
    }

    /// Stop a prune: its in-flight step failed with `why`, the plan superseded.
    fn withdraw_prune(
        &mut self,
        pass: &mut Pass<'_>,
        plan: &PrunePlan,
        why: String,
    ) -> Result<(), ExecutorError> {
        let id = &plan.record.id;
        for s in plan.steps.iter().filter(|s| s.status == StepStatus::Intent) {
            pass.store
                .mark_step_failed(id, s.index, &why, None, pass.now)
                .map_err(store_err("stop prune step", id))?;
        }
        pass.store
            .set_plan_status(id, PlanStatus::Superseded, pass.now)
            .map_err(store_err("stop prune", id))?;
        self.runtime.remove(id);
        tracing::info!(plan = %id, group = %plan.doc.group, "prune withdrawn: {why}");
        pass.out.push(Transition::Superseded {
            plan: plan.pref.clone(),
            by: None,
            message: why,
        });
        Ok(())
    }

    /// A prune's step failed for good: the plan fails, instances left as they are.
    fn fail_prune(
        &mut self,
        pass: &mut Pass<'_>,
        plan: &PrunePlan,
        why: &str,
    ) -> Result<(), ExecutorError> {
        let id = &plan.record.id;
        for s in super::context::load(pass.store, id)?
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Intent)
        {
            pass.store
                .mark_step_failed(id, s.index, why, None, pass.now)
                .map_err(store_err("mark step failed", id))?;
        }
        pass.store
            .set_plan_status(id, PlanStatus::Failed, pass.now)
            .map_err(store_err("finish failed plan", id))?;
        self.runtime.remove(id);
        pass.out.push(Transition::PlanFailed {
            plan: plan.pref.clone(),
            message: format!("{why}; instances left as they are"),
        });
        Ok(())
    }

    /// The terminate step of a prune plan: the named instances still there and still
    /// ours, of that group, on a complete inventory.
    async fn run_prune_step(
        &mut self,
        pass: &mut Pass<'_>,
        provider: &Arc<dyn Provider>,
        plan: &PrunePlan,
        step: &StepRecord,
    ) -> Result<StepOutcome, ExecutorError> {
        let id = &plan.record.id;
        let detail = step_detail(id, step)?;
        let Some(Step::Terminate { instance_ids }) = detail.step.clone() else {
            return Ok(StepOutcome::Failed(format!(
                "step {} of a prune plan is not a terminate step",
                step.index
            )));
        };
        let attempt = match self.next_attempt(id, step, pass.now) {
            Ok(a) => a,
            Err(wait) => return Ok(StepOutcome::Wait(wait)),
        };
        let fleet = pass.fleets.of(&plan.doc.provider);
        fleet.load(provider.as_ref(), &self.owner).await;
        if !fleet.is_complete() {
            // Never prune on an incomplete inventory.
            return Ok(StepOutcome::Wait(self.options.poll_interval));
        }
        let existing: Vec<String> = instance_ids
            .iter()
            .filter(|i| {
                fleet.get(i).is_some_and(|instance| {
                    phoenix_core::drift::counts(instance)
                        && instance.owner() == Some(self.owner.as_str())
                        && instance.group() == Some(plan.doc.group.as_str())
                })
            })
            .cloned()
            .collect();
        let cx = StepCx {
            provider,
            provider_name: &plan.doc.provider,
            plan: &plan.pref,
            step,
        };
        self.terminate(pass, &cx, detail, existing, instance_ids.len(), attempt)
            .await
    }
}
