//! Change windows in the running daemon (issue 21, item 2: "a deny window holds a
//! replacement and lets a failed instance be replaced"): on the sim cloud, a group whose
//! two instances are outdated, one of them stopped, under a deny window that is open the
//! whole test. The daemon replaces the stopped (unhealthy) instance and keeps the healthy
//! outdated one; without the window it replaces both.
//!
//! The override (design section 14): while the window holds, the status, the group detail
//! and `/metrics` show the group blocked; `phoenix windows override` (and the endpoint it
//! calls, token required, fields checked) lifts the window, the held replacement starts,
//! the `window_override` alert is delivered once, and a restart keeps the override (the
//! store's record) without alerting again.
//!
//! The window (daily at midnight UTC for 48 hours) is open at any wall-clock time, so the
//! test does not depend on when it runs.

use std::time::Duration;

use phoenix_cloud::sim::{SimChange, SimProvider};
use phoenix_cloud::{LaunchRequest, Provider};
use phoenix_core::config::SimConfig;
use phoenix_core::model::InstanceState;
use phoenix_core::parse_group;

use crate::support::{Daemon, Receiver};

fn web(image: &str) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: web\nspec:\n  provider: local\n  replicas: 2\n  template:\n    image: {image}\n    instanceType: t3.micro\n  rollout: {{maxSurge: 1, maxUnavailable: 0}}\n"
    )
}

/// Open every day at midnight UTC for two days: always open.
const CONFIG: &str = "owner: e2e-windows
source: {dir: {path: desired, watch: true, interval: 1s}}
providers:
  - {name: local, type: sim}
reconcile:
  interval: 1s
  mode: enforce
  max_replacement_fraction: 1.0
  windows:
    - {kind: deny, schedule: \"0 0 * * *\", duration: 48h, groups: [\"web\"]}
state: {path: state}
server: {listen: \"{LISTEN}\"}
";

/// Two instances of web at ami-1 in the sim under `dir/state`, the first one stopped.
fn seed(dir: &std::path::Path) -> (String, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = SimConfig {
            name: "local".into(),
            launch_latency: Duration::ZERO,
            launch_failure_rate: 0.0,
            unhealthy_images: Vec::new(),
            images: Vec::new(),
            target_groups: Vec::new(),
        };
        let sim = SimProvider::open(&config, &dir.join("state"))
            .await
            .expect("open the sim");
        let parsed = parse_group(&web("ami-1")).expect("valid group");
        let launched = sim
            .launch(&LaunchRequest {
                owner: "e2e-windows".into(),
                group: parsed.group.name().clone(),
                template: parsed.group.spec.template.clone(),
                spec_hash: parsed.hash,
                commit: "old".into(),
                plan_id: "plan-old".into(),
                launch_token: "token-old".into(),
                count: 2,
            })
            .await
            .expect("launch");
        let mut ids: Vec<String> = launched.iter().map(|i| i.id.to_string()).collect();
        ids.sort();
        sim.modify(&ids[0], SimChange::State(InstanceState::Stopped))
            .await
            .expect("stop one instance");
        (ids[0].clone(), ids[1].clone())
    })
}

