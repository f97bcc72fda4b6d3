//! Proxy group: the OpenAI-compatible data plane. The three POST endpoints share one handler,
//! parameterised by endpoint; the rules live in `crate::proxy`.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ClientIp;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::proxy::{self, Caller, Endpoint};
use crate::state::AppState;

/// Prompts can be long; the admin API's 1 MiB would refuse real ones.
pub const MAX_PROXY_BODY_BYTES: usize = 16 << 20;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(chat_completions))
        .routes(routes!(completions))
        .routes(routes!(embeddings))
        .routes(routes!(models))
        .layer(DefaultBodyLimit::max(MAX_PROXY_BODY_BYTES))
}

/// The API key, from `Authorization: Bearer` or `X-API-Key`.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok())).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn caller(headers: &HeaderMap, ip: ClientIp) -> Caller {
    Caller { secret: presented_key(headers), ip: ip.0, referer: headers.get("referer").and_then(|v| v.to_str().ok()).map(|s| s.chars().take(512).collect()) }
}

async fn forward(state: AppState, endpoint: Endpoint, headers: HeaderMap, ip: ClientIp, body: Bytes) -> Response {
    proxy::handle(state, endpoint, caller(&headers, ip), body).await
}

/// OpenAI chat completions, streamed (SSE) or not. The answer carries the key's standing
/// (`x-ratelimit-*`, `x-budget-*`), `x-request-id` and, unstreamed, `x-tollgate-cost-usd`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "proxy", request_body = Object,
    responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope), (status = 402, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope)))]
async fn chat_completions(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp, body: Bytes) -> Response {
    forward(state, Endpoint::Chat, headers, ip, body).await
}

/// OpenAI (legacy) text completions, streamed or not.
#[utoipa::path(post, path = "/v1/completions", tag = "proxy", request_body = Object,
    responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope), (status = 402, body = ErrorEnvelope)))]
async fn completions(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp, body: Bytes) -> Response {
    forward(state, Endpoint::Completions, headers, ip, body).await
}

/// OpenAI embeddings.
#[utoipa::path(post, path = "/v1/embeddings", tag = "proxy", request_body = Object,
    responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope), (status = 402, body = ErrorEnvelope)))]
async fn embeddings(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp, body: Bytes) -> Response {
    forward(state, Endpoint::Embeddings, headers, ip, body).await
}

/// The models this key may use.
#[utoipa::path(get, path = "/v1/models", tag = "proxy", responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope)))]
async fn models(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp) -> ApiResult<axum::Json<serde_json::Value>> {
    let key = proxy::authenticate(&state, presented_key(&headers).as_deref(), ip.0).await?;
    Ok(axum::Json(proxy::list_models(&state, &key).await?))
}
