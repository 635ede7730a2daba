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
        name: "step actions: a CHECK constraint on steps.action",
        sql: include_str!("migrations/0004_step_action_check.sql"),
    },
    Migration {
        version: 5,
        name: "ids of pruned plans, never reused",
        sql: include_str!("migrations/0005_pruned_plan_ids.sql"),
    },
    Migration {
        version: 6,
        name: "traffic step actions: register, wait_in_service, deregister, wait_drained",
        sql: include_str!("migrations/0006_traffic_steps.sql"),
    },
    Migration {
        version: 7,
        name: "change-window overrides",
        sql: include_str!("migrations/0007_window_overrides.sql"),
    },
];

/// The schema version this binary writes: the last migration's.
pub const SCHEMA_VERSION: i64 = 7;

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

    /// A database at the version before the step-action CHECK (3), with a rollout plan
    /// and its steps, a prune plan and a rollback step, migrates: every row is kept, the
    /// launch-token index still guards uniqueness, and an unknown action is refused.
    #[test]
    fn a_version_3_database_migrates_and_then_refuses_unknown_actions() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("PRAGMA foreign_keys = ON").expect("fk");
        for m in MIGRATIONS.iter().filter(|m| m.version <= 3) {
            let tx = conn.transaction().expect("tx");
            tx.execute_batch(m.sql).expect("old migration");
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
                (m.version, m.name),
            )
            .expect("record");
            tx.pragma_update(None, "user_version", m.version)
                .expect("version");
            tx.commit().expect("commit");
        }
        conn.execute_batch(
            "INSERT INTO plans (id, group_name, target_hash, commit_id, strategy, status, \
                                created_at, updated_at, doc) VALUES \
               ('p1', 'web', 'sha256:ab', 'c1', 'rolling', 'running', 1, 2, '{}'), \
               ('p2', 'old', NULL, 'c1', NULL, 'pending', 1, 1, '{\"kind\":\"prune\"}'); \
             INSERT INTO steps (plan_id, idx, action, status, attempt, launch_token, detail) \
             VALUES ('p1', 0, 'launch', 'done', 1, 'p1.0.1', '{\"tokens\":[\"p1.0.1\"]}'), \
                    ('p1', 1, 'wait_healthy', 'intent', 1, NULL, '{}'), \
                    ('p1', 2, 'bake', 'pending', 0, NULL, '{}'), \
                    ('p1', 3, 'terminate', 'pending', 0, NULL, '{}'), \
                    ('p1', 4, 'rollback', 'pending', 0, NULL, '{}'), \
                    ('p2', 0, 'terminate', 'pending', 0, NULL, '{}');",
        )
        .expect("rows at version 3");

        migrate(&mut conn, None).expect("migrate to the current version");
        assert_eq!(user_version(&conn).expect("version"), SCHEMA_VERSION);
        let rows: Vec<(String, u32, String, String, Option<String>, String)> = conn
            .prepare(
                "SELECT plan_id, idx, action, status, launch_token, detail FROM steps \
                 ORDER BY plan_id, idx",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect()
            })
            .expect("steps after migration");
        let actions: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
        assert_eq!(
            actions,
            [
                "launch",
                "wait_healthy",
                "bake",
                "terminate",
                "rollback",
                "terminate"
            ]
        );
        assert_eq!(rows[0].4.as_deref(), Some("p1.0.1"));
        assert_eq!(rows[0].5, r#"{"tokens":["p1.0.1"]}"#);
        assert_eq!(rows[1].3, "intent");

        let unknown = conn.execute(
            "INSERT INTO steps (plan_id, idx, action, status) VALUES ('p1', 5, 'reboot', 'pending')",
            [],
        );
        let err = unknown.expect_err("an unknown action is refused");
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation),
            "{err}"
        );
        let reused = conn.execute(
            "INSERT INTO steps (plan_id, idx, action, status, launch_token) \
             VALUES ('p1', 5, 'launch', 'pending', 'p1.0.1')",
            [],
        );
        assert!(
            reused.is_err(),
            "the launch-token index survived the rebuild"
        );
        let deleted = conn
            .execute("DELETE FROM plans WHERE id = 'p2'", [])
            .expect("delete plan");
        assert_eq!(deleted, 1);
        let left: u32 = conn
            .query_row("SELECT count(*) FROM steps WHERE plan_id = 'p2'", [], |r| {
                r.get(0)
            })
            .expect("count");
        assert_eq!(left, 0, "the steps' foreign key to plans still cascades");
    }

    /// Issue 16: migration 6 widens the CHECK to the traffic actions; every action the
    /// executor can store passes it, and nothing else does.
    #[test]
    fn every_step_action_passes_the_check_of_the_current_schema() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("PRAGMA foreign_keys = ON").expect("fk");
        migrate(&mut conn, None).expect("migrate");
        conn.execute(
            "INSERT INTO plans (id, group_name, target_hash, commit_id, strategy, status, \
                                created_at, updated_at, doc) \
             VALUES ('p1', 'web', 'sha256:ab', 'c1', 'rolling', 'running', 1, 2, '{}')",
            [],
        )
        .expect("plan");
        for (i, action) in crate::StepAction::ALL.iter().enumerate() {
            conn.execute(
                "INSERT INTO steps (plan_id, idx, action, status) VALUES ('p1', ?1, ?2, 'pending')",
                (i as i64, action.as_str()),
            )
            .unwrap_or_else(|e| panic!("{action} refused: {e}"));
        }
        assert!(
            conn.execute(
                "INSERT INTO steps (plan_id, idx, action, status) VALUES ('p1', 99, 'drain', 'pending')",
                [],
            )
            .is_err()
        );
    }
}
