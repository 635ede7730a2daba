//! The reconcile loop in process, on a paused clock, against a fake source and a fake
//! provider (issue 15): bursts of webhooks, watcher signals and requests coalesce into
//! one poll or pass, a poll that brings something new is followed by a pass and a push
//! during a poll by one more poll, polling keeps its own interval, a poll that never
//! returns stalls only the source, and shutdown during a pass stops it at its next
//! checkpoint.
//!
//! Time is tokio's paused clock: when every task waits, it jumps to the next timer, so
//! `settle` means "let the loop do everything it can, then a moment more". Passes are
//! counted as inventory calls of the one provider (observe mode: the executor never
//! reads it).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use phoenix_api::{ApiCommand, ApiEvent, Forge, Metrics, Snapshot};
use phoenix_cloud::{LaunchRequest, Provider, ProviderError};
use phoenix_core::config::{Config, ProviderConfig, SourceConfig};
use phoenix_core::model::{Instance, InstanceHealth, Inventory};
use phoenix_daemon::daemon::{
    Backends, Channels, DaemonError, LoopOptions, LoopSource, Parts, PollTask, Providers,
    RestoreTask, run_with,
};
use phoenix_source::{PollOutcome, Revision, RevisionId, SourceError, WatchSignal};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Longest a test waits for anything (virtual time).
const PATIENCE: Duration = Duration::from_secs(120);

/// What one poll of the fake source does.
pub(crate) enum Step {
    /// Answer at once.
    Now(PollOutcome),
    /// Answer when the test sends the outcome.
    Wait(oneshot::Receiver<PollOutcome>),
    /// Never answer (a remote that accepted the connection and went silent).
    Hang,
}

/// The fake source's script and record, shared with the test.
struct SourceState {
    /// What the next polls do; an empty script answers `Unchanged`.
    script: Mutex<VecDeque<Step>>,
    /// The pushed commit each poll was aimed at, in order.
    polls: Mutex<Vec<Option<String>>>,
    /// How many polls have started.
    started: watch::Sender<usize>,
    watch: WatchSignal,
    interval: Duration,
}

struct FakeSource(Arc<SourceState>);

impl LoopSource for FakeSource {
    fn interval(&self) -> Duration {
        self.0.interval
    }

    fn watch_signal(&self) -> Option<WatchSignal> {
        Some(self.0.watch.clone())
    }

    fn poll(self: Box<Self>, after: Option<RevisionId>) -> PollTask {
        let state = Arc::clone(&self.0);
        state
            .polls
            .lock()
            .expect("test lock")
            .push(after.map(|a| a.to_string()));
        state.started.send_modify(|n| *n += 1);
        let step = state.script.lock().expect("test lock").pop_front();
        Box::pin(async move {
            let outcome = match step {
                None => PollOutcome::Unchanged,
                Some(Step::Now(outcome)) => outcome,
                Some(Step::Wait(answer)) => match answer.await {
                    Ok(outcome) => outcome,
                    Err(_) => std::future::pending().await,
                },
                Some(Step::Hang) => std::future::pending().await,
            };
            Ok((self as Box<dyn LoopSource>, Ok::<_, SourceError>(outcome)))
        })
    }

    fn restore(self: Box<Self>, _id: RevisionId) -> RestoreTask {
        Box::pin(async move { Ok((self as Box<dyn LoopSource>, Ok(None))) })
    }
}

/// A provider with an empty fleet that counts inventory calls (one per pass) and can
/// hold the next one until the test lets it go.
#[derive(Debug)]
struct FakeProvider {
    inventories: watch::Sender<usize>,
    gate: Mutex<Option<oneshot::Receiver<()>>>,
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &str {
        "fake"
    }

