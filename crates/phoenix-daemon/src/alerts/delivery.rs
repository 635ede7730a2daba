//! The delivery task: sends what the outbox says is due, records each outcome, retries
//! with exponential backoff and jitter, and expires what could not be delivered in time.
//!
//! It owns its own [`Store`] connection (a second SQLite connection in WAL mode writes
//! alongside the loop's; it only touches the outbox), so a slow receiver never blocks the
//! reconcile loop. Store calls run on the blocking pool. Each receiver's queue is read on
//! its own and has at most one batch in flight, sent in outbox order and stopped at the
//! first failure, so its alerts arrive in order; receivers do not wait for one another.
//! Alerts queued for a receiver that is no longer configured are never sent; they
//! expire.
//!
//! Delivery is at-least-once: an alert whose answer was lost, or that was in flight at
//! shutdown, is sent again with the same `X-Phoenix-Delivery` id, by which receivers
//! de-duplicate.
//!
//! Time comes from `tokio::time` (anchored to the wall clock once at start), so sleeps
//! and the timestamps written to the outbox agree, also under a paused test clock.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use phoenix_core::backoff::Backoff;
use phoenix_core::config::AlertType;
use phoenix_store::{DeliveryId, OutboxEntry, Store, StoreError};
use reqwest::header::CONTENT_TYPE;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::AlertError;
use super::receiver::{Receiver, Receivers};

/// Settings of the delivery task.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Per-request timeout (connect, send, answer). Default 10 s.
    pub request_timeout: Duration,
    /// Retry timing: the n-th retry of an alert waits
    /// [`Backoff::delay`]`(n - 1, random)`, equal-jittered (the upper half of each delay
    /// is random, so receivers coming back are not hit by every daemon at once). Default
    /// 1 s doubling to 5 minutes.
    pub backoff: Backoff,
    /// Look at the outbox at least this often even without a wake-up (covers retries
    /// scheduled before a restart). Default 30 s.
    pub poll_interval: Duration,
    /// At most this many alerts of one receiver read per look. Default 100.
    pub batch: usize,
    /// Where final outcomes are counted (`phoenix_alert_deliveries_total`: delivered, or
    /// failed when an alert expired undelivered). Default none.
    pub metrics: Option<Arc<phoenix_api::Metrics>>,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(5 * 60))
                .with_equal_jitter(0),
            poll_interval: Duration::from_secs(30),
            batch: 100,
            metrics: None,
        }
    }
}

/// Why one send failed: recorded as the entry's `last_error`. Never contains the
/// receiver URL (it may be a credential) or the secret.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("request failed")]
    Request(#[source] reqwest::Error),
    #[error("receiver answered HTTP {0}")]
    Status(reqwest::StatusCode),
}

impl SendError {
    /// The message with its cause, for `last_error` and logs.
    fn describe(&self) -> String {
        match self {
            SendError::Request(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                let mut text = kind.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    text.push_str(": ");
                    text.push_str(&cause.to_string());
                    source = cause.source();
                }
                text
            }
            SendError::Status(_) => self.to_string(),
        }
    }
}

/// One send's outcome, from a receiver worker to the task that owns the store.
#[derive(Debug)]
enum Report {
    Sent {
        delivery: DeliveryId,
    },
    Failed {
        receiver: String,
        delivery: DeliveryId,
        attempts: u32,
        error: String,
    },
    Idle {
        receiver: String,
    },
}

/// The delivery task's state. Build it with [`Delivery::new`], then `run` it in its own
/// tokio task.
#[derive(Debug)]
pub struct Delivery {
    store: Option<Store>,
    receivers: Receivers,
    options: DeliveryOptions,
    client: reqwest::Client,
    origin: (SystemTime, Instant),
}

impl Delivery {
    /// Prepare delivery with its own `store` connection (open a second [`Store`] on the
    /// same state directory).
    pub fn new(
        store: Store,
        receivers: Receivers,
        options: DeliveryOptions,
    ) -> Result<Self, AlertError> {
        let client = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(AlertError::HttpClient)?;
        Ok(Self {
            store: Some(store),
            receivers,
            options,
            client,
            origin: (SystemTime::now(), Instant::now()),
        })
    }

