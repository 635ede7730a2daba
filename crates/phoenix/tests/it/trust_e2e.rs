//! Issue 18 end to end, with `phoenix run` and `phoenix plan` as a user runs them:
//! - signed commits: a daemon following a `git daemon` repository with
//!   `source.git.verify` accepts an SSH-signed commit (the status API shows the signer),
//!   and a push webhook naming an unsigned commit is verified the same way: rejected,
//!   `revision.error.commit` set, path/line/column null, the fleet unchanged;
//! - image policy on the sim: one group's image breaks `policy.images` and is never
//!   launched (finding `policy_violation`, one `policy_violation` alert), while another
//!   group launches; `phoenix plan` exits 1 naming group, file, image and rule.

use std::process::Command;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use phoenix_testkit::git::{GitDaemon, RepoHost, WorkRepo};
use phoenix_testkit::signing::{SshKeyType, SshSigner};
use serde_json::Value;
use sha2::Sha256;

use crate::support::{Daemon, Receiver};

const HOOK_SECRET: &str = "hook-secret";
const ALERT_SECRET: &str = "alert-secret";

fn group(name: &str, image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  provider: local\n  replicas: {replicas}\n  template:\n    image: {image}\n    instanceType: t3.micro\n"
    )
}

fn push_webhook(daemon: &Daemon, after: &str) -> u16 {
    let body = format!(
        r#"{{"ref":"refs/heads/main","before":"0000","after":"{after}","repository":{{"full_name":"acme/infra"}}}}"#
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).expect("hmac key");
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = [
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "d-1"),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    daemon
        .post("/api/v1/webhooks/git", &headers, body.as_bytes())
        .0
}

fn instances(group: &Value) -> usize {
    group["instances"].as_array().map_or(0, Vec::len)
}

