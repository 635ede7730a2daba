//! Chaos driver for the executor's crash tests (issue 6, item 5): runs reconcile passes
//! (planner over a fixed desired state, sim inventory, executor submit and advance) in a
//! loop until converged, persisting everything in a state folder, so that a test can
//! SIGKILL it at any point and start it again.
//!
//! ```text
//! phoenix-chaos-driver <state-dir> [--launch-failure-rate F] [--error-rate F]
//!                      [--unhealthy IMAGE]... [--seed N] [--max-passes N]
//!                      [--target-group NAME:REGISTRATION_MS:DRAIN_MS[:UNHEALTHY_IMAGE]]...
//! ```
//!
//! `<state-dir>` holds `desired/*.yaml` (the groups) and `desired/COMMIT` (the commit id
//! to stamp), written by the test; `sim/` (the sim provider's cloud) and `state/` (the
//! store) are created here. Faults: sim launch failures (`--launch-failure-rate`),
//! injected server errors on terminate and health calls (`--error-rate`), and images
//! whose instances never become healthy (`--unhealthy`, which makes plans roll back).
//! `--target-group` gives the sim a load balancer target group with those delays (and
//! an image whose targets never get healthy); groups with `spec.traffic` then move
//! traffic, and register and deregister calls fail at `--error-rate` too.
//!
//! Exit codes: 0 converged (prints `converged`), 2 not converged within `--max-passes`,
//! 1 error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use flaky::FlakyProvider;
use phoenix_cloud::Provider;
use phoenix_cloud::sim::SimProvider;
use phoenix_core::config::{ReconcileConfig, SimConfig};
use phoenix_core::parse_group;
use phoenix_core::plan::{FailedGeneration, PlanInput, PlanMemory, plan};
use phoenix_core::spec::ParsedGroup;
use phoenix_daemon::executor::{Executor, ExecutorOptions};
use phoenix_store::{Store, StoreOptions};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The `phoenix:owner` the driver acts as.
pub const OWNER: &str = "chaos";

#[derive(Debug)]
struct Args {
    dir: PathBuf,
    launch_failure_rate: f64,
    error_rate: f64,
    unhealthy: Vec<String>,
    seed: u64,
    max_passes: u32,
    target_groups: Vec<phoenix_core::config::SimTargetGroup>,
}

/// `NAME:REGISTRATION_MS:DRAIN_MS[:UNHEALTHY_IMAGE]`.
fn target_group(text: &str) -> Result<phoenix_core::config::SimTargetGroup, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let ms = |s: &str| {
        s.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|e| format!("--target-group {text}: {e}"))
    };
    match parts.as_slice() {
        [name, reg, drain, rest @ ..] if rest.len() <= 1 => {
            Ok(phoenix_core::config::SimTargetGroup {
                registration_delay: ms(reg)?,
                deregistration_delay: ms(drain)?,
                unhealthy_images: rest.iter().map(|s| s.to_string()).collect(),
                ..phoenix_core::config::SimTargetGroup::named(name)
            })
        }
        _ => Err(format!(
            "--target-group {text}: expected NAME:REGISTRATION_MS:DRAIN_MS[:IMAGE]"
        )),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        dir: PathBuf::new(),
        launch_failure_rate: 0.0,
        error_rate: 0.0,
        unhealthy: Vec::new(),
        seed: 1,
        max_passes: 10_000,
        target_groups: Vec::new(),
    };
    let mut dir = None;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--launch-failure-rate" => {
                args.launch_failure_rate = value(&arg)?
                    .parse()
                    .map_err(|e| format!("--launch-failure-rate: {e}"))?;
            }
            "--error-rate" => {
                args.error_rate = value(&arg)?
                    .parse()
                    .map_err(|e| format!("--error-rate: {e}"))?;
            }
            "--unhealthy" => args.unhealthy.push(value(&arg)?),
            "--target-group" => args.target_groups.push(target_group(&value(&arg)?)?),
            "--seed" => args.seed = value(&arg)?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--max-passes" => {
                args.max_passes = value(&arg)?
                    .parse()
                    .map_err(|e| format!("--max-passes: {e}"))?;
            }
            other if !other.starts_with("--") && dir.is_none() => dir = Some(PathBuf::from(other)),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    args.dir = dir.ok_or("usage: phoenix-chaos-driver <state-dir> [options]")?;
    Ok(args)
}

