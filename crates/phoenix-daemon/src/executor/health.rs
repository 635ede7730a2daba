//! Health verdicts for the executor's gates: the provider's own status
//! (`health.check: provider`), an HTTP GET of `http://<private_ip>:<port><path>` with a
//! short timeout (`check: http`, 2xx is healthy), or plain `running` (`check: none`).
//!
//! Probes run concurrently (one tokio task each) and never sleep; a probe that times out
//! or is refused is `Unhealthy`, an instance without an address or not yet running is
//! `Unknown`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use phoenix_core::model::{Instance, InstanceHealth, InstanceState};
use phoenix_core::spec::{Health, HealthCheck};
use tokio::task::JoinSet;

/// What the executor knows about one instance's health right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Passes its check.
    Healthy,
    /// Fails its check (or is stopped).
    Unhealthy,
    /// No verdict yet (pending, no address, provider has no data, or gone).
    Unknown,
}

impl From<InstanceHealth> for Verdict {
    fn from(h: InstanceHealth) -> Self {
        match h {
            InstanceHealth::Healthy => Verdict::Healthy,
            InstanceHealth::Unhealthy => Verdict::Unhealthy,
            InstanceHealth::Unknown => Verdict::Unknown,
        }
    }
}

/// The verdict for each observed instance under the group's health config. `instances`
/// come from an inventory (they carry state, address and the provider's health).
pub(crate) async fn judge(
    client: &reqwest::Client,
    health: &Health,
    instances: &[&Instance],
) -> HashMap<String, Verdict> {
    let mut out = HashMap::with_capacity(instances.len());
    let mut probes = JoinSet::new();
    for instance in instances {
        let state_verdict = match instance.state {
            InstanceState::Running => None,
            InstanceState::Pending => Some(Verdict::Unknown),
            _ => Some(Verdict::Unhealthy),
        };
        if let Some(v) = state_verdict {
            out.insert(instance.id.to_string(), v);
            continue;
        }
        match health.check {
            HealthCheck::Provider => {
                out.insert(instance.id.to_string(), Verdict::from(instance.health));
            }
            HealthCheck::None => {
                out.insert(instance.id.to_string(), Verdict::Healthy);
            }
            HealthCheck::Http => match (&instance.private_ip, &health.http) {
                (Some(ip), Some(http)) => {
                    let url = probe_url(IpAddr::V4(*ip), http.port, &http.path);
                    let client = client.clone();
                    let id = instance.id.to_string();
                    probes.spawn(async move { (id, probe(&client, &url).await) });
                }
                _ => {
                    out.insert(instance.id.to_string(), Verdict::Unknown);
                }
            },
        }
    }
    while let Some(joined) = probes.join_next().await {
        match joined {
            Ok((id, verdict)) => {
                out.insert(id, verdict);
            }
            Err(err) => {
                // A probe task only ends abnormally if it panicked or was cancelled;
                // its instance then has no verdict (it stays Unknown below).
                tracing::warn!(error = %phoenix_core::chain(&err), "health probe task failed");
            }
        }
    }
    for instance in instances {
        out.entry(instance.id.to_string())
            .or_insert(Verdict::Unknown);
    }
    out
}

/// `http://<ip>:<port><path>` (IPv6 addresses bracketed).
pub(crate) fn probe_url(ip: IpAddr, port: u16, path: &str) -> String {
    let host = match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    format!("http://{host}:{port}{path}")
}

/// The longest any probe may take, whatever the client (issue 17: the fallback client
/// of [`client`] has no timeout of its own, and a target that accepts and never answers
/// must not hold the pass forever).
pub(crate) const PROBE_CEILING: Duration = Duration::from_secs(30);

/// One GET; 2xx is healthy, anything else (status, refusal, timeout) unhealthy.
async fn probe(client: &reqwest::Client, url: &str) -> Verdict {
    let Ok(sent) = tokio::time::timeout(PROBE_CEILING, client.get(url).send()).await else {
        tracing::debug!(url, "health probe timed out");
        return Verdict::Unhealthy;
    };
    match sent {
        Ok(resp) if resp.status().is_success() => Verdict::Healthy,
        Ok(resp) => {
            tracing::debug!(url, status = %resp.status(), "health probe failed");
            Verdict::Unhealthy
        }
        Err(err) => {
            tracing::debug!(url, error = %phoenix_core::chain(&err), "health probe failed");
            Verdict::Unhealthy
        }
    }
}

