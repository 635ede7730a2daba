//! The shipped monitoring (examples/monitoring/, issue 21) against a running daemon:
//! `promtool check metrics` on a live `/metrics`, and a real Prometheus that scrapes
//! `phoenix run`, loads the alerting rules, lists them healthy, holds scraped series for
//! every metric the rules and the Grafana dashboard name, and fires a rule on the
//! daemon's real data.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use phoenix_testkit::prometheus::{Prometheus, promtool};
use serde_json::Value;

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

/// A group behind a sim target group, so the traffic metric has a series.
const API: &str = "apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: api
spec:
  provider: local
  replicas: 1
  template:
    image: ami-1
    instanceType: t3.micro
  traffic: {targetGroups: [api-tg]}
";

// Observe mode: the groups' replicas stay missing, so drift series exist.
const CONFIG: &str = "owner: mon
source: {dir: {path: desired, watch: true, interval: 1s}}
providers:
  - {name: local, type: sim, target_groups: [{name: api-tg}]}
reconcile: {interval: 1s, mode: observe}
state: {path: state}
server: {listen: \"{LISTEN}\"}
";

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/monitoring")
        .join(name)
}

fn query(prometheus: &Prometheus, promql: &str) -> Vec<Value> {
    let mut encoded = String::new();
    for b in promql.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let (status, body) = prometheus.get(&format!("/api/v1/query?query={encoded}"));
    assert_eq!(status, 200, "query `{promql}`: {body}");
    let answer: Value = serde_json::from_str(&body).expect("a JSON answer");
    assert_eq!(answer["status"], "success", "query `{promql}`: {body}");
    answer["data"]["result"]
        .as_array()
        .expect("a vector")
        .clone()
}

fn wait(what: &str, timeout: Duration, prometheus: &Prometheus, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; Prometheus log:\n{}",
            prometheus.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `phoenix_*` identifiers in a text.
fn phoenix_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("phoenix_") {
        if text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let tail = &text[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if end > "phoenix_".len() {
            names.insert(tail[..end].to_owned()); // not prose such as `phoenix_*`
        }
    }
    names
}

/// A copy of the shipped rules with every `for:` cut to zero, under another group name,
/// so a rule fires on the daemon's data within seconds.
fn fast_rules(dir: &std::path::Path) -> PathBuf {
    let text = std::fs::read_to_string(example("phoenix-rules.yml")).expect("read the rules");
    let fast: String = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("for: ") {
                let indent = &line[..line.len() - line.trim_start().len()];
                format!("{indent}for: 0s\n")
            } else if line.trim() == "- name: phoenix" {
                line.replace("phoenix", "phoenix-fast") + "\n"
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert!(fast.contains("for: 0s") && fast.contains("phoenix-fast"));
    let path = dir.join("phoenix-rules-fast.yml");
    std::fs::write(&path, fast).expect("write the fast rules");
    path
}

#[test]
fn live_metrics_and_rules_in_a_real_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("desired")).expect("mkdir");
    std::fs::write(dir.path().join("desired/web.yaml"), WEB).expect("write group");
    std::fs::write(dir.path().join("desired/api.yaml"), API).expect("write group");
    let daemon = Daemon::start(dir.path(), CONFIG, &[]);
    daemon.wait_for("the missing finding", Duration::from_secs(30), |d| {
        d.get("/metrics")
            .1
            .contains("phoenix_drift_oldest_open_seconds{kind=\"missing\"}")
    });

    // promtool check metrics on the live text: no problem reported.
    let (status, metrics) = daemon.get("/metrics");
    assert_eq!(status, 200);
    let out = promtool(&["check", "metrics"], Some(metrics.as_bytes()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {report}\n--- /metrics:\n{metrics}"
    );

    // A real Prometheus scraping the daemon with the shipped rules and a fast copy.
    let shipped = example("phoenix-rules.yml");
    let fast = fast_rules(dir.path());
    let prometheus = Prometheus::start(&[daemon.addr], &[&shipped, &fast]);
    wait(
        "every rule evaluated and healthy",
        Duration::from_secs(60),
        &prometheus,
        || {
            let (_, body) = prometheus.get("/api/v1/rules");
            let answer: Value = serde_json::from_str(&body).unwrap_or_default();
            let groups = answer["data"]["groups"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let rules: Vec<Value> = groups
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            groups.len() == 2
                && rules.len() == 20
                && rules.iter().all(|r| {
                    r["health"] == "ok"
                        && r["lastEvaluation"]
                            .as_str()
                            .is_some_and(|t| !t.starts_with("0001"))
                })
        },
    );
    let (_, body) = prometheus.get("/api/v1/rules");
    for alert in [
        "PhoenixDriftOpenTooLong",
        "PhoenixPlanFailed",
        "PhoenixSourceStale",
        "PhoenixAlertsUndeliverable",
        "PhoenixNoLeader",
    ] {
        assert!(
            body.contains(&format!("\"name\":\"{alert}\"")),
            "{alert}: {body}"
        );
    }

    // Scraped data for every metric the rules and the dashboard name.
    wait(
        "the first scrapes",
        Duration::from_secs(60),
        &prometheus,
        || query(&prometheus, "phoenix_ready{job=\"phoenix\"} == 1").len() == 1,
    );
    let rules_text = std::fs::read_to_string(&shipped).expect("read the rules");
    let dashboard =
        std::fs::read_to_string(example("grafana-dashboard.json")).expect("read the dashboard");
    let mut names = phoenix_names(&rules_text);
    names.extend(phoenix_names(&dashboard));
    names.remove("phoenix_leader"); // arrives with HA (docs/monitoring.md)
    assert!(names.len() > 15, "{names:?}");
    for name in &names {
        wait(
            &format!("series of {name}"),
            Duration::from_secs(30),
            &prometheus,
            || !query(&prometheus, &format!("{name}{{job=\"phoenix\"}}")).is_empty(),
        );
    }
    // A rule's own expression on the scraped data: the missing finding's age.
    let drift = query(
        &prometheus,
        "phoenix_drift_oldest_open_seconds{kind!=\"unmanaged\"} >= 0",
    );
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0]["metric"]["kind"], "missing");
    // PhoenixNoLeader stays silent on a single daemon.
    assert!(query(&prometheus, "sum by (job) (phoenix_leader) < 1").is_empty());

    // A rejected revision makes the (fast) PhoenixRevisionRejected fire.
    std::fs::write(
        dir.path().join("desired/web.yaml"),
        WEB.replace("instanceType", "instanceTyp"),
    )
    .expect("write");
    wait(
        "PhoenixRevisionRejected firing",
        Duration::from_secs(60),
        &prometheus,
        || {
            let (_, body) = prometheus.get("/api/v1/alerts");
            let answer: Value = serde_json::from_str(&body).unwrap_or_default();
            answer["data"]["alerts"].as_array().is_some_and(|alerts| {
                alerts.iter().any(|a| {
                    a["labels"]["alertname"] == "PhoenixRevisionRejected" && a["state"] == "firing"
                })
            })
        },
    );
}
