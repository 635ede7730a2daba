//! The reconcile loop: one task that owns all daemon state and reacts to a closed set
//! of events.
//!
//! ```text
//! Event::Tick            the pass timer (reconcile interval, jittered; sooner while plans run)
//! Event::SourceChanged   the folder watcher fired (it only signals; a rescan backs it up)
//! Event::Command         an API command: reconcile, webhook (debounced), approve, cancel
//! Event::SourcePolled    a source poll returned from the blocking pool
//! Event::Reload          a new, already validated config (SIGHUP or the config file changed)
//! Event::Shutdown        SIGTERM/SIGINT: stop taking work and return
//! ```
//!
//! Every pass goes through the same path, first start included: start a source poll
//! when one is due, collect every provider's inventory, plan with the pure planner, hand
//! the plan to the executor (enforce mode only), then publish a fresh snapshot for the
//! API. The loop never waits for the source: a poll (git fetch or folder scan) runs on
//! the blocking pool and comes back as its own event, followed by a pass when it brought
//! something new, so a remote that accepts a connection and never answers stalls only
//! the source (reported on the status API once overdue), never the fleet or shutdown. A
//! failure never ends the loop: it is logged, shown on the status API and retried.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_api::{AlertCounts, ApiCommand, ApiEvent, Metrics, PlanCommandError, Snapshot};
use phoenix_cloud::{BuildOptions, Provider, build_providers};
use phoenix_core::config::{Config, Mode};
use phoenix_core::model::Inventory;
use phoenix_core::plan::{FailedGeneration, PlanDocument, PlanInput, PlanMemory, plan_checked};
use phoenix_core::spec::ParsedGroup;
use phoenix_source::{
    PollOutcome, PollSchedule, Rejection, Revision, RevisionId, Source, SourceError, WatchSignal,
};
use phoenix_store::{RevisionVerdict, SeenRevision, Store, StoreOptions};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::alerts::{
    AlertOptions, Alerts, Delivery, DeliveryOptions, DriftObservations, PlanAlert, PlanAlertKind,
    SourceAlert,
};
use crate::executor::{Executor, ExecutorError, ExecutorOptions, Transition};
use crate::view::{self, FindingKey, ViewInput};

/// Why the daemon could not start. Once running, errors are reported, not returned.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state store could not be opened.
    #[error("cannot open the state store in {path}")]
    Store {
        /// The state folder.
        path: String,
        /// Why.
        #[source]
        source: phoenix_store::StoreError,
    },
    /// The source could not be opened.
    #[error("cannot open the desired-state source")]
    Source(#[source] phoenix_source::SourceError),
    /// A provider could not be set up.
    #[error("cannot set up the providers")]
    Providers(#[source] phoenix_cloud::ProviderError),
    /// An alert receiver could not be set up.
    #[error("cannot set up the alert receivers")]
    Alerts(#[source] crate::alerts::AlertError),
}

/// The channels the loop shares with the API server.
#[derive(Debug)]
pub struct Channels {
    /// Where the loop publishes snapshots.
    pub snapshots: watch::Sender<Arc<Snapshot>>,
    /// Commands from the API.
    pub commands: mpsc::Receiver<ApiCommand>,
    /// Events for SSE subscribers.
    pub events: broadcast::Sender<ApiEvent>,
    /// Shared metrics.
    pub metrics: Arc<Metrics>,
    /// New validated configs (SIGHUP, config file change).
    pub reloads: mpsc::Receiver<Config>,
}

/// Tunables that are not config keys.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Webhook bursts are coalesced until nothing arrives for this long.
    pub debounce_quiet: Duration,
    /// ...or until this much time has passed since the first one.
    pub debounce_max: Duration,
    /// Longest wait between passes while a plan is running (executor progress).
    pub busy_interval: Duration,
    /// Executor tunables.
    pub executor: ExecutorOptions,
}

impl Default for LoopOptions {
    fn default() -> Self {
        Self {
            // Act on a push at once: triggers already queued are coalesced, and those that
            // arrive during the fetch and pass are coalesced into the next one, so a burst
            // costs at most one extra fetch. Waiting for quiet would add its whole length
            // to every push's latency.
            debounce_quiet: Duration::ZERO,
            debounce_max: Duration::ZERO,
            busy_interval: Duration::from_secs(2),
            executor: ExecutorOptions::default(),
        }
    }
}

/// What a pass was triggered by (logged on the pass's span).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Start,
    Timer,
    Watch,
    Webhook,
    Request,
    Reload,
}

