//! The dashboard's group page in headless Chromium against the real router serving a
//! hand-built snapshot (issue 21): generations, field-level drift, the plan's steps and
//! progress, the chart, and the approve / retry buttons asking for the token and showing
//! the API's answer, and the change windows (the status cards' blocked groups and next
//! change, the group's "blocked by window until ..."). (The whole-daemon version is
//! `phoenix`'s `dashboard_group` test.)

use std::sync::Arc;
use std::time::Duration;

use phoenix_api::*;
use phoenix_core::SpecHash;
use phoenix_core::drift::DriftKind;
use phoenix_core::model::{InstanceHealth, InstanceState};
use phoenix_core::traffic::TargetState;
use phoenix_testkit::chromium::Browser;
use phoenix_testkit::moto::http_request;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};

const TOKEN: &str = "page-token";
/// When the change window blocking `web` ends.
const WINDOW_END: &str = "2030-03-18T07:00:00Z";

fn hash(c: char) -> SpecHash {
    format!("v1:sha256:{}", c.to_string().repeat(64))
        .parse()
        .expect("valid hash")
}

fn at(secs: u64) -> std::time::SystemTime {
    std::time::SystemTime::now() - Duration::from_secs(600) + Duration::from_secs(secs)
}

fn instance(id: &str, h: char) -> GroupInstance {
    GroupInstance {
        id: id.into(),
        spec_hash: Some(hash(h).into()),
        state: InstanceState::Running,
        health: InstanceHealth::Healthy,
        commit: Some(format!("commit{h}").into()),
        traffic: None,
    }
}

const TG: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-tg/0123456789abcdef";

/// The instance behind the group's target group, in `state` there.
fn behind_lb(mut i: GroupInstance, state: TargetState) -> GroupInstance {
    i.traffic = Some(Box::new(vec![InstanceTraffic {
        target_group: TG.to_string(),
        state,
    }]));
    i
}

fn finding(kind: DriftKind, id: &str, field: Option<&str>, e: &str, o: &str) -> DriftFinding {
    DriftFinding {
        kind,
        instance_id: Some(id.into()),
        field: field.map(Into::into),
        expected: Some(e.into()),
        observed: Some(o.into()),
        since: at(100),
    }
}

fn step(index: u32, action: &str, state: StepState, ids: &[&str], done: Option<u64>) -> PlanStep {
    PlanStep {
        index,
        action: action.into(),
        state,
        count: (action == "launch").then_some(1),
        instance_ids: ids.iter().map(|s| s.to_string()).collect(),
        started_at: done.map(|d| at(d - 5)),
        finished_at: done.map(at),
        message: None,
    }
}

fn snapshot() -> Snapshot {
    let a = hash('a').to_string();
    let b = hash('b').to_string();
    let web = Group {
        summary: GroupSummary {
            name: "web".into(),
            desired_hash: Some(hash('b').into()),
            replicas: 2,
            sync: SyncState::Progressing,
            health: GroupHealth::Healthy,
            instances: Box::new([
                behind_lb(instance("i-old1", 'a'), TargetState::Draining),
                behind_lb(instance("i-new1", 'b'), TargetState::Healthy),
            ]),
            observed_hashes: Box::new([
                ObservedHash {
                    spec_hash: hash('a').into(),
                    count: 1,
                },
                ObservedHash {
                    spec_hash: hash('b').into(),
                    count: 1,
                },
            ]),
            drift: Box::new([
                finding(DriftKind::Outdated, "i-old1", None, &b, &a),
                finding(
                    DriftKind::Modified,
                    "i-new1",
                    Some("instanceType"),
                    "t3.small",
                    "t3.large",
                ),
            ]),
            target_groups: Some(Box::new(vec![TG.to_string()])),
            operation: Some(Box::new(Operation {
                plan_id: "p-7".into(),
                phase: PlanState::AwaitingApproval,
            })),
        },
        history: Arc::new([
            HistoryEntry {
                spec_hash: hash('b'),
                commit: Some("commitb".into()),
                first_seen: at(300).into(),
                last_seen: at(500).into(),
                outcome: HistoryOutcome::Progressing,
            },
            HistoryEntry {
                spec_hash: hash('a'),
                commit: Some("commita".into()),
                first_seen: at(100).into(),
                last_seen: at(400).into(),
                outcome: HistoryOutcome::Succeeded,
            },
            HistoryEntry {
                spec_hash: hash('c'),
                commit: Some("commitc".into()),
                first_seen: at(0).into(),
                last_seen: at(90).into(),
                outcome: HistoryOutcome::RolledBack,
            },
        ]),
    };
    let plan = Plan {
        id: "p-7".into(),
        group: "web".into(),
        kind: PlanKind::Rollout,
        target_hash: Some(hash('b')),
        revision: Some("commitb".into()),
        strategy: Some("canary".into()),
        state: PlanState::AwaitingApproval,
        requires_approval: true,
        created_at: at(300),
        updated_at: at(420),
        steps: vec![
            step(0, "launch", StepState::Succeeded, &["i-new1"], Some(320)),
            step(1, "terminate", StepState::Succeeded, &["i-old2"], Some(400)),
            step(2, "wait_healthy", StepState::Pending, &[], None),
        ],
    };
    let window_end = phoenix_core::time::parse_rfc3339(WINDOW_END).expect("a time");
    Snapshot::new(SnapshotParts {
        ready: true,
        groups: vec![Arc::new(web)],
        plans: vec![plan],
        windows: WindowsView {
            status: WindowsStatus {
                blocked_groups: 1,
                next_change: Some(window_end),
                lifted: None,
            },
            blocked: vec![BlockedGroup {
                name: "web".into(),
                until: Some(window_end.into()),
            }],
        },
        ..SnapshotParts::default()
    })
}

