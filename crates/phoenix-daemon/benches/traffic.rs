//! Benchmark of traffic-aware replacement (issue 16, item 7): a rolling replacement of
//! 100 instances behind a sim target group with a 5 s registration delay and a 10 s
//! drain, maxSurge 10, maxUnavailable 0, health `none`, launch latency 0: reconcile
//! passes as the daemon runs them (plan with the target groups read, `submit`,
//! `advance`, sleep until the executor's wake-up) with the executor's default options,
//! on the wall clock, until the group is in sync with every new instance in service.
//!
//! Baseline in the same run: the floor the waits alone impose, `rounds x (registration
//! delay + drain)` with `rounds = ceil(instances / maxSurge)` (each round must register
//! its new instances and see them in service, then drain the old ones, before the next
//! round may launch). Goal: within 1.2x of the floor.
//!
//! Small size (20 instances, 0.2 s and 0.4 s) with `PHOENIX_BENCH_SIZE=small` or when not
//! run by `cargo bench` (e.g. `cargo test --all-targets`). Prints Markdown and one
//! `RESULT {json}` line for `scripts/bench.sh`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use phoenix_cloud::sim::SimProvider;
use phoenix_cloud::{LaunchRequest, Provider, TargetRef};
use phoenix_core::config::{ReconcileConfig, SimConfig, SimTargetGroup};
use phoenix_core::parse_group;
use phoenix_core::plan::{PlanInput, PlanMemory, plan};
use phoenix_core::spec::ParsedGroup;
use phoenix_core::traffic::TargetState;
use phoenix_daemon::executor::{Executor, ExecutorOptions};
use phoenix_store::{Store, StoreOptions};

const OWNER: &str = "bench";
const TG: &str = "web-tg";

struct Size {
    instances: u32,
    surge: u32,
    registration: Duration,
    drain: Duration,
}

fn group(image: &str, size: &Size) -> ParsedGroup {
    parse_group(&format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: web\nspec:\n  provider: sim\n  replicas: {}\n  template:\n    image: {image}\n    instanceType: t3.micro\n  rollout:\n    strategy: rolling\n    maxSurge: {}\n    maxUnavailable: 0\n  health:\n    check: none\n    grace: 0s\n    deadline: 10m\n  traffic:\n    targetGroups: [{TG}]\n",
        size.instances, size.surge
    ))
    .expect("a valid group")
}

async fn in_service(sim: &SimProvider) -> usize {
    sim.target_health(TG)
        .await
        .expect("target health")
        .iter()
        .filter(|t| t.state == TargetState::Healthy)
        .count()
}

