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
    /// `POST /api/v1/windows/override`: lift every change window until `request.until`
    /// (record it, alert `window_override`), then run a pass.
    WindowOverride {
        /// The validated request.
        request: crate::windows::WindowOverride,
        /// Where the loop answers.
        reply: oneshot::Sender<crate::windows::WindowOverrideReply>,
    },
    /// `POST /api/v1/reconcile`: run a pass now (answered 202 before any work).
    Reconcile,
    /// `POST /api/v1/webhooks/git`: a verified, de-duplicated push. The loop coalesces
    /// the pushes queued together into one fetch aimed at the newest `after`.
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
    /// An operator lifted every change window (`POST /api/v1/windows/override`).
    WindowOverride {
        /// The override's store id.
        id: i64,
        /// Every window is lifted before this instant.
        #[serde(serialize_with = "rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        until: SystemTime,
        /// Why.
        reason: String,
        /// Who asked.
        by: String,
        /// When it was recorded.
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
            ApiEvent::WindowOverride { .. } => "window_override",
        }
    }
}