/// The loop's state. Owned by one task; nothing here is shared.
struct Daemon {
    config: Config,
    options: LoopOptions,
    store: Store,
    /// The source, or `None` while a poll has it on the blocking pool.
    source: Option<Source>,
    /// The poll running on the blocking pool, if any. The loop never waits for it: it
    /// comes back as an event, so a remote that hangs stalls only the source.
    poll: Option<PollInFlight>,
    /// A poll asked for while one was running (a webhook, a watcher signal), with the
    /// newest pushed commit; started as soon as the running one returns.
    repoll: Option<Option<RevisionId>>,
    source_schedule: PollSchedule,
    next_source_poll: Instant,
    watch: Option<WatchSignal>,
    providers: BTreeMap<String, Arc<dyn Provider>>,
    executor: Executor,
    alerts: Alerts,
    /// When the executor wants to be called again (a plan is running).
    executor_wake: Option<Duration>,
    /// When old state was last pruned (design section 16).
    retention: crate::retention::Retention,
    revision: Option<Arc<Revision>>,
    accepted_at: Option<SystemTime>,
    rejection: Option<Arc<Rejection>>,
    source_error: Option<String>,
    /// The last inventory of every configured provider, sorted by provider name (a
    /// slice, so the planner borrows it instead of copying every instance).
    inventories: Vec<Inventory>,
    document: Option<PlanDocument>,
    since: HashMap<FindingKey, SystemTime>,
    histories: view::Histories,
    ready: bool,
    channels: Channels,
}

/// Run the daemon until `shutdown` resolves. Returns an error only if it cannot start.
///
/// `alert_secrets` maps alert receiver names to the secrets the binary read from their
/// `secret_env`. Alert delivery runs in its own task with its own store connection, so a
/// slow receiver never holds up the loop.
pub async fn run(
    config: Config,
    options: LoopOptions,
    channels: Channels,
    alert_secrets: &BTreeMap<String, Vec<u8>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let state_dir = config.state.path.clone();
    let open_store = || {
        Store::open(&state_dir, StoreOptions::default()).map_err(|source| DaemonError::Store {
            path: state_dir.display().to_string(),
            source,
        })
    };
    let store = open_store()?;
    let alerts = Alerts::new(
        &config.alerts,
        alert_secrets,
        AlertOptions {
            owner: config.owner.clone(),
            ..AlertOptions::default()
        },
    )
    .map_err(DaemonError::Alerts)?;
    let delivery = Delivery::new(
        open_store()?,
        alerts.receivers(),
        DeliveryOptions::default(),
    )
    .map_err(DaemonError::Alerts)?;
    let (delivery_stop, mut delivery_stopped) = watch::channel(false);
    let delivery_task = tokio::spawn(delivery.run(alerts.delivery_wake(), async move {
        let _ = delivery_stopped.wait_for(|stop| *stop).await;
    }));
    let source = Source::open(&config.source, &state_dir).map_err(DaemonError::Source)?;
    let watch = source.watch_signal();
    let providers = build_providers(&config.providers, &state_dir, &BuildOptions::default())
        .await
        .map_err(DaemonError::Providers)?;
    let source_schedule = PollSchedule::new(source.interval());
    let executor = Executor::new(
        config.owner.clone(),
        providers.clone(),
        options.executor.clone(),
    );
    let mut daemon = Daemon {
        config,
        options,
        store,
        source: Some(source),
        poll: None,
        repoll: None,
        source_schedule,
        next_source_poll: Instant::now(),
        watch,
        providers,
        executor,
        alerts,
        executor_wake: None,
        retention: crate::retention::Retention::default(),
        revision: None,
        accepted_at: None,
        rejection: None,
        source_error: None,
        inventories: Vec::new(),
        document: None,
        since: HashMap::new(),
        histories: view::Histories::default(),
        ready: false,
        channels,
    };
    daemon.restore_revision().await;
    daemon.recover().await;
    daemon.main_loop(shutdown).await;
    let _ = delivery_stop.send(true);
    if tokio::time::timeout(Duration::from_secs(5), delivery_task)
        .await
        .is_err()
    {
        tracing::warn!(
            "alert delivery did not stop within 5s; undelivered alerts stay in the outbox"
        );
    }
    Ok(())
}

impl Daemon {
    async fn main_loop(&mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut reason = Reason::Start;
        loop {
            let wait = self.pass(reason).await;
            let deadline = Instant::now() + wait;
            reason = loop {
                let watch = self.watch.clone();
                tokio::select! {
                    () = &mut shutdown => {
                        if let Some(poll) = &self.poll {
                            tracing::warn!(running_for = ?poll.started.elapsed(),
                                "shutting down with a source poll still running; it is abandoned");
                        }
                        tracing::info!("shutting down");
                        return;
                    }
                    () = tokio::time::sleep_until(deadline) => break Reason::Timer,
                    () = changed(watch.as_ref()) => self.start_poll(None, Reason::Watch),
                    joined = poll_finished(self.poll.as_mut()) => {
                        if let Some(reason) = self.finish_poll(joined) {
                            break reason;
                        }
                    }
                    Some(config) = self.channels.reloads.recv() => {
                        self.reload(config).await;
                        break Reason::Reload;
                    }
                    Some(command) = self.channels.commands.recv() => {
                        if let Some(reason) = self.command(command).await {
                            break reason;
                        }
                    }
                }
            };
        }
    }

