//! What every step of one executor call shares: the [`Pass`] (the store, the pass's
//! inventory view, the `now` of the call and the transitions so far) and the [`StepCx`]
//! of the step being run (its provider, its plan and its record), plus the small helpers
//! steps use to read and write their stored details.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_cloud::Provider;
use phoenix_core::model::Instance;
use phoenix_core::{GroupName, SpecHash};
use phoenix_store::{GenerationOutcome, PlanId, PlanWithSteps, StepRecord, Store, StoreError};

use super::doc::{Launched, StepDetail, to_ms};
use super::error::{ExecutorError, store_err};
use super::fleet::Fleets;
use super::transition::{PlanRef, Transition};

/// One `advance` or `recover` call: what it works on and what it has done so far.
pub(super) struct Pass<'a> {
    /// The store; every step writes its intent and outcome here.
    pub store: &'a mut Store,
    /// Each provider's inventory, read at most once per call (see `fleet`).
    pub fleets: Fleets,
    /// Each target group's health, read at most once per call (see `targets`).
    pub targets: super::targets::TargetViews,
    /// The time of the call: every timing decision uses it.
    pub now: SystemTime,
    /// What happened, in order.
    pub out: Vec<Transition>,
}

impl<'a> Pass<'a> {
    /// A pass at `now` with nothing read yet.
    pub fn new(store: &'a mut Store, now: SystemTime) -> Self {
        Self {
            store,
            fleets: Fleets::default(),
            targets: super::targets::TargetViews::default(),
            now,
            out: Vec::new(),
        }
    }

    /// Announce that a step started acting.
    pub fn step_started(&mut self, cx: &StepCx<'_>, message: String) {
        self.out.push(Transition::StepStarted {
            plan: cx.plan.clone(),
            index: cx.step.index,
            action: cx.step.action.to_string(),
            message,
        });
    }

    /// Announce that a step was marked done.
    pub fn step_finished(&mut self, cx: &StepCx<'_>, message: String) {
        self.out.push(Transition::StepFinished {
            plan: cx.plan.clone(),
            index: cx.step.index,
            action: cx.step.action.to_string(),
            message,
        });
    }
}

/// The step being run: which provider it acts on, which plan it belongs to, and its
/// stored record as of the start of the step.
pub(super) struct StepCx<'s> {
    /// The provider of the plan.
    pub provider: &'s Arc<dyn Provider>,
    /// Its config name (the key of its inventory view).
    pub provider_name: &'s str,
    /// The plan, as transitions name it.
    pub plan: &'s PlanRef,
    /// The step.
    pub step: &'s StepRecord,
}

impl StepCx<'_> {
    /// The plan id.
    pub fn id(&self) -> &PlanId {
        &self.plan.plan
    }
}

/// A plan with its steps, read from the store.
pub(super) fn load(store: &Store, id: &PlanId) -> Result<PlanWithSteps, ExecutorError> {
    store
        .plan(id)
        .map_err(store_err("read plan", id))?
        .ok_or_else(|| ExecutorError::PlanNotFound { plan: id.clone() })
}

/// A step's stored detail, decoded.
pub(super) fn step_detail(plan: &PlanId, step: &StepRecord) -> Result<StepDetail, ExecutorError> {
    serde_json::from_value(step.detail.clone()).map_err(|source| ExecutorError::BadDocument {
        plan: plan.clone(),
        source,
    })
}

/// A step detail as stored.
pub(super) fn to_json(detail: &StepDetail) -> serde_json::Value {
    serde_json::to_value(detail).expect("a step detail always serializes")
}

/// The launch record of instances, sorted by id, launched "now" for the gates unless
/// the provider reports an earlier launch time (instances found after a restart).
pub(super) fn launched(instances: &[Instance], now: SystemTime) -> Vec<Launched> {
    let mut out: Vec<Launched> = instances
        .iter()
        .map(|i| Launched {
            id: i.id.to_string(),
            private_ip: i.private_ip.map(|ip| ip.to_string()),
            launched_at_ms: to_ms(now),
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    out
}

/// The ids of launched instances.
pub(super) fn ids(launched: &[Launched]) -> Vec<String> {
    launched.iter().map(|l| l.id.clone()).collect()
}

/// Time from `since` to `now`, zero if `now` is earlier.
pub(super) fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or(Duration::ZERO)
}

/// Record a generation's outcome in the history (absent generations are fine).
pub(super) fn set_outcome(
    store: &mut Store,
    group: &GroupName,
    hash: &SpecHash,
    outcome: GenerationOutcome,
) -> Result<(), ExecutorError> {
    match store.set_generation_outcome(group, hash, outcome) {
        Ok(()) | Err(StoreError::GenerationNotFound { .. }) => Ok(()),
        Err(source) => Err(ExecutorError::Store {
            operation: "set generation outcome",
            plan: "-".to_string(),
            source: Box::new(source),
        }),
    }
}
