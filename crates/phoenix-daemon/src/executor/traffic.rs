//! The traffic steps (design section 11): `register` and `deregister`, which act and are
//! write-ahead like a launch (the ids are in the step's intent before the load balancer
//! is called), and `wait_in_service` and `wait_drained`, which watch. Every one of them
//! computes what is left from the target groups' health as read in this call
//! (`targets`), so a step re-run after a crash registers or deregisters only what is
//! still to do. Also the guard every terminate of a traffic group passes (an instance
//! still registered is never terminated) and the in-service reading of the healthy
//! floor (`floor` asks `in_service_verdicts`).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use phoenix_cloud::TargetRef;
use phoenix_core::spec::Traffic;
use phoenix_core::traffic::Serving;
use phoenix_store::{StepIntent, StepStatus};

use super::context::{Pass, StepCx, elapsed, to_json};
use super::doc::{PlanDoc, RolloutPlan, StepDetail};
use super::error::{ExecutorError, store_err};
use super::health::Verdict;
use super::retry::retry_worth;
use super::{Executor, StepOutcome};

/// What a traffic step names, as the planner wrote it.
pub(super) struct TrafficStep<'a> {
    /// Instances listed (besides the plan's own launches, for `register` and
    /// `wait_in_service`).
    pub instance_ids: &'a [String],
    /// The target groups.
    pub target_groups: &'a [String],
}

/// Drain waits are capped at the target group's deregistration delay plus this.
pub(super) const DRAIN_MARGIN: Duration = Duration::from_secs(30);

/// A `wait_drained` step looks again this long after the deregistration delay ends
/// (the load balancer's clock and ours are not the same).
const DRAIN_SLACK: Duration = Duration::from_millis(100);

/// Register or deregister: the two acting traffic calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Move {
    Register,
    Deregister,
}

impl Executor {
    /// Run a `register` step: every instance the plan launched so far and every listed
    /// one that is not registered in a target group is registered there.
    pub(super) async fn register_step(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        detail: StepDetail,
        step: TrafficStep<'_>,
    ) -> Result<StepOutcome, ExecutorError> {
        let ids = self.joining(pass, cx, plan, step.instance_ids).await?;
        self.move_step(
            pass,
            cx,
            plan,
            detail,
            (step.target_groups, ids),
            Move::Register,
        )
        .await
    }

    /// Run a `deregister` step of the listed instances, while the group's in-service
    /// floor holds (held back up to the health deadline, like a terminate).
    pub(super) async fn deregister_step(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        detail: StepDetail,
        step: TrafficStep<'_>,
    ) -> Result<StepOutcome, ExecutorError> {
        let Some(group) = self.group_health(pass, cx, &plan.doc).await else {
            return Ok(StepOutcome::Wait(self.options.poll_interval));
        };
        let wanted: BTreeSet<&str> = step.instance_ids.iter().map(String::as_str).collect();
        let existing: Vec<String> = group
            .members
            .iter()
            .filter(|m| wanted.contains(m.as_str()))
            .cloned()
            .collect();
        let going = group.count_healthy(&existing);
        if step.status_is_fresh(cx) && group.healthy - going < group.floor {
            let rt = self.runtime.entry(cx.id().clone()).or_default();
            let held = *rt.held_since.get_or_insert(pass.now);
            if elapsed(held, pass.now) >= plan.doc.group.spec.health.deadline {
                return Ok(StepOutcome::Failed(format!(
                    "deregistering {} would leave {} instances in service, below the floor of {}",
                    existing.join(", "),
                    group.healthy - going,
                    group.floor
                )));
            }
            return Ok(StepOutcome::Wait(self.options.poll_interval));
        }
        self.move_step(
            pass,
            cx,
            plan,
            detail,
            (step.target_groups, existing),
            Move::Deregister,
        )
        .await
    }

