//! Whole-daemon test support: run `phoenix run` as a child process on a free loopback
//! port, talk to its HTTP API, and stop it by PID.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use phoenix_testkit::moto::http_request;
use phoenix_testkit::net::free_port;

/// A running `phoenix run` child process, killed on drop.
pub struct Daemon {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Write `config` (with `{LISTEN}` replaced by a free loopback address) into `dir` and
    /// start the daemon on it.
    pub fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        let mut daemon = Daemon::start_unready(dir, config, env);
        daemon.wait_ready(Duration::from_secs(60));
        daemon
    }

    /// Like [`Daemon::start`], waiting only for the API to listen, not for `/readyz`:
    /// for daemons that cannot become ready (a source that never answers).
    pub fn start_unready(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("loopback address");
        let config_path = dir.join("phoenix.yaml");
        std::fs::write(&config_path, config.replace("{LISTEN}", &addr.to_string()))
            .expect("write config");
        let log = dir.join("daemon.log");
        let mut daemon = Daemon {
            child: None,
            addr,
            dir: dir.to_path_buf(),
            log,
        };
        daemon.spawn(env);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect_timeout(&daemon.addr, Duration::from_millis(200))
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the API did not listen within 60s; log:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    fn spawn(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open daemon log");
        let child = Command::new(env!("CARGO_BIN_EXE_phoenix"))
            .args(["run", "--config"])
            .arg(self.dir.join("phoenix.yaml"))
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn phoenix run");
        self.child = Some(child);
    }

    /// Stop with SIGKILL and start again on the same config and state.
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        self.kill();
        self.spawn(env);
        self.wait_ready(Duration::from_secs(60));
    }

    /// Wait until `/readyz` answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "phoenix run exited early with {status}; log:\n{}",
                    self.log_text()
                );
            }
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
                && self.get("/readyz").0 == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready within {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET a path; returns status and body text.
    pub fn get(&self, path: &str) -> (u16, String) {
        let (status, body) = http_request(self.addr, "GET", path, &[], b"");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// GET a JSON document, asserting 200.
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}"))
    }

    /// POST with headers; returns status and body.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        let (status, body) = http_request(self.addr, "POST", path, headers, body);
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Poll `check` over the status API until it returns true.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Daemon) -> bool) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Send SIGTERM and wait for the exit; returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("daemon running");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for phoenix") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "daemon did not stop within {timeout:?} after SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("alert body is JSON")
    }
}

/// A tiny HTTP receiver on a free loopback port that answers 200 and records every
/// request, for alert webhooks.
pub struct Receiver {
    pub addr: SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut headers = Vec::new();
                let mut length = 0usize;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = header.trim_end().split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                sink.lock()
                    .expect("receiver lock")
                    .push(Received { headers, body });
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Receiver { addr, received }
    }

    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("receiver lock").clone()
    }
}
