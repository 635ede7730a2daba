//! Chaos test of the executor (issue 6, item 5): the `phoenix-chaos-driver` binary runs
//! reconcile passes on the sim provider with a real store, with launch failures,
//! injected provider errors and an image that never becomes healthy (rollback). The test
//! SIGKILLs it at 100 random points (random delays from a fixed seed, printed on
//! failure), restarts it each time, checks the rollout invariants from the sim and store
//! state after every kill, and checks convergence at the end.
//!
//! `PHOENIX_CHAOS_SEED` and `PHOENIX_CHAOS_KILLS` override the seed (default 0x5eed) and
//! the number of kills (default 100).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use phoenix_cloud::Provider;
use phoenix_cloud::sim::SimProvider;
use phoenix_core::config::SimConfig;
use phoenix_core::model::{Instance, InstanceHealth};
use phoenix_core::parse_group;
use phoenix_store::{Store, StoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const OWNER: &str = "chaos";
const DRIVER: &str = env!("CARGO_BIN_EXE_phoenix-chaos-driver");

/// One desired group of the scenario.
struct Spec {
    name: &'static str,
    strategy: &'static str,
    replicas: u32,
    surge: u32,
    unavailable: u32,
    /// `None`: follows the generation's image; `Some`: a fixed image from generation 1 on.
    broken_from_gen1: bool,
}

const SPECS: [Spec; 4] = [
    Spec {
        name: "web",
        strategy: "rolling",
        replicas: 3,
        surge: 1,
        unavailable: 0,
        broken_from_gen1: false,
    },
    Spec {
        name: "blue",
        strategy: "blue-green",
        replicas: 2,
        surge: 1,
        unavailable: 0,
        broken_from_gen1: false,
    },
    Spec {
        name: "canary",
        strategy: "canary",
        replicas: 3,
        surge: 1,
        unavailable: 1,
        broken_from_gen1: false,
    },
    Spec {
        name: "bad",
        strategy: "rolling",
        replicas: 2,
        surge: 1,
        unavailable: 0,
        broken_from_gen1: true,
    },
];

fn image(spec: &Spec, generation: u32) -> String {
    if spec.broken_from_gen1 && generation >= 1 {
        "ami-broken".to_string()
    } else {
        format!("ami-v{generation}")
    }
}

fn yaml(spec: &Spec, generation: u32) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {}\nspec:\n  provider: sim\n  replicas: {}\n  template:\n    image: {}\n    instanceType: t3.micro\n    subnetIds: [subnet-a]\n  rollout:\n    strategy: {}\n    maxSurge: {}\n    maxUnavailable: {}\n    bake: 0s\n    autoRollback: true\n  health:\n    check: provider\n    grace: 0s\n    deadline: 5s\n",
        spec.name,
        spec.replicas,
        image(spec, generation),
        spec.strategy,
        spec.surge,
        spec.unavailable
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

fn spawn(dir: &Path, seed: u64) -> Child {
    Command::new(DRIVER)
        .arg(dir)
        .args(["--launch-failure-rate", "0.2", "--error-rate", "0.1"])
        .args(["--unhealthy", "ami-broken", "--seed", &seed.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("driver.log")).expect("driver log"))
        .spawn()
        .expect("the chaos driver starts")
}

fn inventory(rt: &tokio::runtime::Runtime, dir: &Path) -> Vec<Instance> {
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            let sim = SimProvider::open_dir(
                &SimConfig {
                    name: "sim".to_string(),
                    launch_latency: Duration::ZERO,
                    launch_failure_rate: 0.0,
                    unhealthy_images: vec!["ami-broken".to_string()],
                    images: Vec::new(),
                    target_groups: Vec::new(),
                },
                dir.join("sim"),
            )
            .await
            .expect("open sim");
            let inv = sim.inventory(OWNER).await;
            assert!(inv.complete, "sim inventory complete");
            inv.instances
        })
        .await
        .expect("inventory within the timeout")
    })
}