    /// Handle one API command; returns the reason for a pass if it asks for one.
    async fn command(&mut self, command: ApiCommand) -> Option<Reason> {
        match command {
            ApiCommand::Approve { plan_id, reply } => {
                let id = phoenix_store::PlanId::new(plan_id.clone());
                let result = self
                    .executor
                    .approve(&mut self.store, &id, SystemTime::now());
                self.announce_plan_state(&id, &result);
                if let Some(answer) = plan_reply(plan_id, result) {
                    let _ = reply.send(answer);
                }
                Some(Reason::Request)
            }
            ApiCommand::Cancel { plan_id, reply } => {
                let id = phoenix_store::PlanId::new(plan_id.clone());
                let result = self
                    .executor
                    .cancel(&mut self.store, &id, SystemTime::now());
                self.announce_plan_state(&id, &result);
                if let Some(answer) = plan_reply(plan_id, result) {
                    let _ = reply.send(answer);
                }
                Some(Reason::Request)
            }
            first @ (ApiCommand::Reconcile | ApiCommand::Webhook { .. }) => {
                let burst = phoenix_api::coalesce_burst(
                    first,
                    &mut self.channels.commands,
                    self.options.debounce_quiet,
                    self.options.debounce_max,
                )
                .await;
                for other in burst.other {
                    Box::pin(self.command(other)).await;
                }
                if burst.webhooks > 0 {
                    tracing::info!(webhooks = burst.webhooks, after = ?burst.after, "push webhook");
                    // The pass follows when the fetch returns with something new.
                    self.start_poll(burst.after.map(RevisionId::new), Reason::Webhook);
                    None
                } else {
                    Some(Reason::Request)
                }
            }
        }
    }

