//! Per-group history of generations (hash, commit, first and last seen, outcome), trimmed
//! to the last N per group, and the hashes that failed and were rolled back, which are not
//! retried until a new commit or an explicit retry.

use std::collections::BTreeSet;
use std::time::SystemTime;

use phoenix_core::{GroupName, SpecHash};
use rusqlite::{OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::sql::{group_col, hash_col, millis, time_col};
use crate::{Result, Store, StoreError};

/// How a generation ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerationOutcome {
    /// Being rolled out (or first seen and not yet confirmed in sync).
    Progressing,
    /// The group converged on it.
    Succeeded,
    /// Its plan failed.
    Failed,
    /// It was rolled back.
    RolledBack,
    /// A newer commit replaced it before it converged.
    Superseded,
}

impl GenerationOutcome {
    fn as_str(self) -> &'static str {
        match self {
            GenerationOutcome::Progressing => "progressing",
            GenerationOutcome::Succeeded => "succeeded",
            GenerationOutcome::Failed => "failed",
            GenerationOutcome::RolledBack => "rolled_back",
            GenerationOutcome::Superseded => "superseded",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            GenerationOutcome::Progressing,
            GenerationOutcome::Succeeded,
            GenerationOutcome::Failed,
            GenerationOutcome::RolledBack,
            GenerationOutcome::Superseded,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// One generation of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// The group.
    pub group: GroupName,
    /// The generation's hash.
    pub spec_hash: SpecHash,
    /// The commit that introduced it.
    pub commit: String,
    /// When it became the desired generation.
    pub first_seen: SystemTime,
    /// When it was last recorded as desired.
    pub last_seen: SystemTime,
    /// How it ended up.
    pub outcome: GenerationOutcome,
}

/// A hash that failed in a group, with the commit it failed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedHash {
    /// The group.
    pub group: GroupName,
    /// The hash that failed.
    pub spec_hash: SpecHash,
    /// The commit it failed at; a different commit may try it again.
    pub commit: String,
    /// When it failed.
    pub failed_at: SystemTime,
    /// Why.
    pub reason: Option<String>,
}

const HISTORY_COLUMNS: &str = "group_name, spec_hash, commit_id, first_seen, last_seen, outcome";

fn history_from_row(row: &Row<'_>) -> rusqlite::Result<HistoryEntry> {
    let outcome: String = row.get(5)?;
    Ok(HistoryEntry {
        group: group_col(row, 0)?,
        spec_hash: hash_col(row, 1)?,
        commit: row.get(2)?,
        first_seen: time_col(row, 3)?,
        last_seen: time_col(row, 4)?,
        outcome: GenerationOutcome::parse(&outcome).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Text,
                format!("unknown generation outcome `{outcome}`").into(),
            )
        })?,
    })
}

fn failed_from_row(row: &Row<'_>) -> rusqlite::Result<FailedHash> {
    Ok(FailedHash {
        group: group_col(row, 0)?,
        spec_hash: hash_col(row, 1)?,
        commit: row.get(2)?,
        failed_at: time_col(row, 3)?,
        reason: row.get(4)?,
    })
}

