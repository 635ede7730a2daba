//! A real Prometheus server on a free loopback port, with a temp config and TSDB, that
//! scrapes given targets every second and evaluates given rule files every second;
//! killed by PID on drop. Also runs `promtool`.
//!
//! The binaries are Debian's `prometheus` (`/usr/bin/prometheus`, `/usr/bin/promtool`,
//! or `$PHOENIX_PROMETHEUS` / `$PHOENIX_PROMTOOL`), installed by `scripts/setup.sh`.
//! Without them the fixture panics with that instruction: tests never skip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::net::{free_port, wait_for_tcp};

/// Where the server is looked for when `PHOENIX_PROMETHEUS` is not set.
pub const DEFAULT_BINARY: &str = "/usr/bin/prometheus";
/// Where promtool is looked for when `PHOENIX_PROMTOOL` is not set.
pub const DEFAULT_PROMTOOL: &str = "/usr/bin/promtool";

fn find(var: &str, default: &str) -> PathBuf {
    let binary = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        binary.is_file(),
        "{} not found: run scripts/setup.sh, which installs the Debian package prometheus \
         (or set {var} to the binary)",
        binary.display()
    );
    binary
}

/// Run `promtool` with `args`, stdin from `stdin`; returns its output.
pub fn promtool(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write as _;
    let binary = find("PHOENIX_PROMTOOL", DEFAULT_PROMTOOL);
    let mut child = Command::new(&binary)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input)
            .expect("write promtool's stdin");
    }
    child.wait_with_output().expect("wait for promtool")
}

/// A running Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start Prometheus scraping `targets` (job `phoenix`) and evaluating `rule_files`,
    /// both every second; wait until `/-/ready` answers 200.
    pub fn start(targets: &[SocketAddr], rule_files: &[&Path]) -> Prometheus {
        let binary = find("PHOENIX_PROMETHEUS", DEFAULT_BINARY);
        let dir = tempfile::tempdir().expect("create a temp dir for Prometheus");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let rules: Vec<String> = rule_files
            .iter()
            .map(|r| format!("  - \"{}\"\n", r.display()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\
             scrape_configs:\n  - job_name: phoenix\n    static_configs:\n      - targets: [{}]\n",
            if rules.is_empty() {
                "  []\n".to_owned()
            } else {
                rules.concat()
            },
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write the Prometheus config");
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("create the Prometheus log");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let server = Prometheus { child, addr, dir };
        wait_for_tcp(addr, Duration::from_secs(30), "Prometheus");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, _) = server.get("/-/ready");
            if status == 200 {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus on {addr} not ready (HTTP {status}); log: {}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// GET a path (query included); status and body text. Asks in HTTP/1.0, so the
    /// answer is never chunked.
    pub fn get(&self, path: &str) -> (u16, String) {
        get_http10(self.addr, path)
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

/// `GET path HTTP/1.0` on `addr`: status and body text.
pub fn get_http10(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set read timeout");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .expect("send request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in the answer from {addr}: {head}"));
    (status, body.to_owned())
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
