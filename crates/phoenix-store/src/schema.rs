//! Versioned schema migrations. The database's `PRAGMA user_version` is the number of the
//! last migration applied, `schema_migrations` lists them for humans, and [`MIGRATIONS`]
//! is the ordered list this binary knows. A database with a higher version than the last
//! known migration was written by a newer Phoenix and is refused, never modified.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

/// One migration: applied in its own transaction, together with the version bump.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Append only: a released migration is never edited.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial schema",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "plan indexes for active and newest-first reads",
        sql: include_str!("migrations/0002_plan_indexes.sql"),
    },
    Migration {
        version: 3,
        name: "prune plans: nullable target hash and strategy",
        sql: include_str!("migrations/0003_prune_plans.sql"),
    },
    Migration {
        version: 4,
        name: "ids of pruned plans, never reused",
        sql: include_str!("migrations/0004_pruned_plan_ids.sql"),
    },
];

/// The schema version this binary writes: the last migration's.
pub const SCHEMA_VERSION: i64 = 4;

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Bring the database up to [`SCHEMA_VERSION`], or refuse a newer one.
pub(crate) fn migrate(conn: &mut Connection, path: Option<&Path>) -> Result<(), StoreError> {
    let shown = || path.map_or_else(|| PathBuf::from(":memory:"), Path::to_path_buf);
    let found = user_version(conn).map_err(|source| StoreError::Open {
        path: shown(),
        source,
    })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: shown(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        let failed = |source| StoreError::Migration {
            version: migration.version,
            name: migration.name,
            source,
        };
        // IMMEDIATE takes the write lock first, so two processes opening the same fresh
        // database cannot both apply a migration: the second re-reads the version.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let current = user_version(&tx).map_err(failed)?;
        if current >= migration.version {
            continue;
        }
        tx.execute_batch(migration.sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            (migration.version, migration.name),
        )
        .map_err(failed)?;
        tx.pragma_update(None, "user_version", migration.version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied store schema migration"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_by_one_and_end_at_schema_version() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                m.version,
                i as i64 + 1,
                "migration {} is out of order",
                m.name
            );
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }
}
