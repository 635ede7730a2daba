//! The executor's errors: the store refusing or failing, and misuse. Provider failures
//! are not errors here; they become retries, plan failures or rollbacks.

use phoenix_store::{PlanId, PlanStatus, StoreError};

/// Errors of the executor. Provider failures are not errors: they become retries, plan
/// failures or rollbacks. These are the store refusing or failing, and misuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// A store call failed.
    #[error("store call `{operation}` failed (plan {plan})")]
    Store {
        /// What the executor was doing.
        operation: &'static str,
        /// The plan concerned, or `-`.
        plan: String,
        /// The store's error (boxed: it is large and errors are rare).
        #[source]
        source: Box<StoreError>,
    },
    /// No such plan.
    #[error("plan {plan} not found")]
    PlanNotFound {
        /// The plan.
        plan: PlanId,
    },
    /// `approve` on a plan that is not awaiting approval.
    #[error("plan {plan} is {status}, not awaiting approval")]
    NotAwaitingApproval {
        /// The plan.
        plan: PlanId,
        /// Its status.
        status: PlanStatus,
    },
    /// `cancel` on a plan that already finished.
    #[error("plan {plan} already finished ({status})")]
    NotActive {
        /// The plan.
        plan: PlanId,
        /// Its final status.
        status: PlanStatus,
    },
    /// The stored plan document (or a step detail) does not parse.
    #[error("plan {plan} has an unreadable executor document")]
    BadDocument {
        /// The plan.
        plan: PlanId,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

pub(super) fn store_err(
    operation: &'static str,
    plan: &PlanId,
) -> impl FnOnce(StoreError) -> ExecutorError {
    let plan = plan.to_string();
    move |source| ExecutorError::Store {
        operation,
        plan,
        source: Box::new(source),
    }
}
