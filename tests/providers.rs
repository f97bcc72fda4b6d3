//! Provider types through the canonical (OpenAI) front door, against local fakes that speak
//! each provider's own wire format, on both backends: Anthropic's Messages API here, whole and
//! streamed, with tools, cache usage, errors, and the price of each token class.

use serde_json::{Value, json};
use tollgate_tests::anthropic::{ANSWER, API_KEY, FakeAnthropic, USAGE};
use tollgate_tests::{TestApp, backend_tests};

async fn claude(app: &TestApp, admin: &str, fake: &FakeAnthropic, api_key: &str) {
    let model = json!({"id": "claude-test", "provider": "anthropic", "baseUrl": fake.base_url, "apiKey": api_key,
        "inputPrice": 3.0, "cachedInputPrice": 0.3, "cacheWritePrice": 3.75, "outputPrice": 15.0, "contextWindow": 200_000, "maxOutputTokens": 1000});
    app.post("/api/models", Some(admin), model).await.expect(201);
}

/// The JSON of every `data:` event of an SSE body, up to `[DONE]` (which must end it).
fn events(text: &str) -> Vec<Value> {
    let data: Vec<&str> = text.split("\n\n").filter_map(|e| e.trim().strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "the stream ends with [DONE]: {text}");
    data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect()
}

