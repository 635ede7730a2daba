//! Secrets, bearer-token checks and push-webhook verification, all in constant time.
//!
//! [`Secret`] never prints its value (`Debug` is redacted), so a token cannot leak into
//! logs through a derived `Debug`. Webhook verification: GitHub `X-Hub-Signature-256:
//! sha256=<hex>` and Gitea `X-Gitea-Signature: <hex>` (HMAC-SHA256 of the raw body with
//! the secret), GitLab `X-Gitlab-Token` (equal to the secret).

use std::collections::{HashSet, VecDeque};
use std::fmt;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::command::Forge;
use crate::error::ApiError;

/// A token or secret read from the environment. Its `Debug` output is redacted.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps a secret value; an empty value counts as not configured (`None`).
    pub fn new(value: impl Into<Vec<u8>>) -> Option<Secret> {
        let bytes = value.into();
        (!bytes.is_empty()).then_some(Secret(bytes))
    }

    /// Constant-time comparison with `candidate`, whose length leaks nothing either
    /// (issue 17): both sides are hashed to 32 bytes and the digests compared.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let ours = Sha256::digest(&self.0);
        let theirs = Sha256::digest(candidate);
        bool::from(ours.as_slice().ct_eq(theirs.as_slice()))
    }

    fn hmac_sha256(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        mac
    }

    /// `hex(HMAC-SHA256(secret, body))`, as forges compute it (for tests and tooling).
    pub fn sign_hex(&self, body: &[u8]) -> String {
        hex::encode(self.hmac_sha256(body).finalize().into_bytes())
    }

    /// Verifies a hex HMAC-SHA256 of `body` in constant time.
    fn verify_hex(&self, body: &[u8], signature_hex: &str) -> bool {
        let Ok(signature) = hex::decode(signature_hex.trim()) else {
            return false;
        };
        self.hmac_sha256(body).verify_slice(&signature).is_ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Checks `Authorization: Bearer <token>` against the configured token.
pub fn check_bearer(headers: &HeaderMap, token: Option<&Secret>) -> Result<(), ApiError> {
    let token = token.ok_or(ApiError::TokenNotConfigured)?;
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or(ApiError::Unauthorized)?;
    if token.matches(presented.trim().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// A verified webhook delivery's envelope (from headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The forge.
    pub forge: Forge,
    /// Delivery id header, if sent.
    pub delivery_id: Option<String>,
    /// Event header (`push`, `ping`, `Push Hook`...), if sent.
    pub event: Option<String>,
}

impl Delivery {
    /// Whether the event header names a push (`push` for GitHub and Gitea, `Push Hook` or
    /// `Tag Push Hook` for GitLab). Without an event header the delivery counts as a push.
    /// Anything else (`ping`, `issues`, `Merge Request Hook`...) triggers nothing.
    pub fn is_push(&self) -> bool {
        let Some(event) = self.event.as_deref() else {
            return true;
        };
        match self.forge {
            Forge::Github | Forge::Gitea => event.eq_ignore_ascii_case("push"),
            Forge::Gitlab => {
                event.eq_ignore_ascii_case("Push Hook")
                    || event.eq_ignore_ascii_case("Tag Push Hook")
            }
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Identifies the forge from the signature header and verifies it over the raw body.
/// Gitea also sends `X-Hub-Signature-256`; its own header wins.
pub fn verify_webhook(
    headers: &HeaderMap,
    body: &[u8],
    secret: &Secret,
) -> Result<Delivery, (Option<Forge>, ApiError)> {
    let (forge, ok) = if let Some(sig) = header_str(headers, "x-gitea-signature") {
        (Forge::Gitea, secret.verify_hex(body, sig))
    } else if let Some(sig) = header_str(headers, "x-hub-signature-256") {
        let ok = sig
            .strip_prefix("sha256=")
            .is_some_and(|hex_sig| secret.verify_hex(body, hex_sig));
        (Forge::Github, ok)
    } else if let Some(token) = header_str(headers, "x-gitlab-token") {
        (Forge::Gitlab, secret.matches(token.as_bytes()))
    } else {
        return Err((None, ApiError::BadSignature));
    };
    if !ok {
        return Err((Some(forge), ApiError::BadSignature));
    }
    let (id_header, event_header) = match forge {
        Forge::Github => ("x-github-delivery", "x-github-event"),
        Forge::Gitea => ("x-gitea-delivery", "x-gitea-event"),
        Forge::Gitlab => ("x-gitlab-event-uuid", "x-gitlab-event"),
    };
    Ok(Delivery {
        forge,
        delivery_id: header_str(headers, id_header).map(str::to_owned),
        event: header_str(headers, event_header).map(str::to_owned),
    })
}

/// The fields of a push payload Phoenix uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Push {
    /// `ref`, e.g. `refs/heads/main`.
    pub reference: Option<String>,
    /// `after` (GitLab: `after`, else `checkout_sha`); `None` for a deletion.
    pub after: Option<String>,
}

/// Parses a push payload. Missing fields are `None`; a body that is not JSON is an error.
pub fn parse_push(body: &[u8]) -> Result<Push, ApiError> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(rename = "ref")]
        reference: Option<String>,
        after: Option<String>,
        checkout_sha: Option<String>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        reason: format!("push payload is not JSON: {e}"),
    })?;
    let deleted = |s: &String| s.bytes().all(|b| b == b'0');
    let after = raw
        .after
        .filter(|s| !s.is_empty() && !deleted(s))
        .or(raw.checkout_sha.filter(|s| !s.is_empty() && !deleted(s)));
    Ok(Push {
        reference: raw.reference,
        after,
    })
}

/// A bounded set of recently seen delivery ids (oldest forgotten first).
#[derive(Debug)]
pub struct RecentDeliveries {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl RecentDeliveries {
    /// Remembers at most `capacity` ids.
    pub fn new(capacity: usize) -> RecentDeliveries {
        RecentDeliveries {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    /// Records `id`; false if it was already there.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(id.to_owned());
        self.seen.insert(id.to_owned());
        true
    }

    /// Forgets `id` (used when forwarding failed, so a redelivery is accepted).
    pub fn remove(&mut self, id: &str) {
        if self.seen.remove(id) {
            self.order.retain(|x| x != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_forgets_oldest() {
        let mut r = RecentDeliveries::new(2);
        assert!(r.insert("a"));
        assert!(!r.insert("a"));
        assert!(r.insert("b"));
        assert!(r.insert("c"));
        assert!(r.insert("a"), "a was evicted by c");
        assert!(!r.insert("c"));
    }

    #[test]
    fn push_parsing_handles_deletion_and_gitlab() {
        let p = parse_push(
            br#"{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000000"}"#,
        )
        .expect("json");
        assert_eq!(p.after, None);
        let p = parse_push(br#"{"ref":"refs/heads/main","after":"","checkout_sha":"abc"}"#)
            .expect("json");
        assert_eq!(p.after.as_deref(), Some("abc"));
        assert!(parse_push(b"not json").is_err());
    }

    /// Issue 17, defect 9: a token of another length is refused like any wrong token
    /// (the comparison is between fixed-length digests, so it takes the same time).
    #[test]
    fn token_comparison_is_by_fixed_length_digest() {
        let secret = Secret::new("s3cret-token").expect("non-empty");
        assert!(secret.matches(b"s3cret-token"));
        for wrong in [
            &b""[..],
            b"s",
            b"s3cret-toke",
            b"s3cret-token!",
            &[b'x'; 4096],
        ] {
            assert!(!secret.matches(wrong));
        }
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2").expect("non-empty");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(Secret::new("").is_none());
    }
}
