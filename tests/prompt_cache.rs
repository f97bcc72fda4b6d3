//! Providers' prompt caches, priced with each model's cache prices: Anthropic's `cache_control`
//! breakpoints (whose 5-minute and 1-hour writes cost differently) passed through to it and
//! kept from upstreams that would refuse them, OpenAI's cached input, Gemini's cached content.
//! Each against a local fake speaking the provider's wire format, on both backends.

use serde_json::{Value, json};
use tollgate_tests::anthropic::{API_KEY as ANTHROPIC_KEY, FakeAnthropic};
use tollgate_tests::google::{API_KEY as GOOGLE_KEY, FakeGoogle};
use tollgate_tests::upstream::FakeUpstream;
use tollgate_tests::{Resp, TestApp, backend_tests};

async fn record_of(app: &TestApp, resp: &Resp) -> tollgate::usage::UsageRecord {
    let id = resp.headers["x-request-id"].to_str().unwrap();
    tollgate::usage::by_request_id(app.state.store.as_ref(), id).await.unwrap().expect("a usage record")
}

/// A Messages request whose system prompt is a cache breakpoint (`ttl`: none for Anthropic's
/// default 5 minutes, or "1h").
fn cached_messages(model: &str, ttl: Option<&str>, stream: bool) -> Value {
    let mut cache = json!({"type": "ephemeral"});
    if let Some(ttl) = ttl {
        cache["ttl"] = json!(ttl);
    }
    json!({"model": model, "max_tokens": 100, "stream": stream,
           "system": [{"type": "text", "text": "A long, stable system prompt.", "cache_control": cache}],
           "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather?", "cache_control": cache}]}]})
}

async fn messages(app: &TestApp, key: &str, body: Value) -> Resp {
    let resp = app
        .client
        .post(format!("{}/v1/messages", app.base))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    TestApp::read(resp).await.expect(200)
}

backend_tests! {
    async fn anthropic_cache_writes_are_priced_by_their_time_to_live(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeAnthropic::start().await;
        let (admin, _) = app.admin().await;
        app.post("/api/models", Some(&admin), json!({"id": "claude", "provider": "anthropic", "baseUrl": fake.base_url, "apiKey": ANTHROPIC_KEY,
            "inputPrice": 3.0, "cachedInputPrice": 0.3, "cacheWritePrice": 3.75, "cacheWrite1hPrice": 6.0, "outputPrice": 15.0, "contextWindow": 200000}))
            .await
            .expect(201);
        let shown = app.get("/api/models/claude", Some(&admin)).await.expect(200).body;
        assert_eq!((shown["cacheWritePrice"].as_f64(), shown["cacheWrite1hPrice"].as_f64()), (Some(3.75), Some(6.0)));
        let (_, key) = app.api_key(&admin, json!({})).await;

        // 5 minutes: 12 input x $3 + 3 read x $0.30 + 2 written x $3.75 + 3 output x $15 per
        // million = 89.4 micro-dollars, 90.
        let r = messages(&app, &key, cached_messages("claude", None, false)).await;
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000090");
        assert_eq!(r.body["usage"]["cache_creation"], json!({"ephemeral_5m_input_tokens": 2, "ephemeral_1h_input_tokens": 0}));
        let (_, sent) = fake.requests().pop().unwrap();
        assert_eq!(sent["system"][0]["cache_control"], json!({"type": "ephemeral"}), "the breakpoint reaches Anthropic: {sent}");
        assert_eq!(sent["messages"][0]["content"][0]["cache_control"], json!({"type": "ephemeral"}));

        // An hour: the 2 written tokens at $6 instead: 93.9, 94; whole and streamed.
        for stream in [false, true] {
            let r = messages(&app, &key, cached_messages("claude", Some("1h"), stream)).await;
            let record = record_of(&app, &r).await;
            assert_eq!((record.cache_write_tokens, record.cache_write_1h_tokens), (2, 2));
            assert_eq!((record.cache_write_price_micros, record.cache_write_1h_price_micros), (3_750_000, 6_000_000));
            assert_eq!(record.cost_micros, 94, "stream: {stream}");
            let (_, sent) = fake.requests().pop().unwrap();
            assert_eq!(sent["system"][0]["cache_control"], json!({"type": "ephemeral", "ttl": "1h"}));
            if !stream {
                assert_eq!(r.body["usage"]["cache_creation"], json!({"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2}));
            }
        }

        // Through the OpenAI door, as OpenRouter's and LiteLLM's clients send it.
        let r = app.chat(&key, json!({"model": "claude", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Weather?", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]})).await.expect(200);
        assert_eq!(r.body["usage"]["prompt_tokens_details"]["cache_write_1h_tokens"], 2);
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000094");

        // An Anthropic client's breakpoints never reach an OpenAI-shaped upstream.
        let openai = FakeUpstream::start().await;
        app.model(&admin, "gpt", 1.0, 1.0, Some((&openai.base_url, "sk-x"))).await;
        messages(&app, &key, cached_messages("gpt", Some("1h"), false)).await;
        let (_, sent) = openai.requests().pop().unwrap();
        assert!(!sent.to_string().contains("cache_control"), "{sent}");
    }

    async fn openai_cached_input_is_priced_at_the_cached_price(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeUpstream::start().await;
        let (admin, _) = app.admin().await;
        app.post("/api/models", Some(&admin), json!({"id": "gpt-4o", "provider": "openai-compatible", "baseUrl": fake.base_url, "apiKey": "sk-x",
            "inputPrice": 10.0, "cachedInputPrice": 1.0, "outputPrice": 30.0, "contextWindow": 128000}))
            .await
            .expect(201);
        let (_, key) = app.api_key(&admin, json!({})).await;
        // The fake's usage: 7 prompt tokens of which 2 cached, 5 completion tokens:
        // 5 x $10 + 2 x $1 + 5 x $30 per million = 202 micro-dollars.
        let r = app.chat(&key, json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000202");
        let record = record_of(&app, &r).await;
        assert_eq!((record.input_tokens, record.cached_tokens, record.cached_input_price_micros), (7, 2, 1_000_000));
    }

    async fn gemini_cached_content_is_priced_at_the_cached_price(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeGoogle::start().await;
        let (admin, _) = app.admin().await;
        app.post("/api/models", Some(&admin), json!({"id": "gemini-2.5-pro", "provider": "gemini", "baseUrl": fake.studio(), "apiKey": GOOGLE_KEY,
            "inputPrice": 1.25, "cachedInputPrice": 0.125, "outputPrice": 10.0, "contextWindow": 1000000}))
            .await
            .expect(201);
        let (_, key) = app.api_key(&admin, json!({})).await;
        // The fake's usageMetadata: 30 prompt tokens of which 10 cachedContentTokenCount, 3
        // answer and 5 thought tokens: 20 x $1.25 + 10 x $0.125 + 8 x $10 per million = 106.25, 107.
        let r = app.chat(&key, json!({"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000107");
        let record = record_of(&app, &r).await;
        assert_eq!((record.cached_tokens, record.cached_input_price_micros), (10, 125_000));
    }
}
