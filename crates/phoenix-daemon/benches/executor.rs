//! Benchmarks of the executor (issue 6, item 6):
//!
//! 1. Executor overhead per step: `advance` driving plans of bake steps of zero duration
//!    against a provider that answers at once, i.e. the store writes (intent, done) plus
//!    the executor's bookkeeping (reading the plan, decoding step details, transitions).
//!    Baseline in the same run, on the same store: the bare store calls of a step
//!    (`write_intent` + `mark_step_done`). Goal: under 1 ms per step.
//! 2. A rolling replacement of 1,000 instances on the sim with zero latency,
//!    maxUnavailable 0, with maxSurge 10% (ten rounds of launch 100, wait, terminate
//!    100) and maxSurge 1 (a thousand rounds of one): one planning pass, `submit`, then
//!    `advance` until the plan succeeds. Goal: under 10 s.
//! 3. The first enforce pass over N groups of one replica each on the sim (zero
//!    latency), every group's image changed: `submit` of N plans (launch 1, wait
//!    healthy, terminate the old one), then `advance` until every plan is done, at
//!    N = 1,000 and 10,000. Cost per plan at each N shows whether it grows with the
//!    fleet (it did: every terminate read the whole inventory). Baseline in the same
//!    run, on a fresh sim seeded the same way: the bare provider calls of the same
//!    replacements (one launch and one terminate per group), no executor, no store.
//!
//! Small sizes (20 plans, 100 instances, N = 100 and 1,000) with
//! `PHOENIX_BENCH_SIZE=small` or when not run by `cargo bench` (e.g.
//! `cargo test --all-targets`). Prints Markdown for docs/benchmarks.md and one
//! `RESULT {json}` line per case for `scripts/bench.sh`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use phoenix_cloud::sim::SimProvider;
use phoenix_cloud::{LaunchRequest, Provider, ProviderError};
use phoenix_core::config::{ReconcileConfig, SimConfig};
use phoenix_core::model::{Instance, InstanceHealth, Inventory};
use phoenix_core::parse_group;
use phoenix_core::plan::{PlanInput, PlanMemory, Step, plan};
use phoenix_core::spec::ParsedGroup;
use phoenix_daemon::executor::{Executor, ExecutorOptions};
use phoenix_store::{NewPlan, NewStep, PlanId, PlanStatus, StepIntent, Store, StoreOptions};

const STEPS_PER_PLAN: usize = 20;

/// A provider that answers at once and has nothing.
#[derive(Debug)]
struct Noop;

#[async_trait]
impl Provider for Noop {
    fn name(&self) -> &str {
        "noop"
    }
    fn type_name(&self) -> &'static str {
        "sim"
    }
    async fn inventory(&self, _owner: &str) -> Inventory {
        Inventory {
            provider: "noop".to_string(),
            complete: true,
            collected_at: SystemTime::now(),
            instances: Vec::new(),
            error: None,
        }
    }
    async fn launch(&self, _request: &LaunchRequest) -> Result<Vec<Instance>, ProviderError> {
        Ok(Vec::new())
    }
    async fn terminate(&self, _ids: &[String]) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn health(
        &self,
        _ids: &[String],
    ) -> Result<BTreeMap<String, InstanceHealth>, ProviderError> {
        Ok(BTreeMap::new())
    }
    async fn find_by_launch_token(
        &self,
        _owner: &str,
        _token: &str,
    ) -> Result<Vec<Instance>, ProviderError> {
        Ok(Vec::new())
    }
}

/// A provider wrapper that counts inventory reads.
#[derive(Debug)]
struct Counting {
    inner: SimProvider,
    inventories: AtomicU32,
}

#[async_trait]
impl Provider for Counting {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
    async fn inventory(&self, owner: &str) -> Inventory {
        self.inventories.fetch_add(1, Ordering::Relaxed);
        self.inner.inventory(owner).await
    }
    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>, ProviderError> {
        self.inner.launch(request).await
    }
    async fn terminate(&self, ids: &[String]) -> Result<(), ProviderError> {
        self.inner.terminate(ids).await
    }
    async fn health(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, InstanceHealth>, ProviderError> {
        self.inner.health(ids).await
    }
    async fn find_by_launch_token(
        &self,
        owner: &str,
        token: &str,
    ) -> Result<Vec<Instance>, ProviderError> {
        self.inner.find_by_launch_token(owner, token).await
    }
}

fn zero_latency_sim() -> SimConfig {
    SimConfig {
        name: "sim".to_string(),
        launch_latency: Duration::ZERO,
        launch_failure_rate: 0.0,
        unhealthy_images: Vec::new(),
        images: Vec::new(),
        target_groups: Vec::new(),
    }
}

fn group_yaml(name: &str, provider: &str, replicas: u32, image: &str, surge: &str) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  provider: {provider}\n  replicas: {replicas}\n  template:\n    image: {image}\n    instanceType: t3.micro\n    subnetIds: [subnet-a]\n  rollout:\n    strategy: rolling\n    maxSurge: {surge}\n    maxUnavailable: 0\n    bake: 0s\n  health:\n    check: provider\n    grace: 0s\n    deadline: 1m\n"
    )
}

