//! Recovery at start: every launch step a crash left in `intent` is reconciled with the
//! provider's inventory by its launch tokens (the store's unique `steps_by_launch_token`
//! index guarantees that a token names exactly one step). A step whose instances are all
//! there is marked done without launching; one that is short stays in `intent` and
//! `advance` re-runs it with the same token, which only tops it up. Terminate, rollback
//! and prune steps in `intent` are re-run by `advance` (terminating is idempotent); wait
//! and bake steps resume from their recorded start.

use std::time::SystemTime;

use phoenix_core::model::Instance;
use phoenix_core::plan::Step;
use phoenix_store::{PlanId, PlanKind, StepAction, StepRecord, StepStatus, Store};

use super::Executor;
use super::context::{Pass, launched, step_detail};
use super::doc::{RolloutPlan, StoredPlan};
use super::error::{ExecutorError, store_err};
use super::transition::Transition;

impl Executor {
    /// On start: load the unfinished plans and reconcile every launch step left in
    /// `intent` with the provider (instances carrying its launch token). A step whose
    /// instances are all there is marked done without launching; one that is short stays
    /// in `intent` and `advance` re-runs it with the same token, which only tops it up.
    /// Terminate and rollback steps in `intent` are re-run by `advance` (terminating is
    /// idempotent); wait and bake steps resume from their recorded start.
    pub async fn recover(
        &mut self,
        store: &mut Store,
        now: SystemTime,
    ) -> Result<Vec<Transition>, ExecutorError> {
        self.runtime.clear();
        let plans = store
            .unfinished_plans()
            .map_err(store_err("list unfinished plans", &PlanId::new("-")))?;
        let mut pass = Pass::new(store, now);
        for plan in plans {
            // A prune plan launches nothing: its terminate step, if in intent, is re-run
            // by `advance` (after the same checks as a first run).
            if matches!(plan.plan.kind, PlanKind::Prune) {
                continue;
            }
            let StoredPlan::Rollout(plan) = StoredPlan::decode(plan)? else {
                continue;
            };
            if !self.providers.contains_key(&plan.doc.provider) {
                tracing::warn!(plan = %plan.record.id, provider = %plan.doc.provider,
                    "unfinished plan names a provider that is not configured");
                continue;
            }
            for step in plan
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Intent && s.action == StepAction::Launch)
            {
                self.recover_launch(&mut pass, &plan, step).await?;
            }
        }
        Ok(pass.out)
    }

    /// Reconcile one launch step in `intent` with the instances its tokens find.
    async fn recover_launch(
        &mut self,
        pass: &mut Pass<'_>,
        plan: &RolloutPlan,
        step: &StepRecord,
    ) -> Result<(), ExecutorError> {
        let id = &plan.record.id;
        let (Some(token), Ok(mut detail)) = (step.launch_token.clone(), step_detail(id, step))
        else {
            return Ok(());
        };
        let Some(Step::Launch { count }) = detail.step else {
            return Ok(());
        };
        let provider = self
            .providers
            .get(&plan.doc.provider)
            .expect("recover checked that the provider is configured");
        // One inventory per provider for every plan, indexed by launch token. What an
        // incomplete read shows exists; if it shows too few, the step stays in intent and
        // its launch, idempotent per token, tops it up.
        let fleet = pass.fleets.of(&plan.doc.provider);
        fleet.load(provider.as_ref(), &self.owner).await;
        let mut tokens = detail.tokens.clone();
        if !tokens.contains(&token) {
            tokens.push(token);
        }
        let found: Vec<Instance> = tokens
            .iter()
            .flat_map(|t| fleet.with_token(t))
            .cloned()
            .collect();
        let n = u32::try_from(found.len()).unwrap_or(u32::MAX);
        if n < count {
            if !fleet.is_complete() {
                tracing::warn!(plan = %id, step = step.index,
                    "inventory incomplete during recovery; the launch step will be re-run with its token");
            }
            return Ok(());
        }
        detail.instances = launched(&found, pass.now);
        let value = serde_json::to_value(&detail).expect("a step detail always serializes");
        pass.store
            .mark_step_done(id, step.index, Some(&value), pass.now)
            .map_err(store_err("recover launch step", id))?;
        pass.out.push(Transition::StepFinished {
            plan: plan.pref.clone(),
            index: step.index,
            action: step.action.to_string(),
            message: format!(
                "recovered after a restart: {n} instances found by launch token, nothing launched again"
            ),
        });
        Ok(())
    }
}
