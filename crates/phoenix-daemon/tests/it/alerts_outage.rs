//! Issue 8: a receiver that is down for a while, then answers 503 a few times, then
//! works: every alert is delivered, in order, none twice (by delivery id), also across a
//! restart of the delivery task in the middle of the outage.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use crate::alerts_support::{
    Capture, RunningDelivery, fast_options, open_store, receiver, wait_settled, within,
};
use phoenix_core::config::AlertType;
use phoenix_daemon::alerts::{AlertOptions, Alerts, Receivers, SourceAlert};

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
            expected.push(format!("{incident}:{}:ops", notice.event.as_str()));
        }
    }
    assert_eq!(expected.len(), 8, "{expected:?}");

    // Down for a while: the head alert is retried (several failed attempts recorded),
    // nothing is lost.
    let head = phoenix_store::DeliveryId::new(expected[0].clone());
    within("retries recorded", async {
        loop {
            let entry = store.outbox_entry(&head).expect("read").expect("queued");
            if entry.attempts >= 3 {
                assert!(entry.last_error.is_some() && entry.delivered_at.is_none());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let counts = store.outbox_counts().expect("counts")["ops"];
    assert_eq!(
        (counts.pending, counts.failing, counts.delivered),
        (8, 1, 0)
    );
    // Restart the delivery task mid-outage: the outbox is the only state.
    within("first delivery task stops", first.stop()).await;

    // Back, but answering 503 to its first three requests.
    let capture = Capture::start_on(addr).await;
    capture.fail_next(3);
    let metrics = std::sync::Arc::new(phoenix_api::Metrics::default());
    let second = RunningDelivery::start(
        open_store(dir.path()),
        alerts.receivers(),
        phoenix_daemon::alerts::DeliveryOptions {
            metrics: Some(metrics.clone()),
            ..fast_options()
        },
        alerts.delivery_wake(),
    );
    wait_settled(&store, "ops", 8).await;
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
    // phoenix_alert_deliveries_total counts final outcomes, not the retried attempts.
    let text = metrics.render(&phoenix_api::Snapshot::default(), SystemTime::now());
    assert!(
        text.contains("phoenix_alert_deliveries_total{result=\"delivered\"} 8\n")
            && text.contains("phoenix_alert_deliveries_total{result=\"failed\"} 0\n"),
        "{text}"
    );
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
    let metrics = std::sync::Arc::new(phoenix_api::Metrics::default());
    let delivery = RunningDelivery::start(
        open_store(dir.path()),
        alerts.receivers(),
        phoenix_daemon::alerts::DeliveryOptions {
            metrics: Some(metrics.clone()),
            ..fast_options()
        },
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
    let text = metrics.render(&phoenix_api::Snapshot::default(), SystemTime::now());
    assert!(
        text.contains("phoenix_alert_deliveries_total{result=\"failed\"} 1\n"),
        "an expired alert counts as failed: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_removed_receiver_does_not_hold_back_the_others() {
    // Accepts connections and never answers.
    let hanging = within("bind", tokio::net::TcpListener::bind("127.0.0.1:0"))
        .await
        .expect("bind");
    let hanging_addr = hanging.local_addr().expect("address");
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            open.push(socket);
        }
    });
    let capture = Capture::start().await;
    let configs = vec![
        receiver(
            "hanging",
            AlertType::Slack,
            format!("http://{hanging_addr}/"),
        ),
        receiver("removed", AlertType::Slack, capture.url("/removed")),
        receiver("fast", AlertType::Slack, capture.url("/fast")),
    ];
    let options = AlertOptions {
        flap_window: Duration::ZERO,
        ..AlertOptions::default()
    };
    let mut alerts = Alerts::new(&configs, &BTreeMap::new(), options).expect("alerts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_store(dir.path());
    for i in 0..150u64 {
        // A backlog for every receiver, longer than one read (`batch` = 100).
        let error = SourceAlert {
            revision: None,
            message: format!("unreachable ({i})"),
        };
        let at = SystemTime::now() + Duration::from_millis(i);
        alerts
            .source_state(&mut store, Some(error), at)
            .expect("source error");
        alerts
            .source_state(&mut store, None, at)
            .expect("source recovered");
    }
    // The delivery task only knows the current config: `removed` was taken out.
    let current = Receivers::new(&[configs[0].clone(), configs[2].clone()], &BTreeMap::new())
        .expect("receivers");
    let delivery = RunningDelivery::start(
        open_store(dir.path()),
        current,
        fast_options(),
        alerts.delivery_wake(),
    );
    // `fast` gets all 300 alerts while `hanging` is stuck on its first request (5 s
    // timeout) and `removed` is never read, though both come first in the outbox.
    wait_settled(&store, "fast", 300).await;
    let counts = store.outbox_counts().expect("counts");
    assert_eq!(counts["hanging"].delivered, 0);
    assert_eq!(counts["removed"].pending, 300);
    assert!(capture.received().iter().all(|r| r.path == "/fast"));
    within("stop", delivery.stop()).await;
}
