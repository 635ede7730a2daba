//! The dashboard's group page in a real browser (issue 21): a `phoenix run` on the sim
//! cloud driven into three states (in sync; mid-rollout, a canary baking with a
//! field-level drift on it; after a rollback of an image that never becomes healthy),
//! each rendered by headless Chromium and checked for the text the page must show. The
//! cancel and retry buttons are clicked and must show the API's answer.
//!
//! Screenshots go to `$PHOENIX_SCREENSHOTS` when set (a folder), else into the test's
//! temp dir; the references under docs/img/ were taken this way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use phoenix_testkit::chromium::Browser;
use serde_json::Value;

use crate::support::Daemon;

const TOKEN: &str = "dash-s3cret";
const WIDTH: u32 = 1280;

fn group(instance_type: &str, image: &str) -> String {
    format!(
        "apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: web
spec:
  provider: local
  replicas: 3
  template:
    image: {image}
    instanceType: {instance_type}
  rollout:
    strategy: canary
    maxSurge: 1
    maxUnavailable: 0
    bake: 1h
    autoRollback: true
  health:
    grace: 1s
    deadline: 4s
"
    )
}

const CONFIG: &str = "owner: dash
source: {dir: {path: desired, watch: true, interval: 1s}}
providers:
  - {name: local, type: sim, launch_latency: 1s, unhealthy_images: [ami-broken]}
reconcile: {interval: 1s, mode: enforce}
state: {path: state}
server: {listen: \"{LISTEN}\", token_env: PHX_TOKEN}
";

fn screenshot_dir(tmp: &Path) -> PathBuf {
    let dir = std::env::var_os("PHOENIX_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.join("screenshots"));
    std::fs::create_dir_all(&dir).expect("create the screenshot folder");
    dir
}

fn shoot(browser: &mut Browser, dir: &Path, name: &str) {
    let png = browser.screenshot(WIDTH);
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{name}: not a PNG of a rendered page ({} bytes)",
        png.len()
    );
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write the screenshot");
    eprintln!("screenshot: {}", path.display());
}

fn short(hash: &str) -> String {
    hash.trim_start_matches("v1:sha256:")[..12].to_owned()
}

fn plans_of(daemon: &Daemon) -> Vec<Value> {
    daemon.json("/api/v1/plans")["plans"]
        .as_array()
        .expect("plans")
        .clone()
}

/// The step of a plan with `action`, if any.
fn step<'a>(plan: &'a Value, action: &str) -> Option<&'a Value> {
    plan["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["action"] == action))
}

/// Click `button` with `window.prompt` answering `token`; wait until the action line
/// shows an answer, and return it.
fn click(browser: &mut Browser, button: &str, token: &str) -> String {
    browser.eval(&format!(
        "sessionStorage.clear(); window.prompt = () => {token:?}; \
         document.getElementById('action-result').textContent = ''; \
         document.getElementById({button:?}).click(); true"
    ));
    browser.wait_for(
        &format!("the answer to {button}"),
        "/HTTP \\d{3}/.test(document.getElementById('action-result').textContent)",
        Duration::from_secs(30),
    );
    browser
        .eval("document.getElementById('action-result').textContent")
        .as_str()
        .expect("text")
        .to_owned()
}

/// Open a sim handle on the daemon's cloud (the store's file lock makes this safe while
/// the daemon runs) and change an instance's type out of band.
fn modify_instance_type(state: &Path, id: &str, instance_type: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let config = phoenix_core::config::SimConfig {
            name: "local".into(),
            launch_latency: Duration::ZERO,
            launch_failure_rate: 0.0,
            unhealthy_images: vec![],
            images: vec![],
        };
        let sim = phoenix_cloud::sim::SimProvider::open(&config, state)
            .await
            .expect("open the daemon's sim");
        tokio::time::timeout(
            Duration::from_secs(30),
            sim.modify(
                id,
                phoenix_cloud::sim::SimChange::InstanceType(instance_type.into()),
            ),
        )
        .await
        .expect("modify within 30s")
        .expect("modify the instance");
    });
}

