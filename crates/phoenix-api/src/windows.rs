//! `POST /api/v1/windows/override` (design section 14): an operator lifts every change
//! window until a given time, with a reason. Token required, as for every mutating
//! endpoint.
//!
//! The handler checks the bearer token, then the body field by field (each error names
//! its field, answered 400 before the loop hears of it): `until` an RFC 3339 time in the
//! future and at most [`MAX_OVERRIDE`] ahead, `reason` a non-blank text, and optionally
//! `by`, who asks (default `api`). It sends [`ApiCommand::WindowOverride`] to the loop,
//! which records the override in the store, fires the `window_override` alert once and
//! runs a pass with every window lifted; the answer is 202 with the recorded override.

use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;
use utoipa::ToSchema;

use crate::auth::check_bearer;
use crate::command::ApiCommand;
use crate::error::{ApiError, ErrorBody};
use crate::snapshot::rfc3339;
use crate::state::ApiState;

/// The longest override accepted: a week ahead of the request.
pub const MAX_OVERRIDE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest `reason` accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// The longest `by` accepted, in characters.
pub const MAX_BY_CHARS: usize = 100;
/// Who an override is recorded as when the request does not say.
pub const DEFAULT_BY: &str = "api";

/// A validated override request, as the loop receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowOverride {
    /// Every window is lifted before this instant (in the future when validated).
    pub until: SystemTime,
    /// Why (trimmed, not blank).
    pub reason: String,
    /// Who asks.
    pub by: String,
}

/// The request body (documentation schema; the handler reads it field by field).
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowOverrideBody {
    /// RFC 3339 time with `Z` or an offset, in the future and at most 7 days ahead.
    #[schema(format = DateTime, example = "2026-12-05T18:00:00Z")]
    pub until: String,
    /// Why, not blank, at most 1000 characters.
    pub reason: String,
    /// Who asks, at most 100 characters; default `api`.
    pub by: Option<String>,
}

/// The loop's answer: the override as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WindowOverrideAnswer {
    /// The record's id (increasing; the alert's delivery id names it).
    pub id: i64,
    /// Every window is lifted before this instant.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub until: SystemTime,
    /// Why.
    pub reason: String,
    /// Who asked.
    pub by: String,
    /// When it was recorded.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: SystemTime,
}

/// Why the loop could not apply an override.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowOverrideError {
    /// The store could not record it (500); nothing was lifted.
    #[error("cannot record the window override: {reason}")]
    Store {
        /// The store error, with its whole chain.
        reason: String,
    },
}

/// What the loop sends back for [`ApiCommand::WindowOverride`].
pub type WindowOverrideReply = Result<WindowOverrideAnswer, WindowOverrideError>;

