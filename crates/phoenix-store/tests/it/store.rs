//! Integration tests of the store through its public API, on real database files in a
//! temporary directory: migrations, reopening, refusal of a newer schema, every
//! operation, crash recovery of an intent, the one-active-plan rule, the outbox's order,
//! retry and expiry, and history trimming.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phoenix_core::config::AlertEvent;
use phoenix_core::spec::Strategy;
use phoenix_core::{GroupName, SpecHash};
use phoenix_store::{
    DeliveryId, GenerationOutcome, IncidentId, IncidentOpening, NewAlert, NewIncident, NewPlan,
    NewStep, OutboxCounts, PlanId, PlanKind, PlanStatus, RevisionError, RevisionVerdict,
    SCHEMA_VERSION, SeenRevision, StepAction, StepIntent, StepStatus, Store, StoreError,
    StoreOptions,
};
use proptest::prelude::{
    Just, ProptestConfig, Strategy as _, any, prop_assert_eq, prop_oneof, proptest,
};
use serde_json::json;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs)
}

fn group(name: &str) -> GroupName {
    GroupName::new(name).expect("valid group name")
}

fn hash(n: u8) -> SpecHash {
    format!("v1:sha256:{}", format!("{n:02x}").repeat(32))
        .parse()
        .expect("valid hash")
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), StoreOptions::default()).expect("open store")
}

fn new_plan(id: &str, group_name: &str, steps: usize) -> NewPlan {
    NewPlan {
        id: PlanId::new(id),
        group: group(group_name),
        kind: PlanKind::Rollout {
            target_hash: hash(2),
            strategy: Strategy::Rolling,
        },
        commit: "c2".into(),
        status: PlanStatus::Running,
        doc: json!({"max_surge": 1, "from": [hash(1).to_string()]}),
        steps: (0..steps)
            .map(|i| NewStep {
                action: if i % 2 == 0 {
                    StepAction::Launch
                } else {
                    StepAction::Terminate
                },
                detail: json!({"n": i}),
            })
            .collect(),
    }
}

fn intent(attempt: u32, token: &str) -> StepIntent {
    StepIntent {
        attempt,
        launch_token: Some(token.into()),
        detail: None,
    }
}

#[test]
fn store_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Store>();
}

#[test]
fn migrates_an_empty_directory_to_the_current_schema_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("nested/state");
    let store = Store::open(&state, StoreOptions::default()).expect("open store");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(store.path(), Some(state.join("phoenix.db").as_path()));
    drop(store);

    // A plain SQLite connection (what the sqlite3 CLI sees) finds the documented tables.
    let conn = rusqlite::Connection::open(state.join("phoenix.db")).expect("raw open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    tables.sort();
    assert_eq!(
        tables,
        [
            "failed_hashes",
            "history",
            "incidents",
            "kv",
            "outbox",
            "plans",
            "pruned_plan_ids",
            "revisions",
            "schema_migrations",
            "steps",
            "window_overrides"
        ]
    );
    let applied: i64 = conn
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .expect("count");
    assert_eq!(applied, SCHEMA_VERSION);
}

#[test]
fn reopening_keeps_data_and_does_not_migrate_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = open(&dir);
        store
            .insert_plan(&new_plan("p1", "web", 2), t(0))
            .expect("insert");
        store.put_json("k", &json!({"a": 1}), t(0)).expect("put");
    }
    let store = open(&dir);
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let plan = store
        .plan(&PlanId::new("p1"))
        .expect("read")
        .expect("plan kept");
    assert_eq!(plan.steps.len(), 2);
    assert_eq!(
        store.get_json::<serde_json::Value>("k").expect("get"),
        Some(json!({"a": 1}))
    );
}

/// Migration 3 rebuilds `plans` and `steps` (nullable target hash for prune plans): a
/// database written at version 2 keeps every plan, step and index, and the cascade from
/// plans to steps is not triggered by the rebuild.
#[test]
fn migration_3_keeps_plans_and_steps_of_a_version_2_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("phoenix.db");
    {
        let mut conn = rusqlite::Connection::open(&db).expect("raw open");
        conn.pragma_update(None, "foreign_keys", true).expect("fk");
        let tx = conn.transaction().expect("tx");
        tx.execute_batch(include_str!("../../src/migrations/0001_initial.sql"))
            .expect("v1");
        tx.execute_batch(include_str!("../../src/migrations/0002_plan_indexes.sql"))
            .expect("v2");
        tx.execute_batch(
            "INSERT INTO schema_migrations VALUES (1, 'initial schema'), (2, 'plan indexes');
             INSERT INTO plans VALUES ('p1', 'web', 'v1:sha256:0202020202020202020202020202020202020202020202020202020202020202',
                 'c2', 'rolling', 'running', 1, 2, '{}');
             INSERT INTO steps (plan_id, idx, action, status, attempt, launch_token, detail)
                 VALUES ('p1', 0, 'launch', 'intent', 1, 'p1.0.1', '{\"n\":0}'),
                        ('p1', 1, 'terminate', 'pending', 0, NULL, '{}');",
        )
        .expect("v2 rows");
        tx.pragma_update(None, "user_version", 2).expect("version");
        tx.commit().expect("commit");
    }
    let mut store = open(&dir);
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let plan = store
        .plan(&PlanId::new("p1"))
        .expect("read")
        .expect("plan kept");
    assert_eq!(
        plan.plan.kind,
        PlanKind::Rollout {
            target_hash: hash(2),
            strategy: Strategy::Rolling
        }
    );
    assert_eq!(plan.steps.len(), 2, "steps kept through the rebuild");
    assert_eq!(plan.steps[0].launch_token.as_deref(), Some("p1.0.1"));
    assert_eq!(
        store
            .step_by_launch_token("p1.0.1")
            .expect("by token")
            .map(|s| s.index),
        Some(0)
    );
    // The one-active-plan index and the cascade still hold on the rebuilt tables.
    let err = store
        .insert_plan(&new_plan("p2", "web", 1), t(3))
        .expect_err("second active plan");
    assert!(
        matches!(err, StoreError::ActivePlanExists { .. }),
        "{err:?}"
    );
    drop(store);
    let conn = rusqlite::Connection::open(&db).expect("raw open");
    let fk: Vec<String> = conn
        .prepare("SELECT \"table\" FROM pragma_foreign_key_list('steps')")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(fk, ["plans"], "steps reference the rebuilt plans table");
    let mut indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('plans', 'steps') \
             AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
        )
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    indexes.sort();
    assert_eq!(
        indexes,
        [
            "plans_active_by_created",
            "plans_by_created",
            "plans_by_group",
            "plans_one_active_per_group",
            "steps_by_launch_token"
        ]
    );
}

