//! Alert receivers as the daemon uses them: the validated form of each `alerts:` entry
//! (endpoint URL, event filter, intervals, HMAC secret) and the webhook signature.
//!
//! Secrets and receiver URLs never reach logs: [`Secret`] and [`Receiver`] have redacted
//! `Debug` implementations (a Slack incoming-webhook URL is itself a credential).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use phoenix_core::config::{AlertConfig, AlertEvent, AlertType};
use reqwest::Url;
use sha2::Sha256;

use super::AlertError;

/// The path Alertmanager's v2 API takes alerts on, appended to the configured URL.
pub const ALERTMANAGER_PATH: &str = "/api/v2/alerts";

/// An HMAC secret. `Debug` prints `<redacted>`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wrap secret bytes (as read from the environment).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The `X-Phoenix-Signature` value for `body`: `sha256=` and the lowercase hex
/// HMAC-SHA256 of the exact body bytes, keyed with the receiver's secret.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One configured receiver, ready to use.
#[derive(Clone)]
pub struct Receiver {
    name: String,
    kind: AlertType,
    endpoint: Url,
    events: BTreeSet<AlertEvent>,
    renotify: Duration,
    expire_after: Duration,
    secret: Option<Secret>,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a credential (Slack); show only scheme and host.
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("host", &self.endpoint.host_str())
            .field("events", &self.events)
            .field("renotify", &self.renotify)
            .field("expire_after", &self.expire_after)
            .field("secret", &self.secret)
            .finish()
    }
}

impl Receiver {
    /// Build a receiver from its config entry and the secret the binary read from
    /// `secret_env` (if any).
    ///
    /// A `webhook` receiver must have a secret: its signature is part of the contract.
    /// Other types ignore one.
    pub fn from_config(config: &AlertConfig, secret: Option<&[u8]>) -> Result<Self, AlertError> {
        let invalid = |reason: &'static str| AlertError::InvalidReceiver {
            receiver: config.name.clone(),
            reason,
        };
        let mut endpoint =
            Url::parse(&config.url).map_err(|_| invalid("url is not a valid URL"))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(invalid("url must be http:// or https://"));
        }
        if config.kind == AlertType::Alertmanager && !endpoint.path().ends_with(ALERTMANAGER_PATH) {
            let base = endpoint.path().trim_end_matches('/').to_string();
            endpoint.set_path(&format!("{base}{ALERTMANAGER_PATH}"));
        }
        let secret = match (config.kind, secret) {
            (AlertType::Webhook, Some(bytes)) if !bytes.is_empty() => Some(Secret::new(bytes)),
            (AlertType::Webhook, _) => {
                return Err(AlertError::MissingSecret {
                    receiver: config.name.clone(),
                    secret_env: config.secret_env.clone(),
                });
            }
            _ => None,
        };
        Ok(Self {
            name: config.name.clone(),
            kind: config.kind,
            endpoint,
            events: config.events.iter().copied().collect(),
            renotify: config.renotify,
            expire_after: config.expire_after,
            secret,
        })
    }

    /// The receiver's name from the config (the outbox's `receiver` column).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// webhook, slack or alertmanager.
    pub fn kind(&self) -> AlertType {
        self.kind
    }

    /// Where alerts are POSTed (for Alertmanager, the configured URL plus
    /// `/api/v2/alerts`).
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Whether this receiver's `events` filter lets `event` through.
    pub fn wants(&self, event: AlertEvent) -> bool {
        self.events.contains(&event)
    }

    /// How often still-open incidents are re-sent.
    pub fn renotify(&self) -> Duration {
        self.renotify
    }

    /// How long an undelivered alert is retried.
    pub fn expire_after(&self) -> Duration {
        self.expire_after
    }

    /// The `X-Phoenix-Signature` for `body`, for receivers that sign.
    pub fn sign(&self, body: &[u8]) -> Option<String> {
        self.secret.as_ref().map(|secret| signature(secret, body))
    }
}

/// Every configured receiver, cheap to clone and share between the incident logic and
/// the delivery task.
#[derive(Debug, Clone, Default)]
pub struct Receivers(Arc<[Receiver]>);

impl Receivers {
    /// Build every receiver of `configs`; `secrets` maps a receiver name to the secret
    /// read from its `secret_env`. Reports the first invalid receiver.
    pub fn new(
        configs: &[AlertConfig],
        secrets: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, AlertError> {
        let mut seen = BTreeSet::new();
        let mut receivers = Vec::with_capacity(configs.len());
        for config in configs {
            if !seen.insert(config.name.as_str()) {
                return Err(AlertError::InvalidReceiver {
                    receiver: config.name.clone(),
                    reason: "the name is used by more than one receiver",
                });
            }
            let secret = secrets.get(&config.name).map(Vec::as_slice);
            receivers.push(Receiver::from_config(config, secret)?);
        }
        Ok(Self(receivers.into()))
    }

    /// The receivers, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Receiver> {
        self.0.iter()
    }

    /// The receiver called `name`.
    pub fn get(&self, name: &str) -> Option<&Receiver> {
        self.0.iter().find(|r| r.name == name)
    }

    /// No receivers configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: AlertType, url: &str) -> AlertConfig {
        AlertConfig {
            name: "ops".into(),
            kind,
            url: url.into(),
            secret_env: Some("PHOENIX_ALERT_SECRET".into()),
            events: vec![AlertEvent::DriftDetected],
            renotify: Duration::from_secs(3600),
            expire_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn signature_matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2.
        let secret = Secret::new(b"Jefe".to_vec());
        assert_eq!(
            signature(&secret, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn debug_output_hides_secret_and_url_path() {
        let receiver = Receiver::from_config(
            &config(
                AlertType::Webhook,
                "https://hooks.example.com/T0/B0/credential",
            ),
            Some(b"hunter2"),
        )
        .expect("valid receiver");
        let debug = format!("{receiver:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("credential"), "{debug}");
        assert!(debug.contains("hooks.example.com"), "{debug}");
    }

    #[test]
    fn webhook_without_secret_is_refused() {
        let err = Receiver::from_config(&config(AlertType::Webhook, "http://127.0.0.1:1/"), None)
            .expect_err("no secret");
        assert!(
            matches!(err, AlertError::MissingSecret { ref receiver, .. } if receiver == "ops"),
            "{err:?}"
        );
    }

    #[test]
    fn alertmanager_endpoint_gets_the_v2_path_once() {
        for url in [
            "http://127.0.0.1:9093",
            "http://127.0.0.1:9093/",
            "http://127.0.0.1:9093/api/v2/alerts",
        ] {
            let receiver = Receiver::from_config(&config(AlertType::Alertmanager, url), None)
                .expect("valid receiver");
            assert_eq!(
                receiver.endpoint().as_str(),
                "http://127.0.0.1:9093/api/v2/alerts",
                "{url}"
            );
        }
    }

    #[test]
    fn event_filter_is_respected() {
        let receiver =
            Receiver::from_config(&config(AlertType::Slack, "https://hooks.slack.com/x"), None)
                .expect("valid receiver");
        assert!(receiver.wants(AlertEvent::DriftDetected));
        assert!(!receiver.wants(AlertEvent::DriftResolved));
    }
}
