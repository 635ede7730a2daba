//! The monitoring examples against the metrics this crate serves (issue 21): every
//! `phoenix_*` metric the Grafana dashboard and the Prometheus rules name is one that
//! `GET /metrics` exports (the rules' `phoenix_leader` excepted: it arrives with HA);
//! `promtool check rules` accepts the rules, and `promtool check metrics` finds no
//! problem in a rendering with every kind of series.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::SystemTime;

use phoenix_api::Metrics;
use phoenix_testkit::prometheus::promtool;
use serde_json::Value;

/// Metrics the rules may name before the daemon exports them (design section 13).
const NOT_YET_EXPORTED: &[&str] = &["phoenix_leader"];

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/monitoring")
        .join(name)
}

/// Every series name `GET /metrics` can serve: each family of a `# TYPE` line, plus the
/// `_bucket`, `_sum` and `_count` series of histograms.
fn exported() -> BTreeSet<String> {
    let text = Metrics::default().render(&crate::api::snapshot(true), SystemTime::now());
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("`# TYPE name kind`");
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    assert!(names.len() > 10, "{text}");
    names
}

/// The `phoenix_*` identifiers in a PromQL expression (or any text).
fn phoenix_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("phoenix_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Only whole identifiers (not `xphoenix_...`), not prose such as `phoenix_*`.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && end > "phoenix_".len()
        {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

fn exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn grafana_dashboard_names_only_exported_metrics() {
    let text = std::fs::read_to_string(example("grafana-dashboard.json")).expect("read");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut found = Vec::new();
    exprs(&dashboard, &mut found);
    assert!(found.len() >= 20, "panel queries: {found:?}");
    let exported = exported();
    let mut used = BTreeSet::new();
    for expr in &found {
        let names = phoenix_names(expr);
        assert!(
            !names.is_empty(),
            "a query over no phoenix_* metric: {expr}"
        );
        for name in names {
            assert!(
                exported.contains(&name),
                "the dashboard queries `{name}`, which GET /metrics does not export \
                 (exported: {exported:?}); query: {expr}"
            );
            used.insert(name);
        }
    }
    // Templating queries too (label_values over a metric).
    for name in phoenix_names(&text) {
        assert!(
            exported.contains(&name),
            "`{name}` in the dashboard is not exported"
        );
    }
    // Every family is on the dashboard (histograms through their series).
    for name in &exported {
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .unwrap_or(name);
        assert!(
            used.iter().any(|u| u.starts_with(family)),
            "the dashboard shows nothing of `{name}`"
        );
    }
    // Panels are well formed: a datasource, a position, unique ids.
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{panel}");
    }
}

#[test]
fn alerting_rules_name_exported_metrics_and_pass_promtool() {
    let path = example("phoenix-rules.yml");
    let text = std::fs::read_to_string(&path).expect("read the rules");
    let exported = exported();
    let named = phoenix_names(&text);
    for name in &named {
        assert!(
            exported.contains(name) || NOT_YET_EXPORTED.contains(&name.as_str()),
            "the rules name `{name}`, which GET /metrics does not export"
        );
    }
    for alert in [
        "PhoenixDriftOpenTooLong",
        "PhoenixPlanFailed",
        "PhoenixSourceStale",
        "PhoenixAlertsUndeliverable",
        "PhoenixNoLeader",
    ] {
        assert!(
            text.contains(&format!("alert: {alert}\n")),
            "{alert} missing"
        );
    }
    let out = promtool(
        &["check", "rules", path.to_str().expect("UTF-8 path")],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("SUCCESS"),
        "promtool check rules: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = example("prometheus.yml");
    let out = promtool(
        &["check", "config", config.to_str().expect("UTF-8 path")],
        None,
    );
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_finds_no_problem_in_the_metrics_text() {
    let metrics = Metrics::default();
    metrics.observe_reconcile(std::time::Duration::from_millis(20));
    let text = metrics.render(&crate::api::snapshot(true), SystemTime::now());
    assert!(
        text.contains("phoenix_drift_oldest_open_seconds{kind=\"modified\"} "),
        "{text}"
    );
    assert!(text.contains("phoenix_alerts_failed 0\n"), "{text}");
    let out = promtool(&["check", "metrics"], Some(text.as_bytes()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {report}\n--- text:\n{text}"
    );
}
