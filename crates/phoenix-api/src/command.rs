//! What flows between the HTTP handlers and the daemon loop besides the snapshot:
//! [`ApiCommand`] (handlers -> loop, over an `mpsc` channel) and [`ApiEvent`]
//! (loop -> `GET /api/v1/events` subscribers, over a `broadcast` channel).

use std::time::SystemTime;

use phoenix_core::SpecHash;
use phoenix_core::drift::DriftKind;
use serde::Serialize;
use tokio::sync::oneshot;
use utoipa::ToSchema;

use crate::snapshot::{PlanState, RevisionError, StepState, rfc3339};

/// The forge a push webhook came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Forge {
    /// GitHub (`X-Hub-Signature-256`).
    Github,
    /// Gitea or Forgejo (`X-Gitea-Signature`).
    Gitea,
    /// GitLab (`X-Gitlab-Token`).
    Gitlab,
}

impl Forge {
    /// Every forge.
    pub const ALL: [Forge; 3] = [Forge::Github, Forge::Gitea, Forge::Gitlab];

    /// The snake_case name used on the wire and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::Github => "github",
            Forge::Gitea => "gitea",
            Forge::Gitlab => "gitlab",
        }
    }
}

/// Why the loop refused to approve or cancel a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanCommandError {
    /// No plan has this id (404).
    #[error("no plan with id `{plan_id}`")]
    NotFound {
        /// The id asked for.
        plan_id: String,
    },
    /// The plan is in a state the command does not apply to (409).
    #[error("plan `{plan_id}` is {}", state.as_str())]
    WrongState {
        /// The plan.
        plan_id: String,
        /// Its current state.
        state: PlanState,
    },
}

/// The loop's answer to approve or cancel: the plan's new state, or why not.
pub type PlanReply = Result<PlanState, PlanCommandError>;

/// A request from the API to the daemon loop. Reads never produce commands.
#[derive(Debug)]
pub enum ApiCommand {
    /// `POST /api/v1/plans/{id}/approve`: start a plan awaiting approval.
    Approve {
        /// The plan.
        plan_id: String,
        /// Where the loop answers.
        reply: oneshot::Sender<PlanReply>,
    },
    /// `POST /api/v1/plans/{id}/cancel`: stop a pending, awaiting or running plan.
    Cancel {
        /// The plan.
        plan_id: String,
        /// Where the loop answers.
        reply: oneshot::Sender<PlanReply>,
    },
    /// `POST /api/v1/groups/{name}/retry`: lift the failed-generation block of the
    /// group's current hash, then run a pass.
    Retry {
        /// The group.
        group: String,
        /// Where the loop answers.
        reply: oneshot::Sender<crate::operator::RetryReply>,
    },
    /// `POST /api/v1/reconcile`: run a pass now (answered 202 before any work).
    Reconcile,
    /// `POST /api/v1/webhooks/git`: a verified, de-duplicated push. The loop debounces
    /// bursts with [`coalesce_burst`] into one fetch aimed at the newest `after`.
    Webhook {
        /// Which forge sent it.
        forge: Forge,
        /// The pushed commit (`after`, or GitLab's `checkout_sha`); `None` for a branch
        /// deletion or a payload without it.
        after: Option<String>,
        /// The pushed ref, e.g. `refs/heads/main`.
        reference: Option<String>,
        /// The forge's delivery id, if it sent one.
        delivery_id: Option<String>,
    },
}

/// Something that happened, streamed to `GET /api/v1/events` subscribers. The SSE event
/// name is the `type` field.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApiEvent {
    /// A new revision was accepted.
    RevisionAccepted {
        /// Its id.
        revision: String,
        /// When.
        #[serde(serialize_with = "rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        at: SystemTime,
    },
    /// The newest revision was rejected; the last good one stays.
    RevisionRejected {
        /// Why, with position.
        error: RevisionError,
        /// When.
        #[serde(serialize_with = "rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        at: SystemTime,
    },
    /// A drift finding opened.
    DriftOpened {
        /// Group.
        group: String,
        /// Kind.
        #[schema(value_type = String)]
        kind: DriftKind,
        /// Instance, if any.
        instance_id: Option<String>,
        /// When.
        #[serde(serialize_with = "rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        at: SystemTime,
    },
    /// A drift finding resolved.
    DriftResolved {
        /// Group.
        group: String,
        /// Kind.
        #[schema(value_type = String)]
        kind: DriftKind,
        /// Instance, if any.
        instance_id: Option<String>,
        /// When.
        #[serde(serialize_with = "rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        at: SystemTime,
    },
    /// A plan changed state (created, approved, started, finished...).
    PlanTransition {
        /// Plan id.
        plan_id: String,
        /// Group.
        group: String,
        /// Target hash; `null` for a prune plan (a group gone from the desired state).
        #[schema(value_type = Option<String>)]
        target_hash: Option<SpecHash>,
        /// New state.
        state: PlanState,
        /// When.
        #[serde(serialize_with = "rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        at: SystemTime,
    },
    /// A plan step changed state.
    StepTransition {
        /// Plan id.
        plan_id: String,
        /// Step index.
        index: u32,
        /// Step action.
        action: String,
        /// New state.
        state: StepState,
        /// When.
        #[serde(serialize_with = "rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        at: SystemTime,
    },
}

