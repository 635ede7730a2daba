//! The Phoenix daemon: the reconcile loop that owns all state, the plan executor that
//! carries plans out step by step against the providers, and alert delivery.
//!
//! One task owns the state and reacts to a closed set of events (tick, source changed,
//! poll finished, webhook, API command, config reload, shutdown; see [`daemon`]). The
//! executor and the alerts are driven by that task; the HTTP API only reads the
//! snapshot it publishes.

pub mod alerts;
pub mod daemon;
pub mod executor;
#[doc(hidden)]
pub mod fuzz;
pub mod policy;
pub mod reload;
pub mod retention;
pub mod retry;
pub mod supervise;
pub mod traffic;
pub mod view;
pub mod windows;

/// An error with its whole source chain, `outer: cause: cause`, for logs and the API:
/// the one formatter every error site of the daemon uses.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    phoenix_core::chain(err).to_string()
}
