//! Proxy group: the data plane, behind two front doors: OpenAI's (chat completions,
//! completions, embeddings, models) and Anthropic's (messages, count_tokens). Every POST
//! shares one handler, parameterised by endpoint and door; the rules live in `crate::proxy`,
//! the doors' shapes in `crate::doors`.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorEnvelope;
use super::extract::{ApiQuery, ClientIp};
use crate::doors::{self, Door, Entered};
use crate::error::{ApiError, ApiResult};
use crate::proxy::{self, Endpoint, Requester};
use crate::state::AppState;
use axum::extract::Path;

/// The largest request body the proxy reads: Anthropic's limit for one request (32 MB), room
/// for several full-size images or PDFs as base64. The admin API's 1 MiB would refuse real
/// prompts. Read only once the key is known to be good.
pub const MAX_PROXY_BODY_BYTES: usize = 32 << 20;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(chat_completions))
        .routes(routes!(completions))
        .routes(routes!(embeddings))
        .routes(routes!(models))
        .routes(routes!(model))
        .routes(routes!(messages))
        .routes(routes!(count_tokens))
        .routes(routes!(create_response))
        .routes(routes!(get_response, delete_response))
        .routes(routes!(response_input_items))
}

/// The API key, from `Authorization: Bearer` or `X-API-Key`.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok())).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The app attribution headers a caller may send (OpenRouter's, and their older or standard
/// names), as constants: a header name given as text is parsed again on every lookup.
const HTTP_REFERER: HeaderName = HeaderName::from_static("http-referer");
const OPENROUTER_TITLE: HeaderName = HeaderName::from_static("x-openrouter-title");
const X_TITLE: HeaderName = HeaderName::from_static("x-title");
/// Tells a proxy in front (nginx) not to buffer a stream.
const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

fn caller(headers: &HeaderMap, ip: ClientIp) -> Requester {
    let text = |names: [&HeaderName; 2]| {
        names.iter().find_map(|name| headers.get(*name)).and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty()).map(|s| s.chars().take(512).collect())
    };
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).filter(|v| v.len() <= 128).map(str::to_string);
    Requester {
        secret: presented_key(headers),
        ip: ip.0,
        referer: text([&HTTP_REFERER, &header::REFERER]),
        title: text([&OPENROUTER_TITLE, &X_TITLE]),
        traceparent,
        cache: crate::response_cache::Directive::of(headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok())),
    }
}

/// Reads a proxied request's body, up to `MAX_PROXY_BODY_BYTES`.
async fn read_body(body: Body) -> ApiResult<axum::body::Bytes> {
    axum::body::to_bytes(body, MAX_PROXY_BODY_BYTES).await.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::Status {
                status: 413,
                code: "payload_too_large",
                message: format!("the body is larger than the proxy's {MAX_PROXY_BODY_BYTES}-byte limit; send images and files by URL, or fewer at a time"),
            }
        } else {
            ApiError::bad_request("invalid_body", format!("the body could not be read: {e}"))
        }
    })
}

/// The front door a request came in by.
#[derive(Clone, Copy)]
enum Front {
    OpenAi,
    Anthropic,
    Responses,
}

