//! Integration tests for the phoenix-api router: every endpoint of design section 9 driven
//! with a hand-built Snapshot, auth, limits, webhooks for all three forges, SSE, OpenAPI
//! and the metrics text. Every await has a timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::StreamExt;
use phoenix_api::*;
use phoenix_core::SpecHash;
use phoenix_core::drift::DriftKind;
use phoenix_core::model::{InstanceHealth, InstanceState};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};
use tower::ServiceExt;

pub(crate) const TOKEN: &str = "s3cret-token";
const WEBHOOK_SECRET: &str = "hook-secret";

pub(crate) async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("timed out after 10 s")
}

fn hash(c: char) -> SpecHash {
    format!("v1:sha256:{}", c.to_string().repeat(64))
        .parse()
        .expect("valid hash")
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn group(name: &str, sync: SyncState, drift: Vec<DriftFinding>) -> Group {
    Group {
        summary: GroupSummary {
            name: name.into(),
            desired_hash: Some(hash('a').into()),
            replicas: 2,
            sync,
            health: GroupHealth::Healthy,
            instances: Box::new([GroupInstance {
                id: format!("i-{name}1").into(),
                spec_hash: Some(hash('a').into()),
                state: InstanceState::Running,
                health: InstanceHealth::Healthy,
                commit: Some("c0ffee".into()),
                traffic: None,
            }]),
            observed_hashes: Box::new([ObservedHash {
                spec_hash: hash('a').into(),
                count: 1,
            }]),
            drift: drift.into(),
            target_groups: None,
            operation: (sync == SyncState::Progressing).then(|| {
                Box::new(Operation {
                    plan_id: "p1".into(),
                    phase: PlanState::AwaitingApproval,
                })
            }),
        },
        history: Arc::new([HistoryEntry {
            spec_hash: hash('a'),
            commit: Some("c0ffee".into()),
            first_seen: t(0).into(),
            last_seen: t(60).into(),
            outcome: HistoryOutcome::Succeeded,
        }]),
    }
}

pub(crate) fn snapshot(ready: bool) -> Snapshot {
    Snapshot::new(SnapshotParts {
        ready,
        revision: Revision {
            id: Some("c0ffee".into()),
            accepted_at: Some(t(0)),
            error: Some(RevisionError {
                revision: "badbad".into(),
                commit: None,
                path: Some("groups/web.yaml".into()),
                line: Some(7),
                column: Some(3),
                message: "unknown field `replica`".into(),
            }),
            signature: None,
        },
        inventory: vec![ProviderInventory {
            provider: "sim".into(),
            complete: true,
            collected_at: Some(SystemTime::now() - Duration::from_secs(4)),
            instances: 3,
        }],
        groups: vec![
            group(
                "web",
                SyncState::Drifted,
                vec![DriftFinding {
                    kind: DriftKind::Modified,
                    instance_id: Some("i-web1".into()),
                    field: Some("instanceType".into()),
                    expected: Some("t3.micro".into()),
                    observed: Some("t3.large".into()),
                    since: t(30),
                }],
            ),
            group("api", SyncState::InSync, vec![]),
            group("db", SyncState::Progressing, vec![]),
        ]
        .into_iter()
        .map(Arc::new)
        .collect(),
        plans: vec![Plan {
            id: "p1".into(),
            group: "db".into(),
            kind: PlanKind::Rollout,
            target_hash: Some(hash('b')),
            revision: Some("c0ffee".into()),
            strategy: Some("rolling".into()),
            state: PlanState::AwaitingApproval,
            requires_approval: true,
            created_at: t(10),
            updated_at: t(11),
            steps: vec![PlanStep {
                index: 0,
                action: "launch".into(),
                state: StepState::Pending,
                count: Some(2),
                instance_ids: vec![],
                started_at: None,
                finished_at: None,
                message: None,
            }],
        }],
        alerts: AlertCounts {
            pending: 1,
            failed: 0,
        },
        windows: WindowsView {
            status: WindowsStatus {
                blocked_groups: 1,
                next_change: Some(t(3600)),
                lifted: None,
            },
            blocked: vec![BlockedGroup {
                name: "web".into(),
                until: Some(t(3600).into()),
            }],
        },
    })
}

pub(crate) struct Fixture {
    state: ApiState,
    pub(crate) router: Router,
    pub(crate) commands: mpsc::Receiver<ApiCommand>,
    events: broadcast::Sender<ApiEvent>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
}

pub(crate) fn fixture_with(config: ApiConfig, queue: usize, event_capacity: usize) -> Fixture {
    let (snapshots, snapshot_rx) = watch::channel(Arc::new(snapshot(false)));
    let (command_tx, commands) = mpsc::channel(queue);
    let (events, _) = broadcast::channel(event_capacity);
    let metrics = Arc::new(Metrics::default());
    let state = ApiState::new(
        config,
        snapshot_rx,
        command_tx,
        events.clone(),
        metrics.clone(),
    );
    Fixture {
        router: build_router(state.clone()),
        state,
        commands,
        events,
        snapshots,
        metrics,
    }
}

fn config() -> ApiConfig {
    ApiConfig {
        token: Secret::new(TOKEN),
        webhook_secret: Secret::new(WEBHOOK_SECRET),
        ..ApiConfig::default()
    }
}

pub(crate) fn fixture() -> Fixture {
    fixture_with(config(), 8, 16)
}

pub(crate) async fn call(
    router: &Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = within(router.clone().oneshot(request))
        .await
        .expect("router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = within(axum::body::to_bytes(response.into_body(), usize::MAX))
        .await
        .expect("body reads");
    (status, headers, body.to_vec())
}

async fn get_json(router: &Router, path: &str) -> (StatusCode, Value) {
    let request = Request::get(path).body(Body::empty()).expect("request");
    let (status, headers, body) = call(router, request).await;
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{path} content type"
    );
    (status, serde_json::from_slice(&body).expect("JSON body"))
}

pub(crate) fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

fn has_keys(v: &Value, expected: &[&str]) {
    let present = keys(v);
    for key in expected {
        assert!(present.contains(key), "missing `{key}` in {v}");
    }
}

pub(crate) fn assert_error(v: &Value, code: &str) {
    assert_eq!(keys(v), ["error"], "{v}");
    assert_eq!(keys(&v["error"]), ["code", "message"], "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
}

fn post(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::post(path);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::empty()).expect("request")
}

#[tokio::test]
async fn healthz_and_readyz_follow_the_snapshot() {
    let f = fixture();
    let (status, body) = get_json(&f.router, "/healthz").await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &Value::from("ok"))
    );
    let (status, _) = get_json(&f.router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    f.snapshots.send_replace(Arc::new(snapshot(true)));
    let (status, body) = get_json(&f.router, "/readyz").await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &Value::from("ready"))
    );
}

