//! The proxy over HTTP on both backends: the mock and a real OpenAI-compatible upstream (a
//! local fake), streaming, usage records, upstream failures, and the order of its checks.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate::Group;
use tollgate_tests::upstream::{Behaviour, FakeUpstream, USAGE, stop_event, whole_answer};
use tollgate_tests::{Resp, TestApp, backend_tests};

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// The data events of an SSE body, and whether it ended with [DONE].
/// The events as an SSE client reads them: an event's data is its `data:` lines, joined by
/// newlines; any other line is not data.
fn sse_events(text: &str) -> (Vec<Value>, bool) {
    let datas: Vec<String> = text
        .split("\n\n")
        .map(|e| e.lines().filter_map(|l| l.strip_prefix("data:").map(|d| d.strip_prefix(' ').unwrap_or(d))).collect::<Vec<_>>().join("\n"))
        .filter(|d| !d.is_empty())
        .collect();
    let done = datas.last().is_some_and(|d| d == "[DONE]");
    (datas.iter().filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("event {d:?}: {e}"))).collect(), done)
}

async fn logs(app: &TestApp, token: &str) -> Vec<Value> {
    app.get("/admin/v1/me/usage/logs", Some(token)).await.expect(200).body["data"].as_array().unwrap().clone()
}

/// The newest usage record `token` sees, waited for (5 s at most): a request whose client left
/// is recorded when its flight ends, after the client has its answer or error.
async fn first_log(app: &TestApp, token: &str) -> Option<Value> {
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(r) = logs(app, token).await.into_iter().next() {
            return Some(r);
        }
    }
    None
}

fn header(r: &Resp, name: &str) -> String {
    r.headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap().to_string()
}

