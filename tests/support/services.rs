//! Local stand-ins for OpenRouter and Hugging Face, as their API references shape them:
//! OpenRouter's `GET /api/v1/key` (a token's details) and OpenAI-compatible chat at
//! `/api/v1/chat/completions` (usage with its own `cost`); the hub's `GET /api/whoami-v2` and
//! dataset files under `/datasets/<owner>/<name>/resolve/<revision>/<path>` (HEAD); the
//! inference router's OpenAI-compatible `/v1/chat/completions`. Point
//! TOLLGATE_OPENROUTER_URL at `{base}/api/v1`, TOLLGATE_HUGGINGFACE_URL at `{base}/v1` and
//! TOLLGATE_HUGGINGFACE_HUB_URL at `{base}`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, head, post};
use serde_json::{Value, json};

pub const OPENROUTER_TOKEN: &str = "sk-or-v1-good-0123456789abcdef";
pub const HF_TOKEN: &str = "hf_good0123456789abcdef";
/// The one dataset file that exists.
pub const DATASET: &str = "/datasets/acme/support-evals/resolve/main/eval.jsonl";

type Log = Arc<Mutex<Vec<(String, HeaderMap, Value)>>>;

#[derive(Clone)]
pub struct FakeServices {
    pub base: String,
    requests: Log,
}

impl FakeServices {
    pub async fn start() -> Self {
        let requests: Log = Arc::default();
        let app = axum::Router::new()
            .route("/api/v1/key", get(key))
            .route("/api/v1/chat/completions", post(chat))
            .route("/v1/chat/completions", post(chat))
            .route("/api/whoami-v2", get(whoami))
            .route("/datasets/{*file}", head(dataset))
            .with_state(requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeServices { base: format!("http://{addr}"), requests }
    }

    /// (path, headers, body) of every chat request so far.
    pub fn requests(&self) -> Vec<(String, HeaderMap, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

fn bearer(headers: &HeaderMap) -> &str {
    headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default()
}

async fn key(headers: HeaderMap) -> Response {
    if bearer(&headers) != OPENROUTER_TOKEN {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"message": "No auth credentials found", "code": 401}}))).into_response();
    }
    axum::Json(json!({"data": {"label": "sk-or-v1-acm...def", "usage": 0.5, "limit": null, "is_free_tier": false}})).into_response()
}

async fn whoami(headers: HeaderMap) -> Response {
    if bearer(&headers) != HF_TOKEN {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "Invalid credentials in Authorization header"}))).into_response();
    }
    axum::Json(json!({"type": "user", "name": "acme-ml", "fullname": "Acme ML"})).into_response()
}

async fn dataset(uri: Uri) -> StatusCode {
    if uri.path() == DATASET { StatusCode::OK } else { StatusCode::NOT_FOUND }
}

async fn chat(State(requests): State<Log>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    requests.lock().unwrap().push((uri.path().to_string(), headers.clone(), body.clone()));
    let token = bearer(&headers);
    if token != OPENROUTER_TOKEN && token != HF_TOKEN {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"message": "No auth credentials found", "code": 401}}))).into_response();
    }
    axum::Json(json!({"id": "gen-1", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "served through your own account"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16, "cost": 0.000042}}))
    .into_response()
}
