//! Small helpers between Rust values and SQL columns: times as unix milliseconds, JSON as
//! TEXT, and `phoenix-core` types that are stored as their text form.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phoenix_core::{GroupName, SpecHash};
use rusqlite::Row;
use rusqlite::types::Type;

use crate::StoreError;

/// A time as unix milliseconds, the form every time column uses.
pub(crate) fn millis(time: SystemTime) -> Result<i64, StoreError> {
    time.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or(StoreError::TimeOutOfRange { time })
}

/// The inverse of [`millis`]; negative values (never written by the store) read as the epoch.
pub(crate) fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A stored text that does not parse into the type the column holds.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadValue(String);

fn conversion(idx: usize, err: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(err))
}

pub(crate) fn time_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<SystemTime> {
    row.get::<_, i64>(idx).map(from_millis)
}

pub(crate) fn opt_time_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<SystemTime>> {
    row.get::<_, Option<i64>>(idx).map(|v| v.map(from_millis))
}

pub(crate) fn group_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<GroupName> {
    let text: String = row.get(idx)?;
    GroupName::new(text).map_err(|e| conversion(idx, BadValue(e)))
}

pub(crate) fn opt_group_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<GroupName>> {
    row.get::<_, Option<String>>(idx)?
        .map(|text| GroupName::new(text).map_err(|e| conversion(idx, BadValue(e))))
        .transpose()
}

pub(crate) fn hash_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<SpecHash> {
    let text: String = row.get(idx)?;
    SpecHash::from_str(&text).map_err(|e| conversion(idx, e))
}

pub(crate) fn opt_hash_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<SpecHash>> {
    row.get::<_, Option<String>>(idx)?
        .map(|text| SpecHash::from_str(&text).map_err(|e| conversion(idx, e)))
        .transpose()
}

pub(crate) fn json_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| conversion(idx, e))
}

/// A JSON array of spec hashes.
pub(crate) fn hashes_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<SpecHash>> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| conversion(idx, e))
}

pub(crate) fn hashes_json(hashes: &[SpecHash]) -> String {
    serde_json::to_string(hashes).expect("a list of spec hashes always serializes")
}

/// `true` when the error is a UNIQUE or PRIMARY KEY constraint violation.
pub(crate) fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}