fn bake_plan(id: &str, group: &phoenix_core::spec::ParsedGroup) -> NewPlan {
    let doc = serde_json::json!({
        "format": 1, "provider": "noop", "revision": "r", "commit": "c",
        "group": *group.group,
    });
    NewPlan {
        id: PlanId::new(id),
        group: group.group.name().clone(),
        kind: phoenix_store::PlanKind::Rollout {
            target_hash: group.hash,
            strategy: group.group.spec.rollout.strategy,
        },
        commit: "c".to_string(),
        status: PlanStatus::Running,
        doc,
        steps: (0..STEPS_PER_PLAN)
            .map(|_| NewStep {
                action: phoenix_store::StepAction::Bake,
                detail: serde_json::json!({"step": Step::Bake { duration: Duration::ZERO }}),
            })
            .collect(),
    }
}

/// Mean executor time per step and mean bare store time per step.
async fn per_step(plans: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path(), StoreOptions::default()).expect("store");
    let group = parse_group(&group_yaml("bench", "noop", 1, "ami-1", "1")).expect("valid group");
    let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
    providers.insert("noop".to_string(), Arc::new(Noop));
    let mut exec = Executor::new("bench".to_string(), providers, ExecutorOptions::default());
    let now = SystemTime::now();
    let mut executor_time = Duration::ZERO;
    let mut bare_time = Duration::ZERO;
    for p in 0..plans {
        // Executor: one advance runs the 20 steps of the plan to the end.
        store
            .insert_plan(&bake_plan(&format!("exec-{p}"), &group), now)
            .expect("insert");
        let start = Instant::now();
        let progress = exec.advance(&mut store, now).await.expect("advance");
        executor_time += start.elapsed();
        assert_eq!(progress.transitions.len(), 2 * STEPS_PER_PLAN + 1);
        // Baseline: the same plan shape, only the two store calls per step.
        let id = format!("bare-{p}");
        store
            .insert_plan(&bake_plan(&id, &group), now)
            .expect("insert");
        let id = PlanId::new(id);
        let start = Instant::now();
        for index in 0..STEPS_PER_PLAN as u32 {
            store
                .write_intent(
                    &id,
                    index,
                    &StepIntent {
                        attempt: 1,
                        launch_token: None,
                        detail: None,
                    },
                    now,
                )
                .expect("intent");
            store.mark_step_done(&id, index, None, now).expect("done");
        }
        bare_time += start.elapsed();
        store
            .set_plan_status(&id, PlanStatus::Succeeded, now)
            .expect("finish");
    }
    let steps = u32::try_from(plans * STEPS_PER_PLAN).expect("fits");
    (executor_time / steps, bare_time / steps)
}

