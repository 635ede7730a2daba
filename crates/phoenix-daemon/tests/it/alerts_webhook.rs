//! Issue 8: signed webhook and Slack delivery through the outbox to an in-test receiver.
//! One out-of-band change gives exactly one signed `drift_detected`, its repair exactly
//! one `drift_resolved`, with the documented body, signature and headers.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::alerts_support::{
    Capture, RunningDelivery, fast_options, open_store, receiver, wait_settled, within,
};
use hmac::{Hmac, Mac};
use phoenix_core::config::AlertType;
use phoenix_core::drift::{DriftKind, Field, Finding};
use phoenix_core::{GroupName, SpecHash};
use phoenix_daemon::alerts::{AlertOptions, Alerts, DriftPass, GroupObservation};
use sha2::Sha256;

const SECRET: &[u8] = b"s3cret-for-tests";
const DESIRED: &str = "v1:sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn pass(findings: Vec<Finding>) -> DriftPass {
    let desired: SpecHash = DESIRED.parse().expect("hash");
    DriftPass {
        commit: "c0ffee0123456789".to_string(),
        groups: vec![GroupObservation {
            name: GroupName::new("web").expect("name"),
            desired_hash: Some(desired),
            observed_hashes: vec![desired],
            findings,
        }],
    }
}

fn modified() -> Finding {
    Finding {
        kind: DriftKind::Modified,
        group: Some("web".into()),
        provider: "aws-prod".into(),
        instance_id: Some("i-0abc".into()),
        count: None,
        field: Some(Field::InstanceType),
        expected: Some("t3.micro".into()),
        observed: Some("t3.large".into()),
        reason: "instanceType changed out of band".into(),
    }
}

fn expected_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_signed_alert_per_transition_with_the_documented_body() {
    let capture = Capture::start().await;
    let configs = vec![
        receiver("ops", AlertType::Webhook, capture.url("/hook")),
        receiver("chat", AlertType::Slack, capture.url("/slack")),
    ];
    let secrets = BTreeMap::from([("ops".to_string(), SECRET.to_vec())]);
    let options = AlertOptions {
        owner: "acme-test".into(),
        ..AlertOptions::default()
    };
    let mut alerts = Alerts::new(&configs, &secrets, options).expect("alerts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_store(dir.path());
    let delivery = RunningDelivery::start(
        open_store(dir.path()),
        alerts.receivers(),
        fast_options(),
        alerts.delivery_wake(),
    );

    // Drift seen twice (two passes), then gone twice.
    let detected = alerts
        .observe_drift(&mut store, &pass(vec![modified()]), SystemTime::now())
        .expect("observe");
    assert_eq!(detected.len(), 1, "{detected:?}");
    let again = alerts
        .observe_drift(&mut store, &pass(vec![modified()]), SystemTime::now())
        .expect("observe");
    assert!(again.is_empty(), "still open: no new notice, got {again:?}");
    capture.wait_for(2).await;
    let resolved = alerts
        .observe_drift(&mut store, &pass(vec![]), SystemTime::now())
        .expect("observe");
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    let none = alerts
        .observe_drift(&mut store, &pass(vec![]), SystemTime::now())
        .expect("observe");
    assert!(none.is_empty(), "{none:?}");
    wait_settled(&store, "ops", 2).await;
    wait_settled(&store, "chat", 2).await;
    let received = capture.received();
    assert_eq!(received.len(), 4, "{received:#?}");

    let hooks: Vec<_> = received.iter().filter(|r| r.path == "/hook").collect();
    assert_eq!(hooks.len(), 2);
    let mut incident = None;
    for (hook, event) in hooks.iter().zip(["drift_detected", "drift_resolved"]) {
        assert_eq!(
            hook.header("X-Phoenix-Signature"),
            expected_signature(&hook.body)
        );
        assert_eq!(hook.header("X-Phoenix-Event"), event);
        assert_eq!(hook.header("content-type"), "application/json");
        let body = hook.json();
        let keys: Vec<&str> = body
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected_keys = vec![
            "version",
            "delivery_id",
            "event",
            "incident_id",
            "group",
            "drift_kind",
            "desired_hash",
            "observed_hashes",
            "commit",
            "message",
            "timestamp",
        ];
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        expected_keys.sort_unstable();
        assert_eq!(sorted, expected_keys);
        assert_eq!(body["version"], "1");
        assert_eq!(body["delivery_id"], hook.header("X-Phoenix-Delivery"));
        assert_eq!(body["event"], event);
        assert_eq!(body["group"], "web");
        assert_eq!(body["drift_kind"], "modified");
        assert_eq!(body["desired_hash"], DESIRED);
        assert_eq!(body["observed_hashes"], serde_json::json!([DESIRED]));
        assert_eq!(body["commit"], "c0ffee0123456789");
        let timestamp = body["timestamp"].as_str().expect("timestamp");
        humantime::parse_rfc3339(timestamp).expect("RFC 3339 timestamp");
        let message = body["message"].as_str().expect("message");
        assert!(message.contains("web"), "{message}");
        let id = body["incident_id"]
            .as_str()
            .expect("incident id")
            .to_string();
        match &incident {
            None => incident = Some(id),
            Some(first) => assert_eq!(first, &id, "resolve names the same incident"),
        }
    }
    assert!(
        hooks[0].json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("instanceType t3.micro -> t3.large")),
        "{:?}",
        hooks[0].json()
    );

    let slack: Vec<_> = received.iter().filter(|r| r.path == "/slack").collect();
    assert_eq!(slack.len(), 2);
    assert!(!slack[0].headers.contains_key("x-phoenix-signature"));
    let text = slack[0].json()["text"].as_str().expect("text").to_string();
    assert!(
        text.contains("[acme-test] group `web` diverged from Git"),
        "{text}"
    );
    assert!(slack[0].json()["blocks"].is_array());

    let counts = store.outbox_counts().expect("counts");
    for name in ["ops", "chat"] {
        let c = counts[name];
        assert_eq!((c.pending, c.failing, c.delivered), (0, 0, 2), "{name}");
    }
    within("stop", delivery.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_filters_decide_who_gets_what() {
    let capture = Capture::start().await;
    let mut only_resolved = receiver("resolved-only", AlertType::Webhook, capture.url("/r"));
    only_resolved.events = vec![phoenix_core::config::AlertEvent::DriftResolved];
    let secrets = BTreeMap::from([("resolved-only".to_string(), SECRET.to_vec())]);
    let mut alerts =
        Alerts::new(&[only_resolved], &secrets, AlertOptions::default()).expect("alerts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_store(dir.path());
    let delivery = RunningDelivery::start(
        open_store(dir.path()),
        alerts.receivers(),
        fast_options(),
        alerts.delivery_wake(),
    );
    alerts
        .observe_drift(&mut store, &pass(vec![modified()]), SystemTime::now())
        .expect("observe");
    alerts
        .observe_drift(&mut store, &pass(vec![]), SystemTime::now())
        .expect("observe");
    wait_settled(&store, "resolved-only", 1).await;
    let got = capture.received();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].header("X-Phoenix-Event"), "drift_resolved");
    within("stop", delivery.stop()).await;
}