    /// On start: put the last revision accepted before the restart back in force, so a
    /// rejected newest commit leaves the daemon on its last good state, not on none.
    async fn restore_revision(&mut self) {
        let last = match self.store.last_accepted_revision() {
            Ok(Some(last)) => last,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(error = %phoenix_core::chain(&err), "cannot read the last accepted revision");
                return;
            }
        };
        let Some(mut source) = self.source.take() else {
            return;
        };
        let id = RevisionId::new(last.id.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let restored = source.restore(&id);
            (source, restored)
        })
        .await;
        match joined {
            Ok((source, restored)) => {
                self.source = Some(source);
                match restored {
                    Ok(Some(revision)) => {
                        tracing::info!(revision = %revision.id, "restored the last accepted revision");
                        self.accepted_at = Some(last.first_seen);
                        self.revision = Some(revision);
                    }
                    Ok(None) => {
                        tracing::info!(revision = %last.id, "the last accepted revision cannot be restored; waiting for the source")
                    }
                    Err(err) => {
                        tracing::warn!(error = %phoenix_core::chain(&err), "cannot restore the last accepted revision")
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %phoenix_core::chain(&err), "restore task failed; reopening the source");
                if let Ok(source) = Source::open(&self.config.source, &self.config.state.path) {
                    self.source = Some(source);
                }
            }
        }
    }

    /// On start: continue unfinished plans from the store, reconciling half-done steps
    /// with inventory through their launch tokens.
    async fn recover(&mut self) {
        match self
            .executor
            .recover(&mut self.store, SystemTime::now())
            .await
        {
            Ok(transitions) => {
                if !transitions.is_empty() {
                    tracing::info!(
                        transitions = transitions.len(),
                        "recovered unfinished plans"
                    );
                }
                self.transitions(&transitions, SystemTime::now());
            }
            Err(err) => {
                tracing::error!(error = %phoenix_core::chain(&err), "crash recovery failed; plans stay as stored")
            }
        }
    }

    async fn reload(&mut self, config: Config) {
        tracing::info!("reloading the configuration");
        if let Err(err) = crate::reload::check(&self.config, &config) {
            tracing::error!(error = %phoenix_core::chain(&err), "config reload refused");
            return;
        }
        if config.providers != self.config.providers {
            match build_providers(
                &config.providers,
                &config.state.path,
                &BuildOptions::default(),
            )
            .await
            {
                Ok(providers) => {
                    self.executor = Executor::new(
                        config.owner.clone(),
                        providers.clone(),
                        self.options.executor.clone(),
                    );
                    self.providers = providers;
                }
                Err(err) => {
                    tracing::error!(error = %phoenix_core::chain(&err), "new provider config refused; keeping the old one");
                    return;
                }
            }
        }
        if config.source != self.config.source {
            match Source::open(&config.source, &config.state.path) {
                Ok(source) => {
                    // A poll of the old source still running is abandoned: its answer
                    // is about a source no longer configured.
                    self.poll = None;
                    self.repoll = None;
                    self.watch = source.watch_signal();
                    self.source_schedule = PollSchedule::new(source.interval());
                    self.source = Some(source);
                    self.next_source_poll = Instant::now();
                }
                Err(err) => {
                    tracing::error!(error = %phoenix_core::chain(&err), "new source config refused; keeping the old one");
                    return;
                }
            }
        }
        self.config = config;
    }

    /// One reconcile pass. Returns how long to wait before the next one.
    async fn pass(&mut self, reason: Reason) -> Duration {
        let span = tracing::info_span!("reconcile", reason = ?reason);
        let _enter = span.enter();
        let started = std::time::Instant::now();
        let mut phases = Phases::new();
        if Instant::now() >= self.next_source_poll {
            self.start_poll(None, reason);
        }
        self.check_stuck_poll();
        phases.end("source");
        self.collect_inventories().await;
        phases.end("inventory");
        let now = SystemTime::now();
        let groups = self.plan(now);
        phases.end("plan");
        self.drift_alerts(now);
        phases.end("drift_alerts");
        if self.config.reconcile.mode == Mode::Enforce {
            self.execute(&groups, now).await;
        }
        // Publishing is the pass's memory peak (a new snapshot beside everything else):
        // the planner's list of groups (4 MB at 100k groups) is not needed there.
        drop(groups);
        phases.end("execute");
        if let Err(err) = self.alerts.renotify(&mut self.store, SystemTime::now()) {
            tracing::error!(error = %phoenix_core::chain(&err), "cannot re-notify open incidents");
        }
        self.publish(SystemTime::now());
        phases.end("publish");
        let retention = self.config.state.retention;
        self.retention
            .due(&mut self.store, &retention, SystemTime::now());
        self.channels.metrics.observe_reconcile(started.elapsed());
        tracing::debug!(phases = %phases, "pass finished");
        let interval = jitter(self.config.reconcile.interval);
        match self.executor_wake {
            Some(wake) => interval.min(wake.min(self.options.busy_interval)),
            None => interval,
        }
    }

    /// After a complete pass: open and resolve drift incidents and enqueue their alerts.
    /// An incomplete inventory proves nothing, so it neither opens nor resolves. The
    /// alerts read the plan document in place ([`DocumentPass`]): nothing is copied for
    /// the groups without drift.
    fn drift_alerts(&mut self, now: SystemTime) {
        let complete =
            !self.inventories.is_empty() && self.inventories.iter().all(|inv| inv.complete);
        let (Some(document), Some(revision), true) =
            (self.document.as_ref(), self.revision.as_ref(), complete)
        else {
            return;
        };
        let pass = DocumentPass {
            commit: revision.id.as_str(),
            document,
        };
        if let Err(err) = self.alerts.observe_drift(&mut self.store, &pass, now) {
            tracing::error!(error = %phoenix_core::chain(&err), "cannot record drift incidents");
        }
    }

    /// Enforce mode: hand the plan to the executor and drive running plans as far as
    /// they can go without waiting.
    async fn execute(&mut self, groups: &[ParsedGroup], now: SystemTime) {
        let (Some(document), Some(revision)) = (self.document.as_ref(), self.revision.as_ref())
        else {
            return;
        };
        let commit = revision.id.to_string();
        match self
            .executor
            .submit(&mut self.store, document, groups, &commit, now)
        {
            Ok(transitions) => self.transitions(&transitions, now),
            Err(err) => tracing::error!(error = %phoenix_core::chain(&err), "cannot submit plans"),
        }
        match self.executor.advance(&mut self.store, now).await {
            Ok(progress) => {
                self.transitions(&progress.transitions, SystemTime::now());
                self.executor_wake = progress.wake_after;
            }
            Err(err) => {
                tracing::error!(error = %phoenix_core::chain(&err), "executor failed; retrying next pass");
                self.executor_wake = Some(self.options.busy_interval);
            }
        }
    }

    /// Log executor transitions, stream them to SSE subscribers and count results.
    fn transitions(&mut self, transitions: &[Transition], now: SystemTime) {
        use phoenix_api::{PlanResult, PlanState, StepState};
        let observed = if transitions.iter().any(|t| {
            matches!(
                t,
                Transition::PlanStarted { .. }
                    | Transition::PlanSucceeded { .. }
                    | Transition::PlanFailed { .. }
                    | Transition::RolledBack { .. }
            )
        }) {
            observed_hashes(self.document.as_ref())
        } else {
            HashMap::new()
        };
        for transition in transitions {
            let plan = transition.plan();
            tracing::info!(plan = %plan.plan, group = %plan.group, kind = transition.kind(), message = transition.message(), "plan transition");
            let plan_event = |state: PlanState| ApiEvent::PlanTransition {
                plan_id: plan.plan.to_string(),
                group: plan.group.to_string(),
                target_hash: plan.target_hash,
                state,
                at: now,
            };
            let event = match transition {
                Transition::PlanStarted { .. } => plan_event(PlanState::Running),
                Transition::AwaitingApproval { .. } => plan_event(PlanState::AwaitingApproval),
                Transition::PlanSucceeded { .. } => {
                    self.channels.metrics.plan_finished(PlanResult::Succeeded);
                    plan_event(PlanState::Succeeded)
                }
                Transition::PlanFailed { .. } => {
                    self.channels.metrics.plan_finished(PlanResult::Failed);
                    plan_event(PlanState::Failed)
                }
                Transition::RolledBack { .. } => {
                    self.channels.metrics.plan_finished(PlanResult::RolledBack);
                    plan_event(PlanState::RolledBack)
                }
                Transition::PlanCancelled { .. } | Transition::Superseded { .. } => {
                    self.channels.metrics.plan_finished(PlanResult::Cancelled);
                    plan_event(PlanState::Cancelled)
                }
                Transition::StepStarted { index, action, .. } => ApiEvent::StepTransition {
                    plan_id: plan.plan.to_string(),
                    index: *index,
                    action: action.clone(),
                    state: StepState::Running,
                    at: now,
                },
                Transition::StepFinished { index, action, .. } => ApiEvent::StepTransition {
                    plan_id: plan.plan.to_string(),
                    index: *index,
                    action: action.clone(),
                    state: StepState::Succeeded,
                    at: now,
                },
            };
            let _ = self.channels.events.send(event);
            let kind = match transition {
                Transition::PlanStarted { .. } => Some(PlanAlertKind::Started),
                Transition::PlanSucceeded { .. } => Some(PlanAlertKind::Succeeded),
                Transition::PlanFailed { .. } => Some(PlanAlertKind::Failed),
                Transition::RolledBack { .. } => Some(PlanAlertKind::RolledBack),
                _ => None,
            };
            if let Some(kind) = kind {
                let alert = PlanAlert {
                    kind,
                    plan_id: plan.plan.clone(),
                    group: plan.group.clone(),
                    target_hash: plan.target_hash,
                    observed_hashes: observed
                        .get(plan.group.as_str())
                        .cloned()
                        .unwrap_or_default(),
                    commit: plan.commit.clone(),
                    message: transition.message().to_string(),
                };
                if let Err(err) = self.alerts.plan_event(&mut self.store, alert, now) {
                    tracing::error!(error = %phoenix_core::chain(&err), "cannot record the plan alert");
                }
            }
        }
    }

    /// Approve and cancel change a plan's state outside `advance`: stream it too.
    fn announce_plan_state(
        &mut self,
        id: &phoenix_store::PlanId,
        result: &Result<phoenix_store::PlanStatus, ExecutorError>,
    ) {
        let Ok(status) = result else { return };
        match self.store.plan(id) {
            Ok(Some(plan)) => {
                tracing::info!(plan = %id, group = %plan.plan.group, status = ?status, "plan changed by an operator");
                let _ = self.channels.events.send(ApiEvent::PlanTransition {
                    plan_id: id.to_string(),
                    group: plan.plan.group.to_string(),
                    target_hash: plan.plan.target_hash,
                    state: view::plan_state(*status),
                    at: SystemTime::now(),
                });
            }
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %phoenix_core::chain(&err), plan = %id, "cannot read the plan")
            }
        }
    }

    /// Start a source poll on the blocking pool (git2 and folder scans block), aimed at
    /// `after` when a push named it. With a poll already running, the request is kept
    /// and served when that one returns (the newest pushed commit wins).
    fn start_poll(&mut self, after: Option<RevisionId>, reason: Reason) {
        if self.poll.is_some() {
            let queued = self.repoll.take().flatten();
            self.repoll = Some(after.or(queued));
            return;
        }
        let Some(mut source) = self.source.take() else {
            return;
        };
        let task = tokio::task::spawn_blocking(move || {
            let outcome = source.poll_now(after.as_ref());
            (source, outcome)
        });
        self.poll = Some(PollInFlight {
            task,
            started: Instant::now(),
            reason,
            stuck_reported: false,
        });
    }

    /// A poll running far longer than any healthy fetch (a remote that accepted the
    /// connection and went silent; libgit2 has no timeout of its own) is reported as a
    /// source error and alerted once. The loop kept running all along; the poll is left
    /// to finish, and its answer is still taken when it comes.
    fn check_stuck_poll(&mut self) {
        let limit = stuck_after(self.source_schedule.interval());
        let Some(poll) = self.poll.as_mut() else {
            return;
        };
        let running = poll.started.elapsed();
        if running < limit || poll.stuck_reported {
            return;
        }
        poll.stuck_reported = true;
        let message = format!(
            "the source poll has not returned for {}s (does the remote accept connections but not answer?); the last good revision stays in force",
            running.as_secs()
        );
        tracing::error!(running_for = ?running, "source poll stuck");
        self.source_error = Some(message.clone());
        let alert = SourceAlert {
            revision: None,
            message,
        };
        if let Err(err) = self
            .alerts
            .source_state(&mut self.store, Some(alert), SystemTime::now())
        {
            tracing::error!(error = %phoenix_core::chain(&err), "cannot record the source alert");
        }
    }

    /// A poll came back: take its outcome, then serve a poll asked for meanwhile.
    /// Returns the reason for a pass unless nothing changed.
    fn finish_poll(&mut self, joined: PollJoin) -> Option<Reason> {
        let poll = self.poll.take().expect("a finished poll was running");
        tracing::debug!(
            took_ms = poll.started.elapsed().as_secs_f64() * 1000.0,
            "source poll finished"
        );
        let changed = self.take_poll_outcome(joined);
        if let Some(after) = self.repoll.take() {
            self.start_poll(after, poll.reason);
        }
        changed.then_some(poll.reason)
    }

    /// Apply a finished poll's outcome; false only when nothing changed.
    fn take_poll_outcome(&mut self, joined: PollJoin) -> bool {
        let (source, outcome) = match joined {
            Ok(pair) => pair,
            Err(err) => {
                tracing::error!(error = %phoenix_core::chain(&err), "source poll task failed; reopening the source");
                match Source::open(&self.config.source, &self.config.state.path) {
                    Ok(source) => self.source = Some(source),
                    Err(err) => {
                        tracing::error!(error = %phoenix_core::chain(&err), "cannot reopen the source")
                    }
                }
                return true;
            }
        };
        self.source = Some(source);
        let now = SystemTime::now();
        let ok = outcome.is_ok();
        let is_git = matches!(
            self.config.source,
            phoenix_core::config::SourceConfig::Git(_)
        );
        if is_git {
            self.channels.metrics.git_fetch(ok);
        }
        let source_alert = match &outcome {
            Ok(PollOutcome::Rejected { rejection, .. }) => Some(SourceAlert {
                revision: Some(rejection.revision.to_string()),
                message: rejection.primary().to_string(),
            }),
            Err(err) => Some(SourceAlert {
                revision: None,
                message: error_chain(err),
            }),
            Ok(_) => None,
        };
        if let Err(err) = self.alerts.source_state(&mut self.store, source_alert, now) {
            tracing::error!(error = %phoenix_core::chain(&err), "cannot record the source alert");
        }
        // Unchanged needs no pass, unless it clears an error the API shows.
        let changed = !matches!(outcome, Ok(PollOutcome::Unchanged)) || self.source_error.is_some();
        match outcome {
            Ok(PollOutcome::Unchanged) => self.source_error = None,
            Ok(PollOutcome::Accepted { revision, reparsed }) => {
                tracing::info!(revision = %revision.id, groups = revision.groups.len(), reparsed = reparsed.len(), "revision accepted");
                self.record_revision(&revision.id, revision.commit.as_ref(), None, now);
                self.record_generations(&revision, now);
                self.revision = Some(revision.clone());
                self.accepted_at = Some(now);
                self.rejection = None;
                self.source_error = None;
                let _ = self.channels.events.send(ApiEvent::RevisionAccepted {
                    revision: revision.id.to_string(),
                    at: now,
                });
            }
            Ok(PollOutcome::Rejected { rejection, .. }) => {
                tracing::warn!(revision = %rejection.revision, problem = %rejection.primary(), "revision rejected; keeping the last good one");
                self.record_revision(
                    &rejection.revision,
                    rejection.commit.as_ref(),
                    Some(&rejection),
                    now,
                );
                if self.rejection.as_ref().map(|r| &r.revision) != Some(&rejection.revision) {
                    let _ = self.channels.events.send(ApiEvent::RevisionRejected {
                        error: view::rejection_error(&rejection),
                        at: now,
                    });
                }
                self.rejection = Some(rejection);
                self.source_error = None;
            }
            Err(err) => {
                tracing::warn!(error = %phoenix_core::chain(&err), "cannot read the source; keeping the last good revision");
                self.source_error = Some(error_chain(&err));
            }
        }
        let delay = self.source_schedule.next_delay(ok, rand::random::<f64>());
        self.next_source_poll = Instant::now() + delay;
        changed
    }

    /// Per-group history: a new generation for every group whose hash is new or changed.
    fn record_generations(&mut self, revision: &Revision, now: SystemTime) {
        let previous = self.revision.as_ref().map(|r| r.groups.clone());
        for (name, desired) in revision.groups.iter() {
            let unchanged = previous
                .as_ref()
                .and_then(|p| p.get(name))
                .is_some_and(|old| old.hash == desired.hash);
            if unchanged {
                continue;
            }
            if let Err(err) =
                self.store
                    .record_generation(name, &desired.hash, revision.id.as_str(), now)
            {
                tracing::error!(error = %phoenix_core::chain(&err), group = %name, "cannot record the group's history");
            }
        }
    }

    fn record_revision(
        &mut self,
        id: &RevisionId,
        commit: Option<&phoenix_source::CommitInfo>,
        rejection: Option<&Rejection>,
        now: SystemTime,
    ) {
        let verdict = match rejection {
            None => RevisionVerdict::Accepted,
            Some(rejection) => {
                let problem = rejection.primary();
                RevisionVerdict::Rejected(phoenix_store::RevisionError {
                    path: problem.path.clone().unwrap_or_default(),
                    line: problem.line.and_then(|l| u32::try_from(l).ok()),
                    column: problem.column.and_then(|c| u32::try_from(c).ok()),
                    message: problem.message.clone(),
                })
            }
        };
        let seen = SeenRevision {
            id: id.to_string(),
            verdict,
            author: commit.map(|c| c.author.clone()),
            message: commit.map(|c| c.message.clone()),
        };
        if let Err(err) = self.store.record_revision(&seen, now) {
            tracing::error!(error = %phoenix_core::chain(&err), "cannot record the revision in the store");
        }
    }

    /// Every provider's inventory, concurrently. An incomplete one replaces the last only
    /// as "incomplete": the planner then acts on nothing missing or orphaned there.
    async fn collect_inventories(&mut self) {
        // The last ones are replaced whole; dropping them first keeps one copy of the
        // fleet in memory instead of two while the providers answer.
        self.inventories.clear();
        let owner = self.config.owner.clone();
        let passes = self.providers.values().map(|provider| {
            let provider = provider.clone();
            let owner = owner.clone();
            async move { provider.inventory(&owner).await }
        });
        for inventory in futures::future::join_all(passes).await {
            if !inventory.complete {
                tracing::warn!(provider = %inventory.provider, error = ?inventory.error, "inventory incomplete");
            }
            self.inventories.push(inventory);
        }
        self.inventories
            .sort_unstable_by(|a, b| a.provider.cmp(&b.provider));
    }

    /// Run the pure planner over what is known now; returns the desired groups.
    fn plan(&mut self, now: SystemTime) -> Vec<ParsedGroup> {
        let Some(revision) = self.revision.clone() else {
            return Vec::new();
        };
        let groups: Vec<ParsedGroup> = revision
            .groups
            .values()
            .map(|desired| ParsedGroup {
                group: Arc::clone(&desired.group),
                hash: desired.hash,
            })
            .collect();
        let memory: PlanMemory = match self.store.load_planner_memory() {
            Ok(memory) => memory.unwrap_or_default(),
            Err(err) => {
                tracing::error!(error = %phoenix_core::chain(&err), "cannot load the planner memory; starting empty");
                PlanMemory::default()
            }
        };
        let failed: Vec<FailedGeneration> = match self.store.failed_hashes() {
            Ok(failed) => failed
                .into_iter()
                .map(|f| FailedGeneration {
                    group: f.group.to_string(),
                    hash: f.spec_hash,
                    commit: f.commit,
                })
                .collect(),
            Err(err) => {
                // Planning as if none had failed would launch a failed generation again
                // (issue 17): this pass plans nothing and keeps the last document.
                tracing::error!(error = %phoenix_core::chain(&err), "cannot load failed generations; skipping this pass");
                return groups;
            }
        };
        let input = PlanInput {
            revision: revision.id.as_str(),
            owner: &self.config.owner,
            groups: &groups,
            inventories: &self.inventories,
            config: &self.config.reconcile,
            memory: &memory,
            failed: &failed,
            now,
        };
        // A refused input keeps the last document (and the status it shows); an accepted
        // one cannot fail, so the last document is released first rather than held
        // beside the new one (at 100k groups each is ~30 MB).
        let checked = match phoenix_core::plan::check(&input) {
            Ok(checked) => checked,
            Err(err) => {
                tracing::error!(error = %phoenix_core::chain(&err), "planning failed");
                return groups;
            }
        };
        self.document = None;
        let outcome = plan_checked(checked);
        if let Err(err) = self.store.save_planner_memory(&outcome.memory, now) {
            tracing::error!(error = %phoenix_core::chain(&err), "cannot save the planner memory");
        }
        self.track_findings(&outcome.document, now);
        if self.inventories.iter().all(|inv| inv.complete) && !self.inventories.is_empty() {
            self.ready = true;
        }
        if self.config.reconcile.mode == Mode::Observe {
            tracing::debug!(
                changes = outcome.document.changes,
                "observe mode: not acting"
            );
        }
        self.document = Some(outcome.document);
        groups
    }

    /// Remember since when each finding is open, and stream opened/resolved events.
    fn track_findings(&mut self, document: &PlanDocument, now: SystemTime) {
        let mut current: HashMap<FindingKey, SystemTime> = HashMap::new();
        for group in &document.groups {
            for finding in &group.drift {
                let key = view::finding_key(group.name.as_str(), finding);
                let since = match self.since.get(&key) {
                    Some(since) => *since,
                    None => {
                        let _ = self.channels.events.send(ApiEvent::DriftOpened {
                            group: group.name.to_string(),
                            kind: finding.kind,
                            instance_id: finding.instance_id.clone(),
                            at: now,
                        });
                        now
                    }
                };
                current.insert(key, since);
            }
        }
        for (group, kind, instance_id, _) in self.since.keys().filter(|k| !current.contains_key(*k))
        {
            let _ = self.channels.events.send(ApiEvent::DriftResolved {
                group: group.clone(),
                kind: *kind,
                instance_id: instance_id.clone(),
                at: now,
            });
        }
        self.since = current;
    }

    fn publish(&mut self, now: SystemTime) {
        self.histories.refresh(&mut self.store);
        let alerts = match self.store.outbox_counts() {
            Ok(counts) => AlertCounts {
                pending: counts.values().map(|c| c.pending as usize).sum(),
                failed: counts
                    .values()
                    .map(|c| (c.failing + c.expired) as usize)
                    .sum(),
            },
            Err(_) => AlertCounts::default(),
        };
        let revision = self
            .revision
            .as_ref()
            .zip(self.accepted_at)
            .map(|(r, at)| (r.id.as_str(), at));
        let previous = Arc::clone(&self.channels.snapshots.borrow());
        let input = ViewInput {
            ready: self.ready,
            revision,
            rejection: self.rejection.as_deref(),
            source_error: self.source_error.as_deref(),
            inventories: &self.inventories,
            document: self.document.as_ref(),
            since: &self.since,
            alerts,
            previous: Some(&previous),
        };
        let snapshot = view::build(&self.store, &input, &self.histories, now);
        self.channels.snapshots.send_replace(snapshot);
    }
}

