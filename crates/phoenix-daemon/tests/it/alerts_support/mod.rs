//! Shared helpers of the `alerts_*` integration tests: an in-test HTTP receiver that
//! records every request (and can be told to fail), receiver configs, and a delivery
//! task started on its own store connection.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use phoenix_core::backoff::Backoff;
use phoenix_core::config::{AlertConfig, AlertEvent, AlertType};
use phoenix_daemon::alerts::{Delivery, DeliveryOptions, Receivers};
use phoenix_store::{Store, StoreOptions};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// Upper bound on every await in these tests.
pub const STEP: Duration = Duration::from_secs(20);

/// Await `fut` or panic naming `what`.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP:?}: {what}"))
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

#[derive(Debug, Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    /// Answer this many requests with 503 before answering 200.
    fail_next: AtomicUsize,
    changed: Notify,
}

/// A recording HTTP receiver on a loopback port.
#[derive(Debug)]
pub struct Capture {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: JoinHandle<()>,
}

async fn record(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let failing = shared
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    shared.received.lock().expect("lock").push(Received {
        path: uri.path().to_string(),
        headers,
        body: body.to_vec(),
    });
    shared.changed.notify_waiters();
    StatusCode::OK
}

impl Capture {
    /// Start on a free port.
    pub async fn start() -> Capture {
        let listener = within("bind", tokio::net::TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("bind loopback");
        Self::serve(listener)
    }

    /// Start on `addr` (a port chosen earlier, while "down").
    pub async fn start_on(addr: SocketAddr) -> Capture {
        let listener = within("bind", tokio::net::TcpListener::bind(addr))
            .await
            .expect("bind the chosen loopback port");
        Self::serve(listener)
    }

    fn serve(listener: tokio::net::TcpListener) -> Capture {
        let addr = listener.local_addr().expect("bound address");
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Capture {
            addr,
            shared,
            _server: server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer the next `n` requests with HTTP 503.
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").clone()
    }

    /// Wait until at least `n` requests were recorded.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        within(&format!("{n} deliveries"), async {
            loop {
                let changed = self.shared.changed.notified();
                let got = self.received();
                if got.len() >= n {
                    return got;
                }
                // Woken by a new request, or re-check every 50 ms.
                let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
            }
        })
        .await
    }
}

pub fn receiver(name: &str, kind: AlertType, url: String) -> AlertConfig {
    AlertConfig {
        name: name.to_string(),
        kind,
        url,
        secret_env: (kind == AlertType::Webhook).then(|| "PHOENIX_ALERT_SECRET".to_string()),
        events: AlertEvent::ALL.to_vec(),
        renotify: Duration::from_secs(4 * 3600),
        expire_after: Duration::from_secs(24 * 3600),
    }
}

/// Fast retries, so an outage of a second sees several attempts.
pub fn fast_options() -> DeliveryOptions {
    DeliveryOptions {
        request_timeout: Duration::from_secs(5),
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(100))
            .with_equal_jitter(0),
        poll_interval: Duration::from_millis(100),
        batch: 100,
    }
}

pub fn open_store(dir: &std::path::Path) -> Store {
    Store::open(dir, StoreOptions::default()).expect("open the store")
}

/// A running delivery task and the means to stop it.
pub struct RunningDelivery {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Store>,
}

impl RunningDelivery {
    pub fn start(
        store: Store,
        receivers: Receivers,
        options: DeliveryOptions,
        wake: Arc<Notify>,
    ) -> RunningDelivery {
        let delivery = Delivery::new(store, receivers, options).expect("build delivery");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(delivery.run(wake, async move {
            let _ = stopped.await;
        }));
        RunningDelivery { stop, task }
    }

    pub async fn stop(self) -> Store {
        let _ = self.stop.send(());
        within("delivery shutdown", self.task)
            .await
            .expect("delivery task")
    }
}

/// Wait until the outbox records `delivered` deliveries to `receiver` and nothing
/// pending: from then on the delivery task has nothing left to send, so what the
/// receiver got is final.
pub async fn wait_settled(store: &Store, receiver: &str, delivered: u64) {
    within(
        &format!("{delivered} deliveries to {receiver} recorded"),
        async {
            loop {
                let counts = store.outbox_counts().expect("outbox counts");
                if let Some(c) = counts.get(receiver) {
                    assert!(c.delivered <= delivered, "too many deliveries: {c:?}");
                    if c.delivered == delivered && c.pending == 0 {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
}
