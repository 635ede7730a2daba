//! The HTTP server loop with the limits a long-running daemon needs (issue 17, defect
//! 5): a header read timeout (a client that opens a connection and sends nothing, or
//! sends headers slowly, is dropped), a request timeout for every route but the event
//! stream, a cap on concurrent connections and one on event-stream subscribers. Over a
//! cap the client gets 503 (`overloaded`), while `/healthz` keeps answering 200, so a
//! probe still sees a live daemon. The values come from `server:` in the config
//! ([`ServerLimits`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Limits of the HTTP server. Defaults are safe for a small team's daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Longest wait for a request's headers (`server.header_read_timeout`).
    pub header_read_timeout: Duration,
    /// Longest time a non-streaming request may take (`server.request_timeout`).
    pub request_timeout: Duration,
    /// Most connections served at once (`server.max_connections`).
    pub max_connections: usize,
    /// Most `GET /api/v1/events` streams open at once (`server.max_sse_subscribers`).
    pub max_sse_subscribers: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_sse_subscribers: 64,
        }
    }
}

/// Connections past the cap still served with the small overload router (`/healthz`
/// 200, anything else 503) before new ones are dropped unanswered.
const OVERFLOW_CONNECTIONS: usize = 64;

/// The path the event stream is served on: exempt from the request timeout.
pub(crate) const EVENTS_PATH: &str = "/api/v1/events";

/// Serves `router` on `listener` under `limits` until `shutdown` completes, then
/// drains open connections (the caller bounds the drain with its grace period).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let normal = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS));
    let overloaded = overload_router();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %phoenix_core::chain(&err), "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (service, permit, keep_alive) = match Arc::clone(&normal).try_acquire_owned() {
            Ok(permit) => (router.clone(), permit, true),
            Err(_) => match Arc::clone(&overflow).try_acquire_owned() {
                Ok(permit) => (overloaded.clone(), permit, false),
                Err(_) => continue,
            },
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(keep_alive);
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// What a connection over the cap is served: `/healthz` answers, the rest is 503.
fn overload_router() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            ApiError::Overloaded {
                what: "connections",
            }
        })
}

/// Middleware: every request but the event stream must finish within `timeout`.
pub(crate) async fn request_timeout(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == EVENTS_PATH {
        return next.run(request).await;
    }
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout {
            seconds: timeout.as_secs(),
        }
        .into_response(),
    }
}
