//! The executor reads each provider's inventory once per `advance`, not once per plan,
//! and keeps that view exact for what it does itself within the pass (the regression
//! behind the quadratic first enforce pass: 10,000 one-replica groups did not finish in
//! 2.5 minutes because every terminate and health gate re-read the whole fleet).

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::executor_support::{G, OWNER, World, bounded};
use phoenix_cloud::{LaunchRequest, Provider};
use phoenix_core::plan::Step;
use phoenix_daemon::executor::launch_token;
use phoenix_store::{NewPlan, NewStep, PlanId, PlanStatus, StepIntent, StepStatus};

/// `n` one-replica groups, named `g00`, `g01`, ...; every third uses `check: none`
/// (its health gates read the inventory too), the others `check: provider`.
fn groups(n: usize, image: &'static str) -> Vec<G> {
    (0..n)
        .map(|i| G {
            name: Box::leak(format!("g{i:02}").into_boxed_str()),
            replicas: 1,
            image,
            check: if i % 3 == 0 { "none" } else { "provider" },
            ..G::default()
        })
        .collect()
}

/// Seed the old generation of every group, then submit the replacement plans.
async fn replacement(n: usize) -> (World, Vec<G>) {
    let mut w = World::new(&[]).await;
    for g in groups(n, "ami-old") {
        w.seed(&g).await;
    }
    let new = groups(n, "ami-new");
    for g in &new {
        w.checked.limit(g);
    }
    let parsed: Vec<_> = new.iter().map(G::parsed).collect();
    w.plan_and_submit(&parsed, "c1").await;
    let running = w.store.unfinished_plans().expect("plans").len();
    assert_eq!(running, n, "one plan per group");
    (w, new)
}

#[tokio::test(start_paused = true)]
async fn one_advance_over_many_plans_reads_the_inventory_once() {
    let (mut w, new) = replacement(12).await;
    w.checked.inventory_calls.store(0, Ordering::SeqCst);
    bounded(w.advance()).await;
    // Each plan (launch 1, wait healthy, terminate the old one) needs the inventory for
    // its terminate floor check and, with `check: none`, for its health gate: the old
    // executor read it 16 times here, once per use.
    assert_eq!(
        w.checked.inventory_calls.load(Ordering::SeqCst),
        1,
        "one inventory read for the whole pass"
    );
    assert!(w.store.unfinished_plans().expect("plans").is_empty());
    for g in &new {
        let members = w.members(g.name).await;
        let hash = g.parsed().hash.to_string();
        assert_eq!(members.len(), 1, "{}", g.name);
        assert_eq!(members[0].spec_hash(), Some(hash.as_str()), "{}", g.name);
    }
    assert_eq!(w.checked.violations(), Vec::<String>::new());
}

/// maxUnavailable 0 and one replica: a terminate may only go ahead if it counts the
/// instance its plan launched moments before as healthy. The first terminate of the
/// pass reads the inventory; every later plan launches after that read, so its
/// terminate passes only if the view learned the launch and the health gate's verdict.
#[tokio::test(start_paused = true)]
async fn a_terminate_counts_instances_launched_after_the_inventory_was_read() {
    let (mut w, _) = replacement(6).await;
    w.checked.inventory_calls.store(0, Ordering::SeqCst);
    let wake = bounded(w.advance()).await;
    assert_eq!(w.checked.inventory_calls.load(Ordering::SeqCst), 1);
    let plans = w.store.recent_plans(None, 100).expect("plans");
    assert_eq!(plans.len(), 6);
    assert!(
        plans.iter().all(|p| p.status == PlanStatus::Succeeded),
        "no terminate held back by a stale view: {plans:?}"
    );
    assert_eq!(wake, Some(Duration::ZERO), "done: re-plan at once");
}

