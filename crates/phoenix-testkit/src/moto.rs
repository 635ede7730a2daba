//! A moto server (AWS API emulator) on a free loopback port, and a fault-injecting HTTP
//! proxy to put in front of it.
//!
//! moto comes from the Python venv at `$PHOENIX_VENV` (default
//! `$HOME/.cache/phoenix/venv`), which `scripts/test.sh` creates. Without it the
//! fixture panics with that instruction: tests never skip.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::net::{free_port, wait_for_tcp};

/// The venv holding `moto_server`.
pub fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PHOENIX_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is set (to find the default venv)");
    PathBuf::from(home).join(".cache/phoenix/venv")
}

/// A program from the venv's `bin/`, or a panic saying how to create the venv.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = venv_dir().join("bin").join(name);
    assert!(
        path.is_file(),
        "{} not found: run scripts/test.sh, which creates the Python venv with moto and boto3 \
         (or set PHOENIX_VENV to a venv where `pip install 'moto[server]' boto3` was run)",
        path.display()
    );
    path
}

/// A running `moto_server`, killed (and waited for) on drop.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    addr: SocketAddr,
}

impl MotoServer {
    /// Start moto on a free port, wait until it answers, and warm up its EC2 backend.
    pub fn start() -> MotoServer {
        let binary = venv_bin("moto_server");
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let server = MotoServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        wait_for_tcp(server.addr, Duration::from_secs(30), "moto_server");
        server.warm_up();
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forget every resource (POST /moto-api/reset).
    pub fn reset(&self) {
        let (status, body) = http_request(self.addr, "POST", "/moto-api/reset", &[], b"");
        assert_eq!(
            status,
            200,
            "moto reset failed: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// The first EC2 call loads moto's backend (1.5 to 2 s): pay it once, here.
    fn warm_up(&self) {
        let body = b"Action=DescribeRegions&Version=2016-11-15";
        let headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            // moto routes on the SigV4 credential scope; the signature is not checked.
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
            ),
        ];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, _) = http_request(self.addr, "POST", "/", &headers, body);
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto EC2 warm-up kept failing (HTTP {status})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Kill by PID and wait for the exit, so the port is free for the next server.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.1 request (Connection: close); returns status and body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("set read timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    stream.write_all(body).expect("send body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let text_end = find(&response, b"\r\n\r\n").unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..text_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in response from {addr}: {head}"));
    let body = response.get(text_end + 4..).unwrap_or_default().to_vec();
    (status, body)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An error the proxy answers with instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 503 with EC2's `RequestLimitExceeded` error.
    Throttle,
    /// HTTP 500 with EC2's `InternalError` error.
    InternalError,
    /// HTTP 503 with an empty body (a load balancer in the way).
    Unavailable,
    /// Forward the request (so it takes effect), then answer HTTP 500 `InternalError`:
    /// the answer got lost. A retried launch must not launch twice.
    InternalErrorAfterForward,
    /// Forward the request (so it takes effect), then close the connection without an
    /// answer (a reset in the middle of the response).
    ResetAfterForward,
    /// Close the connection without forwarding or answering.
    Reset,
    /// Wait this many milliseconds, then forward and answer normally (a slow answer).
    Slow(u64),
}

impl Fault {
    fn response(self) -> Vec<u8> {
        let (status, code, message) = match self {
            Fault::Throttle => (
                "503 Service Unavailable",
                "RequestLimitExceeded",
                "Request limit exceeded.",
            ),
            Fault::InternalError | Fault::InternalErrorAfterForward => (
                "500 Internal Server Error",
                "InternalError",
                "An internal error has occurred.",
            ),
            Fault::Reset | Fault::ResetAfterForward | Fault::Slow(_) => {
                unreachable!("served without a canned answer")
            }
            Fault::Unavailable => {
                return b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
            }
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>phoenix-fault</RequestID></Response>"
        );
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// One injection rule: let the next `after` requests for `action` (any action when
/// `None`) through, then answer the following `times` ones with `fault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// EC2 `Action` to match, e.g. `DescribeInstances`; `None` matches every request.
    pub action: Option<String>,
    /// What to answer.
    pub fault: Fault,
    /// How many matching requests get it.
    pub times: usize,
    /// How many matching requests to let through first.
    pub after: usize,
}

#[derive(Debug, Default)]
struct ProxyState {
    rules: Mutex<VecDeque<FaultRule>>,
    requests: AtomicUsize,
    faults: AtomicUsize,
    actions: Mutex<Vec<String>>,
}

/// A loopback HTTP proxy in front of an upstream (moto) that injects faults by rule.
/// One thread per connection; each request is forwarded on a fresh upstream connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Start a proxy forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState::default());
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || serve(conn, upstream, &state));
                }
            })
        };
        FaultProxy {
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Add a rule (rules are tried in the order added).
    pub fn inject(&self, rule: FaultRule) {
        self.state.rules.lock().expect("rules lock").push_back(rule);
    }

    /// Fail the next `times` requests of any action with `fault`.
    pub fn fail_next(&self, fault: Fault, times: usize) {
        self.inject(FaultRule {
            action: None,
            fault,
            times,
            after: 0,
        });
    }

    /// Drop every rule not yet used up: from now on every request is forwarded.
    pub fn clear(&self) {
        self.state.rules.lock().expect("rules lock").clear();
    }

    /// Requests seen (forwarded or failed).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests answered with a fault.
    pub fn faults_served(&self) -> usize {
        self.state.faults.load(Ordering::SeqCst)
    }

    /// The EC2 actions of every request seen, in order.
    pub fn actions(&self) -> Vec<String> {
        self.state.actions.lock().expect("actions lock").clone()
    }

    /// Rules not yet used up.
    pub fn pending_faults(&self) -> usize {
        self.state
            .rules
            .lock()
            .expect("rules lock")
            .iter()
            .map(|r| r.times)
            .sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
    }
}