/// A prune plan converges to no spec: no target hash and no strategy, stored as NULL
/// (never a made-up hash), and only together.
#[test]
fn a_prune_plan_has_no_target_hash_and_no_strategy() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    let prune = NewPlan {
        kind: PlanKind::Prune,
        ..new_plan("prune-1", "gone", 1)
    };
    store.insert_plan(&prune, t(0)).expect("insert prune");
    let read = store
        .plan(&PlanId::new("prune-1"))
        .expect("read")
        .expect("exists");
    assert_eq!(read.plan.kind, PlanKind::Prune);
    assert_eq!(read.plan.kind.target_hash(), None);
    assert_eq!(read.plan.kind.strategy(), None);
    assert_eq!(
        store.unfinished_plans().expect("active").len(),
        1,
        "listed like any plan"
    );
    // A plan with a hash but no strategy cannot be built (`PlanKind`); the table's CHECK
    // refusing such a row is tested beside the SQL (`plans::tests`).
}

#[test]
fn a_database_from_a_newer_phoenix_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(&dir));
    let db = dir.path().join("phoenix.db");
    let future = SCHEMA_VERSION + 1;
    {
        let conn = rusqlite::Connection::open(&db).expect("raw open");
        conn.pragma_update(None, "user_version", future)
            .expect("bump version");
    }
    let err = Store::open(dir.path(), StoreOptions::default()).expect_err("must refuse");
    match &err {
        StoreError::SchemaTooNew {
            found, supported, ..
        } => {
            assert_eq!(*found, future);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert!(err.to_string().contains("newer"), "{err}");
    let conn = rusqlite::Connection::open(&db).expect("raw open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, future);
}

#[test]
fn a_file_that_is_not_a_database_is_an_open_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("phoenix.db"), vec![b'x'; 4096]).expect("write junk");
    let err = Store::open(dir.path(), StoreOptions::default()).expect_err("must fail");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
}

#[test]
fn revisions_track_the_latest_and_the_last_accepted() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    assert_eq!(store.latest_revision().expect("latest"), None);
    let good = SeenRevision {
        id: "aaa".into(),
        verdict: RevisionVerdict::Accepted,
        author: Some("Ada <ada@example.com>".into()),
        message: Some("new image".into()),
    };
    store.record_revision(&good, t(0)).expect("record");
    let error = RevisionError {
        path: "groups/web.yaml".into(),
        line: Some(7),
        column: Some(3),
        message: "unknown key `replica`".into(),
    };
    let bad = SeenRevision {
        id: "bbb".into(),
        verdict: RevisionVerdict::Rejected(error.clone()),
        author: None,
        message: None,
    };
    store.record_revision(&bad, t(10)).expect("record");
    // Polling sees the rejected revision again: first_seen stays, last_seen moves.
    store.record_revision(&bad, t(20)).expect("record again");

    let latest = store.latest_revision().expect("latest").expect("some");
    assert_eq!(latest.id, "bbb");
    assert_eq!(latest.verdict, RevisionVerdict::Rejected(error));
    assert_eq!((latest.first_seen, latest.last_seen), (t(10), t(20)));
    let accepted = store
        .last_accepted_revision()
        .expect("accepted")
        .expect("some");
    assert_eq!(accepted.id, "aaa");
    assert_eq!(accepted.author.as_deref(), Some("Ada <ada@example.com>"));
    assert_eq!(store.revision("aaa").expect("by id"), Some(accepted));
    let recent: Vec<String> = store
        .recent_revisions(10)
        .expect("recent")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(recent, ["bbb", "aaa"]);
}

