//! The plan executor: carries plans out step by step, durably (issue 6; design section 6;
//! behaviour documented in `docs/executor.md`).
//!
//! [`Executor::submit`] turns the planned groups of a [`PlanDocument`] into store plans
//! (one active plan per group; a new target hash supersedes the running plan once its
//! in-flight step has finished). [`Executor::advance`] drives every running plan as far
//! as it can go without sleeping and says when it wants to be called again.
//! [`Executor::recover`] is called once at start: it reconciles steps whose intent was
//! written before a crash with the provider's inventory (by launch token).
//!
//! Prune plans (orphans of a group gone from the desired state, `reconcile.prune: true`)
//! have no target hash: one terminate step, driven by `drive_prune`, which re-checks
//! before terminating that the group is still absent from the desired state of the last
//! `submit`, that the inventory is complete, and that each instance is still ours and
//! of that group; no health floor applies. Plans of a held revision (a mass removal)
//! are inserted awaiting approval and released one by one by [`Executor::approve`].
//!
//! Write-ahead protocol: every step is written to the store (`write_intent`) before it
//! acts and marked done or failed after; launch tokens are deterministic
//! (`<plan>.<step>.<attempt>`) and stamped on what they launch, and providers launch
//! idempotently per token. The executor holds no store: the caller passes `&mut Store`
//! to each call. Store calls are synchronous (about 40 µs each, no fsync with the
//! default `synchronous=NORMAL`); calling them from the async loop task is accepted, as
//! the loop is the store's only user and the calls are short.
//!
//! Inventory: one `advance` (and `recover`) reads each provider's inventory at most
//! once, when a step first needs it (a terminate's healthy floor, a rollback, a health
//! gate with `check: http` or `none`), into a view indexed by instance, group and launch
//! token (`fleet`); each plan's lookups cost its own instances, not the fleet. The view
//! follows what the executor does in the same pass (launches added, terminations
//! removed, observed health kept), so a later floor check in the pass is exact for the
//! executor's own actions. An incomplete read makes every terminate of the pass wait.
//!
//! All timing decisions use the `now` passed in, never the clock; nothing here sleeps.

pub(crate) mod doc;
mod fleet;
mod health;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_cloud::{ErrorKind, LaunchRequest, Provider, ProviderError};
use phoenix_core::model::Instance;
use phoenix_core::plan::{GroupStatus, PlanApproval, PlanDocument, RolloutLimits, Step};
use phoenix_core::spec::{HealthCheck, ParsedGroup};
use phoenix_core::{GroupName, InstanceGroup, SpecHash, Text};
use phoenix_store::{
    GenerationOutcome, NewPlan, NewStep, PlanId, PlanRecord, PlanStatus, PlanWithSteps, StepIntent,
    StepRecord, StepStatus, Store, StoreError,
};

pub use doc::launch_token;
pub(crate) use doc::step_summary;
use doc::{Launched, PRUNE_KIND, PlanDoc, PruneDoc, ROLLBACK_ACTION, StepDetail, from_ms, to_ms};
use fleet::Fleets;
use health::Verdict;

/// Tunables of the executor. Every field has a documented default.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorOptions {
    /// How soon to be called again while waiting on health (or a provider that failed).
    /// Default 2 s.
    pub poll_interval: Duration,
    /// Timeout of one HTTP health probe (connect and response). Default 2 s.
    pub probe_timeout: Duration,
    /// How long an instance must stay healthy, continuously, before a `wait_healthy`
    /// step counts it. Default 0 s (one healthy observation).
    pub min_healthy_time: Duration,
    /// Attempts of one launch step, the first included; each attempt has its own launch
    /// token. Default 4.
    pub launch_attempts: u32,
    /// Attempts of one terminate or rollback step. Default 5.
    pub terminate_attempts: u32,
    /// First retry delay; doubles per attempt. Default 1 s.
    pub retry_base: Duration,
    /// Longest retry delay. Default 30 s.
    pub retry_cap: Duration,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            probe_timeout: Duration::from_secs(2),
            min_healthy_time: Duration::ZERO,
            launch_attempts: 4,
            terminate_attempts: 5,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(30),
        }
    }
}

/// Which plan a [`Transition`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRef {
    /// The plan id (stamped as `phoenix:plan`).
    pub plan: PlanId,
    /// The group.
    pub group: GroupName,
    /// The hash the plan converges to; `None` for a prune plan (terminating the
    /// instances of a group no longer in the desired state).
    pub target_hash: Option<SpecHash>,
    /// The commit the target (or the removal) came from.
    pub commit: String,
}

impl PlanRef {
    fn of(record: &PlanRecord) -> Self {
        Self {
            plan: record.id.clone(),
            group: record.group.clone(),
            target_hash: record.target_hash,
            commit: record.commit.clone(),
        }
    }
}

/// Something that happened to a plan; the loop turns these into API events and alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The plan was inserted running, or approved.
    PlanStarted {
        /// The plan.
        plan: PlanRef,
        /// For humans.
        message: String,
    },
    /// A step's intent was written and it started acting.
    StepStarted {
        /// The plan.
        plan: PlanRef,
        /// Step index from 0.
        index: u32,
        /// `launch`, `wait_healthy`, `bake`, `terminate`, `rollback`.
        action: String,
        /// For humans.
        message: String,
    },
    /// A step was marked done.
    StepFinished {
        /// The plan.
        plan: PlanRef,
        /// Step index.
        index: u32,
        /// The step's action.
        action: String,
        /// For humans.
        message: String,
    },
    /// Every step done.
    PlanSucceeded {
        /// The plan.
        plan: PlanRef,
        /// For humans.
        message: String,
    },
    /// The plan gave up without rollback; instances were left as they are.
    PlanFailed {
        /// The plan.
        plan: PlanRef,
        /// Why.
        message: String,
    },
    /// The plan failed and its new instances were terminated; the old ones kept.
    RolledBack {
        /// The plan.
        plan: PlanRef,
        /// Why it failed and what was terminated.
        message: String,
    },
    /// Cancelled by an operator.
    PlanCancelled {
        /// The plan.
        plan: PlanRef,
        /// For humans.
        message: String,
    },
    /// Inserted with `approval: manual`; waits for [`Executor::approve`].
    AwaitingApproval {
        /// The plan.
        plan: PlanRef,
        /// For humans.
        message: String,
    },
    /// A newer target hash replaced the plan.
    Superseded {
        /// The old plan.
        plan: PlanRef,
        /// The plan that replaced it, when it was inserted at the same time; `None` when
        /// the group is to be re-planned on the next pass.
        by: Option<PlanId>,
        /// For humans.
        message: String,
    },
}

impl Transition {
    /// The plan the transition is about.
    pub fn plan(&self) -> &PlanRef {
        match self {
            Transition::PlanStarted { plan, .. }
            | Transition::StepStarted { plan, .. }
            | Transition::StepFinished { plan, .. }
            | Transition::PlanSucceeded { plan, .. }
            | Transition::PlanFailed { plan, .. }
            | Transition::RolledBack { plan, .. }
            | Transition::PlanCancelled { plan, .. }
            | Transition::AwaitingApproval { plan, .. }
            | Transition::Superseded { plan, .. } => plan,
        }
    }

    /// The human message.
    pub fn message(&self) -> &str {
        match self {
            Transition::PlanStarted { message, .. }
            | Transition::StepStarted { message, .. }
            | Transition::StepFinished { message, .. }
            | Transition::PlanSucceeded { message, .. }
            | Transition::PlanFailed { message, .. }
            | Transition::RolledBack { message, .. }
            | Transition::PlanCancelled { message, .. }
            | Transition::AwaitingApproval { message, .. }
            | Transition::Superseded { message, .. } => message,
        }
    }

    /// A snake_case name (`plan_started`, `rolled_back`, ...), for logs and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Transition::PlanStarted { .. } => "plan_started",
            Transition::StepStarted { .. } => "step_started",
            Transition::StepFinished { .. } => "step_finished",
            Transition::PlanSucceeded { .. } => "plan_succeeded",
            Transition::PlanFailed { .. } => "plan_failed",
            Transition::RolledBack { .. } => "rolled_back",
            Transition::PlanCancelled { .. } => "plan_cancelled",
            Transition::AwaitingApproval { .. } => "awaiting_approval",
            Transition::Superseded { .. } => "superseded",
        }
    }
}

