//! `phoenix run` as a user runs it, on a local folder and the built-in sim cloud:
//! readiness, the status API fields of the design, a rejected revision that keeps the
//! last good one, graceful SIGTERM, and exit 64 on a bad config.

use std::time::Duration;

use crate::support::Daemon;

const WEB: &str = "apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: web
spec:
  provider: local
  replicas: 2
  template:
    image: ami-1
    instanceType: t3.micro
";

const CONFIG: &str = "owner: e2e
source: {dir: {path: desired, watch: true, interval: 1s}}
providers:
  - {name: local, type: sim}
reconcile: {interval: 1s, mode: observe}
state: {path: state}
server: {listen: \"{LISTEN}\"}
";

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("desired")).expect("mkdir");
    std::fs::write(dir.path().join("desired/web.yaml"), WEB).expect("write group");
    dir
}

#[test]
fn status_api_serves_the_design_fields() {
    let dir = setup();
    let mut daemon = Daemon::start(dir.path(), CONFIG, &[]);
    let status = daemon.json("/api/v1/status");
    let revision = status["revision"]["id"]
        .as_str()
        .expect("revision id")
        .to_string();
    assert!(revision.starts_with("sha256:"), "{status}");
    assert!(status["revision"]["accepted_at"].is_string());
    assert!(status["revision"]["error"].is_null());
    assert_eq!(status["groups"]["total"], 1);
    assert_eq!(
        status["groups"]["drifted"], 1,
        "observe mode: two replicas missing"
    );
    assert_eq!(status["inventory"][0]["provider"], "local");
    assert_eq!(status["inventory"][0]["complete"], true);
    assert!(status["inventory"][0]["age_seconds"].is_u64());
    assert_eq!(status["plans"]["running"], 0);
    assert_eq!(status["alerts"]["pending"], 0);

    let group = daemon.json("/api/v1/groups/web");
    assert_eq!(group["name"], "web");
    assert_eq!(group["replicas"], 2);
    assert_eq!(group["sync"], "drifted");
    assert!(
        group["desired_hash"]
            .as_str()
            .expect("hash")
            .starts_with("v1:sha256:")
    );
    assert_eq!(group["drift"][0]["kind"], "missing");
    assert!(group["history"].is_array());
    let (code, body) = daemon.get("/api/v1/groups/nope");
    assert_eq!(code, 404);
    assert!(body.contains("\"error\""), "{body}");
    let list = daemon.json("/api/v1/groups");
    assert_eq!(list["groups"][0]["name"], "web");
    assert!(daemon.json("/api/v1/drift").is_object());
    let (code, metrics) = daemon.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .all(|l| l.starts_with("phoenix_")),
        "{metrics}"
    );
    let (code, page) = daemon.get("/");
    assert_eq!(code, 200);
    assert!(page.contains("<html"), "dashboard page");

    // An invalid edit: rejected with path, line and column; the last good revision stays.
    std::fs::write(
        dir.path().join("desired/web.yaml"),
        WEB.replace("instanceType", "instanceTyp"),
    )
    .expect("write");
    daemon.wait_for(
        "the rejection on the status API",
        Duration::from_secs(30),
        |d| !d.json("/api/v1/status")["revision"]["error"].is_null(),
    );
    let status = daemon.json("/api/v1/status");
    assert_eq!(
        status["revision"]["id"],
        revision.as_str(),
        "last good revision stays in force"
    );
    let error = &status["revision"]["error"];
    assert_eq!(error["path"], "web.yaml");
    assert_eq!(error["line"], 10);
    assert_eq!(error["column"], 5);
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("instanceTyp")
    );
    assert_eq!(
        daemon.json("/api/v1/groups/web")["name"],
        "web",
        "groups still served"
    );

    // Fixing it clears the error.
    std::fs::write(
        dir.path().join("desired/web.yaml"),
        WEB.replace("replicas: 2", "replicas: 3"),
    )
    .expect("write");
    daemon.wait_for("the fixed revision", Duration::from_secs(30), |d| {
        d.json("/api/v1/status")["revision"]["error"].is_null()
    });
    assert_eq!(daemon.json("/api/v1/groups/web")["replicas"], 3);

    assert_eq!(
        daemon.terminate(Duration::from_secs(15)),
        Some(0),
        "graceful exit on SIGTERM"
    );
}

#[test]
fn bad_config_exits_64_listing_every_problem() {
    let dir = setup();
    std::fs::write(
        dir.path().join("phoenix.yaml"),
        "owner: ''\nsource: {dir: {path: desired}}\nproviders:\n  - {name: a, type: sim}\n  - {name: a, type: sim}\n",
    )
    .expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["run", "--config"])
        .arg(dir.path().join("phoenix.yaml"))
        .output()
        .expect("run phoenix");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("owner: must be 1 to 128 characters"),
        "{stderr}"
    );
    assert!(
        stderr.contains("providers[1].name: `a` is used by more than one provider"),
        "{stderr}"
    );
}