/// A plan document as the drift alerts read it: every report is a group of the pass.
struct DocumentPass<'a> {
    commit: &'a str,
    document: &'a PlanDocument,
}

impl DriftObservations for DocumentPass<'_> {
    fn commit(&self) -> &str {
        self.commit
    }

    fn groups(&self) -> usize {
        self.document.groups.len()
    }

    fn group(&self, index: usize) -> (&phoenix_core::GroupName, &[phoenix_core::drift::Finding]) {
        let report = &self.document.groups[index];
        (&report.name, &report.drift)
    }

    fn desired_hash(&self, index: usize) -> Option<phoenix_core::SpecHash> {
        self.document.groups[index].desired_hash
    }

    /// The observed hashes that are spec hashes (`(none)` is not; the findings say so).
    fn observed_hashes(&self, index: usize) -> Vec<phoenix_core::SpecHash> {
        self.document.groups[index]
            .observed_hashes
            .iter()
            .filter_map(|h| h.hash.parse().ok())
            .collect()
    }
}

/// The distinct spec hashes running in each group, per the plan document (the planner
/// counted them from the same inventories): built once per batch of transitions, so a
/// pass with many plans does not scan the fleet once per plan.
fn observed_hashes(document: Option<&PlanDocument>) -> HashMap<&str, Vec<phoenix_core::SpecHash>> {
    let Some(document) = document else {
        return HashMap::new();
    };
    // A group can have two reports (its instances on a provider it moved away from are
    // reported as orphans under the same name): its hashes are the union.
    let mut by_group: HashMap<&str, Vec<phoenix_core::SpecHash>> = HashMap::new();
    for report in &document.groups {
        by_group.entry(report.name.as_str()).or_default().extend(
            report
                .observed_hashes
                .iter()
                .filter_map(|h| h.hash.parse::<phoenix_core::SpecHash>().ok()),
        );
    }
    for hashes in by_group.values_mut() {
        hashes.sort();
        hashes.dedup();
    }
    by_group
}

