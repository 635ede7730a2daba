//! The reconcile loop: one task that owns all daemon state and reacts to a closed set
//! of events ([`event::Event`]), one at a time, in one `match` ([`main_loop`]).
//!
//! ```text
//! Event::Tick            a timer: the pass is due (reconcile interval, jittered; sooner
//!                        while plans run), or the source's next poll is (its interval,
//!                        or its backoff after an error)
//! Event::SourceChanged   the folder watcher fired (it only signals; a rescan backs it up)
//! Event::PollFinished    a source poll returned (it ran on the blocking pool)
//! Event::Webhook         a verified push webhook, naming the pushed commit
//! Event::Command         an API command: reconcile, or approve/cancel/retry/window
//!                        override with a oneshot reply
//! Event::Reload          a new, already validated config (SIGHUP or the config file changed)
//! Event::Shutdown        SIGTERM/SIGINT: stop taking work and return
//! ```
//!
//! Every pass goes through the same path, first start included ([`pass`]): start a
//! source poll when one is due, collect every provider's inventory, plan with the pure
//! planner, hand the plan to the executor (enforce mode only), then publish a fresh
//! snapshot for the API ([`publish`]). Events already waiting when the loop looks are
//! handled together before it acts, so a burst of webhooks or watcher signals costs one
//! poll, and a burst of requests one pass. The loop never waits for the source: a poll
//! (git fetch or folder scan) runs on the blocking pool and comes back as its own event
//! ([`source`]: the source slot is idle, polling or lost), followed by a pass when it
//! brought something new, so a remote that accepts a connection and never answers
//! stalls only the source (reported on the status API once overdue), never the fleet or
//! shutdown. Shutdown is seen during a pass too: the pass stops at its next checkpoint
//! (an inventory still being collected is abandoned, no further plan is driven), but an
//! executor step in flight is never cut halfway. A failure never ends the loop: it is logged, shown on the status
//! API and retried.
//!
//! The store is one SQLite connection called inline from the loop task (short local
//! writes; the loop is the only writer, so they never wait on a lock held elsewhere
//! apart from the alert delivery's outbox rows). What the loop is built from, the
//! source and the providers, comes through [`Backends`], so tests run the loop in
//! process against fakes on a paused clock.

mod backends;
mod event;
mod main_loop;
mod pass;
mod publish;
mod source;
mod transitions;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_api::{ApiCommand, ApiEvent, Metrics, Snapshot};
use phoenix_core::config::Config;
use phoenix_core::model::Inventory;
use phoenix_core::plan::PlanDocument;
use phoenix_source::{PollSchedule, Rejection, Revision};
use phoenix_store::{Store, StoreOptions};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::alerts::{AlertOptions, Alerts, Delivery, DeliveryOptions};
use crate::error_chain;
use crate::executor::{Executor, ExecutorOptions};
use crate::view::{self, FindingKey};

pub use backends::{Backends, Providers, RealBackends};
pub use source::{LoopSource, PollTask, RestoreTask, SourceLost};

use source::SourceSlot;

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
    /// Longest wait between passes while a plan is running (executor progress).
    pub busy_interval: Duration,
    /// Executor tunables.
    pub executor: ExecutorOptions,
}

impl Default for LoopOptions {
    fn default() -> Self {
        Self {
            busy_interval: Duration::from_secs(2),
            executor: ExecutorOptions::default(),
        }
    }
}

/// The loop's state. Owned by one task; nothing here is shared.
struct Daemon {
    config: Config,
    options: LoopOptions,
    backends: Arc<dyn Backends>,
    store: Store,
    /// The source: idle, polling on the blocking pool, or lost.
    source: SourceSlot,
    source_schedule: PollSchedule,
    next_source_poll: Instant,
    /// When the next pass is due unless something asks for one sooner.
    next_pass: Instant,
    watch: Option<phoenix_source::WatchSignal>,
    providers: Providers,
    executor: Executor,
    alerts: Alerts,
    /// When the executor wants to be called again (a plan is running).
    executor_wake: Option<Duration>,
    /// When old state was last pruned (design section 16).
    retention: crate::retention::Retention,
    revision: Option<Arc<Revision>>,
    /// Change windows and the operator's override (crate::windows).
    windows: crate::windows::LoopWindows,
    /// `policy.images` verdicts of this pass's images (crate::policy).
    images: phoenix_core::policy::ImageVerdicts,
    /// The target groups read this pass for groups with `spec.traffic` (crate::traffic).
    traffic: phoenix_core::traffic::TrafficView,
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
    /// Cancelled when shutdown is asked for during a pass: the pass stops at its next
    /// checkpoint (inventory abandoned, no further plan driven) instead of running on.
    stop: tokio_util::sync::CancellationToken,
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
    let parts = Parts {
        config,
        options,
        channels,
        backends: Arc::new(RealBackends),
    };
    run_with(parts, alert_secrets, shutdown).await
}