backend_tests! {
    async fn chat_through_the_mock_is_metered_recorded_and_reported(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 2.0, None).await;
        let (key_id, key) = app.api_key(&admin, json!({"budget_limit_cents": 100, "rate_limit_rpm": 50, "rate_limit_tpm": 100000})).await;
        let r = app.chat(&key, json!({"model": "mock-1", "max_tokens": 20, "messages": [{"role": "user", "content": "hello there [mock:cached=1] [mock:reasoning=2]"}]})).await.expect(200);
        assert_eq!(r.body["object"], "chat.completion");
        assert!(r.body["choices"][0]["message"]["content"].as_str().unwrap().starts_with("This is a deterministic reply"));
        // 4 input words (directives are words of the prompt too), 12 reply words + 2 reasoning:
        // 4 x $1/M + 14 x $2/M = 32 micro-dollars.
        assert_eq!(r.body["usage"], json!({"prompt_tokens": 4, "completion_tokens": 14, "total_tokens": 18, "prompt_tokens_details": {"cached_tokens": 1}, "completion_tokens_details": {"reasoning_tokens": 2}}));
        assert_eq!(header(&r, "x-tollgate-cost-usd"), "0.000032");
        assert_eq!(header(&r, "x-budget-limit-usd"), "1.000000");
        assert_eq!(header(&r, "x-budget-remaining-usd"), "0.999968");
        assert!(header(&r, "x-budget-reset-at").ends_with("T00:00:00+00:00"));
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "50");
        assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "49");
        assert!(header(&r, "x-ratelimit-reset-requests").ends_with('s'));
        assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "100000");
        assert_eq!(header(&r, "x-ratelimit-remaining-tokens"), "99982");
        let request_id = header(&r, "x-request-id");

        let records = logs(&app, &admin).await;
        assert_eq!(records.len(), 1);
        let rec = &records[0];
        assert_eq!(rec["request_id"], request_id.as_str());
        assert_eq!(rec["api_key_id"], key_id.as_str());
        assert_eq!((rec["input_tokens"].as_i64(), rec["output_tokens"].as_i64(), rec["cached_tokens"].as_i64(), rec["reasoning_tokens"].as_i64()), (Some(4), Some(14), Some(1), Some(2)));
        assert_eq!(rec["cost_micros"], 32);
        assert_eq!(rec["input_price"], 1.0);
        assert_eq!(rec["output_price"], 2.0);
        assert_eq!(rec["pricing_source"], "catalog");
        assert_eq!(rec["provider"], "mock");
        assert_eq!(rec["outcome"], "success");
        assert_eq!(rec["status_code"], 200);
        assert_eq!(rec["streamed"], false);
        assert_eq!(rec["cancelled"], false);
        assert_eq!(rec["finish_reason"], "stop");
        assert!(rec["latency_ms"].is_i64());
        let key_view = app.get(&format!("/admin/v1/me/api-keys/{key_id}"), Some(&admin)).await.expect(200);
        assert!(key_view.body["last_used_at"].is_string());
    }

    async fn streaming_relays_chunks_and_records_the_stream(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.0, 1.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let r = app.post("/v1/chat/completions", Some(&key), json!({"model": "mock-1", "stream": true, "messages": [{"role": "user", "content": "x [mock:words=4]"}]})).await.expect(200);
        assert_eq!(header(&r, "content-type"), "text/event-stream");
        let (events, done) = sse_events(&r.text);
        assert!(done, "a stream ends with [DONE]");
        let content: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(content, "alpha bravo charlie delta");
        assert!(events.iter().all(|e| e.get("usage").is_none()), "no usage chunk unless asked for");
        let with_usage = app.post("/v1/chat/completions", Some(&key), json!({"model": "mock-1", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "x [mock:words=4]"}]})).await.expect(200);
        let (events, _) = sse_events(&with_usage.text);
        assert_eq!(events.last().unwrap()["usage"]["completion_tokens"], 4);
        let records = logs(&app, &admin).await;
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r["streamed"] == true && r["output_tokens"] == 4 && r["cost_micros"] == 4 && r["ttft_ms"].is_i64()));
        // Legacy completions stream too.
        let completion = app.post("/v1/completions", Some(&key), json!({"model": "mock-1", "prompt": "say [mock:words=2]", "stream": true})).await.expect(200);
        let (events, done) = sse_events(&completion.text);
        assert!(done);
        assert_eq!(events.iter().filter_map(|e| e["choices"][0]["text"].as_str()).collect::<String>(), "alpha bravo");
    }

    async fn completions_embeddings_and_models(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.5, 0.5, None).await;
        app.model(&admin, "other", 0.5, 0.5, None).await;
        let (_, key) = app.api_key(&admin, json!({"allowed_models": ["mock-*"]})).await;
        let c = app.post("/v1/completions", Some(&key), json!({"model": "mock-1", "prompt": "one two three", "max_tokens": 3})).await.expect(200);
        assert_eq!(c.body["object"], "text_completion");
        assert_eq!(c.body["choices"][0]["text"], "This is a");
        assert_eq!(c.body["choices"][0]["finish_reason"], "length");
        let e = app.post("/v1/embeddings", Some(&key), json!({"model": "mock-1", "input": ["a b", "c"], "dimensions": 4})).await.expect(200);
        assert_eq!(e.body["data"].as_array().unwrap().len(), 2);
        assert_eq!(e.body["data"][0]["embedding"].as_array().unwrap().len(), 4);
        assert_eq!(e.body["usage"]["prompt_tokens"], 3);
        let again = app.post("/v1/embeddings", Some(&key), json!({"model": "mock-1", "input": ["a b", "c"], "dimensions": 4})).await.expect(200);
        assert_eq!(again.body["data"], e.body["data"], "the mock is deterministic");
        let models = app.get("/v1/models", Some(&key)).await.expect(200);
        assert_eq!(models.body["object"], "list");
        let ids: Vec<&str> = models.body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["mock-1"], "only the models this key may use");
        app.post("/v1/embeddings", Some(&key), json!({"model": "mock-1", "input": "x", "stream": true})).await.expect_error(400, "invalid_value");
        let tokens = app.post("/v1/embeddings", Some(&key), json!({"model": "mock-1", "input": [[1, 2], [3]]})).await.expect(200);
        assert_eq!(tokens.body["data"].as_array().unwrap().len(), 2, "one embedding per list of token ids");
        app.post("/v1/embeddings", Some(&key), json!({"model": "mock-1", "input": ""})).await.expect_error(400, "invalid_value");
        let streamed = app.post("/v1/chat/completions", Some(&key), json!({"model": "mock-1", "n": 2, "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "x [mock:words=3]"}]})).await.expect(200);
        let (events, _) = sse_events(&streamed.text);
        for index in 0..2 {
            let content: String = events.iter().filter(|e| e["choices"][0]["index"] == index).filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
            assert_eq!(content, "alpha bravo charlie", "answer {index}");
        }
        assert_eq!(events.last().unwrap()["usage"]["completion_tokens"], 6);
    }

    async fn a_real_openai_compatible_upstream_gets_the_model_key(backend) {
        let app = TestApp::start(backend).await;
        let upstream = FakeUpstream::start().await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "up-model", 1.0, 1.0, Some((&upstream.base_url, "sk-upstream-key"))).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let r = app.chat(&key, chat("up-model", "hi")).await.expect(200);
        assert_eq!(r.body["choices"][0]["message"]["content"], "upstream says hello");
        assert_eq!(r.text, whole_answer(true, &json!("up-model")), "the answer as the upstream sent it, not reformatted");
        assert_eq!(header(&r, "x-tollgate-cost-usd"), format!("0.{:06}", USAGE.0 + USAGE.1));
        let (headers, body) = upstream.requests().pop().unwrap();
        assert_eq!(headers["authorization"], "Bearer sk-upstream-key", "the model's key from the secret store");
        assert_eq!(body["model"], "up-model");
        let s = app.post("/v1/chat/completions", Some(&key), json!({"model": "up-model", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        let (events, done) = sse_events(&s.text);
        assert!(done);
        assert!(s.text.contains(&stop_event(&json!("up-model"))), "chunks as the upstream sent them, not rewritten: {}", s.text);
        assert!(events.iter().all(|e| e.get("usage").is_none()), "the usage chunk we asked the upstream for is not passed on");
        assert_eq!(upstream.requests().last().unwrap().1["stream_options"]["include_usage"], true);
        let records = logs(&app, &admin).await;
        assert!(records.iter().all(|r| r["input_tokens"] == USAGE.0 && r["output_tokens"] == USAGE.1 && r["cached_tokens"] == USAGE.2 && r["reasoning_tokens"] == USAGE.3), "{records:?}");
        app.post("/v1/embeddings", Some(&key), json!({"model": "up-model", "input": "x"})).await.expect(200);
    }

    async fn upstream_failures_and_timeouts_are_502_and_504_and_recorded(backend) {
        let app = TestApp::start_with(backend, &Group::ALL, |c| c.upstream_timeout = Duration::from_millis(300), None).await;
        let upstream = FakeUpstream::start().await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "up", 1.0, 1.0, Some((&upstream.base_url, "k"))).await;
        app.post("/api/models", Some(&admin), json!({"id": "gone", "provider": "openai-compatible", "baseUrl": "http://127.0.0.1:9/v1", "inputPrice": 1, "outputPrice": 1, "contextWindow": 100})).await.expect(201);
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 100})).await;
        upstream.behave(Behaviour::Fail(500));
        let e = app.chat(&key, chat("up", "hi")).await.expect_error(502, "upstream_error");
        assert!(e.body["error"]["message"].as_str().unwrap().contains("500"));
        app.post("/v1/chat/completions", Some(&key), json!({"model": "up", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await.expect_error(502, "upstream_error");
        upstream.behave(Behaviour::Fail(400));
        app.chat(&key, chat("up", "hi")).await.expect_error(400, "upstream_rejected");
        upstream.behave(Behaviour::Delay(Duration::from_millis(800)));
        app.chat(&key, chat("up", "hi")).await.expect_error(504, "upstream_timeout");
        let e = app.chat(&key, chat("gone", "hi")).await.expect_error(502, "upstream_error");
        // The model's base URL is the admin's; an API key holder is not shown it.
        assert!(!e.text.contains("127.0.0.1:9"), "{}", e.text);
        app.chat(&key, chat("mock-1", "x [mock:status=503]")).await.expect_error(502, "upstream_error");
        let records = logs(&app, &admin).await;
        let outcomes: Vec<&str> = records.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["error", "error", "timeout", "error", "error", "error"]);
        assert!(records.iter().all(|r| r["cost_micros"] == 0 && r["error"].is_string()));
        // Failed requests gave their whole reservation back: only this one's 2 input and 1
        // output tokens (3 micro-dollars) are spent.
        let r = app.chat(&key, chat("mock-1", "x [mock:words=1]")).await.expect(200);
        assert_eq!(header(&r, "x-budget-remaining-usd"), "0.999997");
    }

    async fn checks_come_in_order_with_their_codes(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.0, 0.0, None).await;
        app.model(&admin, "gpt-x", 0.0, 0.0, None).await;
        let msg = chat("mock-1", "hi");
        app.post("/v1/chat/completions", None, msg.clone()).await.expect_error(401, "missing_api_key");
        app.chat("tg_not_a_real_key", msg.clone()).await.expect_error(401, "invalid_api_key");
        let (_, far) = app.api_key(&admin, json!({"ip_allowlist": ["10.0.0.0/8"]})).await;
        app.chat(&far, msg.clone()).await.expect_error(403, "ip_not_allowed");
        let (_, near) = app.api_key(&admin, json!({"ip_allowlist": ["127.0.0.0/8", "::1"]})).await;
        app.chat(&near, msg.clone()).await.expect(200);
        let (_, models_only) = app.api_key(&admin, json!({"scopes": ["models"]})).await;
        app.chat(&models_only, msg.clone()).await.expect_error(403, "insufficient_scope");
        app.get("/v1/models", Some(&models_only)).await.expect(200);
        let (_, none) = app.api_key(&admin, json!({"scopes": []})).await;
        app.chat(&none, msg.clone()).await.expect_error(403, "insufficient_scope");
        app.get("/v1/models", Some(&none)).await.expect_error(403, "insufficient_scope");
        let (_, board) = app.api_key(&admin, json!({"scopes": ["leaderboards:inference"]})).await;
        app.chat(&board, msg.clone()).await.expect(200);
        app.get("/v1/models", Some(&board)).await.expect_error(403, "insufficient_scope");
        let (_, gpt_only) = app.api_key(&admin, json!({"allowed_models": ["gpt-*"]})).await;
        app.chat(&gpt_only, msg.clone()).await.expect_error(403, "model_not_allowed");
        app.chat(&gpt_only, chat("gpt-x", "hi")).await.expect(200);
        let (_, any) = app.api_key(&admin, json!({})).await;
        app.chat(&any, chat("nope", "hi")).await.expect_error(404, "model_not_found");
        app.chat(&any, json!({"messages": []})).await.expect_error(400, "invalid_value");
        app.chat(&any, json!({"model": "mock-1", "messages": [], "max_tokens": 0})).await.expect_error(400, "invalid_value");
        app.chat(&any, json!({"model": "mock-1", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5})).await.expect_error(400, "invalid_value");
        let raw = app.client.post(format!("{}/v1/chat/completions", app.base)).bearer_auth(&any).body("{not json").send().await.unwrap();
        TestApp::read(raw).await.expect_error(400, "invalid_json");
        // X-API-Key works as well as a bearer token.
        let via_header = app.client.post(format!("{}/v1/chat/completions", app.base)).header("x-api-key", &any).json(&msg).send().await.unwrap();
        TestApp::read(via_header).await.expect(200);
        // Expired keys stop.
        let expires = (app.clock.now() + chrono::Duration::minutes(5)).to_rfc3339();
        let (_, short) = app.api_key(&admin, json!({"expires_at": expires})).await;
        app.chat(&short, msg.clone()).await.expect(200);
        app.clock.advance(chrono::Duration::minutes(4));
        app.chat(&short, msg.clone()).await.expect(200);
        app.clock.advance(chrono::Duration::minutes(1) + chrono::Duration::seconds(1));
        app.chat(&short, msg.clone()).await.expect_error(401, "invalid_api_key");
    }

    async fn a_revoked_key_stops_within_the_cache_bound(backend) {
        // Another process revoking a key cannot clear this one's cache: the cache's TTL bounds
        // how long the key keeps working here. With a 1 s TTL, it stops within 1 s.
        let app = TestApp::start_with(backend, &Group::ALL, |c| c.key_cache = Duration::from_secs(1), None).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.0, 0.0, None).await;
        let (id, key) = app.api_key(&admin, json!({})).await;
        app.chat(&key, chat("mock-1", "hi")).await.expect(200);
        let owner = tollgate::keys::Owner::User { user_id: app.get("/api/me", Some(&admin)).await.body["id"].as_str().unwrap().parse().unwrap() };
        tollgate::keys::revoke(app.state.store.as_ref(), &owner, id.parse().unwrap(), app.clock.now(), &tollgate::invalidate::NoCaches).await.unwrap();
        // (Until the TTL passes it may still work from the cache; how long the steps above took
        // on a busy machine decides that, so only the bound is asserted.)
        tokio::time::sleep(Duration::from_millis(1100)).await;
        app.chat(&key, chat("mock-1", "hi")).await.expect_error(401, "invalid_api_key");

        // Revoking through the API clears this process's cache at once, whatever the TTL.
        let (id, key) = app.api_key(&admin, json!({})).await;
        app.chat(&key, chat("mock-1", "hi")).await.expect(200);
        app.delete(&format!("/admin/v1/me/api-keys/{id}"), Some(&admin)).await.expect(204);
        app.chat(&key, chat("mock-1", "hi")).await.expect_error(401, "invalid_api_key");

        // With the cache off, at once.
        let uncached = TestApp::start_with(backend, &Group::ALL, |c| c.key_cache = Duration::ZERO, None).await;
        let (admin, _) = uncached.admin().await;
        uncached.model(&admin, "mock-1", 0.0, 0.0, None).await;
        let (id, key) = uncached.api_key(&admin, json!({})).await;
        uncached.chat(&key, chat("mock-1", "hi")).await.expect(200);
        let owner = tollgate::keys::Owner::User { user_id: uncached.get("/api/me", Some(&admin)).await.body["id"].as_str().unwrap().parse().unwrap() };
        tollgate::keys::revoke(uncached.state.store.as_ref(), &owner, id.parse().unwrap(), uncached.clock.now(), &tollgate::invalidate::NoCaches).await.unwrap();
        uncached.chat(&key, chat("mock-1", "hi")).await.expect_error(401, "invalid_api_key");
    }

    async fn a_client_that_leaves_mid_stream_is_recorded_and_charged_what_the_provider_bills(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.0, 1.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let mut resp = app.client.post(format!("{}/v1/chat/completions", app.base)).bearer_auth(&key)
            .json(&json!({"model": "mock-1", "stream": true, "messages": [{"role": "user", "content": "x [mock:words=50] [mock:delay_ms=40]"}]}))
            .send().await.unwrap();
        let mut got = String::new();
        while got.matches("data: ").count() < 4 {
            got.push_str(&String::from_utf8_lossy(&resp.chunk().await.unwrap().unwrap()));
        }
        drop(resp);
        let record = first_log(&app, &admin).await.expect("the cancelled stream was recorded");
        assert_eq!(record["cancelled"], true);
        assert_eq!(record["streamed"], true);
        // The gateway read the upstream on, without relaying, for the usage it reports: all 50
        // words, which the provider bills whether or not the client saw them.
        assert_eq!(record["output_tokens"].as_i64().unwrap(), 50, "{record}");
        assert_eq!(record["cost_micros"].as_i64().unwrap(), 50);
    }

    async fn a_client_that_leaves_before_an_unstreamed_answer_is_recorded_and_its_slot_freed(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.0, 1.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        // The client gives up after 100 ms; the upstream answers after 500.
        let gone = app.client.post(format!("{}/v1/chat/completions", app.base)).bearer_auth(&key)
            .timeout(Duration::from_millis(100))
            .json(&chat("mock-1", "x [mock:words=7] [mock:delay_ms=500]"))
            .send().await;
        assert!(gone.is_err_and(|e| e.is_timeout()), "the client left before the answer");
        // The request ran on without its client: the upstream answered, and it is charged.
        let record = first_log(&app, &admin).await.expect("the request whose client left was recorded");
        assert_eq!(record["output_tokens"].as_i64().unwrap(), 7, "{record}");
        assert_eq!(record["cost_micros"].as_i64().unwrap(), 7);
        assert!(app.slots_all_free().await, "its admission slot is back");
    }
}