fn load_desired(dir: &Path) -> Result<(Vec<ParsedGroup>, String), String> {
    let desired = dir.join("desired");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&desired)
        .map_err(|e| format!("read {}: {e}", desired.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut groups = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("read {}: {e}", file.display()))?;
        groups.push(parse_group(&text).map_err(|e| format!("{}: {}", file.display(), e.message))?);
    }
    let commit = std::fs::read_to_string(desired.join("COMMIT"))
        .map_err(|e| format!("read COMMIT: {e}"))?
        .trim()
        .to_string();
    Ok((groups, commit))
}

async fn run(args: Args) -> Result<bool, String> {
    let (groups, commit) = load_desired(&args.dir)?;
    let sim = SimProvider::open_dir(
        &SimConfig {
            name: "sim".to_string(),
            launch_latency: Duration::ZERO,
            launch_failure_rate: args.launch_failure_rate,
            unhealthy_images: args.unhealthy.clone(),
            images: Vec::new(),
            target_groups: args.target_groups.clone(),
        },
        args.dir.join("sim"),
    )
    .await
    .map_err(|e| format!("open sim: {e}"))?;
    let mut store = Store::open(&args.dir.join("state"), StoreOptions::default())
        .map_err(|e| format!("open store: {e}"))?;
    let flaky: Arc<dyn Provider> = Arc::new(FlakyProvider {
        inner: Arc::new(sim.clone()),
        error_rate: args.error_rate,
        rng: Mutex::new(StdRng::seed_from_u64(args.seed)),
    });
    let mut providers = BTreeMap::new();
    providers.insert("sim".to_string(), flaky);
    let mut planning: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
    planning.insert("sim".to_string(), Arc::new(sim.clone()));
    let options = ExecutorOptions {
        poll_interval: Duration::from_millis(20),
        retry_base: Duration::from_millis(5),
        retry_cap: Duration::from_millis(50),
        launch_attempts: 12,
        terminate_attempts: 12,
        ..ExecutorOptions::default()
    };
    let mut exec = Executor::new(OWNER.to_string(), providers, options);
    exec.recover(&mut store, SystemTime::now())
        .await
        .map_err(|e| format!("recover: {}", phoenix_daemon::error_chain(&e)))?;
    let mut memory: PlanMemory = store
        .load_planner_memory()
        .map_err(|e| format!("load memory: {e}"))?
        .unwrap_or_default();
    let config = ReconcileConfig {
        max_replacements: 1_000,
        max_replacement_fraction: 1.0,
        ..ReconcileConfig::default()
    };
    for pass in 0..args.max_passes {
        let now = SystemTime::now();
        let inventory = sim.inventory(OWNER).await;
        let traffic = phoenix_daemon::traffic::target_health(
            groups.iter().map(|g| g.group.as_ref()),
            &planning,
        )
        .await;
        let failed: Vec<FailedGeneration> = store
            .failed_hashes()
            .map_err(|e| format!("failed hashes: {e}"))?
            .into_iter()
            .map(|f| FailedGeneration {
                group: f.group.as_str().to_string(),
                hash: f.spec_hash,
                commit: f.commit,
            })
            .collect();
        let outcome = plan(&PlanInput {
            revision: &commit,
            owner: OWNER,
            groups: &groups,
            inventories: &[inventory],
            config: &config,
            memory: &memory,
            failed: &failed,
            images: &phoenix_core::policy::NO_POLICY,
            traffic: &traffic,
            now,
        })
        .map_err(|e| format!("plan: {e}"))?;
        memory = outcome.memory;
        store
            .save_planner_memory(&memory, now)
            .map_err(|e| format!("save memory: {e}"))?;
        exec.submit(&mut store, &outcome.document, &groups, &commit, now)
            .map_err(|e| format!("submit: {}", phoenix_daemon::error_chain(&e)))?;
        let progress = exec
            .advance(&mut store, now)
            .await
            .map_err(|e| format!("advance: {}", phoenix_daemon::error_chain(&e)))?;
        for t in &progress.transitions {
            eprintln!("{} {} {}", t.kind(), t.plan().plan, t.message());
        }
        let unfinished = store
            .unfinished_plans()
            .map_err(|e| format!("unfinished plans: {e}"))?;
        let active = unfinished.len();
        if pass % 500 == 499 {
            show_progress(pass, &unfinished, &outcome.document);
        }
        if !outcome.document.changes && active == 0 {
            return Ok(true);
        }
        let wait = progress
            .wake_after
            .unwrap_or(Duration::from_millis(5))
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        tokio::time::sleep(wait).await;
    }
    Ok(false)
}

