//! `ApiState`: what every handler can reach — the snapshot receiver, the command sender,
//! the event broadcaster, metrics, secrets — and the `ApiConfig` that shapes it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use crate::auth::{RecentDeliveries, Secret};
use crate::command::{ApiCommand, ApiEvent};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// The default request body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Options for the API. Secrets are read from the environment by the binary
/// (`server.token_env`, `webhooks.git.secret_env`) and passed in here.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Bearer token for mutating endpoints; `None` disables them (403).
    pub token: Option<Secret>,
    /// Shared secret for push webhooks; `None` disables them (403).
    pub webhook_secret: Option<Secret>,
    /// Largest accepted request body (413 above).
    pub max_body_bytes: usize,
    /// How many webhook delivery ids are remembered for de-duplication.
    pub webhook_dedup_capacity: usize,
    /// How long approve/cancel wait for the loop's answer before 503.
    pub command_timeout: Duration,
    /// SSE keep-alive comment interval.
    pub sse_keep_alive: Duration,
    /// Longest time a request other than the event stream may take (503 after).
    pub request_timeout: Duration,
    /// Most event streams open at once (503 past it).
    pub max_sse_subscribers: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token: None,
            webhook_secret: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            webhook_dedup_capacity: 1024,
            command_timeout: Duration::from_secs(10),
            sse_keep_alive: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            max_sse_subscribers: 64,
        }
    }
}

/// Shared handler state; cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ApiConfig,
    pub(crate) snapshots: watch::Receiver<Arc<Snapshot>>,
    pub(crate) commands: mpsc::Sender<ApiCommand>,
    pub(crate) events: broadcast::Sender<ApiEvent>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) deliveries: Mutex<RecentDeliveries>,
    /// Set to true by [`ApiState::close_streams`]; SSE streams end on it.
    pub(crate) closing: watch::Sender<bool>,
    /// Event streams open now (at most `config.max_sse_subscribers`).
    pub(crate) sse_subscribers: Arc<std::sync::atomic::AtomicUsize>,
}

impl ApiState {
    /// Wires the API to the loop's channels.
    pub fn new(
        config: ApiConfig,
        snapshots: watch::Receiver<Arc<Snapshot>>,
        commands: mpsc::Sender<ApiCommand>,
        events: broadcast::Sender<ApiEvent>,
        metrics: Arc<Metrics>,
    ) -> ApiState {
        let deliveries = Mutex::new(RecentDeliveries::new(config.webhook_dedup_capacity));
        ApiState {
            inner: Arc::new(Inner {
                config,
                snapshots,
                commands,
                events,
                metrics,
                deliveries,
                closing: watch::Sender::new(false),
                sse_subscribers: Arc::default(),
            }),
        }
    }

    /// Ends every open `GET /api/v1/events` stream (and refuses new ones), so a graceful
    /// shutdown is not held up by long-lived connections. Call it when shutdown starts.
    /// Streams also end on their own when the loop drops its snapshot sender.
    pub fn close_streams(&self) {
        self.inner.closing.send_replace(true);
    }

    /// The latest snapshot (an `Arc` clone; the watch borrow is released at once).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshots.borrow().clone()
    }
}
