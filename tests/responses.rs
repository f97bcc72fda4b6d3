//! OpenAI's Responses API (`/v1/responses`) on both backends: translated over the canonical
//! request to the mock, natively to an OpenAI upstream (a local fake speaking the Responses
//! wire), streamed and not; stored responses owned by the key's owner, continued with
//! `previous_response_id` (reserved and charged), listed, deleted, expired; and what only
//! OpenAI can serve refused elsewhere.

use serde_json::{Value, json};
use tollgate_tests::upstream::{FakeUpstream, USAGE};
use tollgate_tests::{Resp, TestApp, backend_tests};

async fn create(app: &TestApp, key: &str, body: Value) -> Resp {
    app.post("/v1/responses", Some(key), body).await
}

/// Every event of a Responses stream: (the `event:` name, the data).
async fn stream(app: &TestApp, key: &str, body: Value) -> Vec<(String, Value)> {
    let resp = app.client.post(format!("{}/v1/responses", app.base)).bearer_auth(key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let (name, data) = e.trim().split_once("\ndata: ").unwrap_or_else(|| panic!("an event with a name: {e:?}"));
            (name.strip_prefix("event: ").unwrap().to_string(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

async fn record(app: &TestApp, admin: &str, r: &Resp) -> Value {
    let id = r.headers["x-request-id"].to_str().unwrap();
    app.get(&format!("/api/usage/{id}"), Some(admin)).await.expect(200).body
}

fn text_of(response: &Value) -> String {
    response["output"].as_array().unwrap().iter().filter(|i| i["type"] == "message").map(|i| i["content"][0]["text"].as_str().unwrap()).collect()
}

backend_tests! {
    async fn responses_are_translated_to_any_provider_and_stored_for_their_owner(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 2.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let r = create(&app, &key, json!({"model": "mock-1", "instructions": "Be brief.", "input": "hello there", "metadata": {"run": "7"}})).await.expect(200);
        let response = r.body.clone();
        let id = response["id"].as_str().unwrap().to_string();
        assert!(id.starts_with("resp_"), "{id}");
        assert_eq!((response["object"].as_str(), response["status"].as_str()), (Some("response"), Some("completed")));
        assert!(text_of(&response).ends_with("hello there"), "{}", r.text);
        assert_eq!(response["output"][0]["role"], "assistant");
        assert_eq!(response["instructions"], "Be brief.");
        assert_eq!(response["metadata"], json!({"run": "7"}));
        // The mock counts words: "Be brief." and "hello there" are 4 input tokens.
        assert_eq!(response["usage"]["input_tokens"], 4);
        let output = response["usage"]["output_tokens"].as_i64().unwrap();
        assert_eq!(response["usage"]["total_tokens"], 4 + output);
        let rec = record(&app, &admin, &r).await;
        assert_eq!((rec["endpoint"].as_str(), rec["inputTokens"].as_i64()), (Some("responses"), Some(4)), "{rec}");
        // Stored: read back as answered, its own input listed.
        let read = app.get(&format!("/v1/responses/{id}"), Some(&key)).await.expect(200);
        assert_eq!(read.body, response);
        let items = app.get(&format!("/v1/responses/{id}/input_items"), Some(&key)).await.expect(200);
        assert_eq!(items.body["data"].as_array().unwrap().len(), 1, "{}", items.text);
        assert_eq!(items.body["data"][0]["content"], "hello there");
        assert_eq!(items.body["has_more"], false);
        // Another key of the same owner reads it; another owner's key finds nothing.
        let (_, same_owner) = app.api_key(&admin, json!({})).await;
        app.get(&format!("/v1/responses/{id}"), Some(&same_owner)).await.expect(200);
        let (_, user) = app.user(&admin, "u@example.com", "viewer").await;
        let (_, other) = app.api_key(&user, json!({})).await;
        app.get(&format!("/v1/responses/{id}"), Some(&other)).await.expect_error(404, "not_found");
        app.get(&format!("/v1/responses/{id}/input_items"), Some(&other)).await.expect_error(404, "not_found");
        app.delete(&format!("/v1/responses/{id}"), Some(&other)).await.expect_error(404, "not_found");
        let stolen = create(&app, &other, json!({"model": "mock-1", "input": "more", "previous_response_id": id})).await.expect(400);
        assert_eq!(stolen.body["error"]["param"], "previous_response_id");
        // Continued: the conversation so far is the input too, reserved and charged (the earlier
        // instructions are not carried over, as OpenAI documents: 2 + output + 2 words).
        let next = create(&app, &key, json!({"model": "mock-1", "input": "and again", "previous_response_id": id})).await.expect(200);
        let carried = 2 + output + 2;
        assert_eq!(next.body["usage"]["input_tokens"], carried, "the earlier turns are input: {}", next.text);
        assert_eq!(next.body["previous_response_id"], id.as_str());
        assert_eq!(record(&app, &admin, &next).await["inputTokens"], carried);
        let next_id = next.body["id"].as_str().unwrap();
        let own = app.get(&format!("/v1/responses/{next_id}/input_items"), Some(&key)).await.expect(200);
        assert_eq!(own.body["data"].as_array().unwrap().len(), 1, "only its own input: {}", own.text);
        // Deleted: gone for reading and continuing.
        let deleted = app.delete(&format!("/v1/responses/{id}"), Some(&key)).await.expect(200);
        assert_eq!(deleted.body, json!({"id": id, "object": "response", "deleted": true}));
        app.get(&format!("/v1/responses/{id}"), Some(&key)).await.expect_error(404, "not_found");
        create(&app, &key, json!({"model": "mock-1", "input": "x", "previous_response_id": id})).await.expect(400);
        // Not stored when asked not to be; expired after the TTL (30 days).
        let unstored = create(&app, &key, json!({"model": "mock-1", "input": "x", "store": false})).await.expect(200);
        assert_eq!(unstored.body["store"], false);
        app.get(&format!("/v1/responses/{}", unstored.body["id"].as_str().unwrap()), Some(&key)).await.expect_error(404, "not_found");
        app.clock.advance(chrono::Duration::days(31));
        app.get(&format!("/v1/responses/{next_id}"), Some(&key)).await.expect_error(404, "not_found");
        app.get("/v1/responses/not-an-id", Some(&key)).await.expect_error(404, "not_found");
        app.get(&format!("/v1/responses/{next_id}"), None).await.expect_error(401, "missing_api_key");
    }

    async fn the_conversation_a_response_continues_is_in_the_reservation(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        // $1 per million input tokens, $0 output: a request's worst case is its input bytes
        // (plus framing) at $1/M.
        let model = json!({"id": "cheap", "provider": "mock", "inputPrice": 1.0, "outputPrice": 0.0, "contextWindow": 100_000});
        app.post("/api/models", Some(&admin), model).await.expect(201);
        let (_, key) = app.api_key(&admin, json!({})).await;
        let long = "word ".repeat(3000);
        let first = create(&app, &key, json!({"model": "cheap", "input": long, "max_output_tokens": 5})).await.expect(200);
        let id = first.body["id"].as_str().unwrap();
        // A budget of $0.01 holds a short request, not one carrying the 15,000-byte turn.
        let (_, tight) = app.api_key(&admin, json!({"budget_limit_cents": 1})).await;
        create(&app, &tight, json!({"model": "cheap", "input": "short", "max_output_tokens": 5})).await.expect(200);
        let carried = app.post("/v1/responses", Some(&tight), json!({"model": "cheap", "input": "short", "max_output_tokens": 5, "previous_response_id": id})).await;
        // The same owner's other key may continue it: refused only by its budget, which the
        // earlier turn's bytes exceed.
        assert_eq!(carried.status, 402, "{}", carried.text);
        assert_eq!(carried.body["error"]["code"], "budget_exceeded");
        // A conversation past one item's 400 KB is stored in parts and read back whole.
        let big = format!("{} [mock:words=3]", "ab ".repeat(150_000));
        let stored = create(&app, &key, json!({"model": "cheap", "input": big})).await.expect(200);
        let items = app.get(&format!("/v1/responses/{}/input_items", stored.body["id"].as_str().unwrap()), Some(&key)).await.expect(200);
        assert_eq!(items.body["data"][0]["content"].as_str().map(str::len), Some(big.len()));
    }

    async fn responses_stream_typed_events_over_any_provider(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 2.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let tools = json!([{"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}]);
        let events = stream(&app, &key, json!({"model": "mock-1", "input": "weather? [mock:tool]", "tools": tools, "stream": true})).await;
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..2], ["response.created", "response.in_progress"]);
        assert_eq!(names.last(), Some(&"response.completed"));
        assert!(names.contains(&"response.output_text.delta") && names.contains(&"response.function_call_arguments.done"), "{names:?}");
        for (n, (name, data)) in events.iter().enumerate() {
            assert_eq!((data["type"].as_str(), data["sequence_number"].as_i64()), (Some(name.as_str()), Some(n as i64)));
        }
        let done = &events.last().unwrap().1["response"];
        assert_eq!(done["output"][1]["type"], "function_call");
        assert_eq!(done["output"][1]["name"], "weather");
        assert!(done["usage"]["input_tokens"].as_i64().unwrap() > 0);
        let stored = app.get(&format!("/v1/responses/{}", done["id"].as_str().unwrap()), Some(&key)).await.expect(200);
        assert_eq!(&stored.body, done, "the stream's final response is what is stored");
        // The tool's result goes back with previous_response_id, as agents do.
        let call_id = done["output"][1]["call_id"].clone();
        let next = create(&app, &key, json!({"model": "mock-1", "previous_response_id": done["id"], "tools": tools,
            "input": [{"type": "function_call_output", "call_id": call_id, "output": "sunny"}]})).await.expect(200);
        assert_eq!(next.body["status"], "completed");
    }

    async fn openai_models_take_responses_natively(backend) {
        let app = TestApp::start(backend).await;
        let upstream = FakeUpstream::start().await;
        let (admin, _) = app.admin().await;
        let model = json!({"id": "gpt-up", "provider": "openai", "baseUrl": upstream.base_url, "apiKey": "sk-up-0123456789abcdef",
            "inputPrice": 1.0, "cachedInputPrice": 0.5, "outputPrice": 2.0, "contextWindow": 8192, "toolCallPrices": {"web_search": 0.01}});
        app.post("/api/models", Some(&admin), model).await.expect(201);
        app.model(&admin, "mock-1", 1.0, 2.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let web = json!([{"type": "web_search"}]);
        let r = create(&app, &key, json!({"model": "gpt-up", "input": "hi", "tools": web, "max_tool_calls": 1})).await.expect(200);
        let id = r.body["id"].as_str().unwrap();
        assert_ne!(id, "resp_upstream_1", "the response is ours");
        assert_eq!(text_of(&r.body), "upstream says hello");
        let (headers, sent) = upstream.requests().pop().unwrap();
        assert_eq!(headers["authorization"], "Bearer sk-up-0123456789abcdef");
        assert_eq!(sent["tools"], web, "OpenAI's own tools go to OpenAI");
        assert_eq!(sent["store"], false, "the gateway keeps the response, not the upstream");
        let (input, output, cached, reasoning) = USAGE;
        let rec = record(&app, &admin, &r).await;
        assert_eq!((rec["inputTokens"].as_i64(), rec["outputTokens"].as_i64()), (Some(input), Some(output)), "{rec}");
        assert_eq!((rec["cachedTokens"].as_i64(), rec["reasoningTokens"].as_i64()), (Some(cached), Some(reasoning)));
        // Continued: the whole conversation goes as input (OpenAI does not know our ids).
        let next = create(&app, &key, json!({"model": "gpt-up", "input": "more", "previous_response_id": id})).await.expect(200);
        let sent = upstream.requests().pop().unwrap().1;
        assert!(sent.get("previous_response_id").is_none(), "{sent}");
        let texts: Vec<Value> = sent["input"].as_array().unwrap().iter().map(|i| i["content"].clone()).collect();
        assert_eq!(texts[0], "hi");
        assert_eq!(texts[1][0]["text"], "upstream says hello");
        assert_eq!(texts[2], "more");
        assert!(sent["input"][1].get("id").is_none(), "no ids OpenAI never stored");
        assert_eq!(next.body["previous_response_id"], id);
        // Streamed: OpenAI's events, under our id, usage from response.completed.
        let events = stream(&app, &key, json!({"model": "gpt-up", "input": "hi", "stream": true})).await;
        let delta: String = events.iter().filter(|(n, _)| n == "response.output_text.delta").map(|(_, d)| d["delta"].as_str().unwrap()).collect();
        assert_eq!(delta, "upstream says hello");
        let done = &events.last().unwrap().1;
        assert_eq!(done["type"], "response.completed");
        let ours = done["response"]["id"].as_str().unwrap();
        assert!(ours.starts_with("resp_") && ours != "resp_upstream_1");
        assert_eq!(events[0].1["response"]["id"], ours);
        let stored = app.get(&format!("/v1/responses/{ours}"), Some(&key)).await.expect(200);
        assert_eq!(stored.body["usage"]["input_tokens_details"]["cached_tokens"], cached);
        // OpenAI's own tools reach no other provider: a 400 that names them, nothing sent.
        let refused = create(&app, &key, json!({"model": "mock-1", "input": "hi", "tools": web})).await.expect(400);
        assert_eq!(refused.body["error"]["param"], "tools");
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("web_search"), "{}", refused.text);
    }

    async fn bad_responses_requests_say_what_to_fix(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 2.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        for (body, param) in [
            (json!({"input": "hi"}), "model"),
            (json!({"model": "mock-1"}), "input"),
            (json!({"model": "mock-1", "input": []}), "input"),
            (json!({"model": "mock-1", "input": [1]}), "input"),
            (json!({"model": "mock-1", "input": "hi", "background": true}), "background"),
            (json!({"model": "mock-1", "input": "hi", "store": "yes"}), "store"),
            (json!({"model": "mock-1", "input": "hi", "max_output_tokens": 0}), "max_output_tokens"),
            (json!({"model": "mock-1", "input": "hi", "previous_response_id": 5}), "previous_response_id"),
            (json!({"model": "mock-1", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}), "input"),
            (json!({"model": "mock-1", "input": "hi", "text": {"format": {"type": "xml"}}}), "text.format"),
        ] {
            let r = create(&app, &key, body.clone()).await.expect(400);
            assert_eq!(r.body["error"]["param"], param, "{body}: {}", r.text);
        }
        let (_, embed_only) = app.api_key(&admin, json!({"scopes": ["embeddings"]})).await;
        create(&app, &embed_only, json!({"model": "mock-1", "input": "hi"})).await.expect_error(403, "insufficient_scope");
        app.get("/v1/responses/resp_0/input_items?limit=0", Some(&key)).await.expect_error(404, "not_found");
    }

    async fn a_model_served_only_on_the_responses_api_takes_chat_and_messages_requests(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeUpstream::start().await;
        let (admin, _) = app.admin().await;
        let created = app.post("/api/models", Some(&admin), json!({"id": "o3-pro", "provider": "openai", "baseUrl": fake.base_url, "apiKey": "sk-x",
            "inputPrice": 20.0, "outputPrice": 80.0, "contextWindow": 200000, "maxOutputTokens": 1000, "upstreamApi": "responses"})).await.expect(201);
        assert_eq!(created.body["upstreamApi"], "responses");
        let (_, key) = app.api_key(&admin, json!({})).await;
        // Chat completions, whole: translated to a Responses request and its answer back.
        let r = app.chat(&key, json!({"model": "o3-pro", "max_tokens": 50, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]})).await.expect(200);
        assert_eq!(r.body["object"], "chat.completion");
        assert_eq!(r.body["choices"][0]["message"]["content"], "upstream says hello");
        assert_eq!(r.body["usage"]["prompt_tokens"], USAGE.0);
        let (_, sent) = fake.requests().pop().unwrap();
        assert!(sent.get("messages").is_none() && sent["input"].is_array(), "{sent}");
        assert_eq!((sent["max_output_tokens"].as_i64(), sent["store"].as_bool()), (Some(50), Some(false)));
        // 7 x $20 + 5 x $80 per million.
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000540");
        // Streamed: Responses events become chat chunks.
        let streamed = app.chat(&key, json!({"model": "o3-pro", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        assert!(streamed.text.contains("chat.completion.chunk") && streamed.text.ends_with("data: [DONE]\n\n"), "{}", streamed.text);
        let words: String = streamed.text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v.pointer("/choices/0/delta/content").and_then(Value::as_str).map(str::to_string)).collect();
        assert_eq!(words, "upstream says hello");
        // Anthropic's Messages door too.
        let messages = app.client.post(format!("{}/v1/messages", app.base)).header("x-api-key", &key)
            .json(&json!({"model": "o3-pro", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]})).send().await.unwrap();
        let messages: Value = messages.json().await.unwrap();
        assert_eq!(messages["content"][0]["text"], "upstream says hello", "{messages}");
        // A Responses request goes as it is.
        let native = create(&app, &key, json!({"model": "o3-pro", "input": "hi"})).await.expect(200);
        assert_eq!(native.body["object"], "response");
        // Only OpenAI's wire serves the Responses API.
        app.post("/api/models", Some(&admin), json!({"id": "claude-x", "provider": "anthropic", "apiKey": "k", "inputPrice": 1.0, "outputPrice": 1.0,
            "contextWindow": 1000, "upstreamApi": "responses"})).await.expect_error(400, "invalid_value");
    }
}
