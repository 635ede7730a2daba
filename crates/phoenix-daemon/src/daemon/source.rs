//! The loop's side of the desired-state source: the [`LoopSource`] seam (the real
//! [`Source`] runs its blocking polls on the blocking pool), the source slot (idle,
//! polling or lost: one enum, so a poll in flight and the source it holds cannot
//! disagree), and what the loop does with a poll's outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_source::{
    CommitInfo, PollOutcome, Rejection, Revision, RevisionId, Source, SourceError, WatchSignal,
};
use phoenix_store::{RevisionVerdict, SeenRevision};
use tokio::time::Instant;

use super::Daemon;
use super::event::Reason;
use crate::alerts::SourceAlert;
use crate::error_chain;
use crate::view;

/// A poll under way; it hands the source back with the outcome.
pub type PollTask = Pin<
    Box<
        dyn Future<
                Output = Result<
                    (Box<dyn LoopSource>, Result<PollOutcome, SourceError>),
                    SourceLost,
                >,
            > + Send,
    >,
>;

/// A restore under way; it hands the source back with the restored revision, if any.
pub type RestoreTask = Pin<
    Box<
        dyn Future<
                Output = Result<
                    (
                        Box<dyn LoopSource>,
                        Result<Option<Arc<Revision>>, SourceError>,
                    ),
                    SourceLost,
                >,
            > + Send,
    >,
>;

/// The task that held the source failed (it panicked): the source is gone with it and
/// is opened again from the config.
#[derive(Debug, thiserror::Error)]
#[error("the source task failed: {0}")]
pub struct SourceLost(pub String);

/// What the loop needs of a desired-state source. A poll owns the source until it
/// returns it, so the loop can go on while it runs.
pub trait LoopSource: Send + 'static {
    /// How often to poll (before jitter).
    fn interval(&self) -> Duration;

    /// For a watched folder, the signal that fires when files change.
    fn watch_signal(&self) -> Option<WatchSignal>;

    /// Start a poll aimed at `after` (a pushed commit) at once; the task resolves when it
    /// returns. It must not need the loop to make progress.
    fn poll(self: Box<Self>, after: Option<RevisionId>) -> PollTask;

    /// Start putting the revision `id` back in force after a restart.
    fn restore(self: Box<Self>, id: RevisionId) -> RestoreTask;
}

impl LoopSource for Source {
    fn interval(&self) -> Duration {
        Source::interval(self)
    }

    fn watch_signal(&self) -> Option<WatchSignal> {
        Source::watch_signal(self)
    }

    /// git2 and folder scans block: the poll runs on the blocking pool, started here.
    fn poll(self: Box<Self>, after: Option<RevisionId>) -> PollTask {
        let mut source = self;
        let task = tokio::task::spawn_blocking(move || {
            let outcome = source.poll_now(after.as_ref());
            (source as Box<dyn LoopSource>, outcome)
        });
        Box::pin(async move { task.await.map_err(|err| SourceLost(err.to_string())) })
    }

    fn restore(self: Box<Self>, id: RevisionId) -> RestoreTask {
        let mut source = self;
        let task = tokio::task::spawn_blocking(move || {
            let restored = Source::restore(&mut source, &id);
            (source as Box<dyn LoopSource>, restored)
        });
        Box::pin(async move { task.await.map_err(|err| SourceLost(err.to_string())) })
    }
}

/// What a finished poll task returns.
pub(super) type PollResult =
    Result<(Box<dyn LoopSource>, Result<PollOutcome, SourceError>), SourceLost>;

/// Where the source is.
pub(super) enum SourceSlot {
    /// Ready for the next poll.
    Idle(Box<dyn LoopSource>),
    /// A poll has it. The loop never waits for it: it comes back as an event, so a remote
    /// that hangs stalls only the source.
    Polling(PollInFlight),
    /// A poll task failed and the source could not be opened again; the next due poll
    /// tries again.
    Lost,
}