#[tokio::test]
async fn status_has_every_design_field() {
    let f = fixture();
    let (status, v) = get_json(&f.router, "/api/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    has_keys(&v, &["revision", "groups", "inventory", "plans", "alerts"]);
    has_keys(&v["revision"], &["id", "accepted_at", "error"]);
    assert_eq!(v["revision"]["id"], "c0ffee");
    assert_eq!(v["revision"]["accepted_at"], "2023-11-14T22:13:20Z");
    has_keys(
        &v["revision"]["error"],
        &["revision", "path", "line", "column", "message"],
    );
    assert_eq!(v["revision"]["error"]["line"], 7);
    has_keys(
        &v["groups"],
        &["total", "in_sync", "drifted", "progressing", "failed"],
    );
    assert_eq!(v["groups"]["total"], 3);
    assert_eq!(v["groups"]["in_sync"], 1);
    assert_eq!(v["groups"]["drifted"], 1);
    assert_eq!(v["groups"]["progressing"], 1);
    let inv = &v["inventory"][0];
    has_keys(
        inv,
        &[
            "provider",
            "complete",
            "collected_at",
            "age_seconds",
            "instances",
        ],
    );
    let age = inv["age_seconds"].as_u64().expect("age is a number");
    assert!(
        (4..=6).contains(&age),
        "age computed at request time: {age}"
    );
    has_keys(&v["plans"], &["running", "awaiting_approval"]);
    assert_eq!(v["plans"]["awaiting_approval"], 1);
    has_keys(&v["alerts"], &["pending", "failed"]);
    assert_eq!(v["alerts"]["pending"], 1);
    has_keys(
        &v["windows"],
        &["blocked_groups", "next_change", "override"],
    );
    assert_eq!(v["windows"]["blocked_groups"], 1);
    assert_eq!(v["windows"]["next_change"], "2023-11-14T23:13:20Z");
    assert_eq!(v["windows"]["override"], Value::Null);
}

const GROUP_KEYS: [&str; 8] = [
    "name",
    "desired_hash",
    "replicas",
    "sync",
    "health",
    "instances",
    "drift",
    "operation",
];

/// The exact bytes of the group list and of one group with history and an operation, so a
/// change of the wire types' representation (shared or boxed fields) cannot change the JSON.
#[tokio::test]
async fn group_bodies_are_byte_for_byte_stable() {
    let f = fixture();
    let body = |path: &'static str| {
        let router = f.router.clone();
        async move {
            let request = Request::get(path).body(Body::empty()).expect("request");
            let (status, _, body) = call(&router, request).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            String::from_utf8(body).expect("utf-8")
        }
    };
    assert_eq!(
        body("/api/v1/groups").await,
        r#"{"groups":[{"name":"api","desired_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","replicas":2,"sync":"in_sync","health":"healthy","instances":[{"id":"i-api1","spec_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","state":"running","health":"healthy","commit":"c0ffee"}],"observed_hashes":[{"spec_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","count":1}],"drift":[],"operation":null},{"name":"db","desired_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","replicas":2,"sync":"progressing","health":"healthy","instances":[{"id":"i-db1","spec_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","state":"running","health":"healthy","commit":"c0ffee"}],"observed_hashes":[{"spec_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","count":1}],"drift":[],"operation":{"plan_id":"p1","phase":"awaiting_approval"}},{"name":"web","desired_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","replicas":2,"sync":"drifted","health":"healthy","instances":[{"id":"i-web1","spec_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","state":"running","health":"healthy","commit":"c0ffee"}],"observed_hashes":[{"spec_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","count":1}],"drift":[{"kind":"modified","instance_id":"i-web1","field":"instanceType","expected":"t3.micro","observed":"t3.large","since":"2023-11-14T22:13:50Z"}],"operation":null}]}"#
    );
    assert_eq!(
        body("/api/v1/groups/db").await,
        r#"{"name":"db","desired_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","replicas":2,"sync":"progressing","health":"healthy","instances":[{"id":"i-db1","spec_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","state":"running","health":"healthy","commit":"c0ffee"}],"observed_hashes":[{"spec_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","count":1}],"drift":[],"operation":{"plan_id":"p1","phase":"awaiting_approval"},"history":[{"spec_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","commit":"c0ffee","first_seen":"2023-11-14T22:13:20Z","last_seen":"2023-11-14T22:14:20Z","outcome":"succeeded"}],"window":{"blocked":false,"until":null}}"#
    );
    assert_eq!(
        body("/api/v1/groups/web").await,
        r#"{"name":"web","desired_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","replicas":2,"sync":"drifted","health":"healthy","instances":[{"id":"i-web1","spec_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","state":"running","health":"healthy","commit":"c0ffee"}],"observed_hashes":[{"spec_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","count":1}],"drift":[{"kind":"modified","instance_id":"i-web1","field":"instanceType","expected":"t3.micro","observed":"t3.large","since":"2023-11-14T22:13:50Z"}],"operation":null,"history":[{"spec_hash":"v1:sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","commit":"c0ffee","first_seen":"2023-11-14T22:13:20Z","last_seen":"2023-11-14T22:14:20Z","outcome":"succeeded"}],"window":{"blocked":true,"until":"2023-11-14T23:13:20Z"}}"#
    );
}

