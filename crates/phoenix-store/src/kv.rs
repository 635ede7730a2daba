//! Small JSON documents by key, such as the planner's memory (the state a pure planner
//! carries from one pass to the next). The store does not know their types: callers put
//! and get anything serde can handle.

use std::time::SystemTime;

use rusqlite::OptionalExtension;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sql::millis;
use crate::{Result, Store, StoreError};

/// The key under which the planner's memory is kept.
pub const PLANNER_MEMORY_KEY: &str = "planner_memory";

impl Store {
    /// Store `value` as JSON under `key`, replacing what was there.
    pub fn put_json<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
        now: SystemTime,
    ) -> Result<()> {
        let now = millis(now)?;
        let text = serde_json::to_string(value).map_err(|source| StoreError::SerializeValue {
            key: key.to_string(),
            source,
        })?;
        self.conn
            .prepare_cached(
                "INSERT INTO kv (key, value, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .and_then(|mut stmt| stmt.execute((key, text, now)))
            .map_err(StoreError::sqlite("put value"))?;
        Ok(())
    }

    /// The value under `key`, if any.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let text: Option<String> = self
            .conn
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")
            .and_then(|mut stmt| stmt.query_row([key], |row| row.get(0)).optional())
            .map_err(StoreError::sqlite("get value"))?;
        text.map(|text| {
            serde_json::from_str(&text).map_err(|source| StoreError::DeserializeValue {
                key: key.to_string(),
                source,
            })
        })
        .transpose()
    }

    /// Delete the value under `key`; returns whether there was one.
    pub fn delete_json(&mut self, key: &str) -> Result<bool> {
        self.conn
            .execute("DELETE FROM kv WHERE key = ?1", [key])
            .map(|n| n > 0)
            .map_err(StoreError::sqlite("delete value"))
    }

    /// Save the planner's memory (under [`PLANNER_MEMORY_KEY`]).
    pub fn save_planner_memory<T: Serialize + ?Sized>(
        &mut self,
        memory: &T,
        now: SystemTime,
    ) -> Result<()> {
        self.put_json(PLANNER_MEMORY_KEY, memory, now)
    }

    /// Load the planner's memory; `None` on a fresh store.
    pub fn load_planner_memory<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.get_json(PLANNER_MEMORY_KEY)
    }
}
