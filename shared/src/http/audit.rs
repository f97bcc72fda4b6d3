//! The audit log over HTTP: every mutating admin request runs in an audit scope (`scope`), and
//! global admins read the log (`GET /api/audit`) or take it elsewhere (`GET /api/audit/export`,
//! JSON Lines or CSV, streamed).

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorEnvelope;
use super::extract::{ApiQuery, Caller, client_ip_of};
use super::usage_export::{csv_bytes, jsonl_bytes, neutralised};
use crate::audit::{self, Event, listing};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit)).routes(routes!(export_audit))
}

/// Requests that change nothing an admin manages: signing in with a password (sessions are
/// churn; revoking one is audited), and the proxy's data plane (metered in usage instead).
/// Single sign-on is audited, though it comes back as a GET: it creates accounts and changes
/// roles and memberships from the provider's groups.
fn audited(method: &Method, path: &str) -> bool {
    let changes = matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
        && !path.starts_with("/v1/")
        && !matches!(path, "/api/auth/login" | "/api/auth/refresh");
    changes || (*method == Method::GET && path == super::oidc::CALLBACK_PATH)
}

/// The route's parameters as `name=value`, from its template and its path.
fn target(template: &str, path: &str) -> String {
    template
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(t, p)| t.strip_prefix('{').and_then(|t| t.strip_suffix('}')).map(|name| format!("{name}={p}")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The audit scope of a mutating admin request (none for any other): what it writes is
/// written with its event.
pub fn scope_for(state: &AppState, request: &Request, request_id: &str) -> Option<audit::Scope> {
    let path = request.uri().path();
    if !audited(request.method(), path) {
        return None;
    }
    let template = request.extensions().get::<MatchedPath>().map_or(path, MatchedPath::as_str);
    let source = client_ip_of(request.headers(), request.extensions(), &state.config.trusted_proxies).map(|ip| ip.to_string());
    Some(audit::Scope::new(format!("{} {template}", request.method()), target(template, path), source, request_id.to_string()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// A user's or an API key's id.
    actor: Option<String>,
    /// Part of the target (`id=gpt-4o`) or of a changed item's kind (`MODEL`).
    target: Option<String>,
    /// Part of the action (`DELETE`, `/api/models`).
    action: Option<String>,
    /// Events at or after this time (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Events at or before this time (RFC 3339).
    to: Option<DateTime<Utc>>,
    /// At most this many events (default 100, at most 1000).
    limit: Option<usize>,
    /// From a previous page's `next_cursor`.
    cursor: Option<String>,
    /// Export only: `jsonl` (default) or `csv`.
    format: Option<String>,
}

impl AuditParams {
    fn filter(&self) -> listing::Filter {
        listing::Filter { actor: self.actor.clone(), target: self.target.clone(), action: self.action.clone(), from: self.from, to: self.to }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    data: Vec<Event>,
    /// Present when more events follow: pass it as `cursor`.
    next_cursor: Option<String>,
}

/// Audit events, newest first, filtered by actor, target, action and time.
#[utoipa::path(get, path = "/api/audit", tag = "settings", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
async fn list_audit(State(state): State<AppState>, caller: Caller, ApiQuery(q): ApiQuery<AuditParams>) -> ApiResult<axum::Json<AuditPage>> {
    caller.require_global_admin("the audit log is")?;
    if q.format.is_some() {
        return Err(ApiError::invalid_param("format", "format is for GET /api/audit/export"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_param("limit", "limit must be from 1 to 1000"));
    }
    let page = listing::list(state.store.as_ref(), &q.filter(), limit, q.cursor.clone()).await?;
    Ok(axum::Json(AuditPage { data: page.events, next_cursor: page.cursor }))
}

const CSV_COLUMNS: [&str; 8] = ["id", "at", "actor", "source", "action", "target", "request_id", "changes"];

fn encode(csv: bool, events: &[Event]) -> Bytes {
    if !csv {
        return jsonl_bytes(events);
    }
    csv_bytes(events.iter().map(|e| {
        let row = [
            e.id.to_string(),
            e.at.to_rfc3339(),
            serde_json::to_string(&e.actor).unwrap_or_default(),
            e.source.clone().unwrap_or_default(),
            e.action.clone(),
            e.target.clone(),
            e.request_id.clone(),
            serde_json::to_string(&e.changes).unwrap_or_default(),
        ];
        row.iter().map(|cell| neutralised(cell)).collect()
    }))
}

/// The whole log (with the same filters), streamed page by page as JSON Lines or CSV.
#[utoipa::path(get, path = "/api/audit/export", tag = "settings", params(AuditParams),
    responses((status = 200, description = "the events, one per line", content_type = "application/x-ndjson"),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
async fn export_audit(State(state): State<AppState>, caller: Caller, ApiQuery(q): ApiQuery<AuditParams>) -> ApiResult<Response> {
    caller.require_global_admin("the audit log is")?;
    let csv = match q.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::invalid_param("format", format!("format is jsonl or csv, not {other:?}"))),
    };
    if q.limit.is_some() || q.cursor.is_some() {
        return Err(ApiError::invalid_param("limit", "the export is the whole log: drop limit and cursor"));
    }
    let filter = q.filter();
    let first = listing::list(state.store.as_ref(), &filter, 500, None).await?;
    let head = csv.then(|| csv_bytes([CSV_COLUMNS.map(str::to_string).to_vec()]));
    let first_bytes = encode(csv, &first.events);
    let store = state.store.clone();
    let rest = futures::stream::unfold(first.cursor, move |cursor| {
        let (store, filter) = (store.clone(), filter.clone());
        async move {
            let page = listing::list(store.as_ref(), &filter, 500, Some(cursor?)).await;
            Some(match page {
                Ok(page) => (encode(csv, &page.events), page.cursor),
                Err(e) => (Bytes::from(format!("{}\n", serde_json::json!({"error": {"message": format!("the export stopped part way: {e}")}}))), None),
            })
        }
    });
    let body = Body::from_stream(futures::StreamExt::map(
        futures::StreamExt::chain(futures::stream::iter(head.into_iter().chain([first_bytes])), rest),
        Ok::<_, std::convert::Infallible>,
    ));
    let (content_type, extension) = if csv { ("text/csv; charset=utf-8", "csv") } else { ("application/x-ndjson", "jsonl") };
    let filename = format!("audit-{}.{extension}", state.clock.now().format("%Y%m%dT%H%M%SZ"));
    Ok(([(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\""))], body)
        .into_response())
}