/// The probe client: no redirects, no proxy, `timeout` per request.
pub(crate) fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_else(|err| {
            // Building only fails if the TLS backend cannot initialise; probes are
            // plain HTTP, so the default client is an acceptable fallback.
            tracing::warn!(error = %phoenix_core::chain(&err), "health probe client with options failed; using defaults");
            reqwest::Client::new()
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use phoenix_core::model::{Instance, InstanceHealth, InstanceState, Tags};
    use phoenix_core::spec::{Health, HealthCheck, HttpCheck};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{Verdict, client, judge, probe, probe_url};

    fn instance(id: &str, state: InstanceState, ip: Option<&str>) -> Instance {
        Instance {
            id: id.into(),
            state,
            health: InstanceHealth::Unknown,
            image: "ami-1".into(),
            instance_type: "t3.micro".into(),
            subnet_id: None,
            security_group_ids: Arc::from([]),
            launch_time: None,
            private_ip: ip.map(|ip| ip.parse().expect("a test address")),
            tags: Tags::new(),
        }
    }

    fn health(check: HealthCheck, port: u16, path: &str) -> Health {
        Health {
            check,
            http: Some(Box::new(HttpCheck {
                port,
                path: path.to_string(),
            })),
            grace: Duration::ZERO,
            deadline: Duration::from_secs(60),
        }
    }

    /// A server answering 200 on /healthz and 503 elsewhere.
    async fn server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1024];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]);
                    let status = if request.starts_with("GET /healthz ") {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        });
        port
    }

    /// Issue 17, defect 9: even a client without a timeout of its own (the fallback of
    /// `client`) cannot hang a probe on a target that accepts and never answers.
    #[tokio::test(start_paused = true)]
    async fn a_probe_ends_even_with_a_client_without_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let verdict = tokio::time::timeout(
            Duration::from_secs(3600),
            probe(
                &reqwest::Client::new(),
                &format!("http://127.0.0.1:{port}/healthz"),
            ),
        )
        .await
        .expect("the probe ends by itself");
        assert_eq!(verdict, Verdict::Unhealthy);
    }

    #[tokio::test]
    async fn http_check_probes_the_private_address() {
        let port = server().await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let c = client(Duration::from_secs(2));
        let up = instance("i-up", InstanceState::Running, Some("127.0.0.1"));
        let starting = instance("i-pending", InstanceState::Pending, Some("127.0.0.1"));
        let no_ip = instance("i-noip", InstanceState::Running, None);
        let stopped = instance("i-stopped", InstanceState::Stopped, Some("127.0.0.1"));
        let all = [&up, &starting, &no_ip, &stopped];
        let ok = tokio::time::timeout(
            Duration::from_secs(10),
            judge(&c, &health(HealthCheck::Http, port, "/healthz"), &all),
        )
        .await
        .expect("probes finish");
        assert_eq!(ok["i-up"], Verdict::Healthy);
        assert_eq!(ok["i-pending"], Verdict::Unknown);
        assert_eq!(ok["i-noip"], Verdict::Unknown);
        assert_eq!(ok["i-stopped"], Verdict::Unhealthy);
        let failing = tokio::time::timeout(
            Duration::from_secs(10),
            judge(&c, &health(HealthCheck::Http, port, "/broken"), &[&up]),
        )
        .await
        .expect("probes finish");
        assert_eq!(failing["i-up"], Verdict::Unhealthy, "503 is unhealthy");
        let refused = tokio::time::timeout(
            Duration::from_secs(10),
            judge(&c, &health(HealthCheck::Http, closed, "/healthz"), &[&up]),
        )
        .await
        .expect("probes finish");
        assert_eq!(refused["i-up"], Verdict::Unhealthy, "refused is unhealthy");
    }

    #[tokio::test]
    async fn none_check_counts_running_and_provider_check_uses_the_provider() {
        let c = client(Duration::from_secs(1));
        let mut up = instance("i-up", InstanceState::Running, None);
        let v = judge(&c, &health(HealthCheck::None, 1, "/"), &[&up]).await;
        assert_eq!(v["i-up"], Verdict::Healthy);
        let v = judge(&c, &health(HealthCheck::Provider, 1, "/"), &[&up]).await;
        assert_eq!(v["i-up"], Verdict::Unknown);
        up.health = InstanceHealth::Unhealthy;
        let v = judge(&c, &health(HealthCheck::Provider, 1, "/"), &[&up]).await;
        assert_eq!(v["i-up"], Verdict::Unhealthy);
    }

    #[test]
    fn probe_url_brackets_ipv6_and_roots_the_path() {
        assert_eq!(
            probe_url([10, 0, 0, 5].into(), 8080, "/healthz"),
            "http://10.0.0.5:8080/healthz"
        );
        assert_eq!(
            probe_url("fd00::1".parse().expect("an IPv6 address"), 80, "ready"),
            "http://[fd00::1]:80/ready"
        );
    }
}