#[tokio::test]
async fn groups_list_and_detail_have_every_design_field() {
    let f = fixture();
    let (status, v) = get_json(&f.router, "/api/v1/groups").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&v), ["groups"]);
    let groups = v["groups"].as_array().expect("array");
    let names: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, ["api", "db", "web"], "sorted by name");
    for g in groups {
        has_keys(g, &GROUP_KEYS);
        assert!(g.get("history").is_none(), "list has no history: {g}");
    }

    let (status, g) = get_json(&f.router, "/api/v1/groups/web").await;
    assert_eq!(status, StatusCode::OK);
    has_keys(&g, &GROUP_KEYS);
    has_keys(&g, &["history"]);
    assert_eq!(g["sync"], "drifted");
    assert_eq!(g["health"], "healthy");
    assert_eq!(g["desired_hash"], hash('a').to_string());
    has_keys(
        &g["instances"][0],
        &["id", "spec_hash", "state", "health", "commit"],
    );
    assert_eq!(g["instances"][0]["state"], "running");
    let d = &g["drift"][0];
    has_keys(
        d,
        &[
            "kind",
            "instance_id",
            "field",
            "expected",
            "observed",
            "since",
        ],
    );
    assert_eq!(d["kind"], "modified");
    assert_eq!(d["field"], "instanceType");
    has_keys(
        &g["history"][0],
        &["spec_hash", "commit", "first_seen", "last_seen", "outcome"],
    );
    assert_eq!(g["operation"], Value::Null);

    assert_eq!(keys(&g["window"]), ["blocked", "until"]);
    assert_eq!(g["window"]["blocked"], true);
    for g in groups {
        assert!(g.get("window").is_none(), "the list has no window: {g}");
    }

    let (_, db) = get_json(&f.router, "/api/v1/groups/db").await;
    assert_eq!(
        db["window"],
        serde_json::json!({"blocked": false, "until": null})
    );
    has_keys(&db["operation"], &["plan_id", "phase"]);
    assert_eq!(db["operation"]["phase"], "awaiting_approval");

    let (status, e) = get_json(&f.router, "/api/v1/groups/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&e, "group_not_found");
}

