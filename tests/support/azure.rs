//! A local Azure OpenAI resource, as Azure's REST reference shapes it: deployments under
//! `/openai/deployments/{deployment}/...`, `api-version` required in the query, the key in the
//! `api-key` header; OpenAI's bodies with Azure's additions (`prompt_filter_results`,
//! `content_filter_results`, and a first stream chunk with no choices); Azure's errors.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const API_KEY: &str = "azure-fake-key-0123456789abcdef";
pub const DEPLOYMENT: &str = "gpt-4o-prod";

/// Every request so far: (headers, query, body).
type Log = Arc<Mutex<Vec<(HeaderMap, std::collections::HashMap<String, String>, Value)>>>;

#[derive(Clone)]
pub struct FakeAzure {
    /// The resource's endpoint; a deployment's base URL is `{endpoint}/openai/deployments/{name}`.
    pub endpoint: String,
    requests: Log,
}

impl FakeAzure {
    pub async fn start() -> Self {
        let requests: Log = Arc::default();
        let app = axum::Router::new().route("/openai/deployments/{deployment}/{*operation}", post(operation)).with_state(requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeAzure { endpoint: format!("http://{addr}"), requests }
    }

    pub fn requests(&self) -> Vec<(HeaderMap, std::collections::HashMap<String, String>, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

const FILTERS: &str = r#"{"hate": {"filtered": false, "severity": "safe"}, "violence": {"filtered": false, "severity": "safe"}}"#;

async fn operation(
    State(requests): State<Log>,
    Path((deployment, operation)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.lock().unwrap().push((headers.clone(), query.clone(), body.clone()));
    if headers.get("api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return error(
            StatusCode::UNAUTHORIZED,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        );
    }
    if !query.contains_key("api-version") {
        return error(StatusCode::NOT_FOUND, "404", "Resource not found");
    }
    if deployment != DEPLOYMENT {
        return error(
            StatusCode::NOT_FOUND,
            "DeploymentNotFound",
            "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.",
        );
    }
    let filters: Value = serde_json::from_str(FILTERS).unwrap();
    let usage = json!({"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13, "prompt_tokens_details": {"cached_tokens": 0}});
    if operation == "embeddings" {
        return axum::Json(
            json!({"object": "list", "model": "text-embedding-3-small", "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.25]}],
            "usage": {"prompt_tokens": 9, "total_tokens": 9}}),
        )
        .into_response();
    }
    if body["stream"] == true {
        let chunk =
            |choices: Value| json!({"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06", "choices": choices});
        let mut events = vec![
            json!({"id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filters}]}),
        ];
        for word in ["Azure", " says", " hello", " there"] {
            events.push(chunk(json!([{"index": 0, "delta": {"content": word}, "finish_reason": null, "content_filter_results": filters}])));
        }
        events.push(chunk(json!([{"index": 0, "delta": {}, "finish_reason": "stop", "content_filter_results": {}}])));
        if body["stream_options"]["include_usage"] == true {
            let mut last = chunk(json!([]));
            last["usage"] = usage;
            events.push(last);
        }
        let mut frames: Vec<Result<Bytes, std::convert::Infallible>> = events.iter().map(|e| Ok(Bytes::from(format!("data: {e}\n\n")))).collect();
        frames.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
        return Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(futures::stream::iter(frames))).unwrap();
    }
    let (message, finish) = match super::upstream::special(&body) {
        super::upstream::Special::Tool(call) => (json!({"role": "assistant", "content": null, "tool_calls": [call]}), "tool_calls"),
        super::upstream::Special::Json(text) => (json!({"role": "assistant", "content": text}), "stop"),
        super::upstream::Special::Text => (json!({"role": "assistant", "content": "Azure says hello there"}), "stop"),
    };
    axum::Json(json!({"id": "chatcmpl-az", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filters}],
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "content_filter_results": filters}],
        "usage": usage}))
    .into_response()
}