/// Two terminates of one plan in one pass, replicas 2 and maxUnavailable 1 (floor 1):
/// the first may go, the second must wait, because the view no longer counts the
/// instance the first one terminated.
#[tokio::test(start_paused = true)]
async fn a_terminate_does_not_count_instances_terminated_earlier_in_the_pass() {
    let g = G {
        replicas: 2,
        unavailable: 1,
        surge: 0,
        ..G::default()
    };
    let mut w = World::new(&[]).await;
    w.seed(&g).await;
    w.checked.limit(&g);
    let ids: Vec<String> = w
        .members(g.name)
        .await
        .into_iter()
        .map(|i| String::from(i.id))
        .collect();
    assert_eq!(ids.len(), 2);
    let parsed = g.parsed();
    let id = PlanId::new("two-terminates");
    let plan = NewPlan {
        id: id.clone(),
        group: parsed.group.name().clone(),
        kind: phoenix_store::PlanKind::Rollout {
            target_hash: parsed.hash,
            strategy: parsed.group.spec.rollout.strategy,
        },
        commit: "c1".to_string(),
        status: PlanStatus::Running,
        doc: serde_json::json!({
            "format": 1, "provider": "sim", "revision": "c1", "commit": "c1",
            "group": *parsed.group,
        }),
        steps: ids
            .iter()
            .map(|i| NewStep {
                action: phoenix_store::StepAction::Terminate,
                detail: serde_json::json!({
                    "step": Step::Terminate { instance_ids: vec![i.clone()] }
                }),
            })
            .collect(),
    };
    w.store.insert_plan(&plan, w.now).expect("insert plan");
    let wake = bounded(w.advance()).await;
    let steps = w.store.steps(&id).expect("steps");
    assert_eq!(
        steps[0].status,
        StepStatus::Done,
        "the first terminate went"
    );
    assert_eq!(
        steps[1].status,
        StepStatus::Pending,
        "the second is held by the floor"
    );
    assert_eq!(wake, Some(w.exec.options().poll_interval));
    assert_eq!(w.members(g.name).await.len(), 1, "one instance left");
    assert_eq!(w.checked.violations(), Vec::<String>::new());
    assert_eq!(w.checked.inventory_calls.load(Ordering::SeqCst), 1);
}

/// After a crash with many launch steps in intent, `recover` finds their instances in
/// one inventory read instead of one lookup per launch token.
#[tokio::test(start_paused = true)]
async fn recovery_of_many_launch_steps_reads_the_inventory_once() {
    let (mut w, new) = replacement(5).await;
    let plans = w.store.unfinished_plans().expect("plans");
    for plan in &plans {
        let step = &plan.steps[0];
        assert_eq!(step.action, phoenix_store::StepAction::Launch);
        let token = launch_token(plan.plan.id.as_str(), 0, 1);
        let mut detail = step.detail.clone();
        detail["tokens"] = serde_json::json!([token]);
        w.store
            .write_intent(
                &plan.plan.id,
                0,
                &StepIntent {
                    attempt: 1,
                    launch_token: Some(token.clone()),
                    detail: Some(detail),
                },
                w.now,
            )
            .expect("intent");
        let g = new
            .iter()
            .find(|g| g.name == plan.plan.group.as_str())
            .expect("group");
        let parsed = g.parsed();
        bounded(w.checked.launch(&LaunchRequest {
            owner: OWNER.to_string(),
            group: parsed.group.name().clone(),
            template: parsed.group.spec.template.clone(),
            spec_hash: parsed.hash,
            commit: "c1".to_string(),
            plan_id: plan.plan.id.to_string(),
            launch_token: token,
            count: 1,
        }))
        .await
        .expect("launch before the crash");
    }
    // The process dies: a new executor, same store and sim.
    w.exec = World::executor(&w.checked);
    w.checked.inventory_calls.store(0, Ordering::SeqCst);
    w.checked.token_lookups.store(0, Ordering::SeqCst);
    let transitions = bounded(w.exec.recover(&mut w.store, w.now))
        .await
        .expect("recover");
    assert_eq!(w.checked.inventory_calls.load(Ordering::SeqCst), 1);
    assert_eq!(w.checked.token_lookups.load(Ordering::SeqCst), 0);
    assert_eq!(
        transitions
            .iter()
            .filter(|t| t.message().starts_with("recovered after a restart"))
            .count(),
        5
    );
    let parsed: Vec<_> = new.iter().map(G::parsed).collect();
    assert!(w.converge(&parsed, "c1", 50).await);
    for g in &new {
        assert_eq!(w.members(g.name).await.len(), 1, "no double launch");
    }
    assert_eq!(w.checked.violations(), Vec::<String>::new());
}