#[tokio::test]
async fn drift_and_plans() {
    let f = fixture();
    let (status, v) = get_json(&f.router, "/api/v1/drift").await;
    assert_eq!(status, StatusCode::OK);
    let drift = v["drift"].as_array().expect("array");
    assert_eq!(drift.len(), 1);
    has_keys(
        &drift[0],
        &[
            "group",
            "kind",
            "instance_id",
            "field",
            "expected",
            "observed",
            "since",
        ],
    );
    assert_eq!(drift[0]["group"], "web");

    let (status, v) = get_json(&f.router, "/api/v1/plans").await;
    assert_eq!(status, StatusCode::OK);
    let plan = &v["plans"][0];
    has_keys(plan, &["id", "group", "target_hash", "state", "steps"]);
    assert_eq!(plan["state"], "awaiting_approval");
    has_keys(&plan["steps"][0], &["index", "action", "state"]);

    let (status, p) = get_json(&f.router, "/api/v1/plans/p1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p["id"], "p1");
    let (status, e) = get_json(&f.router, "/api/v1/plans/zzz").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&e, "plan_not_found");
}

#[tokio::test]
async fn mutating_endpoints_need_the_bearer_token() {
    let f = fixture();
    for path in [
        "/api/v1/plans/p1/approve",
        "/api/v1/plans/p1/cancel",
        "/api/v1/reconcile",
        "/api/v1/windows/override",
    ] {
        for token in [None, Some("wrong"), Some("s3cret-token-but-longer")] {
            let (status, headers, body) = call(&f.router, post(path, token)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {token:?}");
            assert_eq!(
                headers.get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()),
                Some(&b"Bearer"[..])
            );
            let v: Value = serde_json::from_slice(&body).expect("json");
            assert_error(&v, "unauthorized");
            assert!(!String::from_utf8_lossy(&body).contains(TOKEN));
        }
    }
    let mut f = f;
    assert!(f.commands.try_recv().is_err(), "nothing reached the loop");
}

