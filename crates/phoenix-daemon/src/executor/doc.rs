//! The executor's own JSON documents, stored by `phoenix-store` beside the typed columns:
//! the plan document (`plans.doc`: everything needed to run the plan without the
//! revision, i.e. the whole group spec, the provider and the commit; for a prune plan,
//! which has no group spec, the group's name, the provider, the commit and the instance
//! ids) and the step detail (`steps.detail`: the planner's step plus what executing it
//! produced: launch tokens used, instances launched, instances terminated).
//!
//! Which document a plan has follows from its stored kind
//! ([`phoenix_store::PlanKind`]): a rollout has a [`PlanDoc`], a prune a [`PruneDoc`].
//! [`StoredPlan::decode`] reads a stored plan once into the typed plan of its kind, which
//! is all the executor's drivers see.
//!
//! Both are versioned by a `format` field and only ever gain optional fields.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phoenix_core::plan::Step;
use phoenix_core::{InstanceGroup, SpecHash};
use phoenix_store::{PlanKind, PlanRecord, PlanWithSteps, StepRecord, Store};
use serde::{Deserialize, Serialize};

use super::context::load;
use super::error::ExecutorError;
use super::transition::PlanRef;

/// `plans.doc`: how to run the plan, with no need for the revision it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlanDoc {
    /// Document format; 1 today.
    pub format: u32,
    /// The provider the group runs on.
    pub provider: String,
    /// The revision the planner planned.
    pub revision: String,
    /// The commit stamped on launched instances (`phoenix:commit`).
    pub commit: String,
    /// The whole group document: template, replicas, rollout, health.
    pub group: InstanceGroup,
    /// Set when the plan was inserted from a held revision (a mass removal): the
    /// document's hold reason. Such a plan waits for approval; if a later pass proposes
    /// the group's plan without a hold, the held plan gives way to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
}

/// `plans.doc` of a prune plan: terminate instances of a group that is no longer in the
/// desired state (orphans). There is no group spec, so no health floor and no target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PruneDoc {
    /// Document format; 1 today.
    pub format: u32,
    /// Always `prune`: tells a human reading `plans.doc` what this is.
    pub kind: String,
    /// The provider the orphans are on.
    pub provider: String,
    /// The revision the planner planned (the one the group is absent from).
    pub revision: String,
    /// The commit of that revision.
    pub commit: String,
    /// The group tag (`phoenix:group`) of the orphans.
    pub group: String,
    /// The instances to terminate, as the planner granted them (budget-capped, sorted).
    pub instance_ids: Vec<String>,
    /// Set when the revision was held (see [`PlanDoc::hold`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
}

/// The `kind` of a [`PruneDoc`].
pub(crate) const PRUNE_KIND: &str = "prune";

/// What `submit` reads of an active plan's document, whichever its kind: the revision
/// it was planned at and the hold it was inserted under.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct DocHeader {
    /// [`PlanDoc::revision`] or [`PruneDoc::revision`].
    #[serde(default)]
    pub revision: Option<String>,
    /// [`PlanDoc::hold`] or [`PruneDoc::hold`].
    #[serde(default)]
    pub hold: Option<String>,
}

impl DocHeader {
    /// The header of a stored plan document; an unreadable one reads as no revision and
    /// no hold.
    pub fn of(record: &PlanRecord) -> Self {
        Self::deserialize(&record.doc).unwrap_or_default()
    }
}

/// A stored plan decoded once into the typed plan of its kind.
#[derive(Debug)]
pub(crate) enum StoredPlan {
    /// Converge a desired group to a target hash.
    Rollout(RolloutPlan),
    /// Terminate orphans of a group gone from the desired state.
    Prune(PrunePlan),
}

/// A rollout plan: its record, target hash, document and steps.
#[derive(Debug)]
pub(crate) struct RolloutPlan {
    /// The stored plan (status as last read).
    pub record: PlanRecord,
    /// The hash it converges to.
    pub target: SpecHash,
    /// Its document.
    pub doc: PlanDoc,
    /// Its steps, by index, as last read (or patched by the driver).
    pub steps: Vec<StepRecord>,
    /// The plan as transitions name it.
    pub pref: PlanRef,
}

