//! Chaos test of traffic-aware replacement (issue 16): the `phoenix-chaos-driver` runs
//! reconcile passes on the sim with three groups behind load balancer target groups
//! (rolling, blue-green, and one whose new image never gets healthy behind the load
//! balancer, so its plans roll back), with registration and drain delays, injected
//! errors on terminate, health and every traffic call, and launch failures. The test
//! SIGKILLs the driver at random points, many of them during registration and draining,
//! and after every kill checks from the sim's own state: no instance was ever
//! terminated while registered or draining (the sim records every such terminate), and
//! each group has at least its floor in service (blue-green: a whole generation, so
//! never both out). At the end every target group holds exactly its group's current
//! instances, all healthy, and the failed image left the old generation in service.
//!
//! `PHOENIX_CHAOS_SEED` and `PHOENIX_CHAOS_KILLS` override the seed (default 0x7aff1c)
//! and the number of kills (default 100; at least half of them must come while a traffic
//! step is in flight).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use phoenix_cloud::Provider;
use phoenix_cloud::sim::SimProvider;
use phoenix_core::config::{SimConfig, SimTargetGroup};
use phoenix_core::parse_group;
use phoenix_core::traffic::TargetState;
use phoenix_store::{StepAction, StepStatus, Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const OWNER: &str = "chaos";
const DRIVER: &str = env!("CARGO_BIN_EXE_phoenix-chaos-driver");
const UNSERVABLE: &str = "ami-unservable";

struct Spec {
    name: &'static str,
    strategy: &'static str,
    replicas: u32,
    target_group: &'static str,
    /// From generation 1 on, an image whose targets never get healthy.
    unservable_from_gen1: bool,
}

const SPECS: [Spec; 3] = [
    Spec {
        name: "web",
        strategy: "rolling",
        replicas: 3,
        target_group: "web-tg",
        unservable_from_gen1: false,
    },
    Spec {
        name: "blue",
        strategy: "blue-green",
        replicas: 2,
        target_group: "blue-tg",
        unservable_from_gen1: false,
    },
    Spec {
        name: "bad",
        strategy: "rolling",
        replicas: 2,
        target_group: "bad-tg",
        unservable_from_gen1: true,
    },
];

/// (registration, drain) delays of every target group, in ms.
const DELAYS: (u64, u64) = (30, 40);

fn image(spec: &Spec, generation: u32) -> String {
    if spec.unservable_from_gen1 && generation >= 1 {
        UNSERVABLE.to_string()
    } else {
        format!("ami-v{generation}")
    }
}

fn yaml(spec: &Spec, generation: u32) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {}\nspec:\n  provider: sim\n  replicas: {}\n  template:\n    image: {}\n    instanceType: t3.micro\n  rollout:\n    strategy: {}\n    maxSurge: 1\n    maxUnavailable: 0\n    autoRollback: true\n  health:\n    check: provider\n    grace: 0s\n    deadline: 2s\n  traffic:\n    targetGroups: [{}]\n",
        spec.name,
        spec.replicas,
        image(spec, generation),
        spec.strategy,
        spec.target_group
    )
}

fn write_generation(dir: &Path, generation: u32) {
    let desired = dir.join("desired");
    std::fs::create_dir_all(&desired).expect("desired dir");
    for spec in &SPECS {
        std::fs::write(
            desired.join(format!("{}.yaml", spec.name)),
            yaml(spec, generation),
        )
        .expect("write group");
    }
    std::fs::write(desired.join("COMMIT"), format!("gen-{generation}")).expect("write commit");
}

fn target_groups() -> Vec<SimTargetGroup> {
    SPECS
        .iter()
        .map(|s| SimTargetGroup {
            registration_delay: Duration::from_millis(DELAYS.0),
            deregistration_delay: Duration::from_millis(DELAYS.1),
            unhealthy_images: vec![UNSERVABLE.to_string()],
            ..SimTargetGroup::named(s.target_group)
        })
        .collect()
}

fn spawn(dir: &Path, seed: u64) -> Child {
    let mut cmd = Command::new(DRIVER);
    cmd.arg(dir)
        .args(["--launch-failure-rate", "0.1", "--error-rate", "0.1"])
        .args(["--seed", &seed.to_string()]);
    for s in &SPECS {
        cmd.args([
            "--target-group",
            &format!("{}:{}:{}:{UNSERVABLE}", s.target_group, DELAYS.0, DELAYS.1),
        ]);
    }
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("driver.log")).expect("driver log"))
        .spawn()
        .expect("the chaos driver starts")
}

fn sim(rt: &tokio::runtime::Runtime, dir: &Path) -> SimProvider {
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            SimProvider::open_dir(
                &SimConfig {
                    name: "sim".to_string(),
                    launch_latency: Duration::ZERO,
                    launch_failure_rate: 0.0,
                    unhealthy_images: Vec::new(),
                    images: Vec::new(),
                    target_groups: target_groups(),
                },
                dir.join("sim"),
            ),
        )
        .await
        .expect("open within the timeout")
        .expect("open sim")
    })
}