#[tokio::test]
async fn without_a_configured_token_mutations_are_refused() {
    let f = fixture_with(ApiConfig::default(), 8, 16);
    let (status, _, body) = call(&f.router, post("/api/v1/reconcile", Some("anything"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_error(&v, "token_not_configured");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("server.token_env")
    );
}

#[tokio::test]
async fn approve_and_cancel_relay_the_loop_answer() {
    let Fixture {
        router,
        mut commands,
        ..
    } = fixture();
    // A fake loop: p1 approves, "gone" is unknown, cancel of p1 is a wrong state.
    let fake_loop = tokio::spawn(async move {
        while let Some(command) = commands.recv().await {
            match command {
                ApiCommand::Approve { plan_id, reply } if plan_id == "p1" => {
                    let _ = reply.send(Ok(PlanState::Running));
                }
                ApiCommand::Approve { plan_id, reply } => {
                    let _ = reply.send(Err(PlanCommandError::NotFound { plan_id }));
                }
                ApiCommand::Cancel { plan_id, reply } => {
                    let _ = reply.send(Err(PlanCommandError::WrongState {
                        plan_id,
                        state: PlanState::Succeeded,
                    }));
                }
                other => panic!("unexpected command {other:?}"),
            }
        }
    });
    let (status, _, body) = call(&router, post("/api/v1/plans/p1/approve", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (v["plan_id"].as_str(), v["state"].as_str()),
        (Some("p1"), Some("running"))
    );

    let (status, _, body) = call(&router, post("/api/v1/plans/gone/approve", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(
        &serde_json::from_slice(&body).expect("json"),
        "plan_not_found",
    );

    let (status, _, body) = call(&router, post("/api/v1/plans/p1/cancel", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(
        &serde_json::from_slice(&body).expect("json"),
        "plan_wrong_state",
    );
    drop(router);
    within(fake_loop)
        .await
        .expect("fake loop ends when the router is dropped");
}

#[tokio::test]
async fn approve_when_the_loop_is_gone_is_503() {
    let Fixture {
        router, commands, ..
    } = fixture();
    drop(commands);
    let (status, _, body) = call(&router, post("/api/v1/plans/p1/approve", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(
        &serde_json::from_slice(&body).expect("json"),
        "loop_unavailable",
    );
}

#[tokio::test]
async fn reconcile_is_202_and_a_full_queue_is_503() {
    let mut f = fixture_with(config(), 1, 16);
    let (status, _, body) = call(&f.router, post("/api/v1/reconcile", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("json")["status"],
        "accepted"
    );
    let (status, _, body) = call(&f.router, post("/api/v1/reconcile", Some(TOKEN))).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "queue of 1 is full"
    );
    assert_error(&serde_json::from_slice(&body).expect("json"), "busy");
    assert!(matches!(f.commands.try_recv(), Ok(ApiCommand::Reconcile)));
    assert!(f.commands.try_recv().is_err());
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let f = fixture();
    let (status, v) = get_json(&f.router, "/api/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&v, "route_not_found");
    let request = Request::delete("/api/v1/status")
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = call(&f.router, request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(
        &serde_json::from_slice(&body).expect("json"),
        "method_not_allowed",
    );
}

#[tokio::test]
async fn bodies_over_one_mib_are_413() {
    let f = fixture();
    let big = vec![b' '; DEFAULT_MAX_BODY_BYTES + 1];
    let secret = Secret::new(WEBHOOK_SECRET).expect("secret");
    for (path, extra) in [
        (
            "/api/v1/webhooks/git",
            Some(format!("sha256={}", secret.sign_hex(&big))),
        ),
        ("/api/v1/reconcile", None),
    ] {
        let mut builder = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_LENGTH, big.len());
        if let Some(sig) = extra {
            builder = builder.header("x-hub-signature-256", sig);
        }
        let (status, _, body) = call(
            &f.router,
            builder.body(Body::from(big.clone())).expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert_error(
            &serde_json::from_slice(&body).expect("json"),
            "payload_too_large",
        );
    }
    // A streamed body without Content-Length is caught by the extractor limit.
    let stream = futures::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let request = Request::post("/api/v1/webhooks/git")
        .header("x-gitlab-token", WEBHOOK_SECRET)
        .body(Body::from_stream(stream))
        .expect("request");
    let (status, _, _) = call(&f.router, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

const PUSH: &str = r#"{"ref":"refs/heads/main","before":"1111111111111111111111111111111111111111","after":"2222222222222222222222222222222222222222","repository":{"name":"infra"}}"#;

fn signed(forge: Forge, body: &str, good: bool, delivery: &str) -> Request<Body> {
    let key = if good {
        WEBHOOK_SECRET
    } else {
        "not-the-secret"
    };
    let secret = Secret::new(key).expect("secret");
    let builder =
        Request::post("/api/v1/webhooks/git").header(header::CONTENT_TYPE, "application/json");
    let builder = match forge {
        Forge::Github => builder
            .header(
                "x-hub-signature-256",
                format!("sha256={}", secret.sign_hex(body.as_bytes())),
            )
            .header("x-github-event", "push")
            .header("x-github-delivery", delivery),
        Forge::Gitea => builder
            .header("x-gitea-signature", secret.sign_hex(body.as_bytes()))
            .header("x-gitea-event", "push")
            .header("x-gitea-delivery", delivery),
        Forge::Gitlab => builder
            .header("x-gitlab-token", key)
            .header("x-gitlab-event", "Push Hook")
            .header("x-gitlab-event-uuid", delivery),
    };
    builder.body(Body::from(body.to_owned())).expect("request")
}

#[tokio::test]
async fn webhooks_verify_signatures_for_every_forge() {
    let mut f = fixture();
    for forge in Forge::ALL {
        let (status, _, body) = call(&f.router, signed(forge, PUSH, false, "bad-1")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{forge:?} bad signature");
        assert_error(
            &serde_json::from_slice(&body).expect("json"),
            "bad_signature",
        );
        assert!(
            f.commands.try_recv().is_err(),
            "{forge:?}: a bad signature triggers nothing"
        );
        assert_eq!(f.metrics.webhook_count(forge, WebhookOutcome::Rejected), 1);

        let id = format!("{}-delivery-1", forge.as_str());
        let (status, _, body) = call(&f.router, signed(forge, PUSH, true, &id)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{forge:?} good signature");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).expect("json")["status"],
            "accepted"
        );
        match f.commands.try_recv() {
            Ok(ApiCommand::Webhook {
                forge: got,
                after,
                reference,
                delivery_id,
            }) => {
                assert_eq!(got, forge);
                assert_eq!(
                    after.as_deref(),
                    Some("2222222222222222222222222222222222222222")
                );
                assert_eq!(reference.as_deref(), Some("refs/heads/main"));
                assert_eq!(delivery_id.as_deref(), Some(id.as_str()));
            }
            other => panic!("{forge:?}: expected a webhook command, got {other:?}"),
        }

        // The same delivery again: accepted, but not forwarded.
        let (status, _, body) = call(&f.router, signed(forge, PUSH, true, &id)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(
            serde_json::from_slice::<Value>(&body).expect("json")["status"],
            "duplicate"
        );
        assert!(
            f.commands.try_recv().is_err(),
            "{forge:?}: duplicate delivery forwarded"
        );
        assert_eq!(f.metrics.webhook_count(forge, WebhookOutcome::Duplicate), 1);
    }
}

#[tokio::test]
async fn webhook_without_signature_or_tampered_body_is_401() {
    let mut f = fixture();
    let request = Request::post("/api/v1/webhooks/git")
        .header("x-github-delivery", "x")
        .body(Body::from(PUSH))
        .expect("request");
    let (status, _, _) = call(&f.router, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Signed over one body, sent with another.
    let secret = Secret::new(WEBHOOK_SECRET).expect("secret");
    let request = Request::post("/api/v1/webhooks/git")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", secret.sign_hex(PUSH.as_bytes())),
        )
        .body(Body::from(PUSH.replace("main", "evil")))
        .expect("request");
    let (status, _, _) = call(&f.router, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(f.commands.try_recv().is_err());
}

#[tokio::test]
async fn github_ping_is_accepted_but_triggers_nothing() {
    let mut f = fixture();
    let body = r#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let secret = Secret::new(WEBHOOK_SECRET).expect("secret");
    let request = Request::post("/api/v1/webhooks/git")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", secret.sign_hex(body.as_bytes())),
        )
        .header("x-github-event", "ping")
        .body(Body::from(body))
        .expect("request");
    let (status, _, resp) = call(&f.router, request).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        serde_json::from_slice::<Value>(&resp).expect("json")["status"],
        "ignored"
    );
    assert!(f.commands.try_recv().is_err());
}

#[tokio::test]
async fn non_push_events_trigger_nothing() {
    let mut f = fixture();
    let secret = Secret::new(WEBHOOK_SECRET).expect("secret");
    let sig = secret.sign_hex(PUSH.as_bytes());
    let requests = [
        Request::post("/api/v1/webhooks/git")
            .header("x-hub-signature-256", format!("sha256={sig}"))
            .header("x-github-event", "issues"),
        Request::post("/api/v1/webhooks/git")
            .header("x-gitea-signature", sig.clone())
            .header("x-gitea-event", "pull_request"),
        Request::post("/api/v1/webhooks/git")
            .header("x-gitlab-token", WEBHOOK_SECRET)
            .header("x-gitlab-event", "Merge Request Hook"),
    ];
    for builder in requests {
        let (status, _, body) =
            call(&f.router, builder.body(Body::from(PUSH)).expect("request")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(
            serde_json::from_slice::<Value>(&body).expect("json")["status"],
            "ignored"
        );
    }
    assert!(f.commands.try_recv().is_err());
    // A GitLab tag push does trigger.
    let request = Request::post("/api/v1/webhooks/git")
        .header("x-gitlab-token", WEBHOOK_SECRET)
        .header("x-gitlab-event", "Tag Push Hook")
        .body(Body::from(PUSH))
        .expect("request");
    let (status, _, _) = call(&f.router, request).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(matches!(
        f.commands.try_recv(),
        Ok(ApiCommand::Webhook {
            forge: Forge::Gitlab,
            ..
        })
    ));
}

#[tokio::test]
async fn webhooks_without_a_secret_are_refused() {
    let mut f = fixture_with(
        ApiConfig {
            token: Secret::new(TOKEN),
            ..ApiConfig::default()
        },
        8,
        16,
    );
    let (status, _, body) = call(&f.router, signed(Forge::Github, PUSH, true, "d")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("webhooks.git.secret_env")
    );
    assert!(f.commands.try_recv().is_err());
}

async fn next_sse_frame(
    stream: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
) -> String {
    loop {
        let chunk = within(stream.next())
            .await
            .expect("stream open")
            .expect("chunk");
        let text = String::from_utf8(chunk.to_vec()).expect("utf-8");
        if !text.starts_with(':') {
            return text;
        }
    }
}

#[tokio::test]
async fn sse_delivers_published_events_and_reports_lag() {
    let f = fixture_with(config(), 8, 2);
    let request = Request::get("/api/v1/events")
        .body(Body::empty())
        .expect("request");
    let response = within(f.router.clone().oneshot(request))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut stream = response.into_body().into_data_stream();
    f.events
        .send(ApiEvent::RevisionAccepted {
            revision: "c0ffee".into(),
            at: t(0),
        })
        .expect("a subscriber exists");
    let frame = next_sse_frame(&mut stream).await;
    assert!(frame.contains("event: revision_accepted\n"), "{frame}");
    assert!(frame.contains(r#""type":"revision_accepted""#), "{frame}");
    assert!(frame.contains(r#""revision":"c0ffee""#), "{frame}");

    // Overflow the 2-slot channel: the subscriber gets `lagged`, then the newest two.
    for i in 0..5u32 {
        f.events
            .send(ApiEvent::StepTransition {
                plan_id: "p1".into(),
                index: i,
                action: "launch".into(),
                state: StepState::Running,
                at: t(1),
            })
            .expect("a subscriber exists");
    }
    let frame = next_sse_frame(&mut stream).await;
    assert!(frame.contains("event: lagged\n"), "{frame}");
    assert!(frame.contains(r#""skipped":3"#), "{frame}");
    let frame = next_sse_frame(&mut stream).await;
    assert!(
        frame.contains("event: step_transition\n") && frame.contains(r#""index":3"#),
        "{frame}"
    );

    // Dropping the loop's snapshot sender (shutdown) ends the stream.
    drop(f.snapshots);
    let end = within(async {
        loop {
            match stream.next().await {
                None => break true,
                Some(Ok(_)) => continue,
                Some(Err(_)) => break false,
            }
        }
    })
    .await;
    assert!(end, "stream ends cleanly on shutdown");
}

#[tokio::test]
async fn openapi_lists_every_path() {
    let f = fixture();
    let (status, doc) = get_json(&f.router, "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let paths = keys(&doc["paths"]);
    for path in [
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/status",
        "/api/v1/groups",
        "/api/v1/groups/{name}",
        "/api/v1/groups/{name}/retry",
        "/api/v1/windows/override",
        "/api/v1/drift",
        "/api/v1/plans",
        "/api/v1/plans/{id}",
        "/api/v1/plans/{id}/approve",
        "/api/v1/plans/{id}/cancel",
        "/api/v1/reconcile",
        "/api/v1/webhooks/git",
        "/api/v1/events",
        "/api/v1/openapi.json",
    ] {
        assert!(paths.contains(&path), "OpenAPI misses {path}: {paths:?}");
    }
    assert_eq!(paths.len(), 18, "{paths:?}");
    let status_props = keys(&doc["components"]["schemas"]["Status"]["properties"]);
    for field in [
        "revision",
        "groups",
        "inventory",
        "plans",
        "alerts",
        "windows",
    ] {
        assert!(status_props.contains(&field), "{status_props:?}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // The group detail is the group (with history) plus its window standing.
    let detail = &doc["components"]["schemas"]["GroupDetail"];
    let text = detail.to_string();
    assert!(
        text.contains("#/components/schemas/Group\"") && text.contains("window"),
        "{detail}"
    );
    let window = keys(&doc["components"]["schemas"]["GroupWindow"]["properties"]);
    assert_eq!(window, ["blocked", "until"]);
    let windows = keys(&doc["components"]["schemas"]["WindowsStatus"]["properties"]);
    assert_eq!(windows, ["blocked_groups", "next_change", "override"]);
}

#[tokio::test]
async fn metrics_text_is_prometheus_and_phoenix_prefixed() {
    let f = fixture();
    f.metrics.observe_reconcile(Duration::from_millis(42));
    f.metrics.git_fetch(true);
    f.metrics.plan_finished(PlanResult::Succeeded);
    f.metrics.alert_delivery(false);
    let request = Request::get("/metrics")
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = call(&f.router, request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(body).expect("utf-8");
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            assert!(rest.starts_with("phoenix_"), "{line}");
            continue;
        }
        assert!(line.starts_with("phoenix_"), "{line}");
        let (_, value) = line.rsplit_once(' ').expect("name and value");
        assert!(value.parse::<f64>().is_ok(), "value of {line}");
        if let Some(open) = line.find('{') {
            assert!(line[open..].contains("}"), "{line}");
        }
    }
    for expected in [
        "phoenix_reconcile_duration_seconds_bucket{le=\"0.05\"} 1",
        "phoenix_reconcile_duration_seconds_count 1",
        "phoenix_groups{sync=\"drifted\"} 1",
        "phoenix_groups_health{health=\"healthy\"} 3",
        "phoenix_drift_open{kind=\"modified\"} 1",
        "phoenix_plans{state=\"awaiting_approval\"} 1",
        "phoenix_plans_finished_total{result=\"succeeded\"} 1",
        "phoenix_git_fetches_total{result=\"ok\"} 1",
        "phoenix_webhooks_total{forge=\"github\",outcome=\"accepted\"} 0",
        "phoenix_inventory_complete{provider=\"sim\"} 1",
        "phoenix_alert_deliveries_total{result=\"failed\"} 1",
        "phoenix_window_blocked_groups 1",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "missing `{expected}` in\n{text}"
        );
    }
    assert!(text.contains("phoenix_inventory_age_seconds{provider=\"sim\"} "));
}

#[tokio::test]
async fn dashboard_is_self_contained_html() {
    let f = fixture();
    let request = Request::get("/").body(Body::empty()).expect("request");
    let (status, headers, body) = call(&f.router, request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let page = String::from_utf8(body).expect("utf-8");
    for endpoint in [
        "/api/v1/status",
        "/api/v1/groups",
        "/api/v1/drift",
        "/api/v1/plans",
        "/api/v1/events",
    ] {
        assert!(page.contains(endpoint), "dashboard does not use {endpoint}");
    }
    for external in ["src=\"http", "href=\"http", "@import", "<link "] {
        assert!(!page.contains(external), "external asset `{external}`");
    }
}

#[tokio::test]
async fn serves_over_tcp_and_shuts_down_gracefully() {
    let f = fixture();
    let listener = within(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, f.router.clone(), async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let response = within(client.get(format!("http://{addr}/api/v1/status")).send())
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let v: Value = within(response.json()).await.expect("json");
    assert_eq!(v["revision"]["id"], "c0ffee");
    let _ = stop.send(());
    within(server)
        .await
        .expect("task")
        .expect("serve ends cleanly");
}

#[tokio::test]
async fn close_streams_lets_graceful_shutdown_finish_with_an_open_sse_client() {
    let f = fixture();
    let listener = within(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, f.router.clone(), async move {
        let _ = stopped.await;
    }));
    let response = within(reqwest::get(format!("http://{addr}/api/v1/events")))
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let mut response = response;
    f.events
        .send(ApiEvent::DriftOpened {
            group: "web".into(),
            kind: DriftKind::Modified,
            instance_id: Some("i-web1".into()),
            at: t(5),
        })
        .expect("a subscriber exists");
    let chunk = within(response.chunk())
        .await
        .expect("read")
        .expect("a chunk");
    assert!(String::from_utf8_lossy(&chunk).contains("event: drift_opened"));

    let _ = stop.send(());
    f.state.close_streams();
    within(server)
        .await
        .expect("task")
        .expect("serve ends cleanly");
    // The client sees the stream end (no more chunks) instead of hanging.
    while within(response.chunk()).await.expect("clean end").is_some() {}
}
