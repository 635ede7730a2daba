//! Issue 17, defect 6 (design section 16): pruning keeps the database bounded without
//! losing what must stay: the revision in force, the newest revision, and the fact that
//! a pruned plan's id was used (its launch tokens may still tag instances).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phoenix_core::spec::Strategy;
use phoenix_core::{GroupName, SpecHash};
use phoenix_store::{
    NewPlan, PlanId, PlanKind, PlanStatus, RevisionVerdict, SeenRevision, Store, StoreOptions,
};
use serde_json::json;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn plan(id: &str, status: PlanStatus) -> NewPlan {
    NewPlan {
        id: PlanId::new(id),
        group: GroupName::new("web").expect("a valid name"),
        kind: PlanKind::Rollout {
            target_hash: format!("v1:sha256:{}", "2".repeat(64))
                .parse::<SpecHash>()
                .expect("a hash"),
            strategy: Strategy::Rolling,
        },
        commit: "c2".into(),
        status,
        doc: json!({}),
        steps: Vec::new(),
    }
}

/// Issue 17, defect 6: a pruned plan's id stays used, so it is never issued again.
#[test]
fn a_pruned_plan_id_is_never_reused() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    store
        .insert_plan(&plan("done", PlanStatus::Running), t(0))
        .expect("insert");
    store
        .set_plan_status(&PlanId::new("done"), PlanStatus::Succeeded, t(1))
        .expect("finish");
    store
        .insert_plan(&plan("live", PlanStatus::Running), t(0))
        .expect("insert");
    assert_eq!(store.prune_finished_plans(t(100)).expect("prune"), 1);
    assert_eq!(store.plan(&PlanId::new("done")).expect("read"), None);
    assert!(
        store.plan_id_used(&PlanId::new("done")).expect("read"),
        "a pruned id stays used"
    );
    assert!(store.plan_id_used(&PlanId::new("live")).expect("read"));
    assert!(!store.plan_id_used(&PlanId::new("never")).expect("read"));
}

/// Issue 17, defect 6: old revisions are pruned, except the one in force (the newest
/// accepted) and the newest of all.
#[test]
fn old_revisions_are_pruned_but_the_one_in_force_stays() {
    let mut store = Store::open_in_memory(StoreOptions::default()).expect("open");
    let seen = |id: &str, verdict: RevisionVerdict| SeenRevision {
        id: id.into(),
        verdict,
        author: None,
        message: None,
    };
    let rejected = || {
        RevisionVerdict::Rejected(phoenix_store::RevisionError {
            path: "a.yaml".into(),
            line: None,
            column: None,
            message: "bad".into(),
        })
    };
    store
        .record_revision(&seen("old", RevisionVerdict::Accepted), t(0))
        .expect("record");
    store
        .record_revision(&seen("in-force", RevisionVerdict::Accepted), t(10))
        .expect("record");
    store
        .record_revision(&seen("bad-1", rejected()), t(20))
        .expect("record");
    store
        .record_revision(&seen("bad-2", rejected()), t(30))
        .expect("record");
    assert_eq!(store.prune_revisions(t(1000)).expect("prune"), 2);
    let left: Vec<String> = store
        .recent_revisions(10)
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, ["bad-2", "in-force"]);
    assert_eq!(
        store
            .last_accepted_revision()
            .expect("read")
            .map(|r| r.id)
            .as_deref(),
        Some("in-force")
    );
}
