//! The proxy binary under the Lambda runtime API, with a local emulator of that API standing
//! in for Lambda: a streamed chat answer reaches the runtime API chunk by chunk as the model
//! produces it (RESPONSE_STREAM mode), not all at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::json;
use tollgate::config::Config;

#[derive(Default)]
struct Emulator {
    served: bool,
    event: String,
    /// Every body frame of the streamed response, with when it arrived.
    frames: Vec<(Instant, Bytes)>,
    mode: Option<String>,
    finished: bool,
    errors: Vec<String>,
}

type Shared = Arc<Mutex<Emulator>>;

async fn next_invocation(State(shared): State<Shared>) -> Response {
    let event = {
        let mut e = shared.lock().unwrap();
        if e.served {
            None
        } else {
            e.served = true;
            Some(e.event.clone())
        }
    };
    let Some(event) = event else {
        // One invocation only: the runtime then waits here until the test ends.
        std::future::pending::<()>().await;
        unreachable!();
    };
    let deadline = (std::time::SystemTime::now() + Duration::from_secs(60)).duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    Response::builder()
        .header("Lambda-Runtime-Aws-Request-Id", "invocation-1")
        .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
        .header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:tollgate-proxy")
        .header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        .body(Body::from(event))
        .unwrap()
}

async fn response(State(shared): State<Shared>, headers: axum::http::HeaderMap, body: Body) -> StatusCode {
    shared.lock().unwrap().mode = headers.get("Lambda-Runtime-Function-Response-Mode").map(|v| v.to_str().unwrap().to_string());
    let mut stream = body.into_data_stream();
    while let Some(Ok(frame)) = stream.next().await {
        shared.lock().unwrap().frames.push((Instant::now(), frame));
    }
    shared.lock().unwrap().finished = true;
    StatusCode::ACCEPTED
}

async fn error(State(shared): State<Shared>, body: String) -> impl IntoResponse {
    let mut e = shared.lock().unwrap();
    e.errors.push(body);
    e.finished = true;
    StatusCode::ACCEPTED
}

/// A Function URL event (payload format 2.0) for a streamed chat completion.
fn function_url_event(key: &str) -> String {
    let body = json!({"model": "mock-stream", "stream": true, "messages": [{"role": "user", "content": "go [mock:words=5] [mock:delay_ms=200]"}]});
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/v1/chat/completions", "rawQueryString": "",
        "headers": {"content-type": "application/json", "authorization": format!("Bearer {key}"), "host": "abc.lambda-url.us-east-1.on.aws"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws", "domainPrefix": "abc",
            "http": {"method": "POST", "path": "/v1/chat/completions", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "r-1", "routeKey": "$default", "stage": "$default", "time": "23/Nov/2026:19:00:00 +0000", "timeEpoch": 1795460000000u64
        },
        "body": body.to_string(), "isBase64Encoded": false
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunks_reach_the_runtime_api_as_they_are_produced() {
    // Data for the function: a mock model and a key, in an embedded store it will open.
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let key = {
        let state = tollgate::AppState::open(config, false).await.unwrap();
        let now = chrono::Utc::now();
        let model = tollgate::catalog::Model {
            id: "mock-stream".into(),
            provider: tollgate::providers::ProviderType::Mock,
            base_url: None,
            input_price_micros: 0,
            output_price_micros: 1_000_000,
            cached_input_price_micros: None,
            cache_write_price_micros: None,
            cache_write_1h_price_micros: None,
            context_window: 1000,
            max_output_tokens: None,
            capabilities: vec![],
            tool_call_prices_micros: Default::default(),
            service_tier_percent: Default::default(),
            allow_provider_objects: false,
            sovereignty: None,
            has_api_key: false,
            secret_id: uuid::Uuid::new_v4(),
            dynamic: None,
            routing: Default::default(),
            deployment: None,
            created_at: now,
            updated_at: now,
        };
        tollgate::catalog::create(state.store.as_ref(), state.secrets.as_ref(), model, None).await.unwrap();
        let owner = tollgate::keys::Owner::User { user_id: uuid::Uuid::new_v4() };
        let settings = tollgate::keys::KeySettings { name: "lambda".into(), ..Default::default() };
        tollgate::keys::create(state.store.as_ref(), owner, settings, None, chrono::Utc::now()).await.unwrap().secret
    };

    let shared: Shared = Arc::new(Mutex::new(Emulator { event: function_url_event(&key), ..Default::default() }));
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate-proxy"))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "tollgate-proxy")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("TOLLGATE_DATA_DIR", dir.path())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !shared.lock().unwrap().finished && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();

    let e = shared.lock().unwrap();
    assert!(e.errors.is_empty(), "the function reported errors: {:?}", e.errors);
    assert!(e.finished, "no response within 30 s");
    assert_eq!(e.mode.as_deref(), Some("streaming"), "the response must use the streaming response mode");
    let all: Vec<u8> = e.frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let text = String::from_utf8_lossy(&all);
    let (prelude, body) = text.split_once(&"\u{0}".repeat(8)).expect("the metadata prelude and its delimiter");
    let prelude: serde_json::Value = serde_json::from_str(prelude).unwrap();
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    assert_eq!(prelude["headers"]["content-type"], "text/event-stream");
    let words: String = body
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(words, "alpha bravo charlie delta echo");
    assert!(body.trim_end().ends_with("data: [DONE]"));

    // The five words were produced 200 ms apart: they must arrive apart too.
    let arrivals: Vec<Instant> = e.frames.iter().filter(|(_, b)| String::from_utf8_lossy(b).contains("\"content\":\"")).map(|(t, _)| *t).collect();
    assert!(arrivals.len() >= 5, "the words arrived in {} frames: not streamed", arrivals.len());
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(spread >= Duration::from_millis(600), "the words arrived within {spread:?}: buffered, not streamed");
}
