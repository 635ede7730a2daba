//! Benchmark for change windows at fleet size (issue 21): every pass evaluates every
//! group's window standing once, where it publishes the API snapshot, and the planner
//! does the same for the groups it plans. `Windows::at` walks the schedules once per
//! distinct set of windows matching a group; this measures it over 100,000 groups
//! against two baselines in the same run: the glob matching alone (the floor: every
//! group is matched against every window), and `Windows::state` group by group (no
//! cache), timed on a sample and scaled to the fleet.
//!
//! Run: `cargo bench -p phoenix-core --bench windows` (release profile), or through
//! `scripts/bench.sh`. `PHOENIX_BENCH_SIZE=small` runs 1,000 groups.
//!
//! The instant is a Saturday noon in a weekend freeze, so most groups are blocked and
//! each blocked group's end is a real schedule walk: a weekend deny on `web-*` (Europe/
//! Berlin), an office-hours allow on `api-*`, a Christmas deny on `*-eu` (closed) and a
//! nightly deny on `batch-*`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use phoenix_core::window::{WindowConfig, WindowKind, Windows, glob};

fn window(kind: WindowKind, schedule: &str, hours: u64, tz: &str, groups: &[&str]) -> WindowConfig {
    WindowConfig {
        kind,
        schedule: schedule.to_owned(),
        duration: Duration::from_secs(hours * 3600),
        timezone: tz.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

fn configs() -> Vec<WindowConfig> {
    vec![
        window(
            WindowKind::Deny,
            "0 18 * * 5",
            62,
            "Europe/Berlin",
            &["web-*"],
        ),
        window(WindowKind::Allow, "0 9 * * 1-5", 8, "UTC", &["api-*"]),
        window(WindowKind::Deny, "0 12 24 12 *", 48, "UTC", &["*-eu"]),
        window(
            WindowKind::Deny,
            "0 1 * * *",
            4,
            "America/New_York",
            &["batch-*"],
        ),
    ]
}

/// Group names: a mix of prefixes and regions, so several distinct window sets occur.
fn names(groups: usize) -> Vec<String> {
    let prefixes = ["web", "api", "batch", "cache", "db"];
    let regions = ["eu", "us", "ap"];
    (0..groups)
        .map(|i| {
            format!(
                "{}-{i:06}-{}",
                prefixes[i % prefixes.len()],
                regions[(i / 5) % regions.len()]
            )
        })
        .collect()
}

/// Median wall time of `runs` runs of `f`.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut all: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    all.sort_unstable();
    all[runs / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a libtest filter argument is ignored here.
    let small = std::env::var("PHOENIX_BENCH_SIZE").is_ok_and(|v| v == "small");
    let groups = if small { 1_000 } else { 100_000 };
    let sample = if small { 50 } else { 1_000 };
    let runs = if small { 5 } else { 9 };
    let configs = configs();
    let windows = Windows::compile(&configs).unwrap();
    let names = names(groups);
    // Saturday 2026-03-14 12:00 UTC.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_773_489_600);

    let mut blocked = 0usize;
    let cached = time(runs, || {
        let mut at = windows.at(now, None);
        blocked = names.iter().filter(|n| at.state(n).blocked).count();
        blocked
    });
    // Baseline 1: match every group against every window's globs, nothing more.
    let globs = time(runs, || {
        names
            .iter()
            .map(|n| {
                configs
                    .iter()
                    .filter(|c| c.groups.iter().any(|g| glob(g, n)))
                    .count()
            })
            .sum::<usize>()
    });
    // Baseline 2: no cache, one schedule walk per group, on a sample.
    let step = groups / sample;
    let uncached_sample = time(runs, || {
        names
            .iter()
            .step_by(step)
            .filter(|n| windows.state(n, now, None).blocked)
            .count()
    });
    let uncached = uncached_sample.as_secs_f64() * (groups as f64 / sample as f64);
    // The answers agree.
    let mut at = windows.at(now, None);
    for n in names.iter().step_by(step) {
        assert_eq!(at.state(n), windows.state(n, now, None), "{n}");
    }

    let ms = |d: f64| d * 1000.0;
    println!(
        "windows: {groups} groups, {} windows, {blocked} blocked",
        configs.len()
    );
    println!(
        "cached evaluation (Windows::at): {:.2} ms",
        ms(cached.as_secs_f64())
    );
    println!("glob matching alone: {:.2} ms", ms(globs.as_secs_f64()));
    println!(
        "uncached Windows::state per group: {:.2} ms for {sample} groups, {:.1} ms scaled to {groups}",
        ms(uncached_sample.as_secs_f64()),
        ms(uncached)
    );
    println!(
        "RESULT {{\"bench\": \"windows\", \"groups\": {groups}, \"windows\": {}, \"blocked\": {blocked}, \"cached_ms\": {:.3}, \"globs_ms\": {:.3}, \"uncached_ms\": {:.3}}}",
        configs.len(),
        ms(cached.as_secs_f64()),
        ms(globs.as_secs_f64()),
        ms(uncached)
    );
}
