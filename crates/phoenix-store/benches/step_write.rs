//! Benchmark for issue 6: the executor's store overhead per step, i.e. one
//! `write_intent` plus one `mark_step_done` (two committed transactions), against a
//! baseline measured in the same run on the same database file: one bare autocommit
//! `INSERT` of the same step row into a scratch table, through a plain rusqlite connection
//! with the same pragmas. Both are measured with `synchronous=NORMAL` (the default) and
//! `FULL`. Goal: under 1 ms per step.
//!
//! Runs 5,000 steps per case (200 when `PHOENIX_BENCH_SIZE=small`, or when not started by
//! `cargo bench`, e.g. under `cargo test --all-targets`). Prints a Markdown table for
//! docs/benchmarks.md.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use phoenix_core::SpecHash;
use phoenix_core::spec::Strategy;
use phoenix_store::{
    NewPlan, NewStep, PlanId, PlanKind, PlanStatus, StepAction, StepIntent, Store, StoreOptions,
    Synchronous,
};
use serde_json::json;

struct Figures {
    median: Duration,
    p99: Duration,
    mean: Duration,
}

fn figures(mut samples: Vec<Duration>) -> Figures {
    samples.sort();
    let n = samples.len();
    let total: Duration = samples.iter().sum();
    Figures {
        median: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
        mean: total / u32::try_from(n).expect("sample count fits in u32"),
    }
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_767_225_600_000 + ms)
}

fn detail(i: usize) -> serde_json::Value {
    json!({"count": 1, "subnet": "subnet-aaa", "n": i})
}

/// `steps` steps through intent + done on a fresh store; one sample per step.
fn store_steps(dir: &Path, synchronous: Synchronous, steps: usize) -> Vec<Duration> {
    let options = StoreOptions {
        synchronous,
        ..StoreOptions::default()
    };
    let mut store = Store::open(dir, options).expect("open store");
    let id = PlanId::new("bench-plan");
    let plan = NewPlan {
        id: id.clone(),
        group: phoenix_core::GroupName::new("bench").expect("valid name"),
        kind: PlanKind::Rollout {
            target_hash: format!("v1:sha256:{}", "ab".repeat(32))
                .parse::<SpecHash>()
                .expect("valid hash"),
            strategy: Strategy::Rolling,
        },
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        status: PlanStatus::Running,
        doc: json!({"steps": steps}),
        steps: (0..steps)
            .map(|i| NewStep {
                action: StepAction::Launch,
                detail: detail(i),
            })
            .collect(),
    };
    store.insert_plan(&plan, at(0)).expect("insert plan");
    let mut samples = Vec::with_capacity(steps);
    for i in 0..steps {
        let index = u32::try_from(i).expect("step index fits in u32");
        let ms = u64::from(index) * 2;
        let intent = StepIntent {
            attempt: 0,
            launch_token: Some(format!("bench-plan-{i}-0")),
            detail: None,
        };
        let launched = json!({"instances": [format!("i-{i:017x}")]});
        let start = Instant::now();
        store
            .write_intent(&id, index, &intent, at(ms + 1))
            .expect("write intent");
        store
            .mark_step_done(&id, index, Some(&launched), at(ms + 2))
            .expect("mark done");
        samples.push(start.elapsed());
    }
    samples
}

/// The baseline: a bare autocommit INSERT of the same row into a scratch table of the
/// same database file, same journal mode and synchronous setting.
fn bare_inserts(dir: &Path, synchronous: Synchronous, steps: usize) -> Vec<Duration> {
    let conn = rusqlite::Connection::open(dir.join(phoenix_store::DB_FILE_NAME)).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    let sync = match synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .expect("synchronous");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS bench_scratch (plan_id TEXT NOT NULL, idx INTEGER NOT NULL, \
         action TEXT NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL, launch_token TEXT, \
         detail TEXT NOT NULL, started_at INTEGER, PRIMARY KEY (plan_id, idx)) WITHOUT ROWID",
    )
    .expect("create scratch table");
    let mut stmt = conn
        .prepare(
            "INSERT INTO bench_scratch (plan_id, idx, action, status, attempt, launch_token, \
             detail, started_at) VALUES (?1, ?2, 'launch', 'intent', 0, ?3, ?4, ?5)",
        )
        .expect("prepare");
    let mut samples = Vec::with_capacity(steps);
    for i in 0..steps {
        let token = format!("bench-plan-{i}-0");
        let detail = detail(i).to_string();
        let start = Instant::now();
        stmt.execute(("bench-plan", i, token, detail, 1_767_225_600_000i64))
            .expect("insert");
        samples.push(start.elapsed());
    }
    samples
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn main() {
    let small = std::env::var("PHOENIX_BENCH_SIZE").is_ok_and(|v| v == "small")
        || !std::env::args().any(|a| a == "--bench");
    let steps = if small { 200 } else { 5_000 };
    println!("phoenix-store step_write: {steps} steps per case (WAL, bundled SQLite)\n");
    println!("| case | synchronous | median µs | p99 µs | mean µs | ratio (median) |");
    println!("|---|---|---|---|---|---|");
    for synchronous in [Synchronous::Normal, Synchronous::Full] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = figures(store_steps(dir.path(), synchronous, steps));
        let bare = figures(bare_inserts(dir.path(), synchronous, steps));
        let ratio = store.median.as_secs_f64() / bare.median.as_secs_f64();
        let label = match synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        println!(
            "| write_intent + mark_step_done (one step) | {label} | {} | {} | {} | {ratio:.2} |",
            micros(store.median),
            micros(store.p99),
            micros(store.mean)
        );
        println!(
            "| baseline: bare INSERT of the step row | {label} | {} | {} | {} | 1.00 |",
            micros(bare.median),
            micros(bare.p99),
            micros(bare.mean)
        );
        assert!(
            small || synchronous == Synchronous::Full || store.median < Duration::from_millis(1),
            "goal missed: {} µs per step",
            micros(store.median)
        );
    }
}
