//! Memory of the desired state: how many bytes one parsed spec, and one file held by the
//! [`Loader`], keep on the heap. Time is not measured.
//!
//! Each case runs in a child process of its own (this executable again, with
//! `PHOENIX_MEM_CASE` set), so one case's peak cannot hide another's. A case reads
//! `VmRSS` and `VmHWM` from `/proc/self/status`, builds its data, reads them again and
//! prints the growth divided by the number of specs:
//!
//! - `parse`: `parse_group` on N generated specs, keeping every `ParsedGroup` (the
//!   `Vec` that holds them is subtracted); texts are made one at a time and dropped;
//! - `loader`: one `Loader::update` with N new files (texts made on demand by the read
//!   callback) and one `evaluate`, keeping the loader and the accepted group map;
//! - `dir/rescan`: a `DirSource` over a folder of `min(N, 20,000)` files (fewer, to
//!   spare the disk) polls once on another thread, then the figures are the growth over
//!   a second poll on the main thread that finds nothing changed: what every periodic
//!   rescan needs on top of the state (separate threads keep glibc from serving the
//!   second poll from memory the first one freed).
//!
//! "retained" is resident growth with the data still alive, "peak" the growth of the
//! high-water mark; both include the allocator's own overhead and any freed memory it
//! kept, so they are what the daemon pays in RSS, not a count of live bytes. For exact
//! heap figures run one case under heaptrack (the bench uses the system allocator) and
//! read its "peak heap memory consumption" (requested bytes, without the allocator's
//! overhead): `PHOENIX_MEM_CASE=loader/fleet heaptrack <this executable> --bench`.
//!
//! Two spec shapes: `fleet`, the one `phoenix-bench` generates for the whole-daemon
//! benchmark (one label, one tag), and `rich` (three labels, four tags). N is 100,000
//! under `cargo bench` and 10,000 otherwise (`PHOENIX_BENCH_SIZE=small`, or `cargo test`).

use std::process::Command;

use phoenix_core::config::DirSourceConfig;
use phoenix_core::parse_group;
use phoenix_core::spec::ParsedGroup;
use phoenix_source::loader::{BlobId, Change, Loader, Verdict};
use phoenix_source::{DirSource, PollOutcome};

const CASES: [&str; 4] = ["parse/fleet", "parse/rich", "loader/fleet", "dir/rescan"];
/// Most files the `dir/rescan` case writes.
const MAX_DIR_FILES: usize = 20_000;

/// Group `i`'s file in the shape `phoenix-bench` writes (crates/phoenix-bench/src/fleet.rs).
fn fleet_spec(i: usize) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: g-{i:06}\n  labels: {{team: t{team}}}\nspec:\n  provider: sim\n  replicas: 3\n  template:\n    image: ami-{i:017x}\n    instanceType: t3.micro\n    subnetIds: [subnet-a, subnet-b, subnet-c]\n    securityGroupIds: [sg-1]\n    tags: {{app: g-{i:06}}}\n  rollout: {{strategy: rolling, maxSurge: 1, maxUnavailable: 0}}\n  health: {{check: provider, grace: 0s, deadline: 2m}}\n",
        team = i % 17,
    )
}