    /// Register (or deregister) `ids` in every target group where that is still to do:
    /// the ids are written with the intent before any call, then each target group is
    /// called once for what it lacks; failures are retried like a terminate.
    async fn move_step(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        mut detail: StepDetail,
        (target_groups, ids): (&[String], Vec<String>),
        how: Move,
    ) -> Result<StepOutcome, ExecutorError> {
        let attempt = match self.next_attempt(cx.id(), cx.step, pass.now) {
            Ok(a) => a,
            Err(wait) => return Ok(StepOutcome::Wait(wait)),
        };
        if let Err(why) = pass
            .targets
            .load(cx.provider.as_ref(), cx.provider_name, target_groups)
            .await
        {
            tracing::info!(plan = %cx.id(), reason = why, "waiting for the target groups");
            return Ok(StepOutcome::Wait(self.options.poll_interval));
        }
        match how {
            Move::Register => detail.registered = ids.clone(),
            Move::Deregister => detail.deregistered = ids.clone(),
        }
        let resumed = cx.step.status == StepStatus::Intent;
        pass.store
            .write_intent(
                cx.id(),
                cx.step.index,
                &StepIntent {
                    attempt,
                    launch_token: None,
                    detail: Some(to_json(&detail)),
                },
                pass.now,
            )
            .map_err(store_err("write traffic intent", cx.id()))?;
        let verb = match how {
            Move::Register => "register",
            Move::Deregister => "deregister",
        };
        if !resumed {
            pass.step_started(cx, format!("{verb} {}", ids.join(", ")));
        }
        let port = plan.doc.group.spec.traffic.as_deref().and_then(|t| t.port);
        for tg in target_groups {
            if let Err(err) = call(pass, cx, (tg, &ids, port), how).await {
                let why = format!(
                    "{verb} attempt {attempt} in {tg} failed: {}",
                    crate::error_chain(&err)
                );
                pass.store
                    .mark_step_failed(cx.id(), cx.step.index, &why, None, pass.now)
                    .map_err(store_err("mark traffic step failed", cx.id()))?;
                if attempt < self.options.terminate_attempts && retry_worth(&err) {
                    return Ok(StepOutcome::Wait(self.schedule_retry(
                        cx.id(),
                        attempt,
                        pass.now,
                    )));
                }
                return Ok(StepOutcome::Failed(why));
            }
        }
        if let Some(rt) = self.runtime.get_mut(cx.id()) {
            rt.held_since = None;
        }
        let json = to_json(&detail);
        pass.store
            .mark_step_done(cx.id(), cx.step.index, Some(&json), pass.now)
            .map_err(store_err("mark traffic step done", cx.id()))?;
        pass.step_finished(
            cx,
            format!(
                "{verb}ed {} in {}",
                ids.join(", "),
                target_groups.join(", ")
            ),
        );
        Ok(StepOutcome::Done(Some(json)))
    }

    /// Run a `wait_in_service` step: done when every instance the plan launched so far
    /// and every listed one is `healthy` in every target group; one that is not, the
    /// deadline after the step started, fails the plan ("never got healthy").
    pub(super) async fn wait_in_service(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        step: TrafficStep<'_>,
        deadline: Duration,
    ) -> Result<StepOutcome, ExecutorError> {
        let started_at = super::wait::begin_passive(pass, cx, "wait until in service")?;
        let ids = self.joining(pass, cx, plan, step.instance_ids).await?;
        let late = elapsed(started_at, pass.now) >= deadline;
        if let Err(why) = pass
            .targets
            .load(cx.provider.as_ref(), cx.provider_name, step.target_groups)
            .await
        {
            if late {
                return Ok(StepOutcome::Failed(format!(
                    "target health could not be read within the deadline: {why}"
                )));
            }
            return Ok(StepOutcome::Wait(self.options.poll_interval));
        }
        let mut out_of_service = Vec::new();
        for id in &ids {
            for tg in step.target_groups {
                match pass.targets.state(cx.provider_name, tg, id) {
                    Some(phoenix_core::traffic::TargetState::Healthy) => {}
                    state => out_of_service.push(format!(
                        "{id} is {} in {tg}",
                        state.map_or("unknown", |s| s.as_str())
                    )),
                }
            }
        }
        if out_of_service.is_empty() {
            pass.store
                .mark_step_done(cx.id(), cx.step.index, None, pass.now)
                .map_err(store_err("mark wait in service done", cx.id()))?;
            pass.step_finished(cx, format!("{} instances in service", ids.len()));
            return Ok(StepOutcome::Done(None));
        }
        if late {
            return Ok(StepOutcome::Failed(format!(
                "target never got healthy within the deadline of {}: {}",
                humantime::format_duration(deadline),
                out_of_service.join("; ")
            )));
        }
        let left = deadline.saturating_sub(elapsed(started_at, pass.now));
        Ok(StepOutcome::Wait(
            self.options
                .poll_interval
                .min(left)
                .max(Duration::from_millis(1)),
        ))
    }

