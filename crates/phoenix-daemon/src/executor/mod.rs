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
//! have no target hash: one terminate step, driven by [`prune`], which re-checks
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
//!
//! Where things live: [`submit`] (plans in), [`drive`] (a rollout plan, step by step),
//! the step kinds [`launch`], [`wait`] (`wait_healthy` and `bake`) and [`terminate`],
//! [`prune`], [`rollback`] (failing a plan), [`recover`] (start-up), [`retry`] (attempts
//! and backoff), [`floor`] (a group's health and healthy floor), [`context`] (the pass
//! and step context every step shares), [`transition`] (what the loop is told), the
//! stored documents in [`doc`], and the pass's inventory view and probes in [`fleet`]
//! and [`health`].

mod context;
pub(crate) mod doc;
mod drive;
mod error;
mod fleet;
mod floor;
mod health;
mod launch;
mod prune;
mod recover;
mod retry;
mod rollback;
mod submit;
mod terminate;
mod transition;
mod wait;
mod window;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_cloud::Provider;
use phoenix_core::SpecHash;
use phoenix_store::{PlanId, PlanKind, PlanStatus, StepStatus, Store};

use context::{Pass, load};
pub use doc::launch_token;
pub(crate) use doc::step_summary;
use doc::{Launched, StoredPlan};
pub use error::ExecutorError;
use error::store_err;
pub use transition::{PlanRef, Progress, Transition};
pub use window::WindowGate;

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
    desired: Option<submit::Desired>,
    /// Change windows: a running replacement stops at its next launch (`window`).
    windows: WindowGate,
    /// `policy.images`, re-checked just before every launch (crate::policy::recheck).
    image_policy: Option<phoenix_core::policy::ImagePolicy>,
    /// Cancelled when the daemon is asked to stop: `advance` drives no further plan (the
    /// step in flight finishes; the rest resumes after the restart, as after a crash).
    stop: tokio_util::sync::CancellationToken,
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
            windows: WindowGate::default(),
            image_policy: None,
            stop: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The token whose cancellation stops later `advance` calls between plans.
    pub fn set_stop(&mut self, stop: tokio_util::sync::CancellationToken) {
        self.stop = stop;
    }

    /// The `policy.images` rules launches are re-checked against (the daemon sets them
    /// from its config before every pass).
    pub fn set_image_policy(&mut self, policy: Option<phoenix_core::policy::ImagePolicy>) {
        self.image_policy = policy;
    }

    /// The change windows later `advance` calls obey.
    pub fn set_windows(&mut self, windows: WindowGate) {
        self.windows = windows;
    }

    /// The options in force.
    pub fn options(&self) -> &ExecutorOptions {
        &self.options
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
        let mut wake_after: Option<Duration> = None;
        let mut live = BTreeSet::new();
        // One inventory per provider for the whole pass, read when first needed.
        let mut pass = Pass::new(store, now);
        for plan in plans {
            live.insert(plan.plan.id.clone());
            if self.stop.is_cancelled() {
                // Shutting down: no further plan starts a step (the runtime of the ones
                // not reached stays, `live` keeps it).
                continue;
            }
            let prune = matches!(plan.plan.kind, PlanKind::Prune);
            if plan.plan.status != PlanStatus::Running
                && !(prune && plan.plan.status == PlanStatus::AwaitingApproval)
            {
                continue;
            }
            let id = plan.plan.id.clone();
            let driven = match StoredPlan::decode(plan) {
                Ok(StoredPlan::Rollout(plan)) => self.drive(&mut pass, plan).await,
                Ok(StoredPlan::Prune(plan)) => self.drive_prune(&mut pass, plan).await,
                Err(err) => Err(err),
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
                wake_after = Some(wake_after.map_or(wait, |w| w.min(wait)));
            }
        }
        self.runtime.retain(|id, _| live.contains(id));
        Ok(Progress {
            transitions: pass.out,
            wake_after,
        })
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
}