#[test]
fn plan_lifecycle_with_intent_and_done() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    let id = PlanId::new("web-1");
    store
        .insert_plan(&new_plan("web-1", "web", 3), t(0))
        .expect("insert");
    let plan = store.plan(&id).expect("read").expect("exists");
    assert_eq!(plan.plan.status, PlanStatus::Running);
    assert_eq!(
        plan.plan.kind,
        PlanKind::Rollout {
            target_hash: hash(2),
            strategy: Strategy::Rolling
        }
    );
    assert_eq!(plan.plan.doc["max_surge"], json!(1));
    assert!(plan.steps.iter().all(|s| s.status == StepStatus::Pending));
    assert_eq!(
        plan.steps.iter().map(|s| s.index).collect::<Vec<_>>(),
        [0, 1, 2]
    );

    store
        .write_intent(&id, 0, &intent(0, "tok-web-1-0-0"), t(1))
        .expect("intent");
    let step = &store.steps(&id).expect("steps")[0];
    assert_eq!(step.status, StepStatus::Intent);
    assert_eq!(step.launch_token.as_deref(), Some("tok-web-1-0-0"));
    assert_eq!(step.started_at, Some(t(1)));
    assert_eq!(step.detail, json!({"n": 0}));

    let launched = json!({"instances": ["i-1"]});
    store
        .mark_step_done(&id, 0, Some(&launched), t(2))
        .expect("done");
    let step = &store.steps(&id).expect("steps")[0];
    assert_eq!(step.status, StepStatus::Done);
    assert_eq!(step.finished_at, Some(t(2)));
    assert_eq!(step.detail, launched);
    assert_eq!(
        store
            .plan(&id)
            .expect("read")
            .expect("exists")
            .plan
            .updated_at,
        t(2)
    );

    // A done step cannot be started or finished again.
    let err = store
        .write_intent(&id, 0, &intent(1, "tok-web-1-0-1"), t(3))
        .expect_err("done");
    assert!(
        matches!(
            err,
            StoreError::StepTransition {
                status: StepStatus::Done,
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .mark_step_done(&id, 0, None, t(3))
        .expect_err("done twice");
    assert!(matches!(err, StoreError::StepTransition { .. }), "{err:?}");
    // A pending step cannot be marked done without an intent.
    let err = store
        .mark_step_done(&id, 1, None, t(3))
        .expect_err("no intent");
    assert!(
        matches!(
            err,
            StoreError::StepTransition {
                status: StepStatus::Pending,
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .mark_step_done(&id, 9, None, t(3))
        .expect_err("no step");
    assert!(
        matches!(err, StoreError::StepNotFound { index: 9, .. }),
        "{err:?}"
    );

    // A failed step is retried with a higher attempt, not the same one.
    store
        .write_intent(
            &id,
            1,
            &StepIntent {
                attempt: 0,
                launch_token: None,
                detail: Some(json!({"ids": ["i-0"]})),
            },
            t(4),
        )
        .expect("intent");
    store
        .mark_step_failed(&id, 1, "terminate refused", None, t(5))
        .expect("failed");
    let step = &store.steps(&id).expect("steps")[1];
    assert_eq!(
        (step.status, step.error.as_deref()),
        (StepStatus::Failed, Some("terminate refused"))
    );
    assert_eq!(step.detail, json!({"ids": ["i-0"]}));
    let same = StepIntent {
        attempt: 0,
        launch_token: None,
        detail: None,
    };
    let err = store
        .write_intent(&id, 1, &same, t(6))
        .expect_err("same attempt");
    assert!(
        matches!(
            err,
            StoreError::AttemptNotIncreasing {
                attempt: 0,
                recorded: 0,
                ..
            }
        ),
        "{err:?}"
    );
    store
        .write_intent(&id, 1, &StepIntent { attempt: 1, ..same }, t(6))
        .expect("retry");
    let step = &store.steps(&id).expect("steps")[1];
    assert_eq!(
        (step.status, step.attempt, step.error.clone()),
        (StepStatus::Intent, 1, None)
    );
    store.mark_step_done(&id, 1, None, t(7)).expect("done");

    // Launch tokens are unique across steps.
    let err = store
        .write_intent(&id, 2, &intent(0, "tok-web-1-0-0"), t(8))
        .expect_err("dup token");
    assert!(
        matches!(&err, StoreError::LaunchTokenInUse { token } if token == "tok-web-1-0-0"),
        "{err:?}"
    );
    store
        .write_intent(&id, 2, &intent(0, "tok-web-1-2-0"), t(8))
        .expect("intent");
    assert_eq!(
        store
            .step_by_launch_token("tok-web-1-2-0")
            .expect("lookup")
            .map(|s| s.index),
        Some(2)
    );
    assert_eq!(store.step_by_launch_token("nope").expect("lookup"), None);

    // Finishing the plan waits for the step in flight.
    let err = store
        .set_plan_status(&id, PlanStatus::Succeeded, t(9))
        .expect_err("in flight");
    assert!(
        matches!(err, StoreError::StepInFlight { index: 2, .. }),
        "{err:?}"
    );
    store.mark_step_done(&id, 2, None, t(9)).expect("done");
    store
        .set_plan_status(&id, PlanStatus::Succeeded, t(10))
        .expect("succeed");
    store
        .set_plan_status(&id, PlanStatus::Succeeded, t(11))
        .expect("same final status is a no-op");
    let err = store
        .set_plan_status(&id, PlanStatus::Running, t(12))
        .expect_err("final");
    assert!(
        matches!(
            err,
            StoreError::PlanTransition {
                from: PlanStatus::Succeeded,
                to: PlanStatus::Running,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(store.unfinished_plans().expect("unfinished").is_empty());
}

#[test]
fn steps_run_only_while_the_plan_is_running() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    let id = PlanId::new("p");
    let plan = NewPlan {
        status: PlanStatus::AwaitingApproval,
        ..new_plan("p", "web", 1)
    };
    store.insert_plan(&plan, t(0)).expect("insert");
    let err = store
        .write_intent(&id, 0, &intent(0, "t0"), t(1))
        .expect_err("not approved");
    assert!(
        matches!(
            err,
            StoreError::PlanNotRunning {
                status: PlanStatus::AwaitingApproval,
                ..
            }
        ),
        "{err:?}"
    );
    store
        .set_plan_status(&id, PlanStatus::Running, t(2))
        .expect("approve");
    store
        .set_plan_status(&id, PlanStatus::Cancelled, t(3))
        .expect("cancel");
    let err = store
        .write_intent(&id, 0, &intent(0, "t0"), t(4))
        .expect_err("cancelled");
    assert!(
        matches!(
            err,
            StoreError::PlanNotRunning {
                status: PlanStatus::Cancelled,
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .write_intent(&PlanId::new("ghost"), 0, &intent(0, "t1"), t(4))
        .expect_err("no plan");
    assert!(matches!(err, StoreError::PlanNotFound { .. }), "{err:?}");
    let err = store
        .insert_plan(
            &NewPlan {
                status: PlanStatus::Failed,
                ..new_plan("q", "db", 0)
            },
            t(5),
        )
        .expect_err("final initial");
    assert!(
        matches!(err, StoreError::InitialPlanStatus { .. }),
        "{err:?}"
    );
}

#[test]
fn one_active_plan_per_group_is_enforced() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    store
        .insert_plan(&new_plan("a", "web", 1), t(0))
        .expect("first");
    let err = store
        .insert_plan(&new_plan("b", "web", 1), t(1))
        .expect_err("second");
    match err {
        StoreError::ActivePlanExists { group: g, existing } => {
            assert_eq!(g, group("web"));
            assert_eq!(existing, PlanId::new("a"));
        }
        other => panic!("expected ActivePlanExists, got {other:?}"),
    }
    // Other groups are independent; duplicate ids are refused.
    store
        .insert_plan(&new_plan("c", "db", 1), t(1))
        .expect("other group");
    let err = store
        .insert_plan(&new_plan("c", "cache", 1), t(1))
        .expect_err("dup id");
    assert!(matches!(err, StoreError::DuplicatePlan { .. }), "{err:?}");
    // Once the first plan is finished, a new one may start.
    store
        .set_plan_status(&PlanId::new("a"), PlanStatus::Failed, t(2))
        .expect("fail");
    store
        .insert_plan(&new_plan("b", "web", 1), t(3))
        .expect("after finish");
    assert_eq!(
        store
            .active_plan(&group("web"))
            .expect("active")
            .map(|p| p.plan.id),
        Some(PlanId::new("b"))
    );
}

#[test]
fn the_database_itself_refuses_a_second_active_plan() {
    // Even a writer that bypasses the API (a bug, or a hand-edit) cannot break the rule.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    store
        .insert_plan(&new_plan("a", "web", 0), t(0))
        .expect("first");
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("phoenix.db")).expect("raw");
    let result = conn.execute(
        "INSERT INTO plans (id, group_name, target_hash, commit_id, strategy, status, created_at, updated_at, doc) \
         SELECT 'b', group_name, target_hash, commit_id, strategy, 'pending', created_at, updated_at, doc FROM plans WHERE id = 'a'",
        [],
    );
    assert!(result.is_err(), "partial unique index must reject the row");
}

#[test]
fn superseding_finishes_the_in_flight_step_first() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    let old = PlanId::new("old");
    store
        .insert_plan(&new_plan("old", "web", 2), t(0))
        .expect("insert");
    store
        .write_intent(&old, 0, &intent(0, "old-0-0"), t(1))
        .expect("intent");
    let newer = NewPlan {
        kind: PlanKind::Rollout {
            target_hash: hash(3),
            strategy: Strategy::Rolling,
        },
        commit: "c3".into(),
        ..new_plan("new", "web", 1)
    };
    let err = store
        .supersede_plan(&old, &newer, t(2))
        .expect_err("in flight");
    assert!(
        matches!(
            err,
            StoreError::StepInFlight {
                index: 0,
                to: PlanStatus::Superseded,
                ..
            }
        ),
        "{err:?}"
    );
    // Nothing changed: the transaction rolled back.
    assert_eq!(store.plan(&PlanId::new("new")).expect("read"), None);
    store.mark_step_done(&old, 0, None, t(3)).expect("done");
    store.supersede_plan(&old, &newer, t(4)).expect("supersede");
    assert_eq!(
        store.plan(&old).expect("read").expect("old").plan.status,
        PlanStatus::Superseded
    );
    let active = store
        .active_plan(&group("web"))
        .expect("active")
        .expect("new");
    assert_eq!(
        (active.plan.id.as_str(), active.plan.commit.as_str()),
        ("new", "c3")
    );

    let other = new_plan("x", "db", 0);
    let err = store
        .supersede_plan(&PlanId::new("new"), &other, t(5))
        .expect_err("other group");
    assert!(
        matches!(err, StoreError::SupersedeOtherGroup { .. }),
        "{err:?}"
    );
    let err = store
        .supersede_plan(
            &old,
            &NewPlan {
                ..new_plan("y", "web", 0)
            },
            t(5),
        )
        .expect_err("old is final");
    assert!(matches!(err, StoreError::PlanTransition { .. }), "{err:?}");
}

#[test]
fn crash_after_intent_recovers_the_unfinished_plan_and_its_intent_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = PlanId::new("web-7");
    {
        let mut store = open(&dir);
        store
            .insert_plan(&new_plan("web-7", "web", 3), t(0))
            .expect("insert");
        store
            .insert_plan(&new_plan("done", "db", 1), t(0))
            .expect("insert");
        store
            .write_intent(&PlanId::new("done"), 0, &intent(0, "done-0"), t(0))
            .expect("intent");
        store
            .mark_step_done(&PlanId::new("done"), 0, None, t(0))
            .expect("done");
        store
            .set_plan_status(&PlanId::new("done"), PlanStatus::Succeeded, t(0))
            .expect("finish");
        store
            .write_intent(&id, 0, &intent(0, "web-7-0-0"), t(1))
            .expect("intent");
        store.mark_step_done(&id, 0, None, t(2)).expect("done");
        store
            .write_intent(&id, 1, &intent(0, "web-7-1-0"), t(3))
            .expect("intent");
        // The process dies here: the Store is dropped without marking step 1 done.
    }
    let mut store = open(&dir);
    let unfinished = store.unfinished_plans().expect("unfinished");
    assert_eq!(unfinished.len(), 1, "{unfinished:?}");
    let plan = &unfinished[0];
    assert_eq!(plan.plan.id, id);
    let statuses: Vec<StepStatus> = plan.steps.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [StepStatus::Done, StepStatus::Intent, StepStatus::Pending]
    );
    assert_eq!(plan.steps[1].launch_token.as_deref(), Some("web-7-1-0"));
    assert_eq!(
        store
            .step_by_launch_token("web-7-1-0")
            .expect("lookup")
            .map(|s| (s.plan_id, s.index)),
        Some((id.clone(), 1))
    );
    // Recovery: nothing was found in inventory, so the same attempt is re-intended and run.
    store
        .write_intent(&id, 1, &intent(0, "web-7-1-0"), t(10))
        .expect("re-intent same attempt");
    store.mark_step_done(&id, 1, None, t(11)).expect("done");
}

#[test]
fn append_steps_and_update_doc_and_listing() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    let id = PlanId::new("p");
    store
        .insert_plan(&new_plan("p", "web", 2), t(0))
        .expect("insert");
    let first = store
        .append_steps(
            &id,
            &[NewStep {
                action: StepAction::Bake,
                detail: json!({}),
            }],
            t(1),
        )
        .expect("append");
    assert_eq!(first, 2);
    assert_eq!(store.steps(&id).expect("steps")[2].action, StepAction::Bake);
    store
        .update_plan_doc(&id, &json!({"replanned": true}), t(2))
        .expect("doc");
    let plan = store.plan(&id).expect("read").expect("plan").plan;
    assert_eq!(
        (plan.doc, plan.updated_at),
        (json!({"replanned": true}), t(2))
    );
    let err = store
        .update_plan_doc(&PlanId::new("nope"), &json!({}), t(2))
        .expect_err("missing");
    assert!(matches!(err, StoreError::PlanNotFound { .. }), "{err:?}");

    store
        .set_plan_status(&id, PlanStatus::RolledBack, t(3))
        .expect("roll back");
    store
        .insert_plan(&new_plan("q", "web", 0), t(4))
        .expect("next");
    store
        .insert_plan(&new_plan("r", "db", 0), t(5))
        .expect("other");
    let ids = |plans: Vec<phoenix_store::PlanRecord>| {
        plans
            .into_iter()
            .map(|p| p.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.recent_plans(None, 10).expect("list")),
        ["r", "q", "p"]
    );
    assert_eq!(
        ids(store.recent_plans(Some(&group("web")), 1).expect("list")),
        ["q"]
    );
    let counts = store.plan_counts().expect("counts");
    assert_eq!(counts.get(&PlanStatus::Running), Some(&2));
    assert_eq!(counts.get(&PlanStatus::RolledBack), Some(&1));
    assert_eq!(counts.get(&PlanStatus::AwaitingApproval), None);
    let err = store.append_steps(&id, &[], t(6)).expect_err("final plan");
    assert!(matches!(err, StoreError::PlanTransition { .. }), "{err:?}");

    assert_eq!(store.prune_finished_plans(t(4)).expect("prune"), 1);
    assert_eq!(store.plan(&id).expect("read"), None);
    assert!(store.steps(&id).expect("steps").is_empty(), "steps cascade");
    assert_eq!(store.recent_plans(None, 10).expect("list").len(), 2);
}

fn incident(id: &str, group_name: Option<&str>, kind: &str) -> NewIncident {
    NewIncident {
        id: IncidentId::new(id),
        group: group_name.map(group),
        kind: kind.into(),
        desired_hash: Some(hash(2)),
        observed_hashes: vec![hash(1)],
        commit: Some("c2".into()),
        message: Some("1 instance outdated".into()),
    }
}

#[test]
fn incidents_open_once_per_group_and_kind_and_resolve_once() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    let opened = store
        .open_incident(&incident("i1", Some("web"), "outdated"), t(0))
        .expect("open");
    let IncidentOpening::Opened(first) = opened else {
        panic!("expected Opened, got {opened:?}")
    };
    assert_eq!((first.opened_at, first.resolved_at), (t(0), None));
    assert_eq!(first.observed_hashes, vec![hash(1)]);

    let again = NewIncident {
        observed_hashes: vec![hash(1), hash(3)],
        ..incident("i2", Some("web"), "outdated")
    };
    let reopened = store.open_incident(&again, t(5)).expect("open again");
    let IncidentOpening::AlreadyOpen(same) = &reopened else {
        panic!("expected AlreadyOpen, got {reopened:?}")
    };
    assert_eq!(same.id, IncidentId::new("i1"));
    assert_eq!(same.opened_at, t(0));
    assert_eq!(same.observed_hashes, vec![hash(1), hash(3)]);
    assert_eq!(reopened.record().id, IncidentId::new("i1"));

    // Other kinds, other groups, and group-less incidents are separate.
    store
        .open_incident(&incident("i3", Some("web"), "modified"), t(1))
        .expect("kind");
    store
        .open_incident(&incident("i4", None, "source_error"), t(2))
        .expect("global");
    let dup = store
        .open_incident(&incident("i5", None, "source_error"), t(3))
        .expect("global again");
    assert!(
        matches!(dup, IncidentOpening::AlreadyOpen(ref r) if r.id.as_str() == "i4"),
        "{dup:?}"
    );
    assert_eq!(store.open_incidents().expect("open").len(), 3);

    store
        .mark_incident_notified(&IncidentId::new("i1"), t(10))
        .expect("notified");
    let due: Vec<String> = store
        .incidents_to_renotify(t(10))
        .expect("due")
        .into_iter()
        .map(|i| i.id.to_string())
        .collect();
    assert_eq!(due, ["i3", "i4"], "i1 was notified at the cutoff");
    assert_eq!(store.incidents_to_renotify(t(11)).expect("due").len(), 3);

    let resolved = store
        .resolve_incident(&IncidentId::new("i1"), t(20))
        .expect("resolve")
        .expect("was open");
    assert_eq!(resolved.resolved_at, Some(t(20)));
    assert_eq!(
        store
            .resolve_incident(&IncidentId::new("i1"), t(21))
            .expect("again"),
        None
    );
    let err = store
        .resolve_incident(&IncidentId::new("zz"), t(21))
        .expect_err("unknown");
    assert!(
        matches!(err, StoreError::IncidentNotFound { .. }),
        "{err:?}"
    );
    let by_key = store
        .resolve_open_incident(None, "source_error", t(22))
        .expect("resolve")
        .expect("open");
    assert_eq!(by_key.id, IncidentId::new("i4"));
    assert_eq!(
        store
            .resolve_open_incident(None, "source_error", t(23))
            .expect("none"),
        None
    );

    // After resolving, the same group and kind opens a fresh incident; reusing an id does not.
    let fresh = store
        .open_incident(&incident("i6", Some("web"), "outdated"), t(30))
        .expect("reopen");
    assert!(
        matches!(fresh, IncidentOpening::Opened(ref r) if r.id.as_str() == "i6"),
        "{fresh:?}"
    );
    store
        .resolve_incident(&IncidentId::new("i6"), t(31))
        .expect("resolve");
    let err = store
        .open_incident(&incident("i6", Some("web"), "outdated"), t(32))
        .expect_err("reused id");
    assert!(
        matches!(err, StoreError::DuplicateIncident { .. }),
        "{err:?}"
    );

    assert_eq!(store.prune_resolved_incidents(t(25)).expect("prune"), 2);
    assert_eq!(store.incident(&IncidentId::new("i1")).expect("read"), None);
    assert!(
        store
            .incident(&IncidentId::new("i6"))
            .expect("read")
            .is_some()
    );
}

fn alert(id: &str, receiver: &str, expires: SystemTime) -> NewAlert {
    NewAlert {
        delivery_id: DeliveryId::new(id),
        receiver: receiver.into(),
        event: AlertEvent::DriftDetected,
        incident_id: Some(IncidentId::new("i1")),
        body: format!(r#"{{"version":"1","delivery_id":"{id}"}}"#),
        expires_at: expires,
    }
}

fn ids(entries: &[phoenix_store::OutboxEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.delivery_id.as_str()).collect()
}

#[test]
fn due_alerts_for_reads_one_receivers_queue_and_stops_at_its_waiting_head() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    for (id, receiver) in [
        ("a1", "ops"),
        ("b1", "slack"),
        ("a2", "ops"),
        ("b2", "slack"),
    ] {
        store
            .enqueue_alert(&alert(id, receiver, t(1000)), t(0))
            .expect("enqueue");
    }
    assert_eq!(
        ids(&store.due_alerts_for("ops", t(5), 100).expect("due")),
        ["a1", "a2"]
    );
    assert_eq!(
        ids(&store.due_alerts_for("slack", t(5), 1).expect("due")),
        ["b1"]
    );
    assert!(
        store
            .due_alerts_for("gone", t(5), 100)
            .expect("due")
            .is_empty()
    );
    store
        .mark_alert_failed(&DeliveryId::new("a1"), "HTTP 503", t(60))
        .expect("fail");
    assert!(
        store
            .due_alerts_for("ops", t(10), 100)
            .expect("due")
            .is_empty()
    );
    assert_eq!(
        ids(&store.due_alerts_for("ops", t(60), 100).expect("due")),
        ["a1", "a2"]
    );
    store
        .mark_alert_delivered(&DeliveryId::new("b1"), t(10))
        .expect("deliver");
    assert_eq!(
        ids(&store.due_alerts_for("slack", t(10), 100).expect("due")),
        ["b2"]
    );
}

#[test]
fn outbox_delivers_each_receiver_in_order_and_retries_the_head_first() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    for (i, (id, receiver)) in [("a1", "ops"), ("b1", "slack"), ("a2", "ops"), ("a3", "ops")]
        .into_iter()
        .enumerate()
    {
        assert!(
            store
                .enqueue_alert(&alert(id, receiver, t(1000)), t(i as u64))
                .expect("enqueue")
        );
    }
    assert!(
        !store
            .enqueue_alert(&alert("a1", "ops", t(1000)), t(9))
            .expect("idempotent")
    );
    assert_eq!(
        ids(&store.due_alerts(t(0), 100).expect("due")),
        ["a1"],
        "later alerts are not due before their creation"
    );
    assert_eq!(
        ids(&store.due_alerts(t(5), 100).expect("due")),
        ["a1", "b1", "a2", "a3"]
    );
    assert_eq!(ids(&store.due_alerts(t(5), 2).expect("due")), ["a1", "b1"]);

    // ops is down: a1 fails and waits; a2, a3 wait behind it; slack is unaffected.
    store
        .mark_alert_failed(&DeliveryId::new("a1"), "connection refused", t(60))
        .expect("fail");
    assert_eq!(ids(&store.due_alerts(t(10), 100).expect("due")), ["b1"]);
    store
        .mark_alert_delivered(&DeliveryId::new("b1"), t(10))
        .expect("deliver");
    store
        .mark_alert_delivered(&DeliveryId::new("b1"), t(11))
        .expect("delivering twice is a no-op");
    let counts = store.outbox_counts().expect("counts");
    assert_eq!(
        counts["ops"],
        OutboxCounts {
            pending: 3,
            failing: 1,
            delivered: 0,
            expired: 0
        }
    );
    assert_eq!(
        counts["slack"],
        OutboxCounts {
            pending: 0,
            failing: 0,
            delivered: 1,
            expired: 0
        }
    );
    let a1 = store
        .outbox_entry(&DeliveryId::new("a1"))
        .expect("read")
        .expect("a1");
    assert_eq!(
        (a1.attempts, a1.last_error.as_deref(), a1.next_attempt_at),
        (1, Some("connection refused"), t(60))
    );

    // ops is back: the head is due again and the rest follow in order.
    assert!(store.due_alerts(t(59), 100).expect("due").is_empty());
    let due = store.due_alerts(t(60), 100).expect("due");
    assert_eq!(ids(&due), ["a1", "a2", "a3"]);
    assert_eq!(
        due[0].body, r#"{"version":"1","delivery_id":"a1"}"#,
        "body kept byte for byte"
    );
    for entry in &due {
        store
            .mark_alert_delivered(&entry.delivery_id, t(61))
            .expect("deliver");
    }
    assert!(store.due_alerts(t(100), 100).expect("due").is_empty());
    let a1 = store
        .outbox_entry(&DeliveryId::new("a1"))
        .expect("read")
        .expect("a1");
    assert_eq!((a1.attempts, a1.delivered_at), (2, Some(t(61))));

    let err = store
        .mark_alert_delivered(&DeliveryId::new("zz"), t(1))
        .expect_err("unknown");
    assert!(
        matches!(err, StoreError::DeliveryNotFound { .. }),
        "{err:?}"
    );
    let err = store
        .mark_alert_failed(&DeliveryId::new("zz"), "x", t(1))
        .expect_err("unknown");
    assert!(
        matches!(err, StoreError::DeliveryNotFound { .. }),
        "{err:?}"
    );
}

#[test]
fn outbox_expiry_gives_up_and_unblocks_the_receiver() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    store
        .enqueue_alert(&alert("old", "ops", t(100)), t(0))
        .expect("enqueue");
    store
        .enqueue_alert(&alert("new", "ops", t(500)), t(50))
        .expect("enqueue");
    store
        .mark_alert_failed(&DeliveryId::new("old"), "503", t(400))
        .expect("fail");
    assert!(
        store.due_alerts(t(120), 10).expect("due").is_empty(),
        "blocked behind old"
    );
    assert!(store.expire_alerts(t(99)).expect("expire").is_empty());
    let expired = store.expire_alerts(t(100)).expect("expire");
    assert_eq!(ids(&expired), ["old"]);
    assert_eq!(expired[0].expired_at, Some(t(100)));
    assert!(
        store
            .expire_alerts(t(100))
            .expect("expire again")
            .is_empty()
    );
    assert_eq!(ids(&store.due_alerts(t(120), 10).expect("due")), ["new"]);
    let counts = store.outbox_counts().expect("counts")["ops"];
    assert_eq!(
        counts,
        OutboxCounts {
            pending: 1,
            failing: 0,
            delivered: 0,
            expired: 1
        }
    );

    store
        .mark_alert_delivered(&DeliveryId::new("new"), t(130))
        .expect("deliver");
    assert_eq!(
        store.prune_outbox(t(101)).expect("prune"),
        1,
        "only the expired one finished before"
    );
    assert_eq!(store.prune_outbox(t(131)).expect("prune"), 1);
    assert!(store.outbox_counts().expect("counts").is_empty());
}

#[test]
fn outbox_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = open(&dir);
        store
            .enqueue_alert(&alert("a1", "ops", t(1000)), t(0))
            .expect("enqueue");
        store
            .enqueue_alert(&alert("a2", "ops", t(1000)), t(1))
            .expect("enqueue");
        store
            .mark_alert_delivered(&DeliveryId::new("a1"), t(2))
            .expect("deliver");
    }
    let store = open(&dir);
    let due = store.due_alerts(t(3), 10).expect("due");
    assert_eq!(ids(&due), ["a2"]);
    assert_eq!(due[0].event, AlertEvent::DriftDetected);
    assert_eq!(due[0].incident_id, Some(IncidentId::new("i1")));
}

