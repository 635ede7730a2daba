//! Incidents: a group diverging from Git (per drift kind), a failed plan, a rollback or a
//! source error, from the moment it opens to the moment it resolves. At most one incident
//! is open per (group, kind); the alerting code notifies on open and resolve and
//! re-notifies open incidents whose last notification is older than its interval.

use std::time::SystemTime;

use phoenix_core::{GroupName, SpecHash};
use rusqlite::{Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::sql::{
    hashes_col, hashes_json, is_unique_violation, millis, opt_group_col, opt_hash_col,
    opt_time_col, time_col,
};
use crate::types::IncidentId;
use crate::{Result, Store, StoreError};

/// An incident to open with [`Store::open_incident`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
    /// Chosen by the caller; carried in alert bodies.
    pub id: IncidentId,
    /// The group, or `None` for incidents that concern no group (source errors).
    pub group: Option<GroupName>,
    /// The drift kind (`outdated`, `modified`, `missing`, ...) or the incident kind
    /// (`plan_failed`, `rollback`, `source_error`).
    pub kind: String,
    /// The hash Git wants, when it applies.
    pub desired_hash: Option<SpecHash>,
    /// The hashes observed on the group's instances.
    pub observed_hashes: Vec<SpecHash>,
    /// The commit the desired state came from.
    pub commit: Option<String>,
    /// A human-readable summary.
    pub message: Option<String>,
}

/// A stored incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentRecord {
    /// The incident id.
    pub id: IncidentId,
    /// The group, if any.
    pub group: Option<GroupName>,
    /// The kind.
    pub kind: String,
    /// When it opened.
    pub opened_at: SystemTime,
    /// When it resolved; `None` while open.
    pub resolved_at: Option<SystemTime>,
    /// The hash Git wants.
    pub desired_hash: Option<SpecHash>,
    /// The hashes observed.
    pub observed_hashes: Vec<SpecHash>,
    /// The commit.
    pub commit: Option<String>,
    /// The summary.
    pub message: Option<String>,
    /// When an alert about it was last sent (or queued).
    pub last_notified_at: Option<SystemTime>,
}

impl IncidentRecord {
    /// Still open.
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// What [`Store::open_incident`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentOpening {
    /// A new incident opened: notify.
    Opened(IncidentRecord),
    /// An incident of this group and kind was open already; its desired hash, observed
    /// hashes, commit and message were refreshed, nothing else changed: do not notify again.
    AlreadyOpen(IncidentRecord),
}

impl IncidentOpening {
    /// The incident, whichever way it went.
    pub fn record(&self) -> &IncidentRecord {
        match self {
            IncidentOpening::Opened(r) | IncidentOpening::AlreadyOpen(r) => r,
        }
    }
}

const COLUMNS: &str = "id, group_name, kind, opened_at, resolved_at, desired_hash, \
                       observed_hashes, commit_id, message, last_notified_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<IncidentRecord> {
    Ok(IncidentRecord {
        id: row.get(0)?,
        group: opt_group_col(row, 1)?,
        kind: row.get(2)?,
        opened_at: time_col(row, 3)?,
        resolved_at: opt_time_col(row, 4)?,
        desired_hash: opt_hash_col(row, 5)?,
        observed_hashes: hashes_col(row, 6)?,
        commit: row.get(7)?,
        message: row.get(8)?,
        last_notified_at: opt_time_col(row, 9)?,
    })
}

fn by_id(tx: &Connection, id: &IncidentId, operation: &'static str) -> Result<IncidentRecord> {
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()
    .map_err(StoreError::sqlite(operation))?
    .ok_or_else(|| StoreError::IncidentNotFound {
        incident: id.clone(),
    })
}

fn open_id(tx: &Connection, group: Option<&GroupName>, kind: &str) -> Result<Option<IncidentId>> {
    tx.query_row(
        "SELECT id FROM incidents WHERE ifnull(group_name, '') = ifnull(?1, '') \
         AND kind = ?2 AND resolved_at IS NULL",
        (group.map(GroupName::as_str), kind),
        |row| row.get(0),
    )
    .optional()
    .map_err(StoreError::sqlite("find open incident"))
}

