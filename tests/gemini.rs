//! Google's Gemini API (AI Studio, an API key) and Vertex AI (a service account's OAuth token,
//! from a local token endpoint) through all three front doors, against a local fake of both,
//! on both backends: answers, streams, tools, images, JSON output, usage with cached and
//! thought tokens, cost, errors, and the credentials test.

use serde_json::{Value, json};
use tollgate_tests::google::{ANSWER, API_KEY, FakeGoogle, PRIVATE_KEY, USAGE, WRONG_PRIVATE_KEY};
use tollgate_tests::{TestApp, backend_tests};

async fn model(app: &TestApp, admin: &str, id: &str, provider: &str, base: &str, key: &str) {
    let model = json!({"id": id, "provider": provider, "baseUrl": base, "apiKey": key,
        "inputPrice": 1.0, "cachedInputPrice": 0.25, "outputPrice": 10.0, "contextWindow": 1_000_000, "maxOutputTokens": 500});
    app.post("/api/models", Some(admin), model).await.expect(201);
}

fn weather() -> Value {
    json!([{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

backend_tests! {
    async fn gemini_serves_chat_whole_and_streamed(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeGoogle::start().await;
        let (admin, _) = app.admin().await;
        model(&app, &admin, "gemini-2.5-flash", "gemini", &fake.studio(), API_KEY).await;
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 100})).await;
        let r = app.chat(&key, json!({"model": "gemini-2.5-flash", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]})).await.expect(200);
        assert_eq!(r.body["choices"][0]["message"]["content"], ANSWER.join(" "));
        let (prompt, cached, thoughts) = USAGE;
        assert_eq!(r.body["usage"]["prompt_tokens"], prompt);
        assert_eq!(r.body["usage"]["completion_tokens"], 3 + thoughts, "thoughts are output");
        assert_eq!(r.body["usage"]["prompt_tokens_details"]["cached_tokens"], cached);
        // 20 x $1 + 10 x $0.25 + 8 x $10 per million = 102.5 micro-dollars: 103.
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000103");
        let record = app.get(&format!("/api/usage/{}", r.headers["x-request-id"].to_str().unwrap()), Some(&admin)).await.expect(200);
        assert_eq!((record.body["cachedTokens"].as_i64(), record.body["reasoningTokens"].as_i64()), (Some(cached), Some(thoughts)));
        let (model_id, method, sent) = fake.calls().pop().unwrap();
        assert_eq!((model_id.as_str(), method.as_str()), ("gemini-2.5-flash", "generateContent"));
        assert_eq!(sent["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
        assert_eq!(sent["generationConfig"]["maxOutputTokens"], 500);
        let chunks = app.sse("/v1/chat/completions", &key, json!({"model": "gemini-2.5-flash", "stream": true, "max_tokens": 2,
            "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Hi?"}]})).await;
        let text: String = chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
        assert_eq!(text, "Gemini says");
        assert!(chunks.iter().any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("length"))));
        assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 2 + thoughts);
        // JSON output and an inline image (a 64x64 PNG's header: its size is what it is
        // reserved at, 258 tokens or Gemini 3's cap).
        let json_out = app.chat(&key, json!({"model": "gemini-2.5-flash", "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "What?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAAAAAA"}}]}]})).await.expect(200);
        let parsed: Value = serde_json::from_str(json_out.body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert_eq!(parsed["answer"], "hi");
        let sent = fake.calls().pop().unwrap().2;
        assert_eq!(sent["generationConfig"]["responseJsonSchema"], json!({"type": "object"}));
        assert_eq!(sent["contents"][0]["parts"][1], json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAAAAAA"}}));
    }

    async fn gemini_tools_round_trip_through_every_front_door(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeGoogle::start().await;
        let (admin, _) = app.admin().await;
        model(&app, &admin, "gemini-2.5-flash", "gemini", &fake.studio(), API_KEY).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let chunks = app.sse("/v1/chat/completions", &key, json!({"model": "gemini-2.5-flash", "stream": true, "tools": weather(),
            "messages": [{"role": "user", "content": "Weather in Paris?"}]})).await;
        let call = chunks.iter().find_map(|c| c.pointer("/choices/0/delta/tool_calls/0")).expect("a tool call").clone();
        assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert!(chunks.iter().any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls"))));
        let r = app.chat(&key, json!({"model": "gemini-2.5-flash", "tools": weather(), "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": call["id"], "type": "function", "function": call["function"]}]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]})).await.expect(200);
        assert_eq!(r.body["choices"][0]["finish_reason"], "stop");
        let sent = fake.calls().pop().unwrap().2;
        assert_eq!(sent["contents"][2]["parts"][0], json!({"functionResponse": {"name": "weather", "response": {"content": "sunny"}}}), "answered by the call's name");
        let tools = json!([{"name": "weather", "input_schema": {"type": "object"}}]);
        let m = app.post("/v1/messages", Some(&key), json!({"model": "gemini-2.5-flash", "max_tokens": 100, "tools": tools, "messages": [{"role": "user", "content": "Weather?"}]})).await.expect(200);
        assert_eq!(m.body["stop_reason"], "tool_use");
        let tools = json!([{"type": "function", "name": "weather", "parameters": {"type": "object"}}]);
        let resp = app.post("/v1/responses", Some(&key), json!({"model": "gemini-2.5-flash", "tools": tools, "input": "Weather?"})).await.expect(200);
        assert_eq!(resp.body["output"][1]["type"], "function_call", "{}", resp.text);
        assert_eq!(resp.body["usage"]["output_tokens_details"]["reasoning_tokens"], USAGE.2);
        // Errors keep Google's message; a web link is refused before anything is sent.
        model(&app, &admin, "missing-model", "gemini", &fake.studio(), API_KEY).await;
        let missing = app.chat(&key, json!({"model": "missing-model", "messages": [{"role": "user", "content": "x"}]})).await.expect_error(404, "upstream_rejected");
        assert!(missing.body["error"]["message"].as_str().unwrap().contains("is not found"), "{}", missing.text);
        let linked = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]});
        app.chat(&key, linked).await.expect(400);
    }

    async fn vertex_exchanges_a_service_account_for_tokens(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeGoogle::start().await;
        let (admin, _) = app.admin().await;
        model(&app, &admin, "gemini-2.5-pro", "vertex", &fake.vertex(), &fake.service_account(PRIVATE_KEY)).await;
        model(&app, &admin, "untrusted", "vertex", &fake.vertex(), &fake.service_account(WRONG_PRIVATE_KEY)).await;
        let nowhere = json!({"id": "no-base", "provider": "vertex", "inputPrice": 1.0, "outputPrice": 1.0, "contextWindow": 1000});
        assert_eq!(app.post("/api/models", Some(&admin), nowhere).await.expect(400).body["error"]["param"], "baseUrl");
        let (_, key) = app.api_key(&admin, json!({})).await;
        for _ in 0..3 {
            let r = app.chat(&key, json!({"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "Hi?"}]})).await.expect(200);
            assert_eq!(r.body["choices"][0]["message"]["content"], ANSWER.join(" "));
        }
        assert_eq!(fake.tokens_issued(), 1, "one token, kept until it nears its expiry");
        let events = app.sse("/v1/responses", &key, json!({"model": "gemini-2.5-pro", "input": "Hi?", "stream": true})).await;
        assert_eq!(events.last().unwrap()["type"], "response.completed");
        assert_eq!(fake.calls().pop().unwrap().1, "streamGenerateContent");
        let refused = app.chat(&key, json!({"model": "untrusted", "messages": [{"role": "user", "content": "Hi?"}]})).await;
        assert_eq!(refused.status, 502, "{}", refused.text);
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("Invalid JWT Signature"), "{}", refused.text);
        assert!(!refused.text.contains("BEGIN PRIVATE KEY"));
        // The credentials test makes the same exchange.
        let (_, alice) = app.user(&admin, "alice@example.com", "viewer").await;
        let mine = json!({"name": "my-vertex", "provider_type": "vertex", "base_url": fake.vertex(), "api_key": fake.service_account(PRIVATE_KEY), "models": ["gemini-2.5-pro"]});
        let ok = app.post("/admin/v1/me/providers/test-credentials", Some(&alice), mine.clone()).await.expect(200);
        assert_eq!(ok.body["status"], "ok", "{}", ok.text);
        let mut wrong = mine;
        wrong["api_key"] = json!(fake.service_account(WRONG_PRIVATE_KEY));
        let bad = app.post("/admin/v1/me/providers/test-credentials", Some(&alice), wrong).await.expect(200);
        assert_eq!(bad.body["status"], "error", "{}", bad.text);
        let studio = json!({"name": "my-gemini", "provider_type": "gemini", "base_url": fake.studio(), "api_key": API_KEY, "models": ["gemini-2.5-flash"]});
        let ok = app.post("/admin/v1/me/providers/test-credentials", Some(&alice), studio).await.expect(200);
        assert_eq!(ok.body["status"], "ok", "{}", ok.text);
    }
}
