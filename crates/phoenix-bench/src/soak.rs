//! `phoenix-bench soak`: months of commits in minutes (issue 17). One `phoenix run` on a
//! local git repository and the sim cloud takes, for `--minutes`: a commit every few
//! seconds (a new image for `web`; now and then an image that never gets healthy for
//! `api`, so plans roll back and alerts fire), a GitLab push webhook after each commit,
//! API reads several times a second, launch failures injected by the sim
//! (`launch_failure_rate`), and an alert receiver that refuses every fifth delivery (so
//! the outbox retries). Short `state.retention` periods make pruning run during the
//! soak.
//!
//! Every 15 s it samples the daemon's RSS and the database's size (`phoenix.db` plus its
//! WAL). The figures: both at the end of the first quarter and at the end, and their
//! slope (least squares) over the second half, in MiB per hour: bounded state shows as a
//! slope near 0 beside the level. At the end, with commits stopped, the outbox must drain:
//! 0 pending, 0 expired undelivered, and every delivery the daemon counts as delivered
//! was received (by delivery id). Prints `RESULT {json}`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{Daemon, free_port, http, log, status_kib};

const TOKEN: &str = "soak-token";
const HOOK: &str = "soak-hook";
const ALERT: &str = "soak-alert";

/// Options of one soak.
#[derive(Debug)]
pub struct SoakArgs {
    /// The `phoenix` binary.
    pub phoenix: PathBuf,
    /// How long commits, webhooks and reads go on.
    pub minutes: f64,
    /// Keep the scratch folder.
    pub keep: bool,
    /// The cloud: the built-in sim (in the daemon's process) or `aws_ec2` against the
    /// in-memory scale EC2 endpoint (in this process), which takes the cloud's own
    /// memory out of the daemon's RSS.
    pub cloud: Cloud,
}

/// Where the soak's fleet lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// `type: sim`, with launch failures and a never-healthy image.
    Sim,
    /// `type: aws_ec2` on `phoenix_testkit::scale_ec2` (unlimited buckets, no latency).
    ScaleEc2,
}

/// One sample of the daemon's footprint.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_secs: f64,
    rss_mib: f64,
    db_mib: f64,
}