fn instance_ids(daemon: &Daemon) -> Vec<(String, String)> {
    daemon.json("/api/v1/groups/web")["instances"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|i| {
                    (
                        i["id"].as_str().unwrap_or("").to_owned(),
                        i["spec_hash"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_deny_window_holds_a_replacement_but_replaces_a_failed_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("desired")).expect("mkdir");
    let (stopped, healthy) = seed(dir.path());
    std::fs::write(dir.path().join("desired/web.yaml"), web("ami-2")).expect("write group");
    let mut daemon = Daemon::start(dir.path(), CONFIG, &[]);
    let desired = daemon.json("/api/v1/groups/web")["desired_hash"]
        .as_str()
        .expect("desired hash")
        .to_owned();

    // The stopped instance is replaced by one of the new generation.
    daemon.wait_for(
        "the stopped instance to be replaced",
        Duration::from_secs(60),
        |d| {
            let ids = instance_ids(d);
            !ids.iter().any(|(id, _)| *id == stopped)
                && ids.iter().filter(|(_, h)| *h == desired).count() == 1
        },
    );
    // The healthy outdated instance stays, pass after pass.
    std::thread::sleep(Duration::from_secs(4));
    let ids = instance_ids(&daemon);
    assert!(ids.iter().any(|(id, _)| *id == healthy), "held: {ids:?}");
    assert_eq!(ids.len(), 2, "{ids:?}");
    let group = daemon.json("/api/v1/groups/web");
    assert_eq!(group["sync"], "drifted", "{group}");

    // Without the window, the held replacement goes ahead.
    daemon.terminate(Duration::from_secs(30));
    let open = CONFIG.replace(
        "    - {kind: deny, schedule: \"0 0 * * *\", duration: 48h, groups: [\"web\"]}\n",
        "    - {kind: deny, schedule: \"0 0 * * *\", duration: 48h, groups: [\"api\"]}\n",
    );
    assert_ne!(open, CONFIG);
    let daemon = Daemon::start(dir.path(), &open, &[]);
    daemon.wait_for("web to be replaced", Duration::from_secs(60), |d| {
        let ids = instance_ids(d);
        ids.len() == 2 && ids.iter().all(|(_, h)| *h == desired)
    });
}

const TOKEN: (&str, &str) = ("PHX_TOKEN", "s3cret");
const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret");

/// [`CONFIG`] with the API token and an alert receiver for `window_override`.
fn override_config(alert_url: &str) -> String {
    CONFIG
        .replace(
            "server: {listen: \"{LISTEN}\"}",
            "server: {listen: \"{LISTEN}\", token_env: PHX_TOKEN}",
        )
        .replace(
            "state: {path: state}\n",
            &format!(
                "state: {{path: state}}\nalerts:\n  - {{name: ops, type: webhook, url: \"{alert_url}\", secret_env: PHX_ALERT, events: [window_override]}}\n"
            ),
        )
}

fn override_alerts(receiver: &Receiver) -> Vec<serde_json::Value> {
    receiver
        .received()
        .iter()
        .map(|r| r.json())
        .filter(|body| body["event"] == "window_override")
        .collect()
}

fn blocked_metric(daemon: &Daemon) -> Option<u64> {
    daemon
        .get("/metrics")
        .1
        .lines()
        .find_map(|l| l.strip_prefix("phoenix_window_blocked_groups "))
        .and_then(|n| n.parse().ok())
}

#[test]
fn an_override_lifts_the_window_is_alerted_once_and_survives_a_restart() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("desired")).expect("mkdir");
    let (stopped, _) = seed(dir.path());
    std::fs::write(dir.path().join("desired/web.yaml"), web("ami-2")).expect("write group");
    let env = [TOKEN, ("PHX_ALERT", "alert-secret")];
    let config = override_config(&receiver.url());
    let mut daemon = Daemon::start(dir.path(), &config, &env);
    let desired = daemon.json("/api/v1/groups/web")["desired_hash"]
        .as_str()
        .expect("desired hash")
        .to_owned();
    daemon.wait_for(
        "the stopped instance to be replaced",
        Duration::from_secs(60),
        |d| !instance_ids(d).iter().any(|(id, _)| *id == stopped),
    );

    // Held: the status, the group and the metric say so.
    let status = daemon.json("/api/v1/status");
    assert_eq!(status["windows"]["blocked_groups"], 1, "{status}");
    assert!(status["windows"]["next_change"].is_string(), "{status}");
    assert_eq!(status["windows"]["override"], serde_json::Value::Null);
    let group = daemon.json("/api/v1/groups/web");
    assert_eq!(group["window"]["blocked"], true, "{group}");
    assert_eq!(blocked_metric(&daemon), Some(1));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["status", "--server", &format!("http://{}", daemon.addr)])
        .output()
        .expect("run phoenix status");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("windows   1 group(s) blocked, next change 20"),
        "{printed}"
    );
    let held = instance_ids(&daemon);
    assert_eq!(
        held.iter().filter(|(_, h)| *h != desired).count(),
        1,
        "{held:?}"
    );

    // The endpoint wants the token and names a bad field.
    let path = "/api/v1/windows/override";
    let until =
        phoenix_core::time::rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600));
    let body = format!(r#"{{"until": "{until}", "reason": "hotfix"}}"#);
    assert_eq!(daemon.post(path, &[], body.as_bytes()).0, 401);
    let (code, answer) = daemon.post(
        path,
        &[AUTH],
        br#"{"until": "2020-01-01T00:00:00Z", "reason": "late"}"#,
    );
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer.contains("`until`") && answer.contains("future"),
        "{answer}"
    );
    assert!(
        override_alerts(&receiver).is_empty(),
        "a refused override is not alerted"
    );

    // The command line lifts every window; the held replacement starts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args([
            "windows",
            "override",
            "--until",
            "1h",
            "--reason",
            "hotfix CVE-1",
            "--by",
            "alice",
        ])
        .args(["--server", &format!("http://{}", daemon.addr)])
        .env("PHOENIX_API_TOKEN", "s3cret")
        .output()
        .expect("run phoenix windows override");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("lifted until"));
    daemon.wait_for(
        "web to be replaced under the override",
        Duration::from_secs(60),
        |d| {
            let ids = instance_ids(d);
            ids.len() == 2 && ids.iter().all(|(_, h)| *h == desired)
        },
    );
    let status = daemon.json("/api/v1/status");
    assert_eq!(status["windows"]["blocked_groups"], 0, "{status}");
    assert_eq!(status["windows"]["override"]["reason"], "hotfix CVE-1");
    assert_eq!(status["windows"]["override"]["by"], "alice");
    let lifted_until = status["windows"]["override"]["until"].clone();
    let time = |v: &serde_json::Value| {
        phoenix_core::time::parse_rfc3339(v.as_str().expect("a time")).expect("RFC 3339")
    };
    assert!(
        time(&status["windows"]["next_change"]) <= time(&lifted_until),
        "the next change is at the latest the override's end: {status}"
    );
    assert_eq!(
        daemon.json("/api/v1/groups/web")["window"]["blocked"],
        false
    );
    assert_eq!(blocked_metric(&daemon), Some(0));
    daemon.wait_for("the window_override alert", Duration::from_secs(30), |_| {
        !override_alerts(&receiver).is_empty()
    });
    let alert = &override_alerts(&receiver)[0];
    let message = alert["message"].as_str().expect("message");
    assert!(
        message.contains("hotfix CVE-1") && message.contains("alice"),
        "{alert}"
    );

    // A restart keeps the override (it is the store's record) and does not alert again.
    daemon.restart(&env);
    let status = daemon.json("/api/v1/status");
    assert_eq!(
        status["windows"]["override"]["until"], lifted_until,
        "{status}"
    );
    assert_eq!(status["windows"]["blocked_groups"], 0, "{status}");
    assert_eq!(
        daemon.json("/api/v1/groups/web")["window"]["blocked"],
        false
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        override_alerts(&receiver).len(),
        1,
        "one alert per override"
    );
    let ids = instance_ids(&daemon);
    assert!(
        ids.len() == 2 && ids.iter().all(|(_, h)| *h == desired),
        "{ids:?}"
    );
}
