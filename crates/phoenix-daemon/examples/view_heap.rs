//! The heap the API snapshot and the in-memory group histories (`view::Histories`) cost
//! per group, measured with heaptrack rather than timed:
//!
//! ```sh
//! cargo build -p phoenix-daemon --example view_heap
//! for keep in none histories snapshot snapshots groups-body; do
//!     heaptrack -o /tmp/view-heap-$keep target/debug/examples/view_heap 100000 $keep
//!     heaptrack_print -f /tmp/view-heap-$keep.zst | grep -E '^(peak heap|total memory leaked)'
//! done
//! ```
//!
//! It records one generation for each of N groups in an in-memory store after a first,
//! empty history refresh (as the daemon does: its first publish comes before the first
//! revision is accepted, so every group is then re-read on its own), and builds the
//! snapshot from a plan document of N in-sync groups with one observed hash each and no
//! inventory (instances are left out: their cost belongs to the inventory model). Every
//! tenth group has three generations, every fiftieth a drift finding, so the JSON covers
//! more than one shape. What is still allocated at exit is what the `keep` argument
//! leaves alive: `none` (the baseline), `histories`, `snapshot` (histories + one
//! snapshot), `snapshots` (histories + two snapshots, the peak at a publish, when the
//! previous one is still alive), `groups-body` (histories + one snapshot with its
//! `/api/v1/groups` body rendered). Subtract `none` and divide by N. A third argument
//! `all` reads the histories in one query instead (as after a restart). `json` prints the
//! `/api/v1/groups` body and a few groups as `/api/v1/groups/{name}` serves them, to
//! check that the wire form does not change.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use phoenix_api::AlertCounts;
use phoenix_core::GroupName;
use phoenix_core::SpecHash;
use phoenix_core::plan::PlanDocument;
use phoenix_daemon::view::{self, Histories, ViewInput};
use phoenix_store::{GenerationOutcome, Store, StoreOptions};

fn hash(n: usize) -> SpecHash {
    format!("v1:sha256:{n:064x}")
        .parse()
        .expect("64 hex digits make a valid hash")
}

fn name(i: usize) -> String {
    format!("group-{i:06}")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let groups: usize = args
        .next()
        .map(|n| n.parse().expect("the group count is a number"))
        .unwrap_or(10_000);
    let keep = args.next().unwrap_or_else(|| "snapshot".to_owned());
    let load = args.next().unwrap_or_else(|| "changes".to_owned());
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let commit = "3f1c0e7d9a8b6c5d4e3f2a1b0c9d8e7f6a5b4c3d";

    let mut store = Store::open_in_memory(StoreOptions::default()).expect("an in-memory store");
    let mut histories = Histories::default();
    histories.refresh(&mut store);
    for i in 0..groups {
        let group = GroupName::new(name(i)).expect("a valid group name");
        let generations = if i % 10 == 0 { 3 } else { 1 };
        for g in 0..generations {
            let at = t0 + Duration::from_secs(60 * g as u64);
            let hash = hash(i * 4 + g);
            let commit = if g + 1 == generations {
                commit.to_owned()
            } else {
                format!("{g:040x}")
            };
            store
                .record_generation(&group, &hash, &commit, at)
                .expect("record a generation");
            let outcome = match g {
                0 if generations > 1 => Some(GenerationOutcome::Superseded),
                1 => Some(GenerationOutcome::RolledBack),
                _ if i % 3 == 0 => Some(GenerationOutcome::Succeeded),
                _ => None,
            };
            if let Some(outcome) = outcome {
                store
                    .set_generation_outcome(&group, &hash, outcome)
                    .expect("set an outcome");
            }
        }
    }
    if load == "all" {
        histories = Histories::default();
    }
    histories.refresh(&mut store);

    let reports: Vec<serde_json::Value> = (0..groups)
        .map(|i| {
            let desired = hash(i * 4 + if i % 10 == 0 { 2 } else { 0 });
            let drifted = i % 50 == 7;
            let mut observed = vec![serde_json::json!({"hash": desired.to_string(), "count": 3})];
            if drifted {
                observed.push(serde_json::json!({"hash": "(none)", "count": 1}));
            }
            serde_json::json!({
                "name": name(i),
                "provider": "sim",
                "desired_hash": desired.to_string(),
                "replicas": 3,
                "status": if drifted { "drifted" } else { "in_sync" },
                "observed_hashes": observed,
                "drift": if drifted {
                    serde_json::json!([{
                        "kind": "modified",
                        "group": name(i),
                        "provider": "sim",
                        "instance_id": format!("i-{i:06}a"),
                        "field": "instanceType",
                        "expected": "t3.micro",
                        "observed": "t3.large",
                        "reason": "instanceType changed out of band",
                    }])
                } else {
                    serde_json::json!([])
                },
            })
        })
        .collect();
    let document: PlanDocument = serde_json::from_value(serde_json::json!({
        "format_version": "1.0",
        "revision": commit,
        "changes": false,
        "drifted": groups > 7,
        "budget": {"limit": 10, "used": 0, "deferred": 0, "fleet": 0},
        "groups": reports,
    }))
    .expect("a plan document");
    let since = HashMap::new();
    let windows = phoenix_daemon::windows::LoopWindows::default();
    let input = ViewInput {
        ready: true,
        revision: Some((commit, t0)),
        rejection: None,
        signature: None,
        source_error: None,
        inventories: &[],
        traffic: &phoenix_core::traffic::NO_TRAFFIC,
        document: Some(&document),
        since: &since,
        alerts: AlertCounts::default(),
        previous: None,
        windows: &windows,
    };
    let now = t0 + Duration::from_secs(600);

    match keep.as_str() {
        "none" => {}
        "histories" => std::mem::forget(histories),
        "snapshot" => {
            std::mem::forget(view::build(&store, &input, &histories, now));
            std::mem::forget(histories);
        }
        "snapshots" => {
            // The second build reuses the first one's unchanged groups, as the loop does.
            let previous = view::build(&store, &input, &histories, now);
            let next = ViewInput {
                previous: Some(&previous),
                ..input
            };
            std::mem::forget(view::build(&store, &next, &histories, now));
            std::mem::forget(previous);
            std::mem::forget(histories);
        }
        "groups-body" => {
            let snapshot = view::build(&store, &input, &histories, now);
            let body = snapshot.groups_body();
            println!("/api/v1/groups body: {} bytes", body.len());
            std::mem::forget(snapshot);
            std::mem::forget(histories);
        }
        "json" => {
            let snapshot = view::build(&store, &input, &histories, now);
            println!(
                "{}",
                String::from_utf8_lossy(&snapshot.groups_body()).trim_end()
            );
            for i in [0, 1, 3, 7, groups.saturating_sub(1)] {
                if let Some(group) = snapshot.group(&name(i)) {
                    println!(
                        "{}",
                        serde_json::to_string(group).expect("a group serialises")
                    );
                }
            }
        }
        other => panic!("unknown keep `{other}`"),
    }
}