#[test]
fn group_page_shows_history_drift_and_operation_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shots = screenshot_dir(dir.path());
    std::fs::create_dir(dir.path().join("desired")).expect("mkdir");
    let file = dir.path().join("desired/web.yaml");
    std::fs::write(&file, group("t3.micro", "ami-1")).expect("write group");
    let daemon = Daemon::start(dir.path(), CONFIG, &[("PHX_TOKEN", TOKEN)]);
    let mut browser = Browser::launch(WIDTH, 900);

    // 1. In sync: three instances of the first generation, its history entry.
    daemon.wait_for("web in sync", Duration::from_secs(60), |d| {
        let g = d.json("/api/v1/groups/web");
        g["sync"] == "in_sync" && g["instances"].as_array().is_some_and(|i| i.len() == 3)
    });
    let first = daemon.json("/api/v1/groups/web");
    let gen_a = short(first["desired_hash"].as_str().expect("hash"));
    browser.goto(&format!("http://{}/#/groups/web", daemon.addr));
    browser.wait_for(
        "the in-sync group page",
        &format!(
            "document.getElementById('g-instances').querySelectorAll('tbody tr').length === 3 \
             && document.getElementById('g-history').innerText.includes('{gen_a}') \
             && document.getElementById('g-pills').innerText.includes('in sync')"
        ),
        Duration::from_secs(30),
    );
    let text = browser.text();
    for expected in [
        "web",
        "in sync",
        "No open drift: the group matches Git.",
        "Generations",
        gen_a.as_str(),
        "3/3",
        "succeeded",
        "Instances per generation",
    ] {
        assert!(
            text.contains(expected),
            "in sync: `{expected}` missing in\n{text}"
        );
    }
    assert!(
        browser.eval("document.getElementById('btn-approve').disabled") == Value::Bool(true),
        "nothing to approve"
    );
    shoot(&mut browser, &shots, "group-in-sync");

    // 2. Mid-rollout: a new instance type; the canary launches, is healthy and bakes
    //    for an hour. One old instance is changed out of band: field-level drift.
    std::fs::write(&file, group("t3.small", "ami-1")).expect("write group");
    daemon.wait_for("the canary baking", Duration::from_secs(60), |d| {
        plans_of(d).iter().any(|p| {
            p["state"] == "running" && step(p, "bake").is_some_and(|s| s["state"] == "running")
        })
    });
    let mid = daemon.json("/api/v1/groups/web");
    let gen_b = short(mid["desired_hash"].as_str().expect("hash"));
    let canary = mid["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["spec_hash"] == mid["desired_hash"])
        .expect("the canary")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    modify_instance_type(&dir.path().join("state"), &canary, "t3.large");
    daemon.wait_for("the modified finding", Duration::from_secs(30), |d| {
        d.json("/api/v1/groups/web")["drift"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["kind"] == "modified"))
    });
    // The marker goes with the old document, so the wait below cannot be satisfied by
    // the page as it was before the reload took effect (reload() returns at once).
    browser.eval("window.staleDocument = true; location.reload(); true");
    browser.wait_for(
        "the mid-rollout group page",
        "window.staleDocument === undefined \
         && document.getElementById('g-drift').innerText.includes('t3.large') \
         && document.getElementById('g-op').innerText.includes('bake') \
         && document.getElementById('g-chart-svg') !== null",
        Duration::from_secs(30),
    );
    let text = browser.text();
    for expected in [
        "modified",
        "instanceType",
        "t3.small",
        "t3.large",
        "outdated",
        "bake",
        "running",
        "canary",
        gen_a.as_str(),
        gen_b.as_str(),
        "(target)",
        canary.as_str(),
    ] {
        assert!(
            text.contains(expected),
            "mid-rollout: `{expected}` missing in\n{text}"
        );
    }
    assert_eq!(
        browser.eval("document.getElementById('btn-cancel').disabled"),
        Value::Bool(false),
        "a running plan can be cancelled"
    );
    let paths = browser.eval("document.querySelectorAll('#g-chart-svg path').length");
    assert_eq!(paths, 2, "one line per generation in the chart");
    shoot(&mut browser, &shots, "group-mid-rollout");

    // 3. After a rollback: a commit to an image that never becomes healthy. The baking
    //    plan is cancelled from the page (the bake would hold it for an hour); the new
    //    plan's canary fails its health gate and is rolled back.
    std::fs::write(&file, group("t3.small", "ami-broken")).expect("write group");
    daemon.wait_for("the broken revision", Duration::from_secs(30), |d| {
        d.json("/api/v1/groups/web")["desired_hash"] != mid["desired_hash"]
    });
    let wrong = click(&mut browser, "btn-cancel", "wrong-token");
    assert!(
        wrong.contains("HTTP 401") && wrong.contains("unauthorized"),
        "a wrong token shows the API's error: {wrong}"
    );
    let answer = click(&mut browser, "btn-cancel", TOKEN);
    assert!(
        answer.contains("HTTP 200") && answer.contains("cancelled"),
        "{answer}"
    );
    daemon.wait_for("the rollback", Duration::from_secs(90), |d| {
        plans_of(d).iter().any(|p| p["state"] == "rolled_back")
    });
    daemon.wait_for(
        "the group blocked as failed, the rolled-back canary gone from the inventory",
        Duration::from_secs(30),
        |d| {
            let g = d.json("/api/v1/groups/web");
            g["sync"] == "failed"
                && g["instances"]
                    .as_array()
                    .is_some_and(|i| i.iter().all(|i| i["spec_hash"] != g["desired_hash"]))
        },
    );
    let after = daemon.json("/api/v1/groups/web");
    let gen_c = short(after["desired_hash"].as_str().expect("hash"));
    browser.wait_for(
        "the rolled-back group page",
        "document.getElementById('g-op').innerText.includes('rolled back') \
         && document.getElementById('g-pills').innerText.includes('failed') \
         && document.getElementById('g-cards').innerText.includes('0/3')",
        Duration::from_secs(30),
    );
    let text = browser.text();
    for expected in [
        "failed",
        "rolled back",
        "rollback",
        "is unhealthy",
        gen_a.as_str(),
        gen_b.as_str(),
        gen_c.as_str(),
    ] {
        assert!(
            text.contains(expected),
            "after rollback: `{expected}` missing in\n{text}"
        );
    }
    let history = browser.eval("document.querySelectorAll('#g-history tbody tr').length");
    assert!(history.as_u64().is_some_and(|n| n >= 3), "{history}");
    shoot(&mut browser, &shots, "group-rolled-back");

    // Retry shows whatever the API answers: 202 where the endpoint exists, else the
    // API's JSON error (404/405) verbatim.
    let (status, body) = daemon.post(
        "/api/v1/groups/web/retry",
        &[("Authorization", "Bearer wrong-token")],
        b"",
    );
    let shown = click(&mut browser, "btn-retry", "wrong-token");
    assert!(
        shown.contains(&format!("HTTP {status}")),
        "{shown} vs {body}"
    );
    if status >= 400 {
        let error: Value = serde_json::from_str(&body).expect("a JSON error");
        let code = error["error"]["code"].as_str().expect("an error code");
        let message = error["error"]["message"].as_str().expect("a message");
        assert!(
            shown.contains(code) && shown.contains(message),
            "{shown} vs {body}"
        );
    }
    let shown = click(&mut browser, "btn-retry", TOKEN);
    let status: u16 = shown
        .split("HTTP ")
        .nth(1)
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .expect("a status in the answer");
    assert!(
        status == 202 || status == 404 || status == 405,
        "retry with the token: {shown}"
    );
}