    fn type_name(&self) -> &'static str {
        "sim"
    }

    async fn inventory(&self, _owner: &str) -> Inventory {
        self.inventories.send_modify(|n| *n += 1);
        let gate = self.gate.lock().expect("test lock").take();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        Inventory {
            provider: "fake".into(),
            complete: true,
            collected_at: SystemTime::now(),
            instances: Vec::new(),
            error: None,
        }
    }

    async fn launch(&self, _request: &LaunchRequest) -> Result<Vec<Instance>, ProviderError> {
        Ok(Vec::new())
    }

    async fn terminate(&self, _ids: &[String]) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn health(
        &self,
        _ids: &[String],
    ) -> Result<BTreeMap<String, InstanceHealth>, ProviderError> {
        Ok(BTreeMap::new())
    }

    async fn find_by_launch_token(
        &self,
        _owner: &str,
        _token: &str,
    ) -> Result<Vec<Instance>, ProviderError> {
        Ok(Vec::new())
    }
}

struct FakeBackends {
    source: Arc<SourceState>,
    provider: Arc<FakeProvider>,
}

#[async_trait]
impl Backends for FakeBackends {
    fn open_source(
        &self,
        _config: &SourceConfig,
        _state_dir: &Path,
    ) -> Result<Box<dyn LoopSource>, SourceError> {
        Ok(Box::new(FakeSource(Arc::clone(&self.source))))
    }

    async fn build_providers(
        &self,
        _config: &[ProviderConfig],
        _state_dir: &Path,
    ) -> Result<Providers, ProviderError> {
        let provider: Arc<dyn Provider> = self.provider.clone();
        Ok(BTreeMap::from([("fake".to_string(), provider)]))
    }
}

/// A loop running in this test's runtime.
pub(crate) struct Harness {
    _dir: Option<tempfile::TempDir>,
    source: Arc<SourceState>,
    provider: Arc<FakeProvider>,
    pub(crate) commands: mpsc::Sender<ApiCommand>,
    _reloads: mpsc::Sender<Config>,
    pub(crate) snapshots: watch::Receiver<Arc<Snapshot>>,
    /// The loop's event stream, to subscribe to.
    pub(crate) events: broadcast::Sender<ApiEvent>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), DaemonError>>>,
}

/// An accepted revision with no groups.
pub(crate) fn accepted(id: &str) -> PollOutcome {
    PollOutcome::Accepted {
        revision: Arc::new(Revision {
            id: RevisionId::new(id),
            commit: None,
            groups: Arc::new(BTreeMap::new()),
            rejection: None,
            signature: None,
        }),
        reparsed: Vec::new(),
    }
}

fn webhook(after: &str) -> ApiCommand {
    ApiCommand::Webhook {
        forge: Forge::Github,
        after: Some(after.to_string()),
        reference: Some("refs/heads/main".into()),
        delivery_id: None,
    }
}