/// What [`run_with`] builds the loop from.
pub struct Parts {
    /// The validated config.
    pub config: Config,
    /// Tunables that are not config keys.
    pub options: LoopOptions,
    /// The channels shared with the API server.
    pub channels: Channels,
    /// Where the source and the providers come from (the real ones: [`RealBackends`]).
    pub backends: Arc<dyn Backends>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("config", &self.config)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// [`run`] with the source and providers taken from `parts.backends`.
pub async fn run_with(
    parts: Parts,
    alert_secrets: &BTreeMap<String, Vec<u8>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let Parts {
        config,
        options,
        channels,
        backends,
    } = parts;
    let state_dir = config.state.path.clone();
    let open_store = || {
        Store::open(&state_dir, StoreOptions::default()).map_err(|source| DaemonError::Store {
            path: state_dir.display().to_string(),
            source,
        })
    };
    let store = open_store()?;
    let windows = crate::windows::LoopWindows::load(&config.reconcile.windows, &store);
    let alerts = Alerts::new(
        &config.alerts,
        alert_secrets,
        AlertOptions {
            owner: config.owner.clone(),
            ..AlertOptions::default()
        },
    )
    .map_err(DaemonError::Alerts)?;
    let (delivery_stop, delivery_stopped) = watch::channel(false);
    let delivery_task = {
        // The first delivery is built here, so a bad receiver stops the start; after a
        // panic the supervisor builds the next one from a fresh store connection.
        let mut first = Some(
            Delivery::new(
                open_store()?,
                alerts.receivers(),
                DeliveryOptions {
                    metrics: Some(channels.metrics.clone()),
                    ..DeliveryOptions::default()
                },
            )
            .map_err(DaemonError::Alerts)?,
        );
        let receivers = alerts.receivers();
        let metrics = channels.metrics.clone();
        let wake = alerts.delivery_wake();
        let state_dir = state_dir.clone();
        let start = move |mut stop: watch::Receiver<bool>| {
            let delivery = first.take().or_else(|| {
                let store = Store::open(&state_dir, StoreOptions::default())
                    .inspect_err(|err| tracing::error!(error = %error_chain(err), "alert delivery: cannot open the store"))
                    .ok()?;
                let options = DeliveryOptions {
                    metrics: Some(metrics.clone()),
                    ..DeliveryOptions::default()
                };
                Delivery::new(store, receivers.clone(), options)
                    .inspect_err(|err| tracing::error!(error = %error_chain(err), "alert delivery: cannot start"))
                    .ok()
            })?;
            let wake = Arc::clone(&wake);
            Some(async move {
                delivery
                    .run(wake, async move {
                        let _ = stop.wait_for(|stop| *stop).await;
                    })
                    .await;
            })
        };
        tokio::spawn(crate::supervise::supervise(
            "alert delivery",
            start,
            delivery_stopped,
        ))
    };
    let source = backends
        .open_source(&config.source, &state_dir)
        .map_err(DaemonError::Source)?;
    let watch = source.watch_signal();
    let providers = backends
        .build_providers(&config.providers, &state_dir)
        .await
        .map_err(DaemonError::Providers)?;
    let source_schedule = PollSchedule::new(source.interval());
    let executor = Executor::new(
        config.owner.clone(),
        providers.clone(),
        options.executor.clone(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let mut executor = executor;
    executor.set_stop(stop.clone());
    let mut daemon = Daemon {
        stop,
        config,
        options,
        backends,
        store,
        source: SourceSlot::Idle(source),
        source_schedule,
        next_source_poll: Instant::now(),
        next_pass: Instant::now(),
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
        images: phoenix_core::policy::ImageVerdicts::default(),
        traffic: phoenix_core::traffic::TrafficView::new(),
        windows,
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
                tracing::error!(error = %error_chain(&err), "crash recovery failed; plans stay as stored")
            }
        }
    }

    /// A new validated config: new providers and a new source only when their config
    /// changed; a part that cannot be built keeps the whole old config in force.
    async fn reload(&mut self, config: Config) {
        tracing::info!("reloading the configuration");
        if let Err(err) = crate::reload::check(&self.config, &config) {
            tracing::error!(error = %error_chain(&err), "config reload refused");
            return;
        }
        if config.providers != self.config.providers {
            match self
                .backends
                .build_providers(&config.providers, &config.state.path)
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
                    tracing::error!(error = %error_chain(&err), "new provider config refused; keeping the old one");
                    return;
                }
            }
        }
        if config.source != self.config.source {
            match self
                .backends
                .open_source(&config.source, &config.state.path)
            {
                Ok(source) => {
                    // A poll of the old source still running is abandoned: its answer
                    // is about a source no longer configured.
                    self.watch = source.watch_signal();
                    self.source_schedule = PollSchedule::new(source.interval());
                    self.source = SourceSlot::Idle(source);
                    self.next_source_poll = Instant::now();
                }
                Err(err) => {
                    tracing::error!(error = %error_chain(&err), "new source config refused; keeping the old one");
                    return;
                }
            }
        }
        self.windows.reload(&config.reconcile.windows);
        self.config = config;
    }
}

/// `interval` give or take 10%, so many daemons do not poll in lockstep.
fn jitter(interval: Duration) -> Duration {
    phoenix_source::jitter(interval, 0.1, rand::random::<f64>())
}