/// Per group: (members, members in service in its target group, every target id).
fn traffic_state(
    rt: &tokio::runtime::Runtime,
    sim: &SimProvider,
    spec: &Spec,
) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            let inv = sim.inventory(OWNER).await;
            assert!(inv.complete, "sim inventory complete");
            let members: BTreeSet<String> = inv
                .instances
                .iter()
                .filter(|i| i.group() == Some(spec.name))
                .map(|i| i.id.to_string())
                .collect();
            let targets = sim
                .target_health(spec.target_group)
                .await
                .expect("target health");
            let in_service = targets
                .iter()
                .filter(|t| t.state == TargetState::Healthy && members.contains(t.id.as_str()))
                .map(|t| t.id.to_string())
                .collect();
            let all = targets.iter().map(|t| t.id.to_string()).collect();
            (members, in_service, all)
        })
        .await
        .expect("read within the timeout")
    })
}

fn check_invariants(rt: &tokio::runtime::Runtime, dir: &Path, ctx: &str) {
    let sim = sim(rt, dir);
    let violations = rt
        .block_on(sim.traffic_violations())
        .expect("read violations");
    assert!(
        violations.is_empty(),
        "{ctx}: terminated while registered or draining: {violations:?}"
    );
    for spec in &SPECS {
        let (_, in_service, _) = traffic_state(rt, &sim, spec);
        // maxUnavailable 0: the floor is every replica; for blue-green that is a whole
        // generation, so the two generations are never both out of service.
        assert!(
            in_service.len() as u32 >= spec.replicas,
            "{ctx}: {} has {} in service, below its floor of {}",
            spec.name,
            in_service.len(),
            spec.replicas
        );
    }
}

/// Whether a traffic step (or a rollback, which registers and drains) was in flight:
/// the driver was killed during registration, a wait in service, deregistration or
/// draining.
fn traffic_in_flight(dir: &Path) -> bool {
    let store = Store::open(&dir.join("state"), StoreOptions::default()).expect("open store");
    store
        .unfinished_plans()
        .expect("unfinished plans")
        .iter()
        .flat_map(|p| p.steps.iter())
        .any(|s| {
            s.status == StepStatus::Intent
                && matches!(
                    s.action,
                    StepAction::Register
                        | StepAction::WaitInService
                        | StepAction::Deregister
                        | StepAction::WaitDrained
                        | StepAction::Rollback
                )
        })
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("driver.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn run_to_convergence(dir: &Path, seed: u64, ctx: &str) {
    let mut child = spawn(dir, seed);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll driver") {
            assert!(
                status.success(),
                "{ctx}: the driver did not converge: {status}\n{}",
                log_tail(dir)
            );
            return;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{ctx}: the driver did not converge within 90 s\n{}",
                log_tail(dir)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigkill_during_registration_and_draining_never_breaks_traffic_invariants() {
    let seed: u64 = std::env::var("PHOENIX_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7aff1c);
    let kills: u32 = std::env::var("PHOENIX_CHAOS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    eprintln!("traffic chaos seed {seed} (PHOENIX_CHAOS_SEED), {kills} kills");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();

    write_generation(dir, 0);
    run_to_convergence(dir, seed, &format!("seed {seed}, generation 0"));
    check_invariants(&rt, dir, "generation 0");
    let mut generation = 1;
    write_generation(dir, generation);

    let (mut mid_run, mut during_traffic) = (0, 0);
    for kill in 0..kills {
        let ctx = format!("seed {seed}, kill {kill}, generation {generation}");
        let mut child = spawn(dir, seed.wrapping_add(u64::from(kill)));
        std::thread::sleep(Duration::from_millis(rng.random_range(1..=80)));
        match child.try_wait().expect("poll driver") {
            None => {
                child.kill().expect("SIGKILL the driver");
                child.wait().expect("reap the driver");
                mid_run += 1;
                if traffic_in_flight(dir) {
                    during_traffic += 1;
                }
            }
            Some(status) => {
                assert!(
                    status.success(),
                    "{ctx}: the driver failed: {status}\n{}",
                    log_tail(dir)
                );
                generation += 1;
                write_generation(dir, generation);
            }
        }
        check_invariants(&rt, dir, &ctx);
    }

    let ctx = format!("seed {seed}, final, generation {generation}");
    run_to_convergence(dir, seed, &ctx);
    check_invariants(&rt, dir, &ctx);
    let sim = sim(&rt, dir);
    for spec in &SPECS {
        let (members, in_service, targets) = traffic_state(&rt, &sim, spec);
        assert_eq!(members.len() as u32, spec.replicas, "{ctx}: {}", spec.name);
        assert_eq!(
            targets, members,
            "{ctx}: {} target group holds its fleet",
            spec.name
        );
        assert_eq!(in_service, members, "{ctx}: {} all in service", spec.name);
        let expected_gen = if spec.unservable_from_gen1 {
            0
        } else {
            generation
        };
        let hash = parse_group(&yaml(spec, expected_gen))
            .expect("valid")
            .hash
            .to_string();
        let inv = rt.block_on(sim.inventory(OWNER));
        for i in inv
            .instances
            .iter()
            .filter(|i| i.group() == Some(spec.name))
        {
            assert_eq!(
                i.spec_hash(),
                Some(hash.as_str()),
                "{ctx}: {} of {} is not on generation {expected_gen}",
                i.id,
                spec.name
            );
        }
    }
    eprintln!(
        "traffic chaos: {mid_run} of {kills} kills hit a running driver, {during_traffic} with a traffic step in flight, {generation} generations"
    );
    assert!(
        during_traffic >= kills / 2,
        "{ctx}: only {during_traffic} kills came during registration or draining"
    );
}
