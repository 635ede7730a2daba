//! The bodies of the webhook fuzz targets (issue 17), one per forge: what the
//! `POST /api/v1/webhooks/git` handler does with a delivery (verify the signature over
//! the raw body, read the event, parse the push) on arbitrary bytes. Run by `fuzz/`
//! under libFuzzer and by `tests/it/fuzz_bodies.rs` on stable.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::auth::{Secret, parse_push, verify_webhook};
use crate::command::Forge;

const SECRET: &str = "fuzz-secret";

/// Target `webhook_<forge>`. The first byte chooses whether the delivery is signed
/// correctly; up to the first newline after it is the event header, the rest the body.
/// Invariants: no panic; a correctly signed delivery verifies as `forge`, a wrongly
/// signed one never does; a verified push either parses or is a 400, and a parsed
/// `after` is never empty or all zeros (a deletion).
pub fn webhook(forge: Forge, data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (event, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => match forge {
            Forge::Gitlab => (&b"Push Hook"[..], rest),
            Forge::Github | Forge::Gitea => (&b"push"[..], rest),
        },
    };
    let secret = Secret::new(SECRET).expect("a non-empty secret");
    let signed = mode % 2 == 0;
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &[u8]| {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    let signature = if signed {
        secret.sign_hex(body)
    } else {
        "00".repeat(32)
    };
    match forge {
        Forge::Github => {
            put(
                "x-hub-signature-256",
                format!("sha256={signature}").as_bytes(),
            );
            put("x-github-event", event);
            put("x-github-delivery", b"fuzz");
        }
        Forge::Gitea => {
            put("x-gitea-signature", signature.as_bytes());
            put("x-gitea-event", event);
        }
        Forge::Gitlab => {
            put(
                "x-gitlab-token",
                if signed { SECRET.as_bytes() } else { b"wrong" },
            );
            put("x-gitlab-event", event);
        }
    }
    let delivery = match verify_webhook(&headers, body, &secret) {
        Ok(delivery) => {
            assert!(
                signed || secret.sign_hex(body) == signature,
                "a bad signature verified"
            );
            assert_eq!(delivery.forge, forge);
            delivery
        }
        Err((found, _)) => {
            assert!(!signed, "a correctly signed delivery was refused");
            assert_eq!(found, Some(forge));
            return;
        }
    };
    if !delivery.is_push() {
        return;
    }
    if let Ok(push) = parse_push(body)
        && let Some(after) = &push.after
    {
        assert!(!after.is_empty() && !after.bytes().all(|b| b == b'0'));
    }
}
