//! Executor tests against the sim provider and a real store (issue 6): rolling,
//! blue-green and canary to completion with the rollout invariants checked at every
//! launch and terminate call; rollback on an image that never becomes healthy; failure
//! without rollback; launch failures with retries; provider errors mid-plan; approval,
//! cancel and supersede.

use std::time::Duration;

use crate::executor_support::{G, World, bounded};
use phoenix_cloud::Provider;
use phoenix_core::plan::GroupStatus;
use phoenix_store::{PlanId, PlanStatus};

async fn assert_converged(w: &World, g: &G) {
    let target = g.parsed().hash.to_string();
    let members = w.members(g.name).await;
    assert_eq!(
        members.len() as u32,
        g.replicas,
        "replica count of {}",
        g.name
    );
    for m in &members {
        assert_eq!(
            m.spec_hash(),
            Some(target.as_str()),
            "{} carries the new hash",
            m.id
        );
        assert_eq!(m.image, g.image);
    }
    assert_eq!(
        w.checked.violations(),
        Vec::<String>::new(),
        "rollout invariants"
    );
    // No double launch: no token carries more instances than its step asked for.
    for plan in w.store.recent_plans(None, 100).expect("plans") {
        for step in w.store.steps(&plan.id).expect("steps") {
            if step.action != phoenix_store::StepAction::Launch {
                continue;
            }
            let count = step.detail["step"]["count"].as_u64().expect("launch count") as u32;
            let launched: u32 = w
                .checked
                .launches
                .lock()
                .expect("lock")
                .iter()
                .filter(|(t, _)| t.starts_with(&format!("{}.{}.", plan.id, step.index)))
                .map(|(_, n)| *n)
                .sum();
            assert!(
                launched <= count,
                "step {} of {} launched {launched} > {count}",
                step.index,
                plan.id
            );
        }
    }
}

async fn replace_to_completion(old: G, new: G) -> World {
    let mut w = World::new(&[]).await;
    w.seed(&old).await;
    w.checked.limit(&new);
    let groups = [new.parsed()];
    assert!(w.converge(&groups, "c1", 200).await, "converges");
    assert_converged(&w, &new).await;
    let plans = w.store.recent_plans(None, 10).expect("plans");
    assert!(!plans.is_empty(), "a plan ran");
    assert!(
        plans.iter().all(|p| p.status == PlanStatus::Succeeded),
        "{plans:?}"
    );
    w
}

#[tokio::test(start_paused = true)]
async fn rolling_replaces_every_instance_within_surge_and_floor() {
    let old = G {
        replicas: 4,
        ..G::default()
    };
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    let w = replace_to_completion(old, new).await;
    let kinds = w.kinds();
    assert!(
        kinds.contains(&"plan_started") && kinds.contains(&"plan_succeeded"),
        "{kinds:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_with_unavailability_terminates_first() {
    let old = G {
        replicas: 4,
        surge: 0,
        unavailable: 1,
        ..G::default()
    };
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    replace_to_completion(old, new).await;
}

#[tokio::test(start_paused = true)]
async fn blue_green_launches_a_full_generation_and_bakes() {
    let old = G {
        strategy: "blue-green",
        bake: "30s",
        ..G::default()
    };
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    let w = replace_to_completion(old, new).await;
    assert!(
        w.transitions
            .iter()
            .any(|t| t.message().starts_with("baked 30s"))
    );
}

#[tokio::test(start_paused = true)]
async fn canary_launches_one_then_rolls() {
    let old = G {
        strategy: "canary",
        replicas: 4,
        bake: "10s",
        ..G::default()
    };
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    let w = replace_to_completion(old, new).await;
    let first_launch = w
        .transitions
        .iter()
        .find(|t| t.kind() == "step_started" && t.message().starts_with("launch"))
        .expect("a launch");
    assert!(
        first_launch.message().starts_with("launch 1 "),
        "{}",
        first_launch.message()
    );
}

#[tokio::test(start_paused = true)]
async fn scale_up_from_nothing_launches_and_waits() {
    let g = G {
        replicas: 3,
        image: "ami-new",
        ..G::default()
    };
    let mut w = World::new(&[]).await;
    w.checked.limit(&g);
    assert!(w.converge(&[g.parsed()], "c1", 50).await);
    assert_converged(&w, &g).await;
}

#[tokio::test(start_paused = true)]
async fn unhealthy_image_rolls_back_keeps_old_and_blocks_the_hash() {
    let old = G::default();
    let new = G {
        image: "ami-broken",
        grace: "10s",
        deadline: "1m",
        ..old.clone()
    };
    let mut w = World::new(&["ami-broken"]).await;
    w.seed(&old).await;
    w.checked.limit(&new);
    let groups = [new.parsed()];
    assert!(w.converge(&groups, "c1", 100).await, "settles");
    let plans = w.store.recent_plans(None, 10).expect("plans");
    assert_eq!(plans.len(), 1, "{plans:?}");
    assert_eq!(plans[0].status, PlanStatus::RolledBack);
    let members = w.members("web").await;
    assert_eq!(members.len(), 3, "old instances kept, new ones terminated");
    let old_hash = old.parsed().hash.to_string();
    assert!(
        members
            .iter()
            .all(|m| m.spec_hash() == Some(old_hash.as_str()))
    );
    assert!(w.kinds().contains(&"rolled_back"), "{:?}", w.kinds());
    let failed = w.failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].hash, new.parsed().hash);
    // The planner does not retry the failed hash at this commit...
    let doc = w.plan_and_submit(&groups, "c1").await;
    assert_eq!(doc.groups[0].status, GroupStatus::Blocked);
    // ...but does at a new commit.
    let doc = w.plan_and_submit(&groups, "c2").await;
    assert_eq!(doc.groups[0].status, GroupStatus::Planned);
    assert!(
        w.checked.violations().is_empty(),
        "{:?}",
        w.checked.violations()
    );
}

