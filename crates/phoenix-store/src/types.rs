//! Identifier newtypes and the status enums of plans and steps, with their SQL text forms.

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wrap an id chosen by the caller.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                String::column_result(value).map(Self)
            }
        }
    };
}

string_id!(
    /// A plan id, chosen by the executor. It is stamped on instances (`phoenix:plan`) and
    /// feeds deterministic launch tokens, so it must never be reused: derive it from
    /// something unique such as the group, the target hash and the creation time.
    PlanId
);
string_id!(
    /// An incident id, chosen by the caller and carried in alert bodies (`incident_id`).
    IncidentId
);
string_id!(
    /// An alert delivery id (`X-Phoenix-Delivery`), chosen by the caller. Receivers
    /// de-duplicate by it, so it must be unique forever, not just in this database.
    DeliveryId
);

/// Why a stored text is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownValue {
    kind: &'static str,
    value: String,
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in lifecycle order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in the database and used on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { kind: $kind, value: s.to_string() }),
                }
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

text_enum!(
    /// The lifecycle of a plan. `pending`, `awaiting_approval` and `running` are active; a
    /// group has at most one active plan. The others are final.
    PlanStatus, "plan status", {
        /// Created, not started.
        Pending => "pending",
        /// Waits for `POST /api/v1/plans/{id}/approve` (`approval: manual`).
        AwaitingApproval => "awaiting_approval",
        /// Steps are being executed.
        Running => "running",
        /// Every step done, the group converged.
        Succeeded => "succeeded",
        /// Gave up; the group may be partly replaced.
        Failed => "failed",
        /// The new generation failed and was terminated; the old one kept.
        RolledBack => "rolled_back",
        /// Cancelled by an operator.
        Cancelled => "cancelled",
        /// A newer commit replaced it with a new plan.
        Superseded => "superseded",
    }
);

impl PlanStatus {
    /// Pending, awaiting approval or running: the plan still owns its group.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            PlanStatus::Pending | PlanStatus::AwaitingApproval | PlanStatus::Running
        )
    }
}

text_enum!(
    /// The lifecycle of one step: `pending` -> `intent` (written before acting) ->
    /// `done` or `failed`. A failed step may get a new intent with a higher attempt.
    StepStatus, "step status", {
        /// Not started.
        Pending => "pending",
        /// About to be executed or executing: what it did must be found in inventory
        /// after a crash (by launch token).
        Intent => "intent",
        /// Finished successfully.
        Done => "done",
        /// Finished unsuccessfully.
        Failed => "failed",
    }
);

text_enum!(
    /// What a step does: the `steps.action` column, which a CHECK constraint keeps to
    /// these values (migration 4; the traffic actions from migration 6).
    StepAction, "step action", {
        /// Launch instances of the target spec (one launch token per attempt).
        Launch => "launch",
        /// Wait until the named and the launched instances are healthy.
        WaitHealthy => "wait_healthy",
        /// Hold, then check that the new instances are still healthy.
        Bake => "bake",
        /// Terminate named instances.
        Terminate => "terminate",
        /// Appended when a plan fails with `autoRollback`: terminate what it launched.
        Rollback => "rollback",
        /// Register instances in the group's target groups.
        Register => "register",
        /// Wait until registered instances are in service in every target group.
        WaitInService => "wait_in_service",
        /// Deregister instances from the group's target groups.
        Deregister => "deregister",
        /// Wait until deregistered instances have drained.
        WaitDrained => "wait_drained",
    }
);

impl StepAction {
    /// The action of a planner step (never [`StepAction::Rollback`]: the planner does
    /// not plan rollbacks, the executor appends them).
    pub fn of(step: &phoenix_core::plan::Step) -> Self {
        use phoenix_core::plan::Step;
        match step {
            Step::Launch { .. } => StepAction::Launch,
            Step::WaitHealthy { .. } => StepAction::WaitHealthy,
            Step::Bake { .. } => StepAction::Bake,
            Step::Terminate { .. } => StepAction::Terminate,
            Step::Register { .. } => StepAction::Register,
            Step::WaitInService { .. } => StepAction::WaitInService,
            Step::Deregister { .. } => StepAction::Deregister,
            Step::WaitDrained { .. } => StepAction::WaitDrained,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_actions_round_trip_through_their_text() {
        for action in StepAction::ALL {
            assert_eq!(action.as_str().parse::<StepAction>(), Ok(*action));
            let json = serde_json::to_value(action).expect("serializes");
            assert_eq!(json, serde_json::Value::from(action.as_str()));
        }
        assert_eq!(
            "relaunch".parse::<StepAction>().map_err(|e| e.to_string()),
            Err("unknown step action `relaunch`".to_string())
        );
    }
}