async fn forward(state: AppState, endpoint: Endpoint, front: Front, headers: HeaderMap, ip: ClientIp, body: Body) -> Response {
    let started = Instant::now();
    let caller = caller(&headers, ip);
    let key = match proxy::admit_key(&state.gateway, endpoint, &caller).await {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    let entered = async {
        let body = read_body(body).await?;
        let slot = proxy::enter(&state.gateway).await?;
        let entered = match front {
            Front::OpenAi => (Door::OpenAi, Entered::as_sent(body)),
            Front::Anthropic => (Door::Anthropic, Entered::translated(doors::anthropic::canonical_request(&body)?)),
            Front::Responses => {
                let parsed = doors::responses::parse(&body)?;
                let history = match &parsed.previous_response_id {
                    Some(id) => crate::responses::continued(state.gateway.store.as_ref(), &key.owner.tag(), id, state.gateway.clock.now().timestamp()).await?,
                    None => vec![],
                };
                let (exchange, canonical) = parsed.exchange(doors::responses::new_id("resp"), state.gateway.clock.now().timestamp(), history)?;
                (Door::Responses(std::sync::Arc::new(exchange)), Entered::translated(canonical))
            }
        };
        Ok::<_, ApiError>((entered, slot))
    };
    match entered.await {
        Ok(((door, body), slot)) => {
            respond(proxy::handle(state.gateway.clone(), proxy::Inbound { endpoint, door, key, caller, body, started, slot }).await).await
        }
        Err(error) => error.into_response(),
    }
}

/// The proxy's answer as the HTTP response: JSON, or server-sent events as they come (never
/// buffered by a proxy in front: `x-accel-buffering: no`), with the key's standing headers.
async fn respond(answer: proxy::Answer) -> Response {
    let (response, headers) = match answer {
        proxy::Answer::Whole { body, headers } => (([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(), headers),
        proxy::Answer::Stream { mut events, headers } => {
            // The head waits for the first event, so that both go in one write. Handed over at
            // once, the head went alone whenever the relay's task had not run yet, as it had not
            // for 97% of streamed answers at 16 connections (`perf trace` of the writes): a
            // write, and a wake of the client, more per answer. The wait is the upstream's time
            // to its first event, which the client waits for either way; a stream that never
            // sends one ends with an error event at the relay's idle timeout. No timer bounds it
            // here: arming one woke a parked worker for ~60% of streamed answers.
            use futures::StreamExt;
            let first = events.recv().await;
            let rest = futures::stream::poll_fn(move |cx| events.poll_recv(cx));
            let body = axum::body::Body::from_stream(futures::stream::iter(first).chain(rest).map(Ok::<_, std::convert::Infallible>));
            let response = Response::builder()
                .header(axum::http::header::CONTENT_TYPE, "text/event-stream")
                .header(axum::http::header::CACHE_CONTROL, "no-cache")
                .header(X_ACCEL_BUFFERING, "no")
                .body(body)
                .unwrap_or_else(|e| ApiError::internal(e).into_response());
            (response, headers)
        }
        proxy::Answer::Error { error, headers } => (error.into_response(), headers),
    };
    with_headers(response, headers)
}

/// Sets the proxy's headers on a response.
fn with_headers(mut response: Response, headers: proxy::Headers) -> Response {
    let map = response.headers_mut();
    // Room for them all and the request id `edge` adds, in one go: grown an insert at a time,
    // the map was reallocated three times an answer.
    map.reserve(headers.len() + 1);
    for (name, value) in headers {
        map.insert(name, value);
    }
    response
}

/// An error answer in Anthropic's envelope (its error type, our message, code and request id).
async fn in_anthropic_shape(response: Response) -> Response {
    if response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let ours: serde_json::Value = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let theirs = doors::anthropic::error_body(parts.status.as_u16(), &ours);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(theirs.to_string()))
}

/// Anthropic's Messages API, streamed (Anthropic's event types) or not, routed to any model of
/// any provider type. The key goes in `x-api-key` (or `Authorization: Bearer`); errors are
/// Anthropic's envelope. The answer carries the same standing headers as chat completions.
#[utoipa::path(post, path = "/v1/messages", tag = "proxy", request_body = Object,
    responses((status = 200, body = Object), (status = 400, body = Object), (status = 401, body = Object), (status = 402, body = Object), (status = 403, body = Object), (status = 429, body = Object), (status = 502, body = Object), (status = 503, body = Object)))]
async fn messages(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp, body: Body) -> Response {
    in_anthropic_shape(forward(state, Endpoint::Chat, Front::Anthropic, headers, ip, body).await).await
}

/// The input tokens a Messages request is reserved at on its model: an upper bound (the text's
/// bytes plus framing), since no provider's tokenizer runs here.
#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "proxy", request_body = Object,
    responses((status = 200, body = Object), (status = 400, body = Object), (status = 401, body = Object), (status = 404, body = Object)))]
async fn count_tokens(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp, body: Body) -> Response {
    let counted = async {
        let key = proxy::admit_key(&state.gateway, Endpoint::Chat, &caller(&headers, ip)).await?;
        let canonical = doors::anthropic::canonical_count_request(&read_body(body).await?)?;
        let tokens = proxy::count_input_tokens(&state.gateway, &key, canonical).await?;
        Ok::<_, ApiError>(axum::Json(serde_json::json!({"input_tokens": tokens})))
    };
    in_anthropic_shape(counted.await.into_response()).await
}

/// OpenAI chat completions, streamed (SSE) or not. The answer carries the key's standing
/// (`x-ratelimit-*`, `x-budget-*`), `x-request-id` and, unstreamed, `x-tollgate-cost-usd`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "proxy", request_body = Object,
    responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope), (status = 402, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope)))]
async fn chat_completions(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp, body: Body) -> Response {
    forward(state, Endpoint::Chat, Front::OpenAi, headers, ip, body).await
}