/// A prune plan: its record, document and steps.
#[derive(Debug)]
pub(crate) struct PrunePlan {
    /// The stored plan (status as last read).
    pub record: PlanRecord,
    /// Its document.
    pub doc: PruneDoc,
    /// Its steps, by index, as last read.
    pub steps: Vec<StepRecord>,
    /// The plan as transitions name it.
    pub pref: PlanRef,
}

impl StoredPlan {
    /// Decode a stored plan by its kind; a document that does not parse is
    /// [`ExecutorError::BadDocument`].
    pub fn decode(plan: PlanWithSteps) -> Result<Self, ExecutorError> {
        let PlanWithSteps {
            plan: record,
            steps,
        } = plan;
        let bad = |source| ExecutorError::BadDocument {
            plan: record.id.clone(),
            source,
        };
        let pref = PlanRef::of(&record);
        Ok(match record.kind {
            PlanKind::Rollout { target_hash, .. } => {
                let doc = PlanDoc::deserialize(&record.doc).map_err(bad)?;
                StoredPlan::Rollout(RolloutPlan {
                    record,
                    target: target_hash,
                    doc,
                    steps,
                    pref,
                })
            }
            PlanKind::Prune => {
                let doc = PruneDoc::deserialize(&record.doc).map_err(bad)?;
                StoredPlan::Prune(PrunePlan {
                    record,
                    doc,
                    steps,
                    pref,
                })
            }
        })
    }
}

impl RolloutPlan {
    /// Read the plan's record and steps again (its kind and document never change).
    pub fn reload(&mut self, store: &Store) -> Result<(), ExecutorError> {
        let fresh = load(store, &self.record.id)?;
        self.record = fresh.plan;
        self.steps = fresh.steps;
        Ok(())
    }
}

impl PrunePlan {
    /// Read the plan's steps again.
    pub fn reload(&mut self, store: &Store) -> Result<(), ExecutorError> {
        let fresh = load(store, &self.record.id)?;
        self.record = fresh.plan;
        self.steps = fresh.steps;
        Ok(())
    }
}

/// One instance a launch step created (or found by its launch token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Launched {
    /// Instance id.
    pub id: String,
    /// Private address, for the HTTP probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
    /// When the executor saw it launched (unix ms of the `now` passed in): grace and
    /// deadline count from here.
    pub launched_at_ms: u64,
}

/// `steps.detail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StepDetail {
    /// The planner's step; `None` for the rollback step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    /// Launch steps: every launch token used, oldest first (one per attempt). Written
    /// with the intent, before the launch call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<String>,
    /// Launch steps: the instances launched, when done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<Launched>,
    /// Terminate and rollback steps: the ids the step terminates (written with the intent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terminated: Vec<String>,
    /// Rollback steps: instances of the failed generation kept to hold the healthy floor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
    /// Rollback steps: why the plan failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Register steps: the instances the step registers (written with the intent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registered: Vec<String>,
    /// Deregister steps: the instances the step deregisters (written with the intent);
    /// rollback steps: the failed generation's instances it deregisters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deregistered: Vec<String>,
    /// Rollback steps: old instances the plan had deregistered, registered again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restored: Vec<String>,
    /// Wait-drained steps (and rollbacks that drain): the drain cap in ms, resolved
    /// once when the wait began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_ms: Option<u64>,
    /// Rollback steps that drain: until when (unix ms) they wait for draining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_until_ms: Option<u64>,
}