/// A spec with more labels and tags, typed tag values included.
fn rich_spec(i: usize) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: g-{i:06}\n  labels: {{team: storefront, tier: web, cost-center: \"cc-{i}\"}}\nspec:\n  provider: sim\n  replicas: 3\n  template:\n    image: ami-{i:017x}\n    instanceType: t3.micro\n    subnetIds: [subnet-a, subnet-b, subnet-c]\n    securityGroupIds: [sg-1]\n    tags: {{app: web, port: 8080, canary: false, owner-email: \"team@example.com\"}}\n"
    )
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn memory() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let field = |name: &str| -> usize {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse::<usize>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or_else(|| panic!("{name} missing from /proc/self/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn blob_of(i: usize) -> BlobId {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
    BlobId::from_bytes(&bytes).expect("20 bytes make an object id")
}

fn index_of(blob: BlobId) -> usize {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&blob.as_bytes()[..8]);
    usize::try_from(u64::from_be_bytes(bytes)).expect("a small index")
}

/// Run one case and print `retained peak` bytes per spec on stdout.
fn run_case(case: &str, count: usize) {
    let (shape, spec): (&str, fn(usize) -> String) = match case.split_once('/') {
        Some((_, "fleet")) => ("fleet", fleet_spec),
        Some((_, "rich")) => ("rich", rich_spec),
        Some(("dir", "rescan")) => ("fleet", fleet_spec),
        _ => panic!("unknown case {case}"),
    };
    // Warm up whatever parsing allocates once (lazy statics, thread-locals).
    drop(parse_group(&spec(0)).expect("valid spec"));
    let (rss_before, hwm_before) = memory();
    if case == "dir/rescan" {
        rescan(count.min(MAX_DIR_FILES), spec);
    }
    let subtract;
    if case.starts_with("parse/") {
        let mut parsed: Vec<ParsedGroup> = Vec::with_capacity(count);
        for i in 0..count {
            parsed.push(parse_group(&spec(i)).expect("valid spec"));
        }
        subtract = std::mem::size_of_val(parsed.as_slice());
        report(case, shape, count, rss_before, hwm_before, subtract);
        std::hint::black_box(&parsed);
    } else {
        let mut loader = Loader::new();
        let changes: Vec<Change> = (0..count)
            .map(|i| Change::new(format!("s{:03}/g-{i:06}.yaml", i / 1000), Some(blob_of(i))))
            .collect();
        loader
            .update(changes, |_, blob| {
                Ok::<_, std::convert::Infallible>(spec(index_of(blob)).into_bytes())
            })
            .expect("the generator never fails");
        let Verdict::Accept(groups) = loader.evaluate() else {
            panic!("generated specs must be accepted");
        };
        assert_eq!(groups.len(), count);
        report(case, shape, count, rss_before, hwm_before, 0);
        std::hint::black_box((&loader, &groups));
    }
    // Leave without spending time on dropping 100,000 specs.
    std::process::exit(0);
}

/// The `dir/rescan` case: poll a folder once, then measure a poll that changes nothing.
fn rescan(count: usize, spec: fn(usize) -> String) -> ! {
    let dir = tempfile::tempdir().expect("bench folder");
    for i in 0..count {
        let folder = dir.path().join(format!("s{:03}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&folder).expect("create a folder");
        }
        std::fs::write(folder.join(format!("g-{i:06}.yaml")), spec(i)).expect("write a spec");
    }
    let config = DirSourceConfig {
        path: dir.path().to_path_buf(),
        watch: false,
        interval: std::time::Duration::from_secs(30),
    };
    // The first poll runs on another thread, so with glibc's malloc it allocates in that
    // thread's arena, and the memory it frees there cannot hide what the second poll (on
    // this thread, in the main arena) needs.
    let mut source = std::thread::spawn(move || {
        let mut source = DirSource::open(&config).expect("open the folder");
        let first = source.poll().expect("first poll");
        assert!(matches!(first, PollOutcome::Accepted { .. }), "{first:?}");
        source
    })
    .join()
    .expect("the first poll's thread");
    let (rss_before, hwm_before) = memory();
    let again = source.poll().expect("second poll");
    assert!(matches!(again, PollOutcome::Unchanged), "{again:?}");
    report("dir/rescan", "fleet", count, rss_before, hwm_before, 0);
    std::hint::black_box(&source);
    drop(dir);
    std::process::exit(0);
}

fn report(
    case: &str,
    shape: &str,
    count: usize,
    rss_before: usize,
    hwm_before: usize,
    subtract: usize,
) {
    let (rss, hwm) = memory();
    let retained = rss.saturating_sub(rss_before).saturating_sub(subtract) / count;
    let peak = hwm.saturating_sub(hwm_before).saturating_sub(subtract) / count;
    let (what, peak) = match case.split('/').next() {
        Some("parse") => ("parse_group, ParsedGroup kept", peak.to_string()),
        Some("loader") => (
            "Loader::update + evaluate, loader and groups kept",
            peak.to_string(),
        ),
        // The first poll set the high-water mark; this poll's own peak does not show.
        _ => (
            "DirSource::poll of an unchanged folder, over the first poll",
            "-".to_string(),
        ),
    };
    println!("| {what} | {shape} | {count} | {retained} | {peak} |");
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let small = std::env::var("PHOENIX_BENCH_SIZE").is_ok_and(|v| v == "small");
    let count = if full && !small { 100_000 } else { 10_000 };
    if let Ok(case) = std::env::var("PHOENIX_MEM_CASE") {
        run_case(&case, count);
        return;
    }
    println!("phoenix-source desired_memory: resident bytes per spec (RSS growth / specs)\n");
    println!("| case | spec shape | specs | retained B/spec | peak B/spec |");
    println!("|---|---|---|---|---|");
    let exe = std::env::current_exe().expect("path of this executable");
    for case in CASES {
        let out = Command::new(&exe)
            .args(std::env::args().skip(1))
            .env("PHOENIX_MEM_CASE", case)
            .output()
            .expect("run a case in a child process");
        assert!(
            out.status.success(),
            "case {case} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
