//! Issue 8: a receiver that is down for a while, then answers 503 a few times, then
//! works: every alert is delivered, in order, none twice (by delivery id), also across a
//! restart of the delivery task in the middle of the outage.

mod alerts_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use alerts_support::{Capture, RunningDelivery, fast_options, open_store, receiver, within};
use phoenix_core::config::AlertType;
use phoenix_daemon::alerts::{AlertOptions, Alerts, SourceAlert, event_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_queued_during_an_outage_arrive_in_order_exactly_once() {
    // A port nothing listens on yet: connections are refused.
    let port = phoenix_testkit::net::free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let configs = vec![receiver(
        "ops",
        AlertType::Webhook,
        format!("http://{addr}/hook"),
    )];
    let secrets = BTreeMap::from([("ops".to_string(), b"k".to_vec())]);
    let options = AlertOptions {
        // Every error/recovery below is a real transition, not flapping.
        flap_window: Duration::ZERO,
        ..AlertOptions::default()
    };
    let mut alerts = Alerts::new(&configs, &secrets, options).expect("alerts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_store(dir.path());
    let first = RunningDelivery::start(
        open_store(dir.path()),
        alerts.receivers(),
        fast_options(),
        alerts.delivery_wake(),
    );

    let mut expected = Vec::new();
    let start = SystemTime::now();
    for i in 0..4u64 {
        let at = start + Duration::from_millis(10 * i);
        let error = SourceAlert {
            revision: Some(format!("rev-{i}")),
            message: format!("groups/web.yaml:{i}:1: unknown field `foo`"),
        };
        for notice in alerts
            .source_state(&mut store, Some(error), at)
            .expect("source error")
            .into_iter()
            .chain(
                alerts
                    .source_state(&mut store, None, at + Duration::from_millis(5))
                    .expect("source recovered"),
            )
        {
            let incident = notice.incident_id().expect("incident").to_string();
            expected.push(format!("{incident}:{}:ops", event_name(notice.event)));
        }
    }
    assert_eq!(expected.len(), 8, "{expected:?}");

    // Down for a while: several failed attempts are recorded, nothing is lost.
    within("failures recorded", async {
        loop {
            let counts = store.outbox_counts().expect("counts");
            if counts.get("ops").is_some_and(|c| c.failing > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Restart the delivery task mid-outage: the outbox is the only state.
    within("first delivery task stops", first.stop()).await;
    let entry = store
        .outbox_entry(&phoenix_store::DeliveryId::new(expected[0].clone()))
        .expect("read")
        .expect("queued");
    assert!(entry.attempts >= 2, "retried while down: {entry:?}");
    assert!(entry.last_error.is_some() && entry.delivered_at.is_none());

    // Back, but answering 503 to its first three requests.
    let capture = Capture::start_on(addr).await;
    capture.fail_next(3);
    let second = RunningDelivery::start(
        open_store(dir.path()),
        alerts.receivers(),
        fast_options(),
        alerts.delivery_wake(),
    );
    capture.wait_for(expected.len()).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let received: Vec<String> = capture
        .received()
        .iter()
        .map(|r| r.header("X-Phoenix-Delivery").to_string())
        .collect();
    let unique: BTreeSet<&String> = received.iter().collect();
    assert_eq!(unique.len(), received.len(), "duplicates: {received:#?}");
    assert_eq!(received, expected, "all delivered, in order");
    let counts = store.outbox_counts().expect("counts")["ops"];
    assert_eq!(
        (counts.pending, counts.delivered, counts.expired),
        (0, 8, 0)
    );
    within("second delivery task stops", second.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_expire_when_the_receiver_stays_down() {
    let port = phoenix_testkit::net::free_port();
    let mut config = receiver(
        "ops",
        AlertType::Webhook,
        format!("http://127.0.0.1:{port}/hook"),
    );
    config.expire_after = Duration::from_millis(300);
    let secrets = BTreeMap::from([("ops".to_string(), b"k".to_vec())]);
    let mut alerts = Alerts::new(&[config], &secrets, AlertOptions::default()).expect("alerts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_store(dir.path());
    let delivery = RunningDelivery::start(
        open_store(dir.path()),
        alerts.receivers(),
        fast_options(),
        alerts.delivery_wake(),
    );
    let error = SourceAlert {
        revision: None,
        message: "cannot reach the remote".into(),
    };
    alerts
        .source_state(&mut store, Some(error), SystemTime::now())
        .expect("source error");
    within("expiry", async {
        loop {
            let counts = store.outbox_counts().expect("counts")["ops"];
            if counts.expired == 1 {
                assert_eq!(counts.pending, 0);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    within("stop", delivery.stop()).await;
}
