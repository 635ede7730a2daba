//! Failing a rollout plan: with `autoRollback` and something launched, a `rollback` step
//! is appended, which terminates what the plan launched (found by its launch tokens)
//! except healthy instances needed to hold the group's healthy floor; else, or once the
//! rollback is done, the plan ends failed or rolled back with its hash recorded as failed.

use std::collections::BTreeSet;

use phoenix_store::{GenerationOutcome, NewStep, PlanStatus, StepAction, StepStatus};

use super::context::{Pass, StepCx, load, set_outcome, step_detail, to_json};
use super::doc::{RolloutPlan, StepDetail};
use super::error::{ExecutorError, store_err};
use super::terminate::{Termination, terminate_recorded};
use super::transition::Transition;
use super::{Executor, StepOutcome};

impl Executor {
    /// The plan failed: append a rollback step (autoRollback and something was
    /// launched), or mark it failed and leave everything as it is.
    pub(super) fn fail_plan(
        &mut self,
        pass: &mut Pass<'_>,
        plan: &RolloutPlan,
        why: &str,
    ) -> Result<(), ExecutorError> {
        let id = &plan.record.id;
        // The caller's snapshot may predate the failing step's intent: read it again.
        let fresh = load(pass.store, id)?;
        let launched_any = fresh
            .steps
            .iter()
            .any(|s| s.action == StepAction::Launch && s.launch_token.is_some());
        let has_rollback = fresh.steps.iter().any(|s| s.action == StepAction::Rollback);
        // A wait or bake step that failed is still in intent: finish it first.
        for s in fresh
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Intent)
        {
            pass.store
                .mark_step_failed(id, s.index, why, None, pass.now)
                .map_err(store_err("mark step failed", id))?;
        }
        if plan.doc.group.spec.rollout.auto_rollback && launched_any && !has_rollback {
            pass.store
                .append_steps(
                    id,
                    &[NewStep {
                        action: StepAction::Rollback,
                        detail: to_json(&StepDetail::rollback(why.to_string())),
                    }],
                    pass.now,
                )
                .map_err(store_err("append rollback step", id))?;
            tracing::warn!(plan = %id, reason = why, "plan failed; rolling back");
            return Ok(());
        }
        let detail = StepDetail::rollback(why.to_string());
        self.finish_failed(pass, plan, false, &detail)
    }

    /// Final status of a failed plan (rolled back or failed), the failed hash recorded so
    /// the planner does not retry it at this commit.
    pub(super) fn finish_failed(
        &mut self,
        pass: &mut Pass<'_>,
        plan: &RolloutPlan,
        rolled_back: bool,
        detail: &StepDetail,
    ) -> Result<(), ExecutorError> {
        let (id, group, now) = (&plan.record.id, &plan.record.group, pass.now);
        let why = detail
            .reason
            .clone()
            .unwrap_or_else(|| "plan failed".to_string());
        let (status, outcome) = if rolled_back {
            (PlanStatus::RolledBack, GenerationOutcome::RolledBack)
        } else {
            (PlanStatus::Failed, GenerationOutcome::Failed)
        };
        // Records first, final status last: a crash in between leaves the plan active,
        // and the restarted executor finishes it again (both records are upserts). The
        // other order could end the plan without the failed hash, and the planner would
        // propose the very same plan (same id) again, which never runs twice.
        pass.store
            .record_failed_hash(group, &plan.target, &plan.doc.commit, Some(&why), now)
            .map_err(store_err("record failed hash", id))?;
        set_outcome(pass.store, group, &plan.target, outcome)?;
        pass.store
            .set_plan_status(id, status, now)
            .map_err(store_err("finish failed plan", id))?;
        self.runtime.remove(id);
        let pref = plan.pref.clone();
        pass.out.push(if rolled_back {
            let mut message = format!(
                "{why}; rolled back: terminated [{}]",
                detail.terminated.join(", ")
            );
            if !detail.kept.is_empty() {
                message.push_str(&format!(
                    ", kept [{}] to hold the healthy floor",
                    detail.kept.join(", ")
                ));
            }
            Transition::RolledBack {
                plan: pref,
                message,
            }
        } else {
            Transition::PlanFailed {
                plan: pref,
                message: format!("{why}; instances left as they are"),
            }
        });
        Ok(())
    }

    /// Terminate what this plan launched (found by its launch tokens), except healthy
    /// instances needed to hold the group's healthy floor.
    pub(super) async fn run_rollback(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
    ) -> Result<StepOutcome, ExecutorError> {
        let (id, step) = (cx.id(), cx.step);
        let mut detail = step_detail(id, step)?;
        let attempt = match self.next_attempt(id, step, pass.now) {
            Ok(a) => a,
            Err(wait) => return Ok(StepOutcome::Wait(wait)),
        };
        if step.status == StepStatus::Failed && step.attempt >= self.options.terminate_attempts {
            return Ok(StepOutcome::Failed(format!(
                "rollback gave up after {} attempts: {}",
                step.attempt,
                step.error.clone().unwrap_or_default()
            )));
        }
        let Some(ours) = self.launched_by(pass, cx, plan).await? else {
            return Ok(StepOutcome::Wait(self.options.poll_interval));
        };
        // Traffic: old instances the plan deregistered are registered again, and in
        // service, before anything of the failed generation goes.
        if let Some(wait) = self
            .rollback_restore(pass, cx, plan, &mut detail, (&ours, attempt))
            .await?
        {
            return Ok(wait);
        }
        let Some(group) = self.group_health(pass, cx, &plan.doc).await else {
            return Ok(StepOutcome::Wait(self.options.poll_interval));
        };
        let mut allowed = group.healthy - group.floor;
        let (mut terminate, mut kept) = (Vec::new(), Vec::new());
        // Not-healthy instances of the failed generation go first, then healthy ones
        // while the floor allows.
        let mut live: Vec<&String> = group.members.iter().filter(|m| ours.contains(*m)).collect();
        live.sort_by_key(|m| (group.is_healthy(m), *m));
        for m in live {
            if group.is_healthy(m) {
                if allowed == 0 {
                    kept.push(m.clone());
                    continue;
                }
                allowed -= 1;
            }
            terminate.push(m.clone());
        }
        detail.terminated = terminate.clone();
        detail.kept = kept;
        // Traffic: what goes is deregistered and drained first.
        if let Some(wait) = self
            .rollback_drain(pass, cx, plan, &mut detail, attempt)
            .await?
        {
            return Ok(wait);
        }
        let order = Termination {
            detail: &detail,
            ids: &terminate,
            attempt,
            started: format!("roll back: terminate {}", terminate.join(", ")),
        };
        if let Err(err) = terminate_recorded(pass, cx, order).await? {
            let why = format!("rollback attempt {attempt} failed: {err}");
            pass.store
                .mark_step_failed(id, step.index, &why, None, pass.now)
                .map_err(store_err("mark rollback failed", id))?;
            return Ok(StepOutcome::Wait(
                self.schedule_retry(id, attempt, pass.now),
            ));
        }
        pass.store
            .mark_step_done(id, step.index, None, pass.now)
            .map_err(store_err("mark rollback done", id))?;
        pass.step_finished(cx, format!("terminated {}", terminate.join(", ")));
        Ok(StepOutcome::Done(None))
    }

    /// Every instance the plan's launch steps created: recorded ones, and what each of
    /// their launch tokens finds. `None` when a lookup failed (try again later).
    async fn launched_by(
        &self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
    ) -> Result<Option<BTreeSet<String>>, ExecutorError> {
        let mut ours = BTreeSet::new();
        for s in plan.steps.iter().filter(|s| s.action == StepAction::Launch) {
            let d = step_detail(cx.id(), s)?;
            ours.extend(d.instances.into_iter().map(|l| l.id));
            let mut tokens = d.tokens;
            tokens.extend(s.launch_token.clone());
            // Asked of the provider, not the view: a launch attempt that failed halfway
            // may have created instances the pass's inventory predates.
            for t in tokens {
                match cx.provider.find_by_launch_token(&self.owner, &t).await {
                    Ok(found) => {
                        pass.fleets.of(cx.provider_name).learn(&found);
                        ours.extend(found.into_iter().map(|i| String::from(i.id)));
                    }
                    Err(_) => return Ok(None),
                }
            }
        }
        Ok(Some(ours))
    }
}
