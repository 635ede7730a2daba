//! What the executor tells the loop: [`Transition`]s of plans (the loop turns them into
//! API events and alerts), each about a [`PlanRef`], and the [`Progress`] of one
//! `advance`.

use std::time::Duration;

use phoenix_core::{GroupName, SpecHash};
use phoenix_store::{PlanId, PlanRecord};

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
    pub(super) fn of(record: &PlanRecord) -> Self {
        Self {
            plan: record.id.clone(),
            group: record.group.clone(),
            target_hash: record.kind.target_hash(),
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
    /// Inserted with `approval: manual`; waits for [`super::Executor::approve`].
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

/// What [`super::Executor::advance`] did and when it wants to run again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// What happened, in order.
    pub transitions: Vec<Transition>,
    /// Call `advance` again after this long (zero: re-plan and advance right away);
    /// `None` when no plan is running.
    pub wake_after: Option<Duration>,
}