/// A source poll under way.
pub(super) struct PollInFlight {
    task: PollTask,
    started: Instant,
    /// What asked for it; the pass that follows a change carries it.
    reason: Reason,
    /// Whether [`Daemon::check_stuck_poll`] has reported it.
    stuck_reported: bool,
    /// A poll asked for while this one runs (a webhook, a watcher signal), with the
    /// newest pushed commit; started as soon as this one returns.
    repoll: Option<Option<RevisionId>>,
}

impl SourceSlot {
    /// Resolves when the running poll returns; never without one.
    pub(super) async fn finished(&mut self) -> PollResult {
        match self {
            SourceSlot::Polling(poll) => (&mut poll.task).await,
            SourceSlot::Idle(_) | SourceSlot::Lost => std::future::pending().await,
        }
    }

    /// How long the running poll has been running, if one is.
    pub(super) fn polling_for(&self) -> Option<Duration> {
        match self {
            SourceSlot::Polling(poll) => Some(poll.started.elapsed()),
            SourceSlot::Idle(_) | SourceSlot::Lost => None,
        }
    }
}

/// A poll asked for: aimed at a pushed commit, or not.
#[derive(Debug, Clone)]
pub(super) struct PollRequest {
    pub(super) after: Option<RevisionId>,
    pub(super) reason: Reason,
}

/// What a returned poll asks of the loop.
pub(super) struct PollFinished {
    /// A pass, unless nothing changed.
    pub(super) pass: Option<Reason>,
    /// The poll asked for while it ran.
    pub(super) repoll: Option<PollRequest>,
}

/// How long a poll may run before it is reported as stuck: far beyond any healthy
/// fetch, and beyond a couple of poll intervals.
fn stuck_after(interval: Duration) -> Duration {
    (interval * 2).max(Duration::from_secs(10))
}

impl Daemon {
    /// Start a source poll, aimed at `after` when a push named it. With a poll already
    /// running, the request is kept and served when that one returns (the newest pushed
    /// commit wins).
    pub(super) fn start_poll(&mut self, request: PollRequest) {
        let source = match std::mem::replace(&mut self.source, SourceSlot::Lost) {
            SourceSlot::Polling(mut poll) => {
                let queued = poll.repoll.take().flatten();
                poll.repoll = Some(request.after.or(queued));
                self.source = SourceSlot::Polling(poll);
                return;
            }
            SourceSlot::Idle(source) => source,
            SourceSlot::Lost => match self.open_source() {
                Some(source) => source,
                None => {
                    let delay = self
                        .source_schedule
                        .next_delay(false, rand::random::<f64>());
                    self.next_source_poll = Instant::now() + delay;
                    return;
                }
            },
        };
        self.source = SourceSlot::Polling(PollInFlight {
            task: source.poll(request.after),
            started: Instant::now(),
            reason: request.reason,
            stuck_reported: false,
            repoll: None,
        });
    }

    /// Open the configured source again (its last one was lost with a failed task).
    fn open_source(&mut self) -> Option<Box<dyn LoopSource>> {
        match self
            .backends
            .open_source(&self.config.source, &self.config.state.path)
        {
            Ok(source) => {
                self.watch = source.watch_signal();
                Some(source)
            }
            Err(err) => {
                tracing::error!(error = %error_chain(&err), "cannot reopen the source");
                self.source_error = Some(error_chain(&err));
                None
            }
        }
    }

