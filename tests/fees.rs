//! Every fee is metered or refused, on both backends: OpenAI's built-in tools, service tiers and
//! stored objects on the operator's catalog models, and models without prices.

use serde_json::{Value, json};
use tollgate_tests::{TestApp, backend_tests};

/// OpenAI's Responses and chat APIs, answering with one web search call and a message (10
/// tokens in, 5 out), as OpenAI's API reference shapes them.
async fn openai() -> String {
    let usage = json!({"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                       "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}});
    let responses = move |axum::Json(body): axum::Json<Value>| {
        let usage = usage.clone();
        async move {
            axum::Json(json!({"id": "resp_upstream", "object": "response", "created_at": 1, "status": "completed", "model": body["model"],
                "service_tier": body["service_tier"].as_str().unwrap_or("default"),
                "output": [
                    {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "weather"}},
                    {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}]}
                ],
                "usage": usage}))
        }
    };
    let chat = |axum::Json(body): axum::Json<Value>| async move {
        axum::Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Sunny."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}))
    };
    let app = axum::Router::new().route("/v1/responses", axum::routing::post(responses)).route("/v1/chat/completions", axum::routing::post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// A catalog model on the fake at $1000 per million tokens each way ($0.015 for 10 in, 5 out).
async fn setup(backend: tollgate_tests::Backend, extra: Value) -> (TestApp, String, String) {
    let app = TestApp::start(backend).await;
    let (admin, _) = app.admin().await;
    let base = openai().await;
    let mut model = json!({"id": "gpt-4o", "provider": "openai", "baseUrl": base, "apiKey": "sk-operator", "inputPrice": 1000, "outputPrice": 1000, "contextWindow": 128000});
    model.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    app.post("/api/models", Some(&admin), model).await.expect(201);
    let (_, key) = app.api_key(&admin, json!({})).await;
    (app, admin, key)
}

async fn last_cost(app: &TestApp, admin: &str) -> f64 {
    app.get("/api/usage?limit=1", Some(admin)).await.expect(200).body["records"][0]["cost"].as_f64().unwrap()
}

fn search() -> Value {
    json!({"model": "gpt-4o", "input": "Weather in Paris?", "tools": [{"type": "web_search_preview"}], "max_output_tokens": 50})
}

backend_tests! {
    async fn a_built_in_tool_is_refused_without_a_price_and_charged_per_call_with_one(backend) {
        let (app, admin, key) = setup(backend, json!({})).await;
        let refused = app.post("/v1/responses", Some(&key), search()).await.expect_error(400, "invalid_value");
        assert_eq!(refused.body["error"]["param"], "tools", "{}", refused.text);
        assert!(refused.text.contains("web_search") && refused.text.contains("toolCallPrices"), "{}", refused.text);
        app.put("/api/models/gpt-4o", Some(&admin), json!({"toolCallPrices": {"web_search": 0.01}})).await.expect(200);
        let unbounded = app.post("/v1/responses", Some(&key), search()).await.expect_error(400, "invalid_value");
        assert_eq!(unbounded.body["error"]["param"], "max_tool_calls", "{}", unbounded.text);
        let mut bounded = search();
        bounded["max_tool_calls"] = json!(2);
        let served = app.post("/v1/responses", Some(&key), bounded.clone()).await.expect(200);
        assert_eq!(served.headers["x-tollgate-cost-usd"], "0.025000", "15 tokens at $0.001 and one search at $0.01: {}", served.text);
        assert!((last_cost(&app, &admin).await - 0.025).abs() < 1e-9);
        // The reservation holds every call's fee: 100 calls at $0.01 do not fit a 50-cent budget
        // that the tokens alone (at most ~$0.15) would.
        let (_, poor) = app.api_key(&admin, json!({"budget_limit_cents": 50})).await;
        app.post("/v1/responses", Some(&poor), bounded.clone()).await.expect(200);
        bounded["max_tool_calls"] = json!(100);
        let refused = app.post("/v1/responses", Some(&poor), bounded).await.expect_error(402, "budget_exceeded");
        assert!(refused.text.contains("worst case"), "{}", refused.text);
        // Chat's web search is one call.
        app.put("/api/models/gpt-4o", Some(&admin), json!({"toolCallPrices": {}})).await.expect(200);
        let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Weather?"}], "web_search_options": {}});
        let refused = app.chat(&key, chat.clone()).await.expect_error(400, "invalid_value");
        assert_eq!(refused.body["error"]["param"], "web_search_options");
        app.put("/api/models/gpt-4o", Some(&admin), json!({"toolCallPrices": {"web_search": 0.02}})).await.expect(200);
        app.chat(&key, chat).await.expect(200);
        assert!((last_cost(&app, &admin).await - 0.035).abs() < 1e-9, "15 tokens and one search at $0.02");
        app.put("/api/models/gpt-4o", Some(&admin), json!({"toolCallPrices": {"teleport": 1}})).await.expect_error(400, "invalid_value");
    }

    async fn a_service_tier_is_billed_at_its_multiplier_or_refused(backend) {
        let (app, admin, key) = setup(backend, json!({})).await;
        let ask = |tier: &str| json!({"model": "gpt-4o", "input": "hi", "service_tier": tier, "max_output_tokens": 50});
        for tier in ["priority", "flex"] {
            let refused = app.post("/v1/responses", Some(&key), ask(tier)).await.expect_error(400, "invalid_value");
            assert_eq!(refused.body["error"]["param"], "service_tier", "{}", refused.text);
            let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "service_tier": tier});
            app.chat(&key, chat).await.expect_error(400, "invalid_value");
        }
        app.put("/api/models/gpt-4o", Some(&admin), json!({"serviceTierMultipliers": {"priority": 2.0, "flex": 0.5}})).await.expect(200);
        // The fake's answer also carries a web search; this model prices none, so price it at 0.
        app.put("/api/models/gpt-4o", Some(&admin), json!({"toolCallPrices": {"web_search": 0}})).await.expect(200);
        app.post("/v1/responses", Some(&key), ask("auto")).await.expect(200);
        let standard = last_cost(&app, &admin).await;
        app.post("/v1/responses", Some(&key), ask("priority")).await.expect(200);
        assert!((last_cost(&app, &admin).await - 2.0 * standard).abs() < 1e-9, "priority at twice the price");
        app.chat(&key, json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "service_tier": "flex"})).await.expect(200);
        assert!((last_cost(&app, &admin).await - 0.5 * standard).abs() < 1e-9, "flex at half");
    }

    async fn provider_side_objects_need_the_models_permission(backend) {
        let (app, admin, key) = setup(backend, json!({})).await;
        let cases = [
            (json!({"model": "gpt-4o", "prompt": {"id": "pmpt_operator"}, "input": "hi"}), "prompt"),
            (json!({"model": "gpt-4o", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-operator"}]}]}), "input"),
            (json!({"model": "gpt-4o", "input": "hi", "max_tool_calls": 1, "tools": [{"type": "file_search", "vector_store_ids": ["vs_operator"]}]}), "tools"),
        ];
        app.put("/api/models/gpt-4o", Some(&admin), json!({"toolCallPrices": {"file_search": 0.0025, "web_search": 0}})).await.expect(200);
        for (body, param) in &cases {
            let refused = app.post("/v1/responses", Some(&key), body.clone()).await.expect_error(400, "invalid_value");
            assert_eq!(refused.body["error"]["param"], *param, "{}", refused.text);
        }
        let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-operator"}}]}]});
        assert_eq!(app.chat(&key, chat).await.expect_error(400, "invalid_value").body["error"]["param"], "messages");
        app.put("/api/models/gpt-4o", Some(&admin), json!({"allowProviderObjects": true})).await.expect(200);
        for (body, _) in cases {
            app.post("/v1/responses", Some(&key), body).await.expect(200);
        }
    }

    async fn token_counts_an_upstream_reports_below_zero_are_taken_for_none(backend) {
        // A user's own upstream may report anything. Negative counts used to panic the flight
        // (cached tokens clamped between 0 and a negative input) and leave it unsettled, or
        // lower the key's token counters.
        let chat = |axum::Json(body): axum::Json<Value>| async move {
            axum::Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Sunny."}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": -5, "completion_tokens": -3, "total_tokens": -8,
                          "prompt_tokens_details": {"cached_tokens": -2}, "completion_tokens_details": {"reasoning_tokens": -1}}}))
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, axum::Router::new().route("/v1/chat/completions", axum::routing::post(chat))).await.unwrap() });
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.post("/api/models", Some(&admin), json!({"id": "odd", "provider": "openai", "baseUrl": base, "apiKey": "sk-operator", "inputPrice": 1000, "outputPrice": 1000, "contextWindow": 128000})).await.expect(201);
        let (_, key) = app.api_key(&admin, json!({"rate_limit_tpm": 100000})).await;
        app.chat(&key, json!({"model": "odd", "max_tokens": 20, "messages": [{"role": "user", "content": "Weather in Paris?"}]})).await.expect(200);
        let record = app.get("/api/usage?limit=1", Some(&admin)).await.expect(200).body["records"][0].clone();
        let count = |field: &str| record[field].as_i64().unwrap_or_else(|| panic!("{field}: {record}"));
        // Taken for no usage reported: the input as estimated from the request, no output
        // counted, no cached or reasoning tokens; and the cost of what was counted.
        assert!(count("inputTokens") > 0, "{record}");
        assert_eq!((count("outputTokens"), count("cachedTokens"), count("reasoningTokens")), (0, 0, 0), "{record}");
        assert!(record["cost"].as_f64().unwrap() > 0.0, "{record}");
    }

    async fn a_model_without_prices_is_refused_not_metered_at_zero(backend) {
        let (app, admin, key) = setup(backend, json!({"inputPrice": 0, "outputPrice": 0})).await;
        let refused = app.chat(&key, json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})).await.expect_error(403, "model_unpriced");
        assert!(refused.text.contains("gpt-4o"), "{}", refused.text);
        app.put("/api/models/gpt-4o", Some(&admin), json!({"outputPrice": 1})).await.expect(200);
        app.chat(&key, json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        // The built-in mock spends nothing, and may be free.
        app.model(&admin, "mock-free", 0.0, 0.0, None).await;
        app.chat(&key, json!({"model": "mock-free", "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
    }
}
