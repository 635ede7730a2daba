//! The `launch` step: re-check the image against `policy.images` and any change window,
//! write the intent with this attempt's deterministic launch token,
//! then launch what is still missing (instances an earlier attempt created count), and
//! record what was launched. A failure is retried with backoff under a new token, unless
//! the provider refused the request.

use phoenix_cloud::LaunchRequest;
use phoenix_core::model::Instance;
use phoenix_store::{StepIntent, StepStatus};

use super::context::{Pass, StepCx, ids, launched, to_json};
use super::doc::{RolloutPlan, StepDetail, launch_token};
use super::error::{ExecutorError, store_err};
use super::retry::retry_worth;
use super::{Executor, StepOutcome};

impl Executor {
    /// How long a launch not yet begun waits for a change window (`window`): only while
    /// its group is blocked and a later step would replace a healthy instance.
    async fn window_hold(
        &self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
    ) -> Option<std::time::Duration> {
        if cx.step.status != StepStatus::Pending || self.windows.is_empty() {
            return None;
        }
        let fleet = pass.fleets.of(cx.provider_name);
        fleet.load(cx.provider.as_ref(), &self.owner).await;
        let group = plan.doc.group.name().as_str();
        self.windows
            .hold_launch(group, &plan.steps, cx.step.index, fleet, pass.now)
    }

    /// Run a launch step of `count` instances.
    pub(super) async fn launch(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        mut detail: StepDetail,
        count: u32,
    ) -> Result<StepOutcome, ExecutorError> {
        let (id, step) = (cx.id(), cx.step);
        let image = plan.doc.group.spec.template.image.as_str();
        match crate::policy::recheck(self.image_policy.as_ref(), &**cx.provider, image, pass.now)
            .await
        {
            Ok(()) => {}
            Err(phoenix_core::policy::Verdict::Denied(violation)) => {
                return Ok(StepOutcome::Failed(format!(
                    "image {image} breaks policy.images ({violation}); not launched"
                )));
            }
            Err(verdict) => {
                tracing::warn!(plan = %id, image, verdict = ?verdict, "cannot re-check the image before launching; waiting");
                return Ok(StepOutcome::Wait(self.options.poll_interval));
            }
        }
        if let Some(wait) = self.window_hold(pass, cx, plan).await {
            return Ok(StepOutcome::Wait(wait));
        }
        let attempt = match self.next_attempt(id, step, pass.now) {
            Ok(a) => a,
            Err(wait) => return Ok(StepOutcome::Wait(wait)),
        };
        let token = launch_token(id.as_str(), step.index, attempt);
        // Instances an earlier attempt created (a partial failure) count.
        let mut prior: Vec<Instance> = Vec::new();
        for t in detail.tokens.iter().filter(|t| **t != token) {
            match cx.provider.find_by_launch_token(&self.owner, t).await {
                Ok(found) => {
                    pass.fleets.of(cx.provider_name).learn(&found);
                    prior.extend(found);
                }
                Err(err) => {
                    tracing::warn!(plan = %id, error = %phoenix_core::chain(&err), "lookup of an earlier launch attempt failed");
                    return Ok(StepOutcome::Wait(self.options.poll_interval));
                }
            }
        }
        if !detail.tokens.contains(&token) {
            detail.tokens.push(token.clone());
        }
        let resumed = step.status == StepStatus::Intent;
        pass.store
            .write_intent(
                id,
                step.index,
                &StepIntent {
                    attempt,
                    launch_token: Some(token.clone()),
                    detail: Some(to_json(&detail)),
                },
                pass.now,
            )
            .map_err(store_err("write launch intent", id))?;
        if !resumed {
            pass.step_started(
                cx,
                format!("launch {count} (attempt {attempt}, token {token})"),
            );
        }
        let want = count.saturating_sub(u32::try_from(prior.len()).unwrap_or(u32::MAX));
        let request = LaunchRequest {
            owner: self.owner.clone(),
            group: plan.doc.group.name().clone(),
            template: plan.doc.group.spec.template.clone(),
            spec_hash: plan.target,
            commit: plan.doc.commit.clone(),
            plan_id: id.to_string(),
            launch_token: token,
            count: want,
        };
        let result = if want == 0 {
            Ok(Vec::new())
        } else {
            cx.provider.launch(&request).await
        };
        match result {
            Ok(new) => {
                // A terminate later in this pass must count them.
                pass.fleets.of(cx.provider_name).learn(&new);
                prior.extend(new);
                detail.instances = launched(&prior, pass.now);
                let done = to_json(&detail);
                pass.store
                    .mark_step_done(id, step.index, Some(&done), pass.now)
                    .map_err(store_err("mark launch done", id))?;
                pass.step_finished(
                    cx,
                    format!("launched {}", ids(&detail.instances).join(", ")),
                );
                Ok(StepOutcome::Done(Some(done)))
            }
            Err(err) => {
                let why = format!("launch attempt {attempt} failed: {err}");
                pass.store
                    .mark_step_failed(id, step.index, &why, Some(&to_json(&detail)), pass.now)
                    .map_err(store_err("mark launch failed", id))?;
                if attempt < self.options.launch_attempts && retry_worth(&err) {
                    let delay = self.schedule_retry(id, attempt, pass.now);
                    tracing::warn!(plan = %id, step = step.index, attempt, error = %phoenix_core::chain(&err), "launch failed; retrying");
                    Ok(StepOutcome::Wait(delay))
                } else {
                    Ok(StepOutcome::Failed(why))
                }
            }
        }
    }
}