/// OpenAI (legacy) text completions, streamed or not.
#[utoipa::path(post, path = "/v1/completions", tag = "proxy", request_body = Object,
    responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope), (status = 402, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
async fn completions(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp, body: Body) -> Response {
    forward(state, Endpoint::Completions, Front::OpenAi, headers, ip, body).await
}

/// OpenAI embeddings.
#[utoipa::path(post, path = "/v1/embeddings", tag = "proxy", request_body = Object,
    responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope), (status = 402, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
async fn embeddings(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp, body: Body) -> Response {
    forward(state, Endpoint::Embeddings, Front::OpenAi, headers, ip, body).await
}

/// OpenAI's Responses API, streamed (typed events) or not, routed to any model of any provider
/// type: natively to OpenAI models, translated over the canonical request to every other (what
/// only OpenAI can serve is a 400 there). With `store` (the default) the response is kept for
/// `TOLLGATE_RESPONSES_TTL_DAYS`, readable and continuable (`previous_response_id`) only by keys
/// of the same owner; the conversation it continues is part of the reservation and the charge.
#[utoipa::path(post, path = "/v1/responses", tag = "proxy", request_body = Object,
    responses((status = 200, body = Object), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 402, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope)))]
async fn create_response(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp, body: Body) -> Response {
    forward(state, Endpoint::Chat, Front::Responses, headers, ip, body).await
}

/// The key behind a stored-response request, with the scope that made it.
async fn response_owner(state: &AppState, headers: &HeaderMap, ip: ClientIp) -> ApiResult<String> {
    let key = proxy::admit_key(&state.gateway, Endpoint::Responses, &caller(headers, ip)).await?;
    Ok(key.owner.tag())
}

fn no_response(id: &str) -> ApiError {
    ApiError::not_found(format!("no stored response {id:?} of yours: it was not stored, has expired or was deleted"))
}

/// A stored response, as it was answered.
#[utoipa::path(get, path = "/v1/responses/{id}", tag = "proxy", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn get_response(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp, Path(id): Path<String>) -> ApiResult<axum::Json<serde_json::Value>> {
    let owner = response_owner(&state, &headers, ip).await?;
    let stored =
        crate::responses::load(state.gateway.store.as_ref(), &owner, &id, state.gateway.clock.now().timestamp()).await?.ok_or_else(|| no_response(&id))?;
    Ok(axum::Json(stored.response))
}

/// Deletes a stored response: it can no longer be read or continued.
#[utoipa::path(delete, path = "/v1/responses/{id}", tag = "proxy", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn delete_response(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp, Path(id): Path<String>) -> ApiResult<axum::Json<serde_json::Value>> {
    let owner = response_owner(&state, &headers, ip).await?;
    if !crate::responses::delete(state.gateway.store.as_ref(), &owner, &id, state.gateway.clock.now().timestamp()).await? {
        return Err(no_response(&id));
    }
    Ok(axum::Json(serde_json::json!({"id": id, "object": "response", "deleted": true})))
}

/// A stored response's own input items, newest first unless `order=asc`, paged by item id.
#[utoipa::path(get, path = "/v1/responses/{id}/input_items", tag = "proxy", params(("id" = String, Path), crate::responses::ItemsQuery),
    responses((status = 200, body = Object), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn response_input_items(
    State(state): State<AppState>,
    headers: HeaderMap,
    ip: ClientIp,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<crate::responses::ItemsQuery>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let owner = response_owner(&state, &headers, ip).await?;
    let stored =
        crate::responses::load(state.gateway.store.as_ref(), &owner, &id, state.gateway.clock.now().timestamp()).await?.ok_or_else(|| no_response(&id))?;
    Ok(axum::Json(crate::responses::input_items(&stored, &query)?))
}

/// The models this key may use.
#[utoipa::path(get, path = "/v1/models", tag = "proxy", responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope)))]
async fn models(State(state): State<AppState>, headers: HeaderMap, ip: ClientIp) -> ApiResult<axum::Json<serde_json::Value>> {
    let key = proxy::authenticate(&state.gateway, presented_key(&headers).as_deref(), ip.0).await?;
    Ok(axum::Json(proxy::list_models(&state.gateway, &key).await?))
}

/// One model this key may use.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "proxy", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn model(
    State(state): State<AppState>,
    headers: HeaderMap,
    ip: ClientIp,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let key = proxy::authenticate(&state.gateway, presented_key(&headers).as_deref(), ip.0).await?;
    Ok(axum::Json(proxy::get_model(&state.gateway, &key, &id).await?))
}
