//! Explicit retry (design section 15; issue 17 defect 8, where `clear_failed_hash` had
//! no caller): a generation that never becomes healthy rolls back and stays blocked; an
//! authorised `POST /api/v1/groups/{name}/retry` (and `phoenix retry GROUP`) lifts the
//! block, answered 202, and the daemon plans that hash again.

use std::process::Command;
use std::time::Duration;

use crate::support::Daemon;

const WEB: &str = "apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: web
spec:
  provider: local
  replicas: 1
  template:
    image: ami-broken
    instanceType: t3.micro
  rollout: {autoRollback: true}
  health: {check: provider, grace: 1s, deadline: 2s}
";

const CONFIG: &str = "owner: e2e-retry
source: {dir: {path: desired, watch: true, interval: 1s}}
providers:
  - {name: local, type: sim, unhealthy_images: [ami-broken]}
reconcile: {interval: 1s, mode: enforce}
state: {path: state}
server: {listen: \"{LISTEN}\", token_env: PHX_TOKEN}
";

const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret");

/// The web plans the daemon made so far, as (id, state).
fn plans(daemon: &Daemon) -> Vec<(String, String)> {
    daemon.json("/api/v1/plans")["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .filter(|p| p["group"] == "web")
        .map(|p| {
            (
                p["id"].as_str().expect("id").to_owned(),
                p["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect()
}

fn wait_rolled_back(daemon: &Daemon, count: usize) {
    daemon.wait_for(
        &format!("{count} rolled-back plan(s) of web"),
        Duration::from_secs(90),
        |d| plans(d).iter().filter(|(_, s)| s == "rolled_back").count() >= count,
    );
}

#[test]
fn retry_lifts_the_failed_generation_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("desired")).expect("mkdir");
    std::fs::write(dir.path().join("desired/web.yaml"), WEB).expect("write group");
    let daemon = Daemon::start(dir.path(), CONFIG, &[("PHX_TOKEN", "s3cret")]);

    wait_rolled_back(&daemon, 1);
    daemon.wait_for("web to show as failed", Duration::from_secs(30), |d| {
        d.json("/api/v1/groups/web")["sync"] == "failed"
    });
    // Blocked: several passes later there is still only the one plan.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(plans(&daemon).len(), 1, "{:?}", plans(&daemon));

    let path = "/api/v1/groups/web/retry";
    assert_eq!(daemon.post(path, &[], b"").0, 401, "retry needs the token");
    let (code, body) = daemon.post("/api/v1/groups/nope/retry", &[AUTH], b"");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("group_not_found"), "{body}");

    let (code, body) = daemon.post(path, &[AUTH], b"");
    assert_eq!(code, 202, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON answer");
    assert_eq!(answer["group"], "web");
    assert_eq!(answer["cleared"], true, "{body}");
    let desired = daemon.json("/api/v1/groups/web")["desired_hash"].clone();
    assert_eq!(answer["spec_hash"], desired);

    // The hash is planned again, fails again and is blocked again.
    daemon.wait_for("a second plan of web", Duration::from_secs(30), |d| {
        plans(d).len() >= 2
    });
    wait_rolled_back(&daemon, 2);

    // The command line does the same, with the token from the environment.
    let server = format!("http://{}", daemon.addr);
    let cli = |group: &str, token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_phoenix"));
        command.args(["retry", group, "--server", &server]);
        command.env_remove("PHOENIX_API_TOKEN");
        if let Some(token) = token {
            command.env("PHOENIX_API_TOKEN", token);
        }
        command.output().expect("run phoenix retry")
    };
    let out = cli("web", None);
    assert_eq!(out.status.code(), Some(1), "no token: exit 1");
    assert!(String::from_utf8_lossy(&out.stderr).contains("PHOENIX_API_TOKEN"));
    let out = cli("nope", Some("s3cret"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no group named `nope`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli("web", Some("s3cret"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("block is lifted"));
    daemon.wait_for("a third plan of web", Duration::from_secs(30), |d| {
        plans(d).len() >= 3
    });
}

/// Run `sql` on the daemon's state database with the sqlite3 command line (installed by
/// scripts/setup.sh), waiting out the daemon's own writes.
fn sql(dir: &std::path::Path, sql: &str) {
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(dir.join("state/phoenix.db"))
        .arg(sql)
        .output()
        .expect("run sqlite3 (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 17, defect 9: when the failed generations cannot be read, the pass plans
/// nothing; it used to plan as if none had failed, launching the failed generation again.
#[test]
fn an_unreadable_failure_record_plans_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("desired")).expect("mkdir");
    std::fs::write(dir.path().join("desired/web.yaml"), WEB).expect("write group");
    let daemon = Daemon::start(dir.path(), CONFIG, &[("PHX_TOKEN", "s3cret")]);
    wait_rolled_back(&daemon, 1);
    daemon.wait_for("web to show as failed", Duration::from_secs(30), |d| {
        d.json("/api/v1/groups/web")["sync"] == "failed"
    });
    // The record no longer decodes: every read of the failed generations fails.
    sql(
        dir.path(),
        "UPDATE failed_hashes SET spec_hash = 'not-a-hash:' || spec_hash;",
    );
    daemon.wait_for("the read error in the log", Duration::from_secs(30), |d| {
        d.log_text()
            .contains("cannot load failed generations; skipping this pass")
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        plans(&daemon).len(),
        1,
        "no plan while the failures cannot be read: {:?}",
        plans(&daemon)
    );
    // Readable again: still blocked (the failure stands), still one plan.
    sql(
        dir.path(),
        "UPDATE failed_hashes SET spec_hash = substr(spec_hash, 12);",
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(plans(&daemon).len(), 1, "{:?}", plans(&daemon));
    assert_eq!(daemon.json("/api/v1/groups/web")["sync"], "failed");
}
