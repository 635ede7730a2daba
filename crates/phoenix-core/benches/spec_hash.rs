//! Benchmark (issue 2): parse + validate + hash of ~1 KB desired-state specs, against
//! SHA-256 of the same bytes measured in the same run.
//!
//! Run with `cargo bench -p phoenix-core --bench spec_hash` (20,000 specs, 7 rounds;
//! `PHOENIX_BENCH_SIZE=small` runs 2,000 specs, 3 rounds). Prints one line per
//! measurement and a `RESULT` line in JSON for `scripts/bench.sh`. Goal: at least
//! 50,000 specs/s on one core.
//!
//! Besides the goal measurement (`phoenix::parse_group`: parse + validate + hash) and the
//! SHA-256 baseline, the same run measures serde-saphyr alone on the same specs (the
//! parser `yaml::from_str` falls back to, and the only one before the fast path), so the
//! fast path's gain is read from one process on one machine state.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

#[path = "../tests/it/spec_gen/mod.rs"]
mod spec_gen;

use spec_gen::spec;

/// Median of `rounds` timings of `f` over all inputs.
fn measure(rounds: usize, inputs: &[String], mut f: impl FnMut(&str)) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for input in inputs {
                f(input);
            }
            start.elapsed()
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no flag and
    // only needs it to work, so keep that run short.
    let full = std::env::args().any(|a| a == "--bench");
    let small = std::env::var("PHOENIX_BENCH_SIZE").is_ok_and(|v| v == "small");
    let (count, rounds) = match (full, small) {
        (false, _) => (200, 1),
        (true, true) => (2_000, 3),
        (true, false) => (20_000, 7),
    };
    let inputs: Vec<String> = (0..count).map(spec).collect();
    let bytes: usize = inputs.iter().map(String::len).sum();
    let avg = bytes / count;

    // Warm up and check every input is valid, so the benchmark measures the happy path.
    for input in &inputs {
        let parsed = phoenix_core::parse_group(input).expect("benchmark specs are valid");
        // The benchmark is about the common case: say so if it stops being the fast one.
        let fast = phoenix_core::yaml::from_str_fast::<phoenix_core::InstanceGroup>(input);
        assert_eq!(
            fast.as_ref(),
            Some(&*parsed.group),
            "fast path declined a spec"
        );
    }
    let phoenix = measure(rounds, &inputs, |s| {
        black_box(phoenix_core::parse_group(black_box(s)).expect("valid"));
    });
    // Where the time goes: `yaml::from_str` alone (the fast path here), reading into nothing.
    let parse_only = measure(rounds, &inputs, |s| {
        black_box(
            phoenix_core::yaml::from_str::<serde::de::IgnoredAny>(black_box(s)).expect("valid"),
        );
    });
    // The same work through serde-saphyr alone: what every spec cost before the fast path.
    let saphyr = measure(rounds, &inputs, |s| {
        let group: phoenix_core::InstanceGroup =
            phoenix_core::yaml::from_str_reference(black_box(s)).expect("valid");
        black_box(group.hash());
    });
    let baseline = measure(rounds, &inputs, |s| {
        black_box(Sha256::digest(black_box(s.as_bytes())));
    });

    let per_sec = |d: Duration| count as f64 / d.as_secs_f64();
    let mb_per_sec = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    println!("spec parse+validate+hash: {count} specs of ~{avg} B");
    println!(
        "  phoenix  {:>12.0} specs/s  {:>8.1} MB/s",
        per_sec(phoenix),
        mb_per_sec(phoenix)
    );
    println!(
        "  yaml parse only {:>5.0} specs/s  {:>8.1} MB/s",
        per_sec(parse_only),
        mb_per_sec(parse_only)
    );
    println!(
        "  serde-saphyr alone (parse + hash) {:>5.0} specs/s  {:>8.1} MB/s",
        per_sec(saphyr),
        mb_per_sec(saphyr)
    );
    println!(
        "  sha256   {:>12.0} specs/s  {:>8.1} MB/s",
        per_sec(baseline),
        mb_per_sec(baseline)
    );
    println!(
        "  ratio (phoenix time / sha256 time): {:.1}x",
        phoenix.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "RESULT {{\"bench\":\"spec_hash\",\"specs\":{count},\"avg_bytes\":{avg},\"phoenix_specs_per_s\":{:.0},\"parse_only_specs_per_s\":{:.0},\"serde_saphyr_specs_per_s\":{:.0},\"sha256_specs_per_s\":{:.0},\"ratio_vs_sha256\":{:.1},\"goal_specs_per_s\":50000}}",
        per_sec(phoenix),
        per_sec(parse_only),
        per_sec(saphyr),
        per_sec(baseline),
        phoenix.as_secs_f64() / baseline.as_secs_f64()
    );
}