impl Store {
    /// Open an incident at `now`, or refresh the one already open for the same group and
    /// kind (see [`IncidentOpening`]).
    pub fn open_incident(
        &mut self,
        incident: &NewIncident,
        now: SystemTime,
    ) -> Result<IncidentOpening> {
        const OPERATION: &str = "open incident";
        let now = millis(now)?;
        let tx = self.begin(OPERATION)?;
        let desired = incident.desired_hash.map(|h| h.to_string());
        let observed = hashes_json(&incident.observed_hashes);
        let opening = match open_id(&tx, incident.group.as_ref(), &incident.kind)? {
            Some(existing) => {
                tx.execute(
                    "UPDATE incidents SET desired_hash = ?2, observed_hashes = ?3, \
                     commit_id = ?4, message = ?5 WHERE id = ?1",
                    (
                        &existing,
                        &desired,
                        &observed,
                        &incident.commit,
                        &incident.message,
                    ),
                )
                .map_err(StoreError::sqlite(OPERATION))?;
                IncidentOpening::AlreadyOpen(by_id(&tx, &existing, OPERATION)?)
            }
            None => {
                tx.execute(
                    "INSERT INTO incidents (id, group_name, kind, opened_at, desired_hash, \
                     observed_hashes, commit_id, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    (
                        &incident.id,
                        incident.group.as_ref().map(GroupName::as_str),
                        &incident.kind,
                        now,
                        &desired,
                        &observed,
                        &incident.commit,
                        &incident.message,
                    ),
                )
                .map_err(|source| {
                    if is_unique_violation(&source) {
                        StoreError::DuplicateIncident {
                            incident: incident.id.clone(),
                        }
                    } else {
                        StoreError::Sqlite {
                            operation: OPERATION,
                            source,
                        }
                    }
                })?;
                IncidentOpening::Opened(by_id(&tx, &incident.id, OPERATION)?)
            }
        };
        tx.commit().map_err(StoreError::sqlite(OPERATION))?;
        Ok(opening)
    }

    /// Resolve incident `id` at `now`. Returns the resolved incident, or `None` when it was
    /// resolved already (nothing changes, so callers notify exactly once).
    pub fn resolve_incident(
        &mut self,
        id: &IncidentId,
        now: SystemTime,
    ) -> Result<Option<IncidentRecord>> {
        const OPERATION: &str = "resolve incident";
        let now = millis(now)?;
        let tx = self.begin(OPERATION)?;
        let before = by_id(&tx, id, OPERATION)?;
        if !before.is_open() {
            return Ok(None);
        }
        tx.execute(
            "UPDATE incidents SET resolved_at = ?2 WHERE id = ?1",
            (id, now),
        )
        .map_err(StoreError::sqlite(OPERATION))?;
        let after = by_id(&tx, id, OPERATION)?;
        tx.commit().map_err(StoreError::sqlite(OPERATION))?;
        Ok(Some(after))
    }

    /// Resolve the open incident of `group` (or of no group) and `kind`, if there is one.
    pub fn resolve_open_incident(
        &mut self,
        group: Option<&GroupName>,
        kind: &str,
        now: SystemTime,
    ) -> Result<Option<IncidentRecord>> {
        let id = open_id(&self.conn, group, kind)?;
        match id {
            Some(id) => self.resolve_incident(&id, now),
            None => Ok(None),
        }
    }

    /// Record that an alert about incident `id` was queued or sent at `at`.
    pub fn mark_incident_notified(&mut self, id: &IncidentId, at: SystemTime) -> Result<()> {
        let at = millis(at)?;
        let changed = self
            .conn
            .execute(
                "UPDATE incidents SET last_notified_at = ?2 WHERE id = ?1",
                (id, at),
            )
            .map_err(StoreError::sqlite("mark incident notified"))?;
        if changed == 0 {
            return Err(StoreError::IncidentNotFound {
                incident: id.clone(),
            });
        }
        Ok(())
    }

    /// One incident by id.
    pub fn incident(&self, id: &IncidentId) -> Result<Option<IncidentRecord>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(StoreError::sqlite("read incident"))
    }

    /// Every open incident, oldest first.
    pub fn open_incidents(&self) -> Result<Vec<IncidentRecord>> {
        self.list_incidents(
            "WHERE resolved_at IS NULL ORDER BY opened_at, id",
            None,
            "list open incidents",
        )
    }

    /// Open incidents never notified, or last notified before `cutoff` (`now` minus the
    /// re-notification interval): the ones due for a reminder. Oldest first.
    pub fn incidents_to_renotify(&self, cutoff: SystemTime) -> Result<Vec<IncidentRecord>> {
        self.list_incidents(
            "WHERE resolved_at IS NULL AND (last_notified_at IS NULL OR last_notified_at < ?1) \
             ORDER BY opened_at, id",
            Some(millis(cutoff)?),
            "list incidents to re-notify",
        )
    }

    /// Delete resolved incidents that resolved before `before`; returns how many.
    pub fn prune_resolved_incidents(&mut self, before: SystemTime) -> Result<usize> {
        let before = millis(before)?;
        self.conn
            .execute(
                "DELETE FROM incidents WHERE resolved_at IS NOT NULL AND resolved_at < ?1",
                [before],
            )
            .map_err(StoreError::sqlite("prune incidents"))
    }

    fn list_incidents(
        &self,
        tail: &str,
        param: Option<i64>,
        operation: &'static str,
    ) -> Result<Vec<IncidentRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM incidents {tail}"))
            .map_err(StoreError::sqlite(operation))?;
        let rows = match param {
            Some(p) => stmt.query_map([p], from_row),
            None => stmt.query_map([], from_row),
        };
        rows.and_then(Iterator::collect)
            .map_err(StoreError::sqlite(operation))
    }
}