/// Seconds to replace `replicas` instances on the sim, and how many steps it took.
async fn rolling_replacement(replicas: u32, surge: &str) -> (Duration, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = SimProvider::open_dir(&zero_latency_sim(), dir.path().join("sim"))
        .await
        .expect("sim");
    let mut store = Store::open(&dir.path().join("state"), StoreOptions::default()).expect("store");
    let old = parse_group(&group_yaml("fleet", "sim", replicas, "ami-old", surge)).expect("valid");
    let new = parse_group(&group_yaml("fleet", "sim", replicas, "ami-new", surge)).expect("valid");
    sim.launch(&LaunchRequest {
        owner: "bench".to_string(),
        group: old.group.name().clone(),
        template: old.group.spec.template.clone(),
        spec_hash: old.hash,
        commit: "c0".to_string(),
        plan_id: "seed".to_string(),
        launch_token: "seed".to_string(),
        count: replicas,
    })
    .await
    .expect("seed");
    let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
    providers.insert("sim".to_string(), Arc::new(sim.clone()));
    let mut exec = Executor::new("bench".to_string(), providers, ExecutorOptions::default());
    let config = ReconcileConfig {
        max_replacements: replicas,
        max_replacement_fraction: 1.0,
        ..ReconcileConfig::default()
    };
    let start = Instant::now();
    let now = SystemTime::now();
    let inventory = sim.inventory("bench").await;
    let groups = [new.clone()];
    let outcome = plan(&PlanInput {
        revision: "c1",
        owner: "bench",
        groups: &groups,
        inventories: &[inventory],
        config: &config,
        memory: &PlanMemory::default(),
        failed: &[],
        images: &phoenix_core::policy::NO_POLICY,
        traffic: &phoenix_core::traffic::NO_TRAFFIC,
        now,
    })
    .expect("plan");
    let steps = outcome.document.groups[0].steps.len();
    exec.submit(&mut store, &outcome.document, &groups, "c1", now)
        .expect("submit");
    let mut t = now;
    loop {
        let progress = exec.advance(&mut store, t).await.expect("advance");
        if progress.wake_after.is_none() || store.unfinished_plans().expect("plans").is_empty() {
            break;
        }
        t += progress.wake_after.unwrap_or_default();
    }
    let elapsed = start.elapsed();
    let inventory = sim.inventory("bench").await;
    let target = new.hash.to_string();
    assert_eq!(inventory.instances.len() as u32, replicas);
    assert!(
        inventory
            .instances
            .iter()
            .all(|i| i.spec_hash() == Some(target.as_str()))
    );
    (elapsed, steps)
}

/// Baseline for the rolling case: the provider calls alone, no executor, no store.
/// `rounds` rounds of: launch `per_round`, health of everything launched so far (as the
/// wait steps check), an inventory (as the terminate floor check reads), terminate
/// `per_round` old instances.
async fn bare_sim_calls(replicas: u32, per_round: u32) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = SimProvider::open_dir(&zero_latency_sim(), dir.path().join("sim"))
        .await
        .expect("sim");
    let old = parse_group(&group_yaml("fleet", "sim", replicas, "ami-old", "1")).expect("valid");
    let request = |token: String, count: u32| LaunchRequest {
        owner: "bench".to_string(),
        group: old.group.name().clone(),
        template: old.group.spec.template.clone(),
        spec_hash: old.hash,
        commit: "c0".to_string(),
        plan_id: "seed".to_string(),
        launch_token: token,
        count,
    };
    let seeded = sim
        .launch(&request("seed".to_string(), replicas))
        .await
        .expect("seed");
    let mut old_ids: Vec<String> = seeded.into_iter().map(|i| String::from(i.id)).collect();
    let mut new_ids: Vec<String> = Vec::new();
    let start = Instant::now();
    for round in 0..replicas / per_round {
        let launched = sim
            .launch(&request(format!("r{round}"), per_round))
            .await
            .expect("launch");
        new_ids.extend(launched.into_iter().map(|i| String::from(i.id)));
        sim.health(&new_ids).await.expect("health");
        let _ = sim.inventory("bench").await;
        let going: Vec<String> = old_ids.drain(..per_round as usize).collect();
        sim.terminate(&going).await.expect("terminate");
    }
    start.elapsed()
}

/// `n` one-replica groups `g00000`, `g00001`, ... of `image`.
fn one_replica_groups(n: usize, image: &str) -> Vec<ParsedGroup> {
    (0..n)
        .map(|i| {
            parse_group(&group_yaml(&format!("g{i:05}"), "sim", 1, image, "1")).expect("valid")
        })
        .collect()
}

/// A fresh sim in `dir` holding the old generation: one `ami-old` instance per group,
/// launched one group at a time as a previous rollout would have. Returns the old
/// instance id of each group, in group order.
async fn seeded_sim(dir: &Path, old: &[ParsedGroup]) -> (SimProvider, Vec<String>) {
    let sim = SimProvider::open_dir(&zero_latency_sim(), dir.join("sim"))
        .await
        .expect("sim");
    let mut ids = Vec::with_capacity(old.len());
    for (i, g) in old.iter().enumerate() {
        let launched = sim
            .launch(&LaunchRequest {
                owner: "bench".to_string(),
                group: g.group.name().clone(),
                template: g.group.spec.template.clone(),
                spec_hash: g.hash,
                commit: "c0".to_string(),
                plan_id: "seed".to_string(),
                launch_token: format!("seed-{i}"),
                count: 1,
            })
            .await
            .expect("seed");
        ids.push(launched[0].id.to_string());
    }
    (sim, ids)
}