    /// The wall-clock time at `at`, on the tokio clock anchored at start.
    fn wall_time(&self, at: Instant) -> SystemTime {
        self.origin.0 + at.saturating_duration_since(self.origin.1)
    }

    fn now(&self) -> SystemTime {
        self.wall_time(Instant::now())
    }

    /// Deliver until `shutdown` completes; `wake` (from [`super::Alerts::delivery_wake`])
    /// makes new alerts go out at once. Store errors are logged and retried after the
    /// poll interval: delivery never ends on its own. Returns the store connection.
    /// Sends in flight at shutdown are abandoned and repeated after a restart.
    pub async fn run(mut self, wake: Arc<Notify>, shutdown: impl Future<Output = ()>) -> Store {
        let (reports_tx, mut reports) = mpsc::unbounded_channel::<Report>();
        let mut workers = JoinSet::new();
        let mut worker_of: BTreeMap<tokio::task::Id, String> = BTreeMap::new();
        let mut busy: BTreeSet<String> = BTreeSet::new();
        let mut retry_at: BTreeMap<String, Instant> = BTreeMap::new();
        tokio::pin!(shutdown);
        loop {
            let read_at = Instant::now();
            let now = self.wall_time(read_at);
            let batch = self.options.batch;
            let idle: Vec<String> = self
                .receivers
                .iter()
                .map(|r| r.name().to_string())
                .filter(|name| !busy.contains(name))
                .collect();
            match self.with_store(move |s| load(s, now, &idle, batch)).await {
                Ok((expired, due)) => {
                    for entry in expired {
                        if let Some(metrics) = &self.options.metrics {
                            metrics.alert_delivery(false);
                        }
                        warn!(
                            receiver = %entry.receiver,
                            delivery_id = %entry.delivery_id,
                            event = entry.event.as_str(),
                            attempts = entry.attempts,
                            last_error = entry.last_error.as_deref().unwrap_or(""),
                            "alert expired undelivered"
                        );
                    }
                    for (name, entries) in due {
                        let Some(receiver) = self.receivers.get(&name).cloned() else {
                            continue;
                        };
                        retry_at.remove(&name);
                        busy.insert(name.clone());
                        let worker = workers.spawn(send_batch(
                            self.client.clone(),
                            receiver,
                            entries,
                            reports_tx.clone(),
                        ));
                        worker_of.insert(worker.id(), name);
                    }
                }
                Err(error) => {
                    warn!(error = %phoenix_core::chain(&error), "cannot read the alert outbox; will retry")
                }
            }

            // A retry time at or before the read was served by it (or its alert
            // expired): forget it, or the task would wake in a loop.
            retry_at.retain(|_, at| *at > read_at);
            let mut deadline = Instant::now() + self.options.poll_interval;
            if let Some(first) = retry_at.values().min() {
                deadline = deadline.min(*first);
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(report) = reports.recv() => {
                    let mut batch = vec![report];
                    while let Ok(more) = reports.try_recv() {
                        batch.push(more);
                    }
                    for report in batch {
                        self.apply(report, &mut busy, &mut retry_at).await;
                    }
                }
                () = wake.notified() => {}
                () = tokio::time::sleep_until(deadline) => {}
                Some(joined) = workers.join_next_with_id(), if !workers.is_empty() => {
                    match joined {
                        Ok((id, ())) => {
                            worker_of.remove(&id);
                        }
                        Err(error) => {
                            // A worker that died never reported `Idle`: free its
                            // receiver, whose unsent alerts are still pending.
                            if let Some(name) = worker_of.remove(&error.id()) {
                                warn!(receiver = %name, error = %phoenix_core::chain(&error), "alert delivery worker died");
                                busy.remove(&name);
                            }
                        }
                    }
                }
            }
        }
        workers.abort_all();
        self.store
            .take()
            .expect("the store is back after every blocking call")
    }