#[test]
fn history_keeps_the_last_generations_per_group() {
    let options = StoreOptions {
        history_keep: 3,
        ..StoreOptions::default()
    };
    let mut store = Store::open_in_memory(options).expect("open");
    let web = group("web");
    let entry = store
        .record_generation(&web, &hash(1), "c1", t(0))
        .expect("record");
    assert_eq!(entry.outcome, GenerationOutcome::Progressing);
    let entry = store
        .record_generation(&web, &hash(1), "c1b", t(5))
        .expect("seen again");
    assert_eq!(
        (entry.first_seen, entry.last_seen, entry.commit.as_str()),
        (t(0), t(5), "c1")
    );
    store
        .set_generation_outcome(&web, &hash(1), GenerationOutcome::Succeeded)
        .expect("outcome");
    for (n, at) in [(2u8, 10u64), (3, 20), (4, 30)] {
        store
            .record_generation(&web, &hash(n), &format!("c{n}"), t(at))
            .expect("record");
    }
    store
        .record_generation(&group("db"), &hash(9), "c9", t(31))
        .expect("other group");
    let history = store.history(&web).expect("history");
    let hashes: Vec<SpecHash> = history.iter().map(|h| h.spec_hash).collect();
    assert_eq!(
        hashes,
        [hash(4), hash(3), hash(2)],
        "newest first, oldest trimmed"
    );
    assert_eq!(store.history(&group("db")).expect("history").len(), 1);

    // A revert is a new generation, not the old row.
    store
        .record_generation(&web, &hash(3), "c5", t(40))
        .expect("revert");
    let history = store.history(&web).expect("history");
    assert_eq!(
        (history[0].spec_hash, history[0].first_seen),
        (hash(3), t(40))
    );
    store
        .set_generation_outcome(&web, &hash(3), GenerationOutcome::RolledBack)
        .expect("outcome");
    let history = store.history(&web).expect("history");
    assert_eq!(history[0].outcome, GenerationOutcome::RolledBack);
    assert_eq!(
        history[1].outcome,
        GenerationOutcome::Progressing,
        "only the newest generation of the hash"
    );
    let err = store
        .set_generation_outcome(&web, &hash(1), GenerationOutcome::Failed)
        .expect_err("trimmed");
    assert!(
        matches!(err, StoreError::GenerationNotFound { .. }),
        "{err:?}"
    );
}