#[test]
fn config_reload_applies_a_valid_config_and_refuses_a_bad_one() {
    let dir = setup();
    let daemon = Daemon::start(dir.path(), CONFIG, &[]);
    assert_eq!(
        daemon.json("/api/v1/groups/web")["sync"],
        "drifted",
        "observe mode acts on nothing"
    );
    let config_path = dir.path().join("phoenix.yaml");
    let running = std::fs::read_to_string(&config_path).expect("read config");

    // A bad config (an unknown key) is refused; the daemon keeps running on the old one.
    std::fs::write(
        &config_path,
        running.replace("mode: observe", "mode: observe, intervall: 1s"),
    )
    .expect("write");
    daemon.wait_for("the refusal in the log", Duration::from_secs(30), |d| {
        d.log_text().contains("new config refused")
    });
    assert_eq!(daemon.get("/readyz").0, 200);

    // A valid one (enforce) is applied: the group gets its instances.
    std::fs::write(
        &config_path,
        running.replace("mode: observe", "mode: enforce"),
    )
    .expect("write");
    daemon.wait_for(
        "the group to converge after the reload",
        Duration::from_secs(60),
        |d| {
            let group = d.json("/api/v1/groups/web");
            group["sync"] == "in_sync"
                && group["instances"].as_array().is_some_and(|i| i.len() == 2)
        },
    );
}

/// Issue 17, defect 1: an owner change on reload launched without end (the executor
/// kept the old owner tag, so every pass saw nothing and launched again). It is refused
/// with an error naming the key, and the daemon keeps converging under its owner.
#[test]
fn config_reload_refuses_an_owner_change() {
    let dir = setup();
    let config = CONFIG.replace("mode: observe", "mode: enforce");
    let daemon = Daemon::start(dir.path(), &config, &[]);
    let config_path = dir.path().join("phoenix.yaml");
    let running = std::fs::read_to_string(&config_path).expect("read config");
    std::fs::write(
        &config_path,
        running.replace("owner: e2e", "owner: e2e-other"),
    )
    .expect("write");
    daemon.wait_for("the refusal in the log", Duration::from_secs(30), |d| {
        d.log_text()
            .contains("owner cannot change while the daemon runs")
    });
    daemon.wait_for("the group to converge", Duration::from_secs(60), |d| {
        let group = d.json("/api/v1/groups/web");
        group["sync"] == "in_sync" && group["instances"].as_array().is_some_and(|i| i.len() == 2)
    });
    // Still two: nothing was launched under a second owner.
    let group = daemon.json("/api/v1/groups/web");
    assert_eq!(
        group["instances"].as_array().map(Vec::len),
        Some(2),
        "{group}"
    );
}

#[test]
fn manual_approval_waits_for_an_authorised_approve() {
    let dir = setup();
    std::fs::write(
        dir.path().join("desired/web.yaml"),
        format!("{WEB}  approval: manual\n"),
    )
    .expect("write group");
    let config = CONFIG.replace("mode: observe", "mode: enforce").replace(
        "server: {listen: \"{LISTEN}\"}",
        "server: {listen: \"{LISTEN}\", token_env: PHX_TOKEN}",
    );
    let daemon = Daemon::start(dir.path(), &config, &[("PHX_TOKEN", "s3cret")]);
    daemon.wait_for("a plan awaiting approval", Duration::from_secs(30), |d| {
        d.json("/api/v1/status")["plans"]["awaiting_approval"] == 1
    });
    let plans = daemon.json("/api/v1/plans");
    let plan = plans["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .find(|p| p["state"] == "awaiting_approval")
        .expect("the plan")
        .clone();
    let id = plan["id"].as_str().expect("plan id");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        daemon.json("/api/v1/groups/web")["instances"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "nothing launched before approval"
    );

    let path = format!("/api/v1/plans/{id}/approve");
    assert_eq!(
        daemon.post(&path, &[], b"").0,
        401,
        "approve needs the token"
    );
    assert_eq!(
        daemon
            .post(&path, &[("Authorization", "Bearer wrong")], b"")
            .0,
        401
    );
    let (code, body) = daemon.post(&path, &[("Authorization", "Bearer s3cret")], b"");
    assert_eq!(code, 200, "{body}");
    daemon.wait_for(
        "the approved plan to converge",
        Duration::from_secs(60),
        |d| {
            let group = d.json("/api/v1/groups/web");
            group["sync"] == "in_sync"
                && group["instances"].as_array().is_some_and(|i| i.len() == 2)
        },
    );
    let (code, _) = daemon.post(
        "/api/v1/plans/plan-unknown/approve",
        &[("Authorization", "Bearer s3cret")],
        b"",
    );
    assert_eq!(code, 404);
}
