//! What operators and their machines ask of a running gateway: `/health/live`,
//! `/health/ready` (for load balancers and Kubernetes probes: no session, cheap) and
//! `/metrics` (Prometheus's text format; behind `TOLLGATE_METRICS_TOKEN` when it is set).
//! These serve the long-running server; inside Lambda, metrics leave as EMF log lines.

use std::time::Instant;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::extract::{MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::ExposeSecret;
use serde::Serialize;

use super::extract::{Caller, bearer};
use crate::error::ApiError;
use crate::health::{self, Check};
use crate::identity::roles::Permission;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/health/live", get(live)).route("/health/ready", get(ready)).route("/metrics", get(metrics))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checks: Vec<Check>,
}

/// The process serves: 200 whenever it can answer at all.
async fn live() -> axum::Json<Health> {
    axum::Json(Health { status: "live", checks: vec![] })
}

/// 200 when every check passes, else 503 naming what failed.
async fn ready(State(state): State<AppState>) -> Response {
    let checks = health::ready(state.store.as_ref(), state.secrets.as_ref(), &state.heartbeat, state.clock.now().timestamp_millis()).await;
    let ok = checks.iter().all(|c| c.ok);
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(Health { status: if ok { "ready" } else { "unready" }, checks })).into_response()
}

/// The Prometheus exposition.
async fn metrics(State(state): State<AppState>, mut parts: Parts) -> Result<Response, ApiError> {
    may_read_metrics(&state, &mut parts).await?;
    let text = state.metrics.render().ok_or_else(|| ApiError::not_found("this process sends its metrics as EMF log lines, not on /metrics"))?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], text).into_response())
}

/// With `TOLLGATE_METRICS_TOKEN` set, `/metrics` takes that token, or the session of someone
/// who may read the settings (the dashboard's Operations page).
async fn may_read_metrics(state: &AppState, parts: &mut Parts) -> Result<(), ApiError> {
    let Some(token) = &state.config.metrics_token else { return Ok(()) };
    let unauthorized = || ApiError::unauthorized("GET /metrics takes the bearer token set in TOLLGATE_METRICS_TOKEN, or a session with settings:read");
    let given = bearer(parts).map_err(|_| unauthorized())?;
    // Compared as hashes, so the time taken says nothing about how much of the token matched.
    if crate::identity::sha256_hex(given) == crate::identity::sha256_hex(token.expose_secret()) {
        return Ok(());
    }
    let caller = Caller::from_request_parts(parts, state).await.map_err(|e| if e.status_code() == 401 { unauthorized() } else { e })?;
    caller.require(Permission::SettingsRead)
}

/// What the edge notes of a request on its way in, to count and log it on its way out.
pub struct Seen {
    /// A clone of the router's own (shared) string, not a copy.
    route: Option<MatchedPath>,
    method: axum::http::Method,
    trace_id: Option<String>,
    started: Instant,
}

/// Notes a request as it comes in (by its route template, so label values stay bounded).
pub fn seen(state: &AppState, request: &Request) -> Seen {
    Seen {
        route: request.extensions().get::<MatchedPath>().cloned(),
        method: request.method().clone(),
        // A caller's W3C trace context names the trace its request belongs to.
        trace_id: state.config.log_json.then(|| trace_id(request.headers())).flatten(),
        started: Instant::now(),
    }
}

/// Counts and times an answer, and with JSON logs writes its access line.
pub fn answered(state: &AppState, seen: Seen, request_id: &str, status: u16) {
    let (route, took) = (seen.route.as_ref().map_or("unmatched", MatchedPath::as_str), seen.started.elapsed());
    state.metrics.http(route, seen.method.as_str(), status, took);
    if state.config.log_json {
        let outcome = match status {
            200..=399 => "success",
            402 => "budget_exceeded",
            429 => "rate_limited",
            400..=499 => "refused",
            _ => "error",
        };
        tracing::info!(
            request_id,
            trace_id = seen.trace_id.as_deref().unwrap_or(""),
            route,
            method = seen.method.as_str(),
            status,
            latency_ms = took.as_secs_f64() * 1000.0,
            outcome,
            "request"
        );
    }
}

/// The trace id of a valid `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`).
fn trace_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()) && trace != "0".repeat(32)).then(|| trace.to_ascii_lowercase())
}
