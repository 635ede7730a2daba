//! The store's error type: one variant per thing that can go wrong, each with the context
//! (path, plan, step, delivery) needed to act on it. Callers classify by variant.

use std::path::PathBuf;
use std::time::SystemTime;

use phoenix_core::GroupName;

use crate::types::{DeliveryId, IncidentId, PlanId, PlanStatus, StepStatus};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The state directory could not be created.
    #[error("cannot create the state directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened or configured (not a database, permissions...).
    #[error("cannot open the store database {}", path.display())]
    Open {
        /// The database file (`:memory:` for an in-memory store).
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file system refused WAL journaling.
    #[error("the store database {} cannot use WAL journaling (SQLite chose `{mode}`); put state.path on a local file system", path.display())]
    WalUnavailable {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite reported instead.
        mode: String,
    },
    /// The database was written by a newer Phoenix with a schema this binary does not know.
    #[error("the store database {} has schema version {found}, newer than the {supported} this Phoenix knows; run a newer Phoenix or point state.path at another directory", path.display())]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this binary knows.
        supported: i64,
    },
    /// A schema migration failed; the database stays at the previous version.
    #[error("store schema migration {version} ({name}) failed")]
    Migration {
        /// The migration's version.
        version: i64,
        /// The migration's name.
        name: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A query failed (IO error, full disk, corrupt row...).
    #[error("store operation `{operation}` failed")]
    Sqlite {
        /// What the store was doing.
        operation: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A time before 1970, or too far in the future for signed 64-bit milliseconds.
    #[error("time {time:?} cannot be stored as unix milliseconds")]
    TimeOutOfRange {
        /// The time.
        time: SystemTime,
    },
    /// A value for the key-value table could not be turned into JSON.
    #[error("cannot serialize the value of key `{key}` to JSON")]
    SerializeValue {
        /// The key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored JSON value does not have the shape the caller asked for.
    #[error("the stored value of key `{key}` does not deserialize into the requested type")]
    DeserializeValue {
        /// The key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A plan with this id exists already.
    #[error("plan {plan} already exists")]
    DuplicatePlan {
        /// The plan.
        plan: PlanId,
    },
    /// The group already has an active (pending, awaiting approval or running) plan.
    #[error("group {group} already has the active plan {existing}")]
    ActivePlanExists {
        /// The group.
        group: GroupName,
        /// The plan that is active.
        existing: PlanId,
    },
    /// No plan with this id.
    #[error("plan {plan} not found")]
    PlanNotFound {
        /// The plan.
        plan: PlanId,
    },
    /// A new plan must start pending, awaiting approval or running.
    #[error("plan {plan} cannot be created with the finished status {status}")]
    InitialPlanStatus {
        /// The plan.
        plan: PlanId,
        /// The status asked for.
        status: PlanStatus,
    },
    /// A finished plan cannot change status, or be superseded, or get new steps.
    #[error("plan {plan} is {from} and cannot become {to}")]
    PlanTransition {
        /// The plan.
        plan: PlanId,
        /// Its current status.
        from: PlanStatus,
        /// The status asked for.
        to: PlanStatus,
    },
    /// Steps run only while their plan is running (not pending, awaiting approval, or finished).
    #[error("plan {plan} is {status}, not running; step {index} may not start")]
    PlanNotRunning {
        /// The plan.
        plan: PlanId,
        /// The step.
        index: u32,
        /// The plan's status.
        status: PlanStatus,
    },
    /// A plan cannot finish while one of its steps has a written intent that has not been
    /// marked done or failed: what that step did would be lost.
    #[error("plan {plan} cannot become {to}: step {index} is in flight (intent written, not done)")]
    StepInFlight {
        /// The plan.
        plan: PlanId,
        /// The step in flight.
        index: u32,
        /// The status asked for.
        to: PlanStatus,
    },
    /// Superseding needs both plans in the same group.
    #[error("plan {new} for group {new_group} cannot supersede plan {old} of group {old_group}")]
    SupersedeOtherGroup {
        /// The plan being superseded.
        old: PlanId,
        /// Its group.
        old_group: GroupName,
        /// The new plan.
        new: PlanId,
        /// Its group.
        new_group: GroupName,
    },
    /// No step with this index in the plan.
    #[error("plan {plan} has no step {index}")]
    StepNotFound {
        /// The plan.
        plan: PlanId,
        /// The step.
        index: u32,
    },
    /// The step's status does not allow this operation.
    #[error("step {index} of plan {plan} is {status}; cannot {operation}")]
    StepTransition {
        /// The plan.
        plan: PlanId,
        /// The step.
        index: u32,
        /// Its current status.
        status: StepStatus,
        /// What was asked.
        operation: &'static str,
    },
    /// An intent's attempt number must not go back (nor stay the same after a failure).
    #[error(
        "step {index} of plan {plan}: attempt {attempt} is not after the recorded attempt {recorded}"
    )]
    AttemptNotIncreasing {
        /// The plan.
        plan: PlanId,
        /// The step.
        index: u32,
        /// The attempt asked for.
        attempt: u32,
        /// The attempt on record.
        recorded: u32,
    },
    /// Launch tokens are unique across all steps of all plans.
    #[error("launch token {token} is already used by another step")]
    LaunchTokenInUse {
        /// The token.
        token: String,
    },
    /// No incident with this id.
    #[error("incident {incident} not found")]
    IncidentNotFound {
        /// The incident.
        incident: IncidentId,
    },
    /// An incident with this id exists already (possibly resolved).
    #[error("incident {incident} already exists")]
    DuplicateIncident {
        /// The incident.
        incident: IncidentId,
    },
    /// No outbox entry with this delivery id.
    #[error("alert delivery {delivery} not found")]
    DeliveryNotFound {
        /// The delivery id.
        delivery: DeliveryId,
    },
    /// A change-window override that cannot be recorded.
    #[error("invalid window override: {reason}")]
    InvalidWindowOverride {
        /// What is wrong.
        reason: &'static str,
    },
    /// No generation with this hash in the group's history.
    #[error("group {group} has no history entry for hash {hash}")]
    GenerationNotFound {
        /// The group.
        group: GroupName,
        /// The hash.
        hash: String,
    },
}

impl StoreError {
    pub(crate) fn sqlite(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Sqlite { operation, source }
    }
}