#[test]
fn all_history_and_history_changes_let_a_reader_cache_histories() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    let (web, db) = (group("web"), group("db"));
    store
        .record_generation(&web, &hash(1), "c1", t(0))
        .expect("record");
    store
        .record_generation(&web, &hash(2), "c2", t(1))
        .expect("record");
    store
        .record_generation(&db, &hash(3), "c2", t(1))
        .expect("record");
    let all = store.all_history().expect("all history");
    let rows: Vec<(&str, SpecHash)> = all
        .iter()
        .map(|h| (h.group.as_str(), h.spec_hash))
        .collect();
    assert_eq!(
        rows,
        [("db", hash(3)), ("web", hash(2)), ("web", hash(1))],
        "by group, each group's newest first"
    );
    for one in [&web, &db] {
        let from_all: Vec<_> = all.iter().filter(|h| &h.group == one).cloned().collect();
        assert_eq!(from_all, store.history(one).expect("history"));
    }

    assert_eq!(
        store.take_history_changes().into_iter().collect::<Vec<_>>(),
        [db.clone(), web.clone()]
    );
    assert!(store.take_history_changes().is_empty(), "taken once");
    // Seen again (only last_seen moves) and a new outcome both count as changes.
    store
        .record_generation(&web, &hash(2), "c3", t(2))
        .expect("seen again");
    store
        .set_generation_outcome(&db, &hash(3), GenerationOutcome::Succeeded)
        .expect("outcome");
    assert_eq!(
        store.take_history_changes().into_iter().collect::<Vec<_>>(),
        [db.clone(), web.clone()]
    );
    // A failed write changes nothing.
    store
        .set_generation_outcome(&web, &hash(9), GenerationOutcome::Failed)
        .expect_err("no such generation");
    assert!(store.take_history_changes().is_empty());
}