/// What the first enforce pass over `n` one-replica groups cost.
struct FirstPass {
    groups: usize,
    submit: Duration,
    advance: Duration,
    advances: u32,
    inventory_reads: u32,
}

impl FirstPass {
    fn per_plan(&self) -> Duration {
        (self.submit + self.advance) / u32::try_from(self.groups).expect("fits")
    }
}

/// `submit` of `n` replacement plans, then `advance` until all are done (the planning
/// pass before it is not timed).
async fn first_pass(n: usize) -> FirstPass {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, _) = seeded_sim(dir.path(), &one_replica_groups(n, "ami-old")).await;
    let new = one_replica_groups(n, "ami-new");
    let counting = Arc::new(Counting {
        inner: sim.clone(),
        inventories: AtomicU32::new(0),
    });
    let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
    providers.insert("sim".to_string(), counting.clone());
    let mut exec = Executor::new("bench".to_string(), providers, ExecutorOptions::default());
    let mut store = Store::open(&dir.path().join("state"), StoreOptions::default()).expect("store");
    let config = ReconcileConfig {
        max_replacements: u32::try_from(n).expect("fits"),
        max_replacement_fraction: 1.0,
        ..ReconcileConfig::default()
    };
    let now = SystemTime::now();
    let inventory = sim.inventory("bench").await;
    let outcome = plan(&PlanInput {
        revision: "c1",
        owner: "bench",
        groups: &new,
        inventories: &[inventory],
        config: &config,
        memory: &PlanMemory::default(),
        failed: &[],
        images: &phoenix_core::policy::NO_POLICY,
        traffic: &phoenix_core::traffic::NO_TRAFFIC,
        now,
    })
    .expect("plan");
    let planned = outcome
        .document
        .groups
        .iter()
        .filter(|g| !g.steps.is_empty())
        .count();
    assert_eq!(planned, n, "every group is planned");
    let start = Instant::now();
    exec.submit(&mut store, &outcome.document, &new, "c1", now)
        .expect("submit");
    let submit = start.elapsed();
    let start = Instant::now();
    let mut t = now;
    let mut advances = 0;
    loop {
        let progress = exec.advance(&mut store, t).await.expect("advance");
        advances += 1;
        if progress.wake_after.is_none() || store.unfinished_plans().expect("plans").is_empty() {
            break;
        }
        t += progress.wake_after.unwrap_or_default();
    }
    let advance = start.elapsed();
    let inventory_reads = counting.inventories.load(Ordering::Relaxed);
    let inventory = sim.inventory("bench").await;
    assert_eq!(inventory.instances.len(), n, "one instance per group");
    assert!(
        inventory.instances.iter().all(|i| i.image == "ami-new"),
        "every group replaced"
    );
    assert!(
        inventory_reads <= advances,
        "{inventory_reads} inventory reads in {advances} advances"
    );
    FirstPass {
        groups: n,
        submit,
        advance,
        advances,
        inventory_reads,
    }
}

/// Baseline for the first pass: the same replacements as bare sim calls (launch one new
/// instance, terminate the old one, per group) on a sim seeded the same way.
async fn bare_replacements(n: usize) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, old_ids) = seeded_sim(dir.path(), &one_replica_groups(n, "ami-old")).await;
    let new = one_replica_groups(n, "ami-new");
    let start = Instant::now();
    for (i, (g, old)) in new.iter().zip(&old_ids).enumerate() {
        sim.launch(&LaunchRequest {
            owner: "bench".to_string(),
            group: g.group.name().clone(),
            template: g.group.spec.template.clone(),
            spec_hash: g.hash,
            commit: "c1".to_string(),
            plan_id: "bare".to_string(),
            launch_token: format!("bare-{i}"),
            count: 1,
        })
        .await
        .expect("launch");
        sim.terminate(std::slice::from_ref(old))
            .await
            .expect("terminate");
    }
    start.elapsed()
}

