//! The closed set of events the loop reacts to ([`Event`]), why a pass runs
//! ([`Reason`]), and the one place that waits for the next event
//! ([`Daemon::next_event`]).

use std::future::Future;
use std::pin::Pin;

use phoenix_api::{ApiCommand, PlanReply, RetryReply, WindowOverride, WindowOverrideReply};
use phoenix_core::config::Config;
use phoenix_source::{RevisionId, WatchSignal};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Daemon;
use super::source::{PollResult, SourceSlot};

/// Everything the loop reacts to. Each is turned into work in one `match`
/// ([`Daemon::handle`](super::Daemon)).
pub(super) enum Event {
    /// A timer: the pass is due, or the source's next poll is.
    Tick,
    /// The folder watcher fired.
    SourceChanged,
    /// The running source poll returned.
    PollFinished(PollResult),
    /// A verified push webhook, with the pushed commit when it named one.
    Webhook {
        /// The pushed commit.
        after: Option<RevisionId>,
    },
    /// Any other API command.
    Command(Command),
    /// A new, validated config.
    Reload(Box<Config>),
    /// Stop taking work and return.
    Shutdown,
}

/// The API commands other than webhooks; each is followed by a pass.
pub(super) enum Command {
    /// Run a pass now.
    Reconcile,
    /// Start a plan awaiting approval, answering on `reply`.
    Approve {
        plan_id: String,
        reply: oneshot::Sender<PlanReply>,
    },
    /// Stop a plan, answering on `reply`.
    Cancel {
        plan_id: String,
        reply: oneshot::Sender<PlanReply>,
    },
    /// Lift a group's failed-generation block (`crate::retry`), answering on `reply`.
    Retry {
        group: String,
        reply: oneshot::Sender<RetryReply>,
    },
    /// Lift every change window until `request.until` (`crate::windows`), answering on
    /// `reply`.
    WindowOverride {
        request: WindowOverride,
        reply: oneshot::Sender<WindowOverrideReply>,
    },
}

impl From<ApiCommand> for Event {
    fn from(command: ApiCommand) -> Event {
        match command {
            ApiCommand::Webhook { after, .. } => Event::Webhook {
                after: after.map(RevisionId::new),
            },
            ApiCommand::Reconcile => Event::Command(Command::Reconcile),
            ApiCommand::Approve { plan_id, reply } => {
                Event::Command(Command::Approve { plan_id, reply })
            }
            ApiCommand::Cancel { plan_id, reply } => {
                Event::Command(Command::Cancel { plan_id, reply })
            }
            ApiCommand::Retry { group, reply } => Event::Command(Command::Retry { group, reply }),
            ApiCommand::WindowOverride { request, reply } => {
                Event::Command(Command::WindowOverride { request, reply })
            }
        }
    }
}

/// What a pass was triggered by (logged on the pass's span).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    Start,
    Timer,
    Watch,
    Webhook,
    Request,
    Reload,
}

/// Which timers the next wait includes: a pass or a poll already asked for needs none.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timers {
    pub(super) pass: bool,
    pub(super) poll: bool,
}

impl Daemon {
    /// Wait for the next event. An event already waiting is returned at once, so
    /// polling this once without waiting ([`futures::FutureExt::now_or_never`]) takes
    /// the events queued meanwhile.
    pub(super) async fn next_event<F: Future<Output = ()>>(
        &mut self,
        shutdown: Pin<&mut F>,
        timers: Timers,
    ) -> Event {
        let deadline = self.deadline(timers);
        let watch = self.watch.clone();
        tokio::select! {
            () = shutdown => Event::Shutdown,
            () = sleep_until(deadline) => Event::Tick,
            () = changed(watch.as_ref()) => Event::SourceChanged,
            joined = self.source.finished() => Event::PollFinished(joined),
            Some(config) = self.channels.reloads.recv() => Event::Reload(Box::new(config)),
            Some(command) = self.channels.commands.recv() => Event::from(command),
        }
    }

    /// The earliest of the timers asked for: the next pass, and the next poll while no
    /// poll is running.
    fn deadline(&self, timers: Timers) -> Option<Instant> {
        let pass = timers.pass.then_some(self.next_pass);
        let poll = (timers.poll && !matches!(self.source, SourceSlot::Polling(_)))
            .then_some(self.next_source_poll);
        match (pass, poll) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Sleep until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Wait for the folder watcher, or forever when there is none.
async fn changed(watch: Option<&WatchSignal>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}
