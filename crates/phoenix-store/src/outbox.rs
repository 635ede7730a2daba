//! The alert outbox: every alert is written here before it is sent, and stays until it is
//! delivered or expires, so nothing is lost while a receiver is down or the daemon
//! restarts. Each receiver's alerts are delivered in the order they were enqueued: an
//! alert waiting for its retry holds back the later alerts of the same receiver.

use std::collections::BTreeMap;
use std::time::SystemTime;

use phoenix_core::config::AlertEvent;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{OptionalExtension, Row};
use serde::Serialize;

use crate::sql::{is_unique_violation, millis, opt_time_col, time_col};
use crate::types::{DeliveryId, IncidentId};
use crate::{Result, Store, StoreError};

/// An alert to enqueue with [`Store::enqueue_alert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    /// Unique forever (`X-Phoenix-Delivery`).
    pub delivery_id: DeliveryId,
    /// The receiver's name from the config.
    pub receiver: String,
    /// The event.
    pub event: AlertEvent,
    /// The incident it is about, if any.
    pub incident_id: Option<IncidentId>,
    /// The exact JSON body to send (signatures are computed over these bytes).
    pub body: String,
    /// Give up delivering at this time.
    pub expires_at: SystemTime,
}

/// A stored outbox entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxEntry {
    /// Insertion order, global across receivers.
    pub seq: i64,
    /// The delivery id.
    pub delivery_id: DeliveryId,
    /// The receiver.
    pub receiver: String,
    /// The event.
    pub event: AlertEvent,
    /// The incident.
    pub incident_id: Option<IncidentId>,
    /// The exact body.
    pub body: String,
    /// When it was enqueued.
    pub created_at: SystemTime,
    /// Not to be tried before this time.
    pub next_attempt_at: SystemTime,
    /// Give up at this time.
    pub expires_at: SystemTime,
    /// Attempts so far (failed ones, plus the successful one).
    pub attempts: u32,
    /// When it was delivered.
    pub delivered_at: Option<SystemTime>,
    /// When it was given up.
    pub expired_at: Option<SystemTime>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Delivery state of one receiver's alerts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    /// Not delivered yet and not expired (includes `failing`). The status API's
    /// `alerts.pending`.
    pub pending: u64,
    /// Pending alerts whose last attempt failed: the receiver is having trouble. The
    /// status API's `alerts.failed` is `failing + expired`.
    pub failing: u64,
    /// Delivered (until pruned).
    pub delivered: u64,
    /// Given up undelivered (until pruned).
    pub expired: u64,
}

struct EventCol(AlertEvent);

impl FromSql for EventCol {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        AlertEvent::ALL
            .into_iter()
            .find(|e| e.as_str() == text)
            .map(EventCol)
            .ok_or(FromSqlError::InvalidType)
    }
}

const COLUMNS: &str = "seq, delivery_id, receiver, event, incident_id, body, created_at, \
                       next_attempt_at, expires_at, attempts, delivered_at, expired_at, last_error";

fn from_row(row: &Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        seq: row.get(0)?,
        delivery_id: row.get(1)?,
        receiver: row.get(2)?,
        event: row.get::<_, EventCol>(3)?.0,
        incident_id: row.get(4)?,
        body: row.get(5)?,
        created_at: time_col(row, 6)?,
        next_attempt_at: time_col(row, 7)?,
        expires_at: time_col(row, 8)?,
        attempts: row.get(9)?,
        delivered_at: opt_time_col(row, 10)?,
        expired_at: opt_time_col(row, 11)?,
        last_error: row.get(12)?,
    })
}

