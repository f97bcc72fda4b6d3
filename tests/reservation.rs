//! The reservation counts everything a provider bills, on both backends: random requests (text
//! under any tag, unknown fields, images of random sizes and detail) go through the gateway to
//! fakes that bill as each provider documents (every string they read as at most a token per
//! byte, images by OpenAI's tiles or patches, Anthropic's 28px patches, Gemini's 258-token
//! tiles), and what each was reserved at (the worst case a refusing budget names) is never
//! below what the fake billed for it.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::Uri;
use base64::Engine;
use serde_json::{Value, json};
use tollgate_tests::{Backend, TestApp, backend_tests};

/// A PNG's first bytes (signature and IHDR) for an image of `w` x `h`.
fn png(w: u32, h: u32) -> String {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R'];
    bytes.extend(w.to_be_bytes());
    bytes.extend(h.to_be_bytes());
    bytes.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The size a base64 PNG says it is.
fn png_size(data: &str) -> (u64, u64) {
    let data = data.rsplit(',').next().unwrap_or(data);
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).expect("the fake's images are PNGs");
    let read = |at: usize| u64::from(u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()));
    (read(16), read(20))
}

/// OpenAI's documented image cost (tile models): base, or base + tiles x tile at high detail
/// after fitting in 2048x2048 and scaling the short side down to 768 (as its worked examples
/// do; a smaller image is not enlarged).
fn openai_image(base: i64, tile: i64, (w, h): (u64, u64), detail: &str) -> i64 {
    if detail == "low" {
        return base;
    }
    let (w, h) = (w as f64, h as f64);
    let fit = (2048.0 / w.max(h)).min(1.0);
    let (w, h) = (w * fit, h * fit);
    let short = (768.0 / w.min(h)).min(1.0);
    base + tile * ((w * short / 512.0).ceil() * (h * short / 512.0).ceil()) as i64
}

/// Every string the provider reads, as a token per byte (no tokenizer makes more), but the
/// image payloads and kind tags.
fn text_tokens(value: &Value, skip: &[&str]) -> i64 {
    match value {
        Value::String(s) => s.len() as i64,
        Value::Array(a) => a.iter().map(|v| text_tokens(v, skip)).sum(),
        Value::Object(m) => m.iter().filter(|(k, _)| !skip.contains(&k.as_str()) && *k != "type").map(|(_, v)| text_tokens(v, skip)).sum(),
        _ => 0,
    }
}

/// What each fake billed, by the text of the request's first message.
type Billed = Arc<Mutex<Vec<i64>>>;

async fn openai(State(billed): State<Billed>, body: axum::body::Bytes) -> axum::Json<Value> {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let model = body["model"].as_str().unwrap();
    let (base, tile) = if model == "gpt-4o-mini" { (2833, 5667) } else { (85, 170) };
    let mut tokens = text_tokens(&body["messages"], &["image_url"]);
    for part in body["messages"].as_array().unwrap().iter().filter_map(|m| m["content"].as_array()).flatten() {
        if part["type"] == "image_url" {
            tokens += openai_image(base, tile, png_size(part["image_url"]["url"].as_str().unwrap()), part["image_url"]["detail"].as_str().unwrap_or("auto"));
        }
    }
    billed.lock().unwrap().push(tokens);
    axum::Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": tokens, "completion_tokens": 1, "total_tokens": tokens + 1}}))
}

async fn anthropic(State(billed): State<Billed>, body: axum::body::Bytes) -> axum::Json<Value> {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let mut tokens = text_tokens(&body["system"], &[]) + text_tokens(&body["messages"], &["source"]);
    for block in body["messages"].as_array().unwrap().iter().filter_map(|m| m["content"].as_array()).flatten() {
        if block["type"] == "image" {
            // Anthropic: 28px patches, at most 1,568 at the standard tier's 1568px edge.
            let (w, h) = png_size(block["source"]["data"].as_str().unwrap());
            tokens += (w.div_ceil(28) * h.div_ceil(28)).min(1568) as i64;
        }
    }
    billed.lock().unwrap().push(tokens);
    axum::Json(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"], "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": tokens, "output_tokens": 1}}))
}

async fn gemini(State(billed): State<Billed>, Path(_model): Path<String>, body: axum::body::Bytes) -> axum::Json<Value> {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let mut tokens = text_tokens(&body["systemInstruction"], &[]) + text_tokens(&body["contents"], &["inlineData"]);
    for part in body["contents"].as_array().unwrap().iter().filter_map(|c| c["parts"].as_array()).flatten() {
        if let Some(data) = part.pointer("/inlineData/data").and_then(Value::as_str) {
            // Gemini 2: 258 within 384x384, else 258 per tile of min(w,h)/1.5 in 256..768.
            let (w, h) = png_size(data);
            tokens += if w <= 384 && h <= 384 {
                258
            } else {
                let side = ((w.min(h) as f64) / 1.5).clamp(256.0, 768.0) as u64;
                (w.div_ceil(side) * h.div_ceil(side) * 258) as i64
            };
        }
    }
    billed.lock().unwrap().push(tokens);
    axum::Json(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": tokens, "candidatesTokenCount": 1, "totalTokenCount": tokens + 1}}))
}

/// A fake of each provider, on one port: OpenAI's chat completions, Anthropic's messages and
/// Gemini's generateContent.
async fn billing_fakes() -> (String, Billed) {
    let billed: Billed = Arc::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(openai))
        .route("/v1/messages", axum::routing::post(anthropic))
        .route("/v1beta/models/{model}", axum::routing::post(gemini))
        .fallback(|uri: Uri| async move { (axum::http::StatusCode::NOT_FOUND, format!("no route {uri}")) })
        .with_state(billed.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, billed)
}

/// A small deterministic generator (xorshift), so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn text(&mut self) -> String {
        let words = ["hello", "naïve", "日本語", "🙂", "{\"x\":1}", "tok", "\\n", "a b c"];
        (0..self.below(300)).map(|_| words[self.below(words.len() as u64) as usize]).collect::<Vec<_>>().join(" ")
    }
}

