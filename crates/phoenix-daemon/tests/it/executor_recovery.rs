//! Crash recovery of the executor (issue 6, item 3): a step whose intent was written
//! before the process died is reconciled with the provider by launch token, so a new
//! executor neither launches twice nor leaves an orphan.

use crate::executor_support::{G, OWNER, World, bounded};
use phoenix_cloud::{LaunchRequest, Provider};
use phoenix_daemon::executor::launch_token;
use phoenix_store::{PlanId, PlanStatus, StepIntent, StepStatus};

/// Submit a replacement and write the intent of its first (launch) step by hand, as the
/// executor does; `launched` says whether the launch happened before the "crash".
async fn crash_after_launch_intent(launched: bool) -> (World, G, PlanId, String) {
    let old = G::default();
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
    let steps = w.store.steps(&id).expect("steps");
    assert_eq!(steps[0].action, phoenix_store::StepAction::Launch);
    let count = steps[0].detail["step"]["count"].as_u64().expect("count") as u32;
    let token = launch_token(id.as_str(), 0, 1);
    let mut detail = steps[0].detail.clone();
    detail["tokens"] = serde_json::json!([token]);
    w.store
        .write_intent(
            &id,
            0,
            &StepIntent {
                attempt: 1,
                launch_token: Some(token.clone()),
                detail: Some(detail),
            },
            w.now,
        )
        .expect("intent");
    if launched {
        let parsed = new.parsed();
        let request = LaunchRequest {
            owner: OWNER.to_string(),
            group: parsed.group.name().clone(),
            template: parsed.group.spec.template.clone(),
            spec_hash: parsed.hash,
            commit: "c1".to_string(),
            plan_id: id.to_string(),
            launch_token: token.clone(),
            count,
        };
        bounded(w.checked.launch(&request))
            .await
            .expect("launch before the crash");
    }
    (w, new, id, token)
}

async fn recover_and_converge(mut w: World, new: &G, id: &PlanId, token: &str) -> World {
    // The process dies: a new executor, same store and sim.
    w.exec = World::executor(&w.checked);
    let t = bounded(w.exec.recover(&mut w.store, w.now))
        .await
        .expect("recover");
    w.transitions.extend(t);
    assert!(
        w.converge(&[new.parsed()], "c1", 100).await,
        "converges after recovery"
    );
    let plan = w.store.plan(id).expect("plan").expect("exists");
    assert_eq!(plan.plan.status, PlanStatus::Succeeded);
    let with_token = w
        .members(new.name)
        .await
        .into_iter()
        .filter(|i| i.tag("phoenix:launch-token") == Some(token))
        .count();
    assert!(
        with_token <= 1,
        "the crashed step launched at most its count ({with_token})"
    );
    let members = w.members(new.name).await;
    assert_eq!(members.len() as u32, new.replicas);
    let hash = new.parsed().hash.to_string();
    assert!(members.iter().all(|m| m.spec_hash() == Some(hash.as_str())));
    assert!(
        w.checked.violations().is_empty(),
        "{:?}",
        w.checked.violations()
    );
    w
}

#[tokio::test(start_paused = true)]
async fn launched_before_the_crash_is_found_by_token_not_relaunched() {
    let (w, new, id, token) = crash_after_launch_intent(true).await;
    let w = recover_and_converge(w, &new, &id, &token).await;
    assert!(
        w.transitions
            .iter()
            .any(|t| t.message().starts_with("recovered after a restart")),
        "{:?}",
        w.transitions
    );
    // The crashed step's token was used for exactly one launch call (before the crash).
    let steps = w.store.steps(&id).expect("steps");
    assert_eq!(steps[0].status, StepStatus::Done);
    assert_eq!(steps[0].attempt, 1);
}

#[tokio::test(start_paused = true)]
async fn intent_without_launch_is_launched_once_with_the_same_token() {
    let (w, new, id, token) = crash_after_launch_intent(false).await;
    let w = recover_and_converge(w, &new, &id, &token).await;
    let steps = w.store.steps(&id).expect("steps");
    assert_eq!(steps[0].launch_token.as_deref(), Some(token.as_str()));
    assert_eq!(steps[0].attempt, 1, "same attempt, same token");
}

#[tokio::test(start_paused = true)]
async fn a_wait_step_in_flight_resumes_after_restart() {
    let old = G::default();
    let new = G {
        image: "ami-new",
        grace: "1h",
        deadline: "2h",
        ..old.clone()
    };
    let mut w = World::new(&["ami-new"]).await;
    w.seed(&old).await;
    w.checked.limit(&new);
    let groups = [new.parsed()];
    w.plan_and_submit(&groups, "c1").await;
    assert!(
        w.advance().await.is_some(),
        "waits: the new image is not healthy yet"
    );
    w.exec = World::executor(&w.checked);
    bounded(w.exec.recover(&mut w.store, w.now))
        .await
        .expect("recover");
    w.sim.set_unhealthy_images(Vec::new());
    assert!(w.converge(&groups, "c1", 100).await);
    assert_eq!(w.members("web").await.len(), 3);
    assert!(
        w.checked.violations().is_empty(),
        "{:?}",
        w.checked.violations()
    );
}
