//! The passive steps, which act on nothing and watch: `wait_healthy` (every instance the
//! plan launched so far and the named ones healthy, within a grace and a deadline, for
//! `min_healthy_time`) and `bake` (hold, then every new instance still healthy). Also the
//! health verdicts they decide on and the instances the plan launched before a step.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::{Duration, SystemTime};

use phoenix_cloud::ProviderError;
use phoenix_core::model::Instance;
use phoenix_core::spec::HealthCheck;
use phoenix_store::{StepAction, StepIntent, StepStatus};

use super::context::{Pass, StepCx, elapsed, step_detail};
use super::doc::{Launched, RolloutPlan, from_ms};
use super::error::{ExecutorError, store_err};
use super::health::{self, Verdict};
use super::{Executor, StepOutcome};

/// What a `wait_healthy` step waits for, as the planner wrote it.
pub(super) struct HealthGate<'a> {
    /// Instances named by the planner (besides the plan's own launches).
    pub instance_ids: &'a [String],
    /// An instance unhealthy this long after launch fails the step.
    pub grace: Duration,
    /// An instance not healthy this long after launch fails the step.
    pub deadline: Duration,
}

impl Executor {
    /// Run a `wait_healthy` step.
    pub(super) async fn wait_healthy(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        gate: HealthGate<'_>,
    ) -> Result<StepOutcome, ExecutorError> {
        let started_at = begin_passive(pass, cx, "wait until healthy")?;
        let mut targets = self.launched_targets(plan, cx.step.index)?;
        targets.extend(gate.instance_ids.iter().map(|i| (i.clone(), started_at)));
        let verdicts = match self.verdicts(pass, cx, plan, &targets).await {
            Ok(v) => v,
            Err(err) => {
                if elapsed(started_at, pass.now) >= gate.deadline {
                    return Ok(StepOutcome::Failed(format!(
                        "health could not be read within the deadline: {err}"
                    )));
                }
                return Ok(StepOutcome::Wait(self.options.poll_interval));
            }
        };
        let now = pass.now;
        let (poll, min_healthy) = (self.options.poll_interval, self.options.min_healthy_time);
        let rt = self.runtime.entry(cx.id().clone()).or_default();
        let mut pending = Vec::new();
        let mut min_wait = poll;
        for (instance, launched_at) in &targets {
            let verdict = verdicts.get(instance).copied().unwrap_or(Verdict::Unknown);
            let age = elapsed(*launched_at, now);
            if verdict == Verdict::Healthy {
                let since = *rt.healthy_since.entry(instance.clone()).or_insert(now);
                let healthy_for = elapsed(since, now);
                if healthy_for < min_healthy {
                    min_wait = min_wait.min(min_healthy - healthy_for);
                    pending.push(instance.clone());
                }
                continue;
            }
            rt.healthy_since.remove(instance);
            if verdict == Verdict::Unhealthy && age >= gate.grace {
                return Ok(StepOutcome::Failed(format!(
                    "instance {instance} is unhealthy {}s after launch (grace {})",
                    age.as_secs(),
                    humantime::format_duration(gate.grace)
                )));
            }
            if age >= gate.deadline {
                return Ok(StepOutcome::Failed(format!(
                    "instance {instance} not healthy within the deadline of {}",
                    humantime::format_duration(gate.deadline)
                )));
            }
            min_wait = min_wait.min(gate.deadline - age);
            pending.push(instance.clone());
        }
        if !pending.is_empty() {
            return Ok(StepOutcome::Wait(min_wait.max(Duration::from_millis(1))));
        }
        pass.store
            .mark_step_done(cx.id(), cx.step.index, None, now)
            .map_err(store_err("mark wait done", cx.id()))?;
        pass.step_finished(cx, format!("{} instances healthy", targets.len()));
        Ok(StepOutcome::Done(None))
    }

