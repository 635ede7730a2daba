//! Issue 17, defect 5: the HTTP server's limits. A client that sends no headers is
//! dropped, a slow request ends with 503, connections and event streams are capped
//! (503 past the cap) and `/healthz` keeps answering throughout.

use std::sync::Arc;
use std::time::Duration;

use phoenix_api::{
    ApiConfig, ApiState, Metrics, Secret, ServerLimits, Snapshot, build_router, serve,
    serve_with_limits,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};

/// Every await of these tests is bounded, so a missing limit fails instead of hanging.
async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("timed out after 30 s")
}

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Kept so commands queue and are never answered.
    _commands: mpsc::Receiver<phoenix_api::ApiCommand>,
    _snapshots: watch::Sender<Arc<Snapshot>>,
    _events: broadcast::Sender<phoenix_api::ApiEvent>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A server with `config`, under `limits` (or the defaults of `serve` when `None`).
async fn start(config: ApiConfig, limits: Option<ServerLimits>) -> Server {
    let (snapshots, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (command_tx, commands) = mpsc::channel(8);
    let (events, _) = broadcast::channel(16);
    let state = ApiState::new(
        config,
        snapshot_rx,
        command_tx,
        events.clone(),
        Arc::new(Metrics::default()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = build_router(state);
    let shutdown = async move {
        let _ = stopped.await;
    };
    tokio::spawn(async move {
        match limits {
            Some(limits) => serve_with_limits(listener, router, limits, shutdown).await,
            None => serve(listener, router, shutdown).await,
        }
    });
    Server {
        addr,
        stop: Some(stop),
        _commands: commands,
        _snapshots: snapshots,
        _events: events,
    }
}

/// Send a raw request and read the status code of the answer.
async fn status_of(addr: std::net::SocketAddr, request: &str) -> u16 {
    let mut stream = within(TcpStream::connect(addr)).await.expect("connect");
    within(stream.write_all(request.as_bytes()))
        .await
        .expect("write");
    let mut head = [0u8; 12];
    within(stream.read_exact(&mut head))
        .await
        .expect("an answer");
    String::from_utf8_lossy(&head[9..12])
        .parse()
        .expect("a status code")
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: phoenix\r\nconnection: close\r\n\r\n")
}

/// Issue 17, defect 5: a connection that never finishes its headers is closed after
/// the header read timeout (10 s by default), instead of being held forever.
#[tokio::test]
async fn a_client_that_sends_no_headers_is_dropped() {
    let server = start(ApiConfig::default(), None).await;
    let mut stream = within(TcpStream::connect(server.addr))
        .await
        .expect("connect");
    within(stream.write_all(b"GET /api/v1/status HTTP/1.1\r\nhost: x\r\n"))
        .await
        .expect("half a request");
    let mut rest = Vec::new();
    // The server answers (408) or just closes; either way the read ends.
    let _ = within(stream.read_to_end(&mut rest)).await;
}

/// Issue 17, defect 5: past `max_connections` a client gets 503, while `/healthz`
/// still answers 200.
#[tokio::test]
async fn connections_over_the_cap_get_503_and_healthz_answers() {
    let limits = ServerLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(60),
        ..ServerLimits::default()
    };
    let server = start(ApiConfig::default(), Some(limits)).await;
    assert_eq!(status_of(server.addr, &get("/api/v1/status")).await, 200);
    // Two kept-alive connections take the two places (each answered once, so the
    // server has surely accepted it).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = within(TcpStream::connect(server.addr))
            .await
            .expect("connect");
        within(stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"))
            .await
            .expect("write");
        let mut head = [0u8; 12];
        within(stream.read_exact(&mut head))
            .await
            .expect("an answer");
        held.push(stream);
    }
    assert_eq!(status_of(server.addr, &get("/api/v1/status")).await, 503);
    assert_eq!(status_of(server.addr, &get("/healthz")).await, 200);
}

/// Issue 17, defect 5: past `max_sse_subscribers` an event stream is refused with 503.
#[tokio::test]
async fn event_streams_over_the_cap_get_503() {
    let config = ApiConfig {
        max_sse_subscribers: 1,
        ..ApiConfig::default()
    };
    let server = start(config, Some(ServerLimits::default())).await;
    let first = within(reqwest::get(format!(
        "http://{}/api/v1/events",
        server.addr
    )))
    .await
    .expect("first stream");
    assert_eq!(first.status(), 200);
    assert_eq!(status_of(server.addr, &get("/api/v1/events")).await, 503);
    assert_eq!(status_of(server.addr, &get("/healthz")).await, 200);
    drop(first);
}

/// Issue 17, defect 5: a request that takes longer than `request_timeout` ends with
/// 503 `timeout` (here an approval the loop never answers).
#[tokio::test]
async fn a_request_over_the_timeout_gets_503() {
    let config = ApiConfig {
        token: Secret::new("t0ken"),
        command_timeout: Duration::from_secs(3600),
        request_timeout: Duration::from_millis(300),
        ..ApiConfig::default()
    };
    let server = start(config, Some(ServerLimits::default())).await;
    let response = within(
        reqwest::Client::new()
            .post(format!("http://{}/api/v1/plans/p1/approve", server.addr))
            .bearer_auth("t0ken")
            .send(),
    )
    .await
    .expect("an answer");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = within(response.json()).await.expect("json");
    assert_eq!(body["error"]["code"], "timeout");
}