#[tokio::test(start_paused = true)]
async fn without_auto_rollback_a_failed_plan_leaves_instances() {
    let old = G {
        auto_rollback: false,
        ..G::default()
    };
    let new = G {
        image: "ami-broken",
        grace: "5s",
        ..old.clone()
    };
    let mut w = World::new(&["ami-broken"]).await;
    w.seed(&old).await;
    w.checked.limit(&new);
    assert!(w.converge(&[new.parsed()], "c1", 100).await, "settles");
    let plans = w.store.recent_plans(None, 10).expect("plans");
    assert_eq!(plans[0].status, PlanStatus::Failed);
    let members = w.members("web").await;
    assert_eq!(members.len(), 4, "3 old + the 1 new left as it is");
    assert!(members.iter().any(|m| m.image == "ami-broken"));
    assert!(w.kinds().contains(&"plan_failed"));
}

#[tokio::test(start_paused = true)]
async fn launch_failures_are_retried_with_new_tokens() {
    let old = G::default();
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    let mut w = World::new(&[]).await;
    w.seed(&old).await;
    w.checked.limit(&new);
    w.sim.set_launch_failure_rate(1.0).expect("rate");
    let groups = [new.parsed()];
    w.plan_and_submit(&groups, "c1").await;
    let wake = w.advance().await.expect("waits for a retry");
    assert_eq!(
        wake,
        Duration::from_secs(1),
        "first backoff is the base delay"
    );
    w.sim.set_launch_failure_rate(0.0).expect("rate");
    w.now += wake;
    assert!(w.converge(&groups, "c1", 100).await);
    assert_converged(&w, &new).await;
    let tokens: Vec<String> = w
        .checked
        .launches
        .lock()
        .expect("lock")
        .keys()
        .cloned()
        .collect();
    assert!(
        tokens.iter().any(|t| t.ends_with(".0.2")),
        "second attempt token used: {tokens:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn launch_failures_past_the_attempts_fail_the_plan() {
    let old = G::default();
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    let mut w = World::new(&[]).await;
    w.seed(&old).await;
    w.sim.set_launch_failure_rate(1.0).expect("rate");
    assert!(w.converge(&[new.parsed()], "c1", 100).await, "settles");
    let plans = w.store.recent_plans(None, 10).expect("plans");
    assert_eq!(plans.len(), 1);
    assert!(matches!(
        plans[0].status,
        PlanStatus::RolledBack | PlanStatus::Failed
    ));
    assert_eq!(w.members("web").await.len(), 3, "old generation untouched");
    let steps = w.store.steps(&plans[0].id).expect("steps");
    assert_eq!(steps[0].attempt, 4, "four attempts: {steps:?}");
}

#[tokio::test(start_paused = true)]
async fn provider_errors_mid_plan_are_retried() {
    let old = G::default();
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    let mut w = World::new(&[]).await;
    w.seed(&old).await;
    w.checked.limit(&new);
    w.checked
        .fail_terminates
        .store(2, std::sync::atomic::Ordering::SeqCst);
    w.checked
        .fail_health
        .store(2, std::sync::atomic::Ordering::SeqCst);
    assert!(w.converge(&[new.parsed()], "c1", 200).await);
    assert_converged(&w, &new).await;
    assert_eq!(
        w.checked
            .fail_terminates
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn manual_approval_waits_then_runs() {
    let old = G {
        approval: "manual",
        ..G::default()
    };
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    let mut w = World::new(&[]).await;
    w.seed(&old).await;
    w.checked.limit(&new);
    let groups = [new.parsed()];
    let doc = w.plan_and_submit(&groups, "c1").await;
    let id = PlanId::new(doc.groups[0].plan_id.clone().expect("plan id"));
    assert_eq!(w.advance().await, None, "nothing runs before approval");
    assert_eq!(w.members("web").await.len(), 3);
    assert!(w.kinds().contains(&"awaiting_approval"));
    // A later pass with the same target does not add a plan.
    w.plan_and_submit(&groups, "c1").await;
    assert_eq!(w.store.recent_plans(None, 10).expect("plans").len(), 1);
    let status = w.exec.approve(&mut w.store, &id, w.now).expect("approve");
    assert_eq!(status, PlanStatus::Running);
    assert!(
        w.exec.approve(&mut w.store, &id, w.now).is_err(),
        "approving twice is refused"
    );
    assert!(w.converge(&groups, "c1", 100).await);
    assert_converged(&w, &new).await;
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_a_plan_and_leaves_instances() {
    let old = G::default();
    let new = G {
        image: "ami-slow",
        grace: "1h",
        deadline: "2h",
        ..old.clone()
    };
    // An image that is never healthy keeps the wait step in flight.
    let mut w = World::new(&["ami-slow"]).await;
    w.seed(&old).await;
    let groups = [new.parsed()];
    let doc = w.plan_and_submit(&groups, "c1").await;
    let id = PlanId::new(doc.groups[0].plan_id.clone().expect("plan id"));
    assert!(w.advance().await.is_some(), "waits for health");
    let status = w.exec.cancel(&mut w.store, &id, w.now).expect("cancel");
    assert_eq!(status, PlanStatus::Cancelled);
    assert_eq!(w.advance().await, None);
    assert_eq!(
        w.members("web").await.len(),
        4,
        "nothing terminated by cancel"
    );
    assert!(
        w.exec.cancel(&mut w.store, &id, w.now).is_err(),
        "cancel twice is refused"
    );
    // The cancelled plan, proposed again unchanged, does not run again.
    let t = w
        .exec
        .submit(&mut w.store, &doc, &groups, "c1", w.now)
        .expect("submit");
    assert!(t.is_empty(), "{t:?}");
    let statuses: Vec<PlanStatus> = w
        .store
        .recent_plans(None, 10)
        .expect("plans")
        .iter()
        .map(|p| p.status)
        .collect();
    assert_eq!(statuses, vec![PlanStatus::Cancelled]);
}

#[tokio::test(start_paused = true)]
async fn a_new_target_supersedes_after_the_in_flight_step() {
    let old = G::default();
    let mid = G {
        image: "ami-slow",
        grace: "1h",
        deadline: "2h",
        ..old.clone()
    };
    let last = G {
        image: "ami-new",
        ..old.clone()
    };
    let mut w = World::new(&["ami-slow"]).await;
    w.seed(&old).await;
    w.checked.limit(&last);
    let doc = w.plan_and_submit(&[mid.parsed()], "c1").await;
    let first = PlanId::new(doc.groups[0].plan_id.clone().expect("plan id"));
    assert!(w.advance().await.is_some(), "the wait step is in flight");
    // A new commit arrives: no thrashing, the in-flight wait keeps the plan.
    w.plan_and_submit(&[last.parsed()], "c2").await;
    let active = w
        .store
        .active_plan(&last.parsed().group.name().clone())
        .expect("active");
    assert_eq!(
        active.expect("active plan").plan.id,
        first,
        "still the first plan"
    );
    // The slow instance becomes healthy: the wait finishes, then the plan is superseded.
    w.sim.set_unhealthy_images(Vec::new());
    w.now += Duration::from_secs(5);
    w.advance().await;
    let status = w
        .store
        .plan(&first)
        .expect("plan")
        .expect("exists")
        .plan
        .status;
    assert_eq!(status, PlanStatus::Superseded);
    assert!(w.kinds().contains(&"superseded"));
    assert!(w.converge(&[last.parsed()], "c2", 100).await);
    assert_converged(&w, &last).await;
}

#[tokio::test(start_paused = true)]
async fn a_plan_awaiting_approval_is_superseded_at_once() {
    let old = G {
        approval: "manual",
        ..G::default()
    };
    let mid = G {
        image: "ami-mid",
        ..old.clone()
    };
    let last = G {
        image: "ami-new",
        ..old.clone()
    };
    let mut w = World::new(&[]).await;
    w.seed(&old).await;
    let doc = w.plan_and_submit(&[mid.parsed()], "c1").await;
    let first = PlanId::new(doc.groups[0].plan_id.clone().expect("plan id"));
    w.plan_and_submit(&[last.parsed()], "c2").await;
    let status = w
        .store
        .plan(&first)
        .expect("plan")
        .expect("exists")
        .plan
        .status;
    assert_eq!(status, PlanStatus::Superseded);
    let active = bounded(async { w.store.unfinished_plans().expect("plans") }).await;
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].plan.status, PlanStatus::AwaitingApproval);
    assert_eq!(active[0].plan.kind.target_hash(), Some(last.parsed().hash));
}

#[tokio::test(start_paused = true)]
async fn the_same_proposal_after_a_success_runs_again_under_a_new_id() {
    // Replicas 2 with one instance: the plan is [launch 1, wait]. After it succeeds an
    // instance vanishes at the same revision: the planner proposes the very same plan
    // (same id); it must run again, not be skipped as "already seen".
    let g = G {
        replicas: 2,
        image: "ami-new",
        ..G::default()
    };
    let mut w = World::new(&[]).await;
    w.seed(&G {
        replicas: 1,
        ..g.clone()
    })
    .await;
    w.checked.limit(&g);
    let groups = [g.parsed()];
    assert!(w.converge(&groups, "c1", 50).await);
    let first = w.store.recent_plans(None, 10).expect("plans");
    assert_eq!(first.len(), 1);
    let gone = w.members("web").await[0].id.to_string();
    bounded(w.sim.terminate(&[gone]))
        .await
        .expect("out-of-band terminate");
    assert!(w.converge(&groups, "c1", 50).await);
    assert_converged(&w, &g).await;
    let plans = w.store.recent_plans(None, 10).expect("plans");
    assert_eq!(plans.len(), 2, "{plans:?}");
    assert_eq!(
        plans[0].id.as_str(),
        format!("{}.r1", first[0].id),
        "{plans:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_plan_does_not_stop_the_others() {
    let old = G::default();
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    let mut w = World::new(&[]).await;
    w.seed(&old).await;
    let other = G {
        name: "other",
        ..G::default()
    }
    .parsed();
    w.store
        .insert_plan(
            &phoenix_store::NewPlan {
                id: PlanId::new("plan-from-the-future"),
                group: other.group.name().clone(),
                kind: phoenix_store::PlanKind::Rollout {
                    target_hash: other.hash,
                    strategy: phoenix_core::spec::Strategy::Rolling,
                },
                commit: "c9".to_string(),
                status: PlanStatus::Running,
                doc: serde_json::json!({"format": 99}),
                steps: Vec::new(),
            },
            w.now,
        )
        .expect("insert");
    let groups = [new.parsed()];
    w.plan_and_submit(&groups, "c1").await;
    w.advance().await;
    let web = w
        .store
        .recent_plans(Some(new.parsed().group.name()), 1)
        .expect("plans");
    assert_eq!(web[0].status, PlanStatus::Succeeded, "{web:?}");
}
