//! Orphan prunes and held revisions in the executor: a group deleted from the desired
//! state has its instances terminated (with `reconcile.prune: true`, after two complete
//! observations), never with prune off, never on an incomplete inventory; a revision that
//! removes most groups is held: its plans wait for approval, run once approved, stop when
//! cancelled, and a prune whose group came back never terminates.
//!
//! Regression tests for the review finding "orphan prunes and held plans are never
//! inserted by `Executor::submit`".

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::executor_support::{G, PROVIDER, World, bounded};
use phoenix_core::plan::GroupStatus;
use phoenix_core::spec::ParsedGroup;
use phoenix_daemon::executor::Transition;
use phoenix_store::{PlanId, PlanStatus, PlanWithSteps};

fn group(name: &'static str, replicas: u32) -> G {
    G {
        name,
        replicas,
        ..G::default()
    }
}

/// A world running `web`, `db` and `api`, each already at its desired generation.
async fn three_groups() -> (World, Vec<G>) {
    let mut w = World::new(&[]).await;
    let gs = vec![group("web", 2), group("db", 2), group("api", 2)];
    for g in &gs {
        w.seed(g).await;
        w.checked.limit(g);
    }
    (w, gs)
}

/// The desired groups among `gs`. The provider wrapper keeps checking the healthy floor
/// of these only: no floor applies to a group that is no longer desired.
fn desired(w: &World, gs: &[G], keep: &[&str]) -> Vec<ParsedGroup> {
    w.checked
        .limits
        .lock()
        .expect("test lock")
        .retain(|name, _| keep.contains(&name.as_str()));
    for g in gs.iter().filter(|g| keep.contains(&g.name)) {
        w.checked.limit(g);
    }
    gs.iter()
        .filter(|g| keep.contains(&g.name))
        .map(G::parsed)
        .collect()
}

/// One pass: plan, submit, advance at the current time, then one second later.
async fn pass(w: &mut World, groups: &[ParsedGroup], commit: &str) {
    w.plan_and_submit(groups, commit).await;
    w.advance().await;
    w.now += Duration::from_secs(1);
}

fn plans_of(w: &World, group: &str) -> Vec<PlanWithSteps> {
    let mut out = Vec::new();
    for record in w
        .store
        .recent_plans(None, 1000)
        .expect("recent plans")
        .into_iter()
        .filter(|p| p.group.as_str() == group)
    {
        out.push(w.store.plan(&record.id).expect("read").expect("exists"));
    }
    out
}

fn active_of(w: &World, group: &str) -> PlanId {
    w.store
        .unfinished_plans()
        .expect("unfinished")
        .into_iter()
        .find(|p| p.plan.group.as_str() == group)
        .map(|p| p.plan.id)
        .unwrap_or_else(|| panic!("no active plan for {group}"))
}

#[tokio::test]
async fn a_removed_group_is_pruned_after_two_passes_with_prune_on() {
    let (mut w, gs) = three_groups().await;
    w.config.prune = true;
    let desired = desired(&w, &gs, &["web", "db"]);
    // First sighting of api's instances as orphans: nothing planned, nothing terminated.
    pass(&mut w, &desired, "c1").await;
    assert_eq!(w.members("api").await.len(), 2);
    assert!(plans_of(&w, "api").is_empty());
    // Second consecutive complete sighting: a prune plan runs.
    pass(&mut w, &desired, "c1").await;
    assert!(
        w.members("api").await.is_empty(),
        "api's instances terminated"
    );
    assert_eq!(w.members("web").await.len(), 2);
    assert_eq!(w.members("db").await.len(), 2);
    let plans = plans_of(&w, "api");
    assert_eq!(plans.len(), 1);
    let prune = &plans[0];
    assert_eq!(prune.plan.status, PlanStatus::Succeeded);
    assert_eq!(
        prune.plan.kind,
        phoenix_store::PlanKind::Prune,
        "a prune has no target hash and no strategy"
    );
    assert_eq!(prune.plan.doc["kind"], "prune");
    assert_eq!(prune.plan.doc["provider"], PROVIDER);
    assert_eq!(prune.steps.len(), 1);
    assert_eq!(prune.steps[0].action, phoenix_store::StepAction::Terminate);
    let kinds: Vec<&str> = w
        .transitions
        .iter()
        .filter(|t| t.plan().group.as_str() == "api")
        .map(Transition::kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "plan_started",
            "step_started",
            "step_finished",
            "plan_succeeded"
        ]
    );
    // Converged: the next passes plan nothing.
    assert!(w.converge(&desired, "c1", 5).await);
    assert_eq!(plans_of(&w, "api").len(), 1);
    assert!(
        w.checked.violations().is_empty(),
        "{:?}",
        w.checked.violations()
    );
}

