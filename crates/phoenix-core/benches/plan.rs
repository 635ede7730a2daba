//! Benchmark for drift classification + planning (issue 5): 100,000 groups and
//! 300,000 instances classified and planned in one pass on one core, against two
//! baselines measured in the same run, with peak memory from `/proc/self/status`.
//!
//! Run: `cargo bench -p phoenix-core --bench plan` (release profile).
//! `PHOENIX_BENCH_SIZE=small` runs 1,000 groups / 3,000 instances instead.
//!
//! The fleet is realistic rather than trivial: most groups are in sync, and the rest
//! are outdated, modified, unhealthy, short of replicas, surplus or orphaned, so every
//! code path of the planner runs. Caps are open so every drifted group gets full steps.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use phoenix_core::config::ReconcileConfig;
use phoenix_core::model::{Instance, InstanceHealth, InstanceState, Inventory};
use phoenix_core::plan::{PlanInput, PlanMemory, plan};
use phoenix_core::spec::{GroupName, InstanceGroup, ParsedGroup};
use phoenix_core::{Text, parse_group, tags};

const OWNER: &str = "bench";

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600)
}

fn base_group() -> ParsedGroup {
    parse_group(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: base\nspec:\n  provider: aws\n  replicas: 3\n  template:\n    image: ami-new\n    instanceType: t3.micro\n    subnetIds: [subnet-a, subnet-b]\n    securityGroupIds: [sg-1, sg-2]\n  rollout: {maxSurge: 1, bake: 30s}\n",
    )
    .expect("bench group parses")
}

fn instance(id: String, group: &str, hash: &str, image: &str) -> Instance {
    let mut t = BTreeMap::new();
    t.insert(tags::OWNER.to_owned(), OWNER.to_owned());
    t.insert(tags::GROUP.to_owned(), group.to_owned());
    t.insert(tags::SPEC_HASH.to_owned(), hash.to_owned());
    t.insert(tags::COMMIT.to_owned(), "abc123".to_owned());
    Instance {
        id: id.into(),
        state: InstanceState::Running,
        health: InstanceHealth::Healthy,
        image: image.into(),
        instance_type: "t3.micro".into(),
        subnet_id: Some("subnet-a".into()),
        security_group_ids: ["sg-1", "sg-2"].into_iter().map(Text::from).collect(),
        launch_time: Some(now() - Duration::from_secs(86_400)),
        private_ip: Some(std::net::Ipv4Addr::new(10, 0, 0, 1)),
        tags: t.into(),
    }
}

/// Build `groups` groups with ~3 instances each. Of every 100 groups: 90 in sync,
/// 4 outdated (all three old), 2 with one modified instance, 1 with one unhealthy
/// instance, 1 short of one replica, 1 with one surplus instance, 1 removed from the
/// desired state (orphaned).
fn fleet(groups: usize) -> (Vec<ParsedGroup>, Inventory) {
    let base = base_group();
    let mut desired = Vec::with_capacity(groups);
    let mut instances = Vec::with_capacity(groups * 3);
    for g in 0..groups {
        let name = format!("g{g:06}");
        let mut group = InstanceGroup::clone(&base.group);
        group.metadata.name = GroupName::new(name.clone()).unwrap();
        let hash = group.hash();
        let hash_text = hash.to_string();
        let old_hash = "v1:sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let kind = g % 100;
        let count = match kind {
            94 => 2,
            95 => 4,
            _ => 3,
        };
        for k in 0..count {
            let id = format!("i-{g:06}{k}");
            let mut i = if (90..94).contains(&kind) {
                instance(id, &name, old_hash, "ami-old")
            } else {
                instance(id, &name, &hash_text, "ami-new")
            };
            if k == 0 {
                match kind {
                    96 | 97 => i.instance_type = "t3.large".into(),
                    98 => i.health = InstanceHealth::Unhealthy,
                    _ => {}
                }
            }
            instances.push(i);
        }
        if kind != 99 {
            desired.push(ParsedGroup {
                group: group.into(),
                hash,
            });
        }
    }
    let inv = Inventory {
        provider: "aws".to_owned(),
        complete: true,
        collected_at: now(),
        instances,
        error: None,
    };
    (desired, inv)
}

fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (nanoseconds on
/// CPU). Unlike wall time it does not count time other processes held the core,
/// which matters on a shared 2-core machine.
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// Median wall time and median thread CPU time of `runs` calls.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut wall = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (c0, w0) = (thread_cpu(), Instant::now());
        black_box(f());
        wall.push(w0.elapsed());
        cpu.push(thread_cpu().saturating_sub(c0));
    }
    (median(wall), median(cpu))
}

fn main() {
    // `cargo bench` passes `--bench`; a libtest filter argument is ignored here.
    let small = std::env::var("PHOENIX_BENCH_SIZE").is_ok_and(|v| v == "small");
    let groups = if small { 1_000 } else { 100_000 };
    let runs = if small { 21 } else { 7 };

    let (desired, inv) = fleet(groups);
    let inventories = vec![inv];
    let config = ReconcileConfig {
        max_replacements: u32::MAX,
        max_replacement_fraction: 1.0,
        prune: true,
        ..ReconcileConfig::default()
    };
    let memory = PlanMemory::default();
    let input = PlanInput {
        revision: "abc123",
        owner: OWNER,
        groups: &desired,
        inventories: &inventories,
        config: &config,
        memory: &memory,
        failed: &[],
        images: &phoenix_core::policy::NO_POLICY,
        traffic: &phoenix_core::traffic::NO_TRAFFIC,
        now: now(),
    };
    let rss_setup = status_kib("VmRSS:");
    let hwm_setup = status_kib("VmHWM:");

    // Planning first, so that the peak it adds is not hidden by the baselines' clones.
    let planned = time(runs, || plan(&input).unwrap());
    let hwm_after_plan = status_kib("VmHWM:");
    // Baseline 1: clone the inventory (the cost of merely touching every instance).
    let clone = time(runs, || inventories[0].instances.clone());
    // Baseline 2: group instances by their group tag in a hash map (the minimum any
    // classifier must do).
    let group_by = time(runs, || {
        let mut m: HashMap<&str, Vec<&Instance>> = HashMap::with_capacity(groups);
        for i in &inventories[0].instances {
            m.entry(i.group().unwrap_or("")).or_default().push(i);
        }
        m.len()
    });

    let outcome = plan(&input).unwrap();
    let doc = &outcome.document;
    let with_steps = doc.groups.iter().filter(|g| !g.steps.is_empty()).count();
    let steps: usize = doc.groups.iter().map(|g| g.steps.len()).sum();
    let findings: usize = doc.groups.iter().map(|g| g.drift.len()).sum();
    let json = time(3, || serde_json::to_vec(doc).unwrap().len());
    let json_len = serde_json::to_vec(doc).unwrap().len();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("drift classification + planning (issue 5)");
    println!(
        "  fleet: {} desired groups, {} instances, {} groups with steps, {} steps, {} findings",
        desired.len(),
        inventories[0].instances.len(),
        with_steps,
        steps,
        findings
    );
    println!("  median of {runs} runs, one thread; CPU = thread CPU time, wall = elapsed:");
    println!(
        "  classify + plan      CPU {:8.1} ms   wall {:8.1} ms",
        ms(planned.1),
        ms(planned.0)
    );
    let ratio = |a: Duration, b: Duration| {
        if b.is_zero() {
            "n/a".to_owned()
        } else {
            format!("{:.1}x", a.as_secs_f64() / b.as_secs_f64())
        }
    };
    for (name, base) in [
        ("baseline clone   ", clone),
        ("baseline group-by", group_by),
    ] {
        println!(
            "  {name}    CPU {:8.1} ms   wall {:8.1} ms   plan/baseline: CPU {}, wall {}",
            ms(base.1),
            ms(base.0),
            ratio(planned.1, base.1),
            ratio(planned.0, base.0)
        );
    }
    println!("  (thread CPU time is kernel-tick granular: read the wall figures for small sizes)");
    println!(
        "  serialize JSON       CPU {:8.1} ms   ({:.1} MiB, not part of the goal)",
        ms(json.1),
        json_len as f64 / 1_048_576.0
    );
    println!(
        "  memory: RSS after building the input {:.0} MiB; peak (VmHWM) after planning {:.0} MiB (planning adds {:.0} MiB at peak)",
        rss_setup as f64 / 1024.0,
        hwm_after_plan as f64 / 1024.0,
        hwm_after_plan.saturating_sub(hwm_setup) as f64 / 1024.0
    );
    let goal = Duration::from_secs(1);
    if !small {
        println!(
            "  goal: under 1 s of CPU on one core -> {}",
            if planned.1 < goal { "met" } else { "NOT met" }
        );
    }
}