#[test]
fn signed_commit_is_applied_and_an_unsigned_push_is_rejected_on_the_webhook_path() {
    let host = RepoHost::new();
    let bare = host.create("infra");
    let git_daemon = GitDaemon::start(host.path());
    let work = WorkRepo::new(&bare);
    let key = SshSigner::new(SshKeyType::Ed25519);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("allowed_signers"),
        key.allowed_signers_line("alice@example.com", "namespaces=\"git\"") + "\n",
    )
    .expect("write allowed_signers");
    work.write("groups/web.yaml", &group("web", "ami-1", 1));
    let signed = work.commit_signed("web, signed", &key);
    work.push();

    // A long poll interval: after the first poll only the webhook makes the daemon look.
    let config = format!(
        "owner: e2e
source:
  git:
    url: \"{url}\"
    path: groups
    interval: 1h
    verify: {{mode: all, allowed_signers: allowed_signers}}
providers:
  - {{name: local, type: sim}}
reconcile: {{interval: 1s, mode: enforce}}
state: {{path: state}}
server: {{listen: \"{{LISTEN}}\"}}
webhooks: {{git: {{secret_env: PHX_HOOK}}}}
",
        url = git_daemon.url("infra"),
    );
    let mut daemon = Daemon::start(dir.path(), &config, &[("PHX_HOOK", HOOK_SECRET)]);
    daemon.wait_for("web to launch", Duration::from_secs(60), |d| {
        instances(&d.json("/api/v1/groups/web")) == 1
    });
    let status = daemon.json("/api/v1/status");
    assert_eq!(status["revision"]["id"], signed.as_str());
    let signature = &status["revision"]["signature"];
    assert_eq!(signature["kind"], "ssh", "{status}");
    assert_eq!(signature["key"], key.fingerprint().as_str());
    assert_eq!(signature["signer"], "alice@example.com");

    // An unsigned commit that would scale web to 3, announced by a push webhook.
    work.write("groups/web.yaml", &group("web", "ami-1", 3));
    let unsigned = work.commit("scale web, unsigned");
    work.push();
    assert_eq!(push_webhook(&daemon, &unsigned), 202);
    daemon.wait_for("the rejection", Duration::from_secs(60), |d| {
        !d.json("/api/v1/status")["revision"]["error"].is_null()
    });
    let status = daemon.json("/api/v1/status");
    let error = &status["revision"]["error"];
    assert_eq!(
        status["revision"]["id"],
        signed.as_str(),
        "the last good revision stays"
    );
    assert_eq!(error["revision"], unsigned.as_str());
    assert_eq!(error["commit"], unsigned.as_str());
    assert!(
        error["path"].is_null() && error["line"].is_null() && error["column"].is_null(),
        "{error}"
    );
    let message = error["message"].as_str().expect("message");
    assert!(
        message.contains("unsigned") && message.contains(&unsigned),
        "{message}"
    );
    assert_eq!(
        status["revision"]["signature"]["signer"],
        "alice@example.com"
    );
    let web = daemon.json("/api/v1/groups/web");
    assert_eq!(
        web["replicas"], 1,
        "the unsigned scale-up never reached the fleet"
    );
    assert_eq!(instances(&web), 1);
    daemon.terminate(Duration::from_secs(20));
}

/// A sim with three registered images and a policy two of them break.
fn policy_config(alert_url: &str) -> String {
    let day = 86_400;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    let at = |secs: u64| {
        humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    };
    format!(
        "owner: e2e
source: {{dir: {{path: desired, watch: true, interval: 1s}}}}
providers:
  - name: local
    type: sim
    images:
      - {{id: ami-golden, owner: \"111122223333\", name: golden-web-1, tags: {{source-commit: abc}}, created: \"{fresh}\"}}
      - {{id: ami-rogue, owner: \"111122223333\", name: laptop-build, tags: {{source-commit: abc}}, created: \"{fresh}\"}}
      - {{id: ami-retired, owner: \"111122223333\", name: golden-web-0, tags: {{source-commit: abc}}, created: \"{fresh}\", deprecated_at: \"{past}\"}}
policy:
  images:
    owners: [\"111122223333\"]
    name: \"golden-*\"
    require_tags: {{source-commit: \"*\"}}
    max_age: 90d
reconcile: {{interval: 1s, mode: enforce}}
state: {{path: state}}
server: {{listen: \"{{LISTEN}}\"}}
alerts:
  - {{name: ops, type: webhook, url: \"{alert_url}\", secret_env: PHX_ALERT, events: [policy_violation, plan_succeeded]}}
",
        fresh = at(now - day),
        past = at(now - 3600),
    )
}

fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("desired")).expect("mkdir");
    for (name, image) in [
        ("web", "ami-golden"),
        ("api", "ami-rogue"),
        ("old", "ami-retired"),
    ] {
        std::fs::write(
            dir.path().join(format!("desired/{name}.yaml")),
            group(name, image, 2),
        )
        .expect("write group");
    }
    dir
}

fn policy_alerts(receiver: &Receiver, group: &str) -> usize {
    receiver
        .received()
        .iter()
        .map(|r| r.json())
        .filter(|body| body["event"] == "policy_violation" && body["group"] == group)
        .count()
}

#[test]
fn image_policy_on_the_sim_blocks_violating_groups_and_alerts_once() {
    let receiver = Receiver::start();
    let dir = policy_dir();
    let config = policy_config(&receiver.url());
    let mut daemon = Daemon::start(dir.path(), &config, &[("PHX_ALERT", ALERT_SECRET)]);
    daemon.wait_for("web to launch and succeed", Duration::from_secs(60), |d| {
        d.json("/api/v1/groups/web")["sync"] == "in_sync"
    });
    daemon.wait_for("both policy alerts", Duration::from_secs(60), |_| {
        policy_alerts(&receiver, "api") >= 1 && policy_alerts(&receiver, "old") >= 1
    });
    assert_eq!(instances(&daemon.json("/api/v1/groups/web")), 2);
    for (name, image, rule) in [
        ("api", "ami-rogue", "name"),
        ("old", "ami-retired", "deny_deprecated"),
    ] {
        let group = daemon.json(&format!("/api/v1/groups/{name}"));
        assert_eq!(instances(&group), 0, "{name} never launches: {group}");
        let finding = &group["drift"][0];
        assert_eq!(finding["kind"], "policy_violation", "{group}");
        assert_eq!(finding["field"], "image");
        assert_eq!(finding["expected"], image);
        assert!(
            finding["observed"]
                .as_str()
                .expect("observed")
                .starts_with(rule),
            "{finding}"
        );
    }
    // More passes run (the daemon passes every second); the alerts stay one each.
    let passes_before = daemon.json("/api/v1/groups/api")["drift"][0]["since"].clone();
    daemon.wait_for("a few more passes", Duration::from_secs(30), |d| {
        d.get("/metrics").1.lines().any(|l| {
            l.starts_with("phoenix_reconcile_duration_seconds_count")
                && l.split_whitespace()
                    .last()
                    .and_then(|n| n.parse::<u64>().ok())
                    >= Some(8)
        })
    });
    assert_eq!(
        daemon.json("/api/v1/groups/api")["drift"][0]["since"],
        passes_before
    );
    assert_eq!(policy_alerts(&receiver, "api"), 1);
    assert_eq!(policy_alerts(&receiver, "old"), 1);
    assert_eq!(instances(&daemon.json("/api/v1/groups/api")), 0);
    daemon.terminate(Duration::from_secs(20));

    // `phoenix plan` on the same config: exit 1, naming group, file, image and rule.
    let out = Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["plan", "--config"])
        .arg(dir.path().join("phoenix.yaml"))
        .output()
        .expect("run phoenix plan");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "group `api` (api.yaml): image ami-rogue breaks policy.images rule `name`",
        "group `old` (old.yaml): image ami-retired breaks policy.images rule `deny_deprecated`",
    ] {
        assert!(
            stderr.contains(expected),
            "`{expected}` missing from:\n{stderr}"
        );
    }
    assert!(!stderr.contains("group `web`"), "{stderr}");
}