    /// Run a `wait_drained` step: done when none of the listed instances is registered
    /// or draining in any target group, or once the drain cap has passed (the spec's
    /// `drain`, else the longest deregistration delay of the target groups plus 30s;
    /// resolved once and written with the intent).
    pub(super) async fn wait_drained(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        mut detail: StepDetail,
        step: TrafficStep<'_>,
        drain: Option<Duration>,
    ) -> Result<StepOutcome, ExecutorError> {
        let (started_at, cap) = match (cx.step.status, detail.drain_ms) {
            (StepStatus::Intent, Some(ms)) => (
                cx.step.started_at.unwrap_or(pass.now),
                Duration::from_millis(ms),
            ),
            _ => {
                let Some(cap) = self.drain_cap(cx, step.target_groups, drain).await else {
                    return Ok(StepOutcome::Wait(self.options.poll_interval));
                };
                detail.drain_ms = Some(u64::try_from(cap.as_millis()).unwrap_or(u64::MAX));
                pass.store
                    .write_intent(
                        cx.id(),
                        cx.step.index,
                        &StepIntent {
                            attempt: cx.step.attempt + 1,
                            launch_token: None,
                            detail: Some(to_json(&detail)),
                        },
                        pass.now,
                    )
                    .map_err(store_err("write wait drained intent", cx.id()))?;
                pass.step_started(
                    cx,
                    format!(
                        "wait until drained (at most {})",
                        humantime::format_duration(cap)
                    ),
                );
                (pass.now, cap)
            }
        };
        let spent = elapsed(started_at, pass.now);
        if pass
            .targets
            .load(cx.provider.as_ref(), cx.provider_name, step.target_groups)
            .await
            .is_err()
        {
            return Ok(StepOutcome::Wait(self.options.poll_interval));
        }
        let attached: Vec<String> = step
            .instance_ids
            .iter()
            .filter(|id| {
                step.target_groups.iter().any(|tg| {
                    pass.targets
                        .state(cx.provider_name, tg, id)
                        .is_some_and(|s| s.is_attached())
                })
            })
            .cloned()
            .collect();
        if attached.is_empty() || spent >= cap {
            let message = if attached.is_empty() {
                format!("{} drained", step.instance_ids.join(", "))
            } else {
                format!(
                    "drain cap of {} passed; still attached: {}",
                    humantime::format_duration(cap),
                    attached.join(", ")
                )
            };
            pass.store
                .mark_step_done(cx.id(), cx.step.index, None, pass.now)
                .map_err(store_err("mark wait drained done", cx.id()))?;
            pass.step_finished(cx, message);
            return Ok(StepOutcome::Done(None));
        }
        // Without `drain`, draining is expected to end with the deregistration delay (the
        // cap less the margin): wake up just after it rather than up to a poll later.
        let expected = if drain.is_none() {
            cap.saturating_sub(DRAIN_MARGIN) + DRAIN_SLACK
        } else {
            cap
        };
        let next = if spent < expected {
            expected - spent
        } else {
            cap - spent
        };
        Ok(StepOutcome::Wait(
            self.options
                .poll_interval
                .min(next)
                .max(Duration::from_millis(1)),
        ))
    }

    /// The drain cap: `drain`, else the longest deregistration delay of the target
    /// groups plus [`DRAIN_MARGIN`]. `None` when a target group could not be described.
    pub(super) async fn drain_cap(
        &self,
        cx: &StepCx<'_>,
        target_groups: &[String],
        drain: Option<Duration>,
    ) -> Option<Duration> {
        if let Some(d) = drain {
            return Some(d);
        }
        let mut longest = Duration::ZERO;
        for tg in target_groups {
            match cx.provider.target_group_info(tg).await {
                Ok(info) => longest = longest.max(info.deregistration_delay),
                Err(err) => {
                    tracing::warn!(plan = %cx.id(), error = %phoenix_core::chain(&err), "cannot describe target group {tg}");
                    return None;
                }
            }
        }
        Some(longest + DRAIN_MARGIN)
    }

    /// The instances a `register` or `wait_in_service` step is about: every live
    /// instance the plan launched before the step, and the listed ones, sorted.
    async fn joining(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        listed: &[String],
    ) -> Result<Vec<String>, ExecutorError> {
        let mut ids: BTreeSet<String> = self
            .launched_before(plan, cx.step.index)?
            .into_iter()
            .map(|l| l.id)
            .collect();
        ids.extend(listed.iter().cloned());
        let fleet = pass.fleets.of(cx.provider_name);
        fleet.load(cx.provider.as_ref(), &self.owner).await;
        // An instance gone meanwhile (terminated out of band) cannot be registered; the
        // next planning pass sees the group short and launches.
        Ok(ids
            .into_iter()
            .filter(|id| !fleet.is_complete() || fleet.get(id).is_some())
            .collect())
    }

