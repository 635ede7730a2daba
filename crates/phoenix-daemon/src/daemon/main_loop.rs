//! The loop itself: wait for an event, take every event already queued with it, turn
//! them into one [`Wants`] in one `match`, then act: at most one source poll and at
//! most one pass per turn, so bursts coalesce.

use std::future::Future;
use std::time::SystemTime;

use futures::FutureExt;
use phoenix_source::RevisionId;
use tokio::time::Instant;

use super::event::{Command, Event, Reason, Timers};
use super::source::PollRequest;
use super::{Daemon, transitions};

/// What the events of one turn ask for.
#[derive(Debug, Default)]
struct Wants {
    /// A source poll, aimed at the newest pushed commit of the turn.
    poll: Option<PollRequest>,
    /// A pass, with the first reason given.
    pass: Option<Reason>,
    /// Webhook deliveries in the turn (logged).
    webhooks: usize,
    /// Shutdown: return without acting on the rest.
    stop: bool,
}

impl Wants {
    fn poll(&mut self, after: Option<RevisionId>, reason: Reason) {
        match &mut self.poll {
            Some(request) => {
                if after.is_some() {
                    request.after = after;
                }
            }
            None => self.poll = Some(PollRequest { after, reason }),
        }
    }

    fn pass(&mut self, reason: Reason) {
        self.pass.get_or_insert(reason);
    }

    /// The timers worth waiting for: none for what is already asked for.
    fn timers(&self) -> Timers {
        Timers {
            pass: self.pass.is_none(),
            poll: self.poll.is_none(),
        }
    }
}

/// Whether the loop goes on after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

impl Daemon {
    /// Run until `shutdown` resolves. A pass under way stops at its next checkpoint.
    pub(super) async fn main_loop(&mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut wants = Wants {
            pass: Some(Reason::Start),
            ..Wants::default()
        };
        loop {
            if self.act(wants, shutdown.as_mut()).await == Flow::Stop {
                tracing::info!("shutting down");
                return;
            }
            wants = Wants::default();
            let event = self.next_event(shutdown.as_mut(), wants.timers()).await;
            self.handle(event, &mut wants).await;
            while !wants.stop {
                let Some(event) = self
                    .next_event(shutdown.as_mut(), wants.timers())
                    .now_or_never()
                else {
                    break;
                };
                self.handle(event, &mut wants).await;
            }
            if wants.stop {
                if let Some(running) = self.source.polling_for() {
                    tracing::warn!(running_for = ?running,
                        "shutting down with a source poll still running; it is abandoned");
                }
                tracing::info!("shutting down");
                return;
            }
        }
    }

    /// Do what a turn asked for: start the poll, then run the pass. A shutdown that
    /// arrives during the pass cancels [`Daemon::stop`]: the pass returns at its next
    /// checkpoint and the loop ends ([`Flow::Stop`]).
    async fn act(
        &mut self,
        wants: Wants,
        shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Flow {
        if let Some(request) = wants.poll {
            if wants.webhooks > 0 {
                tracing::info!(webhooks = wants.webhooks, after = ?request.after, "push webhook");
            }
            self.start_poll(request);
        }
        let Some(reason) = wants.pass else {
            return Flow::Continue;
        };
        let stop = self.stop.clone();
        let finished = {
            let pass = self.pass(reason);
            tokio::pin!(pass);
            tokio::select! {
                biased;
                wait = &mut pass => Some(wait),
                () = shutdown => {
                    tracing::info!("shutdown asked for during a pass: stopping at its next checkpoint (a step in flight finishes)");
                    stop.cancel();
                    pass.await;
                    None
                }
            }
        };
        match finished {
            Some(wait) => {
                self.next_pass = Instant::now() + wait;
                Flow::Continue
            }
            None => Flow::Stop,
        }
    }

    /// Turn one event into what it asks for.
    async fn handle(&mut self, event: Event, wants: &mut Wants) {
        match event {
            Event::Tick => {
                let now = Instant::now();
                if now >= self.next_source_poll {
                    wants.poll(None, Reason::Timer);
                }
                if now >= self.next_pass {
                    wants.pass(Reason::Timer);
                }
            }
            Event::SourceChanged => wants.poll(None, Reason::Watch),
            Event::PollFinished(joined) => {
                let finished = self.finish_poll(joined);
                if let Some(reason) = finished.pass {
                    wants.pass(reason);
                }
                if let Some(repoll) = finished.repoll {
                    wants.poll(repoll.after, repoll.reason);
                }
            }
            Event::Webhook { after } => {
                // The pass follows when the fetch returns with something new.
                wants.webhooks += 1;
                wants.poll(after, Reason::Webhook);
            }
            Event::Command(command) => {
                self.command(command);
                wants.pass(Reason::Request);
            }
            Event::Reload(config) => {
                self.reload(*config).await;
                wants.pass(Reason::Reload);
            }
            Event::Shutdown => wants.stop = true,
        }
    }

    /// Handle an API command that is not a webhook; each is followed by a pass.
    fn command(&mut self, command: Command) {
        let (id, reply, result) = match command {
            Command::Reconcile => return,
            Command::Retry { group, reply } => {
                let answer = crate::retry::retry(&mut self.store, self.revision.as_deref(), &group);
                let _ = reply.send(answer);
                return;
            }
            Command::WindowOverride { request, reply } => {
                let cx = crate::windows::OverrideContext {
                    store: &mut self.store,
                    alerts: &mut self.alerts,
                    commit: self.revision.as_deref().map(|r| r.id.as_str()),
                    now: SystemTime::now(),
                };
                let answer = self.windows.apply_override(cx, &request);
                if let Ok(a) = &answer {
                    let _ = self
                        .channels
                        .events
                        .send(phoenix_api::ApiEvent::WindowOverride {
                            id: a.id,
                            until: a.until,
                            reason: a.reason.clone(),
                            by: a.by.clone(),
                            at: a.at,
                        });
                }
                let _ = reply.send(answer);
                return;
            }
            Command::Approve { plan_id, reply } => {
                let id = phoenix_store::PlanId::new(plan_id);
                let result = self
                    .executor
                    .approve(&mut self.store, &id, SystemTime::now());
                (id, reply, result)
            }
            Command::Cancel { plan_id, reply } => {
                let id = phoenix_store::PlanId::new(plan_id);
                let result = self
                    .executor
                    .cancel(&mut self.store, &id, SystemTime::now());
                (id, reply, result)
            }
        };
        self.announce_plan_state(&id, &result);
        if let Some(answer) = transitions::plan_reply(id.to_string(), result) {
            let _ = reply.send(answer);
        }
    }
}