    /// Run a `bake` step of `duration`.
    pub(super) async fn bake(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        duration: Duration,
    ) -> Result<StepOutcome, ExecutorError> {
        let started_at = begin_passive(pass, cx, "bake")?;
        let baked = elapsed(started_at, pass.now);
        if baked < duration {
            return Ok(StepOutcome::Wait(duration - baked));
        }
        let targets = self.launched_targets(plan, cx.step.index)?;
        let verdicts = match self.verdicts(pass, cx, plan, &targets).await {
            Ok(v) => v,
            Err(_) => return Ok(StepOutcome::Wait(self.options.poll_interval)),
        };
        if let Some((bad, _)) = targets
            .iter()
            .find(|(i, _)| verdicts.get(i) != Some(&Verdict::Healthy))
        {
            return Ok(StepOutcome::Failed(format!(
                "instance {bad} is not healthy at the end of the bake"
            )));
        }
        pass.store
            .mark_step_done(cx.id(), cx.step.index, None, pass.now)
            .map_err(store_err("mark bake done", cx.id()))?;
        pass.step_finished(
            cx,
            format!("baked {}", humantime::format_duration(duration)),
        );
        Ok(StepOutcome::Done(None))
    }

    /// Every instance launched by done launch steps before `index`, with its launch time.
    fn launched_targets(
        &mut self,
        plan: &RolloutPlan,
        index: u32,
    ) -> Result<Vec<(String, SystemTime)>, ExecutorError> {
        Ok(self
            .launched_before(plan, index)?
            .into_iter()
            .map(|l| (l.id, from_ms(l.launched_at_ms)))
            .collect())
    }

    /// Every instance launched by done launch steps before `index`.
    pub(super) fn launched_before(
        &mut self,
        plan: &RolloutPlan,
        index: u32,
    ) -> Result<Vec<Launched>, ExecutorError> {
        let cache = &mut self
            .runtime
            .entry(plan.record.id.clone())
            .or_default()
            .launched;
        let mut out = Vec::new();
        for step in plan.steps.iter().filter(|s| {
            s.index < index && s.action == StepAction::Launch && s.status == StepStatus::Done
        }) {
            let launched = match cache.entry(step.index) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(step_detail(&plan.record.id, step)?.instances),
            };
            out.extend(launched.iter().cloned());
        }
        Ok(out)
    }

    /// Health verdicts for targets: the provider's health call for `check: provider`
    /// (for these ids only), else the pass's inventory view (state, address) and the
    /// probe. What is observed is written into the view, for later floor checks.
    async fn verdicts(
        &self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        targets: &[(String, SystemTime)],
    ) -> Result<HashMap<String, Verdict>, ProviderError> {
        let health = &plan.doc.group.spec.health;
        let fleet = pass.fleets.of(cx.provider_name);
        let verdicts = if health.check == HealthCheck::Provider {
            let ids: Vec<String> = targets.iter().map(|(i, _)| i.clone()).collect();
            cx.provider
                .health(&ids)
                .await?
                .into_iter()
                .map(|(id, h)| (id, Verdict::from(h)))
                .collect()
        } else {
            fleet.load(cx.provider.as_ref(), &self.owner).await;
            let seen: Vec<&Instance> = targets.iter().filter_map(|(i, _)| fleet.get(i)).collect();
            health::judge(&self.http, health, &seen).await
        };
        fleet.observe(&verdicts);
        Ok(verdicts)
    }
}

/// Write the intent of a wait or bake step the first time; returns its start time.
pub(super) fn begin_passive(
    pass: &mut Pass<'_>,
    cx: &StepCx<'_>,
    what: &str,
) -> Result<SystemTime, ExecutorError> {
    let step = cx.step;
    if step.status == StepStatus::Intent {
        return Ok(step.started_at.unwrap_or(pass.now));
    }
    pass.store
        .write_intent(
            cx.id(),
            step.index,
            &StepIntent {
                attempt: step.attempt + 1,
                launch_token: None,
                detail: None,
            },
            pass.now,
        )
        .map_err(store_err("write step intent", cx.id()))?;
    pass.step_started(cx, what.to_string());
    Ok(pass.now)
}
