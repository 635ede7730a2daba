//! Change-window overrides (design section 14): every override an operator made, who
//! made it, when, why and until when. The newest one is the override in force while its
//! `until` is in the future; the daemon loads it on start and hands it to the planner.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, Row};

use crate::sql::{millis, time_col};
use crate::{Result, Store, StoreError};

/// An override to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWindowOverride {
    /// Every window is lifted before this instant; after the recording time.
    pub until: SystemTime,
    /// Why, as the operator wrote it; not blank.
    pub reason: String,
    /// Who asked for it; not empty.
    pub requested_by: String,
}

/// A recorded override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowOverrideRecord {
    /// Increasing with every override recorded; never reused.
    pub id: i64,
    /// When it was recorded.
    pub created_at: SystemTime,
    /// Every window is lifted before this instant.
    pub until: SystemTime,
    /// Why.
    pub reason: String,
    /// Who asked for it.
    pub requested_by: String,
}

const COLUMNS: &str = "id, created_at, until_at, reason, requested_by";

fn record(row: &Row<'_>) -> rusqlite::Result<WindowOverrideRecord> {
    Ok(WindowOverrideRecord {
        id: row.get(0)?,
        created_at: time_col(row, 1)?,
        until: time_col(row, 2)?,
        reason: row.get(3)?,
        requested_by: row.get(4)?,
    })
}

impl Store {
    /// Record an override made at `now`. An `until` not after `now`, a blank reason or
    /// an empty requester is refused ([`StoreError::InvalidWindowOverride`]).
    pub fn record_window_override(
        &mut self,
        new: &NewWindowOverride,
        now: SystemTime,
    ) -> Result<WindowOverrideRecord> {
        let invalid = |reason: &'static str| Err(StoreError::InvalidWindowOverride { reason });
        if new.until <= now {
            return invalid("until must be after the time it is recorded");
        }
        if new.reason.trim().is_empty() {
            return invalid("reason must not be blank");
        }
        if new.requested_by.is_empty() {
            return invalid("requested_by must not be empty");
        }
        let (created, until) = (millis(now)?, millis(new.until)?);
        if until <= created {
            return invalid("until must be after the time it is recorded");
        }
        let id = self
            .conn
            .prepare_cached(
                "INSERT INTO window_overrides (created_at, until_at, reason, requested_by) \
                 VALUES (?1, ?2, ?3, ?4) RETURNING id",
            )
            .and_then(|mut stmt| {
                stmt.query_row((created, until, &new.reason, &new.requested_by), |row| {
                    row.get(0)
                })
            })
            .map_err(StoreError::sqlite("record window override"))?;
        Ok(WindowOverrideRecord {
            id,
            created_at: crate::sql::from_millis(created),
            until: crate::sql::from_millis(until),
            reason: new.reason.clone(),
            requested_by: new.requested_by.clone(),
        })
    }

    /// The newest override, whether or not it still lasts.
    pub fn latest_window_override(&self) -> Result<Option<WindowOverrideRecord>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM window_overrides ORDER BY id DESC LIMIT 1"
            ))
            .and_then(|mut stmt| stmt.query_row([], record).optional())
            .map_err(StoreError::sqlite("latest window override"))
    }

    /// Up to `limit` overrides, newest first.
    pub fn window_overrides(&self, limit: usize) -> Result<Vec<WindowOverrideRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM window_overrides ORDER BY id DESC LIMIT ?1"
            ))
            .and_then(|mut stmt| stmt.query_map([limit], record)?.collect())
            .map_err(StoreError::sqlite("list window overrides"))
    }
}
