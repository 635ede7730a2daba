//! phoenix-api: Phoenix's HTTP face (design section 9) — the axum router, the JSON wire
//! types, the generated OpenAPI document, push webhooks, server-sent events, Prometheus
//! metrics and the dashboard page. The only crate that knows HTTP wire types.
//!
//! The seam to the daemon loop (which owns all state):
//! - reads: the loop publishes `Arc<Snapshot>` on a `tokio::sync::watch` channel;
//!   handlers clone the latest `Arc` and never wait on the loop;
//! - writes: handlers `try_send` an [`ApiCommand`] on a `tokio::sync::mpsc` channel
//!   (approve/cancel, retry and the window override carry a `oneshot` reply; reconcile
//!   and webhooks answer 202 first);
//! - events: the loop sends [`ApiEvent`]s on a `tokio::sync::broadcast` channel, streamed
//!   to `GET /api/v1/events`;
//! - metrics: the loop updates the shared [`Metrics`] atomics.

mod auth;
mod command;
mod dashboard;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod metrics;
mod operator;
mod routes;
mod server;
mod snapshot;
mod sse;
mod state;
mod windows;

pub use auth::{
    Delivery, Push, RecentDeliveries, Secret, check_bearer, parse_push, verify_webhook,
};
pub use command::{ApiCommand, ApiEvent, Forge, PlanCommandError, PlanReply};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use metrics::{Histogram, Metrics, PlanResult, RECONCILE_BUCKETS, WebhookOutcome};
pub use operator::{RetryAnswer, RetryError, RetryReply};
pub use routes::{ApiDoc, build_router, serve};
pub use server::{ServerLimits, serve as serve_with_limits};
pub use snapshot::{
    AlertCounts, BlockedGroup, DriftFinding, Group, GroupCounts, GroupDetail, GroupDriftFinding,
    GroupHealth, GroupInstance, GroupSummary, GroupWindow, HashText, HistoryEntry, HistoryOutcome,
    InstanceTraffic, InventoryStatus, ObservedHash, Operation, OverrideStatus, Plan, PlanCounts,
    PlanKind, PlanState, PlanStep, ProviderInventory, Revision, RevisionError, RevisionSignature,
    Seconds, Snapshot, SnapshotParts, Status, StepState, SyncState, WindowsStatus, WindowsView,
};
pub use state::{ApiConfig, ApiState, DEFAULT_MAX_BODY_BYTES};
pub use windows::{
    MAX_OVERRIDE, WindowOverride, WindowOverrideAnswer, WindowOverrideError, WindowOverrideReply,
    parse_override,
};