#[tokio::test]
async fn prune_off_never_terminates_a_removed_group() {
    let (mut w, gs) = three_groups().await;
    assert!(!w.config.prune);
    let desired = desired(&w, &gs, &["web", "db"]);
    for _ in 0..5 {
        pass(&mut w, &desired, "c1").await;
    }
    assert_eq!(w.members("api").await.len(), 2);
    assert!(plans_of(&w, "api").is_empty());
    assert_eq!(w.checked.terminate_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_incomplete_inventory_never_prunes() {
    let (mut w, gs) = three_groups().await;
    w.config.prune = true;
    let desired = desired(&w, &gs, &["web", "db"]);
    pass(&mut w, &desired, "c1").await;
    // The planner saw two complete inventories, but the executor's read is incomplete.
    w.checked.incomplete_inventory.store(true, Ordering::SeqCst);
    let doc = w.plan_and_submit(&desired, "c1").await;
    assert!(
        doc.groups
            .iter()
            .any(|g| g.name.as_str() == "api" && g.status == GroupStatus::Planned)
    );
    for _ in 0..5 {
        let wake = w.advance().await;
        assert!(wake.is_some(), "the prune waits for a complete inventory");
        w.now += wake.unwrap_or_default();
    }
    assert_eq!(w.members("api").await.len(), 2, "nothing pruned");
    assert_eq!(w.checked.terminate_calls.load(Ordering::SeqCst), 0);
    let id = active_of(&w, "api");
    assert_eq!(
        w.store
            .plan(&id)
            .expect("read")
            .expect("exists")
            .plan
            .status,
        PlanStatus::Running
    );
    // The inventory recovers: the prune goes ahead.
    w.checked
        .incomplete_inventory
        .store(false, Ordering::SeqCst);
    w.advance().await;
    w.advance().await;
    assert!(w.members("api").await.is_empty());
}

/// `web` alone stays desired: `db` and `api` removed is 2 of 3 groups, above the default
/// `max_prune_fraction` of 50%: the revision is held.
#[tokio::test]
async fn a_held_mass_removal_waits_for_approval_and_runs_or_stops_per_plan() {
    let (mut w, gs) = three_groups().await;
    w.config.prune = true;
    let desired = desired(&w, &gs, &["web"]);
    pass(&mut w, &desired, "c1").await;
    let doc = w.plan_and_submit(&desired, "c1").await;
    assert!(doc.hold.is_some(), "the revision is held");
    for _ in 0..3 {
        w.advance().await;
        w.now += Duration::from_secs(5);
    }
    assert_eq!(
        w.members("api").await.len(),
        2,
        "nothing runs before approval"
    );
    assert_eq!(w.members("db").await.len(), 2);
    let held: Vec<&Transition> = w
        .transitions
        .iter()
        .filter(|t| matches!(t, Transition::AwaitingApproval { .. }))
        .collect();
    assert_eq!(held.len(), 2);
    assert!(
        held.iter().all(|t| t.message().contains("mass removal")),
        "{held:?}"
    );
    // Re-proposed by the next passes: not duplicated.
    pass(&mut w, &desired, "c1").await;
    pass(&mut w, &desired, "c1").await;
    assert_eq!(plans_of(&w, "api").len(), 1);
    assert_eq!(plans_of(&w, "db").len(), 1);
    let api = active_of(&w, "api");
    let db = active_of(&w, "db");
    for id in [&api, &db] {
        assert_eq!(
            w.store.plan(id).expect("read").expect("exists").plan.status,
            PlanStatus::AwaitingApproval
        );
    }
    // Approve api's prune: it runs. Cancel db's: it stops, and is not proposed again.
    w.exec
        .approve(&mut w.store, &api, w.now)
        .expect("approve api");
    w.exec.cancel(&mut w.store, &db, w.now).expect("cancel db");
    w.advance().await;
    w.advance().await;
    assert!(w.members("api").await.is_empty(), "approved prune ran");
    assert_eq!(
        w.members("db").await.len(),
        2,
        "cancelled prune did nothing"
    );
    for _ in 0..3 {
        pass(&mut w, &desired, "c1").await;
    }
    assert_eq!(w.members("db").await.len(), 2);
    let db_plans = plans_of(&w, "db");
    assert_eq!(db_plans.len(), 1, "the cancelled plan is not re-inserted");
    assert_eq!(db_plans[0].plan.status, PlanStatus::Cancelled);
    assert_eq!(
        w.store
            .plan(&api)
            .expect("read")
            .expect("exists")
            .plan
            .status,
        PlanStatus::Succeeded
    );
}

#[tokio::test]
async fn an_approved_prune_for_a_group_that_came_back_does_not_terminate() {
    let (mut w, gs) = three_groups().await;
    w.config.prune = true;
    let removed = desired(&w, &gs, &["web"]);
    pass(&mut w, &removed, "c1").await;
    w.plan_and_submit(&removed, "c1").await;
    w.advance().await;
    let api = active_of(&w, "api");
    let db = active_of(&w, "db");
    // An operator approves api's prune, but the next commit brings every group back
    // before the executor ran it.
    w.exec
        .approve(&mut w.store, &api, w.now)
        .expect("approve api");
    let all = desired(&w, &gs, &["web", "db", "api"]);
    let doc = w.plan_and_submit(&all, "c2").await;
    assert!(doc.hold.is_none());
    w.advance().await;
    w.now += Duration::from_secs(5);
    w.advance().await;
    assert_eq!(w.members("api").await.len(), 2, "nothing terminated");
    assert_eq!(w.members("db").await.len(), 2);
    assert_eq!(w.checked.terminate_calls.load(Ordering::SeqCst), 0);
    for id in [&api, &db] {
        let plan = w.store.plan(id).expect("read").expect("exists");
        assert_eq!(plan.plan.status, PlanStatus::Superseded, "{id}");
    }
    let withdrawn: Vec<&Transition> = w
        .transitions
        .iter()
        .filter(|t| matches!(t, Transition::Superseded { .. }))
        .collect();
    assert_eq!(withdrawn.len(), 2);
    assert!(
        withdrawn
            .iter()
            .all(|t| t.message().contains("desired again")),
        "{withdrawn:?}"
    );
    assert!(bounded(async { w.converge(&all, "c2", 5).await }).await);
}

#[tokio::test]
async fn a_held_rollout_gives_way_when_the_hold_lifts() {
    // web changes image in the same commit that removes db and api: its rollout is held
    // too. When the groups come back (a new commit), the held rollout is replaced by the
    // same rollout without a hold, which runs.
    let (mut w, mut gs) = three_groups().await;
    w.config.prune = true;
    gs[0].image = "ami-new";
    let removed = desired(&w, &gs, &["web"]);
    pass(&mut w, &removed, "c1").await;
    pass(&mut w, &removed, "c1").await;
    let held = active_of(&w, "web");
    assert_eq!(
        w.store
            .plan(&held)
            .expect("read")
            .expect("exists")
            .plan
            .status,
        PlanStatus::AwaitingApproval
    );
    assert!(
        w.members("web").await.iter().all(|i| i.image == "ami-old"),
        "held rollout did not run"
    );
    let all = desired(&w, &gs, &["web", "db", "api"]);
    assert!(
        w.converge(&all, "c2", 40).await,
        "converges once the hold lifted"
    );
    assert_eq!(
        w.store
            .plan(&held)
            .expect("read")
            .expect("exists")
            .plan
            .status,
        PlanStatus::Superseded
    );
    let web = w.members("web").await;
    assert_eq!(web.len(), 2);
    assert!(web.iter().all(|i| i.image == "ami-new"));
    assert_eq!(w.members("api").await.len(), 2);
    assert_eq!(w.members("db").await.len(), 2);
}