/// Read one HTTP request (head and Content-Length body) from `reader`.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).ok()?;
        if n == 0 {
            return None;
        }
        let end = line == b"\r\n";
        head.extend_from_slice(&line);
        if end {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let length = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// The `Action=` form field of an EC2 query request.
fn action_of(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action=").map(str::to_string))
        .unwrap_or_default()
}

fn serve(conn: TcpStream, upstream: SocketAddr, state: &ProxyState) {
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(conn);
    // One request per connection: every answer says `Connection: close`, as moto's do.
    if let Some((head, body)) = read_request(&mut reader) {
        state.requests.fetch_add(1, Ordering::SeqCst);
        let action = action_of(&body);
        state
            .actions
            .lock()
            .expect("actions lock")
            .push(action.clone());
        let fault = {
            let mut rules = state.rules.lock().expect("rules lock");
            let mut fault = None;
            for rule in rules.iter_mut() {
                if rule.times == 0 || rule.action.as_deref().is_some_and(|a| a != action) {
                    continue;
                }
                if rule.after > 0 {
                    rule.after -= 1;
                } else {
                    rule.times -= 1;
                    fault = Some(rule.fault);
                }
                break;
            }
            rules.retain(|r| r.times > 0);
            fault
        };
        let response = match fault {
            Some(Fault::Reset | Fault::ResetAfterForward) => {
                state.faults.fetch_add(1, Ordering::SeqCst);
                if fault == Some(Fault::ResetAfterForward) {
                    let _ = forward(upstream, &head, &body);
                }
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            Some(Fault::Slow(millis)) => {
                state.faults.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(millis));
                forward(upstream, &head, &body).unwrap_or_else(|| Fault::Unavailable.response())
            }
            Some(fault) => {
                state.faults.fetch_add(1, Ordering::SeqCst);
                if fault == Fault::InternalErrorAfterForward {
                    // The effect happens; only the answer is lost.
                    let _ = forward(upstream, &head, &body);
                }
                fault.response()
            }
            None => match forward(upstream, &head, &body) {
                Some(response) => response,
                None => Fault::Unavailable.response(),
            },
        };
        if writer.write_all(&response).is_ok() {
            let _ = writer.shutdown(Shutdown::Both);
        }
    }
}

/// Send the request upstream on a fresh connection and read the whole answer.
fn forward(upstream: SocketAddr, head: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .ok()?;
    // Ask upstream to close after answering so reading to EOF ends the response.
    let text = String::from_utf8_lossy(head);
    let mut rewritten = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    stream.write_all(rewritten.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    Some(response)
}

#[cfg(test)]
mod tests {
    /// `NAME=value` from scripts/setup.sh.
    fn pinned(setup: &str, name: &str) -> String {
        setup
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("scripts/setup.sh pins no {name}"))
            .trim()
            .to_string()
    }

    /// Issue 17, defect 9: the test venv is pinned, and the venv in use has exactly the
    /// pinned versions (scripts/setup.sh reinstalls it otherwise).
    #[test]
    fn moto_and_boto3_are_pinned_and_installed_as_pinned() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let setup = std::fs::read_to_string(root.join("scripts/setup.sh")).expect("read setup.sh");
        let moto = pinned(&setup, "MOTO_VERSION");
        let boto3 = pinned(&setup, "BOTO3_VERSION");
        assert!(
            setup.contains("\"moto[server]==$MOTO_VERSION\""),
            "moto is installed pinned"
        );
        assert!(
            setup.contains("\"boto3==$BOTO3_VERSION\""),
            "boto3 is installed pinned"
        );
        let venv = std::env::var("PHOENIX_VENV").unwrap_or_else(|_| {
            format!(
                "{}/.cache/phoenix/venv",
                std::env::var("HOME").expect("HOME is set")
            )
        });
        let output = std::process::Command::new(format!("{venv}/bin/python"))
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('moto'), m.version('boto3'))",
            ])
            .output()
            .expect("the test venv exists (run scripts/setup.sh)");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("{moto} {boto3}"),
            "the venv differs from the pins: run scripts/setup.sh"
        );
    }
}
