//! Traffic-aware replacement on the sim (issue 16, design section 11): groups behind a
//! target group with a registration delay and a drain, replaced by rolling, blue-green
//! and canary plans, a target that never gets healthy rolled back, an out-of-band
//! deregistration registered again, and a crash in the middle of a register step. The
//! provider wrapper (`executor_support::Checked`) checks at every terminate that the
//! instance is neither registered nor draining, and at every deregistration that the
//! in-service floor holds; the sim records every terminate of an attached instance too.
//!
//! The sim's target delays run on the wall clock while the executor runs on a virtual
//! one, so these loops also sleep a little real time per pass (no timing is asserted).

use std::collections::BTreeSet;
use std::time::Duration;

use phoenix_cloud::{Provider, TargetRef};
use phoenix_core::config::SimTargetGroup;
use phoenix_core::traffic::TargetState;

use crate::executor_support::*;

const TG: &str = "web-tg";

fn target_group(registration_ms: u64, drain_ms: u64) -> SimTargetGroup {
    SimTargetGroup {
        registration_delay: Duration::from_millis(registration_ms),
        deregistration_delay: Duration::from_millis(drain_ms),
        unhealthy_images: vec!["ami-unservable".to_string()],
        ..SimTargetGroup::named(TG)
    }
}

/// A world with the target group, and `g`'s old fleet launched and in service.
async fn world_in_service(g: &G, tg: SimTargetGroup) -> World {
    let mut config = sim_config(&[]);
    config.target_groups = vec![tg];
    let mut w = World::with_config(config).await;
    w.seed(g).await;
    let ids: Vec<TargetRef> = w
        .members(g.name)
        .await
        .into_iter()
        .map(|i| TargetRef {
            id: i.id.to_string(),
            port: None,
        })
        .collect();
    bounded(w.sim.register_targets(TG, &ids))
        .await
        .expect("seed registration");
    w.checked.limit(g);
    w.checked.limit_traffic(g, TG);
    wait_until_in_service(&w, g.name, g.replicas).await;
    w
}

