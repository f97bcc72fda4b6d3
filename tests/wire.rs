//! Every answer is the error envelope, from every layer, and the connection survives it: what
//! hyper answers itself (headers too large, a URI too long), what axum's extractors answer (a
//! path that is not UTF-8, a body over the limit), and an early 401 before a body was read.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate::Group;
use tollgate_tests::{Backend, TestApp};

/// Sends `head` (and `body`) on a fresh connection and reads the whole answer.
async fn raw(app: &TestApp, head: &[u8], body: &[u8]) -> (u16, String, Value) {
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(head).await.unwrap();
    // The server may answer and close before reading all of it.
    let _ = tcp.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await.expect("the server answered and closed");
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no answer: {text:?}"));
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or(Value::Null))
}

#[track_caller]
fn assert_envelope(status: u16, head: &str, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{head}\n{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let id = head.lines().find_map(|l| l.strip_prefix("x-request-id: ")).expect("x-request-id");
    assert_eq!(body["error"]["request_id"], id);
    assert!(body["error"]["message"].as_str().unwrap().len() > 20, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_hyper_answers_itself_is_an_envelope_too() {
    let app = TestApp::start(Backend::Embedded).await;
    let huge_header = format!("GET /api/setup/status HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(1 << 20));
    let (status, head, body) = raw(&app, huge_header.as_bytes(), b"").await;
    assert_envelope(status, &head, &body, 431, "headers_too_large");
    assert!(head.contains("connection: close"));

    let many: String = (0..2000).map(|i| format!("x-h{i}: v\r\n")).collect();
    let (status, head, body) = raw(&app, format!("GET /api/setup/status HTTP/1.1\r\nhost: x\r\n{many}\r\n").as_bytes(), b"").await;
    assert_envelope(status, &head, &body, 431, "headers_too_large");

    let long_uri = format!("GET /api/setup/status?q={} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(108 * 1024));
    let (status, head, body) = raw(&app, long_uri.as_bytes(), b"").await;
    assert_envelope(status, &head, &body, 414, "uri_too_long");

    let (status, head, body) = raw(&app, b"GET /api/setup/status HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n", b"").await;
    assert_envelope(status, &head, &body, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_extractors_answer_is_an_envelope_too() {
    let app = TestApp::start(Backend::Embedded).await;
    let (admin, _) = app.admin().await;
    // A path segment that decodes to invalid UTF-8.
    let r = app.get("/api/models/%FF%FE", Some(&admin)).await.expect_error(400, "invalid_request");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("UTF-8"), "{}", r.text);
    // The proxy's body limit, once the key is good.
    app.model(&admin, "mock-1", 1.0, 1.0, None).await;
    let (_, key) = app.api_key(&admin, json!({})).await;
    let big = vec![b' '; tollgate::http::proxy::MAX_PROXY_BODY_BYTES + 1];
    let resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let r = TestApp::read(resp).await.expect_error(413, "payload_too_large");
    assert!(r.body["error"]["message"].as_str().unwrap().contains(&tollgate::http::proxy::MAX_PROXY_BODY_BYTES.to_string()));
    // The admin API's.
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(2 << 20));
    let resp =
        app.client.post(format!("{}/api/workspaces", app.base)).bearer_auth(&admin).header("content-type", "application/json").body(big).send().await.unwrap();
    TestApp::read(resp).await.expect_error(413, "payload_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_checks_the_key_before_it_reads_a_body_and_pooled_clients_survive() {
    let app = TestApp::start_groups(Backend::Embedded, &[Group::Proxy]).await;
    // 16 MiB with no key: refused from the headers alone, and the connection is closed.
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", 16 << 20);
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    // The body is never sent, so any answer came from the headers alone; the timeout only stops
    // a server that would wait for the body forever.
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer)).await.expect("answered before the body").unwrap();
    let text = String::from_utf8_lossy(&answer[..n]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 401") && text.contains("connection: close") && text.contains("missing_api_key"), "{text}");

    // A pooled client sending bodies with a bad key: every try gets its 401, none a
    // connection dropped without an answer.
    let client = reqwest::Client::builder().pool_max_idle_per_host(4).build().unwrap();
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(200_000)}]}).to_string();
    for i in 0..15 {
        let resp = client
            .post(format!("{}/v1/chat/completions", app.base))
            .bearer_auth("tg_not_a_key")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("try {i}: {e}"));
        TestApp::read(resp).await.expect_error(401, "invalid_api_key");
    }
}