/// Seed the old fleet, registered and in service.
async fn seed(sim: &SimProvider, old: &ParsedGroup, size: &Size) {
    let request = LaunchRequest {
        owner: OWNER.to_string(),
        group: old.group.name().clone(),
        template: old.group.spec.template.clone(),
        spec_hash: old.hash,
        commit: "c0".to_string(),
        plan_id: "seed".to_string(),
        launch_token: "seed".to_string(),
        count: size.instances,
    };
    sim.seed(vec![request]).await.expect("seed");
    let ids: Vec<TargetRef> = sim
        .inventory(OWNER)
        .await
        .instances
        .iter()
        .map(|i| TargetRef {
            id: i.id.to_string(),
            port: None,
        })
        .collect();
    sim.register_targets(TG, &ids).await.expect("register");
    while in_service(sim).await < size.instances as usize {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reconcile passes until the group converged; returns the wall time and the passes.
async fn replace(sim: &SimProvider, new: &ParsedGroup, store: &mut Store) -> (Duration, u32) {
    let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
    providers.insert("sim".to_string(), Arc::new(sim.clone()));
    let mut exec = Executor::new(
        OWNER.to_string(),
        providers.clone(),
        ExecutorOptions::default(),
    );
    let config = ReconcileConfig {
        max_replacements: 10_000,
        max_replacement_fraction: 1.0,
        ..ReconcileConfig::default()
    };
    let groups = [new.clone()];
    let mut memory = PlanMemory::default();
    let start = Instant::now();
    for pass in 1.. {
        let now = SystemTime::now();
        let inventory = sim.inventory(OWNER).await;
        let traffic = phoenix_daemon::traffic::target_health(
            groups.iter().map(|g| g.group.as_ref()),
            &providers,
        )
        .await;
        let outcome = plan(&PlanInput {
            revision: "c1",
            owner: OWNER,
            groups: &groups,
            inventories: &[inventory],
            config: &config,
            memory: &memory,
            failed: &[],
            images: &phoenix_core::policy::NO_POLICY,
            traffic: &traffic,
            now,
        })
        .expect("plan");
        memory = outcome.memory;
        exec.submit(store, &outcome.document, &groups, "c1", now)
            .expect("submit");
        let progress = exec.advance(store, now).await.expect("advance");
        if !outcome.document.changes && store.unfinished_plans().expect("plans").is_empty() {
            return (start.elapsed(), pass);
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "no convergence in 30 minutes"
        );
        tokio::time::sleep(progress.wake_after.unwrap_or(Duration::from_millis(100))).await;
    }
    unreachable!("the loop returns")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench")
        && std::env::var("PHOENIX_BENCH_SIZE").as_deref() != Ok("small");
    let size = if full {
        Size {
            instances: 100,
            surge: 10,
            registration: Duration::from_secs(5),
            drain: Duration::from_secs(10),
        }
    } else {
        Size {
            instances: 20,
            surge: 10,
            registration: Duration::from_millis(200),
            drain: Duration::from_millis(400),
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = SimConfig {
        name: "sim".to_string(),
        launch_latency: Duration::ZERO,
        launch_failure_rate: 0.0,
        unhealthy_images: Vec::new(),
        images: Vec::new(),
        target_groups: vec![SimTargetGroup {
            registration_delay: size.registration,
            deregistration_delay: size.drain,
            ..SimTargetGroup::named(TG)
        }],
    };
    let sim = SimProvider::open_dir(&config, dir.path().join("sim"))
        .await
        .expect("open sim");
    let mut store = Store::open(&dir.path().join("state"), StoreOptions::default()).expect("store");
    let old = group("ami-old", &size);
    let new = group("ami-new", &size);
    seed(&sim, &old, &size).await;
    let (wall, passes) = replace(&sim, &new, &mut store).await;
    let members = sim.inventory(OWNER).await.instances;
    assert_eq!(members.len() as u32, size.instances, "the fleet is whole");
    assert!(
        members
            .iter()
            .all(|i| i.spec_hash() == Some(new.hash.to_string().as_str())),
        "every instance is new"
    );
    assert_eq!(
        in_service(&sim).await as u32,
        size.instances,
        "all in service"
    );
    assert!(
        sim.traffic_violations()
            .await
            .expect("violations")
            .is_empty(),
        "no terminate of an attached instance"
    );
    let rounds = size.instances.div_ceil(size.surge);
    let floor = (size.registration + size.drain) * rounds;
    let ratio = wall.as_secs_f64() / floor.as_secs_f64();
    println!(
        "| case | instances | maxSurge | registration | drain | floor | wall | ratio | passes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| rolling behind a target group | {} | {} | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {ratio:.3} | {passes} |",
        size.instances,
        size.surge,
        size.registration.as_secs_f64(),
        size.drain.as_secs_f64(),
        floor.as_secs_f64(),
        wall.as_secs_f64()
    );
    println!(
        "RESULT {}",
        serde_json::json!({
            "bench": "traffic_rolling",
            "instances": size.instances,
            "surge": size.surge,
            "registration_s": size.registration.as_secs_f64(),
            "drain_s": size.drain.as_secs_f64(),
            "rounds": rounds,
            "floor_s": floor.as_secs_f64(),
            "wall_s": wall.as_secs_f64(),
            "ratio": ratio,
            "passes": passes,
        })
    );
}