/// Where a slow convergence stands: every unfinished plan's steps and every group.
fn show_progress(
    pass: u32,
    unfinished: &[phoenix_store::PlanWithSteps],
    document: &phoenix_core::plan::PlanDocument,
) {
    // A slow convergence shows where it stands.
    for p in unfinished {
        let steps: Vec<String> = p
            .steps
            .iter()
            .map(|s| format!("{}:{}:{}", s.action, s.status, s.attempt))
            .collect();
        eprintln!(
            "pass {pass}: plan {} {} {} [{}]",
            p.plan.id,
            p.plan.group,
            p.plan.status,
            steps.join(" ")
        );
    }
    for g in &document.groups {
        eprintln!(
            "pass {pass}: group {} {:?} steps {} notes {:?}",
            g.name,
            g.status,
            g.steps.len(),
            g.notes
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match run(args).await {
        Ok(true) => {
            println!("converged");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("not converged");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// A provider wrapper that fails terminate and health calls at a rate (server errors).
mod flaky {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use phoenix_cloud::{LaunchRequest, Provider, ProviderError, TargetGroupInfo, TargetRef};
    use phoenix_core::model::{Instance, InstanceHealth, Inventory};
    use phoenix_core::traffic::Target;
    use rand::Rng;
    use rand::rngs::StdRng;

    /// Fails `terminate`, `health` and the traffic calls with probability `error_rate`.
    #[derive(Debug)]
    pub struct FlakyProvider {
        pub inner: Arc<dyn Provider>,
        pub error_rate: f64,
        pub rng: Mutex<StdRng>,
    }

    impl FlakyProvider {
        fn roll(&self, operation: &'static str) -> Result<(), ProviderError> {
            let fail = self
                .rng
                .lock()
                .expect("the rng lock is never poisoned")
                .random::<f64>()
                < self.error_rate;
            if fail {
                return Err(ProviderError::Server {
                    provider: self.inner.name().to_string(),
                    operation,
                    status: 500,
                    code: "InternalError".to_string(),
                    message: "injected by the chaos driver".to_string(),
                    attempts: 1,
                });
            }
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl Provider for FlakyProvider {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn type_name(&self) -> &'static str {
            self.inner.type_name()
        }
        async fn inventory(&self, owner: &str) -> Inventory {
            self.inner.inventory(owner).await
        }
        async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>, ProviderError> {
            self.inner.launch(request).await
        }
        async fn terminate(&self, ids: &[String]) -> Result<(), ProviderError> {
            self.roll("TerminateInstances")?;
            self.inner.terminate(ids).await
        }
        async fn health(
            &self,
            ids: &[String],
        ) -> Result<BTreeMap<String, InstanceHealth>, ProviderError> {
            self.roll("DescribeInstanceStatus")?;
            self.inner.health(ids).await
        }
        async fn find_by_launch_token(
            &self,
            owner: &str,
            token: &str,
        ) -> Result<Vec<Instance>, ProviderError> {
            self.inner.find_by_launch_token(owner, token).await
        }
        async fn register_targets(
            &self,
            target_group: &str,
            targets: &[TargetRef],
        ) -> Result<(), ProviderError> {
            self.roll("RegisterTargets")?;
            self.inner.register_targets(target_group, targets).await
        }
        async fn deregister_targets(
            &self,
            target_group: &str,
            targets: &[TargetRef],
        ) -> Result<(), ProviderError> {
            self.roll("DeregisterTargets")?;
            self.inner.deregister_targets(target_group, targets).await
        }
        async fn target_health(&self, target_group: &str) -> Result<Vec<Target>, ProviderError> {
            self.roll("DescribeTargetHealth")?;
            self.inner.target_health(target_group).await
        }
        async fn target_group_info(
            &self,
            target_group: &str,
        ) -> Result<TargetGroupInfo, ProviderError> {
            self.inner.target_group_info(target_group).await
        }
    }
}