/// The invariants that must hold at any kill point.
fn check_invariants(rt: &tokio::runtime::Runtime, dir: &Path, ctx: &str) {
    let instances = inventory(rt, dir);
    let store = Store::open(&dir.join("state"), StoreOptions::default()).expect("open store");
    for spec in &SPECS {
        let members: Vec<&Instance> = instances
            .iter()
            .filter(|i| i.group() == Some(spec.name))
            .collect();
        let max_live = if spec.strategy == "blue-green" {
            spec.replicas * 2
        } else {
            spec.replicas + spec.surge
        };
        assert!(
            members.len() as u32 <= max_live,
            "{ctx}: {} has {} live instances, above {max_live}",
            spec.name,
            members.len()
        );
        let healthy = members
            .iter()
            .filter(|i| i.health == InstanceHealth::Healthy)
            .count() as u32;
        let floor = spec.replicas - spec.unavailable;
        assert!(
            healthy >= floor,
            "{ctx}: {} has {healthy} healthy instances, below its floor of {floor}",
            spec.name
        );
    }
    // No orphan, no double launch: every instance belongs to a desired group and was
    // launched by a step whose intent was committed first; no step launched more than
    // its count over all its attempts.
    let mut per_step: BTreeMap<(String, u32), u32> = BTreeMap::new();
    for i in &instances {
        assert!(
            SPECS.iter().any(|s| i.group() == Some(s.name)),
            "{ctx}: {} belongs to no desired group",
            i.id
        );
        let token = i
            .tag("phoenix:launch-token")
            .expect("every instance has a launch token");
        let step = store
            .step_by_launch_token(token)
            .expect("read step")
            .unwrap_or_else(|| {
                panic!(
                    "{ctx}: {} carries token {token}, which no step recorded",
                    i.id
                )
            });
        *per_step
            .entry((step.plan_id.to_string(), step.index))
            .or_default() += 1;
    }
    for ((plan, index), n) in per_step {
        let step = &store
            .steps(&phoenix_store::PlanId::new(plan.clone()))
            .expect("steps")[index as usize];
        let count = step.detail["step"]["count"].as_u64().expect("launch count") as u32;
        assert!(
            n <= count,
            "{ctx}: step {index} of {plan} has {n} live instances for a count of {count}"
        );
    }
}

/// The end of the driver's stderr, for failure messages.
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
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{ctx}: the driver did not converge within 60 s\n{}",
                log_tail(dir)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigkill_at_random_points_keeps_invariants_and_converges() {
    let seed: u64 = std::env::var("PHOENIX_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let kills: u32 = std::env::var("PHOENIX_CHAOS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    eprintln!("chaos seed {seed} (PHOENIX_CHAOS_SEED), {kills} kills");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();

    // Generation 0: every group on a good image, launched by the executor itself.
    write_generation(dir, 0);
    run_to_convergence(dir, seed, &format!("seed {seed}, generation 0"));
    let mut generation = 1;
    write_generation(dir, generation);

    let mut mid_run = 0;
    for kill in 0..kills {
        let ctx = format!("seed {seed}, kill {kill}, generation {generation}");
        let mut child = spawn(dir, seed.wrapping_add(u64::from(kill)));
        let delay = Duration::from_millis(rng.random_range(1..=60));
        std::thread::sleep(delay);
        match child.try_wait().expect("poll driver") {
            None => {
                child.kill().expect("SIGKILL the driver");
                child.wait().expect("reap the driver");
                mid_run += 1;
            }
            Some(status) => {
                assert!(
                    status.success(),
                    "{ctx}: the driver failed: {status}\n{}",
                    log_tail(dir)
                );
                // Converged: give it new work.
                generation += 1;
                write_generation(dir, generation);
            }
        }
        check_invariants(&rt, dir, &ctx);
    }

    let ctx = format!("seed {seed}, final, generation {generation}");
    run_to_convergence(dir, seed, &ctx);
    check_invariants(&rt, dir, &ctx);
    let instances = inventory(&rt, dir);
    for spec in &SPECS {
        let members: Vec<&Instance> = instances
            .iter()
            .filter(|i| i.group() == Some(spec.name))
            .collect();
        assert_eq!(
            members.len() as u32,
            spec.replicas,
            "{ctx}: replicas of {}",
            spec.name
        );
        // The bad group keeps the last good generation (0); the others reach the newest.
        let expected_gen = if spec.broken_from_gen1 { 0 } else { generation };
        let hash = parse_group(&yaml(spec, expected_gen))
            .expect("valid")
            .hash
            .to_string();
        for m in &members {
            assert_eq!(
                m.spec_hash(),
                Some(hash.as_str()),
                "{ctx}: {} of {} is not on generation {expected_gen}",
                m.id,
                spec.name
            );
        }
    }
    let store = Store::open(&dir.join("state"), StoreOptions::default()).expect("open store");
    assert!(
        store
            .failed_hashes()
            .expect("failed hashes")
            .iter()
            .any(|f| f.group.as_str() == "bad"),
        "{ctx}: the broken image was rolled back and recorded"
    );
    eprintln!("chaos: {mid_run} of {kills} kills hit a running driver, {generation} generations");
    assert!(
        mid_run >= kills / 4,
        "{ctx}: only {mid_run} kills hit a running driver"
    );
}
