//! Budgets that fit real models and prices as providers charge them, on both backends: the
//! worst case a request reserves is tight (output at max_tokens or the model's own cap, input
//! bounded by the text sent), a refusal says what would fit, a key that opted in is served
//! with max_tokens lowered instead, and each token class is charged at its own price.

use serde_json::{Value, json};
use tollgate_tests::{TestApp, backend_tests};

async fn model(app: &TestApp, admin: &str, spec: Value) {
    let mut body = json!({"provider": "mock", "contextWindow": 4096});
    body.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    app.post("/api/models", Some(admin), body).await.expect(201);
}

fn ask(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hello [mock:words=40]"}]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

backend_tests! {
    async fn a_hello_on_a_million_token_model_fits_a_five_dollar_budget(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        // $2 in / $8 out per million tokens, a 1,000,000-token window.
        model(&app, &admin, json!({"id": "big", "inputPrice": 2.0, "outputPrice": 8.0, "contextWindow": 1_000_000, "maxOutputTokens": 32_768})).await;
        model(&app, &admin, json!({"id": "big-uncapped", "inputPrice": 2.0, "outputPrice": 8.0, "contextWindow": 1_000_000})).await;
        let shown = app.get("/api/models/big", Some(&admin)).await.expect(200);
        assert_eq!(shown.body["maxOutputTokens"], 32_768);
        assert_eq!(app.get("/api/models/big-uncapped", Some(&admin)).await.expect(200).body["maxOutputTokens"], 1_000_000, "the context window when unset");
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 500, "budget_period": "monthly"})).await;
        // No max_tokens: the reservation is the model's output cap (32,768 x $8/M = $0.26).
        let served = app.chat(&key, ask("big", json!({}))).await.expect(200);
        assert_eq!(served.headers["x-budget-limit-usd"], "5.000000");
        // Without a cap the whole window is the worst case ($8): refused, saying what would fit.
        let refused = app.chat(&key, ask("big-uncapped", json!({}))).await.expect_error(402, "budget_exceeded");
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("worst case is $8.0000"), "{message}");
        assert!(message.contains("1000000 output tokens"), "{message}");
        let fits: i64 = message.split("max_tokens: ").nth(1).and_then(|m| m.split(' ').next()).and_then(|n| n.parse().ok()).expect(message);
        assert!(fits > 600_000 && fits < 625_000, "what is left ($5 less the first answer) over $8/M: {fits}");
        // And it does fit.
        app.chat(&key, ask("big-uncapped", json!({"max_tokens": fits}))).await.expect(200);
        app.post("/api/models", Some(&admin), json!({"id": "bad", "provider": "mock", "inputPrice": 1, "outputPrice": 1, "contextWindow": 100, "maxOutputTokens": 101}))
            .await
            .expect_error(400, "invalid_value");
    }

    async fn a_hi_with_five_tokens_fits_a_cent_at_a_hundred_dollars_per_million(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        model(&app, &admin, json!({"id": "dear", "inputPrice": 100.0, "outputPrice": 100.0, "contextWindow": 128_000})).await;
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 1, "budget_period": "monthly"})).await;
        // Worst case: "user" + "hi" (6 bytes) + 7 framing = 13 input tokens, 5 output: $0.0018.
        // The tools' definitions are text the prompt carries, so they count; JSON syntax,
        // field names and other parameters do not.
        let padded = json!({"model": "dear", "max_tokens": 5, "temperature": 0.2, "metadata": {"purpose": "x".repeat(300)},
            "messages": [{"role": "user", "content": "hi"}]});
        app.chat(&key, padded).await.expect(200);
        let tools = json!([{"type": "function", "function": {"name": "lookup", "description": "d".repeat(2000), "parameters": {"type": "object"}}}]);
        let refused = app.chat(&key, json!({"model": "dear", "max_tokens": 5, "tools": tools, "messages": [{"role": "user", "content": "hi"}]})).await;
        refused.expect_error(402, "budget_exceeded");
    }

    async fn a_key_that_opted_in_is_served_with_max_tokens_lowered_to_what_is_left(backend) {
        let app = TestApp::start(backend).await;
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        // Output $1000 per million: 0.1 cent a token; input free.
        model(&app, &admin, json!({"id": "m", "inputPrice": 0.0, "outputPrice": 1000.0})).await;
        let (key_id, key) = app.api_key(&admin, json!({"budget_limit_cents": 3, "budget_period": "monthly", "fit_max_tokens": true})).await;
        assert_eq!(app.get(&format!("/admin/v1/me/api-keys/{key_id}"), Some(&admin)).await.expect(200).body["fit_max_tokens"], true);
        // 4096 output tokens would cost $4.10: lowered to the 30 tokens 3 cents pay for.
        let first = app.chat(&key, ask("m", json!({}))).await.expect(200);
        assert_eq!(first.headers["x-tollgate-max-tokens-lowered"], "30");
        assert_eq!(first.body["usage"]["completion_tokens"], 30, "the upstream was asked for 30");
        assert_eq!(first.body["choices"][0]["finish_reason"], "length");
        assert_eq!(first.headers["x-budget-remaining-usd"], "0.000000");
        // Nothing is left: not even one token fits, and the refusal says so.
        let refused = app.chat(&key, ask("m", json!({}))).await.expect_error(402, "budget_exceeded");
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("no max_tokens would make it fit"), "{}", refused.text);
        // A request that fits is never lowered.
        let (_, roomy) = app.api_key(&admin, json!({"budget_limit_cents": 1000, "budget_period": "monthly", "fit_max_tokens": true})).await;
        let r = app.chat(&roomy, ask("m", json!({"max_tokens": 10}))).await.expect(200);
        assert!(r.headers.get("x-tollgate-max-tokens-lowered").is_none());
        // Without the opt-in, the same request is refused and told what would fit.
        let (_, plain) = app.api_key(&admin, json!({"budget_limit_cents": 3, "budget_period": "monthly"})).await;
        let refused = app.chat(&plain, ask("m", json!({}))).await.expect_error(402, "budget_exceeded");
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("max_tokens: 30 would fit"), "{}", refused.text);

        // Project tokens opt in too, and a streamed answer says so as well.
        app.post("/api/projects", Some(&admin), json!({"name": "App", "slug": "app", "models": ["m"]})).await.expect(201);
        let token = app
            .post("/api/projects/app/tokens", Some(&admin), json!({"name": "t", "fitMaxTokens": true, "limits": [{"metric": "cost", "limit": 0.005, "window": "daily"}]}))
            .await
            .expect(201);
        assert_eq!(token.body["fitMaxTokens"], true);
        let streamed = app
            .client
            .post(format!("{}/v1/chat/completions", app.base))
            .bearer_auth(token.body["token"].as_str().unwrap())
            .json(&ask("m", json!({"stream": true})))
            .send()
            .await
            .unwrap();
        assert_eq!(streamed.status(), 200);
        assert_eq!(streamed.headers()["x-tollgate-max-tokens-lowered"], "5");
        let text = streamed.text().await.unwrap();
        assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    }

    async fn each_token_class_is_charged_at_its_own_price(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        // Claude-like prices: $3 in, $0.30 cache read, $3.75 cache write, $15 out (per million).
        model(&app, &admin, json!({"id": "claude-like", "inputPrice": 3.0, "cachedInputPrice": 0.3, "cacheWritePrice": 3.75, "outputPrice": 15.0})).await;
        let shown = app.get("/api/models/claude-like", Some(&admin)).await.expect(200);
        assert_eq!((shown.body["cachedInputPrice"].as_f64(), shown.body["cacheWritePrice"].as_f64()), (Some(0.3), Some(3.75)));
        let (_, key) = app.api_key(&admin, json!({})).await;
        // 10 prompt words: 4 read from the cache, 3 written to it, 3 plain; 5 output words.
        let prompt = "a b c d e f g [mock:words=5] [mock:cached=4] [mock:cache_write=3]";
        let r = app.chat(&key, json!({"model": "claude-like", "messages": [{"role": "user", "content": prompt}]})).await.expect(200);
        assert_eq!(r.body["usage"]["prompt_tokens"], 10);
        assert_eq!(r.body["usage"]["prompt_tokens_details"]["cache_write_tokens"], 3);
        // 3 x 3 + 4 x 0.3 + 3 x 3.75 + 5 x 15 = 96.45 micro-dollars, rounded up once: 97.
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000097");
        let id = r.headers["x-request-id"].to_str().unwrap();
        let record = app.get(&format!("/api/usage/{id}"), Some(&admin)).await.expect(200);
        assert_eq!(record.body["cachedTokens"], 4);
        assert_eq!(record.body["cacheWriteTokens"], 3);
        assert_eq!(record.body["prices"], json!({"input": 3.0, "cachedInput": 0.3, "cacheWrite": 3.75, "cacheWrite1h": 3.75, "output": 15.0}), "the prices it was charged at");
        // A price change later does not change what the record says.
        app.put("/api/models/claude-like", Some(&admin), json!({"cacheWritePrice": 5.0})).await.expect(200);
        assert_eq!(app.get(&format!("/api/usage/{id}"), Some(&admin)).await.expect(200).body["prices"]["cacheWrite"], 3.75);
    }

    async fn model_ids_follow_one_pattern(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        for bad in ["..", ".", "a..b", "-lead", "trail.", "a/b", "a b"] {
            let r = app.post("/api/models", Some(&admin), json!({"id": bad, "provider": "mock", "inputPrice": 1, "outputPrice": 1, "contextWindow": 100})).await;
            r.expect_error(400, "invalid_value");
        }
        for good in ["claude-sonnet-4-5@20250929", "anthropic.claude-3-haiku-20240307-v1:0", "llama3.1:8b"] {
            app.post("/api/models", Some(&admin), json!({"id": good, "provider": "mock", "inputPrice": 1, "outputPrice": 1, "contextWindow": 100})).await.expect(201);
        }
    }

    async fn refusals_tell_the_keys_standing_like_served_answers(backend) {
        let app = TestApp::start(backend).await;
        // One window for the whole test, whatever the wall clock says.
        app.clock.set("2031-03-15T12:00:01Z".parse().unwrap());
        let (admin, _) = app.admin().await;
        model(&app, &admin, json!({"id": "m", "inputPrice": 0.0, "outputPrice": 1000.0})).await;
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 3, "budget_period": "monthly", "rate_limit_rpm": 2})).await;
        // Again, now that setup is done: the window's slices below are counted from here.
        app.clock.set("2031-03-15T12:00:01Z".parse().unwrap());
        app.chat(&key, ask("m", json!({"max_tokens": 10}))).await.expect(200);
        let poor = app.chat(&key, ask("m", json!({"max_tokens": 50}))).await.expect_error(402, "budget_exceeded");
        let header = |r: &tollgate_tests::Resp, name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(header(&poor, "x-budget-limit-usd").as_deref(), Some("0.030000"));
        assert_eq!(header(&poor, "x-budget-remaining-usd").as_deref(), Some("0.020000"));
        assert_eq!(header(&poor, "x-budget-reset-at").as_deref(), Some("2031-04-01T00:00:00+00:00"));
        assert_eq!(header(&poor, "x-ratelimit-limit-requests").as_deref(), Some("2"));
        assert_eq!(header(&poor, "x-ratelimit-remaining-requests").as_deref(), Some("1"), "a refused request is not counted");
        app.chat(&key, ask("m", json!({"max_tokens": 10}))).await.expect(200);
        // (Set again: the seconds above must not shift what the refusal says below.)
        app.clock.set("2031-03-15T12:00:01Z".parse().unwrap());
        let busy = app.chat(&key, ask("m", json!({"max_tokens": 10}))).await.expect_error(429, "rate_limit_exceeded");
        assert_eq!(header(&busy, "x-ratelimit-remaining-requests").as_deref(), Some("0"));
        // Over the rolling minute: both requests were in the slice from 12:00:00, which leaves the
        // window at 12:01:05, when the next request fits and the window is empty again.
        assert_eq!(header(&busy, "retry-after").as_deref(), Some("64"));
        assert_eq!(header(&busy, "x-ratelimit-reset-requests").as_deref(), Some("1m4s"));
        assert_eq!(header(&busy, "x-budget-remaining-usd").as_deref(), Some("0.010000"));
    }
}
