//! The daemon as its observers see it (issue 7): a real Prometheus scrapes `/metrics`,
//! and headless Chromium renders the dashboard with real data from the running daemon.
//! Both tools come from Debian packages that `scripts/setup.sh` installs; a missing one
//! fails the test with that instruction, never skips it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Daemon;
use phoenix_testkit::moto::http_request;
use phoenix_testkit::net::free_port;

const GROUP: &str = "apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: checkout-frontend
spec:
  provider: local
  replicas: 2
  template:
    image: ami-0123456789abcdef0
    instanceType: t3.micro
";

const CONFIG: &str = "owner: observe
source: {dir: {path: desired, watch: true}}
providers:
  - {name: local, type: sim}
reconcile: {interval: 1s, mode: enforce}
state: {path: state}
server: {listen: \"{LISTEN}\"}
";

fn start_daemon(dir: &Path) -> Daemon {
    std::fs::create_dir(dir.join("desired")).expect("mkdir");
    std::fs::write(dir.join("desired/checkout-frontend.yaml"), GROUP).expect("write group");
    let daemon = Daemon::start(dir, CONFIG, &[]);
    daemon.wait_for("the group to converge", Duration::from_secs(60), |d| {
        d.json("/api/v1/groups/checkout-frontend")["sync"] == "in_sync"
    });
    daemon
}

fn require(binary: &str) {
    assert!(
        Path::new(binary).exists(),
        "{binary} is missing: run scripts/setup.sh (it installs the Debian package)"
    );
}

/// Wait for a child to exit, killing it (and failing) after `limit`.
fn wait_with_deadline(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("poll chromium") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prometheus_scrapes_the_metrics() {
    require("/usr/bin/prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start_daemon(dir.path());
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: phoenix\n    static_configs: [{{targets: ['{}']}}]\n", daemon.addr),
    )
    .expect("write prometheus config");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let _prometheus = Killed(
        Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let addr = format!("127.0.0.1:{port}").parse().expect("address");
    let deadline = Instant::now() + Duration::from_secs(60);
    let query = "/api/v1/query?query=phoenix_groups%7Bsync%3D%22in_sync%22%7D";
    loop {
        let ready = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        if ready {
            let (status, body) = http_request(addr, "GET", query, &[], b"");
            let body = String::from_utf8_lossy(&body).into_owned();
            if status == 200 && body.contains("\"result\":[{") {
                let value: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
                assert_eq!(
                    value["data"]["result"][0]["value"][1], "1",
                    "one group in sync: {body}"
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped phoenix_groups; log:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (_, targets) = http_request(addr, "GET", "/api/v1/targets", &[], b"");
    let targets = String::from_utf8_lossy(&targets);
    assert!(
        targets.contains("\"health\":\"up\""),
        "scrape target healthy: {targets}"
    );
    drop(daemon);
}

#[test]
fn dashboard_renders_real_data_in_headless_chromium() {
    require("/usr/bin/chromium");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start_daemon(dir.path());
    let revision = daemon.json("/api/v1/status")["revision"]["id"]
        .as_str()
        .expect("revision")
        .to_string();
    let profile = dir.path().join("chromium-profile");
    // `?live=0`: poll without the event stream, whose open connection would keep
    // Chromium's virtual time from ever running out.
    let child = Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{}/?live=0", daemon.addr))
        // Files, not pipes: a full pipe would stall Chromium while we wait for it.
        .stdout(std::fs::File::create(dir.path().join("dom.html")).expect("dom file"))
        .stderr(std::fs::File::create(dir.path().join("chromium.log")).expect("log file"))
        .spawn()
        .expect("run chromium");
    let status = wait_with_deadline(child, Duration::from_secs(90));
    let dom = std::fs::read_to_string(dir.path().join("dom.html")).expect("read the DOM");
    assert!(
        status.success(),
        "chromium failed: {}",
        std::fs::read_to_string(dir.path().join("chromium.log")).unwrap_or_default()
    );
    // The static page carries neither the group name nor the revision id: finding them
    // in the rendered DOM means the page fetched and showed live data.
    let static_page = daemon.get("/").1;
    assert!(!static_page.contains("checkout-frontend") && !static_page.contains(&revision));
    assert!(
        dom.contains("checkout-frontend"),
        "group on the page:\n{dom}"
    );
    let short = &revision[..revision.len().min(12)];
    assert!(dom.contains(short), "revision {short} on the page:\n{dom}");
    assert!(
        dom.contains("in_sync") || dom.contains("in sync"),
        "sync state on the page:\n{dom}"
    );
    drop(daemon);
}
