//! Amazon Bedrock (Converse and ConverseStream, SigV4) through all three front doors, against a
//! local fake that checks every signature and streams AWS's binary event-stream framing, on
//! both backends: answers, tools, usage with cache reads and writes, cost, errors, a stream
//! that fails midway, what Converse cannot carry, and the credentials test.

use serde_json::{Value, json};
use tollgate_tests::bedrock::{ANSWER, FakeBedrock, REGION, USAGE};
use tollgate_tests::{TestApp, backend_tests};

const MODEL_ID: &str = "anthropic.claude-3-haiku-20240307-v1:0";

async fn bedrock_model(app: &TestApp, admin: &str, fake: &FakeBedrock, id: &str, key: &str) {
    let model = json!({"id": id, "provider": "bedrock", "baseUrl": format!("{}/?region={REGION}", fake.base_url), "apiKey": key,
        "inputPrice": 3.0, "cachedInputPrice": 0.3, "cacheWritePrice": 3.75, "outputPrice": 15.0, "contextWindow": 200_000, "maxOutputTokens": 1000});
    app.post("/api/models", Some(admin), model).await.expect(201);
}

fn weather() -> Value {
    json!([{"type": "function", "function": {"name": "weather", "description": "The weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

backend_tests! {
    async fn bedrock_serves_chat_whole_and_streamed_with_signed_requests(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeBedrock::start().await;
        let (admin, _) = app.admin().await;
        bedrock_model(&app, &admin, &fake, MODEL_ID, &FakeBedrock::key()).await;
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 100})).await;
        let r = app.chat(&key, json!({"model": MODEL_ID, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]})).await.expect(200);
        assert_eq!(r.body["choices"][0]["message"]["content"], ANSWER.join(" "));
        let (input, output, read, write) = USAGE;
        assert_eq!(r.body["usage"]["prompt_tokens"], input + read + write);
        assert_eq!(r.body["usage"]["prompt_tokens_details"], json!({"cached_tokens": read, "cache_write_tokens": write}));
        // 20 x $3 + 4 x $0.30 + 2 x $3.75 + 3 x $15 per million = 113.7 micro-dollars: 114.
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000114");
        let (model, operation, sent) = fake.requests().pop().unwrap();
        assert_eq!((model.as_str(), operation.as_str()), (MODEL_ID, "converse"));
        assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
        assert_eq!(sent["inferenceConfig"]["maxTokens"], 1000, "the model's output cap when the request names none");
        // Streamed: event-stream frames, cut anywhere, become chunks; usage from `metadata`.
        let chunks = app.sse("/v1/chat/completions", &key, json!({"model": MODEL_ID, "stream": true, "max_tokens": 2, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Hi?"}]})).await;
        let text: String = chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
        assert_eq!(text, "Bedrock says");
        assert!(chunks.iter().any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("length"))));
        assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 2);
        assert_eq!(fake.requests().pop().unwrap().1, "converse-stream");
        assert_eq!(output, 3);
    }

    async fn bedrock_tools_round_trip_through_every_front_door(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeBedrock::start().await;
        let (admin, _) = app.admin().await;
        bedrock_model(&app, &admin, &fake, MODEL_ID, &FakeBedrock::key()).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        // Chat completions, streamed: the tool call arrives in pieces.
        let chunks = app.sse("/v1/chat/completions", &key, json!({"model": MODEL_ID, "stream": true, "tools": weather(),
            "messages": [{"role": "user", "content": "Weather in Paris?"}]})).await;
        let args: String = chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str)).collect();
        assert_eq!(args, "{\"city\":\"Paris\"}");
        // The result goes back; the fake sees a toolResult and answers in text.
        let r = app.chat(&key, json!({"model": MODEL_ID, "tools": weather(), "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "tooluse_01", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "tooluse_01", "content": "sunny"}]})).await.expect(200);
        assert_eq!(r.body["choices"][0]["finish_reason"], "stop");
        let sent = fake.requests().pop().unwrap().2;
        assert_eq!(sent["messages"][2]["content"][0]["toolResult"], json!({"toolUseId": "tooluse_01", "content": [{"text": "sunny"}]}));
        // Anthropic's Messages API: a tool_use block.
        let tools = json!([{"name": "weather", "input_schema": {"type": "object"}}]);
        let m = app.post("/v1/messages", Some(&key), json!({"model": MODEL_ID, "max_tokens": 100, "tools": tools, "messages": [{"role": "user", "content": "Weather?"}]})).await.expect(200);
        assert_eq!(m.body["stop_reason"], "tool_use");
        assert_eq!(m.body["content"][1]["input"], json!({"city": "Paris"}));
        // The Responses API, streamed: a function_call item.
        let tools = json!([{"type": "function", "name": "weather", "parameters": {"type": "object"}}]);
        let events = app.sse("/v1/responses", &key, json!({"model": MODEL_ID, "stream": true, "tools": tools, "input": "Weather?"})).await;
        let done = &events.last().unwrap()["response"];
        assert_eq!(done["output"][1]["type"], "function_call");
        assert_eq!(done["output"][1]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(done["usage"]["input_tokens_details"]["cached_tokens"], USAGE.2);
    }

    async fn bedrock_errors_reach_the_caller_and_the_record(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeBedrock::start().await;
        let (admin, _) = app.admin().await;
        bedrock_model(&app, &admin, &fake, "missing.model-v1", &FakeBedrock::key()).await;
        bedrock_model(&app, &admin, &fake, "wrong.key-v1", "AKIAFAKEBEDROCK0001:not-the-secret").await;
        bedrock_model(&app, &admin, &fake, "throttle.model-v1", &FakeBedrock::key()).await;
        bedrock_model(&app, &admin, &fake, MODEL_ID, &FakeBedrock::key()).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let hi = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "Hi?"}]});
        let missing = app.chat(&key, hi("missing.model-v1")).await.expect_error(404, "upstream_rejected");
        assert!(missing.body["error"]["message"].as_str().unwrap().contains("Could not resolve the foundation model"), "{}", missing.text);
        let unsigned = app.chat(&key, hi("wrong.key-v1")).await.expect_error(403, "upstream_rejected");
        assert!(unsigned.body["error"]["message"].as_str().unwrap().contains("signature"), "{}", unsigned.text);
        assert!(!unsigned.text.contains("not-the-secret"));
        // A throttling exception midway ends the stream with an error; the record says so.
        let mut body = hi("throttle.model-v1");
        body["stream"] = json!(true);
        let resp = app.client.post(format!("{}/v1/chat/completions", app.base)).bearer_auth(&key).json(&body).send().await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let text = resp.text().await.unwrap();
        assert!(text.contains("throttlingException"), "{text}");
        let record = app.get(&format!("/api/usage/{id}"), Some(&admin)).await.expect(200);
        assert_eq!(record.body["outcome"], "error", "{}", record.text);
        // What Converse cannot carry is a 400 naming it; nothing is sent.
        let before = fake.requests().len();
        let linked = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
        let refused = app.chat(&key, linked).await.expect(400);
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("inline"), "{}", refused.text);
        let json_mode = json!({"model": MODEL_ID, "response_format": {"type": "json_object"}, "messages": [{"role": "user", "content": "x"}]});
        app.chat(&key, json_mode).await.expect(400);
        assert_eq!(fake.requests().len(), before);
        // An inline image goes as bytes.
        let inline = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": [{"type": "text", "text": "What?"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]}]});
        app.chat(&key, inline).await.expect(200);
        assert_eq!(fake.requests().pop().unwrap().2["messages"][0]["content"][1], json!({"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}}));
    }

    async fn bedrock_credentials_are_tested_with_a_signed_call(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeBedrock::start().await;
        let (admin, _) = app.admin().await;
        let (_, alice) = app.user(&admin, "alice@example.com", "viewer").await;
        let mine = json!({"name": "my-bedrock", "provider_type": "bedrock", "base_url": format!("{}/?region={REGION}", fake.base_url),
            "api_key": FakeBedrock::key(), "models": [MODEL_ID]});
        let ok = app.post("/admin/v1/me/providers/test-credentials", Some(&alice), mine.clone()).await.expect(200);
        assert_eq!(ok.body["status"], "ok", "{}", ok.text);
        let mut wrong = mine.clone();
        wrong["api_key"] = json!("AKIAFAKEBEDROCK0001:wrong-secret");
        let bad = app.post("/admin/v1/me/providers/test-credentials", Some(&alice), wrong).await.expect(200);
        assert_eq!(bad.body["status"], "error", "{}", bad.text);
        // Through the user's own provider, by `<name>/<model>`.
        app.post("/admin/v1/me/providers", Some(&alice), mine).await.expect(201);
        let (_, key) = app.api_key(&alice, json!({})).await;
        let r = app.chat(&key, json!({"model": format!("my-bedrock/{MODEL_ID}"), "messages": [{"role": "user", "content": "Hi?"}]})).await.expect(200);
        assert_eq!(r.body["choices"][0]["message"]["content"], ANSWER.join(" "));
    }
}
