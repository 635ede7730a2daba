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
pub mod policy;
pub mod retry;
pub mod view;
pub mod windows;

/// An error with its whole source chain, `outer: cause: cause`, for logs and the API:
/// the one formatter every error site of the daemon uses.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
