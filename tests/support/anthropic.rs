//! A local Anthropic Messages API (`POST /v1/messages`), as its public API reference shapes
//! it: `x-api-key` and `anthropic-version` required, `max_tokens` required, user and assistant
//! turns alternating, `system` apart; answers with text or, when offered tools and asked a
//! question, a `tool_use` block; streams every event type (`message_start`,
//! `content_block_start`, `ping`, `content_block_delta` with `text_delta` and
//! `input_json_delta`, `content_block_stop`, `message_delta`, `message_stop`); errors in its
//! `{"type": "error", "error": {...}}` envelope. It records what it was sent.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const API_KEY: &str = "sk-ant-fake-key-0123456789";
/// The answer's words; usage: 12 input tokens, 3 read from the cache, 2 written to it.
pub const ANSWER: [&str; 3] = ["It", "is", "sunny."];
pub const USAGE: (i64, i64, i64) = (12, 3, 2);

/// Every request so far: (headers, body).
type Log = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

#[derive(Clone)]
pub struct FakeAnthropic {
    pub base_url: String,
    requests: Log,
}

impl FakeAnthropic {
    pub async fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new().route("/v1/messages", post(messages)).route("/v1/models", axum::routing::get(models)).with_state(requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeAnthropic { base_url: format!("http://{addr}"), requests }
    }

    /// (headers, body) of every request so far.
    pub fn requests(&self) -> Vec<(HeaderMap, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

/// `GET /v1/models`: what a credentials test calls.
async fn models(headers: HeaderMap) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key");
    }
    axum::Json(json!({"data": [{"type": "model", "id": "claude-upstream", "display_name": "Claude", "created_at": "2025-01-01T00:00:00Z"}],
        "has_more": false, "first_id": "claude-upstream", "last_id": "claude-upstream"}))
    .into_response()
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}}))).into_response()
}

/// What the request is answered with: a tool call when tools are offered and the last user
/// turn asks something (no tool result yet), else text.
fn tool_call(body: &Value) -> Option<Value> {
    let tool = body["tools"].as_array()?.first()?;
    let last = body["messages"].as_array()?.last()?;
    let answered = last["content"].as_array().is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
    (!answered).then(|| json!({"type": "tool_use", "id": "toolu_01", "name": tool["name"], "input": {"city": "Paris"}}))
}

async fn messages(State(requests): State<Log>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.lock().unwrap().push((headers.clone(), body.clone()));
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key");
    }
    if headers.get("anthropic-version").is_none() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "anthropic-version: header is required");
    }
    let Some(max_tokens) = body["max_tokens"].as_i64().filter(|n| *n >= 1) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "max_tokens: Field required");
    };
    let turns = body["messages"].as_array().cloned().unwrap_or_default();
    let alternate = !turns.is_empty() && turns.iter().enumerate().all(|(i, t)| t["role"] == if i % 2 == 0 { "user" } else { "assistant" });
    if !alternate {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "messages: roles must alternate between \"user\" and \"assistant\", starting with \"user\"",
        );
    }
    let model = body["model"].clone();
    let words: Vec<&str> = ANSWER.iter().take(max_tokens as usize).copied().collect();
    let truncated = words.len() < ANSWER.len();
    let call = tool_call(&body);
    let stop_reason = if call.is_some() {
        "tool_use"
    } else if truncated {
        "max_tokens"
    } else {
        "end_turn"
    };
    let output = words.len() as i64 + i64::from(call.is_some()) * 10;
    let (input, read, write) = USAGE;
    // As Anthropic reports them: cache writes by the breakpoints' time to live (5m unless a
    // breakpoint asks for 1h).
    let long = body.to_string().contains(r#""ttl":"1h""#);
    let creation = if long {
        json!({"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": write})
    } else {
        json!({"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0})
    };
    if body["stream"] == true {
        let mut events = vec![(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": 1, "cache_read_input_tokens": read, "cache_creation_input_tokens": write,
                          "cache_creation": creation}}}),
        )];
        events.push(("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
        events.push(("ping", json!({"type": "ping"})));
        for (i, word) in words.iter().enumerate() {
            let text = if i + 1 < words.len() { format!("{word} ") } else { word.to_string() };
            events.push(("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})));
        }
        events.push(("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
        if let Some(call) = &call {
            events.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": call["id"], "name": call["name"], "input": {}}}),
            ));
            for part in ["{\"city\": ", "\"Paris\"}"] {
                events.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
            events.push(("content_block_stop", json!({"type": "content_block_stop", "index": 1})));
        }
        events.push((
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output}}),
        ));
        events.push(("message_stop", json!({"type": "message_stop"})));
        let frames: Vec<Result<Bytes, std::convert::Infallible>> =
            events.into_iter().map(|(name, data)| Ok(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))).collect();
        return Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(futures::stream::iter(frames))).unwrap();
    }
    let mut content = vec![json!({"type": "text", "text": words.join(" ")})];
    content.extend(call);
    axum::Json(json!({"id": "msg_01", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": output, "cache_read_input_tokens": read, "cache_creation_input_tokens": write,
                  "cache_creation": creation}}))
    .into_response()
}