fn invalid(field: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// An optional string field of `body`: `Err` when present and not a string.
fn text_field<'a>(
    body: &'a serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

/// Read and check an override body at `now`; every error names its field.
pub fn parse_override(body: &[u8], now: SystemTime) -> Result<WindowOverride, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        reason: format!("not JSON: {e}"),
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::BadRequest {
            reason: "expected a JSON object with `until` and `reason`".into(),
        });
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "until" | "reason" | "by"))
    {
        let shown: String = unknown.chars().take(64).collect();
        return Err(ApiError::BadRequest {
            reason: format!("unknown field `{shown}` (expected `until`, `reason`, `by`)"),
        });
    }
    let until = text_field(&map, "until")?.ok_or_else(|| invalid("until", "is required"))?;
    let until =
        phoenix_core::time::parse_rfc3339(until).map_err(|e| invalid("until", e.to_string()))?;
    if until <= now {
        return Err(invalid(
            "until",
            format!(
                "must be in the future (it is {} now)",
                phoenix_core::time::rfc3339(now)
            ),
        ));
    }
    if until > now + MAX_OVERRIDE {
        return Err(invalid(
            "until",
            format!(
                "must be at most 7 days ahead (until {})",
                phoenix_core::time::rfc3339(now + MAX_OVERRIDE)
            ),
        ));
    }
    let reason = text_field(&map, "reason")?
        .map(str::trim)
        .ok_or_else(|| invalid("reason", "is required"))?;
    if reason.is_empty() {
        return Err(invalid("reason", "must not be empty"));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(invalid(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    let by = text_field(&map, "by")?.map(str::trim).unwrap_or(DEFAULT_BY);
    if by.is_empty() || by.chars().count() > MAX_BY_CHARS || by.chars().any(char::is_control) {
        return Err(invalid(
            "by",
            format!("must be 1 to {MAX_BY_CHARS} printable characters"),
        ));
    }
    Ok(WindowOverride {
        until,
        reason: reason.to_owned(),
        by: by.to_owned(),
    })
}

/// Lift every change window until `until` (bearer token); 202 with the recorded override.
#[utoipa::path(post, path = "/api/v1/windows/override", tag = "windows",
    request_body = WindowOverrideBody,
    security(("bearer" = [])),
    responses((status = 202, body = WindowOverrideAnswer), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 500, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn override_windows(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_bearer(&headers, state.inner.config.token.as_ref())?;
    let body = body.map_err(|e| crate::routes::body_error(&state, e))?;
    let request = parse_override(&body, SystemTime::now())?;
    let (reply, answer) = oneshot::channel();
    crate::routes::send(&state, ApiCommand::WindowOverride { request, reply })?;
    let answer = tokio::time::timeout(state.inner.config.command_timeout, answer)
        .await
        .map_err(|_| ApiError::LoopUnavailable)?
        .map_err(|_| ApiError::LoopUnavailable)??;
    Ok((StatusCode::ACCEPTED, axum::Json(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        phoenix_core::time::parse_rfc3339("2026-12-04T21:00:00Z").expect("a time")
    }

    fn field_error(body: &str) -> (String, String) {
        match parse_override(body.as_bytes(), now()) {
            Err(ApiError::InvalidField { field, reason }) => (field.to_owned(), reason),
            other => panic!("{body}: expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_body_is_read_with_offsets_trimmed_reason_and_default_requester() {
        let ok = parse_override(
            br#"{"until": "2026-12-04T23:30:00+01:00", "reason": "  hotfix CVE-2026-1  "}"#,
            now(),
        )
        .expect("valid");
        assert_eq!(
            phoenix_core::time::rfc3339(ok.until),
            "2026-12-04T22:30:00Z"
        );
        assert_eq!(ok.reason, "hotfix CVE-2026-1");
        assert_eq!(ok.by, "api");
        let by = parse_override(
            br#"{"until": "2026-12-05T00:00:00Z", "reason": "r", "by": "alice"}"#,
            now(),
        )
        .expect("valid");
        assert_eq!(by.by, "alice");
    }

    #[test]
    fn every_invalid_field_is_named() {
        let cases = [
            (r#"{"reason": "r"}"#, "until", "is required"),
            (
                r#"{"until": 5, "reason": "r"}"#,
                "until",
                "must be a string",
            ),
            (
                r#"{"until": "tomorrow", "reason": "r"}"#,
                "until",
                "RFC 3339",
            ),
            (
                r#"{"until": "2026-12-04T20:00:00Z", "reason": "r"}"#,
                "until",
                "in the future",
            ),
            (
                r#"{"until": "2026-12-04T21:00:00Z", "reason": "r"}"#,
                "until",
                "in the future",
            ),
            (
                r#"{"until": "2026-12-12T21:00:00Z", "reason": "r"}"#,
                "until",
                "7 days",
            ),
            (
                r#"{"until": "2026-12-05T00:00:00Z"}"#,
                "reason",
                "is required",
            ),
            (
                r#"{"until": "2026-12-05T00:00:00Z", "reason": " \n "}"#,
                "reason",
                "empty",
            ),
            (
                r#"{"until": "2026-12-05T00:00:00Z", "reason": ["r"]}"#,
                "reason",
                "string",
            ),
            (
                r#"{"until": "2026-12-05T00:00:00Z", "reason": "r", "by": ""}"#,
                "by",
                "printable",
            ),
            (
                r#"{"until": "2026-12-05T00:00:00Z", "reason": "r", "by": "a\u0007"}"#,
                "by",
                "printable",
            ),
        ];
        for (body, field, words) in cases {
            let (got_field, reason) = field_error(body);
            assert_eq!(got_field, field, "{body}");
            assert!(reason.contains(words), "{body}: {reason}");
        }
        let long = format!(
            r#"{{"until": "2026-12-05T00:00:00Z", "reason": "{}"}}"#,
            "x".repeat(MAX_REASON_CHARS + 1)
        );
        assert_eq!(field_error(&long).0, "reason");
    }

    #[test]
    fn a_body_that_is_not_an_object_or_has_unknown_fields_is_refused() {
        for body in [
            "",
            "[]",
            "not json",
            r#"{"until": "2026-12-05T00:00:00Z", "reason": "r", "groups": ["web"]}"#,
        ] {
            let err = parse_override(body.as_bytes(), now()).expect_err(body);
            assert!(
                matches!(err, ApiError::BadRequest { .. }),
                "{body}: {err:?}"
            );
        }
    }
}