backend_tests! {
    mod network_and_usage;

    async fn x_forwarded_for_counts_only_from_trusted_proxies(backend) {
        let untrusting = TestApp::start(backend).await;
        let (admin, _) = untrusting.admin().await;
        untrusting.model(&admin, "mock-1", 0.0, 0.0, None).await;
        let (_, key) = untrusting.api_key(&admin, json!({"ip_allowlist": ["10.0.0.0/8"]})).await;
        let forwarded = |app: &TestApp, key: &str| {
            app.client.post(format!("{}/v1/chat/completions", app.base)).bearer_auth(key).header("x-forwarded-for", "10.1.2.3").json(&chat("mock-1", "hi")).send()
        };
        // Anyone can send the header: without trusted proxies it is ignored.
        TestApp::read(forwarded(&untrusting, &key).await.unwrap()).await.expect_error(403, "ip_not_allowed");

        let trusting = TestApp::start_with(backend, &Group::ALL, |c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()], None).await;
        let (admin, _) = trusting.admin().await;
        trusting.model(&admin, "mock-1", 0.0, 0.0, None).await;
        let (_, key) = trusting.api_key(&admin, json!({"ip_allowlist": ["10.0.0.0/8"]})).await;
        TestApp::read(forwarded(&trusting, &key).await.unwrap()).await.expect(200);
        trusting.chat(&key, chat("mock-1", "hi")).await.expect_error(403, "ip_not_allowed");
    }

    async fn usage_records_are_idempotent_on_request_id(backend) {
        let app = TestApp::start(backend).await;
        let store = app.state.store.as_ref();
        let record = tollgate::usage::UsageRecord {
            id: uuid::Uuid::new_v4(), request_id: "req-fixed".into(), owner: "user#x".into(), api_key_id: None, user_id: None, org_id: None,
            project_id: None, endpoint: "chat/completions".into(), model: "m".into(), provider: "mock".into(), provider_source: "catalog".into(),
            input_tokens: 1, output_tokens: 1, cached_tokens: 0, cache_write_tokens: 0, cache_write_1h_tokens: 0, reasoning_tokens: 0, cost_micros: 5, input_price_micros: 0,
            output_price_micros: 0, cached_input_price_micros: 0, cache_write_price_micros: 0, cache_write_1h_price_micros: 0,
            pricing_source: "catalog".into(), provider_cost_micros: None, latency_ms: 1, ttft_ms: None, status_code: 200, outcome: tollgate::usage::Outcome::Success,
            streamed: false, cancelled: false, finish_reason: None, http_referer: None, error: None, candidates: vec![], routing: vec![], recorded_at: chrono::Utc::now(), expires_at: None,
        };
        let settle = || vec![tollgate::store::TxOp::Update {
            key: tollgate::store::Key::new("LIMITS#token#x", "COUNTERS"), update: tollgate::store::Update::default().add("u_budget_all", 5), cond: None,
        }];
        assert!(tollgate::usage::write(store, &record, settle()).await.unwrap());
        let retried = tollgate::usage::UsageRecord { id: uuid::Uuid::new_v4(), recorded_at: chrono::Utc::now(), ..record.clone() };
        assert!(!tollgate::usage::write(store, &retried, settle()).await.unwrap(), "a second write of a request id is refused");
        let counters = store.get(&tollgate::store::Key::new("LIMITS#token#x", "COUNTERS")).await.unwrap().unwrap();
        assert_eq!(counters["u_budget_all"], tollgate::store::Attr::N(5), "and its settlement with it");
        assert_eq!(tollgate::usage::by_request_id(store, "req-fixed").await.unwrap().unwrap().id, record.id);
    }

    async fn usage_logs_filter_and_paginate(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-a", 0.0, 0.0, None).await;
        app.model(&admin, "mock-b", 0.0, 0.0, None).await;
        let (key_a, a) = app.api_key(&admin, json!({})).await;
        let (_, b) = app.api_key(&admin, json!({})).await;
        let before = chrono::Utc::now();
        for i in 0..3 {
            app.chat(&a, chat("mock-a", &format!("a{i}"))).await.expect(200);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let middle = chrono::Utc::now();
        for i in 0..2 {
            app.chat(&b, chat("mock-b", &format!("b{i}"))).await.expect(200);
        }
        let count = |r: &Resp| r.body["data"].as_array().unwrap().len();
        assert_eq!(count(&app.get("/admin/v1/me/usage/logs", Some(&admin)).await.expect(200)), 5);
        assert_eq!(count(&app.get("/admin/v1/me/usage/logs?model=mock-b", Some(&admin)).await.expect(200)), 2);
        assert_eq!(count(&app.get(&format!("/admin/v1/me/usage/logs?api_key_id={key_a}"), Some(&admin)).await.expect(200)), 3);
        assert_eq!(count(&app.get("/admin/v1/me/usage/logs?provider=mock&provider_source=built-in", Some(&admin)).await.expect(200)), 5);
        assert_eq!(count(&app.get("/admin/v1/me/usage/logs?provider_source=dynamic", Some(&admin)).await.expect(200)), 0);
        let enc = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).replace('+', "%2B");
        assert_eq!(count(&app.get(&format!("/admin/v1/me/usage/logs?from={}", enc(middle)), Some(&admin)).await.expect(200)), 2);
        assert_eq!(count(&app.get(&format!("/admin/v1/me/usage/logs?from={}&to={}", enc(before), enc(middle)), Some(&admin)).await.expect(200)), 3);
        app.get(&format!("/admin/v1/me/usage/logs?from={}&to={}", enc(middle), enc(before)), Some(&admin)).await.expect_error(400, "invalid_value");
        app.get("/admin/v1/me/usage/logs?from=yesterday", Some(&admin)).await.expect_error(400, "invalid_query");
        // The logs and their export share one scope rule: another user's usage is a 403, and a
        // personal key's records belong to no organisation.
        let stranger = uuid::Uuid::new_v4();
        for path in ["/admin/v1/me/usage/logs", "/admin/v1/me/usage/logs/export"] {
            app.get(&format!("{path}?user_id={stranger}"), Some(&admin)).await.expect_error(403, "not_your_usage");
        }
        assert_eq!(count(&app.get(&format!("/admin/v1/me/usage/logs?org_id={stranger}"), Some(&admin)).await.expect(200)), 0);
        assert_eq!(app.get(&format!("/admin/v1/me/usage/logs/export?org_id={stranger}"), Some(&admin)).await.expect(200).text, "");

        let first = app.get("/admin/v1/me/usage/logs?limit=2&model=mock-a", Some(&admin)).await.expect(200);
        assert_eq!(count(&first), 2);
        assert_eq!(first.body["pagination"]["has_more"], true);
        let next = first.body["pagination"]["next_cursor"].as_str().unwrap();
        let second = app.get(&format!("/admin/v1/me/usage/logs?limit=2&model=mock-a&cursor={next}"), Some(&admin)).await.expect(200);
        assert_eq!(count(&second), 1);
        assert_eq!(second.body["pagination"]["has_more"], false);
        let newest = first.body["data"][0]["recorded_at"].as_str().unwrap();
        let oldest = second.body["data"][0]["recorded_at"].as_str().unwrap();
        assert!(newest > oldest, "newest first");

        // A personal key reads its owner's usage too; another user sees none of it.
        assert_eq!(count(&app.get("/admin/v1/me/usage/logs", Some(&a)).await.expect(200)), 5);
        let (_, other) = app.user(&admin, "other@example.com", "viewer").await;
        assert_eq!(count(&app.get("/admin/v1/me/usage/logs", Some(&other)).await.expect(200)), 0);
    }
}
