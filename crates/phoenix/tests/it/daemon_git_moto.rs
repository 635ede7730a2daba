//! The whole daemon end to end (issue 7): a repository served by `git daemon`, moto as
//! the cloud, `phoenix run` as a child process.
//!
//! Push a new image -> signed webhook -> replacement executed -> status in sync and every
//! instance carries the new hash; out-of-band ModifyInstanceAttribute -> `modified` drift
//! in the API -> replaced; an invalid commit -> rejection on /api/v1/status, fleet
//! untouched; a restart keeps history and plans. Alerts go to a signed webhook
//! receiver: the out-of-band change produces exactly one `drift_detected` and, after
//! the replacement, one `drift_resolved` (issue 8).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::{Daemon, Receiver};
use hmac::{Hmac, Mac};
use phoenix_testkit::git::{GitDaemon, RepoHost, WorkRepo};
use phoenix_testkit::moto::{MotoServer, http_request};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "webhook-secret";
const TOKEN: &str = "api-token";
const ALERT_SECRET: &str = "alert-secret";

fn group(image: &str) -> String {
    format!(
        "apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: web
spec:
  provider: aws
  replicas: 2
  template:
    image: {image}
    instanceType: t3.micro
  rollout: {{maxSurge: 1, maxUnavailable: 0}}
  health: {{check: provider, grace: 0s, deadline: 2m}}
"
    )
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("PHX_HOOK", SECRET),
        ("PHX_TOKEN", TOKEN),
        ("PHX_ALERT", ALERT_SECRET),
    ]
}

