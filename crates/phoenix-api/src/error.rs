//! `ApiError`: every failure a handler can answer, and the one `IntoResponse` impl that
//! renders it as `{"error": {"code": ..., "message": ...}}` with a fitting status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::command::PlanCommandError;
use crate::operator::RetryError;
use crate::windows::WindowOverrideError;

/// An error answer. Messages never contain tokens or secrets.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route matches the path.
    #[error("no route for {method} {path}")]
    RouteNotFound {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Unknown group name.
    #[error("no group named `{name}`")]
    GroupNotFound {
        /// The name asked for.
        name: String,
    },
    /// Unknown plan id, or the plan refused the command.
    #[error(transparent)]
    Plan(#[from] PlanCommandError),
    /// A retry the loop refused.
    #[error(transparent)]
    Retry(#[from] RetryError),
    /// A window override the loop could not apply.
    #[error(transparent)]
    WindowOverride(#[from] WindowOverrideError),
    /// A field of the request body is missing or wrong.
    #[error("bad request body: `{field}` {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// No API token configured: mutating endpoints are disabled.
    #[error("mutating endpoints are disabled: server.token_env is not set")]
    TokenNotConfigured,
    /// No webhook secret configured: webhooks are disabled.
    #[error("push webhooks are disabled: webhooks.git.secret_env is not set")]
    WebhookSecretNotConfigured,
    /// Missing or wrong webhook signature.
    #[error("missing or invalid webhook signature")]
    BadSignature,
    /// Request body over the limit.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The request body could not be read or parsed.
    #[error("bad request body: {reason}")]
    BadRequest {
        /// What is wrong.
        reason: String,
    },
    /// The loop's command queue is full.
    #[error("the daemon is busy; retry later")]
    Busy,
    /// The loop is gone (shutting down) or did not answer in time.
    #[error("the daemon loop is unavailable")]
    LoopUnavailable,
    /// Too many open connections or event streams (`server.max_connections`,
    /// `server.max_sse_subscribers`); `/healthz` keeps answering.
    #[error("too many {what}; retry later")]
    Overloaded {
        /// What is over its cap.
        what: &'static str,
    },
    /// The request took longer than `server.request_timeout`.
    #[error("the request took longer than {seconds} s")]
    Timeout {
        /// The limit, in seconds.
        seconds: u64,
    },
}

impl ApiError {
    /// HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::RouteNotFound { .. } | ApiError::GroupNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Plan(PlanCommandError::NotFound { .. }) => StatusCode::NOT_FOUND,
            ApiError::Plan(PlanCommandError::WrongState { .. }) => StatusCode::CONFLICT,
            ApiError::Retry(RetryError::GroupNotFound { .. }) => StatusCode::NOT_FOUND,
            ApiError::Retry(RetryError::Store { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::WindowOverride(WindowOverrideError::Store { .. }) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::Unauthorized | ApiError::BadSignature => StatusCode::UNAUTHORIZED,
            ApiError::TokenNotConfigured | ApiError::WebhookSecretNotConfigured => {
                StatusCode::FORBIDDEN
            }
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest { .. } | ApiError::InvalidField { .. } => StatusCode::BAD_REQUEST,
            ApiError::Busy
            | ApiError::LoopUnavailable
            | ApiError::Overloaded { .. }
            | ApiError::Timeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::RouteNotFound { .. } => "route_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::GroupNotFound { .. } => "group_not_found",
            ApiError::Plan(PlanCommandError::NotFound { .. }) => "plan_not_found",
            ApiError::Plan(PlanCommandError::WrongState { .. }) => "plan_wrong_state",
            ApiError::Retry(RetryError::GroupNotFound { .. }) => "group_not_found",
            ApiError::Retry(RetryError::Store { .. }) => "retry_failed",
            ApiError::WindowOverride(WindowOverrideError::Store { .. }) => "override_failed",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::Unauthorized => "unauthorized",
            ApiError::TokenNotConfigured => "token_not_configured",
            ApiError::WebhookSecretNotConfigured => "webhook_secret_not_configured",
            ApiError::BadSignature => "bad_signature",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Busy => "busy",
            ApiError::LoopUnavailable => "loop_unavailable",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Timeout { .. } => "timeout",
        }
    }
}

/// The error envelope on the wire.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `plan_not_found`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
