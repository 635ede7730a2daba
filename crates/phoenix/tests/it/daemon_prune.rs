//! `phoenix run` in enforce mode with `reconcile.prune: true`, on a local folder and the
//! built-in sim cloud: deleting a group's file terminates its instances (a prune plan,
//! `target_hash: null` on the API); deleting most group files holds the revision as a
//! mass removal: the prune plans wait as `awaiting_approval` on `GET /api/v1/plans` and
//! nothing is terminated until `POST /api/v1/plans/{id}/approve` with the bearer token.
//!
//! Regression test for the review finding "orphan prunes and held plans are never
//! inserted by `Executor::submit`".

use std::time::Duration;

use crate::support::Daemon;

const TOKEN: &str = "pr0ne";

fn group(name: &str) -> String {
    format!(
        "apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: {name}
spec:
  provider: local
  replicas: 1
  template:
    image: ami-1
    instanceType: t3.micro
"
    )
}

const CONFIG: &str = "owner: e2e-prune
source: {dir: {path: desired, watch: true, interval: 1s}}
providers:
  - {name: local, type: sim}
reconcile: {interval: 1s, mode: enforce, prune: true, max_replacement_fraction: 1.0}
state: {path: state}
server: {listen: \"{LISTEN}\", token_env: PHX_TOKEN}
";

fn instances(d: &Daemon) -> u64 {
    d.json("/api/v1/status")["inventory"][0]["instances"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// The group's prune plans (its first launch plan left out).
fn plans_of(d: &Daemon, group: &str) -> Vec<serde_json::Value> {
    d.json("/api/v1/plans")["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .filter(|p| p["group"] == group && p["kind"] == "prune")
        .cloned()
        .collect()
}

fn group_instances(d: &Daemon, group: &str) -> usize {
    let (code, body) = d.get(&format!("/api/v1/groups/{group}"));
    if code != 200 {
        return 0;
    }
    let group: serde_json::Value = serde_json::from_str(&body).expect("group JSON");
    group["instances"].as_array().map_or(0, Vec::len)
}

#[test]
fn deleted_groups_are_pruned_and_a_mass_removal_waits_for_approval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desired = dir.path().join("desired");
    std::fs::create_dir(&desired).expect("mkdir");
    for name in ["a", "b", "c", "d"] {
        std::fs::write(desired.join(format!("{name}.yaml")), group(name)).expect("write group");
    }
    let daemon = Daemon::start(dir.path(), CONFIG, &[("PHX_TOKEN", TOKEN)]);
    daemon.wait_for("four groups in sync", Duration::from_secs(60), |d| {
        let status = d.json("/api/v1/status");
        status["groups"]["in_sync"] == 4 && instances(d) == 4
    });

    // One group deleted (1 of 4: below max_prune_fraction 50%): pruned after two passes.
    std::fs::remove_file(desired.join("d.yaml")).expect("delete d");
    daemon.wait_for("d's instance terminated", Duration::from_secs(60), |d| {
        instances(d) == 3 && plans_of(d, "d").iter().any(|p| p["state"] == "succeeded")
    });
    let prune = plans_of(&daemon, "d").remove(0);
    assert!(prune["target_hash"].is_null(), "{prune}");
    assert!(prune["strategy"].is_null(), "{prune}");
    assert_eq!(prune["kind"], "prune", "{prune}");
    assert_eq!(prune["steps"][0]["action"], "terminate", "{prune}");
    assert_eq!(group_instances(&daemon, "a"), 1);

    // Two of the remaining three deleted: a mass removal, held for approval.
    std::fs::remove_file(desired.join("b.yaml")).expect("delete b");
    std::fs::remove_file(desired.join("c.yaml")).expect("delete c");
    daemon.wait_for(
        "the prunes of b and c awaiting approval",
        Duration::from_secs(60),
        |d| {
            ["b", "c"].iter().all(|g| {
                plans_of(d, g)
                    .iter()
                    .any(|p| p["state"] == "awaiting_approval" && p["target_hash"].is_null())
            })
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(instances(&daemon), 3, "nothing terminated before approval");
    assert_eq!(
        daemon.json("/api/v1/status")["plans"]["awaiting_approval"],
        2
    );
    assert_eq!(
        plans_of(&daemon, "b").len(),
        1,
        "not duplicated by later passes"
    );
    let b = plans_of(&daemon, "b").remove(0);
    let path = format!("/api/v1/plans/{}/approve", b["id"].as_str().expect("id"));
    assert_eq!(
        daemon.post(&path, &[], b"").0,
        401,
        "approve needs the token"
    );
    assert_eq!(instances(&daemon), 3);
    let (code, body) = daemon.post(&path, &[("Authorization", &format!("Bearer {TOKEN}"))], b"");
    assert_eq!(code, 200, "{body}");
    daemon.wait_for("b's instance terminated", Duration::from_secs(60), |d| {
        instances(d) == 2 && plans_of(d, "b").iter().any(|p| p["state"] == "succeeded")
    });
    // c's prune still waits: approval is per plan, even though with b gone the same
    // revision no longer removes more than half of the groups.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(instances(&daemon), 2);
    assert!(
        plans_of(&daemon, "c")
            .iter()
            .any(|p| p["state"] == "awaiting_approval")
    );
    assert_eq!(group_instances(&daemon, "a"), 1);
}
