//! Alerts (issue 8): incidents, receivers and delivery from the durable outbox.
//!
//! Two halves, joined only by the store's outbox table:
//!
//! - [`Alerts`] (in `incidents`) is driven by the reconcile loop. After each complete
//!   pass, plan transition and source poll it opens and resolves incidents in the store
//!   and *enqueues* one rendered body per interested receiver. It never does network IO.
//! - [`Delivery`] (in `delivery`) runs in its own task with its own [`Store`] connection
//!   (SQLite WAL lets a second connection write alongside the loop's: this is the one
//!   exception to "one writer", and it touches only the outbox). It sends due alerts,
//!   marks them delivered or failed with exponential backoff and jitter, expires old
//!   ones, and keeps each receiver's alerts in order.
//!
//! Receiver types and bodies live in `receiver` and `render`; docs/alerts.md has sample
//! payloads and the incident rules.
//!
//! [`Store`]: phoenix_store::Store

mod delivery;
mod incidents;
mod overrides;
mod policy;
mod receiver;
mod render;

pub use delivery::{Delivery, DeliveryOptions};
pub use incidents::{
    AlertOptions, Alerts, DriftObservations, DriftPass, GroupObservation, PlanAlert, PlanAlertKind,
    SourceAlert,
};
pub use receiver::{ALERTMANAGER_PATH, Receiver, Receivers, Secret, signature};
pub use render::{
    AlertNotice, AlertmanagerStyle, IncidentRef, WEBHOOK_BODY_VERSION, alertmanager_body,
    slack_body, webhook_body,
};

use phoenix_core::drift::DriftKind;
use phoenix_store::StoreError;

/// Incident kind of a failed plan.
pub const KIND_PLAN_FAILED: &str = "plan_failed";
/// Incident kind of a rollback.
pub const KIND_ROLLBACK: &str = "rollback";
/// Incident kind of a source error (rejected revision, unreachable remote).
pub const KIND_SOURCE_ERROR: &str = "source_error";

const DRIFT_KINDS: [DriftKind; 8] = [
    DriftKind::Missing,
    DriftKind::Surplus,
    DriftKind::Outdated,
    DriftKind::Modified,
    DriftKind::Unhealthy,
    DriftKind::Orphaned,
    DriftKind::Unmanaged,
    DriftKind::Unregistered,
];

/// Whether an incident kind is a drift kind (as opposed to a plan or source incident).
pub fn is_drift_kind(kind: &str) -> bool {
    DRIFT_KINDS.iter().any(|k| k.as_str() == kind)
}

/// What can go wrong in alerting. Delivery failures are not errors: they are recorded
/// on the outbox entry and retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// A receiver's configuration cannot be used.
    #[error("alert receiver `{receiver}`: {reason}")]
    InvalidReceiver {
        /// The receiver's name.
        receiver: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `webhook` receiver has no HMAC secret.
    #[error(
        "alert receiver `{receiver}` (type webhook) needs a signing secret: set `secret_env`{} to a non-empty value",
        .secret_env.as_ref().map(|env| format!(" (the environment variable `{env}`)")).unwrap_or_default()
    )]
    MissingSecret {
        /// The receiver's name.
        receiver: String,
        /// The environment variable the config names, if any.
        secret_env: Option<String>,
    },
    /// The HTTP client could not be built (TLS initialisation).
    #[error("cannot build the HTTP client for alert delivery")]
    HttpClient(#[source] reqwest::Error),
    /// A store operation failed.
    #[error("alert {operation} failed in the store")]
    Store {
        /// What alerting was doing, e.g. `open incident for group web`.
        operation: String,
        /// The store's error (it names the incident or delivery).
        #[source]
        source: StoreError,
    },
}

impl AlertError {
    fn store(operation: impl Into<String>) -> impl FnOnce(StoreError) -> AlertError {
        let operation = operation.into();
        move |source| AlertError::Store { operation, source }
    }
}
