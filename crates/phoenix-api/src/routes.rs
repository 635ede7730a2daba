//! The axum router: every endpoint of design section 9, the JSON 404/405 fallbacks, the
//! body limit, the OpenAPI document, and `serve` with graceful shutdown.

use std::future::Future;
use std::sync::OnceLock;
use std::time::SystemTime;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;
use utoipa::{OpenApi, ToSchema};

use crate::auth::{check_bearer, parse_push, verify_webhook};
use crate::command::{ApiCommand, PlanReply};
use crate::error::{ApiError, ErrorBody};
use crate::metrics::WebhookOutcome;
use crate::snapshot::{GroupDetail, GroupSummary, Plan, PlanState, Status};
use crate::state::ApiState;

const JSON: &str = "application/json";

fn json_bytes(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
        body.into(),
    )
        .into_response()
}

/// `{"status": "..."}` bodies of health and accepted answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// `accepted`, `duplicate`, `ignored`, `ok`, `ready`, `not_ready`.
    pub status: String,
}

fn accepted(status: StatusCode, word: &str) -> Response {
    (
        status,
        axum::Json(Accepted {
            status: word.to_owned(),
        }),
    )
        .into_response()
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, body = Accepted)))]
pub async fn healthz() -> Response {
    accepted(StatusCode::OK, "ok")
}

/// Readiness: 200 after the first complete reconcile pass, 503 before.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Accepted), (status = 503, body = Accepted)))]
pub async fn readyz(State(state): State<ApiState>) -> Response {
    if state.snapshot().ready() {
        accepted(StatusCode::OK, "ready")
    } else {
        accepted(StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    }
}

/// Revision, group counts, inventory per provider, plans and alerts.
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, body = Status)))]
pub async fn status(State(state): State<ApiState>) -> Response {
    let snapshot = state.snapshot();
    json_bytes(StatusCode::OK, snapshot.status_body(SystemTime::now()))
}

/// `GET /api/v1/groups` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    /// Groups sorted by name, without history.
    pub groups: Vec<GroupSummary>,
}

/// All groups (without history).
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups",
    responses((status = 200, body = GroupList)))]
pub async fn groups(State(state): State<ApiState>) -> Response {
    json_bytes(StatusCode::OK, state.snapshot().groups_body())
}

/// One group with history.
#[utoipa::path(get, path = "/api/v1/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "group name")),
    responses((status = 200, body = GroupDetail), (status = 404, body = ErrorBody)))]
pub async fn group(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let snapshot = state.snapshot();
    let group = snapshot
        .group_detail(&name)
        .ok_or(ApiError::GroupNotFound { name })?;
    Ok(axum::Json(group).into_response())
}

/// A drift finding with its group (documentation schema).
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftItem {
    /// The group.
    pub group: String,
    /// The finding.
    #[serde(flatten)]
    pub finding: crate::snapshot::DriftFinding,
}

/// `GET /api/v1/drift` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftList {
    /// Every open finding, groups in name order.
    pub drift: Vec<DriftItem>,
}

/// All open drift findings.
#[utoipa::path(get, path = "/api/v1/drift", tag = "drift",
    responses((status = 200, body = DriftList)))]
pub async fn drift(State(state): State<ApiState>) -> Response {
    json_bytes(StatusCode::OK, state.snapshot().drift_body())
}

/// `GET /api/v1/plans` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanList {
    /// Plans with their steps.
    pub plans: Vec<Plan>,
}

/// Plans and their steps.
#[utoipa::path(get, path = "/api/v1/plans", tag = "plans",
    responses((status = 200, body = PlanList)))]
pub async fn plans(State(state): State<ApiState>) -> Response {
    json_bytes(StatusCode::OK, state.snapshot().plans_body())
}

/// One plan.
#[utoipa::path(get, path = "/api/v1/plans/{id}", tag = "plans",
    params(("id" = String, Path, description = "plan id")),
    responses((status = 200, body = Plan), (status = 404, body = ErrorBody)))]
