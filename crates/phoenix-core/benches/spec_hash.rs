//! Benchmark (issue 2): parse + validate + hash of ~1 KB desired-state specs, against
//! SHA-256 of the same bytes measured in the same run.
//!
//! Run with `cargo bench -p phoenix-core --bench spec_hash`. Prints one line per
//! measurement and a `RESULT` line in JSON for `scripts/bench.sh`. Goal: at least
//! 50,000 specs/s on one core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A ~1 KB spec in the shape of the design's example, varied per index.
fn spec(i: usize) -> String {
    format!(
        r##"# Desired state for one instance group.
apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: group-{i}
  labels: {{team: storefront, tier: web, cost-center: "cc-{i}"}}
spec:
  provider: aws-prod
  replicas: {replicas}
  template:
    image: ami-{i:017x}
    instanceType: t3.micro
    subnetIds: [subnet-aaa, subnet-bbb, subnet-ccc]
    securityGroupIds: [sg-123, sg-456]
    keyName: ops
    userData: "#!/bin/sh\nset -eu\necho 'starting group-{i}'\nexec /usr/local/bin/app --port 8080\n"
    tags: {{app: web, port: 8080, canary: false, owner-email: "team@example.com"}}
  rollout:
    strategy: rolling
    maxSurge: "25%"
    maxUnavailable: 0
    bake: 30s
    autoRollback: true
  health:
    check: http
    http: {{port: 8080, path: /healthz}}
    grace: 30s
    deadline: 5m
  approval: auto
  suspend: false
"##,
        replicas = i % 10 + 1
    )
}

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
    let count = if full { 20_000 } else { 200 };
    let rounds = if full { 7 } else { 1 };
    let inputs: Vec<String> = (0..count).map(spec).collect();
    let bytes: usize = inputs.iter().map(String::len).sum();
    let avg = bytes / count;

    // Warm up and check every input is valid, so the benchmark measures the happy path.
    for input in &inputs {
        phoenix_core::parse_group(input).expect("benchmark specs are valid");
    }
    let phoenix = measure(rounds, &inputs, |s| {
        black_box(phoenix_core::parse_group(black_box(s)).expect("valid"));
    });
    // Where the time goes: the YAML parser alone, reading into nothing.
    let parse_only = measure(rounds, &inputs, |s| {
        black_box(
            phoenix_core::yaml::from_str::<serde::de::IgnoredAny>(black_box(s)).expect("valid"),
        );
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
        "  sha256   {:>12.0} specs/s  {:>8.1} MB/s",
        per_sec(baseline),
        mb_per_sec(baseline)
    );
    println!(
        "  ratio (phoenix time / sha256 time): {:.1}x",
        phoenix.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "RESULT {{\"bench\":\"spec_hash\",\"specs\":{count},\"avg_bytes\":{avg},\"phoenix_specs_per_s\":{:.0},\"parse_only_specs_per_s\":{:.0},\"sha256_specs_per_s\":{:.0},\"goal_specs_per_s\":50000}}",
        per_sec(phoenix),
        per_sec(parse_only),
        per_sec(baseline)
    );
}