    /// On start: put the last revision accepted before the restart back in force, so a
    /// rejected newest commit leaves the daemon on its last good state, not on none.
    pub(super) async fn restore_revision(&mut self) {
        let last = match self.store.last_accepted_revision() {
            Ok(Some(last)) => last,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(error = %error_chain(&err), "cannot read the last accepted revision");
                return;
            }
        };
        let source = match std::mem::replace(&mut self.source, SourceSlot::Lost) {
            SourceSlot::Idle(source) => source,
            other => {
                self.source = other;
                return;
            }
        };
        let (source, restored) = match source.restore(RevisionId::new(last.id.clone())).await {
            Ok(pair) => pair,
            Err(err) => {
                tracing::error!(error = %error_chain(&err), "restore task failed; reopening the source");
                if let Some(source) = self.open_source() {
                    self.source = SourceSlot::Idle(source);
                }
                return;
            }
        };
        self.source = SourceSlot::Idle(source);
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
                tracing::warn!(error = %error_chain(&err), "cannot restore the last accepted revision")
            }
        }
    }

    /// A poll running far longer than any healthy fetch (a remote that accepted the
    /// connection and went silent; libgit2 has no timeout of its own) is reported as a
    /// source error and alerted once. The loop kept running all along; the poll is left
    /// to finish, and its answer is still taken when it comes.
    pub(super) fn check_stuck_poll(&mut self) {
        let limit = stuck_after(self.source_schedule.interval());
        let SourceSlot::Polling(poll) = &mut self.source else {
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
            tracing::error!(error = %error_chain(&err), "cannot record the source alert");
        }
    }

    /// A poll came back: take its outcome, and hand back the poll asked for meanwhile.
    pub(super) fn finish_poll(&mut self, joined: PollResult) -> PollFinished {
        let poll = match std::mem::replace(&mut self.source, SourceSlot::Lost) {
            SourceSlot::Polling(poll) => poll,
            other => {
                // Cannot happen: only a running poll finishes. Keep what is there.
                self.source = other;
                return PollFinished {
                    pass: None,
                    repoll: None,
                };
            }
        };
        tracing::debug!(
            took_ms = poll.started.elapsed().as_secs_f64() * 1000.0,
            "source poll finished"
        );
        let changed = self.take_poll_outcome(joined);
        PollFinished {
            pass: changed.then_some(poll.reason),
            repoll: poll.repoll.map(|after| PollRequest {
                after,
                reason: poll.reason,
            }),
        }
    }

    /// Apply a finished poll's outcome; false only when nothing changed.
    fn take_poll_outcome(&mut self, joined: PollResult) -> bool {
        let (source, outcome) = match joined {
            Ok(pair) => pair,
            Err(err) => {
                tracing::error!(error = %error_chain(&err), "source poll task failed; reopening the source");
                if let Some(source) = self.open_source() {
                    self.source = SourceSlot::Idle(source);
                }
                return true;
            }
        };
        self.source = SourceSlot::Idle(source);
        let now = SystemTime::now();
        let ok = outcome.is_ok();
        if matches!(
            self.config.source,
            phoenix_core::config::SourceConfig::Git(_)
        ) {
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
            tracing::error!(error = %error_chain(&err), "cannot record the source alert");
        }
        // Unchanged needs no pass, unless it clears an error the API shows.
        let changed = !matches!(outcome, Ok(PollOutcome::Unchanged)) || self.source_error.is_some();
        self.apply_outcome(outcome, now);
        let delay = self.source_schedule.next_delay(ok, rand::random::<f64>());
        self.next_source_poll = Instant::now() + delay;
        changed
    }

    /// Put an accepted revision in force, or keep the last good one with the rejection
    /// or error shown.
    fn apply_outcome(&mut self, outcome: Result<PollOutcome, SourceError>, now: SystemTime) {
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
                let _ = self
                    .channels
                    .events
                    .send(phoenix_api::ApiEvent::RevisionAccepted {
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
                    let _ = self
                        .channels
                        .events
                        .send(phoenix_api::ApiEvent::RevisionRejected {
                            error: view::rejection_error(&rejection),
                            at: now,
                        });
                }
                self.rejection = Some(rejection);
                self.source_error = None;
            }
            Err(err) => {
                tracing::warn!(error = %error_chain(&err), "cannot read the source; keeping the last good revision");
                self.source_error = Some(error_chain(&err));
            }
        }
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
                tracing::error!(error = %error_chain(&err), group = %name, "cannot record the group's history");
            }
        }
    }

    /// Record a revision seen, accepted or rejected with its first problem.
    fn record_revision(
        &mut self,
        id: &RevisionId,
        commit: Option<&CommitInfo>,
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
            tracing::error!(error = %error_chain(&err), "cannot record the revision in the store");
        }
    }
}