/// The alert receiver: answers 500 to every fifth request, 200 to the others, and keeps
/// the delivery ids it accepted.
struct Receiver {
    port: u16,
    accepted: Arc<Mutex<BTreeSet<String>>>,
    requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Result<Receiver> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let accepted: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ids, count, stopping) = (accepted.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                        let _ = answer(conn, !n.is_multiple_of(5), &ids);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Receiver {
            port,
            accepted,
            requests,
            stop,
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Read one delivery; accept it (and keep its id) or refuse it with a 500.
fn answer(conn: TcpStream, accept: bool, ids: &Mutex<BTreeSet<String>>) -> Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut length = 0usize;
    let mut delivery = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            if name == "content-length" {
                length = value.trim().parse().unwrap_or(0);
            } else if name == "x-phoenix-delivery" {
                delivery = Some(value.trim().to_owned());
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let status = if accept {
        if let Some(id) = delivery {
            ids.lock().expect("receiver lock").insert(id);
        }
        "200 OK"
    } else {
        "500 Internal Server Error"
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "soak")
        .env("GIT_AUTHOR_EMAIL", "soak@example.invalid")
        .env("GIT_COMMITTER_NAME", "soak")
        .env("GIT_COMMITTER_EMAIL", "soak@example.invalid")
        .output()
        .context("run git")?;
    if !out.status.success() {
        bail!(
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn spec(name: &str, image: &str) -> String {
    format!(
        "apiVersion: phoenix/v1\nkind: InstanceGroup\nmetadata:\n  name: {name}\nspec:\n  provider: local\n  replicas: 3\n  template:\n    image: {image}\n    instanceType: t3.micro\n  rollout: {{maxSurge: 1, maxUnavailable: 0, autoRollback: true}}\n  health: {{check: provider, grace: 0s, deadline: 3s}}\n"
    )
}

/// Commit `files` and push; returns the commit id.
fn commit(work: &Path, files: &[(&str, String)], message: &str) -> Result<String> {
    for (path, text) in files {
        std::fs::write(work.join(path), text)?;
    }
    git(work, &["add", "-A"])?;
    git(work, &["commit", "-q", "-m", message])?;
    git(work, &["push", "-q", "origin", "HEAD:main"])?;
    git(work, &["rev-parse", "HEAD"])
}

fn db_mib(state: &Path) -> f64 {
    ["phoenix.db", "phoenix.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(state.join(f)).ok())
        .map(|m| m.len() as f64)
        .sum::<f64>()
        / (1024.0 * 1024.0)
}

/// Least-squares slope of `y` over `x` (per unit of `x`).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

/// Run the soak; the `RESULT` object on success.
pub fn run(args: &SoakArgs) -> Result<Value> {
    let root = std::env::temp_dir().join(format!("phoenix-bench-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let result = soak(args, &root);
    if args.keep {
        log(format!("kept {}", root.display()));
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

fn soak(args: &SoakArgs, root: &Path) -> Result<Value> {
    let origin = root.join("origin.git");
    let work = root.join("work");
    let state = root.join("state");
    git(root, &["init", "-q", "--bare", "-b", "main", "origin.git"])?;
    git(root, &["init", "-q", "-b", "main", "work"])?;
    git(
        &work,
        &["remote", "add", "origin", &origin.display().to_string()],
    )?;
    std::fs::create_dir_all(work.join("groups"))?;
    commit(
        &work,
        &[
            ("groups/web.yaml", spec("web", "ami-web-0")),
            ("groups/api.yaml", spec("api", "ami-api-0")),
        ],
        "first",
    )?;

    let receiver = Receiver::start()?;
    let port = free_port()?;
    let scale = (args.cloud == Cloud::ScaleEc2).then(|| {
        phoenix_testkit::scale_ec2::ScaleEc2::start(
            phoenix_testkit::scale_ec2::Latency::default(),
            phoenix_testkit::scale_ec2::Buckets::unlimited(),
        )
    });
    let provider = match &scale {
        None => {
            "{name: local, type: sim, launch_failure_rate: 0.05, unhealthy_images: [ami-broken]}"
                .to_owned()
        }
        Some(endpoint) => format!(
            "{{name: local, type: aws_ec2, region: us-east-1, endpoint_url: \"{}\"}}",
            endpoint.endpoint_url()
        ),
    };
    let config = root.join("phoenix.yaml");
    std::fs::write(
        &config,
        format!(
            "owner: soak
source: {{git: {{url: \"file://{origin}\", branch: main, path: groups, interval: 5s}}}}
providers:
  - {provider}
reconcile: {{interval: 2s, mode: enforce}}
state:
  path: {state}
  retention: {{plans: 2m, revisions: 2m, alerts: 2m, incidents: 2m}}
server: {{listen: \"127.0.0.1:{port}\", token_env: PHX_SOAK_TOKEN}}
webhooks: {{git: {{secret_env: PHX_SOAK_HOOK}}}}
alerts:
  - {{name: soak, type: webhook, url: \"http://127.0.0.1:{rport}/\", secret_env: PHX_SOAK_ALERT, renotify: 1m}}
",
            origin = origin.display(),
            state = state.display(),
            rport = receiver.port,
        ),
    )?;
    let env = [
        ("PHX_SOAK_TOKEN", TOKEN),
        ("PHX_SOAK_HOOK", HOOK),
        ("PHX_SOAK_ALERT", ALERT),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let mut daemon =
        Daemon::start_with_env(&args.phoenix, &config, root.join("daemon.log"), port, &env)?;
    daemon.wait_ready(Instant::now() + Duration::from_secs(120))?;
    let pid = daemon.pid();

    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = started;
    let mut next_commit = started + Duration::from_secs(3);
    let mut commits = 0u64;
    let mut reads = 0u64;
    let mut webhooks = 0u64;
    let timeout = Duration::from_secs(10);
    while started.elapsed() < total {
        daemon.check_alive()?;
        let now = Instant::now();
        if now >= next_sample {
            samples.push(Sample {
                at_secs: started.elapsed().as_secs_f64(),
                rss_mib: status_kib(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
                db_mib: db_mib(&state),
            });
            next_sample += Duration::from_secs(15);
        }
        if now >= next_commit {
            commits += 1;
            let api_image = if commits.is_multiple_of(9) {
                "ami-broken".to_owned()
            } else {
                format!("ami-api-{}", commits / 9)
            };
            let id = commit(
                &work,
                &[
                    (
                        "groups/web.yaml",
                        spec("web", &format!("ami-web-{commits}")),
                    ),
                    ("groups/api.yaml", spec("api", &api_image)),
                ],
                &format!("commit {commits}"),
            )?;
            let body =
                format!(r#"{{"object_kind":"push","ref":"refs/heads/main","after":"{id}"}}"#);
            let headers = [
                ("Content-Type", "application/json"),
                ("X-Gitlab-Event", "Push Hook"),
                ("X-Gitlab-Token", HOOK),
            ];
            let (code, text) = http::send(
                port,
                "POST",
                "/api/v1/webhooks/git",
                &headers,
                body.as_bytes(),
                timeout,
            )?;
            if code != 202 && code != 200 {
                bail!("push webhook answered {code}: {text}");
            }
            webhooks += 1;
            next_commit = now + Duration::from_secs(4);
        }
        for path in [
            "/api/v1/status",
            "/api/v1/groups",
            "/api/v1/plans",
            "/metrics",
        ] {
            let (code, text) = http::request(port, "GET", path, None, timeout)?;
            if code != 200 {
                bail!("GET {path} answered {code}: {text}");
            }
            reads += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    samples.push(Sample {
        at_secs: started.elapsed().as_secs_f64(),
        rss_mib: status_kib(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
        db_mib: db_mib(&state),
    });

    // The outbox drains once commits stop (renotify keeps adding for open incidents,
    // so "drained" means nothing pending and nothing given up on).
    let drain_deadline = Instant::now() + Duration::from_secs(180);
    let (pending, failed, delivered) = loop {
        let (_, metrics) = http::request(port, "GET", "/metrics", None, timeout)?;
        let pending = http::metric(&metrics, "phoenix_alerts_pending").unwrap_or(f64::NAN);
        let failed = http::metric(&metrics, "phoenix_alerts_failed").unwrap_or(f64::NAN);
        let delivered = labelled(
            &metrics,
            "phoenix_alert_deliveries_total{result=\"delivered\"}",
        );
        if pending == 0.0 || Instant::now() >= drain_deadline {
            break (pending, failed, delivered);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    daemon.stop();
    let received = receiver.accepted.lock().expect("receiver lock").len() as f64;
    let half: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_secs >= total.as_secs_f64() / 2.0)
        .collect();
    let per_hour = |f: fn(&Sample) -> f64| {
        slope(&half.iter().map(|s| (s.at_secs, f(s))).collect::<Vec<_>>()) * 3600.0
    };
    let quarter = samples
        .iter()
        .find(|s| s.at_secs >= total.as_secs_f64() / 4.0)
        .or(samples.last())
        .copied()
        .context("no sample")?;
    let last = *samples.last().context("no sample")?;
    let lost = delivered - received;
    let result = json!({
        "bench": "soak",
        "cloud": if args.cloud == Cloud::Sim { "sim" } else { "scale_ec2" },
        "minutes": args.minutes,
        "commits": commits,
        "webhooks": webhooks,
        "api_reads": reads,
        "samples": samples.len(),
        "rss_mib_quarter": quarter.rss_mib,
        "rss_mib_end": last.rss_mib,
        "rss_slope_mib_per_hour": per_hour(|s| s.rss_mib),
        "db_mib_quarter": quarter.db_mib,
        "db_mib_end": last.db_mib,
        "db_slope_mib_per_hour": per_hour(|s| s.db_mib),
        "alerts_delivered": delivered,
        "alerts_received": received,
        "alert_requests": receiver.requests.load(Ordering::SeqCst),
        "alerts_pending_end": pending,
        "alerts_expired": failed,
        "alerts_lost": lost,
    });
    if pending != 0.0 || failed != 0.0 || lost > 0.0 {
        bail!("the alert outbox lost or kept something: {result}");
    }
    Ok(result)
}

/// Value of a labelled sample written exactly as `series value` in a /metrics text.
fn labelled(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(str::trim))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 2.0 * f64::from(i) + 1.0))
            .collect();
        assert!((slope(&line) - 2.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 5.0)).collect();
        assert_eq!(slope(&flat), 0.0);
        assert_eq!(slope(&[(1.0, 1.0)]), 0.0);
    }
}