async fn stream(app: &TestApp, key: &str, body: Value) -> Vec<Value> {
    let resp = app.client.post(format!("{}/v1/chat/completions", app.base)).bearer_auth(key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    events(&resp.text().await.unwrap())
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

backend_tests! {
    async fn an_openai_request_is_served_by_claude(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeAnthropic::start().await;
        let (admin, _) = app.admin().await;
        claude(&app, &admin, &fake, API_KEY).await;
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 100})).await;
        let r = app.chat(&key, json!({"model": "claude-test", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
        ]})).await.expect(200);
        assert_eq!(r.body["object"], "chat.completion");
        assert_eq!(r.body["choices"][0]["message"]["content"], ANSWER.join(" "));
        assert_eq!(r.body["choices"][0]["finish_reason"], "stop");
        let (input, read, write) = USAGE;
        assert_eq!(r.body["usage"]["prompt_tokens"], input + read + write);
        assert_eq!(r.body["usage"]["completion_tokens"], 3);
        assert_eq!(r.body["usage"]["prompt_tokens_details"], json!({"cached_tokens": read, "cache_write_tokens": write}));
        // 12 x $3 + 3 x $0.30 + 2 x $3.75 + 3 x $15 per million = 89.4 micro-dollars: 90.
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000090");
        // What Anthropic was sent: its own headers and shape, max_tokens from the model's cap.
        let (headers, sent) = fake.requests().pop().unwrap();
        assert_eq!(headers["x-api-key"], API_KEY);
        assert_eq!(headers["anthropic-version"], "2023-06-01");
        assert!(headers.get("authorization").is_none(), "no bearer token to Anthropic");
        assert_eq!(sent["max_tokens"], 1000);
        assert_eq!(sent["system"], json!([{"type": "text", "text": "Be brief."}]));
        assert_eq!(sent["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "Weather?"}]}]));
        // The request's own max_tokens goes as sent; Anthropic's stop reason maps to OpenAI's.
        let short = app.chat(&key, json!({"model": "claude-test", "max_tokens": 2, "messages": [{"role": "user", "content": "Weather?"}]})).await.expect(200);
        assert_eq!(short.body["choices"][0]["finish_reason"], "length");
        assert_eq!(fake.requests().pop().unwrap().1["max_tokens"], 2);
    }

    async fn tools_round_trip_through_claude_whole_and_streamed(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeAnthropic::start().await;
        let (admin, _) = app.admin().await;
        claude(&app, &admin, &fake, API_KEY).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let ask = json!({"role": "user", "content": "Weather in Paris?"});
        let r = app.chat(&key, json!({"model": "claude-test", "tools": weather_tool(), "tool_choice": "required", "messages": [ask]})).await.expect(200);
        assert_eq!(r.body["choices"][0]["finish_reason"], "tool_calls");
        let call = r.body["choices"][0]["message"]["tool_calls"][0].clone();
        assert_eq!(call["function"]["name"], "weather");
        assert_eq!(serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(), json!({"city": "Paris"}));
        let sent = fake.requests().pop().unwrap().1;
        assert_eq!(sent["tools"][0]["input_schema"]["required"], json!(["city"]));
        assert_eq!(sent["tool_choice"], json!({"type": "any"}));
        // The tool's result goes back as Anthropic wants it: a tool_result block of a user turn.
        let answer = json!({"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"});
        let assistant = r.body["choices"][0]["message"].clone();
        let done = app.chat(&key, json!({"model": "claude-test", "tools": weather_tool(), "messages": [ask, assistant, answer]})).await.expect(200);
        assert_eq!(done.body["choices"][0]["message"]["content"], ANSWER.join(" "));
        let sent = fake.requests().pop().unwrap().1;
        assert_eq!(sent["messages"][1]["content"][1], json!({"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Paris"}}));
        assert_eq!(sent["messages"][2], json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C and sunny"}]}));

        // Streamed: text deltas, then the tool call's arguments in pieces, then the stop.
        let chunks = stream(&app, &key, json!({"model": "claude-test", "stream": true, "stream_options": {"include_usage": true}, "tools": weather_tool(), "messages": [ask]})).await;
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, ANSWER.join(" "));
        let arguments: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()).collect();
        assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"city": "Paris"}));
        assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
        let usage = &chunks.last().unwrap()["usage"];
        assert_eq!((usage["prompt_tokens"].as_i64(), usage["completion_tokens"].as_i64()), (Some(17), Some(13)));
        // Without include_usage, no usage chunk reaches the client, but the record has it.
        let plain = stream(&app, &key, json!({"model": "claude-test", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await;
        assert!(plain.iter().all(|c| c.get("usage").is_none_or(Value::is_null)), "{plain:?}");
        let logs = app.get("/admin/v1/me/usage/logs?limit=1", Some(&admin)).await.expect(200);
        let record = &logs.body["data"][0];
        assert_eq!((record["input_tokens"].as_i64(), record["output_tokens"].as_i64()), (Some(17), Some(3)), "{record}");
    }

    async fn claudes_errors_reach_the_caller_in_the_envelope(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeAnthropic::start().await;
        let (admin, _) = app.admin().await;
        claude(&app, &admin, &fake, "sk-ant-wrong-key-abcdefghijkl").await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let refused = app.chat(&key, json!({"model": "claude-test", "messages": [{"role": "user", "content": "hi"}]})).await;
        let refused = refused.expect_error(401, "upstream_rejected");
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("invalid x-api-key"), "{}", refused.text);
        // Claude has no embeddings: said plainly, as the gateway's own 400 (not the upstream's),
        // without calling it.
        let before = fake.requests().len();
        let r = app.post("/v1/embeddings", Some(&key), json!({"model": "claude-test", "input": "hi"})).await;
        let r = r.expect_error(400, "unsupported_by_provider");
        assert_eq!(r.body["error"]["param"], "model", "{}", r.text);
        assert_eq!(fake.requests().len(), before);
    }

    async fn deleting_an_account_drops_its_providers_from_the_warm_caches_at_once(backend) {
        let app = TestApp::start(backend).await;
        let upstream = tollgate_tests::upstream::FakeUpstream::start().await;
        let (admin, _) = app.admin().await;
        let (alice_id, alice) = app.user(&admin, "alice@example.com", "viewer").await;
        let mine = json!({"name": "mine", "provider_type": "openai-compatible", "base_url": upstream.base_url, "api_key": "sk-alice-own", "models": ["m"]});
        let created = app.post("/admin/v1/me/providers", Some(&alice), mine).await.expect(201);
        let secret = format!("providers/{}/api-key", created.body["id"].as_str().unwrap());
        let (_, key) = app.api_key(&alice, json!({})).await;
        app.chat(&key, json!({"model": "mine/m", "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        let user: uuid::Uuid = alice_id.parse().unwrap();
        let hot = &app.state.hot;
        assert!(hot.dynamic.get(&(user, "mine".to_string())).is_some() && hot.secrets.get(&secret).is_some(), "the request warmed the caches");
        app.delete(&format!("/api/users/{alice_id}"), Some(&admin)).await.expect(204);
        assert!(hot.dynamic.get(&(user, "mine".to_string())).is_none(), "the provider left the cache with the account");
        assert!(hot.secrets.get(&secret).is_none(), "and its key");
        app.chat(&key, json!({"model": "mine/m", "messages": [{"role": "user", "content": "hi"}]})).await.expect_error(401, "invalid_api_key");
    }

    async fn routing_moves_past_a_provider_that_cannot_carry_the_request(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeAnthropic::start().await;
        let (admin, _) = app.admin().await;
        claude(&app, &admin, &fake, API_KEY).await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        let json_mode = json!({"model": "claude-test", "response_format": {"type": "json_object"}, "messages": [{"role": "user", "content": "hi"}]});
        // Claude has no JSON mode: with nowhere else to go, a 400 of the gateway's own naming
        // the field, and nothing sent.
        app.post("/api/projects", Some(&admin), json!({"name": "Only", "slug": "only", "models": ["claude-test"]})).await.expect(201);
        let only = app.post("/api/projects/only/tokens", Some(&admin), json!({"name": "t"})).await.expect(201).body["token"].as_str().unwrap().to_string();
        let refused = app.chat(&only, json_mode.clone()).await.expect_error(400, "unsupported_by_provider");
        assert_eq!(refused.body["error"]["param"], "response_format", "{}", refused.text);
        assert!(fake.requests().is_empty());
        // With another candidate that can carry it, routing goes on to it.
        app.post("/api/projects", Some(&admin), json!({"name": "Both", "slug": "both", "models": ["claude-test", "mock-1"]})).await.expect(201);
        let both = app.post("/api/projects/both/tokens", Some(&admin), json!({"name": "t"})).await.expect(201).body["token"].as_str().unwrap().to_string();
        let served = app.chat(&both, json_mode).await.expect(200);
        assert!(served.body["choices"][0]["message"]["content"].as_str().unwrap().contains("Tollgate mock provider"), "mock-1 answered: {}", served.text);
        assert!(fake.requests().is_empty(), "nothing was sent to the provider that cannot carry it");
        let id = served.headers["x-request-id"].to_str().unwrap();
        let trace = app.get(&format!("/api/usage/{id}"), Some(&admin)).await.expect(200);
        assert!(trace.text.contains("cannot carry"), "the routing trace says why it moved on: {}", trace.text);
    }

    async fn the_messages_api_reaches_any_provider(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeAnthropic::start().await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 2.0, None).await;
        claude(&app, &admin, &fake, API_KEY).await;
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 100})).await;
        let messages = |body: Value| {
            app.client.post(format!("{}/v1/messages", app.base)).header("x-api-key", &key).header("anthropic-version", "2023-06-01").json(&body).send()
        };
        // Through the mock (canonical behind the door).
        let r = messages(json!({"model": "mock-1", "max_tokens": 50, "system": "Be brief.", "messages": [{"role": "user", "content": "hello [mock:words=3]"}]})).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("x-budget-remaining-usd").is_some(), "the standing headers come through this door too");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "message");
        assert_eq!(body["role"], "assistant");
        assert!(body["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(body["content"][0]["type"], "text");
        assert_eq!(body["content"][0]["text"].as_str().unwrap().split_whitespace().count(), 3);
        assert_eq!(body["stop_reason"], "end_turn");
        assert_eq!(body["usage"]["output_tokens"], 3);
        // Through Claude: both translations, the cache's tokens kept apart all the way.
        let r = messages(json!({"model": "claude-test", "max_tokens": 50, "messages": [{"role": "user", "content": "Weather?"}]})).await.unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["content"], json!([{"type": "text", "text": ANSWER.join(" ")}]));
        assert_eq!(body["usage"], json!({"input_tokens": USAGE.0, "output_tokens": 3, "cache_read_input_tokens": USAGE.1, "cache_creation_input_tokens": USAGE.2,
                                         "cache_creation": {"ephemeral_5m_input_tokens": USAGE.2, "ephemeral_1h_input_tokens": 0}}));
        assert_eq!(fake.requests().pop().unwrap().1["max_tokens"], 50);
        // Tool use, whole and streamed.
        let tools = json!([{"name": "weather", "description": "The weather in a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
        let r = messages(json!({"model": "claude-test", "max_tokens": 50, "tools": tools, "messages": [{"role": "user", "content": "Paris?"}]})).await.unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["stop_reason"], "tool_use");
        assert_eq!(body["content"][1], json!({"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Paris"}}));
        let r = messages(json!({"model": "claude-test", "max_tokens": 50, "stream": true, "tools": tools, "messages": [{"role": "user", "content": "Paris?"}]})).await.unwrap();
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let text = r.text().await.unwrap();
        let frames: Vec<(String, Value)> = text
            .split("\n\n")
            .filter(|f| !f.trim().is_empty())
            .map(|f| {
                let mut lines = f.lines();
                let name = lines.next().unwrap().trim_start_matches("event: ").to_string();
                (name, serde_json::from_str(lines.next().unwrap().trim_start_matches("data: ")).unwrap())
            })
            .collect();
        let names: Vec<&str> = frames.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"message_start"));
        assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
        assert!(frames.iter().all(|(n, d)| d["type"] == n.as_str()), "each event's data names its type");
        let said: String = frames.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
        assert_eq!(said, ANSWER.join(" "));
        let json_input: String = frames.iter().filter_map(|(_, d)| d["delta"]["partial_json"].as_str()).collect();
        assert_eq!(serde_json::from_str::<Value>(&json_input).unwrap(), json!({"city": "Paris"}));
        let delta = &frames[frames.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(delta["usage"]["cache_read_input_tokens"], USAGE.1);
        // count_tokens and the model itself.
        let counted = app.client.post(format!("{}/v1/messages/count_tokens", app.base)).header("x-api-key", &key)
            .json(&json!({"model": "mock-1", "messages": [{"role": "user", "content": "hello"}]})).send().await.unwrap();
        assert_eq!(counted.json::<Value>().await.unwrap(), json!({"input_tokens": 16}), "user + hello: 9 bytes, 7 framing");
        let shown = app.get("/v1/models/mock-1", Some(&key)).await.expect(200);
        assert_eq!((shown.body["id"].as_str(), shown.body["object"].as_str()), (Some("mock-1"), Some("model")));
        app.get("/v1/models/nope", Some(&key)).await.expect_error(404, "model_not_found");
    }

    async fn the_messages_api_answers_errors_in_anthropics_envelope(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.0, 1000.0, None).await;
        let post = |key: Option<&str>, body: Value| {
            let mut r = app.client.post(format!("{}/v1/messages", app.base)).json(&body);
            if let Some(k) = key {
                r = r.header("x-api-key", k);
            }
            r.send()
        };
        let hi = json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        let check = |status: u16, kind: &'static str| move |r: reqwest::Response| async move {
            assert_eq!(r.status(), status);
            let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["type"], "error", "{body}");
            assert_eq!(body["error"]["type"], kind, "{body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| m.len() > 10), "{body}");
            assert_eq!(body["request_id"], id.as_str());
        };
        check(401, "authentication_error")(post(None, hi.clone()).await.unwrap()).await;
        let (key_id, key) = app.api_key(&admin, json!({"budget_limit_cents": 1})).await;
        check(400, "invalid_request_error")(post(Some(&key), json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]})).await.unwrap()).await;
        check(404, "not_found_error")(post(Some(&key), json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})).await.unwrap()).await;
        check(402, "billing_error")(post(Some(&key), json!({"model": "mock-1", "max_tokens": 500, "messages": [{"role": "user", "content": "hi"}]})).await.unwrap()).await;
        let (_, no_chat) = app.api_key(&admin, json!({"scopes": ["models"]})).await;
        check(403, "permission_error")(post(Some(&no_chat), hi.clone()).await.unwrap()).await;
        app.delete(&format!("/admin/v1/me/api-keys/{key_id}"), Some(&admin)).await.expect(204);
        check(401, "authentication_error")(post(Some(&key), hi).await.unwrap()).await;
    }

    async fn azure_deployments_serve_openai_requests(backend) {
        use tollgate_tests::azure::{self, FakeAzure};
        let app = TestApp::start(backend).await;
        let fake = FakeAzure::start().await;
        let (admin, _) = app.admin().await;
        let deployment = |name: &str, key: &str| json!({"id": format!("az-{name}"), "provider": "azure", "apiKey": key,
            "baseUrl": format!("{}/openai/deployments/{name}", fake.endpoint), "inputPrice": 2.5, "outputPrice": 10.0, "contextWindow": 128_000});
        app.post("/api/models", Some(&admin), deployment(azure::DEPLOYMENT, azure::API_KEY)).await.expect(201);
        app.post("/api/models", Some(&admin), deployment("missing", azure::API_KEY)).await.expect(201);
        app.post("/api/models", Some(&admin), json!({"id": "az-nourl", "provider": "azure", "inputPrice": 1, "outputPrice": 1, "contextWindow": 100}))
            .await
            .expect_error(400, "invalid_value");
        let (_, key) = app.api_key(&admin, json!({})).await;
        let model = format!("az-{}", azure::DEPLOYMENT);
        let r = app.chat(&key, json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        assert_eq!(r.body["choices"][0]["message"]["content"], "Azure says hello there");
        assert!(r.body["prompt_filter_results"].is_array(), "Azure's own fields pass through");
        // 9 x $2.50 + 4 x $10 per million = 62.5 micro-dollars: 63.
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000063");
        let (headers, query, _) = fake.requests().pop().unwrap();
        assert_eq!(headers["api-key"], azure::API_KEY);
        assert!(headers.get("authorization").is_none());
        assert_eq!(query["api-version"], tollgate::providers::azure::API_VERSION);
        // Streamed, with Azure's first chunk (no choices, only filter results) passed on.
        let resp = app.client.post(format!("{}/v1/chat/completions", app.base)).bearer_auth(&key)
            .json(&json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]})).send().await.unwrap();
        let chunks = events(&resp.text().await.unwrap());
        let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, "Azure says hello there");
        assert!(chunks.iter().all(|c| c.get("usage").is_none_or(Value::is_null)), "the usage chunk Tollgate asked for stays with Tollgate");
        let logs = app.get("/admin/v1/me/usage/logs?limit=1", Some(&admin)).await.expect(200);
        assert_eq!((logs.body["data"][0]["input_tokens"].as_i64(), logs.body["data"][0]["output_tokens"].as_i64()), (Some(9), Some(4)));
        // Embeddings at the same deployment shape; Azure's own errors reach the caller.
        app.post("/v1/embeddings", Some(&key), json!({"model": model, "input": "hi"})).await.expect(200);
        let missing = app.chat(&key, json!({"model": "az-missing", "messages": [{"role": "user", "content": "hi"}]})).await.expect_error(404, "upstream_rejected");
        assert!(missing.body["error"]["message"].as_str().unwrap().contains("deployment for this resource does not exist"), "{}", missing.text);
    }

    async fn a_users_own_provider_serves_their_keys_and_nobody_elses(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeAnthropic::start().await;
        let (admin, _) = app.admin().await;
        let (_, alice) = app.user(&admin, "alice@example.com", "viewer").await;
        let (_, bob) = app.user(&admin, "bob@example.com", "viewer").await;
        let mine = json!({"name": "my-claude", "provider_type": "anthropic", "base_url": fake.base_url, "api_key": API_KEY,
            "models": ["claude-upstream"], "config": {"note": "team account"}});
        // Credentials are tested for real before anything is saved.
        let ok = app.post("/admin/v1/me/providers/test-credentials", Some(&alice), mine.clone()).await.expect(200);
        assert_eq!(ok.body["status"], "ok", "{}", ok.text);
        assert!(ok.body["latency_ms"].as_i64().is_some());
        let mut wrong = mine.clone();
        wrong["api_key"] = json!("sk-ant-wrong-0123456789abcdef");
        let bad = app.post("/admin/v1/me/providers/test-credentials", Some(&alice), wrong).await.expect(200);
        assert_eq!(bad.body["status"], "error");
        assert!(bad.body["message"].as_str().unwrap().contains("invalid x-api-key"), "{}", bad.text);
        let mut away = mine.clone();
        away["base_url"] = json!("http://127.0.0.1:9");
        let unreachable = app.post("/admin/v1/me/providers/test-credentials", Some(&alice), away).await.expect(200);
        assert!(unreachable.body["message"].as_str().unwrap().contains("could not be reached"), "{}", unreachable.text);

        let created = app.post("/admin/v1/me/providers", Some(&alice), mine.clone()).await.expect(201);
        assert_eq!(created.body["has_api_key"], true);
        assert!(!created.text.contains(API_KEY), "the key never comes back");
        assert_eq!(created.body["config"], json!({"note": "team account"}));
        let id = created.body["id"].as_str().unwrap().to_string();
        app.post("/admin/v1/me/providers", Some(&alice), mine.clone()).await.expect_error(409, "provider_exists");
        let mut dotted = mine.clone();
        dotted["name"] = json!("..");
        app.post("/admin/v1/me/providers", Some(&alice), dotted).await.expect_error(400, "invalid_value");
        assert_eq!(app.post(&format!("/admin/v1/me/providers/{id}/test"), Some(&alice), json!({})).await.expect(200).body["status"], "ok");
        app.get(&format!("/admin/v1/me/providers/{id}"), Some(&bob)).await.expect_error(404, "not_found");

        // Alice's keys reach it as my-claude/<model>; the upstream is asked for <model>.
        let (_, alice_key) = app.api_key(&alice, json!({})).await;
        let ask = |model: &str| json!({"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]});
        let r = app.chat(&alice_key, ask("my-claude/claude-upstream")).await.expect(200);
        assert_eq!(r.body["choices"][0]["message"]["content"], ANSWER.join(" "));
        let (headers, sent) = fake.requests().pop().unwrap();
        assert_eq!((headers["x-api-key"].to_str().unwrap(), sent["model"].as_str().unwrap()), (API_KEY, "claude-upstream"));
        let request_id = r.headers["x-request-id"].to_str().unwrap();
        let record = tollgate::usage::by_request_id(app.state.store.as_ref(), request_id).await.unwrap().unwrap();
        assert_eq!((record.model.as_str(), record.provider_source.as_str(), record.provider.as_str()), ("my-claude/claude-upstream", "dynamic", "anthropic"));
        app.chat(&alice_key, ask("my-claude/other-model")).await.expect_error(404, "model_not_found");
        // Alice's keys list her own models; nobody else's do.
        let listed = |key: &str| {
            let key = key.to_string();
            let app = &app;
            async move {
                let r = app.get("/v1/models", Some(&key)).await.expect(200);
                r.body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
            }
        };
        assert!(listed(&alice_key).await.contains(&"my-claude/claude-upstream".to_string()));
        // Nobody else's key can use it, whatever it asks for.
        let (_, bob_key) = app.api_key(&bob, json!({})).await;
        app.chat(&bob_key, ask("my-claude/claude-upstream")).await.expect_error(404, "model_not_found");
        assert!(!listed(&bob_key).await.iter().any(|m| m.starts_with("my-claude/")));
        let (_, admin_key) = app.api_key(&admin, json!({})).await;
        app.chat(&admin_key, ask("my-claude/claude-upstream")).await.expect_error(404, "model_not_found");

        // Disabled, it stops serving at once; listing, paging and deleting.
        app.call(reqwest::Method::PATCH, &format!("/admin/v1/me/providers/{id}"), Some(&alice), Some(json!({"is_enabled": false}))).await.expect(200);
        app.chat(&alice_key, ask("my-claude/claude-upstream")).await.expect_error(404, "model_not_found");
        for name in ["second", "third"] {
            let mut other = mine.clone();
            other["name"] = json!(name);
            app.post("/admin/v1/me/providers", Some(&alice), other).await.expect(201);
        }
        let first = app.get("/admin/v1/me/providers?limit=2", Some(&alice)).await.expect(200);
        assert_eq!(first.body["data"].as_array().unwrap().len(), 2);
        assert_eq!(first.body["pagination"]["has_more"], true);
        let cursor = first.body["pagination"]["next_cursor"].as_str().unwrap();
        let second = app.get(&format!("/admin/v1/me/providers?limit=2&cursor={cursor}"), Some(&alice)).await.expect(200);
        assert_eq!(second.body["data"][0]["name"], "my-claude", "oldest last");
        app.delete(&format!("/admin/v1/me/providers/{id}"), Some(&alice)).await.expect(204);
        assert_eq!(app.get("/admin/v1/me/providers", Some(&alice)).await.expect(200).body["data"].as_array().unwrap().len(), 2);
        let all = app.get("/admin/v1/me/providers?include_deleted=true", Some(&alice)).await.expect(200);
        assert!(all.body["data"].as_array().unwrap().iter().any(|p| p["id"] == id.as_str() && p["deleted_at"].is_string()));
        assert!(app.state.secrets.get(&tollgate::dynamic_providers::secret_name(id.parse().unwrap())).await.unwrap().is_none(), "its key is destroyed");
        app.post("/admin/v1/me/providers", Some(&alice), mine.clone()).await.expect(201);

        // The deployment's own providers, listed without keys; an account's own go with it.
        app.post("/api/models", Some(&admin), json!({"id": "claude-test", "provider": "anthropic", "baseUrl": fake.base_url, "apiKey": API_KEY,
            "inputPrice": 3, "outputPrice": 15, "contextWindow": 200_000})).await.expect(201);
        let built_in = app.get("/admin/v1/me/built-in-providers", Some(&alice)).await.expect(200);
        assert_eq!(built_in.body["data"], json!([{"name": "anthropic", "provider_type": "anthropic", "base_url": fake.base_url}]));
        let gone = app.delete("/admin/v1/me", Some(&alice)).await.expect(200);
        assert_eq!(gone.body["dynamic_providers_deleted"], 3);
    }

    async fn sovereignty_requirements_decide_which_providers_may_serve_a_key(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let model = |id: &str, sovereignty: Value| json!({"id": id, "provider": "mock", "inputPrice": 0, "outputPrice": 0, "contextWindow": 4096, "sovereignty": sovereignty});
        app.post("/api/models", Some(&admin), model("eu-model", json!({"region": "eu-west-1", "zero_data_retention": true, "certifications": ["iso27001"]}))).await.expect(201);
        app.post("/api/models", Some(&admin), model("us-model", json!({"region": "us-east-1", "zero_data_retention": true}))).await.expect(201);
        app.post("/api/models", Some(&admin), model("plain", Value::Null)).await.expect(201);
        app.post("/api/models", Some(&admin), model("typo", json!({"regoin": "eu"}))).await.expect_error(400, "invalid_value");
        let strict = json!({"sovereignty_requirements": {"regions": ["eu-west-1", "eu-central-1"], "zero_data_retention": true}});
        let (_, key) = app.api_key(&admin, strict).await;
        let hi = |m: &str| json!({"model": m, "messages": [{"role": "user", "content": "hi"}]});
        app.chat(&key, hi("eu-model")).await.expect(200);
        let us = app.chat(&key, hi("us-model")).await.expect_error(403, "sovereignty_unmet");
        assert!(us.body["error"]["message"].as_str().unwrap().contains("region us-east-1 is not one of eu-west-1, eu-central-1"), "{}", us.text);
        let plain = app.chat(&key, hi("plain")).await.expect_error(403, "sovereignty_unmet");
        assert!(plain.body["error"]["message"].as_str().unwrap().contains("no region declared"), "{}", plain.text);
        // Through the Messages door too.
        let r = app.client.post(format!("{}/v1/messages", app.base)).header("x-api-key", &key)
            .json(&json!({"model": "us-model", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})).send().await.unwrap();
        assert_eq!(r.status(), 403);
        // A certification required and not held; a key without requirements goes anywhere.
        let (_, certified) = app.api_key(&admin, json!({"sovereignty_requirements": {"certifications": ["soc2"]}})).await;
        let refused = app.chat(&certified, hi("eu-model")).await.expect_error(403, "sovereignty_unmet");
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("certification soc2"), "{}", refused.text);
        let (_, open) = app.api_key(&admin, json!({})).await;
        for m in ["eu-model", "us-model", "plain"] {
            app.chat(&open, hi(m)).await.expect(200);
        }
        // A misspelled requirement is refused, never silently ignored.
        app.post("/admin/v1/me/api-keys", Some(&admin), json!({"name": "k", "sovereignty_requirements": {"region": "eu"}})).await.expect_error(400, "invalid_value");
    }

    async fn a_budget_never_rides_on_an_unpriced_model_of_your_own(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeAnthropic::start().await;
        let (admin, _) = app.admin().await;
        let mine = json!({"name": "mine", "provider_type": "anthropic", "base_url": fake.base_url, "api_key": API_KEY});
        app.post("/admin/v1/me/providers", Some(&admin), mine).await.expect(201);
        let ask = json!({"model": "mine/claude-upstream", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]});
        // Without a budget it is served (and costs $0: nothing prices it); count_tokens knows it.
        let (_, free) = app.api_key(&admin, json!({})).await;
        let counted = app.client.post(format!("{}/v1/messages/count_tokens", app.base)).header("x-api-key", &free)
            .json(&json!({"model": "mine/claude-upstream", "messages": [{"role": "user", "content": "hi"}]})).send().await.unwrap();
        assert_eq!(counted.json::<Value>().await.unwrap(), json!({"input_tokens": 13}));
        assert_eq!(app.chat(&free, ask.clone()).await.expect(200).headers["x-tollgate-cost-usd"], "0.000000");
        // A budget cannot hold a model nothing prices: refused, saying how to fix it.
        let (_, budgeted) = app.api_key(&admin, json!({"budget_limit_cents": 100})).await;
        let refused = app.chat(&budgeted, ask.clone()).await.expect_error(403, "model_unpriced");
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("\"claude-upstream\""), "{}", refused.text);
        // Priced in the catalog, it is reserved and charged at those prices.
        app.post("/api/models", Some(&admin), json!({"id": "claude-upstream", "provider": "anthropic", "inputPrice": 3.0, "outputPrice": 15.0,
            "cachedInputPrice": 0.3, "cacheWritePrice": 3.75, "contextWindow": 200_000})).await.expect(201);
        let served = app.chat(&budgeted, ask).await.expect(200);
        assert_eq!(served.headers["x-tollgate-cost-usd"], "0.000090", "12 x $3 + 3 x $0.30 + 2 x $3.75 + 3 x $15 per million, rounded up");
    }
}