fn main() {
    let small = std::env::var("PHOENIX_BENCH_SIZE").is_ok_and(|v| v == "small")
        || !std::env::args().any(|a| a == "--bench");
    let (plans, replicas) = if small { (20, 100) } else { (250, 1_000) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (exec_step, bare_step) = rt.block_on(per_step(plans));
    let micros = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6);
    println!(
        "phoenix-daemon executor: {} steps ({plans} plans of {STEPS_PER_PLAN} zero-length bake steps)\n",
        plans * STEPS_PER_PLAN
    );
    println!("| case | mean µs per step | ratio |");
    println!("|---|---|---|");
    println!(
        "| executor: advance (intent, gate, done, reload, transitions) | {} | {:.2} |",
        micros(exec_step),
        exec_step.as_secs_f64() / bare_step.as_secs_f64()
    );
    println!(
        "| baseline: bare write_intent + mark_step_done | {} | 1.00 |",
        micros(bare_step)
    );
    println!(
        "RESULT {{\"bench\":\"executor_step\",\"plans\":{plans},\"steps\":{},\"executor_us_per_step\":{:.1},\"baseline_us_per_step\":{:.1},\"ratio\":{:.2},\"goal_us_per_step\":1000}}",
        plans * STEPS_PER_PLAN,
        exec_step.as_secs_f64() * 1e6,
        bare_step.as_secs_f64() * 1e6,
        exec_step.as_secs_f64() / bare_step.as_secs_f64()
    );
    println!(
        "\n| rolling replacement on sim, zero latency | instances | plan steps | wall |\n|---|---|---|---|"
    );
    let mut headline = Duration::ZERO;
    for surge in ["10%", "1"] {
        let (elapsed, steps) = rt.block_on(rolling_replacement(replicas, surge));
        println!(
            "| maxSurge {surge}, maxUnavailable 0 | {replicas} | {steps} | {:.2} s |",
            elapsed.as_secs_f64()
        );
        if surge == "10%" {
            headline = elapsed;
        }
    }
    let elapsed = headline;
    for per_round in [replicas / 10, 1] {
        let bare = rt.block_on(bare_sim_calls(replicas, per_round));
        println!(
            "| baseline: the sim calls alone, {} rounds of {per_round} | {replicas} | | {:.2} s |",
            replicas / per_round,
            bare.as_secs_f64()
        );
        if per_round == replicas / 10 {
            println!(
                "RESULT {{\"bench\":\"executor_rolling\",\"instances\":{replicas},\"max_surge\":\"10%\",\"wall_s\":{:.3},\"baseline_s\":{:.3},\"ratio\":{:.2},\"goal_s\":10}}",
                elapsed.as_secs_f64(),
                bare.as_secs_f64(),
                elapsed.as_secs_f64() / bare.as_secs_f64()
            );
        }
    }
    println!(
        "\n| first enforce pass on sim, N groups x 1 replica, every image changed | N | submit | advance | per plan | baseline per group (launch + terminate) | ratio | advances | inventory reads |\n|---|---|---|---|---|---|---|---|---|"
    );
    let sizes: [usize; 2] = if small { [100, 1_000] } else { [1_000, 10_000] };
    for n in sizes {
        let pass = rt.block_on(first_pass(n));
        let bare = rt.block_on(bare_replacements(n)) / u32::try_from(n).expect("fits");
        let per_plan = pass.per_plan();
        let ratio = per_plan.as_secs_f64() / bare.as_secs_f64();
        println!(
            "| executor: submit + advance until done | {n} | {:.0} ms | {:.0} ms | {} µs | {} µs | {ratio:.2} | {} | {} |",
            pass.submit.as_secs_f64() * 1e3,
            pass.advance.as_secs_f64() * 1e3,
            micros(per_plan),
            micros(bare),
            pass.advances,
            pass.inventory_reads
        );
        println!(
            "RESULT {{\"bench\":\"executor_first_pass\",\"groups\":{n},\"submit_ms\":{:.1},\"advance_ms\":{:.1},\"per_plan_us\":{:.1},\"baseline_per_group_us\":{:.1},\"ratio\":{ratio:.2},\"advances\":{},\"inventory_reads\":{}}}",
            pass.submit.as_secs_f64() * 1e3,
            pass.advance.as_secs_f64() * 1e3,
            per_plan.as_secs_f64() * 1e6,
            bare.as_secs_f64() * 1e6,
            pass.advances,
            pass.inventory_reads
        );
    }
    if !small {
        assert!(
            exec_step < Duration::from_millis(1),
            "goal missed: {exec_step:?} per step"
        );
        assert!(
            elapsed < Duration::from_secs(10),
            "goal missed: {elapsed:?} for {replicas}"
        );
    }
}