/// A random chat request: text under the tags a provider still reads, unknown fields, and
/// images of random sizes and detail.
fn random_request(rng: &mut Rng, model: &str, images: bool) -> Value {
    let mut messages = Vec::new();
    for i in 0..1 + rng.below(4) {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let content = if rng.below(2) == 0 || !images || role == "assistant" {
            json!(rng.text())
        } else {
            let mut parts = vec![json!({"type": "text", "text": rng.text()})];
            for _ in 0..rng.below(3) {
                let (w, h) = (1 + rng.below(5000) as u32, 1 + rng.below(5000) as u32);
                let detail = ["low", "high", "auto"][rng.below(3) as usize];
                parts.push(json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", png(w, h)), "detail": detail}}));
            }
            json!(parts)
        };
        let mut message = json!({"role": role, "content": content});
        match rng.below(4) {
            0 => message["type"] = json!("file"),
            1 => message["name"] = json!(rng.text().chars().take(40).filter(|c| c.is_ascii_alphanumeric()).collect::<String>() + "n"),
            _ => {}
        }
        messages.push(message);
    }
    json!({"model": model, "max_tokens": 1, "messages": messages})
}

/// The input tokens the gateway reserved for `body`: the worst case a refusing budget names.
async fn reserved(app: &TestApp, key: &str, body: &Value) -> i64 {
    let refused = app.chat(key, body.clone()).await.expect_error(402, "budget_exceeded");
    let message = refused.body["error"]["message"].as_str().unwrap();
    let (_, rest) = message.split_once("worst case is $").unwrap_or_else(|| panic!("{message}"));
    rest.split_once(" (").unwrap().1.split_once(" input").unwrap().0.parse().unwrap()
}

async fn check_family(app: &TestApp, admin: &str, rng: &mut Rng, billed: &Billed, model: &str, images: bool) {
    let (_, poor) = app.api_key(admin, json!({"budget_limit_cents": 1, "allowed_models": [model]})).await;
    let (_, rich) = app.api_key(admin, json!({"allowed_models": [model]})).await;
    for round in 0..25 {
        let body = random_request(rng, model, images);
        let reserved = reserved(app, &poor, &body).await;
        let served = app.chat(&rich, body.clone()).await.expect(200);
        let charged = served.body.pointer("/usage/prompt_tokens").and_then(Value::as_i64).unwrap();
        let fake = *billed.lock().unwrap().last().unwrap();
        assert_eq!(charged, fake, "the usage the client sees is what the fake billed");
        assert!(reserved >= fake, "{model}, round {round}: reserved {reserved} < billed {fake} for {}", &body.to_string()[..200.min(body.to_string().len())]);
    }
}

async fn start(backend: Backend) -> (TestApp, String, String, Billed) {
    let app = TestApp::start(backend).await;
    let (admin, _) = app.admin().await;
    let (base, billed) = billing_fakes().await;
    // $100,000 per million input tokens: a one-cent budget refuses anything, naming its worst case.
    let price = json!({"inputPrice": 100_000, "outputPrice": 1, "contextWindow": 2_000_000});
    for (id, provider, url) in [
        ("gpt-4o", "openai-compatible", format!("{base}/v1")),
        ("gpt-4o-mini", "openai-compatible", format!("{base}/v1")),
        ("claude-sonnet-4-5", "anthropic", base.clone()),
        ("gemini-2.5-pro", "gemini", format!("{base}/v1beta")),
    ] {
        let mut model = json!({"id": id, "provider": provider, "baseUrl": url, "apiKey": "sk-fake"});
        model.as_object_mut().unwrap().extend(price.as_object().unwrap().clone());
        app.post("/api/models", Some(&admin), model).await.expect(201);
    }
    (app, admin, base, billed)
}

backend_tests! {
    async fn the_reservation_is_never_below_what_a_provider_bills(backend) {
        let (app, admin, _, billed) = start(backend).await;
        let mut rng = Rng(0x5eed_0bad_cafe_f00d);
        for (model, images) in [("gpt-4o", true), ("gpt-4o-mini", true), ("claude-sonnet-4-5", true), ("gemini-2.5-pro", true)] {
            check_family(&app, &admin, &mut rng, &billed, model, images).await;
        }
    }

    async fn a_message_typed_file_is_counted_whole(backend) {
        let (app, admin, _, _) = start(backend).await;
        app.post("/api/models", Some(&admin), json!({"id": "mock-1", "provider": "mock", "inputPrice": 1, "outputPrice": 1, "contextWindow": 1_000_000})).await.expect(201);
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 1})).await;
        // 400 KB of text under a message-level `type: file`: at $1 per million tokens a cent
        // pays for 10,000 tokens, so it cannot be reserved as "a few".
        let body = json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "type": "file", "content": "x".repeat(400_000)}]});
        assert!(reserved(&app, &key, &body).await >= 400_000);
    }
}