/// What the API shows of a stored step detail: the launch count, and the instances the
/// step acts on or created (a launch's instances once launched, a terminate's or a
/// rollback's terminated ids once decided, else the ids the planner named). A detail
/// that does not parse (written by another version) shows nothing rather than failing.
pub(crate) fn step_summary(detail: &serde_json::Value) -> (Option<u32>, Vec<String>) {
    let Ok(detail) = StepDetail::deserialize(detail) else {
        return (None, Vec::new());
    };
    let count = match &detail.step {
        Some(Step::Launch { count }) => Some(*count),
        _ => None,
    };
    let ids = if !detail.instances.is_empty() {
        detail.instances.into_iter().map(|l| l.id).collect()
    } else if !detail.terminated.is_empty() {
        detail.terminated
    } else if !detail.registered.is_empty() {
        detail.registered
    } else if !detail.deregistered.is_empty() {
        detail.deregistered
    } else {
        match detail.step {
            Some(
                Step::Terminate { instance_ids }
                | Step::WaitHealthy { instance_ids, .. }
                | Step::Register { instance_ids, .. }
                | Step::WaitInService { instance_ids, .. }
                | Step::Deregister { instance_ids, .. }
                | Step::WaitDrained { instance_ids, .. },
            ) => instance_ids,
            _ => Vec::new(),
        }
    };
    (count, ids)
}

impl StepDetail {
    /// The detail of a fresh planner step.
    pub fn of(step: Step) -> Self {
        Self {
            step: Some(step),
            tokens: Vec::new(),
            instances: Vec::new(),
            terminated: Vec::new(),
            kept: Vec::new(),
            reason: None,
            registered: Vec::new(),
            deregistered: Vec::new(),
            restored: Vec::new(),
            drain_ms: None,
            drain_until_ms: None,
        }
    }

    /// The detail of a rollback step.
    pub fn rollback(reason: String) -> Self {
        Self {
            step: None,
            tokens: Vec::new(),
            instances: Vec::new(),
            terminated: Vec::new(),
            kept: Vec::new(),
            reason: Some(reason),
            registered: Vec::new(),
            deregistered: Vec::new(),
            restored: Vec::new(),
            drain_ms: None,
            drain_until_ms: None,
        }
    }
}

/// Unix milliseconds of a time (0 before the epoch).
pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The time of unix milliseconds.
pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The deterministic launch token of a step attempt: `<plan id>.<step index>.<attempt>`.
pub fn launch_token(plan: &str, index: u32, attempt: u32) -> String {
    format!("{plan}.{index}.{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(detail: &StepDetail) -> serde_json::Value {
        serde_json::to_value(detail).expect("a step detail serializes")
    }

    /// The API reads the details exactly as the executor writes them (the planner's step
    /// nested under `step`, what executing it produced beside it).
    #[test]
    fn step_summary_reads_what_the_executor_writes() {
        let mut launch = StepDetail::of(Step::Launch { count: 2 });
        assert_eq!(step_summary(&json(&launch)), (Some(2), Vec::new()));
        launch.tokens.push("p.0.1".into());
        launch.instances = ["i-1", "i-2"]
            .map(|id| Launched {
                id: id.into(),
                private_ip: None,
                launched_at_ms: 1,
            })
            .to_vec();
        assert_eq!(
            step_summary(&json(&launch)),
            (Some(2), vec!["i-1".to_string(), "i-2".to_string()])
        );

        let mut terminate = StepDetail::of(Step::Terminate {
            instance_ids: vec!["i-a".into(), "i-b".into()],
        });
        assert_eq!(
            step_summary(&json(&terminate)),
            (None, vec!["i-a".to_string(), "i-b".to_string()])
        );
        terminate.terminated = vec!["i-a".into()];
        assert_eq!(
            step_summary(&json(&terminate)),
            (None, vec!["i-a".to_string()]),
            "what was really terminated, once decided"
        );

        let mut rollback = StepDetail::rollback("unhealthy".into());
        rollback.terminated = vec!["i-9".into()];
        assert_eq!(
            step_summary(&json(&rollback)),
            (None, vec!["i-9".to_string()])
        );
        assert_eq!(
            step_summary(&serde_json::json!({"step": "from a newer phoenix"})),
            (None, Vec::new())
        );
    }
}