/// What a source poll task returns.
type PollJoin = Result<(Source, Result<PollOutcome, SourceError>), tokio::task::JoinError>;

/// A source poll running on the blocking pool.
struct PollInFlight {
    task: tokio::task::JoinHandle<(Source, Result<PollOutcome, SourceError>)>,
    started: Instant,
    /// What asked for it; the pass that follows a change carries it.
    reason: Reason,
    /// Whether [`Daemon::check_stuck_poll`] has reported it.
    stuck_reported: bool,
}

/// Resolves when the running poll returns; never without one.
async fn poll_finished(poll: Option<&mut PollInFlight>) -> PollJoin {
    match poll {
        Some(poll) => (&mut poll.task).await,
        None => std::future::pending().await,
    }
}

/// How long a poll may run before it is reported as stuck: far beyond any healthy
/// fetch, and beyond a couple of poll intervals.
fn stuck_after(interval: Duration) -> Duration {
    (interval * 2).max(Duration::from_secs(10))
}

/// Wall time of each phase of a pass, for the `pass finished` debug line.
struct Phases {
    last: std::time::Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn new() -> Self {
        Phases {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }

    fn end(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((phase, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (phase, took)) in self.done.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{phase}={:.1}ms", took.as_secs_f64() * 1000.0)?;
        }
        Ok(())
    }
}

/// The API's answer to approve or cancel; `None` for an internal failure (the API then
/// answers 503 rather than a wrong verdict).
fn plan_reply(
    plan_id: String,
    result: Result<phoenix_store::PlanStatus, ExecutorError>,
) -> Option<phoenix_api::PlanReply> {
    match result {
        Ok(status) => Some(Ok(view::plan_state(status))),
        Err(ExecutorError::PlanNotFound { .. }) => {
            Some(Err(PlanCommandError::NotFound { plan_id }))
        }
        Err(
            ExecutorError::NotAwaitingApproval { status, .. }
            | ExecutorError::NotActive { status, .. },
        ) => Some(Err(PlanCommandError::WrongState {
            plan_id,
            state: view::plan_state(status),
        })),
        Err(err) => {
            tracing::error!(error = %phoenix_core::chain(&err), plan = %plan_id, "plan command failed");
            None
        }
    }
}

/// Wait for the folder watcher, or forever when there is none.
async fn changed(watch: Option<&WatchSignal>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

/// `interval` give or take 10%, so many daemons do not poll in lockstep.
fn jitter(interval: Duration) -> Duration {
    phoenix_source::jitter(interval, 0.1, rand::random::<f64>())
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
