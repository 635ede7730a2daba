//! `phoenix-bench`: the whole-daemon reconcile benchmark (issue 9) and the soak
//! (issue 17, [`soak`]).
//!
//! ```text
//! phoenix-bench reconcile --phoenix PATH [--groups 1000,10000,100000] [--replicas 3]
//!                         [--steady-passes 3] [--timeout-secs 900] [--keep]
//! phoenix-bench soak --phoenix PATH [--minutes 20] [--cloud sim|scale-ec2] [--keep]
//! ```
//!
//! For each size N: write N desired-state files into a folder source, seed the sim's
//! persisted state with the matching in-sync fleet (N x replicas instances, tagged as the
//! executor tags them), start the real `phoenix run` on it as a child process (enforce
//! mode, loopback port, poll and pass timers at 1 h so only the benchmark triggers
//! passes), and measure:
//!
//! - the cold start: the wall time from spawn until `/readyz` answers (scan and parse
//!   every file, then a full pass: inventory, classify, plan, submit nothing, publish),
//!   and the pass time until then from the daemon's own
//!   `phoenix_reconcile_duration_seconds` histogram (the source is read off the loop, so
//!   that is the pass after the cold load plus an empty start pass);
//! - steady-state passes, each triggered with `POST /api/v1/reconcile` and read as the
//!   histogram's `_sum` delta when `_count` moves by one;
//! - the daemon's peak RSS (`VmHWM` in `/proc/<pid>/status`).
//!
//! Then, with the daemon stopped so nothing competes for the cores, the same-run
//! baselines on the same files and sim: read + SHA-256 of every spec file; read, parse
//! and hash of every file; the sim's inventory call alone; the pure planner alone. Prints
//! one `RESULT {json}` line per size for `scripts/bench.sh`. Every wait is bounded;
//! traffic goes to 127.0.0.1 only.

mod fleet;
mod http;
mod soak;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use phoenix_cloud::Provider;
use phoenix_cloud::sim::SimProvider;
use phoenix_core::config::ReconcileConfig;
use phoenix_core::parse_group;
use phoenix_core::plan::{PlanInput, PlanMemory, plan};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const TOKEN: &str = "phoenix-bench-token";

/// A bounded wait ran out: recorded in the result (the figure is "more than the
/// bound"), unlike other errors, which fail the run.
#[derive(Debug)]
struct TimedOut(String);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimedOut {}

#[derive(Debug)]
struct Args {
    phoenix: PathBuf,
    groups: Vec<usize>,
    replicas: u32,
    steady_passes: usize,
    timeout: Duration,
    keep: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("reconcile") => {}
        _ => bail!(
            "usage: phoenix-bench reconcile --phoenix PATH [--groups 1000,10000] [--replicas 3] [--steady-passes 3] [--timeout-secs 900] [--keep]"
        ),
    }
    let mut out = Args {
        phoenix: PathBuf::new(),
        groups: vec![1_000, 10_000, 100_000],
        replicas: 3,
        steady_passes: 3,
        timeout: Duration::from_secs(900),
        keep: false,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--phoenix" => out.phoenix = PathBuf::from(value()?),
            "--groups" => {
                out.groups = value()?
                    .split(',')
                    .map(|n| n.trim().parse().context("--groups: a list of numbers"))
                    .collect::<Result<_>>()?
            }
            "--replicas" => out.replicas = value()?.parse().context("--replicas")?,
            "--steady-passes" => {
                out.steady_passes = value()?.parse::<usize>().context("--steady-passes")?.max(1)
            }
            "--timeout-secs" => {
                out.timeout = Duration::from_secs(value()?.parse().context("--timeout-secs")?)
            }
            "--keep" => out.keep = true,
            other => bail!("unknown argument {other}"),
        }
    }
    if out.phoenix.as_os_str().is_empty() {
        bail!("--phoenix PATH (the phoenix binary) is required");
    }
    Ok(out)
}