impl Store {
    /// Record that `hash` (from `commit`) is the group's desired generation at `now`. If it
    /// is already the group's newest generation only its last-seen time moves; otherwise a
    /// new generation starts (`progressing`) and the group's history is trimmed to the
    /// configured number of generations. A hash that comes back after another one (a
    /// revert) starts a new generation. Returns the newest entry.
    pub fn record_generation(
        &mut self,
        group: &GroupName,
        hash: &SpecHash,
        commit: &str,
        now: SystemTime,
    ) -> Result<HistoryEntry> {
        const OPERATION: &str = "record generation";
        let now = millis(now)?;
        let keep = self.options.history_keep.max(1);
        let tx = self.begin(OPERATION)?;
        let newest: Option<(i64, String)> = tx
            .prepare_cached(
                "SELECT seq, spec_hash FROM history WHERE group_name = ?1 ORDER BY seq DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([group.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(StoreError::sqlite(OPERATION))?;
        let hash_text = hash.to_string();
        match newest {
            Some((seq, newest_hash)) if newest_hash == hash_text => {
                tx.prepare_cached(
                    "UPDATE history SET last_seen = max(last_seen, ?2) WHERE seq = ?1",
                )
                .and_then(|mut stmt| stmt.execute((seq, now)))
                .map_err(StoreError::sqlite(OPERATION))?;
            }
            _ => {
                tx.prepare_cached(
                    "INSERT INTO history (group_name, spec_hash, commit_id, first_seen, last_seen, \
                     outcome) VALUES (?1, ?2, ?3, ?4, ?4, 'progressing')",
                )
                .and_then(|mut stmt| stmt.execute((group.as_str(), &hash_text, commit, now)))
                .map_err(StoreError::sqlite(OPERATION))?;
                tx.prepare_cached(
                    "DELETE FROM history WHERE group_name = ?1 AND seq NOT IN \
                     (SELECT seq FROM history WHERE group_name = ?1 ORDER BY seq DESC LIMIT ?2)",
                )
                .and_then(|mut stmt| stmt.execute((group.as_str(), keep)))
                .map_err(StoreError::sqlite(OPERATION))?;
            }
        }
        let entry = tx
            .query_row(
                &format!(
                    "SELECT {HISTORY_COLUMNS} FROM history WHERE group_name = ?1 \
                     ORDER BY seq DESC LIMIT 1"
                ),
                [group.as_str()],
                history_from_row,
            )
            .map_err(StoreError::sqlite(OPERATION))?;
        tx.commit().map_err(StoreError::sqlite(OPERATION))?;
        self.history_changed.insert(group.clone());
        Ok(entry)
    }

    /// Set the outcome of the group's newest generation with `hash`.
    pub fn set_generation_outcome(
        &mut self,
        group: &GroupName,
        hash: &SpecHash,
        outcome: GenerationOutcome,
    ) -> Result<()> {
        let changed = self
            .conn
            .execute(
                "UPDATE history SET outcome = ?3 WHERE seq = (SELECT max(seq) FROM history \
                 WHERE group_name = ?1 AND spec_hash = ?2)",
                (group.as_str(), hash.to_string(), outcome.as_str()),
            )
            .map_err(StoreError::sqlite("set generation outcome"))?;
        if changed == 0 {
            return Err(StoreError::GenerationNotFound {
                group: group.clone(),
                hash: hash.to_string(),
            });
        }
        self.history_changed.insert(group.clone());
        Ok(())
    }

    /// The group's generations, newest first (at most the configured number).
    pub fn history(&self, group: &GroupName) -> Result<Vec<HistoryEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {HISTORY_COLUMNS} FROM history WHERE group_name = ?1 ORDER BY seq DESC"
            ))
            .map_err(StoreError::sqlite("read history"))?;
        stmt.query_map([group.as_str()], history_from_row)
            .and_then(Iterator::collect)
            .map_err(StoreError::sqlite("read history"))
    }

    /// Every group's generations in one read: by group name, each group's newest first.
    /// For building a whole view at once; [`Store::history`] reads one group.
    pub fn all_history(&self) -> Result<Vec<HistoryEntry>> {
        let mut all = Vec::new();
        self.for_each_history(|entry| all.push(entry))?;
        Ok(all)
    }

    /// [`Store::all_history`] one entry at a time, in the same order, without collecting
    /// them: with up to the configured number of generations for each of 100,000 groups,
    /// the whole list is hundreds of megabytes that a reader keeping its own per-group
    /// form never needs at once. On an error `f` has seen a prefix of the entries.
    pub fn for_each_history(&self, mut f: impl FnMut(HistoryEntry)) -> Result<()> {
        const OPERATION: &str = "read all history";
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {HISTORY_COLUMNS} FROM history ORDER BY group_name, seq DESC"
            ))
            .map_err(StoreError::sqlite(OPERATION))?;
        let mut rows = stmt.query([]).map_err(StoreError::sqlite(OPERATION))?;
        while let Some(row) = rows.next().map_err(StoreError::sqlite(OPERATION))? {
            f(history_from_row(row).map_err(StoreError::sqlite(OPERATION))?);
        }
        Ok(())
    }

    /// The groups whose history this connection has written since the last call (new
    /// generations and outcomes), so a reader that keeps histories in memory refreshes
    /// only those. Writes by other connections are not seen here.
    pub fn take_history_changes(&mut self) -> BTreeSet<GroupName> {
        std::mem::take(&mut self.history_changed)
    }

    /// Record that `hash` failed in `group` at `commit` (after a rollback). Replaces an
    /// earlier record for the same group and hash.
    pub fn record_failed_hash(
        &mut self,
        group: &GroupName,
        hash: &SpecHash,
        commit: &str,
        reason: Option<&str>,
        now: SystemTime,
    ) -> Result<()> {
        let now = millis(now)?;
        self.conn
            .execute(
                "INSERT INTO failed_hashes (group_name, spec_hash, commit_id, failed_at, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (group_name, spec_hash) DO UPDATE SET \
                 commit_id = excluded.commit_id, failed_at = excluded.failed_at, \
                 reason = excluded.reason",
                (group.as_str(), hash.to_string(), commit, now, reason),
            )
            .map_err(StoreError::sqlite("record failed hash"))?;
        Ok(())
    }

    /// The failure record of `hash` in `group`, if any.
    pub fn failed_hash(&self, group: &GroupName, hash: &SpecHash) -> Result<Option<FailedHash>> {
        self.conn
            .query_row(
                "SELECT group_name, spec_hash, commit_id, failed_at, reason FROM failed_hashes \
                 WHERE group_name = ?1 AND spec_hash = ?2",
                (group.as_str(), hash.to_string()),
                failed_from_row,
            )
            .optional()
            .map_err(StoreError::sqlite("read failed hash"))
    }

    /// Whether planning `hash` for `group` at `commit` must wait: the hash failed at this
    /// same commit and no one asked for a retry. A new commit lifts the block.
    pub fn is_retry_blocked(
        &self,
        group: &GroupName,
        hash: &SpecHash,
        commit: &str,
    ) -> Result<bool> {
        Ok(self
            .failed_hash(group, hash)?
            .is_some_and(|failed| failed.commit == commit))
    }

    /// Explicit retry: forget that `hash` failed in `group`. Returns whether there was a record.
    pub fn clear_failed_hash(&mut self, group: &GroupName, hash: &SpecHash) -> Result<bool> {
        self.conn
            .execute(
                "DELETE FROM failed_hashes WHERE group_name = ?1 AND spec_hash = ?2",
                (group.as_str(), hash.to_string()),
            )
            .map(|n| n > 0)
            .map_err(StoreError::sqlite("clear failed hash"))
    }

    /// Every failure record, by group then hash.
    pub fn failed_hashes(&self) -> Result<Vec<FailedHash>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT group_name, spec_hash, commit_id, failed_at, reason FROM failed_hashes \
                 ORDER BY group_name, spec_hash",
            )
            .map_err(StoreError::sqlite("list failed hashes"))?;
        stmt.query_map([], failed_from_row)
            .and_then(Iterator::collect)
            .map_err(StoreError::sqlite("list failed hashes"))
    }
}