/// What [`Executor::advance`] did and when it wants to run again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// What happened, in order.
    pub transitions: Vec<Transition>,
    /// Call `advance` again after this long (zero: re-plan and advance right away);
    /// `None` when no plan is running.
    pub wake_after: Option<Duration>,
}

/// Errors of the executor. Provider failures are not errors: they become retries, plan
/// failures or rollbacks. These are the store refusing or failing, and misuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// A store call failed.
    #[error("store call `{operation}` failed (plan {plan})")]
    Store {
        /// What the executor was doing.
        operation: &'static str,
        /// The plan concerned, or `-`.
        plan: String,
        /// The store's error (boxed: it is large and errors are rare).
        #[source]
        source: Box<StoreError>,
    },
    /// No such plan.
    #[error("plan {plan} not found")]
    PlanNotFound {
        /// The plan.
        plan: PlanId,
    },
    /// `approve` on a plan that is not awaiting approval.
    #[error("plan {plan} is {status}, not awaiting approval")]
    NotAwaitingApproval {
        /// The plan.
        plan: PlanId,
        /// Its status.
        status: PlanStatus,
    },
    /// `cancel` on a plan that already finished.
    #[error("plan {plan} already finished ({status})")]
    NotActive {
        /// The plan.
        plan: PlanId,
        /// Its final status.
        status: PlanStatus,
    },
    /// The stored plan document (or a step detail) does not parse.
    #[error("plan {plan} has an unreadable executor document")]
    BadDocument {
        /// The plan.
        plan: PlanId,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

fn store_err(operation: &'static str, plan: &PlanId) -> impl FnOnce(StoreError) -> ExecutorError {
    let plan = plan.to_string();
    move |source| ExecutorError::Store {
        operation,
        plan,
        source: Box::new(source),
    }
}

/// Per-plan state that need not survive a restart (it is rebuilt conservatively).
#[derive(Debug, Default)]
struct Runtime {
    /// When each instance was first seen healthy in an unbroken run (min healthy time).
    healthy_since: HashMap<String, SystemTime>,
    /// Do not retry the current step before this.
    retry_at: Option<SystemTime>,
    /// A newer target hash is waiting: supersede once no step is in flight.
    supersede: Option<SpecHash>,
    /// When a terminate step was first held back by the healthy floor.
    held_since: Option<SystemTime>,
    /// Instances of done launch steps, by step index (done steps never change).
    launched: HashMap<u32, Vec<Launched>>,
}

/// What running one step produced.
enum StepOutcome {
    /// Marked done (with this detail, when it changed); go on with the next step.
    Done(Option<serde_json::Value>),
    /// Not finished; call again after this long.
    Wait(Duration),
    /// Failed for good: the plan fails (or rolls back).
    Failed(String),
}

/// Carries plans out against the providers. See the module docs.
#[derive(Debug)]
pub struct Executor {
    owner: String,
    providers: BTreeMap<String, Arc<dyn Provider>>,
    options: ExecutorOptions,
    http: reqwest::Client,
    runtime: HashMap<PlanId, Runtime>,
    /// The desired groups of the last `submit`: a prune plan runs only while its group
    /// is absent from them (on its provider). `None` until the first `submit` after a
    /// start: prunes wait until the current desired state is known.
    desired: Option<Desired>,
}

/// The desired state as of the last [`Executor::submit`].
///
/// Kept between passes for every desired group (100,000 at the largest fleets), so a
/// group is its shared name and its provider one shared text per provider, in one
/// exactly sized list sorted by name (names are unique in a revision).
#[derive(Debug)]
struct Desired {
    /// The revision.
    revision: String,
    /// `(group, provider)` of every desired group, sorted by group.
    groups: Box<[(GroupName, Text)]>,
}

impl Desired {
    fn new(revision: String, groups: &[ParsedGroup]) -> Self {
        let mut providers: Vec<Text> = Vec::new();
        let mut list: Vec<(GroupName, Text)> = Vec::with_capacity(groups.len());
        for g in groups {
            let name = g.group.spec.provider.as_str();
            let provider = match providers.iter().find(|p| p.as_str() == name) {
                Some(p) => p.clone(),
                None => {
                    let p = Text::from(name);
                    providers.push(p.clone());
                    p
                }
            };
            list.push((g.group.name().clone(), provider));
        }
        list.sort_unstable();
        Self {
            revision,
            groups: list.into_boxed_slice(),
        }
    }

    fn contains(&self, group: &str, provider: &str) -> bool {
        self.groups
            .binary_search_by(|(g, p)| (g.as_str(), p.as_str()).cmp(&(group, provider)))
            .is_ok()
    }
}

/// What `submit` makes of one planned group.
enum Proposal {
    /// Converge a desired group to `target`.
    Rollout { target: SpecHash, doc: Box<PlanDoc> },
    /// Terminate orphans of a group gone from the desired state.
    Prune { group: GroupName, doc: PruneDoc },
}

impl Executor {
    /// An executor acting as `owner` (the `phoenix:owner` tag) on these providers, keyed
    /// by config name.
    pub fn new(
        owner: String,
        providers: BTreeMap<String, Arc<dyn Provider>>,
        options: ExecutorOptions,
    ) -> Self {
        let http = health::client(options.probe_timeout);
        Self {
            owner,
            providers,
            options,
            http,
            runtime: HashMap::new(),
            desired: None,
        }
    }

    /// The options in force.
    pub fn options(&self) -> &ExecutorOptions {
        &self.options
    }

    /// After a planning pass in enforce mode: turn the document's planned groups into
    /// store plans.
    ///
    /// - A group whose active plan has the same target hash: nothing (the planner keeps
    ///   proposing plans while one runs; they are ignored).
    /// - A different target hash: a plan waiting for approval, or running with no step in
    ///   flight, is superseded at once by the new plan; a running plan with a step in
    ///   flight is superseded by [`Executor::advance`] once that step finishes, and the
    ///   group is planned again on the next pass.
    /// - `approval: manual` plans and every plan of a held revision (`approval: held`,
    ///   a mass removal) are inserted awaiting approval. A held plan still waiting when a
    ///   later pass proposes the group's plan without a hold gives way to it (or, the
    ///   same plan, is released).
    /// - Orphan prunes (no desired hash) become prune plans: terminate exactly the named
    ///   instances. A prune never supersedes another plan of its group; it waits until
    ///   the group has no active plan.
    /// - Groups not `planned` or `awaiting_approval` are skipped. A plan id already in
    ///   the store (for example a plan an operator cancelled, proposed again unchanged)
    ///   is not run again.
    ///
    /// The desired groups are remembered: [`Executor::advance`] stops a prune plan whose
    /// group is desired again (on its provider) instead of terminating.
    pub fn submit(
        &mut self,
        store: &mut Store,
        doc: &PlanDocument,
        groups: &[ParsedGroup],
        commit: &str,
        now: SystemTime,
    ) -> Result<Vec<Transition>, ExecutorError> {
        let mut out = Vec::new();
        let by_name: HashMap<&str, &ParsedGroup> = groups
            .iter()
            .map(|g| (g.group.name().as_str(), g))
            .collect();
        // The previous list goes before the new one is built: one copy at a time.
        self.desired = None;
        self.desired = Some(Desired::new(doc.revision.clone(), groups));
        for report in &doc.groups {
            if report.steps.is_empty()
                || !matches!(
                    report.status,
                    GroupStatus::Planned | GroupStatus::AwaitingApproval
                )
            {
                continue;
            }
            let (Some(plan_id), Some(approval)) = (&report.plan_id, report.approval) else {
                continue;
            };
            if !self.providers.contains_key(report.provider.as_str()) {
                tracing::warn!(group = %report.name, provider = %report.provider,
                    "planned group names a provider that is not configured; skipped");
                continue;
            }
            let hold = (approval == PlanApproval::Held).then(|| {
                doc.hold.as_ref().map_or_else(
                    || "the revision is held for approval".to_string(),
                    |h| h.reason.clone(),
                )
            });
            let proposal = match report.desired_hash {
                Some(target) => {
                    let Some(parsed) = by_name.get(report.name.as_str()).copied() else {
                        tracing::warn!(group = %report.name, "planned group has no desired spec; skipped");
                        continue;
                    };
                    Proposal::Rollout {
                        target,
                        doc: Box::new(PlanDoc {
                            format: 1,
                            provider: report.provider.to_string(),
                            revision: doc.revision.clone(),
                            commit: commit.to_string(),
                            group: InstanceGroup::clone(&parsed.group),
                            hold: hold.clone(),
                        }),
                    }
                }
                None => {
                    let group = report.name.clone();
                    let instance_ids: Vec<String> = report
                        .steps
                        .iter()
                        .flat_map(|s| match s {
                            Step::Terminate { instance_ids } => instance_ids.clone(),
                            _ => Vec::new(),
                        })
                        .collect();
                    if report
                        .steps
                        .iter()
                        .any(|s| !matches!(s, Step::Terminate { .. }))
                    {
                        tracing::warn!(group = %report.name, "orphan prune with steps other than terminate; skipped");
                        continue;
                    }
                    Proposal::Prune {
                        group,
                        doc: PruneDoc {
                            format: 1,
                            kind: PRUNE_KIND.to_string(),
                            provider: report.provider.to_string(),
                            revision: doc.revision.clone(),
                            commit: commit.to_string(),
                            group: report.name.to_string(),
                            instance_ids,
                            hold: hold.clone(),
                        },
                    }
                }
            };
            let (group, target, strategy, plan_doc) = match &proposal {
                Proposal::Rollout { target, doc } => (
                    doc.group.name().clone(),
                    Some(*target),
                    Some(doc.group.spec.rollout.strategy),
                    serde_json::to_value(doc),
                ),
                Proposal::Prune { group, doc } => {
                    (group.clone(), None, None, serde_json::to_value(doc))
                }
            };
            let active = store.active_plan(&group).map_err(store_err(
                "find active plan",
                &PlanId::new(plan_id.as_str()),
            ))?;
            // A plan from a held revision still waiting, and a *newer* revision proposes
            // the group without a hold (the groups came back): the held plan gives way.
            // At the same revision it keeps waiting even if the hold no longer shows (an
            // operator approved part of the mass removal, which lowers the fraction): one
            // approval is for exactly one plan.
            let held_lifted = active.as_ref().is_some_and(|old| {
                old.plan.status == PlanStatus::AwaitingApproval
                    && is_held(&old.plan)
                    && hold.is_none()
                    && old
                        .plan
                        .doc
                        .get("revision")
                        .and_then(serde_json::Value::as_str)
                        != Some(doc.revision.as_str())
            });
            let Some(id) = fresh_plan_id(store, plan_id)? else {
                continue;
            };
            let status = if approval == PlanApproval::Auto {
                PlanStatus::Running
            } else {
                PlanStatus::AwaitingApproval
            };
            let new = NewPlan {
                id: id.clone(),
                group,
                target_hash: target,
                commit: commit.to_string(),
                strategy,
                status,
                doc: plan_doc.map_err(|source| ExecutorError::BadDocument {
                    plan: id.clone(),
                    source,
                })?,
                steps: report
                    .steps
                    .iter()
                    .map(|step| NewStep {
                        action: action_of(step).to_string(),
                        detail: serde_json::to_value(StepDetail::of(step.clone()))
                            .expect("a step detail always serializes"),
                    })
                    .collect(),
            };
            let new_ref = PlanRef {
                plan: id.clone(),
                group: new.group.clone(),
                target_hash: target,
                commit: commit.to_string(),
            };
            match active {
                None => {
                    store
                        .insert_plan(&new, now)
                        .map_err(store_err("insert plan", &id))?;
                }
                // A held plan gives way to the group's plan proposed without a hold.
                Some(old) if held_lifted => {
                    self.supersede_now(store, &old, &new, now, &mut out)?;
                }
                // A prune waits for the group's active plan (a rollout, or another prune
                // of the same group still running or waiting): it is proposed again.
                Some(_) if target.is_none() => continue,
                Some(old) if old.plan.target_hash == target => continue,
                Some(old) => {
                    let in_flight = old.steps.iter().any(|s| s.status == StepStatus::Intent);
                    if old.plan.status == PlanStatus::Running && in_flight {
                        self.runtime
                            .entry(old.plan.id.clone())
                            .or_default()
                            .supersede = target;
                        continue;
                    }
                    self.supersede_now(store, &old, &new, now, &mut out)?;
                }
            }
            let steps = report.steps.len();
            out.push(if let Some(reason) = &hold {
                Transition::AwaitingApproval {
                    plan: new_ref,
                    message: format!(
                        "held for approval as a mass removal ({reason}); {steps} steps wait for POST /api/v1/plans/{id}/approve"
                    ),
                }
            } else if status == PlanStatus::AwaitingApproval {
                Transition::AwaitingApproval {
                    plan: new_ref,
                    message: format!("{steps} steps wait for approval (approval: manual)"),
                }
            } else {
                Transition::PlanStarted {
                    plan: new_ref,
                    message: match &proposal {
                        Proposal::Rollout { target, .. } => {
                            format!("{steps} steps towards {target} (commit {commit})")
                        }
                        Proposal::Prune { doc, .. } => format!(
                            "prune: terminate {} (group `{}` is no longer in the desired state at commit {commit})",
                            doc.instance_ids.join(", "),
                            doc.group
                        ),
                    },
                }
            });
        }
        Ok(out)
    }

    /// Replace `old` (waiting for approval, or running with no step in flight) by `new`
    /// in one store transaction.
    fn supersede_now(
        &mut self,
        store: &mut Store,
        old: &PlanWithSteps,
        new: &NewPlan,
        now: SystemTime,
        out: &mut Vec<Transition>,
    ) -> Result<(), ExecutorError> {
        store
            .supersede_plan(&old.plan.id, new, now)
            .map_err(store_err("supersede plan", &old.plan.id))?;
        self.runtime.remove(&old.plan.id);
        if let Some(hash) = &old.plan.target_hash {
            set_outcome(store, &old.plan.group, hash, GenerationOutcome::Superseded)?;
        }
        let towards = match &new.target_hash {
            Some(t) => format!("for {t}"),
            None => "(prune)".to_string(),
        };
        out.push(Transition::Superseded {
            plan: PlanRef::of(&old.plan),
            by: Some(new.id.clone()),
            message: format!(
                "superseded by plan {} {towards} (commit {})",
                new.id, new.commit
            ),
        });
        Ok(())
    }

    /// Drive every running plan as far as it can go now, without sleeping.
    pub async fn advance(
        &mut self,
        store: &mut Store,
        now: SystemTime,
    ) -> Result<Progress, ExecutorError> {
        let plans = store
            .unfinished_plans()
            .map_err(store_err("list unfinished plans", &PlanId::new("-")))?;
        let mut progress = Progress::default();
        let mut live = BTreeSet::new();
        // One inventory per provider for the whole pass, read when first needed.
        let mut fleets = Fleets::default();
        for plan in plans {
            live.insert(plan.plan.id.clone());
            let prune = plan.plan.target_hash.is_none();
            if plan.plan.status != PlanStatus::Running
                && !(prune && plan.plan.status == PlanStatus::AwaitingApproval)
            {
                continue;
            }
            let id = plan.plan.id.clone();
            let driven = if prune {
                self.drive_prune(store, &mut fleets, plan, now, &mut progress.transitions)
                    .await
            } else {
                self.drive(store, &mut fleets, plan, now, &mut progress.transitions)
                    .await
            };
            let wait = match driven {
                Ok(wait) => wait,
                // One plan whose documents do not parse (written by a newer Phoenix, or
                // edited by hand) must not stop every other plan: it is left alone and
                // reported on every pass.
                Err(err @ ExecutorError::BadDocument { .. }) => {
                    tracing::error!(plan = %id, error = %phoenix_core::chain(&err), "plan skipped");
                    None
                }
                Err(err) => return Err(err),
            };
            if let Some(wait) = wait {
                progress.wake_after = Some(progress.wake_after.map_or(wait, |w| w.min(wait)));
            }
        }
        self.runtime.retain(|id, _| live.contains(id));
        Ok(progress)
    }

    /// Approve a plan awaiting approval: it starts running on the next `advance`.
    pub fn approve(
        &mut self,
        store: &mut Store,
        plan: &PlanId,
        now: SystemTime,
    ) -> Result<PlanStatus, ExecutorError> {
        let record = load(store, plan)?;
        if record.plan.status != PlanStatus::AwaitingApproval {
            return Err(ExecutorError::NotAwaitingApproval {
                plan: plan.clone(),
                status: record.plan.status,
            });
        }
        store
            .set_plan_status(plan, PlanStatus::Running, now)
            .map_err(store_err("approve plan", plan))?;
        Ok(PlanStatus::Running)
    }

    /// Cancel an active plan. A wait or bake step in flight is marked failed
    /// (`cancelled`); instances are left as they are (the next planning pass sees them).
    pub fn cancel(
        &mut self,
        store: &mut Store,
        plan: &PlanId,
        now: SystemTime,
    ) -> Result<PlanStatus, ExecutorError> {
        let record = load(store, plan)?;
        if !record.plan.status.is_active() {
            return Err(ExecutorError::NotActive {
                plan: plan.clone(),
                status: record.plan.status,
            });
        }
        for step in record
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Intent)
        {
            store
                .mark_step_failed(plan, step.index, "cancelled by an operator", None, now)
                .map_err(store_err("cancel plan", plan))?;
        }
        store
            .set_plan_status(plan, PlanStatus::Cancelled, now)
            .map_err(store_err("cancel plan", plan))?;
        self.runtime.remove(plan);
        Ok(PlanStatus::Cancelled)
    }

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
        let mut out = Vec::new();
        let mut fleets = Fleets::default();
        for plan in plans {
            if plan.plan.target_hash.is_none() {
                // A prune plan launches nothing: its terminate step, if in intent, is
                // re-run by `advance` (after the same checks as a first run).
                continue;
            }
            let id = plan.plan.id.clone();
            let doc = plan_doc(&plan.plan)?;
            let Some(provider) = self.providers.get(&doc.provider).cloned() else {
                tracing::warn!(plan = %id, provider = %doc.provider,
                    "unfinished plan names a provider that is not configured");
                continue;
            };
            for step in &plan.steps {
                if step.status != StepStatus::Intent || step.action != "launch" {
                    continue;
                }
                let (Some(token), Ok(mut detail)) =
                    (step.launch_token.clone(), step_detail(&id, step))
                else {
                    continue;
                };
                let Some(Step::Launch { count }) = detail.step else {
                    continue;
                };
                // One inventory per provider for every plan, indexed by launch token.
                // What an incomplete read shows exists; if it shows too few, the step
                // stays in intent and its launch, idempotent per token, tops it up.
                let fleet = fleets.of(&doc.provider);
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
                    continue;
                }
                detail.instances = launched(&found, now);
                let value = serde_json::to_value(&detail).expect("a step detail always serializes");
                store
                    .mark_step_done(&id, step.index, Some(&value), now)
                    .map_err(store_err("recover launch step", &id))?;
                out.push(Transition::StepFinished {
                    plan: PlanRef::of(&plan.plan),
                    index: step.index,
                    action: step.action.clone(),
                    message: format!(
                        "recovered after a restart: {n} instances found by launch token, nothing launched again"
                    ),
                });
            }
        }
        Ok(out)
    }

    /// Run one plan until it blocks or ends. Returns how long until it wants to run again.
    async fn drive(
        &mut self,
        store: &mut Store,
        fleets: &mut Fleets,
        mut plan: PlanWithSteps,
        now: SystemTime,
        out: &mut Vec<Transition>,
    ) -> Result<Option<Duration>, ExecutorError> {
        let id = plan.plan.id.clone();
        let pref = PlanRef::of(&plan.plan);
        let doc = plan_doc(&plan.plan)?;
        let Some(provider) = self.providers.get(&doc.provider).cloned() else {
            return Ok(None);
        };
        // Steps before `done_before` are done in the snapshot: the search for the next step
        // starts there, so a plan of S steps costs O(S) per pass, not O(S^2). Reset to 0
        // whenever the snapshot is read again.
        let mut done_before = 0;
        loop {
            // A rollback step, once appended, is the only step that still matters. It is
            // always the last step: only `fail_plan` appends steps, and only one rollback.
            if let Some(rb) = plan.steps.last().filter(|s| s.action == ROLLBACK_ACTION) {
                let rb = rb.clone();
                if rb.status == StepStatus::Done {
                    let detail = step_detail(&id, &rb)?;
                    self.finish_failed(store, &plan.plan, &doc, true, &detail, now, out)?;
                    return Ok(Some(Duration::ZERO));
                }
                match self
                    .run_rollback(store, fleets, &provider, &plan, &doc, &rb, now, out)
                    .await?
                {
                    StepOutcome::Done(_) => {
                        plan = load(store, &id)?;
                        done_before = 0;
                        continue;
                    }
                    StepOutcome::Wait(d) => return Ok(Some(d)),
                    StepOutcome::Failed(why) => {
                        // Rollback could not finish within its attempts: give up loudly,
                        // leaving what is there (every instance carries its group tag).
                        self.fail_plan(store, &plan, &doc, &why, now, out)?;
                        return Ok(Some(Duration::ZERO));
                    }
                }
            }
            let next = plan.steps[done_before..]
                .iter()
                .position(|s| s.status != StepStatus::Done)
                .map(|p| done_before + p);
            let Some(step) = next.map(|i| {
                done_before = i;
                plan.steps[i].clone()
            }) else {
                set_outcome(
                    store,
                    &plan.plan.group,
                    &target(&plan.plan),
                    GenerationOutcome::Succeeded,
                )?;
                store
                    .set_plan_status(&id, PlanStatus::Succeeded, now)
                    .map_err(store_err("finish plan", &id))?;
                self.runtime.remove(&id);
                out.push(Transition::PlanSucceeded {
                    plan: pref,
                    message: format!("all {} steps done", plan.steps.len()),
                });
                return Ok(Some(Duration::ZERO));
            };
            if step.status != StepStatus::Intent
                && let Some(by) = self.runtime.get(&id).and_then(|r| r.supersede)
            {
                set_outcome(
                    store,
                    &plan.plan.group,
                    &target(&plan.plan),
                    GenerationOutcome::Superseded,
                )?;
                store
                    .set_plan_status(&id, PlanStatus::Superseded, now)
                    .map_err(store_err("supersede plan", &id))?;
                self.runtime.remove(&id);
                out.push(Transition::Superseded {
                    plan: pref,
                    by: None,
                    message: format!(
                        "superseded by target {by} after its in-flight step finished; the group is re-planned"
                    ),
                });
                return Ok(Some(Duration::ZERO));
            }
            if step.status == StepStatus::Failed && !self.retryable(&step) {
                let why = step
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("step {} failed", step.index));
                self.fail_plan(store, &plan, &doc, &why, now, out)?;
                continue_or_return(store, &id, &mut plan)?;
                done_before = 0;
                if plan.plan.status != PlanStatus::Running {
                    return Ok(Some(Duration::ZERO));
                }
                continue;
            }
            let outcome = self
                .run_step(store, fleets, &provider, &plan, &doc, &step, now, out)
                .await?;
            match outcome {
                StepOutcome::Done(detail) => {
                    if let Some(rt) = self.runtime.get_mut(&id) {
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
                            plan = load(store, &id)?;
                            done_before = 0;
                        }
                    }
                }
                StepOutcome::Wait(d) => return Ok(Some(d)),
                StepOutcome::Failed(why) => {
                    self.fail_plan(store, &plan, &doc, &why, now, out)?;
                    continue_or_return(store, &id, &mut plan)?;
                    done_before = 0;
                    if plan.plan.status != PlanStatus::Running {
                        return Ok(Some(Duration::ZERO));
                    }
                }
            }
        }
    }

    /// Run a prune plan: terminate the named instances of a group that is no longer in
    /// the desired state. Returns how long until it wants to run again.
    ///
    /// Before anything is terminated (also when a terminate left in `intent` by a crash
    /// is re-run): the group must still be absent from the desired state of the current
    /// revision (the last `submit`) on the plan's provider, else the plan is superseded
    /// without terminating; the provider's inventory must be complete; and only named
    /// instances that still exist, are not shutting down, and still carry our owner and
    /// the group's tag are terminated. No health floor applies: the group is not desired.
    /// Failed terminate calls are retried like any terminate step.
    ///
    /// Also called for a prune waiting for approval: it only checks that its group is
    /// still absent, so a held prune whose group came back is withdrawn.
    async fn drive_prune(
        &mut self,
        store: &mut Store,
        fleets: &mut Fleets,
        plan: PlanWithSteps,
        now: SystemTime,
        out: &mut Vec<Transition>,
    ) -> Result<Option<Duration>, ExecutorError> {
        let id = plan.plan.id.clone();
        let pref = PlanRef::of(&plan.plan);
        let doc = prune_doc(&plan.plan)?;
        let Some(desired) = &self.desired else {
            // After a start, before the first `submit`: the current desired state is not
            // known yet, so nothing is pruned.
            return Ok(
                (plan.plan.status == PlanStatus::Running).then_some(self.options.poll_interval)
            );
        };
        let in_flight = plan.steps.iter().any(|s| s.status == StepStatus::Intent);
        let why = if desired.contains(&doc.group, &doc.provider) {
            Some(format!(
                "group `{}` is desired again at revision {}; the prune stopped, nothing more terminated",
                doc.group, desired.revision
            ))
        } else if !in_flight && let Some(by) = self.runtime.get(&id).and_then(|r| r.supersede) {
            Some(format!(
                "superseded by target {by}; the group is re-planned"
            ))
        } else {
            None
        };
        if let Some(why) = why {
            for s in plan.steps.iter().filter(|s| s.status == StepStatus::Intent) {
                store
                    .mark_step_failed(&id, s.index, &why, None, now)
                    .map_err(store_err("stop prune step", &id))?;
            }
            store
                .set_plan_status(&id, PlanStatus::Superseded, now)
                .map_err(store_err("stop prune", &id))?;
            self.runtime.remove(&id);
            tracing::info!(plan = %id, group = %doc.group, "prune withdrawn: {why}");
            out.push(Transition::Superseded {
                plan: pref,
                by: None,
                message: why,
            });
            return Ok(Some(Duration::ZERO));
        }
        if plan.plan.status != PlanStatus::Running {
            return Ok(None);
        }
        let Some(provider) = self.providers.get(&doc.provider).cloned() else {
            return Ok(None);
        };
        let mut plan = plan;
        loop {
            let Some(step) = plan
                .steps
                .iter()
                .find(|s| s.status != StepStatus::Done)
                .cloned()
            else {
                store
                    .set_plan_status(&id, PlanStatus::Succeeded, now)
                    .map_err(store_err("finish plan", &id))?;
                self.runtime.remove(&id);
                out.push(Transition::PlanSucceeded {
                    plan: pref,
                    message: format!(
                        "pruned group `{}`: all {} steps done",
                        doc.group,
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
                self.run_prune_step(store, fleets, &provider, &plan, &doc, &step, now, out)
                    .await?
            };
            match outcome {
                StepOutcome::Done(_) => {
                    if let Some(rt) = self.runtime.get_mut(&id) {
                        rt.retry_at = None;
                    }
                    plan = load(store, &id)?;
                }
                StepOutcome::Wait(d) => return Ok(Some(d)),
                StepOutcome::Failed(why) => {
                    for s in load(store, &id)?
                        .steps
                        .iter()
                        .filter(|s| s.status == StepStatus::Intent)
                    {
                        store
                            .mark_step_failed(&id, s.index, &why, None, now)
                            .map_err(store_err("mark step failed", &id))?;
                    }
                    store
                        .set_plan_status(&id, PlanStatus::Failed, now)
                        .map_err(store_err("finish failed plan", &id))?;
                    self.runtime.remove(&id);
                    out.push(Transition::PlanFailed {
                        plan: pref,
                        message: format!("{why}; instances left as they are"),
                    });
                    return Ok(Some(Duration::ZERO));
                }
            }
        }
    }

    /// The terminate step of a prune plan: the named instances still there and still
    /// ours, of that group, on a complete inventory.
    #[allow(clippy::too_many_arguments)]
    async fn run_prune_step(
        &mut self,
        store: &mut Store,
        fleets: &mut Fleets,
        provider: &Arc<dyn Provider>,
        plan: &PlanWithSteps,
        doc: &PruneDoc,
        step: &StepRecord,
        now: SystemTime,
        out: &mut Vec<Transition>,
    ) -> Result<StepOutcome, ExecutorError> {
        let id = plan.plan.id.clone();
        let detail = step_detail(&id, step)?;
        let Some(Step::Terminate { instance_ids }) = detail.step.clone() else {
            return Ok(StepOutcome::Failed(format!(
                "step {} of a prune plan is not a terminate step",
                step.index
            )));
        };
        let attempt = match self.next_attempt(&id, step, now) {
            Ok(a) => a,
            Err(wait) => return Ok(StepOutcome::Wait(wait)),
        };
        let fleet = fleets.of(&doc.provider);
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
                        && instance.group() == Some(doc.group.as_str())
                })
            })
            .cloned()
            .collect();
        self.terminate(
            store,
            fleets,
            provider,
            &doc.provider,
            &PlanRef::of(&plan.plan),
            step,
            detail,
            existing,
            instance_ids.len(),
            attempt,
            now,
            out,
        )
        .await
    }

    /// Write a terminate step's intent for `existing` (the named instances that passed
    /// the caller's checks), terminate them, and mark the step done, or failed with a
    /// retry scheduled. Shared by a rollout's terminate step and a prune.
    #[allow(clippy::too_many_arguments)]
    async fn terminate(
        &mut self,
        store: &mut Store,
        fleets: &mut Fleets,
        provider: &Arc<dyn Provider>,
        provider_name: &str,
        pref: &PlanRef,
        step: &StepRecord,
        mut detail: StepDetail,
        existing: Vec<String>,
        named: usize,
        attempt: u32,
        now: SystemTime,
        out: &mut Vec<Transition>,
    ) -> Result<StepOutcome, ExecutorError> {
        let id = pref.plan.clone();
        let pref = pref.clone();
        detail.terminated = existing.clone();
        let started = format!("terminate {}", existing.join(", "));
        let result = terminate_recorded(
            store,
            fleets,
            provider,
            provider_name,
            &pref,
            step,
            &detail,
            &existing,
            attempt,
            now,
            started,
            out,
        )
        .await?;
        if let Err(err) = result {
            let why = format!("terminate attempt {attempt} failed: {err}");
            store
                .mark_step_failed(&id, step.index, &why, None, now)
                .map_err(store_err("mark terminate failed", &id))?;
            if attempt < self.options.terminate_attempts {
                let delay = self.backoff(attempt);
                self.runtime.entry(id.clone()).or_default().retry_at = Some(now + delay);
                return Ok(StepOutcome::Wait(delay));
            }
            return Ok(StepOutcome::Failed(why));
        }
        store
            .mark_step_done(&id, step.index, None, now)
            .map_err(store_err("mark terminate done", &id))?;
        let skipped = named - existing.len();
        out.push(Transition::StepFinished {
            plan: pref,
            index: step.index,
            action: step.action.clone(),
            message: if skipped == 0 {
                format!("terminated {}", existing.join(", "))
            } else {
                format!(
                    "terminated {} ({skipped} named instances were already gone)",
                    existing.join(", ")
                )
            },
        });
        Ok(StepOutcome::Done(Some(to_json(&detail))))
    }

    /// Whether a failed step gets another attempt.
    fn retryable(&self, step: &StepRecord) -> bool {
        match step.action.as_str() {
            "launch" => step.attempt < self.options.launch_attempts,
            "terminate" => step.attempt < self.options.terminate_attempts,
            _ => false,
        }
    }

    /// Delay before attempt `attempt + 1`: base doubled per attempt, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.options
            .retry_base
            .saturating_mul(factor)
            .min(self.options.retry_cap)
    }

    /// The next attempt number for a step, or a wait while its retry delay runs.
    fn next_attempt(
        &self,
        id: &PlanId,
        step: &StepRecord,
        now: SystemTime,
    ) -> Result<u32, Duration> {
        match step.status {
            StepStatus::Pending => Ok(1),
            StepStatus::Intent => Ok(step.attempt.max(1)),
            _ => {
                if let Some(at) = self.runtime.get(id).and_then(|r| r.retry_at)
                    && at > now
                {
                    return Err(at.duration_since(now).unwrap_or(Duration::ZERO));
                }
                Ok(step.attempt + 1)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &mut self,
        store: &mut Store,
        fleets: &mut Fleets,
        provider: &Arc<dyn Provider>,
        plan: &PlanWithSteps,
        doc: &PlanDoc,
        step: &StepRecord,
        now: SystemTime,
        out: &mut Vec<Transition>,
    ) -> Result<StepOutcome, ExecutorError> {
        let id = plan.plan.id.clone();
        let pref = PlanRef::of(&plan.plan);
        let mut detail = step_detail(&id, step)?;
        let Some(planned) = detail.step.clone() else {
            return Ok(StepOutcome::Failed(format!(
                "step {} has no planner step",
                step.index
            )));
        };
        match planned {
            Step::Launch { count } => {
                let attempt = match self.next_attempt(&id, step, now) {
                    Ok(a) => a,
                    Err(wait) => return Ok(StepOutcome::Wait(wait)),
                };
                let token = launch_token(id.as_str(), step.index, attempt);
                // Instances an earlier attempt created (a partial failure) count.
                let mut prior: Vec<Instance> = Vec::new();
                for t in detail.tokens.iter().filter(|t| **t != token) {
                    match provider.find_by_launch_token(&self.owner, t).await {
                        Ok(found) => {
                            fleets.of(&doc.provider).learn(&found);
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
                store
                    .write_intent(
                        &id,
                        step.index,
                        &StepIntent {
                            attempt,
                            launch_token: Some(token.clone()),
                            detail: Some(to_json(&detail)),
                        },
                        now,
                    )
                    .map_err(store_err("write launch intent", &id))?;
                if !resumed {
                    step_started(
                        out,
                        &pref,
                        step,
                        format!("launch {count} (attempt {attempt}, token {token})"),
                    );
                }
                let want = count.saturating_sub(u32::try_from(prior.len()).unwrap_or(u32::MAX));
                let request = LaunchRequest {
                    owner: self.owner.clone(),
                    group: doc.group.name().clone(),
                    template: doc.group.spec.template.clone(),
                    spec_hash: target(&plan.plan),
                    commit: doc.commit.clone(),
                    plan_id: id.to_string(),
                    launch_token: token.clone(),
                    count: want,
                };
                let result = if want == 0 {
                    Ok(Vec::new())
                } else {
                    provider.launch(&request).await
                };
                match result {
                    Ok(new) => {
                        // A terminate later in this pass must count them.
                        fleets.of(&doc.provider).learn(&new);
                        prior.extend(new);
                        detail.instances = launched(&prior, now);
                        let done = to_json(&detail);
                        store
                            .mark_step_done(&id, step.index, Some(&done), now)
                            .map_err(store_err("mark launch done", &id))?;
                        out.push(Transition::StepFinished {
                            plan: pref,
                            index: step.index,
                            action: step.action.clone(),
                            message: format!("launched {}", ids(&detail.instances).join(", ")),
                        });
                        Ok(StepOutcome::Done(Some(done)))
                    }
                    Err(err) => {
                        let why = format!("launch attempt {attempt} failed: {err}");
                        store
                            .mark_step_failed(&id, step.index, &why, Some(&to_json(&detail)), now)
                            .map_err(store_err("mark launch failed", &id))?;
                        if attempt < self.options.launch_attempts && retry_worth(&err) {
                            let delay = self.backoff(attempt);
                            self.runtime.entry(id.clone()).or_default().retry_at =
                                Some(now + delay);
                            tracing::warn!(plan = %id, step = step.index, attempt, error = %phoenix_core::chain(&err), "launch failed; retrying");
                            Ok(StepOutcome::Wait(delay))
                        } else {
                            Ok(StepOutcome::Failed(why))
                        }
                    }
                }
            }
            Step::WaitHealthy {
                instance_ids,
                grace,
                deadline,
            } => {
                let started_at =
                    begin_passive(store, &id, step, now, out, &pref, "wait until healthy")?;
                let mut targets: Vec<(String, SystemTime)> = self
                    .launched_before(plan, step.index)?
                    .into_iter()
                    .map(|l| (l.id, from_ms(l.launched_at_ms)))
                    .collect();
                targets.extend(instance_ids.iter().map(|i| (i.clone(), started_at)));
                let verdicts = match self.verdicts(fleets, provider, doc, &targets).await {
                    Ok(v) => v,
                    Err(err) => {
                        if elapsed(started_at, now) >= deadline {
                            return Ok(StepOutcome::Failed(format!(
                                "health could not be read within the deadline: {err}"
                            )));
                        }
                        return Ok(StepOutcome::Wait(self.options.poll_interval));
                    }
                };
                let rt = self.runtime.entry(id.clone()).or_default();
                let mut pending = Vec::new();
                let mut min_wait = self.options.poll_interval;
                for (instance, launched_at) in &targets {
                    let verdict = verdicts.get(instance).copied().unwrap_or(Verdict::Unknown);
                    let age = elapsed(*launched_at, now);
                    if verdict == Verdict::Healthy {
                        let since = *rt.healthy_since.entry(instance.clone()).or_insert(now);
                        let healthy_for = elapsed(since, now);
                        if healthy_for < self.options.min_healthy_time {
                            min_wait = min_wait.min(self.options.min_healthy_time - healthy_for);
                            pending.push(instance.clone());
                        }
                        continue;
                    }
                    rt.healthy_since.remove(instance);
                    if verdict == Verdict::Unhealthy && age >= grace {
                        return Ok(StepOutcome::Failed(format!(
                            "instance {instance} is unhealthy {}s after launch (grace {})",
                            age.as_secs(),
                            humantime::format_duration(grace)
                        )));
                    }
                    if age >= deadline {
                        return Ok(StepOutcome::Failed(format!(
                            "instance {instance} not healthy within the deadline of {}",
                            humantime::format_duration(deadline)
                        )));
                    }
                    min_wait = min_wait.min(deadline - age);
                    pending.push(instance.clone());
                }
                if !pending.is_empty() {
                    return Ok(StepOutcome::Wait(min_wait.max(Duration::from_millis(1))));
                }
                store
                    .mark_step_done(&id, step.index, None, now)
                    .map_err(store_err("mark wait done", &id))?;
                out.push(Transition::StepFinished {
                    plan: pref,
                    index: step.index,
                    action: step.action.clone(),
                    message: format!("{} instances healthy", targets.len()),
                });
                Ok(StepOutcome::Done(None))
            }
            Step::Bake { duration } => {
                let started_at = begin_passive(store, &id, step, now, out, &pref, "bake")?;
                let baked = elapsed(started_at, now);
                if baked < duration {
                    return Ok(StepOutcome::Wait(duration - baked));
                }
                let targets: Vec<(String, SystemTime)> = self
                    .launched_before(plan, step.index)?
                    .into_iter()
                    .map(|l| (l.id, from_ms(l.launched_at_ms)))
                    .collect();
                let verdicts = match self.verdicts(fleets, provider, doc, &targets).await {
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
                store
                    .mark_step_done(&id, step.index, None, now)
                    .map_err(store_err("mark bake done", &id))?;
                out.push(Transition::StepFinished {
                    plan: pref,
                    index: step.index,
                    action: step.action.clone(),
                    message: format!("baked {}", humantime::format_duration(duration)),
                });
                Ok(StepOutcome::Done(None))
            }
            Step::Terminate { instance_ids } => {
                let attempt = match self.next_attempt(&id, step, now) {
                    Ok(a) => a,
                    Err(wait) => return Ok(StepOutcome::Wait(wait)),
                };
                let Some(group) = self.group_health(fleets, provider, doc).await else {
                    // Never terminate on an incomplete inventory.
                    return Ok(StepOutcome::Wait(self.options.poll_interval));
                };
                let wanted: BTreeSet<&str> = instance_ids.iter().map(String::as_str).collect();
                let existing: Vec<String> = group
                    .members
                    .iter()
                    .filter(|m| wanted.contains(m.as_str()))
                    .cloned()
                    .collect();
                let healthy_now = group.healthy;
                let healthy_going = group.count_healthy(&existing);
                let required = group.floor;
                if healthy_now - healthy_going < required {
                    let rt = self.runtime.entry(id.clone()).or_default();
                    let held = *rt.held_since.get_or_insert(now);
                    if elapsed(held, now) >= doc.group.spec.health.deadline {
                        return Ok(StepOutcome::Failed(format!(
                            "terminating {} would leave {} healthy instances, below the floor of {required}",
                            existing.join(", "),
                            healthy_now - healthy_going
                        )));
                    }
                    return Ok(StepOutcome::Wait(self.options.poll_interval));
                }
                self.terminate(
                    store,
                    fleets,
                    provider,
                    &doc.provider,
                    &pref,
                    step,
                    detail,
                    existing,
                    instance_ids.len(),
                    attempt,
                    now,
                    out,
                )
                .await
            }
        }
    }

    /// Every instance launched by done launch steps before `index`.
    fn launched_before(
        &mut self,
        plan: &PlanWithSteps,
        index: u32,
    ) -> Result<Vec<Launched>, ExecutorError> {
        let cache = &mut self
            .runtime
            .entry(plan.plan.id.clone())
            .or_default()
            .launched;
        let mut out = Vec::new();
        for step in plan
            .steps
            .iter()
            .filter(|s| s.index < index && s.action == "launch" && s.status == StepStatus::Done)
        {
            let launched = match cache.entry(step.index) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(step_detail(&plan.plan.id, step)?.instances)
                }
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
        fleets: &mut Fleets,
        provider: &Arc<dyn Provider>,
        doc: &PlanDoc,
        targets: &[(String, SystemTime)],
    ) -> Result<HashMap<String, Verdict>, ProviderError> {
        let health = &doc.group.spec.health;
        let fleet = fleets.of(&doc.provider);
        let verdicts = if health.check == HealthCheck::Provider {
            let ids: Vec<String> = targets.iter().map(|(i, _)| i.clone()).collect();
            provider
                .health(&ids)
                .await?
                .into_iter()
                .map(|(id, h)| (id, Verdict::from(h)))
                .collect()
        } else {
            fleet.load(provider.as_ref(), &self.owner).await;
            let seen: Vec<&Instance> = targets.iter().filter_map(|(i, _)| fleet.get(i)).collect();
            health::judge(&self.http, health, &seen).await
        };
        fleet.observe(&verdicts);
        Ok(verdicts)
    }

    /// The group's live members as this pass knows them (its inventory view, see
    /// `fleet`), each with a verdict: health observed earlier in the pass, else judged
    /// from the inventory (and probed, for `check: http`). `None` when the inventory is
    /// incomplete: nothing may be terminated on it. Costs the group's size, not the
    /// fleet's.
    async fn group_health(
        &self,
        fleets: &mut Fleets,
        provider: &Arc<dyn Provider>,
        doc: &PlanDoc,
    ) -> Option<GroupHealth> {
        let fleet = fleets.of(&doc.provider);
        fleet.load(provider.as_ref(), &self.owner).await;
        if !fleet.is_complete() {
            return None;
        }
        let members = fleet.members(doc.group.name().as_str());
        let mut verdicts = HashMap::with_capacity(members.len());
        let mut unobserved = Vec::new();
        for m in &members {
            match fleet.observed(&m.id) {
                Some(v) => {
                    verdicts.insert(m.id.to_string(), v);
                }
                None => unobserved.push(*m),
            }
        }
        verdicts.extend(health::judge(&self.http, &doc.group.spec.health, &unobserved).await);
        let members: Vec<String> = members.iter().map(|m| m.id.to_string()).collect();
        let healthy = count_healthy(&verdicts, members.iter().map(String::as_str));
        Some(GroupHealth {
            floor: healthy_floor(&doc.group).min(healthy),
            members,
            verdicts,
            healthy,
        })
    }

    /// The plan failed: append a rollback step (autoRollback and something was
    /// launched), or mark it failed and leave everything as it is.
    fn fail_plan(
        &mut self,
        store: &mut Store,
        plan: &PlanWithSteps,
        doc: &PlanDoc,
        why: &str,
        now: SystemTime,
        out: &mut Vec<Transition>,
    ) -> Result<(), ExecutorError> {
        let id = &plan.plan.id;
        // The caller's snapshot may predate the failing step's intent: read it again.
        let plan = &load(store, id)?;
        let launched_any = plan
            .steps
            .iter()
            .any(|s| s.action == "launch" && s.launch_token.is_some());
        let has_rollback = plan.steps.iter().any(|s| s.action == ROLLBACK_ACTION);
        if doc.group.spec.rollout.auto_rollback && launched_any && !has_rollback {
            // A wait or bake step that failed is still in intent: finish it first.
            for s in plan.steps.iter().filter(|s| s.status == StepStatus::Intent) {
                store
                    .mark_step_failed(id, s.index, why, None, now)
                    .map_err(store_err("mark step failed", id))?;
            }
            store
                .append_steps(
                    id,
                    &[NewStep {
                        action: ROLLBACK_ACTION.to_string(),
                        detail: to_json(&StepDetail::rollback(why.to_string())),
                    }],
                    now,
                )
                .map_err(store_err("append rollback step", id))?;
            tracing::warn!(plan = %id, reason = why, "plan failed; rolling back");
            return Ok(());
        }
        let detail = StepDetail::rollback(why.to_string());
        for s in plan.steps.iter().filter(|s| s.status == StepStatus::Intent) {
            store
                .mark_step_failed(id, s.index, why, None, now)
                .map_err(store_err("mark step failed", id))?;
        }
        self.finish_failed(store, &plan.plan, doc, false, &detail, now, out)
    }

    /// Final status of a failed plan (rolled back or failed), the failed hash recorded so
    /// the planner does not retry it at this commit.
    #[allow(clippy::too_many_arguments)]
    fn finish_failed(
        &mut self,
        store: &mut Store,
        plan: &PlanRecord,
        doc: &PlanDoc,
        rolled_back: bool,
        detail: &StepDetail,
        now: SystemTime,
        out: &mut Vec<Transition>,
    ) -> Result<(), ExecutorError> {
        let id = &plan.id;
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
        store
            .record_failed_hash(&plan.group, &target(plan), &doc.commit, Some(&why), now)
            .map_err(store_err("record failed hash", id))?;
        set_outcome(store, &plan.group, &target(plan), outcome)?;
        store
            .set_plan_status(id, status, now)
            .map_err(store_err("finish failed plan", id))?;
        self.runtime.remove(id);
        let pref = PlanRef::of(plan);
        out.push(if rolled_back {
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
    #[allow(clippy::too_many_arguments)]
    async fn run_rollback(
        &mut self,
        store: &mut Store,
        fleets: &mut Fleets,
        provider: &Arc<dyn Provider>,
        plan: &PlanWithSteps,
        doc: &PlanDoc,
        step: &StepRecord,
        now: SystemTime,
        out: &mut Vec<Transition>,
    ) -> Result<StepOutcome, ExecutorError> {
        let id = plan.plan.id.clone();
        let mut detail = step_detail(&id, step)?;
        let attempt = match self.next_attempt(&id, step, now) {
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
        let mut ours = BTreeSet::new();
        for s in plan.steps.iter().filter(|s| s.action == "launch") {
            let d = step_detail(&id, s)?;
            ours.extend(d.instances.into_iter().map(|l| l.id));
            let mut tokens = d.tokens;
            tokens.extend(s.launch_token.clone());
            // Asked of the provider, not the view: a launch attempt that failed halfway
            // may have created instances the pass's inventory predates.
            for t in tokens {
                match provider.find_by_launch_token(&self.owner, &t).await {
                    Ok(found) => {
                        fleets.of(&doc.provider).learn(&found);
                        ours.extend(found.into_iter().map(|i| String::from(i.id)));
                    }
                    Err(_) => return Ok(StepOutcome::Wait(self.options.poll_interval)),
                }
            }
        }
        let Some(group) = self.group_health(fleets, provider, doc).await else {
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
        let started = format!("roll back: terminate {}", terminate.join(", "));
        let result = terminate_recorded(
            store,
            fleets,
            provider,
            &doc.provider,
            &PlanRef::of(&plan.plan),
            step,
            &detail,
            &terminate,
            attempt,
            now,
            started,
            out,
        )
        .await?;
        if let Err(err) = result {
            let why = format!("rollback attempt {attempt} failed: {err}");
            store
                .mark_step_failed(&id, step.index, &why, None, now)
                .map_err(store_err("mark rollback failed", &id))?;
            let delay = self.backoff(attempt);
            self.runtime.entry(id.clone()).or_default().retry_at = Some(now + delay);
            return Ok(StepOutcome::Wait(delay));
        }
        store
            .mark_step_done(&id, step.index, None, now)
            .map_err(store_err("mark rollback done", &id))?;
        out.push(Transition::StepFinished {
            plan: PlanRef::of(&plan.plan),
            index: step.index,
            action: ROLLBACK_ACTION.to_string(),
            message: format!("terminated {}", terminate.join(", ")),
        });
        Ok(StepOutcome::Done(None))
    }
}

/// The id to insert the planner's plan `proposed` under, or `None` to skip it.
///
/// Plan ids never repeat (launch tokens derive from them). The planner's id is a hash of
/// the revision and the steps, so the same proposal can come back at the same revision:
/// - it is the active plan (or any active plan): skip, it is already running;
/// - it was cancelled: skip, an operator stopped exactly these steps (a new commit or a
///   different observation gives a new id);
/// - it failed or rolled back: skip (the planner blocks that hash anyway);
/// - it succeeded or was superseded and the same steps are needed again (an instance
///   vanished twice at the same revision, say): run it again as `<id>.r<k>`.
/// How often one plan may run again at the same revision (`<id>.r1` ... `.r<N>`).
const MAX_RERUNS: u32 = 3;

fn fresh_plan_id(store: &Store, proposed: &str) -> Result<Option<PlanId>, ExecutorError> {
    let mut id = PlanId::new(proposed);
    for k in 1u32.. {
        let existing = store.plan(&id).map_err(store_err("read plan", &id))?;
        // A pruned plan's id is taken too (issue 17): its launch tokens may still tag
        // instances.
        let pruned = existing.is_none()
            && store
                .plan_id_used(&id)
                .map_err(store_err("read plan ids", &id))?;
        match existing.map(|p| p.plan.status) {
            None if !pruned => return Ok(Some(id)),
            None | Some(PlanStatus::Succeeded | PlanStatus::Superseded) => {
                // Capped (issue 17): the same steps needed again and again at one
                // revision mean something undoes them (another owner's tags, say);
                // relaunching without end would only grow the fleet's bill.
                if k > MAX_RERUNS {
                    tracing::error!(plan = %proposed, reruns = MAX_RERUNS, "the same plan was needed again too often at this revision; not running it again until the revision or the observation changes");
                    return Ok(None);
                }
                id = PlanId::new(format!("{proposed}.r{k}"));
            }
            Some(_) => return Ok(None),
        }
    }
    Ok(None)
}

/// Write the intent of a wait or bake step the first time; returns its start time.
fn begin_passive(
    store: &mut Store,
    id: &PlanId,
    step: &StepRecord,
    now: SystemTime,
    out: &mut Vec<Transition>,
    pref: &PlanRef,
    what: &str,
) -> Result<SystemTime, ExecutorError> {
    if step.status == StepStatus::Intent {
        return Ok(step.started_at.unwrap_or(now));
    }
    store
        .write_intent(
            id,
            step.index,
            &StepIntent {
                attempt: step.attempt + 1,
                launch_token: None,
                detail: None,
            },
            now,
        )
        .map_err(store_err("write step intent", id))?;
    step_started(out, pref, step, what.to_string());
    Ok(now)
}

fn step_started(out: &mut Vec<Transition>, pref: &PlanRef, step: &StepRecord, message: String) {
    out.push(Transition::StepStarted {
        plan: pref.clone(),
        index: step.index,
        action: step.action.clone(),
        message,
    });
}

/// The part every terminating step shares: write the intent (with the ids in `detail`)
/// before acting, announce the step the first time, terminate `ids`, and keep the pass's
/// inventory view exact. The provider's answer is returned; "not found" counts as done.
#[allow(clippy::too_many_arguments)]
async fn terminate_recorded(
    store: &mut Store,
    fleets: &mut Fleets,
    provider: &Arc<dyn Provider>,
    provider_name: &str,
    pref: &PlanRef,
    step: &StepRecord,
    detail: &StepDetail,
    ids: &[String],
    attempt: u32,
    now: SystemTime,
    started: String,
    out: &mut Vec<Transition>,
) -> Result<Result<(), ProviderError>, ExecutorError> {
    let id = &pref.plan;
    let resumed = step.status == StepStatus::Intent;
    store
        .write_intent(
            id,
            step.index,
            &StepIntent {
                attempt,
                launch_token: None,
                detail: Some(to_json(detail)),
            },
            now,
        )
        .map_err(store_err("write terminate intent", id))?;
    if !resumed {
        step_started(out, pref, step, started);
    }
    let result = if ids.is_empty() {
        Ok(())
    } else {
        provider.terminate(ids).await
    };
    let fleet = fleets.of(provider_name);
    Ok(match result {
        Ok(()) => {
            fleet.terminated(ids);
            Ok(())
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {
            tracing::info!(plan = %id, error = %phoenix_core::chain(&err), "instances already gone");
            fleet.terminated(ids);
            Ok(())
        }
        Err(err) => {
            fleet.uncertain(ids);
            Err(err)
        }
    })
}

/// Reload the plan after a failure was handled.
fn continue_or_return(
    store: &Store,
    id: &PlanId,
    plan: &mut PlanWithSteps,
) -> Result<(), ExecutorError> {
    *plan = load(store, id)?;
    Ok(())
}

fn load(store: &Store, id: &PlanId) -> Result<PlanWithSteps, ExecutorError> {
    store
        .plan(id)
        .map_err(store_err("read plan", id))?
        .ok_or_else(|| ExecutorError::PlanNotFound { plan: id.clone() })
}

fn plan_doc(record: &PlanRecord) -> Result<PlanDoc, ExecutorError> {
    serde_json::from_value(record.doc.clone()).map_err(|source| ExecutorError::BadDocument {
        plan: record.id.clone(),
        source,
    })
}

fn prune_doc(record: &PlanRecord) -> Result<PruneDoc, ExecutorError> {
    serde_json::from_value(record.doc.clone()).map_err(|source| ExecutorError::BadDocument {
        plan: record.id.clone(),
        source,
    })
}

/// Whether a plan was inserted from a held revision (its document carries the hold).
fn is_held(record: &PlanRecord) -> bool {
    record.doc.get("hold").is_some_and(|h| !h.is_null())
}

/// The target of a rollout plan. Plans without one are prunes: `advance` drives them
/// apart (`drive_prune`) and `recover` skips them, so the rollout code never sees one.
fn target(record: &PlanRecord) -> SpecHash {
    record
        .target_hash
        .expect("rollout code runs only plans with a target hash; prunes are driven apart")
}

fn step_detail(plan: &PlanId, step: &StepRecord) -> Result<StepDetail, ExecutorError> {
    serde_json::from_value(step.detail.clone()).map_err(|source| ExecutorError::BadDocument {
        plan: plan.clone(),
        source,
    })
}

fn to_json(detail: &StepDetail) -> serde_json::Value {
    serde_json::to_value(detail).expect("a step detail always serializes")
}

fn action_of(step: &Step) -> &'static str {
    match step {
        Step::Launch { .. } => "launch",
        Step::WaitHealthy { .. } => "wait_healthy",
        Step::Bake { .. } => "bake",
        Step::Terminate { .. } => "terminate",
    }
}

/// The launch record of instances, sorted by id, launched "now" for the gates unless
/// the provider reports an earlier launch time (instances found after a restart).
fn launched(instances: &[Instance], now: SystemTime) -> Vec<Launched> {
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

fn ids(launched: &[Launched]) -> Vec<String> {
    launched.iter().map(|l| l.id.clone()).collect()
}

fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or(Duration::ZERO)
}

/// Whether another attempt may help: not for refused requests (bad AMI, auth, config).
fn retry_worth(err: &ProviderError) -> bool {
    !matches!(
        err.kind(),
        ErrorKind::Auth | ErrorKind::Client | ErrorKind::Config
    )
}

/// A group's live members in the pass's inventory view, with a verdict for each: what a
/// terminate or a rollback decides on.
struct GroupHealth {
    /// Live member ids, sorted.
    members: Vec<String>,
    /// A verdict per member.
    verdicts: HashMap<String, Verdict>,
    /// How many members are healthy now.
    healthy: u32,
    /// Healthy instances that must remain: `min(replicas - maxUnavailable, healthy)`.
    floor: u32,
}

impl GroupHealth {
    fn is_healthy(&self, id: &str) -> bool {
        self.verdicts.get(id) == Some(&Verdict::Healthy)
    }

    fn count_healthy(&self, ids: &[String]) -> u32 {
        count_healthy(&self.verdicts, ids.iter().map(String::as_str))
    }
}

fn count_healthy<'a>(
    verdicts: &HashMap<String, Verdict>,
    ids: impl Iterator<Item = &'a str>,
) -> u32 {
    let n = ids
        .filter(|i| verdicts.get(*i) == Some(&Verdict::Healthy))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `replicas - maxUnavailable` (at least 1: maxUnavailable is capped at replicas - 1).
fn healthy_floor(group: &InstanceGroup) -> u32 {
    let limits = RolloutLimits::of(group);
    group.spec.replicas.get().saturating_sub(limits.unavailable)
}

fn set_outcome(
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
