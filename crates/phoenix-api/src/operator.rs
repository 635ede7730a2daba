//! Operator commands of design section 15 that act on a group rather than a plan:
//! `POST /api/v1/groups/{name}/retry` lifts the failed-generation block of the group's
//! current hash (the loop clears the failure record and runs a pass), answered 202.
//!
//! The handler checks the bearer token, sends [`ApiCommand::Retry`] to the loop and waits
//! (bounded by the command timeout) for its [`RetryReply`].

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::oneshot;
use utoipa::ToSchema;

use crate::auth::check_bearer;
use crate::command::ApiCommand;
use crate::error::{ApiError, ErrorBody};
use crate::state::ApiState;

/// The loop's answer to a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RetryAnswer {
    /// The group.
    pub group: String,
    /// The group's current desired hash, whose block was lifted.
    pub spec_hash: String,
    /// Whether that hash had a failure record (false: it was not blocked; nothing changed
    /// but a pass was still started).
    pub cleared: bool,
}

/// Why the loop refused a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    /// The group is not in the revision in force (404).
    #[error("no group named `{group}` in the revision in force")]
    GroupNotFound {
        /// The name asked for.
        group: String,
    },
    /// The state store could not be updated (500); nothing was lifted.
    #[error("cannot lift the failed-generation block of `{group}`: {reason}")]
    Store {
        /// The group.
        group: String,
        /// The store error, with its whole chain.
        reason: String,
    },
}

/// What the loop sends back for [`ApiCommand::Retry`].
pub type RetryReply = Result<RetryAnswer, RetryError>;

/// Lift the failed-generation block of a group's current hash (bearer token); 202.
#[utoipa::path(post, path = "/api/v1/groups/{name}/retry", tag = "groups",
    params(("name" = String, Path, description = "group name")),
    security(("bearer" = [])),
    responses((status = 202, body = RetryAnswer), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 500, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn retry(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_bearer(&headers, state.inner.config.token.as_ref())?;
    let (reply, answer) = oneshot::channel();
    crate::routes::send(&state, ApiCommand::Retry { group: name, reply })?;
    let answer = tokio::time::timeout(state.inner.config.command_timeout, answer)
        .await
        .map_err(|_| ApiError::LoopUnavailable)?
        .map_err(|_| ApiError::LoopUnavailable)??;
    Ok((StatusCode::ACCEPTED, axum::Json(answer)).into_response())
}