impl ApiEvent {
    /// The SSE event name (equal to the JSON `type`).
    pub fn name(&self) -> &'static str {
        match self {
            ApiEvent::RevisionAccepted { .. } => "revision_accepted",
            ApiEvent::RevisionRejected { .. } => "revision_rejected",
            ApiEvent::DriftOpened { .. } => "drift_opened",
            ApiEvent::DriftResolved { .. } => "drift_resolved",
            ApiEvent::PlanTransition { .. } => "plan_transition",
            ApiEvent::StepTransition { .. } => "step_transition",
        }
    }
}

/// What a burst of trigger commands (webhooks and reconcile requests) coalesces into.
#[derive(Debug, Default)]
pub struct Burst {
    /// Webhook deliveries in the burst.
    pub webhooks: usize,
    /// `POST /api/v1/reconcile` requests in the burst.
    pub reconciles: usize,
    /// The newest pushed commit named by a webhook in the burst: fetch aiming at it.
    pub after: Option<String>,
    /// The ref that commit was pushed to.
    pub reference: Option<String>,
    /// Approve/cancel commands that arrived during the burst, in order: handle them next.
    pub other: Vec<ApiCommand>,
}

impl Burst {
    fn absorb(&mut self, command: ApiCommand) {
        match command {
            ApiCommand::Reconcile => self.reconciles += 1,
            ApiCommand::Webhook {
                after, reference, ..
            } => {
                self.webhooks += 1;
                if after.is_some() {
                    self.after = after;
                    self.reference = reference;
                }
            }
            other => self.other.push(other),
        }
    }
}

/// Debounces a burst for the daemon loop: starting from `first` (just received), keeps
/// draining `commands` until no trigger arrives for `quiet` (e.g. 200 ms) or `max` has
/// passed since the start, and returns one [`Burst`], so ten pushes in a row cause one
/// fetch aimed at the newest `after`. Uses `tokio::time`, so it is testable with a
/// paused clock.
pub async fn coalesce_burst(
    first: ApiCommand,
    commands: &mut tokio::sync::mpsc::Receiver<ApiCommand>,
    quiet: std::time::Duration,
    max: std::time::Duration,
) -> Burst {
    let mut burst = Burst::default();
    burst.absorb(first);
    let hard_deadline = tokio::time::Instant::now() + max;
    loop {
        let deadline = (tokio::time::Instant::now() + quiet).min(hard_deadline);
        match tokio::time::timeout_at(deadline, commands.recv()).await {
            Ok(Some(command)) => burst.absorb(command),
            Ok(None) | Err(_) => return burst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::mpsc;

    fn hook(after: Option<&str>) -> ApiCommand {
        ApiCommand::Webhook {
            forge: Forge::Github,
            after: after.map(str::to_owned),
            reference: Some("refs/heads/main".into()),
            delivery_id: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_pushes_becomes_one_trigger_at_the_newest_commit() {
        let (tx, mut rx) = mpsc::channel(16);
        let sender = tokio::spawn(async move {
            for after in ["c1", "c2", "c3"] {
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.send(hook(Some(after))).await.expect("receiver alive");
            }
            tx.send(ApiCommand::Reconcile)
                .await
                .expect("receiver alive");
            tokio::time::sleep(Duration::from_secs(5)).await;
            tx.send(hook(Some("late"))).await.expect("receiver alive");
        });
        let started = tokio::time::Instant::now();
        let burst = tokio::time::timeout(
            Duration::from_secs(10),
            coalesce_burst(
                hook(Some("c0")),
                &mut rx,
                Duration::from_millis(200),
                Duration::from_secs(2),
            ),
        )
        .await
        .expect("burst ends");
        assert_eq!(burst.webhooks, 4);
        assert_eq!(burst.reconciles, 1);
        assert_eq!(burst.after.as_deref(), Some("c3"));
        assert!(burst.other.is_empty());
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_millis(400),
            "{took:?}"
        );
        // The late push is the next burst.
        assert!(matches!(rx.recv().await, Some(ApiCommand::Webhook { .. })));
        sender.await.expect("sender task");
    }

    #[tokio::test(start_paused = true)]
    async fn a_never_ending_burst_is_cut_at_max_and_keeps_plan_commands() {
        let (tx, mut rx) = mpsc::channel(64);
        let sender = tokio::spawn(async move {
            let (reply, _answer) = tokio::sync::oneshot::channel();
            tx.send(ApiCommand::Approve {
                plan_id: "p1".into(),
                reply,
            })
            .await
            .expect("receiver alive");
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if tx.send(hook(None)).await.is_err() {
                    break;
                }
            }
        });
        let burst = tokio::time::timeout(
            Duration::from_secs(10),
            coalesce_burst(
                hook(Some("c0")),
                &mut rx,
                Duration::from_millis(200),
                Duration::from_secs(1),
            ),
        )
        .await
        .expect("burst ends");
        assert!(burst.webhooks <= 11, "cut at max: {}", burst.webhooks);
        assert_eq!(
            burst.after.as_deref(),
            Some("c0"),
            "a deletion does not erase it"
        );
        assert!(matches!(
            burst.other.as_slice(),
            [ApiCommand::Approve { .. }]
        ));
        drop(rx);
        sender.await.expect("sender task");
    }
}
