//! A real Prometheus Alertmanager on a free loopback port, with a temp config and data
//! directory and clustering off, killed by PID on drop.
//!
//! The binary is Debian's `prometheus-alertmanager` (`/usr/bin/prometheus-alertmanager`,
//! or `$PHOENIX_ALERTMANAGER`), installed by `scripts/setup.sh`. Without it the fixture
//! panics with that instruction: tests never skip.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::moto::http_request;
use crate::net::{free_port, wait_for_tcp};

/// Where the binary is looked for when `PHOENIX_ALERTMANAGER` is not set.
pub const DEFAULT_BINARY: &str = "/usr/bin/prometheus-alertmanager";

/// A minimal config: every alert goes to a receiver that notifies no one, and resolved
/// alerts stay listed until they expire.
const CONFIG: &str = "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: blackhole\n";

/// A running Alertmanager.
#[derive(Debug)]
pub struct Alertmanager {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Start Alertmanager on a free loopback port and wait until `/-/ready` answers 200.
    pub fn start() -> Alertmanager {
        let binary = std::env::var_os("PHOENIX_ALERTMANAGER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BINARY));
        assert!(
            binary.is_file(),
            "{} not found: run scripts/setup.sh, which installs the Debian package \
             prometheus-alertmanager (or set PHOENIX_ALERTMANAGER to the binary)",
            binary.display()
        );
        let dir = tempfile::tempdir().expect("create a temp dir for Alertmanager");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, CONFIG).expect("write the Alertmanager config");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("create the Alertmanager data dir");
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.path().join("alertmanager.log");
        let log_file = std::fs::File::create(&log).expect("create the Alertmanager log");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", data.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let server = Alertmanager {
            child,
            addr,
            _dir: dir,
        };
        wait_for_tcp(addr, Duration::from_secs(20), "Alertmanager");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, _) = http_request(addr, "GET", "/-/ready", &[], b"");
            if status == 200 {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "Alertmanager on {addr} not ready (HTTP {status}); log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`: what goes in a receiver's `url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The raw JSON of `GET /api/v2/alerts` (active, silenced, inhibited and unprocessed
    /// alerts; resolved ones are not listed).
    pub fn alerts_json(&self) -> String {
        let (status, body) = http_request(self.addr, "GET", "/api/v2/alerts", &[], b"");
        assert_eq!(status, 200, "GET /api/v2/alerts answered HTTP {status}");
        String::from_utf8(body).expect("Alertmanager answers UTF-8")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