    async fn apply(
        &mut self,
        report: Report,
        busy: &mut BTreeSet<String>,
        retry_at: &mut BTreeMap<String, Instant>,
    ) {
        let now = self.now();
        match report {
            Report::Sent { delivery } => {
                debug!(delivery_id = %delivery, "alert delivered");
                if let Some(metrics) = &self.options.metrics {
                    metrics.alert_delivery(true);
                }
                let id = delivery.clone();
                if let Err(error) = self
                    .with_store(move |s| s.mark_alert_delivered(&id, now))
                    .await
                {
                    // Not recorded: it will be sent again, and de-duplicated by its id.
                    warn!(delivery_id = %delivery, error = %phoenix_core::chain(&error), "cannot record an alert delivery");
                }
            }
            Report::Failed {
                receiver,
                delivery,
                attempts,
                error,
            } => {
                let delay = self.options.backoff.delay(attempts, rand::random::<f64>());
                info!(
                    receiver = %receiver,
                    delivery_id = %delivery,
                    attempt = attempts + 1,
                    retry_in = ?delay,
                    error = error.as_str(), // already the whole chain, rendered where the send failed
                    "alert delivery failed; will retry"
                );
                // One millisecond more than the stored time (milliseconds), so the entry
                // is due when the task wakes for it.
                retry_at.insert(receiver, Instant::now() + delay + Duration::from_millis(1));
                let id = delivery.clone();
                if let Err(store_error) = self
                    .with_store(move |s| s.mark_alert_failed(&id, &error, now + delay))
                    .await
                {
                    warn!(delivery_id = %delivery, error = %phoenix_core::chain(&store_error), "cannot record an alert failure");
                }
            }
            Report::Idle { receiver } => {
                busy.remove(&receiver);
            }
        }
    }

    /// Run `op` on the store on the blocking pool.
    async fn with_store<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let mut store = self
            .store
            .take()
            .expect("the store is back after every blocking call");
        let (store, result) = tokio::task::spawn_blocking(move || {
            let result = op(&mut store);
            (store, result)
        })
        .await
        .expect("store operations do not panic");
        self.store = Some(store);
        result
    }
}

/// What one look at the outbox found: the alerts that just expired, and the due alerts
/// of each idle receiver that has some.
type Loaded = (Vec<OutboxEntry>, Vec<(String, Vec<OutboxEntry>)>);

/// Expire what is too old, then read the due alerts of each idle receiver. Alerts of
/// receivers no longer configured are never read: they expire.
fn load(
    store: &mut Store,
    now: SystemTime,
    idle: &[String],
    batch: usize,
) -> Result<Loaded, StoreError> {
    let expired = store.expire_alerts(now)?;
    let mut due = Vec::new();
    for name in idle {
        let entries = store.due_alerts_for(name, now, batch)?;
        if !entries.is_empty() {
            due.push((name.clone(), entries));
        }
    }
    Ok((expired, due))
}

/// Send one receiver's due alerts in order, stopping at the first failure.
async fn send_batch(
    client: reqwest::Client,
    receiver: Receiver,
    entries: Vec<OutboxEntry>,
    reports: mpsc::UnboundedSender<Report>,
) {
    for entry in entries {
        let report = match send(&client, &receiver, &entry).await {
            Ok(()) => Report::Sent {
                delivery: entry.delivery_id,
            },
            Err(error) => Report::Failed {
                receiver: receiver.name().to_string(),
                delivery: entry.delivery_id,
                attempts: entry.attempts,
                error: error.describe(),
            },
        };
        let failed = matches!(report, Report::Failed { .. });
        if reports.send(report).is_err() || failed {
            break;
        }
    }
    let _ = reports.send(Report::Idle {
        receiver: receiver.name().to_string(),
    });
}

async fn send(
    client: &reqwest::Client,
    receiver: &Receiver,
    entry: &OutboxEntry,
) -> Result<(), SendError> {
    let mut request = client
        .post(receiver.endpoint().clone())
        .header(CONTENT_TYPE, "application/json")
        .header("X-Phoenix-Delivery", entry.delivery_id.as_str())
        .header("X-Phoenix-Event", entry.event.as_str());
    if receiver.kind() == AlertType::Webhook
        && let Some(signature) = receiver.sign(entry.body.as_bytes())
    {
        request = request.header("X-Phoenix-Signature", signature);
    }
    let response = request
        .body(entry.body.clone())
        .send()
        .await
        .map_err(|e| SendError::Request(e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(SendError::Status(status))
    }
}
