//! The traffic phases of a rollback (design section 11), run inside the `rollback` step
//! before it terminates anything: first every old instance the plan had deregistered
//! (and not terminated) is registered again and waited in service (up to the health
//! deadline), then the failed generation's instances about to be terminated are
//! deregistered and drained (up to the drain cap). Each phase recomputes what is left
//! from the target groups' health on every run, and writes the ids into the step's
//! intent before it calls the load balancer, so a crash in between repeats nothing.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use phoenix_core::traffic::Serving;
use phoenix_store::{StepAction, StepIntent};

use super::context::{Pass, StepCx, elapsed, step_detail, to_json};
use super::doc::{RolloutPlan, StepDetail, from_ms, to_ms};
use super::error::{ExecutorError, store_err};
use super::traffic::Move;
use super::{Executor, StepOutcome};

impl Executor {
    /// Register again the old instances the plan deregistered and wait until they are
    /// in service. `Some` while that is under way.
    pub(super) async fn rollback_restore(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        detail: &mut StepDetail,
        (ours, attempt): (&BTreeSet<String>, u32),
    ) -> Result<Option<StepOutcome>, ExecutorError> {
        let Some(traffic) = plan.doc.group.spec.traffic.as_deref() else {
            return Ok(None);
        };
        let tgs = traffic.target_group_names();
        let mut out: BTreeSet<String> = BTreeSet::new();
        let mut gone: BTreeSet<String> = BTreeSet::new();
        for s in &plan.steps {
            let d = step_detail(cx.id(), s)?;
            match s.action {
                StepAction::Deregister => out.extend(d.deregistered),
                StepAction::Terminate => gone.extend(d.terminated),
                _ => {}
            }
        }
        let fleet = pass.fleets.of(cx.provider_name);
        fleet.load(cx.provider.as_ref(), &self.owner).await;
        let restore: Vec<String> = out
            .into_iter()
            .filter(|id| !gone.contains(id) && !ours.contains(id) && fleet.get(id).is_some())
            .collect();
        if restore.is_empty() {
            return Ok(None);
        }
        if pass
            .targets
            .load(cx.provider.as_ref(), cx.provider_name, &tgs)
            .await
            .is_err()
        {
            return Ok(Some(StepOutcome::Wait(self.options.poll_interval)));
        }
        detail.restored = restore.clone();
        self.rollback_move(
            pass,
            cx,
            detail,
            (&tgs, &restore, attempt),
            Move::Register,
            traffic.port,
        )
        .await?;
        let started = cx.step.started_at.unwrap_or(pass.now);
        let waiting = restore
            .iter()
            .any(|id| pass.targets.serving(cx.provider_name, &tgs, id) != Serving::InService);
        if waiting && elapsed(started, pass.now) < plan.doc.group.spec.health.deadline {
            return Ok(Some(StepOutcome::Wait(self.options.poll_interval)));
        }
        Ok(None)
    }

    /// Deregister the instances the rollback is about to terminate
    /// (`detail.terminated`) and wait until they drained or the drain cap passed.
    /// `Some` while that is under way.
    pub(super) async fn rollback_drain(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        plan: &RolloutPlan,
        detail: &mut StepDetail,
        attempt: u32,
    ) -> Result<Option<StepOutcome>, ExecutorError> {
        let Some(traffic) = plan.doc.group.spec.traffic.as_deref() else {
            return Ok(None);
        };
        let tgs = traffic.target_group_names();
        if pass
            .targets
            .load(cx.provider.as_ref(), cx.provider_name, &tgs)
            .await
            .is_err()
        {
            return Ok(Some(StepOutcome::Wait(self.options.poll_interval)));
        }
        let attached: Vec<String> = detail
            .terminated
            .iter()
            .filter(|id| {
                tgs.iter().any(|tg| {
                    pass.targets
                        .state(cx.provider_name, tg, id)
                        .is_some_and(|s| s.is_attached())
                })
            })
            .cloned()
            .collect();
        if attached.is_empty() {
            return Ok(None);
        }
        if detail.drain_until_ms.is_none() {
            let Some(cap) = self.drain_cap(cx, &tgs, traffic.drain).await else {
                return Ok(Some(StepOutcome::Wait(self.options.poll_interval)));
            };
            detail.drain_until_ms = Some(to_ms(pass.now + cap));
        }
        detail.deregistered = attached.clone();
        self.rollback_move(
            pass,
            cx,
            detail,
            (&tgs, &attached, attempt),
            Move::Deregister,
            None,
        )
        .await?;
        let until: SystemTime = from_ms(detail.drain_until_ms.unwrap_or(0));
        match until.duration_since(pass.now) {
            Ok(left) if !left.is_zero() => Ok(Some(StepOutcome::Wait(
                self.options
                    .poll_interval
                    .min(left)
                    .max(Duration::from_millis(1)),
            ))),
            _ => {
                // The cap passed: what still drains is terminated (ELBv2 then ends it);
                // what is still registered (its deregistration kept failing) never is.
                let registered: Vec<&String> = attached
                    .iter()
                    .filter(|id| {
                        tgs.iter().any(|tg| {
                            pass.targets
                                .state(cx.provider_name, tg, id)
                                .is_some_and(|s| s.is_registered())
                        })
                    })
                    .collect();
                if registered.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(StepOutcome::Failed(format!(
                        "rollback could not deregister {registered:?} within the drain cap; nothing of them terminated"
                    ))))
                }
            }
        }
    }

    /// Write the rollback's intent with `detail`, then register (or deregister) in each
    /// target group the ids that still need it. A failed call is logged and left for
    /// the next run of the step (the rollback keeps waiting meanwhile).
    async fn rollback_move(
        &mut self,
        pass: &mut Pass<'_>,
        cx: &StepCx<'_>,
        detail: &StepDetail,
        (tgs, ids, attempt): (&[String], &[String], u32),
        how: Move,
        port: Option<u16>,
    ) -> Result<(), ExecutorError> {
        pass.store
            .write_intent(
                cx.id(),
                cx.step.index,
                &StepIntent {
                    attempt,
                    launch_token: None,
                    detail: Some(to_json(detail)),
                },
                pass.now,
            )
            .map_err(store_err("write rollback intent", cx.id()))?;
        for tg in tgs {
            if let Err(err) = super::traffic::call(pass, cx, (tg, ids, port), how).await {
                tracing::warn!(
                    plan = %cx.id(),
                    error = %phoenix_core::chain(&err),
                    "rollback could not {how:?} {} in {tg}; trying again",
                    ids.join(", ")
                );
            }
        }
        Ok(())
    }
}
