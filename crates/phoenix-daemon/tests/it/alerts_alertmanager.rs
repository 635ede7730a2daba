//! Issue 8: a real Alertmanager (Debian `prometheus-alertmanager`, started on a free
//! loopback port with clustering off) shows Phoenix's drift alert active, then resolved
//! once the drift is gone.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::alerts_support::{RunningDelivery, fast_options, open_store, receiver, within};
use phoenix_core::config::AlertType;
use phoenix_core::drift::{DriftKind, Finding};
use phoenix_core::{GroupName, SpecHash};
use phoenix_daemon::alerts::{AlertOptions, Alerts, DriftPass, GroupObservation};
use phoenix_testkit::alertmanager::Alertmanager;
use serde_json::Value;

fn pass(findings: Vec<Finding>) -> DriftPass {
    let desired: SpecHash =
        "v1:sha256:2222222222222222222222222222222222222222222222222222222222222222"
            .parse()
            .expect("hash");
    DriftPass {
        commit: "feedface".into(),
        groups: vec![GroupObservation {
            name: GroupName::new("api").expect("name"),
            desired_hash: Some(desired),
            observed_hashes: vec![desired],
            findings,
        }],
    }
}

fn missing() -> Finding {
    Finding {
        kind: DriftKind::Missing,
        group: Some("api".into()),
        provider: "local".into(),
        instance_id: None,
        count: Some(2),
        field: None,
        expected: None,
        observed: None,
        reason: "2 of 3 replicas missing".into(),
    }
}

async fn phoenix_alerts(am: &std::sync::Arc<Alertmanager>) -> Vec<Value> {
    let am = std::sync::Arc::clone(am);
    let json = within(
        "GET /api/v2/alerts",
        tokio::task::spawn_blocking(move || am.alerts_json()),
    )
    .await
    .expect("query Alertmanager");
    let all: Vec<Value> = serde_json::from_str(&json).expect("alert list JSON");
    all.into_iter()
        .filter(|a| a["labels"]["alertname"] == "PhoenixDrift")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_shows_the_drift_alert_active_then_resolved() {
    let am = std::sync::Arc::new(
        within(
            "start Alertmanager",
            tokio::task::spawn_blocking(Alertmanager::start),
        )
        .await
        .expect("Alertmanager fixture"),
    );
    let configs = vec![receiver("am", AlertType::Alertmanager, am.url())];
    let options = AlertOptions {
        owner: "acme-test".into(),
        external_url: Some("http://127.0.0.1:8080".into()),
        ..AlertOptions::default()
    };
    let mut alerts = Alerts::new(&configs, &BTreeMap::new(), options).expect("alerts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_store(dir.path());
    let delivery = RunningDelivery::start(
        open_store(dir.path()),
        alerts.receivers(),
        fast_options(),
        alerts.delivery_wake(),
    );

    let opened = alerts
        .observe_drift(&mut store, &pass(vec![missing()]), SystemTime::now())
        .expect("observe");
    let incident = opened[0].incident_id().expect("incident").to_string();

    let active = within("alert becomes active", async {
        loop {
            let found = phoenix_alerts(&am).await;
            if let Some(alert) = found.into_iter().find(|a| a["status"]["state"] == "active") {
                return alert;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(active["labels"]["group"], "api");
    assert_eq!(active["labels"]["drift_kind"], "missing");
    assert_eq!(active["labels"]["owner"], "acme-test");
    assert_eq!(active["labels"]["incident_id"], incident.as_str());
    assert!(
        active["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("missing: 2 instances")),
        "{active}"
    );
    assert_eq!(
        active["generatorURL"],
        "http://127.0.0.1:8080/api/v1/groups/api"
    );

    alerts
        .observe_drift(&mut store, &pass(vec![]), SystemTime::now())
        .expect("observe");
    within("alert resolves", async {
        loop {
            if phoenix_alerts(&am).await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    // Alertmanager may have the resolve before the delivery task records it.
    within("both deliveries recorded", async {
        loop {
            let counts = store.outbox_counts().expect("counts")["am"];
            if counts.delivered == 2 {
                assert_eq!((counts.pending, counts.failing), (0, 0));
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    within("stop", delivery.stop()).await;
}