impl Store {
    /// Write an alert to the outbox at `now`, due immediately. Returns `false` (and changes
    /// nothing) when an alert with this delivery id is already there, so re-enqueueing
    /// after a crash is harmless.
    pub fn enqueue_alert(&mut self, alert: &NewAlert, now: SystemTime) -> Result<bool> {
        let now = millis(now)?;
        let expires = millis(alert.expires_at)?;
        let result = self
            .conn
            .prepare_cached(
                "INSERT INTO outbox (delivery_id, receiver, event, incident_id, body, \
                 created_at, next_attempt_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
            )
            .and_then(|mut stmt| {
                stmt.execute((
                    &alert.delivery_id,
                    &alert.receiver,
                    alert.event.as_str(),
                    &alert.incident_id,
                    &alert.body,
                    now,
                    expires,
                ))
            });
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(source) => Err(StoreError::Sqlite {
                operation: "enqueue alert",
                source,
            }),
        }
    }

    /// Alerts to send now, at most `limit`, in insertion order. Per receiver, this is the
    /// run of oldest pending alerts up to (not including) the first one whose next attempt
    /// is still in the future, so sending them in the order given, and stopping at a
    /// receiver's first failure, delivers each receiver's alerts in order.
    pub fn due_alerts(&self, now: SystemTime, limit: usize) -> Result<Vec<OutboxEntry>> {
        let now = millis(now)?;
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM ( \
                   SELECT *, max(next_attempt_at > ?1) OVER ( \
                     PARTITION BY receiver ORDER BY seq ROWS UNBOUNDED PRECEDING) AS blocked \
                   FROM outbox WHERE delivered_at IS NULL AND expired_at IS NULL) \
                 WHERE blocked = 0 ORDER BY seq LIMIT ?2"
            ))
            .map_err(StoreError::sqlite("list due alerts"))?;
        stmt.query_map((now, limit), from_row)
            .and_then(Iterator::collect)
            .map_err(StoreError::sqlite("list due alerts"))
    }

    /// [`Store::due_alerts`] for one receiver: its oldest pending alerts up to (not
    /// including) the first whose next attempt is in the future, at most `limit`, in
    /// order. Lets a delivery task read each receiver's queue on its own, so a receiver
    /// with a long backlog (or one no longer configured) cannot crowd the others out
    /// of a shared `limit`.
    pub fn due_alerts_for(
        &self,
        receiver: &str,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>> {
        let now = millis(now)?;
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM ( \
                   SELECT *, max(next_attempt_at > ?1) OVER ( \
                     ORDER BY seq ROWS UNBOUNDED PRECEDING) AS blocked \
                   FROM outbox WHERE receiver = ?2 AND delivered_at IS NULL \
                   AND expired_at IS NULL) \
                 WHERE blocked = 0 ORDER BY seq LIMIT ?3"
            ))
            .map_err(StoreError::sqlite("list due alerts of a receiver"))?;
        stmt.query_map((now, receiver, limit), from_row)
            .and_then(Iterator::collect)
            .map_err(StoreError::sqlite("list due alerts of a receiver"))
    }

    /// Record a successful delivery at `now`. Delivering again is a no-op.
    pub fn mark_alert_delivered(&mut self, delivery: &DeliveryId, now: SystemTime) -> Result<()> {
        let now = millis(now)?;
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1 \
                 WHERE delivery_id = ?1 AND delivered_at IS NULL",
            )
            .and_then(|mut stmt| stmt.execute((delivery, now)))
            .map_err(StoreError::sqlite("mark alert delivered"))?;
        if changed == 0 {
            self.require_delivery(delivery)?;
        }
        Ok(())
    }

    /// Record a failed attempt with its `error`; the alert is due again at `next_attempt_at`
    /// (the caller computes the backoff with jitter).
    pub fn mark_alert_failed(
        &mut self,
        delivery: &DeliveryId,
        error: &str,
        next_attempt_at: SystemTime,
    ) -> Result<()> {
        let next = millis(next_attempt_at)?;
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 \
                 WHERE delivery_id = ?1 AND delivered_at IS NULL",
            )
            .and_then(|mut stmt| stmt.execute((delivery, error, next)))
            .map_err(StoreError::sqlite("mark alert failed"))?;
        if changed == 0 {
            self.require_delivery(delivery)?;
        }
        Ok(())
    }

    /// Give up every pending alert whose expiry time is at or before `now`; returns them.
    pub fn expire_alerts(&mut self, now: SystemTime) -> Result<Vec<OutboxEntry>> {
        const OPERATION: &str = "expire alerts";
        let now = millis(now)?;
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "UPDATE outbox SET expired_at = ?1 WHERE delivered_at IS NULL \
                 AND expired_at IS NULL AND expires_at <= ?1 RETURNING {COLUMNS}"
            ))
            .map_err(StoreError::sqlite(OPERATION))?;
        let mut expired: Vec<OutboxEntry> = stmt
            .query_map([now], from_row)
            .and_then(Iterator::collect)
            .map_err(StoreError::sqlite(OPERATION))?;
        expired.sort_by_key(|e| e.seq);
        Ok(expired)
    }

    /// Delivery state per receiver. Receivers with no alerts at all are absent.
    pub fn outbox_counts(&self) -> Result<BTreeMap<String, OutboxCounts>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT receiver, \
                   sum(delivered_at IS NULL AND expired_at IS NULL), \
                   sum(delivered_at IS NULL AND expired_at IS NULL AND attempts > 0), \
                   sum(delivered_at IS NOT NULL), \
                   sum(delivered_at IS NULL AND expired_at IS NOT NULL) \
                 FROM outbox GROUP BY receiver",
            )
            .map_err(StoreError::sqlite("count alerts"))?;
        stmt.query_map([], |row| {
            Ok((
                row.get(0)?,
                OutboxCounts {
                    pending: row.get(1)?,
                    failing: row.get(2)?,
                    delivered: row.get(3)?,
                    expired: row.get(4)?,
                },
            ))
        })
        .and_then(Iterator::collect)
        .map_err(StoreError::sqlite("count alerts"))
    }

    /// One outbox entry by delivery id.
    pub fn outbox_entry(&self, delivery: &DeliveryId) -> Result<Option<OutboxEntry>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM outbox WHERE delivery_id = ?1"
            ))
            .and_then(|mut stmt| stmt.query_row([delivery], from_row).optional())
            .map_err(StoreError::sqlite("read alert"))
    }

    /// Delete delivered and expired alerts that finished before `before`; returns how many.
    pub fn prune_outbox(&mut self, before: SystemTime) -> Result<usize> {
        let before = millis(before)?;
        self.conn
            .execute(
                "DELETE FROM outbox WHERE ifnull(delivered_at, expired_at) < ?1",
                [before],
            )
            .map_err(StoreError::sqlite("prune outbox"))
    }

    fn require_delivery(&self, delivery: &DeliveryId) -> Result<()> {
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM outbox WHERE delivery_id = ?1")
            .and_then(|mut stmt| stmt.exists([delivery]))
            .map_err(StoreError::sqlite("read alert"))?;
        if exists {
            Ok(())
        } else {
            Err(StoreError::DeliveryNotFound {
                delivery: delivery.clone(),
            })
        }
    }
}