#[test]
fn failed_hashes_block_retries_until_a_new_commit_or_an_explicit_retry() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    let web = group("web");
    assert!(!store.is_retry_blocked(&web, &hash(2), "c2").expect("check"));
    store
        .record_failed_hash(&web, &hash(2), "c2", Some("never healthy"), t(0))
        .expect("record");
    assert!(store.is_retry_blocked(&web, &hash(2), "c2").expect("check"));
    assert!(
        !store
            .is_retry_blocked(&web, &hash(2), "c3")
            .expect("new commit")
    );
    assert!(
        !store
            .is_retry_blocked(&group("db"), &hash(2), "c2")
            .expect("other group")
    );
    let failed = store
        .failed_hash(&web, &hash(2))
        .expect("read")
        .expect("record");
    assert_eq!(
        (failed.reason.as_deref(), failed.failed_at),
        (Some("never healthy"), t(0))
    );
    assert_eq!(store.failed_hashes().expect("list").len(), 1);
    assert!(store.clear_failed_hash(&web, &hash(2)).expect("retry"));
    assert!(
        !store
            .clear_failed_hash(&web, &hash(2))
            .expect("retry twice")
    );
    assert!(!store.is_retry_blocked(&web, &hash(2), "c2").expect("check"));
}

#[test]
fn planner_memory_and_json_values_round_trip() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Memory {
        orphan_sightings: std::collections::BTreeMap<String, u32>,
    }
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    assert_eq!(store.load_planner_memory::<Memory>().expect("load"), None);
    let memory = Memory {
        orphan_sightings: [("i-1".to_string(), 2)].into(),
    };
    store.save_planner_memory(&memory, t(0)).expect("save");
    assert_eq!(
        store.load_planner_memory::<Memory>().expect("load"),
        Some(memory)
    );
    let err = store
        .get_json::<Vec<u8>>(phoenix_store::PLANNER_MEMORY_KEY)
        .expect_err("wrong type");
    assert!(
        matches!(err, StoreError::DeserializeValue { .. }),
        "{err:?}"
    );
    assert!(
        store
            .delete_json(phoenix_store::PLANNER_MEMORY_KEY)
            .expect("delete")
    );
    assert_eq!(store.load_planner_memory::<Memory>().expect("load"), None);
}