pub async fn plan(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snapshot = state.snapshot();
    let plan = snapshot
        .plan(&id)
        .ok_or(crate::command::PlanCommandError::NotFound { plan_id: id })?;
    Ok(axum::Json(plan).into_response())
}

/// Answer of approve and cancel.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanCommandAnswer {
    /// Plan id.
    pub plan_id: String,
    /// The plan's state after the command.
    pub state: PlanState,
}

async fn plan_command(
    state: &ApiState,
    headers: &HeaderMap,
    plan_id: String,
    make: impl FnOnce(String, oneshot::Sender<PlanReply>) -> ApiCommand,
) -> Result<Response, ApiError> {
    check_bearer(headers, state.inner.config.token.as_ref())?;
    let (reply, answer) = oneshot::channel();
    send(state, make(plan_id.clone(), reply))?;
    let new_state = tokio::time::timeout(state.inner.config.command_timeout, answer)
        .await
        .map_err(|_| ApiError::LoopUnavailable)?
        .map_err(|_| ApiError::LoopUnavailable)??;
    Ok(axum::Json(PlanCommandAnswer {
        plan_id,
        state: new_state,
    })
    .into_response())
}

pub(crate) fn send(state: &ApiState, command: ApiCommand) -> Result<(), ApiError> {
    state.inner.commands.try_send(command).map_err(|e| match e {
        TrySendError::Full(_) => ApiError::Busy,
        TrySendError::Closed(_) => ApiError::LoopUnavailable,
    })
}

/// Approve a plan awaiting approval (bearer token).
#[utoipa::path(post, path = "/api/v1/plans/{id}/approve", tag = "plans",
    params(("id" = String, Path, description = "plan id")),
    security(("bearer" = [])),
    responses((status = 200, body = PlanCommandAnswer), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn approve(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    plan_command(&state, &headers, id, |plan_id, reply| ApiCommand::Approve {
        plan_id,
        reply,
    })
    .await
}

/// Cancel a plan (bearer token).
#[utoipa::path(post, path = "/api/v1/plans/{id}/cancel", tag = "plans",
    params(("id" = String, Path, description = "plan id")),
    security(("bearer" = [])),
    responses((status = 200, body = PlanCommandAnswer), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    plan_command(&state, &headers, id, |plan_id, reply| ApiCommand::Cancel {
        plan_id,
        reply,
    })
    .await
}

/// Trigger a reconcile pass now (bearer token); 202 before any work.
#[utoipa::path(post, path = "/api/v1/reconcile", tag = "reconcile",
    security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn reconcile(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_bearer(&headers, state.inner.config.token.as_ref())?;
    send(&state, ApiCommand::Reconcile)?;
    Ok(accepted(StatusCode::ACCEPTED, "accepted"))
}

/// Push webhook from GitHub, Gitea or GitLab; signature verified; 202 before any work.
#[utoipa::path(post, path = "/api/v1/webhooks/git", tag = "webhooks",
    request_body(content = String, description = "the forge's push payload (JSON), signed", content_type = "application/json"),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn webhook(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| body_error(&state, e))?;
    let inner = &state.inner;
    let secret = inner
        .config
        .webhook_secret
        .as_ref()
        .ok_or(ApiError::WebhookSecretNotConfigured)?;
    let delivery = match verify_webhook(&headers, &body, secret) {
        Ok(d) => d,
        Err((forge, err)) => {
            if let Some(forge) = forge {
                inner.metrics.webhook(forge, WebhookOutcome::Rejected);
            }
            tracing::warn!(forge = ?forge, "webhook rejected: bad or missing signature");
            return Err(err);
        }
    };
    let forge = delivery.forge;
    if !delivery.is_push() {
        inner.metrics.webhook(forge, WebhookOutcome::Ignored);
        return Ok(accepted(StatusCode::ACCEPTED, "ignored"));
    }
    let push = parse_push(&body)?;
    if let Some(id) = &delivery.delivery_id {
        let fresh = inner
            .deliveries
            .lock()
            .map(|mut ring| ring.insert(id))
            .unwrap_or(true);
        if !fresh {
            inner.metrics.webhook(forge, WebhookOutcome::Duplicate);
            tracing::debug!(forge = forge.as_str(), delivery_id = %id, "duplicate webhook delivery");
            return Ok(accepted(StatusCode::ACCEPTED, "duplicate"));
        }
    }
    let command = ApiCommand::Webhook {
        forge,
        after: push.after,
        reference: push.reference,
        delivery_id: delivery.delivery_id.clone(),
    };
    if let Err(err) = send(&state, command) {
        // Forget the id so the forge's redelivery is not mistaken for a duplicate.
        if let (Some(id), Ok(mut ring)) = (&delivery.delivery_id, inner.deliveries.lock()) {
            ring.remove(id);
        }
        return Err(err);
    }
    inner.metrics.webhook(forge, WebhookOutcome::Accepted);
    tracing::info!(forge = forge.as_str(), delivery_id = ?delivery.delivery_id, "webhook accepted");
    Ok(accepted(StatusCode::ACCEPTED, "accepted"))
}