    /// For a group with traffic, turn the healthy verdicts of members that are not in
    /// service in every target group into `Unknown`, so the floor counts in-service
    /// instances only. `false` when a target group could not be read (nothing may then
    /// be deregistered or terminated).
    pub(super) async fn in_service_verdicts(
        &self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        doc: &PlanDoc,
        verdicts: &mut HashMap<String, Verdict>,
    ) -> bool {
        let Some(traffic) = doc.group.spec.traffic.as_deref() else {
            return true;
        };
        let tgs = traffic.target_group_names();
        if pass
            .targets
            .load(cx.provider.as_ref(), cx.provider_name, &tgs)
            .await
            .is_err()
        {
            return false;
        }
        for (id, verdict) in verdicts.iter_mut() {
            if *verdict == Verdict::Healthy
                && pass.targets.serving(cx.provider_name, &tgs, id) != Serving::InService
            {
                *verdict = Verdict::Unknown;
            }
        }
        true
    }

    /// Of `ids` about to be terminated in a traffic group, those still registered in a
    /// target group (never terminated); `None` when a target group could not be read.
    pub(super) async fn still_registered(
        &self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        traffic: &Traffic,
        ids: &[String],
    ) -> Option<Vec<String>> {
        let tgs = traffic.target_group_names();
        pass.targets
            .load(cx.provider.as_ref(), cx.provider_name, &tgs)
            .await
            .ok()?;
        Some(
            ids.iter()
                .filter(|id| {
                    tgs.iter().any(|tg| {
                        pass.targets
                            .state(cx.provider_name, tg, id)
                            .is_some_and(|s| s.is_registered())
                    })
                })
                .cloned()
                .collect(),
        )
    }
}

impl Executor {
    /// Before a rollout's terminate of `ids` in a traffic group: `Some` (wait, or fail
    /// past the health deadline) while any of them is still registered in a target
    /// group or a target group cannot be read; `None` when the terminate may go ahead.
    pub(super) async fn registered_guard(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        ids: &[String],
    ) -> Option<StepOutcome> {
        let traffic = plan.doc.group.spec.traffic.as_deref()?;
        let registered = self.still_registered(pass, cx, traffic, ids).await;
        if registered.as_ref().is_some_and(Vec::is_empty) {
            return None;
        }
        let rt = self.runtime.entry(cx.id().clone()).or_default();
        let held = *rt.held_since.get_or_insert(pass.now);
        if elapsed(held, pass.now) >= plan.doc.group.spec.health.deadline {
            return Some(StepOutcome::Failed(match registered {
                Some(r) => format!(
                    "{} still registered in a target group; never terminated while registered",
                    r.join(", ")
                ),
                None => "target health could not be read within the deadline; nothing terminated"
                    .to_string(),
            }));
        }
        Some(StepOutcome::Wait(self.options.poll_interval))
    }
}

impl TrafficStep<'_> {
    /// Whether the step has not acted yet (the floor is checked before the first
    /// action only: once deregistering began, finishing it is what the intent says).
    fn status_is_fresh(&self, cx: &StepCx<'_>) -> bool {
        cx.step.status != StepStatus::Intent
    }
}

/// Register (or deregister) in `tg` those of `ids` that still need it there, as the
/// pass's view of the target group says, and write what was done into the view.
pub(super) async fn call(
    pass: &mut Pass<'_>,
    cx: &StepCx<'_>,
    (tg, ids, port): (&str, &[String], Option<u16>),
    how: Move,
) -> Result<(), phoenix_cloud::ProviderError> {
    let todo: Vec<String> = ids
        .iter()
        .filter(|id| {
            let state = pass.targets.state(cx.provider_name, tg, id);
            match how {
                Move::Register => state.is_none_or(|s| !s.is_registered()),
                Move::Deregister => state.is_some_and(|s| s.is_registered()),
            }
        })
        .cloned()
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let refs: Vec<TargetRef> = todo
        .iter()
        .map(|id| TargetRef {
            id: id.clone(),
            port,
        })
        .collect();
    match how {
        Move::Register => cx.provider.register_targets(tg, &refs).await?,
        Move::Deregister => cx.provider.deregister_targets(tg, &refs).await?,
    }
    match how {
        Move::Register => pass.targets.registered(cx.provider_name, tg, &todo),
        Move::Deregister => pass.targets.deregistered(cx.provider_name, tg, &todo),
    }
    Ok(())
}