async fn wait_until_in_service(w: &World, group: &str, n: u32) {
    for _ in 0..500 {
        if w.checked.in_service(group).await.len() as u32 >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{group} never had {n} instances in service");
}

/// Plan, submit and advance until nothing is left to do, sleeping `real` per pass;
/// `sample` runs after every pass. Returns whether it converged.
async fn converge_live(
    w: &mut World,
    groups: &[phoenix_core::spec::ParsedGroup],
    commit: &str,
    sample: &mut dyn FnMut(&World, BTreeSet<String>),
    group: &str,
) -> bool {
    for _ in 0..400 {
        let doc = w.plan_and_submit(groups, commit).await;
        let wake = w.advance().await;
        let in_service = w.checked.in_service(group).await;
        sample(w, in_service);
        let active = w.store.unfinished_plans().expect("unfinished plans").len();
        if !doc.changes && active == 0 && wake.is_none() {
            return true;
        }
        w.now += wake
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    false
}

/// Every target of the target group is a current member of the group, healthy.
async fn assert_all_current_in_service(w: &World, g: &G) {
    let members: BTreeSet<String> = w
        .members(g.name)
        .await
        .into_iter()
        .filter(|i| i.spec_hash() == Some(g.parsed().hash.to_string().as_str()))
        .map(|i| i.id.to_string())
        .collect();
    assert_eq!(members.len() as u32, g.replicas);
    let targets = bounded(w.sim.target_health(TG)).await.expect("targets");
    let ids: BTreeSet<String> = targets.iter().map(|t| t.id.to_string()).collect();
    assert_eq!(
        ids, members,
        "the target group holds exactly the current fleet"
    );
    assert!(
        targets.iter().all(|t| t.state == TargetState::Healthy),
        "{targets:?}"
    );
}

async fn assert_no_traffic_violation(w: &World) {
    assert_eq!(w.checked.violations(), Vec::<String>::new());
    let sim = bounded(w.sim.traffic_violations())
        .await
        .expect("violations");
    assert!(sim.is_empty(), "terminated while attached: {sim:?}");
}

/// Every terminated id was deregistered before (never-registered instances excepted).
fn assert_deregistered_before_terminated(w: &World, registered_ever: &BTreeSet<String>) {
    let log = w.checked.traffic_log.lock().expect("log").clone();
    let mut deregistered = BTreeSet::new();
    for (call, _, ids) in log {
        match call {
            "deregister" => deregistered.extend(ids),
            "terminate" => {
                for id in ids {
                    assert!(
                        deregistered.contains(&id) || !registered_ever.contains(&id),
                        "{id} terminated without being deregistered first"
                    );
                }
            }
            _ => {}
        }
    }
}

fn registered_ever(w: &World, seeded: &[String]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = seeded.iter().cloned().collect();
    for (call, _, ids) in w.checked.traffic_log.lock().expect("log").iter() {
        if *call == "register" {
            out.extend(ids.iter().cloned());
        }
    }
    out
}

#[tokio::test]
async fn rolling_registers_new_instances_and_drains_old_ones_first() {
    let old = G {
        traffic: Some(TG),
        unavailable: 1,
        ..G::default()
    };
    let mut w = world_in_service(&old, target_group(60, 80)).await;
    let seeded: Vec<String> = w
        .members("web")
        .await
        .iter()
        .map(|i| i.id.to_string())
        .collect();
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    let floor = new.floor();
    let mut lowest = u32::MAX;
    let mut reads_per_pass = 0;
    let mut last_reads = 0;
    let mut sample = |w: &World, in_service: BTreeSet<String>| {
        lowest = lowest.min(in_service.len() as u32);
        let reads = w
            .checked
            .target_health_calls
            .load(std::sync::atomic::Ordering::SeqCst);
        reads_per_pass = reads_per_pass.max(reads - last_reads);
        last_reads = reads;
    };
    assert!(converge_live(&mut w, &[new.parsed()], "c1", &mut sample, "web").await);
    assert!(
        lowest >= floor,
        "in service dipped to {lowest}, floor {floor}"
    );
    assert!(
        reads_per_pass <= 1,
        "target group read {reads_per_pass} times in one pass"
    );
    assert_all_current_in_service(&w, &new).await;
    assert_no_traffic_violation(&w).await;
    assert_deregistered_before_terminated(&w, &registered_ever(&w, &seeded));
    let kinds = w.kinds();
    assert!(kinds.contains(&"plan_succeeded"), "{kinds:?}");
}

#[tokio::test]
async fn blue_green_switches_traffic_only_once_the_new_generation_is_in_service() {
    let old = G {
        traffic: Some(TG),
        strategy: "blue-green",
        replicas: 2,
        bake: "3s",
        ..G::default()
    };
    let mut w = world_in_service(&old, target_group(50, 60)).await;
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    let mut lowest = u32::MAX;
    let mut sample = |_: &World, in_service: BTreeSet<String>| {
        lowest = lowest.min(in_service.len() as u32);
    };
    assert!(converge_live(&mut w, &[new.parsed()], "c1", &mut sample, "web").await);
    // One generation is fully in service at every sampled moment: never both out.
    assert!(lowest >= new.replicas, "in service dipped to {lowest}");
    assert_all_current_in_service(&w, &new).await;
    assert_no_traffic_violation(&w).await;
}

#[tokio::test]
async fn canary_replacement_keeps_the_floor_in_service() {
    let old = G {
        traffic: Some(TG),
        strategy: "canary",
        bake: "2s",
        ..G::default()
    };
    let mut w = world_in_service(&old, target_group(40, 40)).await;
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    let mut lowest = u32::MAX;
    let mut sample = |_: &World, s: BTreeSet<String>| lowest = lowest.min(s.len() as u32);
    assert!(converge_live(&mut w, &[new.parsed()], "c1", &mut sample, "web").await);
    assert!(lowest >= new.floor(), "in service dipped to {lowest}");
    assert_all_current_in_service(&w, &new).await;
    assert_no_traffic_violation(&w).await;
}

#[tokio::test]
async fn a_target_that_never_gets_healthy_rolls_back_and_the_old_generation_stays_in_service() {
    let old = G {
        traffic: Some(TG),
        deadline: "20s",
        ..G::default()
    };
    let mut w = world_in_service(&old, target_group(30, 50)).await;
    let old_ids: BTreeSet<String> = w
        .members("web")
        .await
        .iter()
        .map(|i| i.id.to_string())
        .collect();
    // Healthy as an instance, never healthy behind the load balancer.
    let bad = G {
        image: "ami-unservable",
        ..old.clone()
    };
    let mut sample = |_: &World, _: BTreeSet<String>| {};
    converge_live(&mut w, &[bad.parsed()], "c1", &mut sample, "web").await;
    let rolled_back = w
        .transitions
        .iter()
        .find(|t| t.kind() == "rolled_back")
        .expect("the plan rolled back");
    let message = format!("{rolled_back:?}");
    assert!(message.contains("never got healthy"), "{message}");
    assert_eq!(
        w.checked.in_service("web").await,
        old_ids,
        "the old generation serves"
    );
    let members: BTreeSet<String> = w
        .members("web")
        .await
        .iter()
        .map(|i| i.id.to_string())
        .collect();
    assert_eq!(members, old_ids, "the failed instance was terminated");
    assert_no_traffic_violation(&w).await;
    assert_deregistered_before_terminated(&w, &registered_ever(&w, &[]));
}

#[tokio::test]
async fn an_out_of_band_deregistration_is_registered_again_without_replacing() {
    let g = G {
        traffic: Some(TG),
        replicas: 2,
        ..G::default()
    };
    let mut w = world_in_service(&g, target_group(20, 0)).await;
    let victim = w.members("web").await[0].id.to_string();
    bounded(w.sim.deregister_targets(
        TG,
        &[TargetRef {
            id: victim.clone(),
            port: None,
        }],
    ))
    .await
    .expect("out-of-band deregistration");
    // Drift only once the instance is older than the health deadline (a younger one may
    // be a plan's new instance about to be registered).
    let young = w.plan_and_submit(&[g.parsed()], "c0").await;
    assert!(
        young.groups[0].drift.is_empty(),
        "{:?}",
        young.groups[0].drift
    );
    w.now += Duration::from_secs(61);
    let doc = w.plan_and_submit(&[g.parsed()], "c0").await;
    let kinds: Vec<_> = doc.groups[0]
        .drift
        .iter()
        .map(|f| f.kind.as_str())
        .collect();
    assert_eq!(kinds, ["unregistered"]);
    let mut sample = |_: &World, _: BTreeSet<String>| {};
    assert!(converge_live(&mut w, &[g.parsed()], "c0", &mut sample, "web").await);
    assert_eq!(
        w.checked
            .terminate_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing replaced"
    );
    assert!(w.checked.in_service("web").await.contains(&victim));
    assert_no_traffic_violation(&w).await;
}

#[tokio::test]
async fn a_crash_after_a_register_intent_registers_once_and_finishes() {
    let old = G {
        traffic: Some(TG),
        replicas: 2,
        ..G::default()
    };
    let mut w = world_in_service(&old, target_group(20, 20)).await;
    let new = G {
        image: "ami-new",
        ..old.clone()
    };
    // Run until the first register step has acted, then lose the executor.
    for _ in 0..100 {
        w.plan_and_submit(&[new.parsed()], "c1").await;
        let wake = w.advance().await;
        if w.checked
            .traffic_log
            .lock()
            .expect("log")
            .iter()
            .any(|(c, _, _)| *c == "register")
        {
            break;
        }
        w.now += wake.unwrap_or(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    w.exec = World::executor(&w.checked);
    let transitions = bounded(w.exec.recover(&mut w.store, w.now))
        .await
        .expect("recover");
    w.transitions.extend(transitions);
    let mut sample = |_: &World, _: BTreeSet<String>| {};
    assert!(converge_live(&mut w, &[new.parsed()], "c1", &mut sample, "web").await);
    assert_all_current_in_service(&w, &new).await;
    assert_no_traffic_violation(&w).await;
    let launched: Vec<String> = w
        .checked
        .launches
        .lock()
        .expect("launches")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        launched.len() as u32,
        new.replicas,
        "no double launch: {launched:?}"
    );
}