/// `phoenix-bench soak ...`: run the soak and print its `RESULT`.
fn soak_main(mut args: impl Iterator<Item = String>) -> ExitCode {
    let mut soak = soak::SoakArgs {
        phoenix: PathBuf::new(),
        minutes: 20.0,
        keep: false,
        cloud: soak::Cloud::Sim,
    };
    while let Some(flag) = args.next() {
        if flag == "--keep" {
            soak.keep = true;
            continue;
        }
        match (flag.as_str(), args.next()) {
            ("--phoenix", Some(v)) => soak.phoenix = PathBuf::from(v),
            ("--cloud", Some(v)) if v == "sim" => soak.cloud = soak::Cloud::Sim,
            ("--cloud", Some(v)) if v == "scale-ec2" => soak.cloud = soak::Cloud::ScaleEc2,
            ("--minutes", Some(v)) if v.parse::<f64>().is_ok_and(|m| m > 0.0) => {
                soak.minutes = v.parse().expect("checked");
            }
            _ => {
                eprintln!(
                    "usage: phoenix-bench soak --phoenix PATH [--minutes 20] [--cloud sim|scale-ec2] [--keep]"
                );
                return ExitCode::from(64);
            }
        }
    }
    if soak.phoenix.as_os_str().is_empty() {
        eprintln!("phoenix-bench soak: --phoenix PATH is required");
        return ExitCode::from(64);
    }
    match soak::run(&soak) {
        Ok(result) => {
            println!("RESULT {result}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("phoenix-bench: soak failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let mut raw = std::env::args().skip(1);
    if raw.next().as_deref() == Some("soak") {
        return soak_main(raw);
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("phoenix-bench: {err:#}");
            return ExitCode::from(64);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    for &groups in &args.groups {
        match run_scale(&runtime, &args, groups) {
            Ok(result) => println!("RESULT {result}"),
            Err(err) => {
                eprintln!("phoenix-bench: reconcile at {groups} groups failed: {err:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[phoenix-bench] {}", msg.as_ref());
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The `phoenix run` child; stopped (SIGTERM, then SIGKILL after 15 s) when dropped.
struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    fn start(phoenix: &Path, config: &Path, log: PathBuf, port: u16) -> Result<Daemon> {
        Daemon::start_with_env(phoenix, config, log, port, &[])
    }

    /// [`Daemon::start`] with these extra environment variables.
    fn start_with_env(
        phoenix: &Path,
        config: &Path,
        log: PathBuf,
        port: u16,
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(phoenix)
            .args(["run", "--config"])
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .env("PHX_BENCH_TOKEN", TOKEN)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {}", phoenix.display()))?;
        Ok(Daemon { child, port, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the daemon has exited, with the end of its log.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let mut text = String::new();
            let _ = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "phoenix run exited ({status}); its log ends:\n{}",
                tail.join("\n")
            );
        }
        Ok(())
    }

    /// `(count, sum seconds)` of the reconcile-duration histogram.
    fn passes(&self) -> Result<(u64, f64)> {
        let (status, body) =
            http::request(self.port, "GET", "/metrics", None, Duration::from_secs(30))?;
        if status != 200 {
            bail!("GET /metrics: {status}");
        }
        let count = http::metric(&body, "phoenix_reconcile_duration_seconds_count")
            .context("no phoenix_reconcile_duration_seconds_count in /metrics")?;
        let sum = http::metric(&body, "phoenix_reconcile_duration_seconds_sum")
            .context("no phoenix_reconcile_duration_seconds_sum in /metrics")?;
        Ok((count as u64, sum))
    }

    /// Wait until `/readyz` answers 200 (a complete pass over the source's first
    /// revision); returns the histogram then. The source is read off the loop, so the
    /// passes until then are the start pass (no revision yet) and the one that follows
    /// the cold load: their sum is the pass time of the cold start.
    fn wait_ready(&mut self, deadline: Instant) -> Result<(u64, f64)> {
        loop {
            self.check_alive()?;
            if let Ok((200, _)) =
                http::request(self.port, "GET", "/readyz", None, Duration::from_secs(30))
            {
                return self.passes();
            }
            if Instant::now() >= deadline {
                return Err(TimedOut("the daemon was not ready before the deadline".into()).into());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Wait until the histogram has recorded more than `after` passes.
    fn wait_passes(&mut self, after: u64, deadline: Instant) -> Result<(u64, f64)> {
        loop {
            self.check_alive()?;
            if let Ok((count, sum)) = self.passes()
                && count > after
            {
                return Ok((count, sum));
            }
            if Instant::now() >= deadline {
                return Err(TimedOut(format!(
                    "no reconcile pass recorded past {after} before the deadline"
                ))
                .into());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_scale(runtime: &tokio::runtime::Runtime, args: &Args, groups: usize) -> Result<Value> {
    let root = std::env::temp_dir().join(format!(
        "phoenix-bench-reconcile-{}-{groups}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    let result = measure(runtime, args, groups, &root);
    if args.keep {
        log(format!("kept {}", root.display()));
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    groups: usize,
    root: &Path,
) -> Result<Value> {
    let desired_dir = root.join("desired");
    let state_dir = root.join("state");
    std::fs::create_dir_all(&state_dir)?;
    let load_before = load_average();

    // 1. The fleet: files and the matching in-sync sim.
    let t0 = Instant::now();
    let paths = fleet::write_specs(&desired_dir, groups, args.replicas)?;
    let parsed = fleet::parse_all(groups, args.replicas)?;
    let created = runtime.block_on(fleet::seed(&state_dir, &parsed))?;
    drop(parsed);
    log(format!(
        "{groups} groups, {created} instances generated and seeded in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));

    // 2. The daemon.
    let port = free_port()?;
    let config = root.join("phoenix.yaml");
    std::fs::write(
        &config,
        format!(
            "owner: {owner}\nsource:\n  dir: {{path: desired, watch: false, interval: 1h}}\nproviders:\n  - {{name: {provider}, type: sim, launch_latency: 0s}}\nreconcile: {{interval: 1h, mode: enforce}}\nstate: {{path: state}}\nserver: {{listen: \"127.0.0.1:{port}\", token_env: PHX_BENCH_TOKEN}}\n",
            owner = fleet::OWNER,
            provider = fleet::PROVIDER,
        ),
    )?;
    let spawned = Instant::now();
    let mut daemon = Daemon::start(&args.phoenix, &config, root.join("daemon.log"), port)?;
    let deadline = spawned + args.timeout;
    let (count, first_sum) = match daemon.wait_ready(deadline) {
        Ok(passes) => passes,
        Err(err) if err.is::<TimedOut>() => {
            let hwm = status_kib(daemon.pid(), "VmHWM:").unwrap_or(0);
            daemon.stop();
            log(format!(
                "the first pass did not end within {} s; peak RSS so far {} MiB",
                args.timeout.as_secs(),
                hwm / 1024
            ));
            let mut result = baselines(runtime, &paths, &state_dir, created)?;
            let extra = json!({
                "groups": groups, "instances": created, "replicas": args.replicas,
                "timed_out_after_s": args.timeout.as_secs(),
                "first_pass_ms": null, "steady_pass_ms": null,
                "peak_rss_kib": hwm, "load_before": load_before, "load_during": load_average(),
            });
            merge(&mut result, extra);
            return Ok(result);
        }
        Err(err) => return Err(err),
    };
    let ready_wall = spawned.elapsed();
    log(format!(
        "passes until ready {:.0} ms (ready {:.0} ms after spawn)",
        first_sum * 1e3,
        ms(ready_wall)
    ));

    // The fleet must be in sync, or the passes would measure something else.
    let (code, body) = http::request(port, "GET", "/api/v1/status", None, Duration::from_secs(30))?;
    if code != 200 {
        bail!("GET /api/v1/status: {code}");
    }
    let status: Value = serde_json::from_str(&body).context("status JSON")?;
    let in_sync = status["groups"]["in_sync"].as_u64().unwrap_or(0);
    let total = status["groups"]["total"].as_u64().unwrap_or(0);
    let observed = status["inventory"][0]["instances"].as_u64().unwrap_or(0);
    let running = status["plans"]["running"].as_u64().unwrap_or(0);
    if total != groups as u64 || in_sync != total || observed != created || running != 0 {
        bail!(
            "the fleet is not in sync when ready: {}",
            serde_json::to_string(&status["groups"])?
        );
    }

    // 3. Steady-state passes, one at a time.
    let mut steady = Vec::new();
    let (mut count, mut sum) = (count, first_sum);
    for _ in 0..args.steady_passes {
        let (code, body) = http::request(
            port,
            "POST",
            "/api/v1/reconcile",
            Some(TOKEN),
            Duration::from_secs(30),
        )?;
        if code != 202 {
            bail!("POST /api/v1/reconcile: {code} {body}");
        }
        let pass_deadline = Instant::now() + args.timeout;
        let (c, s) = match daemon.wait_passes(count, pass_deadline) {
            Ok(passes) => passes,
            Err(err) if err.is::<TimedOut>() => {
                log(format!(
                    "a steady pass did not end within {} s",
                    args.timeout.as_secs()
                ));
                break;
            }
            Err(err) => return Err(err),
        };
        if c != count + 1 {
            bail!("expected one pass, the histogram moved from {count} to {c}");
        }
        steady.push((s - sum) * 1e3);
        (count, sum) = (c, s);
    }
    let hwm = status_kib(daemon.pid(), "VmHWM:").unwrap_or(0);
    let rss = status_kib(daemon.pid(), "VmRSS:").unwrap_or(0);
    let load_during = load_average();
    daemon.stop();
    log(format!(
        "steady passes {:?} ms; peak RSS {} MiB",
        steady,
        hwm / 1024
    ));

    // 4. Baselines, with the daemon stopped.
    let mut result = baselines(runtime, &paths, &state_dir, created)?;
    let steady_median = if steady.is_empty() {
        None
    } else {
        Some(median(steady.clone()))
    };
    merge(
        &mut result,
        json!({
            "groups": groups,
            "instances": created,
            "replicas": args.replicas,
            "first_pass_ms": (first_sum * 1e6).round() / 1e3,
            "ready_wall_ms": ms(ready_wall),
            "steady_pass_ms": steady_median,
            "steady_samples_ms": steady,
            "timed_out_after_s": if steady.len() < args.steady_passes { Some(args.timeout.as_secs()) } else { None },
            "peak_rss_kib": hwm,
            "rss_kib": rss,
            "load_before": load_before,
            "load_during": load_during,
        }),
    );
    Ok(result)
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

/// The same-run baselines on the same files and sim (run with the daemon stopped).
fn baselines(
    runtime: &tokio::runtime::Runtime,
    paths: &[PathBuf],
    state_dir: &Path,
    created: u64,
) -> Result<Value> {
    let read_sha = (0..2)
        .map(|_| -> Result<f64> {
            let t = Instant::now();
            for p in paths {
                let bytes = std::fs::read(p)?;
                std::hint::black_box(Sha256::digest(&bytes));
            }
            Ok(ms(t.elapsed()))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    let t = Instant::now();
    let parsed = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)?;
            parse_group(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let parse_ms = ms(t.elapsed());
    let (open_ms, inventory_ms, inventory) = runtime.block_on(async {
        let t = Instant::now();
        let sim = SimProvider::open(&fleet::sim_config(), state_dir).await?;
        let open_ms = ms(t.elapsed());
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..3 {
            let t = Instant::now();
            let inv = sim.inventory(fleet::OWNER).await;
            times.push(ms(t.elapsed()));
            last = Some(inv);
        }
        anyhow::Ok((open_ms, median(times), last.expect("three runs")))
    })?;
    if !inventory.complete || inventory.instances.len() as u64 != created {
        bail!(
            "baseline inventory: {} instances",
            inventory.instances.len()
        );
    }
    let inventories = vec![inventory];
    let reconcile = ReconcileConfig::default();
    let memory = PlanMemory::default();
    let mut plan_times = Vec::new();
    for _ in 0..3 {
        let input = PlanInput {
            revision: "bench",
            owner: fleet::OWNER,
            groups: &parsed,
            inventories: &inventories,
            config: &reconcile,
            memory: &memory,
            failed: &[],
            images: &phoenix_core::policy::NO_POLICY,
            now: SystemTime::now(),
        };
        let t = Instant::now();
        let outcome = plan(&input).map_err(|e| anyhow::anyhow!("plan: {e}"))?;
        plan_times.push(ms(t.elapsed()));
        let steps: usize = outcome.document.groups.iter().map(|g| g.steps.len()).sum();
        if steps != 0 {
            bail!("baseline plan of an in-sync fleet has {steps} steps");
        }
    }
    let plan_ms = median(plan_times);
    log(format!(
        "baselines: read+sha256 {read_sha:.0} ms, read+parse+hash {parse_ms:.0} ms, sim open {open_ms:.0} ms, inventory {inventory_ms:.0} ms, plan {plan_ms:.0} ms"
    ));

    Ok(json!({
        "bench": "reconcile",
        "mode": "enforce, fleet in sync",
        "baseline_read_sha256_ms": read_sha,
        "baseline_parse_ms": parse_ms,
        "baseline_sim_open_ms": open_ms,
        "baseline_inventory_ms": inventory_ms,
        "baseline_plan_ms": plan_ms,
    }))
}