#[test]
fn times_before_the_epoch_are_refused() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    let err = store
        .put_json("k", &1, UNIX_EPOCH - Duration::from_secs(1))
        .expect_err("pre-epoch");
    assert!(matches!(err, StoreError::TimeOutOfRange { .. }), "{err:?}");
}

/// One action of the outbox model below.
#[derive(Debug, Clone)]
enum Op {
    Enqueue { receiver: u8 },
    Send { fail: bool },
    Tick,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        (0u8..3).prop_map(|receiver| Op::Enqueue { receiver }),
        any::<bool>().prop_map(|fail| Op::Send { fail }),
        Just(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever mix of enqueues, failed and successful sends and clock ticks happens, a
    /// sender that sends `due_alerts` in order and stops at a receiver's first failure
    /// delivers every receiver's alerts exactly once, in enqueue order.
    #[test]
    fn outbox_delivery_order_per_receiver(ops in proptest::collection::vec(op(), 1..60)) {
        let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
        let mut now = 0u64;
        let mut next_id = 0u32;
        let mut enqueued: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let mut delivered: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let send = |store: &mut Store, now: u64, fail: bool, delivered: &mut std::collections::BTreeMap<String, Vec<String>>| {
            let mut failed_receivers = std::collections::BTreeSet::new();
            for entry in store.due_alerts(t(now), 1000).expect("due") {
                if failed_receivers.contains(&entry.receiver) {
                    continue;
                }
                if fail {
                    store.mark_alert_failed(&entry.delivery_id, "down", t(now + 7)).expect("fail");
                    failed_receivers.insert(entry.receiver.clone());
                } else {
                    store.mark_alert_delivered(&entry.delivery_id, t(now)).expect("deliver");
                    delivered.entry(entry.receiver.clone()).or_default().push(entry.delivery_id.to_string());
                }
            }
        };
        for op in ops {
            match op {
                Op::Enqueue { receiver } => {
                    let id = format!("d{next_id}");
                    next_id += 1;
                    let receiver = format!("r{receiver}");
                    store.enqueue_alert(&alert(&id, &receiver, t(1_000_000)), t(now)).expect("enqueue");
                    enqueued.entry(receiver).or_default().push(id);
                }
                Op::Send { fail } => send(&mut store, now, fail, &mut delivered),
                Op::Tick => now += 5,
            }
        }
        // The receivers come back for good: drain.
        for _ in 0..200 {
            now += 5;
            send(&mut store, now, false, &mut delivered);
        }
        prop_assert_eq!(&delivered, &enqueued);
        for counts in store.outbox_counts().expect("counts").values() {
            prop_assert_eq!(counts.pending, 0);
        }
    }
}