fn signed_push(daemon: &Daemon, after: &str, delivery: &str) -> u16 {
    let body = format!(
        r#"{{"ref":"refs/heads/main","before":"0000","after":"{after}","repository":{{"full_name":"acme/infra"}}}}"#
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("hmac key");
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = [
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", delivery),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    daemon
        .post("/api/v1/webhooks/git", &headers, body.as_bytes())
        .0
}

fn web(daemon: &Daemon) -> Value {
    daemon.json("/api/v1/groups/web")
}

/// In sync with `replicas` instances, all carrying the desired hash.
fn converged(group: &Value) -> bool {
    let desired = &group["desired_hash"];
    let instances = group["instances"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    group["sync"] == "in_sync"
        && instances.len() == 2
        && instances
            .iter()
            .all(|i| &i["spec_hash"] == desired && i["state"] == "running")
}

fn instance_ids(group: &Value) -> BTreeSet<String> {
    group["instances"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn push_webhook_drift_rejection_and_restart() {
    let moto = MotoServer::start();
    let host = RepoHost::new();
    let bare = host.create("infra");
    let git_daemon = GitDaemon::start(host.path());
    let work = WorkRepo::new(&bare);
    work.write("groups/web.yaml", &group("ami-00000000000000001"));
    let first = work.commit("web on image 1");
    work.push();

    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "owner: e2e
source:
  git: {{url: \"{url}\", branch: main, path: groups, interval: 1h}}
providers:
  - {{name: aws, type: aws_ec2, region: us-east-1, endpoint_url: \"{endpoint}\"}}
reconcile: {{interval: 2s, mode: enforce}}
state: {{path: state}}
server: {{listen: \"{{LISTEN}}\", token_env: PHX_TOKEN}}
webhooks: {{git: {{secret_env: PHX_HOOK}}}}
alerts:
  - {{name: ops, type: webhook, url: \"{alert_url}\", secret_env: PHX_ALERT}}
",
        alert_url = receiver.url(),
        url = git_daemon.url("infra"),
        endpoint = moto.endpoint_url(),
    );
    let env = env();
    let mut daemon = Daemon::start(dir.path(), &config, &env);
    daemon.wait_for(
        "the first generation to converge",
        Duration::from_secs(90),
        |d| converged(&web(d)),
    );
    assert_eq!(
        daemon.json("/api/v1/status")["revision"]["id"],
        first.as_str()
    );

    // 1. Push a new image; the signed webhook makes the daemon fetch at once (the poll
    //    interval is an hour) and replace the fleet.
    work.write("groups/web.yaml", &group("ami-00000000000000002"));
    let second = work.commit("web on image 2");
    work.push();
    let old_hash = web(&daemon)["desired_hash"].clone();
    let old_ids = instance_ids(&web(&daemon));
    // A bad signature triggers nothing.
    let (code, _) = daemon.post(
        "/api/v1/webhooks/git",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "bad"),
            ("X-Hub-Signature-256", "sha256=00"),
        ],
        b"{}",
    );
    assert_eq!(code, 401);
    assert_eq!(signed_push(&daemon, &second, "delivery-1"), 202);
    daemon.wait_for("the pushed revision", Duration::from_secs(30), |d| {
        d.json("/api/v1/status")["revision"]["id"] == second.as_str()
    });
    daemon.wait_for(
        "the replacement to converge",
        Duration::from_secs(120),
        |d| {
            let g = web(d);
            converged(&g) && g["desired_hash"] != old_hash
        },
    );
    let replaced = web(&daemon);
    assert!(
        instance_ids(&replaced).is_disjoint(&old_ids),
        "every instance was replaced: {replaced}"
    );
    let plans = daemon.json("/api/v1/plans");
    assert!(
        plans["plans"]
            .as_array()
            .expect("plans")
            .iter()
            .any(|p| p["group"] == "web" && p["state"] == "succeeded"),
        "{plans}"
    );

    // 2. An out-of-band instance-type change: `modified` drift shows up, then the
    //    instance is replaced.
    let victim = instance_ids(&replaced)
        .into_iter()
        .next()
        .expect("an instance");
    let body = format!(
        "Action=ModifyInstanceAttribute&Version=2016-11-15&InstanceId={victim}&InstanceType.Value=t3.large"
    );
    let (status, response) = http_request(
        moto.addr(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
            ),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&response));
    daemon.wait_for("the modified finding", Duration::from_secs(30), |d| {
        web(d)["drift"].as_array().is_some_and(|drift| {
            drift.iter().any(|f| {
                f["kind"] == "modified"
                    && f["instance_id"] == victim.as_str()
                    && f["field"] == "instanceType"
                    && f["observed"] == "t3.large"
            })
        }) || !instance_ids(&web(d)).contains(&victim)
    });
    daemon.wait_for(
        "the modified instance to be replaced",
        Duration::from_secs(120),
        |d| {
            let g = web(d);
            converged(&g) && !instance_ids(&g).contains(&victim)
        },
    );

    // Alerts: one signed drift_detected for the modified instance, one drift_resolved.
    let modified = |event: &str| -> Vec<Value> {
        receiver
            .received()
            .iter()
            .map(|r| {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(ALERT_SECRET.as_bytes()).expect("hmac key");
                mac.update(&r.body);
                let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                assert_eq!(
                    r.header("X-Phoenix-Signature"),
                    Some(expected.as_str()),
                    "every alert is signed"
                );
                r.json()
            })
            .filter(|b| b["event"] == event && b["drift_kind"] == "modified")
            .collect()
    };
    daemon.wait_for("the modified alerts", Duration::from_secs(60), |_| {
        !modified("drift_detected").is_empty() && !modified("drift_resolved").is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    let detected = modified("drift_detected");
    let resolved = modified("drift_resolved");
    assert_eq!(detected.len(), 1, "one drift_detected: {detected:?}");
    assert_eq!(resolved.len(), 1, "one drift_resolved: {resolved:?}");
    assert_eq!(detected[0]["version"], "1");
    assert_eq!(detected[0]["group"], "web");
    assert_eq!(detected[0]["incident_id"], resolved[0]["incident_id"]);
    assert!(detected[0]["delivery_id"].is_string() && detected[0]["timestamp"].is_string());

    // 3. An invalid commit: rejected with its position, the fleet untouched.
    let before = instance_ids(&web(&daemon));
    work.write(
        "groups/web.yaml",
        &group("ami-00000000000000003").replace("instanceType", "instanceTyp"),
    );
    let bad = work.commit("typo");
    work.push();
    assert_eq!(signed_push(&daemon, &bad, "delivery-2"), 202);
    daemon.wait_for("the rejection", Duration::from_secs(30), |d| {
        !d.json("/api/v1/status")["revision"]["error"].is_null()
    });
    let status = daemon.json("/api/v1/status");
    assert_eq!(
        status["revision"]["id"],
        second.as_str(),
        "last good revision stays: {status}"
    );
    assert_eq!(status["revision"]["error"]["revision"], bad.as_str());
    assert_eq!(status["revision"]["error"]["path"], "groups/web.yaml");
    assert_eq!(status["revision"]["error"]["line"], 10);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        instance_ids(&web(&daemon)),
        before,
        "fleet untouched by a rejected revision"
    );

    // 4. Restart (SIGKILL): history and plans survive.
    let plans_before = daemon.json("/api/v1/plans")["plans"]
        .as_array()
        .expect("plans")
        .len();
    daemon.restart(&env);
    let plans_after = daemon.json("/api/v1/plans")["plans"]
        .as_array()
        .expect("plans")
        .len();
    assert!(
        plans_after >= plans_before,
        "plans kept across a restart ({plans_before} -> {plans_after})"
    );
    let history = web(&daemon)["history"].as_array().expect("history").len();
    assert!(
        history >= 2,
        "history kept across a restart: {}",
        web(&daemon)
    );
    assert_eq!(daemon.terminate(Duration::from_secs(15)), Some(0));
    drop(git_daemon);
}