impl Harness {
    /// Start the loop with a source polled every `source_interval` and passes an hour
    /// apart (so only what a test does causes one), with a first poll scripted.
    fn start(source_interval: Duration, script: Vec<Step>) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut harness = Harness::start_in(dir.path(), "", source_interval, script);
        harness._dir = Some(dir);
        harness
    }

    /// [`Harness::start`] with its folders (and store) under `root`, and `reconcile` keys
    /// added after `mode: observe` (e.g. `, windows: [...]`).
    pub(crate) fn start_in(
        root: &Path,
        reconcile: &str,
        source_interval: Duration,
        script: Vec<Step>,
    ) -> Harness {
        let desired = root.join("desired");
        std::fs::create_dir_all(&desired).expect("desired folder");
        let text = format!(
            "owner: loop-test\nsource: {{dir: {{path: '{}', watch: false}}}}\nproviders: [{{name: fake, type: sim}}]\nreconcile: {{interval: 1h, mode: observe{reconcile}}}\nstate: {{path: '{}'}}\n",
            desired.display(),
            root.join("state").display(),
        );
        let config = Config::parse(&text).expect("test config is valid");
        let source = Arc::new(SourceState {
            script: Mutex::new(script.into()),
            polls: Mutex::new(Vec::new()),
            started: watch::channel(0).0,
            watch: WatchSignal::new(),
            interval: source_interval,
        });
        let provider = Arc::new(FakeProvider {
            inventories: watch::channel(0).0,
            gate: Mutex::new(None),
        });
        let (snapshot_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        let (commands, command_rx) = mpsc::channel(256);
        let (reloads, reload_rx) = mpsc::channel(4);
        let events = broadcast::channel(1024).0;
        let channels = Channels {
            snapshots: snapshot_tx,
            commands: command_rx,
            events: events.clone(),
            metrics: Arc::new(Metrics::default()),
            reloads: reload_rx,
        };
        let parts = Parts {
            config,
            options: LoopOptions::default(),
            channels,
            backends: Arc::new(FakeBackends {
                source: Arc::clone(&source),
                provider: Arc::clone(&provider),
            }),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            run_with(parts, &BTreeMap::new(), shutdown).await
        });
        Harness {
            _dir: None,
            source,
            provider,
            commands,
            _reloads: reloads,
            snapshots,
            events,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Passes so far.
    fn passes(&self) -> usize {
        *self.provider.inventories.borrow()
    }

    /// The pushed commit each poll so far was aimed at.
    fn polls(&self) -> Vec<Option<String>> {
        self.source.polls.lock().expect("test lock").clone()
    }

    /// Wait until `passes` passes have started.
    pub(crate) async fn passes_reach(&self, passes: usize) {
        let mut seen = self.provider.inventories.subscribe();
        tokio::time::timeout(PATIENCE, seen.wait_for(|n| *n >= passes))
            .await
            .unwrap_or_else(|_| panic!("pass {passes} never started"))
            .expect("provider alive");
    }

    /// Wait until `polls` polls have started.
    async fn polls_reach(&self, polls: usize) {
        let mut seen = self.source.started.subscribe();
        tokio::time::timeout(PATIENCE, seen.wait_for(|n| *n >= polls))
            .await
            .unwrap_or_else(|_| panic!("poll {polls} never started"))
            .expect("source alive");
    }

    /// Send commands without waiting between them (a burst).
    fn burst(&self, commands: impl IntoIterator<Item = ApiCommand>) {
        for command in commands {
            self.commands.try_send(command).expect("command queue open");
        }
    }

    /// The revision the last published snapshot shows.
    fn shown_revision(&self) -> Option<String> {
        self.snapshots.borrow().revision().id.clone()
    }

    /// Stop the loop and wait for `run_with` to return.
    pub(crate) async fn shut_down(&mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
        let task = self.task.take().expect("stopped once");
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the loop returns after shutdown")
            .expect("loop task did not panic")
            .expect("the loop started");
    }
}

/// Let the loop do everything it can without the clock, then a moment more.
pub(crate) async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_webhooks_signals_and_requests_costs_one_poll_and_one_pass() {
    let mut daemon = Harness::start(Duration::from_secs(3600), vec![Step::Now(accepted("r1"))]);
    // Start: one pass, its poll, and the pass the new revision asks for.
    daemon.passes_reach(2).await;
    settle().await;
    assert_eq!(daemon.polls(), vec![None]);
    assert_eq!(daemon.passes(), 2);
    assert_eq!(daemon.shown_revision().as_deref(), Some("r1"));

    // Ten pushes and three watcher signals at once: one poll aimed at the newest push.
    daemon
        .source
        .script
        .lock()
        .expect("test lock")
        .push_back(Step::Now(accepted("r2")));
    daemon.burst((1..=10).map(|n| webhook(&format!("c{n}"))));
    for _ in 0..3 {
        daemon.source.watch.fire();
    }
    daemon.passes_reach(3).await;
    settle().await;
    assert_eq!(daemon.polls(), vec![None, Some("c10".to_string())]);
    assert_eq!(daemon.passes(), 3, "one pass for the one new revision");
    assert_eq!(daemon.shown_revision().as_deref(), Some("r2"));

    // Five reconcile requests at once: one pass, no poll.
    daemon.burst((0..5).map(|_| ApiCommand::Reconcile));
    daemon.passes_reach(4).await;
    settle().await;
    assert_eq!(daemon.passes(), 4);
    assert_eq!(daemon.polls().len(), 2);
    daemon.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_revision_is_followed_by_a_pass_a_push_during_a_poll_by_one_more_poll_and_polling_keeps_its_interval()
 {
    let (answer, held) = oneshot::channel();
    let mut daemon = Harness::start(
        Duration::from_secs(10),
        vec![Step::Now(PollOutcome::Unchanged), Step::Wait(held)],
    );
    daemon.polls_reach(1).await;
    settle().await;
    assert_eq!(daemon.passes(), 1, "an unchanged poll asks for no pass");

    // The next poll comes at the source's interval (10 s, jittered), not the pass's (1 h).
    tokio::time::sleep(Duration::from_secs(12)).await;
    daemon.polls_reach(2).await;
    assert_eq!(daemon.passes(), 1);

    // A push while that poll runs is kept, not started beside it.
    daemon.burst([webhook("c3")]);
    settle().await;
    assert_eq!(daemon.polls().len(), 2);

    // The poll returns with something new: a pass, and the push's poll right after.
    answer.send(accepted("r2")).expect("poll waiting");
    daemon.passes_reach(2).await;
    daemon.polls_reach(3).await;
    settle().await;
    assert_eq!(daemon.polls()[2].as_deref(), Some("c3"));
    assert_eq!(daemon.passes(), 2, "the push's poll was unchanged: no pass");
    assert_eq!(daemon.shown_revision().as_deref(), Some("r2"));

    // And polling resumes at the interval.
    tokio::time::sleep(Duration::from_secs(12)).await;
    daemon.polls_reach(4).await;
    settle().await;
    assert_eq!(daemon.polls()[3], None);
    assert_eq!(daemon.passes(), 2);
    daemon.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn a_poll_that_never_returns_stalls_only_the_source() {
    // The first poll brings a revision (readiness needs one); the second never returns.
    let mut daemon = Harness::start(
        Duration::from_secs(10),
        vec![Step::Now(accepted("r1")), Step::Hang],
    );
    daemon.passes_reach(2).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    daemon.polls_reach(2).await;
    let passes = daemon.passes();

    // Passes go on; pushes wait for the hung poll instead of piling up polls.
    daemon.burst([ApiCommand::Reconcile, webhook("c2")]);
    daemon.passes_reach(passes + 1).await;
    settle().await;
    assert_eq!(daemon.polls().len(), 2);
    assert!(daemon.snapshots.borrow().ready(), "the fleet is still read");
    assert_eq!(daemon.shown_revision().as_deref(), Some("r1"));

    // Once overdue (two intervals, at least 10 s), the status API says so.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let passes = daemon.passes();
    daemon.burst([ApiCommand::Reconcile]);
    daemon.passes_reach(passes + 1).await;
    settle().await;
    let error = daemon
        .snapshots
        .borrow()
        .revision()
        .error
        .clone()
        .expect("the stuck poll is shown");
    assert!(
        error.message.contains("has not returned"),
        "unexpected error: {}",
        error.message
    );
    assert_eq!(daemon.polls().len(), 2);

    // Shutdown does not wait for the poll.
    daemon.shut_down().await;
}

/// Issue 17, defect 9: SIGTERM is seen during a long pass. An inventory that does not
/// come back is abandoned (and not planned on), and no other pass starts.
#[tokio::test(start_paused = true)]
async fn shutdown_during_a_pass_stops_it_at_its_next_checkpoint_and_starts_no_other() {
    let (_release, gate) = oneshot::channel::<()>();
    let (answer, held) = oneshot::channel();
    let mut daemon = Harness::start(Duration::from_secs(3600), vec![Step::Wait(held)]);
    *daemon.provider.gate.lock().expect("test lock") = Some(gate);
    // Hold the first pass in its inventory, which never answers...
    daemon.passes_reach(1).await;
    // ...and while it is held: a request, a new revision, then shutdown.
    daemon.burst([ApiCommand::Reconcile]);
    answer.send(accepted("r1")).expect("poll waiting");
    let _ = daemon.stop.take().expect("not stopped yet").send(());
    let task = daemon.task.take().expect("running");
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the loop returns without waiting for the inventory")
        .expect("loop task did not panic")
        .expect("the loop started");
    assert!(
        daemon.snapshots.borrow().inventory().is_empty(),
        "an abandoned inventory is not published or planned on"
    );
    assert_eq!(daemon.passes(), 1, "no pass after shutdown");
}