/// Serve the router on a free loopback port from a runtime in its own thread; approve
/// commands are answered `running`.
fn serve() -> std::net::SocketAddr {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let (_snapshots, snapshot_rx) = watch::channel(Arc::new(snapshot()));
            let (command_tx, mut commands) = mpsc::channel(8);
            let (events, _) = broadcast::channel(16);
            let config = ApiConfig {
                token: Secret::new(TOKEN),
                ..ApiConfig::default()
            };
            let state = ApiState::new(
                config,
                snapshot_rx,
                command_tx,
                events,
                Arc::new(Metrics::default()),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            addr_tx
                .send(listener.local_addr().expect("address"))
                .expect("send the address");
            tokio::spawn(async move {
                while let Some(command) = commands.recv().await {
                    if let ApiCommand::Approve { reply, .. } = command {
                        let _ = reply.send(Ok(PlanState::Running));
                    }
                }
            });
            serve_router(listener, build_router(state)).await;
        });
    });
    addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server listens")
}

async fn serve_router(listener: tokio::net::TcpListener, router: axum::Router) {
    phoenix_api::serve(listener, router, std::future::pending())
        .await
        .expect("serve");
}

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

#[test]
fn group_page_renders_generations_drift_steps_and_buttons() {
    let addr = serve();
    let mut browser = Browser::launch(1280, 900);
    browser.goto(&format!("http://{addr}/#/groups/web"));
    browser.wait_for(
        "the group page",
        "document.getElementById('g-history').querySelectorAll('tbody tr').length === 3 \
         && document.getElementById('g-chart-svg') !== null",
        Duration::from_secs(30),
    );
    let text = browser.text();
    for expected in [
        "awaiting approval",
        "plan p-7",
        "canary",
        "2 of 3 steps done (67%)",
        "i-new1",
        "instanceType",
        "t3.small",
        "t3.large",
        "outdated",
        "modified",
        "rolled back",
        "succeeded",
        "progressing",
        "commitc",
        "bbbbbbbbbbbb (target)",
        "aaaaaaaaaaaa",
        "cccccccccccc",
        "1/2",
        "blocked by window until 2030-03-18T07:00:00Z",
    ] {
        assert!(text.contains(expected), "`{expected}` missing in\n{text}");
    }
    // The instance row carries its own finding, field by field.
    let row = browser.eval(
        "[...document.querySelectorAll('#g-instances tbody tr')]\
         .find((r) => r.innerText.includes('i-new1')).innerText",
    );
    let row = row.as_str().expect("the canary's row");
    // Issue 16: the instance's state in its target group.
    assert!(row.contains("web-tg") && row.contains("healthy"), "{row}");
    let old = browser.eval(
        "[...document.querySelectorAll('#g-instances tbody tr')]\
         .find((r) => r.innerText.includes('i-old1')).innerText",
    );
    assert!(
        old.as_str().is_some_and(|r| r.contains("draining")),
        "{old}"
    );
    assert!(
        row.contains("modified") && row.contains("instanceType") && row.contains("t3.large"),
        "{row}"
    );
    // The chart: one line per generation; the old one went 2 -> 1 at the terminate.
    assert_eq!(
        browser.eval("document.querySelectorAll('#g-chart-svg path').length"),
        Value::from(2)
    );
    assert_eq!(
        browser.eval("document.getElementById('btn-cancel').disabled"),
        Value::Bool(false)
    );

    let wrong = click(&mut browser, "btn-approve", "nope");
    assert!(
        wrong.contains("HTTP 401") && wrong.contains("unauthorized"),
        "{wrong}"
    );
    let approved = click(&mut browser, "btn-approve", TOKEN);
    assert!(
        approved.contains("HTTP 200") && approved.contains("running"),
        "{approved}"
    );
    // Retry: the page shows exactly what the API answers (404 `route_not_found` where
    // the endpoint does not exist yet, else its own answer).
    let (status, body) = http_request(
        addr,
        "POST",
        "/api/v1/groups/web/retry",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    let shown = click(&mut browser, "btn-retry", "nope");
    assert!(shown.contains(&format!("HTTP {status}")), "{shown}");
    let error: Value = serde_json::from_slice(&body).expect("a JSON error");
    let code = error["error"]["code"].as_str().expect("an error code");
    assert!(shown.contains(code), "{shown} vs {error}");
    if status == 404 {
        assert!(shown.contains("route_not_found"), "{shown}");
    }

    // Back to the list: the group name links to its page.
    browser.eval("location.hash = '#/'; true");
    browser.wait_for(
        "the group list",
        "!document.getElementById('list-view').hidden \
         && document.querySelector('#groups a[href=\"#/groups/web\"]') !== null",
        Duration::from_secs(30),
    );
    // The status cards: how many groups the windows block, and the next change.
    let card = browser.eval("document.getElementById('windows-card').textContent");
    let card = card.as_str().expect("the windows card");
    assert!(
        card.contains("Blocked by windows")
            && card.contains('1')
            && card.contains("next change 2030-03-18T07:00:00Z"),
        "{card}"
    );
    let png = browser.screenshot(1280);
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
}
