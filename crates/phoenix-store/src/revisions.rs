//! Revisions seen: every commit (or folder content hash) the source produced, whether it
//! was accepted, and why not. The status API shows the last accepted one as `revision.id`
//! and the newest one's error as `revision.error`.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, Row};
use serde::Serialize;

use crate::sql::{millis, time_col};
use crate::{Result, Store, StoreError};

/// Why a revision was rejected: the first problem, with its position when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionError {
    /// The file, relative to the source root (`groups/web.yaml`).
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// What is wrong.
    pub message: String,
}

/// Whether a revision was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RevisionVerdict {
    /// Every file valid: the revision is in force.
    Accepted,
    /// Refused as a whole; the last accepted revision stays in force.
    Rejected(RevisionError),
}

/// A revision as the source reports it, to record with [`Store::record_revision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRevision {
    /// Commit id, or content hash for a folder source.
    pub id: String,
    /// Accepted or rejected.
    pub verdict: RevisionVerdict,
    /// Commit author, when the source has one.
    pub author: Option<String>,
    /// Commit message (first line is enough), when the source has one.
    pub message: Option<String>,
}

/// A stored revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionRecord {
    /// Commit id, or content hash for a folder source.
    pub id: String,
    /// Accepted or rejected.
    pub verdict: RevisionVerdict,
    /// Commit author.
    pub author: Option<String>,
    /// Commit message.
    pub message: Option<String>,
    /// When it was first recorded.
    pub first_seen: SystemTime,
    /// When it was last recorded.
    pub last_seen: SystemTime,
}

const COLUMNS: &str = "id, status, error_path, error_line, error_column, error_message, \
                       author, message, first_seen_at, last_seen_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<RevisionRecord> {
    let status: String = row.get(1)?;
    let verdict = if status == "accepted" {
        RevisionVerdict::Accepted
    } else {
        RevisionVerdict::Rejected(RevisionError {
            path: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
            line: row.get(3)?,
            column: row.get(4)?,
            message: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
        })
    };
    Ok(RevisionRecord {
        id: row.get(0)?,
        verdict,
        author: row.get(6)?,
        message: row.get(7)?,
        first_seen: time_col(row, 8)?,
        last_seen: time_col(row, 9)?,
    })
}

impl Store {
    /// Record that the source produced `revision` at `now`. Recording the same id again
    /// keeps its first-seen time and updates everything else.
    pub fn record_revision(&mut self, revision: &SeenRevision, now: SystemTime) -> Result<()> {
        let now = millis(now)?;
        let (status, error) = match &revision.verdict {
            RevisionVerdict::Accepted => ("accepted", None),
            RevisionVerdict::Rejected(error) => ("rejected", Some(error)),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO revisions (id, status, error_path, error_line, error_column, \
                 error_message, author, message, first_seen_at, last_seen_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) \
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                 error_path = excluded.error_path, error_line = excluded.error_line, \
                 error_column = excluded.error_column, error_message = excluded.error_message, \
                 author = excluded.author, message = excluded.message, \
                 last_seen_at = excluded.last_seen_at",
            )
            .and_then(|mut stmt| {
                stmt.execute((
                    &revision.id,
                    status,
                    error.map(|e| &e.path),
                    error.and_then(|e| e.line),
                    error.and_then(|e| e.column),
                    error.map(|e| &e.message),
                    &revision.author,
                    &revision.message,
                    now,
                ))
            })
            .map_err(StoreError::sqlite("record revision"))?;
        Ok(())
    }

    /// The revision recorded most recently (accepted or not).
    pub fn latest_revision(&self) -> Result<Option<RevisionRecord>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM revisions ORDER BY last_seen_at DESC, seq DESC LIMIT 1"
                ),
                [],
                from_row,
            )
            .optional()
            .map_err(StoreError::sqlite("read latest revision"))
    }

    /// The accepted revision recorded most recently: the one in force.
    pub fn last_accepted_revision(&self) -> Result<Option<RevisionRecord>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM revisions WHERE status = 'accepted' \
                     ORDER BY last_seen_at DESC, seq DESC LIMIT 1"
                ),
                [],
                from_row,
            )
            .optional()
            .map_err(StoreError::sqlite("read last accepted revision"))
    }

    /// One revision by id.
    pub fn revision(&self, id: &str) -> Result<Option<RevisionRecord>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM revisions WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(StoreError::sqlite("read revision"))
    }

    /// The `limit` most recently recorded revisions, newest first.
    pub fn recent_revisions(&self, limit: usize) -> Result<Vec<RevisionRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM revisions ORDER BY last_seen_at DESC, seq DESC LIMIT ?1"
            ))
            .map_err(StoreError::sqlite("list revisions"))?;
        stmt.query_map([limit], from_row)
            .and_then(Iterator::collect)
            .map_err(StoreError::sqlite("list revisions"))
    }

    /// Delete revisions last seen before `before`, except the newest accepted one (in
    /// force, restored after a restart) and the newest of all (the status API's); returns
    /// how many were deleted (design section 16).
    pub fn prune_revisions(&mut self, before: SystemTime) -> Result<usize> {
        let before = millis(before)?;
        self.conn
            .execute(
                "DELETE FROM revisions WHERE last_seen_at < ?1 \
                 AND seq NOT IN (SELECT seq FROM revisions WHERE status = 'accepted' \
                                 ORDER BY last_seen_at DESC, seq DESC LIMIT 1) \
                 AND seq NOT IN (SELECT seq FROM revisions \
                                 ORDER BY last_seen_at DESC, seq DESC LIMIT 1)",
                [before],
            )
            .map_err(StoreError::sqlite("prune revisions"))
    }
}