pub(crate) fn body_error(state: &ApiState, e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge {
            limit: state.inner.config.max_body_bytes,
        }
    } else {
        ApiError::BadRequest {
            reason: e.body_text(),
        }
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let snapshot = state.snapshot();
    let text = state.inner.metrics.render(&snapshot, SystemTime::now());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// The built-in dashboard page.
#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "self-contained HTML page", content_type = "text/html", body = String)))]
pub async fn dashboard() -> Html<&'static str> {
    Html(crate::dashboard::PAGE)
}

/// The OpenAPI document (generated from the handler annotations).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Response {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    let doc = DOC.get_or_init(|| {
        Bytes::from(
            ApiDoc::openapi()
                .to_json()
                .expect("the OpenAPI document always serialises"),
        )
    });
    json_bytes(StatusCode::OK, doc.clone())
}

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the whole API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Phoenix API", description = "Phoenix GitOps reconciliation daemon: status, plans, webhooks, events, metrics."),
    paths(healthz, readyz, status, groups, group, drift, plans, plan, approve, cancel,
          reconcile, crate::operator::retry, crate::windows::override_windows, webhook, crate::sse::events, openapi_json, metrics, dashboard),
    components(schemas(crate::ApiEvent, ErrorBody, Status, GroupList, crate::Group, GroupDetail, DriftList, PlanList, PlanCommandAnswer, Accepted, crate::operator::RetryAnswer, crate::windows::WindowOverrideBody, crate::windows::WindowOverrideAnswer)),
    modifiers(&BearerScheme)
)]
#[derive(Debug)]
pub struct ApiDoc;

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Rejects a declared `Content-Length` over the limit with a JSON 413 on every route
/// (streamed bodies are caught by `DefaultBodyLimit` where a handler reads the body).
async fn limit_declared_length(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::PayloadTooLarge { limit }.into_response();
    }
    next.run(request).await
}

/// Builds the router with every endpoint of design section 9.
pub fn build_router(state: ApiState) -> Router {
    let limit = state.inner.config.max_body_bytes;
    let timeout = state.inner.config.request_timeout;
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/groups", get(groups))
        .route("/api/v1/groups/{name}", get(group))
        .route("/api/v1/groups/{name}/retry", post(crate::operator::retry))
        .route(
            "/api/v1/windows/override",
            post(crate::windows::override_windows),
        )
        .route("/api/v1/drift", get(drift))
        .route("/api/v1/plans", get(plans))
        .route("/api/v1/plans/{id}", get(plan))
        .route("/api/v1/plans/{id}/approve", post(approve))
        .route("/api/v1/plans/{id}/cancel", post(cancel))
        .route("/api/v1/reconcile", post(reconcile))
        .route("/api/v1/webhooks/git", post(webhook))
        .route("/api/v1/events", get(crate::sse::events))
        .route("/api/v1/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(limit, limit_declared_length))
        .layer(middleware::from_fn_with_state(
            timeout,
            crate::server::request_timeout,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` with the default [`crate::ServerLimits`] until
/// `shutdown` completes, then drains open requests. See [`crate::serve_with_limits`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::server::serve(listener, router, crate::ServerLimits::default(), shutdown).await
}
