//! A Git remote that accepts connections and never answers (libgit2 has no network
//! timeout of its own): the daemon must keep its loop running, say so on the status API,
//! and still stop promptly on SIGTERM.

use std::net::TcpListener;
use std::time::Duration;

use crate::support::Daemon;

/// Accepts every connection on a loopback port and holds it open without a byte.
struct SilentRemote {
    port: u16,
}

impl SilentRemote {
    fn start() -> SilentRemote {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        });
        SilentRemote { port }
    }
}

#[test]
fn a_silent_git_remote_stalls_only_the_source() {
    let remote = SilentRemote::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "owner: e2e
source: {{git: {{url: \"git://127.0.0.1:{}/infra.git\", branch: main, interval: 1s}}}}
providers:
  - {{name: local, type: sim}}
reconcile: {{interval: 1s, mode: observe}}
state: {{path: state}}
server: {{listen: \"{{LISTEN}}\"}}
",
        remote.port
    );
    let mut daemon = Daemon::start_unready(dir.path(), &config, &[]);

    // The poll is stuck from the start, yet passes keep running (the inventory stays
    // fresh) and the status API names the problem once the poll is overdue.
    daemon.wait_for(
        "the stuck poll reported on the status API",
        Duration::from_secs(60),
        |d| {
            let (status, body) = d.get("/api/v1/status");
            status == 200 && body.contains("the source poll has not returned")
        },
    );
    let status = daemon.json("/api/v1/status");
    assert!(status["revision"]["id"].is_null(), "{status}");
    assert_eq!(status["inventory"][0]["complete"], true, "{status}");
    let age = status["inventory"][0]["age_seconds"]
        .as_u64()
        .expect("inventory age");
    assert!(
        age <= 5,
        "passes keep running while the poll hangs: inventory {age}s old"
    );
    assert_eq!(
        daemon.get("/readyz").0,
        503,
        "never ready without a revision"
    );

    assert_eq!(
        daemon.terminate(Duration::from_secs(20)),
        Some(0),
        "SIGTERM ends the daemon although a poll is stuck"
    );
    let log = daemon.log_text();
    assert!(log.contains("source poll stuck"), "{log}");
}
