//! One model on several deployments: managing them, load balancing, retries before the first
//! byte, cooldowns (shared through the store on DynamoDB), fallbacks for every kind of key,
//! and a chaos test, against fakes that fail on cue, on both store backends.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_tests::upstream::{Behaviour, FakeUpstream};
use tollgate_tests::{Resp, TestApp, backend_tests};

fn ask(model: &str) -> Value {
    json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hello"}]})
}

async fn record_of(app: &TestApp, resp: &Resp) -> tollgate::usage::UsageRecord {
    let id = resp.headers["x-request-id"].to_str().unwrap();
    tollgate::usage::by_request_id(app.state.store.as_ref(), id).await.unwrap().expect("a usage record")
}

/// (deployment, status) of each attempt in a record's routing trace.
fn trace(record: &tollgate::usage::UsageRecord) -> Vec<(String, Option<i64>)> {
    record.routing.iter().map(|a| (a.deployment.clone().unwrap_or_else(|| a.model.clone()), a.status)).collect()
}

/// A model served on the fakes, one deployment each (`a`, `b`, ...), $10/M in and $30/M out.
async fn deployed(app: &TestApp, admin: &str, id: &str, fakes: &[&FakeUpstream], extra: Value) -> Value {
    let deployments: Vec<Value> = fakes
        .iter()
        .enumerate()
        .map(|(i, f)| json!({"id": ((b'a' + i as u8) as char).to_string(), "baseUrl": f.base_url, "apiKey": format!("sk-{}", (b'a' + i as u8) as char)}))
        .collect();
    let mut body = json!({"id": id, "provider": "openai-compatible", "baseUrl": fakes[0].base_url, "inputPrice": 10.0, "outputPrice": 30.0,
                          "contextWindow": 4096, "deployments": deployments});
    body.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    app.post("/api/models", Some(admin), body).await.expect(201).body
}

async fn scrape(app: &TestApp, admin: &str) -> String {
    app.get("/metrics", Some(admin)).await.expect(200).text
}

backend_tests! {
    async fn deployments_are_managed_through_the_models_api_and_their_keys_never_shown(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let (east, west) = (FakeUpstream::start().await, FakeUpstream::start().await);
        let body = json!({"id": "gpt-4o", "provider": "openai-compatible", "baseUrl": west.base_url, "apiKey": "sk-model-key", "inputPrice": 2.5,
            "outputPrice": 10.0, "contextWindow": 128000, "routingStrategy": "least_latency", "fallbacks": ["mock-1"], "retry": {"maxAttempts": 3, "maxTotalMs": 20000},
            "deployments": [{"id": "east", "baseUrl": east.base_url, "apiKey": "sk-east-key", "region": "eastus", "weight": 3, "rpm": 100, "tpm": 50000},
                            {"id": "west", "region": "westus"}]});
        let created = app.post("/api/models", Some(&admin), body).await.expect(201);
        assert!(!created.text.contains("sk-east-key") && !created.text.contains("sk-model-key"), "{}", created.text);
        let shown = app.get("/api/models/gpt-4o", Some(&admin)).await.expect(200).body;
        assert_eq!(shown["deployments"], json!([
            {"id": "east", "provider": "openai-compatible", "baseUrl": east.base_url, "region": "eastus", "weight": 3, "rpm": 100, "tpm": 50000, "hasApiKey": true},
            {"id": "west", "provider": "openai-compatible", "baseUrl": null, "region": "westus", "weight": 1, "rpm": null, "tpm": null, "hasApiKey": false},
        ]));
        assert_eq!(shown["routingStrategy"], "least_latency");
        assert_eq!(shown["fallbacks"], json!(["mock-1"]));
        assert_eq!(shown["retry"], json!({"maxAttempts": 3, "maxTotalMs": 20000}));
        // A model served only by its own provider keeps the seed's shape: no routing fields.
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        let plain = app.get("/api/models/mock-1", Some(&admin)).await.expect(200).body;
        for field in ["deployments", "routingStrategy", "fallbacks", "contextWindowFallback", "retry"] {
            assert!(plain.get(field).is_none(), "{field} in {plain}");
        }

        // Each deployment is called with its own key, or the model's when it has none; least
        // latency tries each unmeasured deployment first, so both are reached.
        let (_, key) = app.api_key(&admin, json!({})).await;
        for _ in 0..2 {
            app.chat(&key, ask("gpt-4o")).await.expect(200);
        }
        let auth = |f: &FakeUpstream| f.requests().iter().map(|(h, _)| h["authorization"].to_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(auth(&east), vec!["Bearer sk-east-key"]);
        assert_eq!(auth(&west), vec!["Bearer sk-model-key"]);

        // PUT replaces the list; a deployment listed without a key keeps the one it had.
        let updated = app.put("/api/models/gpt-4o", Some(&admin), json!({"deployments": [{"id": "east", "baseUrl": east.base_url, "weight": 2}]})).await.expect(200).body;
        assert_eq!(updated["deployments"][0]["hasApiKey"], true);
        assert_eq!(updated["deployments"].as_array().unwrap().len(), 1);
        app.chat(&key, ask("gpt-4o")).await.expect(200);
        assert_eq!(auth(&east).last().unwrap(), "Bearer sk-east-key");
        // PATCH is the same partial update.
        let patched = app.call(reqwest::Method::PATCH, "/api/models/gpt-4o", Some(&admin), Some(json!({"routingStrategy": "least_busy"}))).await.expect(200).body;
        assert_eq!((patched["routingStrategy"].as_str(), patched["deployments"][0]["id"].as_str()), (Some("least_busy"), Some("east")));
        // retryOff removes a model's policy.
        let off = app.put("/api/models/gpt-4o", Some(&admin), json!({"retryOff": true})).await.expect(200).body;
        assert!(off.get("retry").is_none(), "{off}");
        // An empty list serves it from its own provider again.
        let own = app.put("/api/models/gpt-4o", Some(&admin), json!({"deployments": []})).await.expect(200).body;
        assert!(own.get("deployments").is_none(), "{own}");

        // What could not be served is refused, naming the field.
        for (deployments, param) in [
            (json!([{"id": "x"}, {"id": "x"}]), "deployments"),
            (json!([{"id": "x", "weight": 0}]), "deployments[0].weight"),
            (json!([{"id": "x", "provider": "azure"}]), "deployments[0].baseUrl"),
            (json!([{"id": "x", "baseUrl": "ftp://example.com"}]), "deployments[0].baseUrl"),
            (json!([{"id": "x", "rpm": 0}]), "deployments[0].rpm"),
            (json!([{"id": "../x"}]), "deployments[0].id"),
        ] {
            let r = app.put("/api/models/gpt-4o", Some(&admin), json!({"deployments": deployments})).await.expect_error(400, "invalid_value");
            assert_eq!(r.body["error"]["param"], param, "{}", r.text);
        }
        for (body, param) in [
            (json!({"fallbacks": ["gpt-4o"]}), "fallbacks"),
            (json!({"contextWindowFallback": "gpt-4o"}), "contextWindowFallback"),
            (json!({"retry": {"maxAttempts": 0}}), "retry.maxAttempts"),
            (json!({"retry": {"maxAttempts": 2, "maxTotalMs": 0}}), "retry.maxTotalMs"),
        ] {
            let r = app.put("/api/models/gpt-4o", Some(&admin), body).await.expect_error(400, "invalid_value");
            assert_eq!(r.body["error"]["param"], param, "{}", r.text);
        }
        app.put("/api/models/gpt-4o", Some(&admin), json!({"routingStrategy": "fastest"})).await.expect(400);
        // Nothing refused was half-written: the model is as the last good PUT left it.
        assert!(app.get("/api/models/gpt-4o", Some(&admin)).await.expect(200).body.get("deployments").is_none());
    }

    async fn a_failed_attempt_moves_to_another_deployment_and_the_answer_is_charged_once(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
        deployed(&app, &admin, "gpt-4o", &[&a, &b], json!({"routingStrategy": "least_latency"})).await;
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 1000, "budget_period": "monthly"})).await;
        a.behave(Behaviour::Fail(500));
        // Least latency tries `a` first (unmeasured, listed first).
        let r = app.chat(&key, ask("gpt-4o")).await.expect(200);
        let record = record_of(&app, &r).await;
        assert_eq!(trace(&record), vec![("a".into(), Some(500)), ("b".into(), Some(200))]);
        assert_eq!(record.provider, "openai-compatible");
        // One charge, for the answer the client got: 7 in, 5 out at $10/$30 per million.
        assert_eq!(record.cost_micros, 7 * 10 + 5 * 30);
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000220");
        // A 429, an unreachable upstream and a reset are retried the same way.
        for behaviour in [Behaviour::RateLimited(1), Behaviour::Reset] {
            a.behave(behaviour);
            let r = app.chat(&key, ask("gpt-4o")).await.expect(200);
            let record = record_of(&app, &r).await;
            assert_eq!(record.routing.last().unwrap().deployment.as_deref(), Some("b"));
            assert_eq!(record.cost_micros, 220);
        }
        // Both failing: the last failure is the answer, each attempt in the trace, no charge.
        b.behave(Behaviour::Fail(503));
        a.behave(Behaviour::Fail(500));
        let r = app.chat(&key, ask("gpt-4o")).await.expect_error(502, "upstream_error");
        let record = record_of(&app, &r).await;
        assert_eq!(record.routing.len(), 2, "one attempt per deployment by default");
        assert_eq!(record.cost_micros, 0);
        // A 4xx is the request's fault: no other deployment is tried.
        a.behave(Behaviour::Fail(400));
        b.behave(Behaviour::Answer);
        let before = b.requests().len();
        let r = app.chat(&key, json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})).await;
        let record = record_of(&app, &r).await;
        if record.routing[0].deployment.as_deref() == Some("a") {
            assert_eq!(r.status, 400, "{}", r.text);
            assert_eq!(record.routing.len(), 1);
            assert_eq!(b.requests().len(), before);
        }
        let metrics = scrape(&app, &admin).await;
        assert!(metrics.contains("tollgate_upstream_retries_total{model=\"gpt-4o\",provider=\"openai-compatible\",reason=\"server_error\"}"), "{metrics}");
        assert!(metrics.contains("reason=\"rate_limited\""), "{metrics}");
    }

    async fn the_same_deployment_is_retried_after_a_backoff_within_the_models_limits(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let a = FakeUpstream::start().await;
        deployed(&app, &admin, "solo", &[&a], json!({"retry": {"maxAttempts": 3}})).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        a.behave(Behaviour::FailTimes(2, 503));
        let r = app.chat(&key, ask("solo")).await.expect(200);
        assert_eq!(trace(&record_of(&app, &r).await), vec![("a".into(), Some(503)), ("a".into(), Some(503)), ("a".into(), Some(200))]);
        // Three failures are the model's limit.
        a.behave(Behaviour::FailTimes(3, 503));
        let r = app.chat(&key, ask("solo")).await.expect_error(502, "upstream_error");
        assert_eq!(record_of(&app, &r).await.routing.len(), 3);
        // A 429's retry-after is waited out (the fake asks for 1 s) ...
        a.behave(Behaviour::FailTimes(1, 429));
        let began = Instant::now();
        let r = app.chat(&key, ask("solo")).await.expect(200);
        assert!(began.elapsed() >= Duration::from_millis(900), "answered before the retry-after: {:?}", began.elapsed());
        assert_eq!(trace(&record_of(&app, &r).await), vec![("a".into(), Some(429)), ("a".into(), Some(200))]);
        // ... up to a bound: a minute is not, and the client hears when to come back.
        a.behave(Behaviour::RateLimited(60));
        let r = app.chat(&key, ask("solo")).await.expect_error(429, "upstream_rate_limited");
        assert_eq!(r.headers["retry-after"], "60");
        assert_eq!(record_of(&app, &r).await.routing.len(), 1);
        // A project's policy is over each model's: its tokens get 2 attempts on a model that allows 3.
        a.behave(Behaviour::FailTimes(2, 503));
        let project = app.post("/api/projects", Some(&admin), json!({"name": "Strict", "slug": "strict", "models": ["solo"], "retry": {"maxAttempts": 2}})).await.expect(201);
        assert_eq!(project.body["retry"], json!({"maxAttempts": 2, "maxTotalMs": null}));
        let token = app.post("/api/projects/strict/tokens", Some(&admin), json!({"name": "t"})).await.expect(201).body["token"].as_str().unwrap().to_string();
        let r = app.chat(&token, ask("solo")).await.expect_error(502, "upstream_error");
        assert_eq!(record_of(&app, &r).await.routing.len(), 2);
        app.put("/api/projects/strict", Some(&admin), json!({"retry": {"maxAttempts": 0}})).await.expect_error(400, "invalid_value");
        app.put("/api/projects/strict", Some(&admin), json!({"retryOff": true})).await.expect(200);
        a.behave(Behaviour::FailTimes(2, 503));
        let r = app.chat(&token, ask("solo")).await.expect(200);
        assert_eq!(record_of(&app, &r).await.routing.len(), 3, "the model's own 3 again");
        // The total time bounds every attempt: a hanging upstream gets what is left of it.
        app.put("/api/models/solo", Some(&admin), json!({"retry": {"maxAttempts": 3, "maxTotalMs": 300}})).await.expect(200);
        a.behave(Behaviour::Delay(Duration::from_secs(5)));
        let r = app.chat(&key, ask("solo")).await.expect_error(504, "upstream_timeout");
        let record = record_of(&app, &r).await;
        assert_eq!(record.routing.len(), 1, "no time was left for another attempt");
        assert_eq!(record.outcome, tollgate::usage::Outcome::Timeout);
    }

    async fn a_stream_is_retried_before_its_first_byte_and_never_after(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
        deployed(&app, &admin, "gpt-4o", &[&a, &b], json!({"routingStrategy": "least_latency"})).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let stream = |model: &str| json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        a.behave(Behaviour::Fail(500));
        let r = app.post("/v1/chat/completions", Some(&key), stream("gpt-4o")).await.expect(200);
        assert!(r.text.ends_with("data: [DONE]\n\n") && r.text.contains("stream"), "{}", r.text);
        assert_eq!(trace(&record_of(&app, &r).await), vec![("a".into(), Some(500)), ("b".into(), Some(200))]);
        // Broken after two chunks reached the client: the stream ends with an error event, and
        // nothing is retried (the client would see the answer twice).
        a.behave(Behaviour::CutStream);
        b.behave(Behaviour::CutStream);
        let r = app.post("/v1/chat/completions", Some(&key), stream("gpt-4o")).await.expect(200);
        assert!(r.text.contains("half ") && r.text.contains("upstream_error"), "{}", r.text);
        let record = record_of(&app, &r).await;
        assert_eq!(record.routing.len(), 1, "{:?}", record.routing);
        assert_eq!(a.requests().len() + b.requests().len(), 3);
    }

    async fn a_deployment_failing_repeatedly_cools_down_then_is_probed_once(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
        deployed(&app, &admin, "gpt-4o", &[&a, &b], json!({})).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        a.behave(Behaviour::Fail(500));
        // Three failures within the minute cool `a` down: from then on it is not called, and
        // no client sees its failures.
        for _ in 0..30 {
            app.chat(&key, ask("gpt-4o")).await.expect(200);
        }
        assert_eq!(a.requests().len(), 3, "a is skipped once it has failed 3 times");
        let metrics = scrape(&app, &admin).await;
        assert!(metrics.contains("tollgate_deployment_cooldowns_total{model=\"gpt-4o\",deployment=\"a\"} 1"), "{metrics}");
        // The gauge is set by the background pass, every second.
        let mut cooling = String::new();
        for _ in 0..30 {
            cooling = scrape(&app, &admin).await;
            if cooling.contains("tollgate_deployments_cooling{model=\"gpt-4o\"} 1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(cooling.contains("tollgate_deployments_cooling{model=\"gpt-4o\"} 1"), "{cooling}");

        // Shared through the store on DynamoDB: another process reads the cooldown and skips `a`.
        if backend == tollgate_tests::Backend::Dynamo {
            let model = tollgate::catalog::get(app.state.store.as_ref(), "gpt-4o").await.unwrap().unwrap();
            let other = std::sync::Arc::new(tollgate::proxy::balance::Balancer::new(
                Default::default(),
                Some(app.state.store.clone()),
                std::sync::Arc::new(tollgate::metrics::Metrics::new(tollgate::metrics::Sink::Prometheus, false)),
            ));
            let now = app.clock.now().timestamp_millis();
            let _ = other.choose(&model, &[], now, 0.0);
            let mut seen = false;
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Within the refresh period the copy read in the background is used.
                if let tollgate::proxy::balance::Pick::Healthy(d) = other.choose(&model, &[], now + 1, 0.0) {
                    seen = d.id == "b";
                }
                if seen {
                    break;
                }
            }
            assert!(seen, "the second process did not learn of a's cooldown");
        }

        // When the cooldown ends one request probes `a`; failing, it cools again at once.
        app.clock.advance(chrono::Duration::seconds(31));
        for _ in 0..30 {
            app.chat(&key, ask("gpt-4o")).await.expect(200);
        }
        assert_eq!(a.requests().len(), 4, "one probe");
        // Healthy again, the probe closes it and it takes its share.
        a.behave(Behaviour::Answer);
        app.clock.advance(chrono::Duration::seconds(31));
        for _ in 0..30 {
            app.chat(&key, ask("gpt-4o")).await.expect(200);
        }
        assert!(a.requests().len() > 6, "a serves again: {}", a.requests().len());
    }

    async fn load_is_balanced_by_weight_and_by_capacity(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
        let created = deployed(&app, &admin, "gpt-4o", &[&a, &b], json!({})).await;
        let mut deployments = created["deployments"].clone();
        deployments[0]["weight"] = json!(3);
        deployments[1]["rpm"] = json!(1000);
        for d in deployments.as_array_mut().unwrap() {
            d.as_object_mut().unwrap().retain(|k, _| ["id", "baseUrl", "weight", "rpm"].contains(&k.as_str()));
        }
        app.put("/api/models/gpt-4o", Some(&admin), json!({"deployments": deployments})).await.expect(200);
        let (_, key) = app.api_key(&admin, json!({})).await;
        for _ in 0..200 {
            app.chat(&key, ask("gpt-4o")).await.expect(200);
        }
        // 3:1, within four standard deviations (sd ~6 of 200 draws at p = 0.75).
        let share = a.requests().len();
        assert!((126..=174).contains(&share), "a took {share} of 200 at weight 3:1");
        // A deployment at its capacity is skipped, not failed: b takes 2 a minute, a 1.
        deployments[0]["rpm"] = json!(1);
        deployments[1]["rpm"] = json!(2);
        app.put("/api/models/gpt-4o", Some(&admin), json!({"deployments": deployments})).await.expect(200);
        // A minute of its own, whatever the wall clock's second: the four requests share it.
        app.to_next_minute();
        let (before_a, before_b) = (a.requests().len(), b.requests().len());
        for _ in 0..3 {
            app.chat(&key, ask("gpt-4o")).await.expect(200);
        }
        assert_eq!((a.requests().len() - before_a, b.requests().len() - before_b), (1, 2));
        let r = app.chat(&key, ask("gpt-4o")).await.expect_error(429, "deployments_at_capacity");
        assert!(r.headers.contains_key("retry-after"));
        app.clock.advance(chrono::Duration::seconds(60));
        app.chat(&key, ask("gpt-4o")).await.expect(200);
    }

    async fn fallbacks_serve_every_kind_of_key_at_each_models_own_prices(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let broken = FakeUpstream::start().await;
        broken.behave(Behaviour::Fail(500));
        app.post("/api/models", Some(&admin), json!({"id": "primary", "provider": "openai-compatible", "baseUrl": broken.base_url, "apiKey": "sk-p",
            "inputPrice": 1.0, "outputPrice": 1.0, "contextWindow": 4096, "fallbacks": ["backup"]})).await.expect(201);
        app.post("/api/models", Some(&admin), json!({"id": "backup", "provider": "mock", "inputPrice": 3.0, "outputPrice": 5.0, "contextWindow": 4096}))
            .await
            .expect(201);
        // A personal key.
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 100, "budget_period": "monthly"})).await;
        let r = app.chat(&key, ask("primary")).await.expect(200);
        let record = record_of(&app, &r).await;
        assert_eq!(record.candidates, vec!["primary", "backup"]);
        assert_eq!((record.model.as_str(), record.routing.len()), ("backup", 2));
        assert_eq!((record.input_price_micros, record.output_price_micros), (3_000_000, 5_000_000), "charged at the fallback's own prices");
        // A workspace token.
        let ws = app.post("/api/workspaces", Some(&admin), json!({"name": "Acme"})).await.expect(201).body["id"].as_str().unwrap().to_string();
        let token = app.post("/api/tokens", Some(&admin), json!({"name": "t", "business_id": ws})).await.expect(201);
        let r = app.chat(token.body["secret"].as_str().unwrap(), ask("primary")).await.expect(200);
        assert_eq!(record_of(&app, &r).await.model, "backup");
        // A key that may not use the fallback does not reach it.
        let (_, narrow) = app.api_key(&admin, json!({"allowed_models": ["primary"]})).await;
        let r = app.chat(&narrow, ask("primary")).await.expect_error(502, "upstream_error");
        assert_eq!(record_of(&app, &r).await.candidates, vec!["primary"]);

        // A request too long for its model's window goes to the larger one it names.
        app.post("/api/models", Some(&admin), json!({"id": "large", "provider": "mock", "inputPrice": 2.0, "outputPrice": 2.0, "contextWindow": 100000}))
            .await
            .expect(201);
        app.post("/api/models", Some(&admin), json!({"id": "small", "provider": "mock", "inputPrice": 1.0, "outputPrice": 1.0, "contextWindow": 64,
            "maxOutputTokens": 16, "contextWindowFallback": "large"})).await.expect(201);
        let long = "word ".repeat(200);
        let r = app.chat(&key, json!({"model": "small", "max_tokens": 5, "messages": [{"role": "user", "content": long}]})).await.expect(200);
        let record = record_of(&app, &r).await;
        assert_eq!((record.model.as_str(), record.candidates.clone()), ("large", vec!["large".to_string()]));
        let r = app.chat(&key, ask("small")).await.expect(200);
        assert_eq!(record_of(&app, &r).await.model, "small");
    }

    async fn chaos_three_deployments_one_flapping_no_client_sees_an_error_and_budgets_add_up(backend) {
        let app = TestApp::start(backend).await;
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        let fakes = [FakeUpstream::start().await, FakeUpstream::start().await, FakeUpstream::start().await];
        deployed(&app, &admin, "gpt-4o", &fakes.iter().collect::<Vec<_>>(), json!({})).await;
        fakes[1].behave(Behaviour::Flap);
        let (key_id, key) = app.api_key(&admin, json!({"budget_limit_cents": 10000, "budget_period": "monthly"})).await;
        // All 500 at once on the embedded store. moto's server, single-threaded, accepts 128
        // connections in its listen queue and drops the rest (the SDK then times out
        // connecting), so against it 100 are in flight at a time; DynamoDB itself takes all 500.
        let in_flight = if backend == tollgate_tests::Backend::Dynamo { 100 } else { 500 };
        let results: Vec<Resp> = futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
            futures::stream::iter((0..500).map(|i| {
                let body = if i % 2 == 0 { ask("gpt-4o") } else { json!({"model": "gpt-4o", "stream": true, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}) };
                app.chat(&key, body)
            })),
            in_flight,
        ))
        .await;
        let failed: Vec<_> = results.iter().filter(|r| r.status != 200).map(|r| (r.status, r.text.clone())).collect();
        assert!(failed.is_empty(), "{} clients saw errors: {:?}", failed.len(), &failed[..failed.len().min(3)]);
        let mut charged = 0;
        for r in &results {
            let record = record_of(&app, r).await;
            assert_eq!(record.outcome, tollgate::usage::Outcome::Success);
            charged += record.cost_micros;
        }
        assert_eq!(charged, 500 * 220);
        // The key's budget counted exactly what its records charged, and holds nothing more.
        let key = tollgate::keys::get_any(app.state.store.as_ref(), key_id.parse().unwrap()).await.unwrap().unwrap();
        let counters = app.state.store.get(&key.counters()).await.unwrap().expect("counters");
        let spent: i64 = counters.iter().filter(|(k, _)| k.starts_with("u_")).filter_map(|(_, v)| v.as_i64()).sum();
        assert_eq!(spent, charged, "{counters:?}");
        assert!(fakes[1].requests().len() < 250, "the flapping deployment was cooled: {}", fakes[1].requests().len());
    }

    async fn past_its_requests_in_flight_the_gateway_sheds_at_once_and_charges_nothing(backend) {
        let app = TestApp::start_with(
            backend,
            &tollgate::Group::ALL,
            |c| {
                c.max_in_flight = 1;
                c.admission_wait = Duration::from_millis(50);
            },
            None,
        )
        .await;
        let (admin, _) = app.admin().await;
        let slow = FakeUpstream::start().await;
        slow.behave(Behaviour::Delay(Duration::from_secs(2)));
        deployed(&app, &admin, "slow", &[&slow], json!({})).await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let gate = &app.state.gateway.admission;
        assert_eq!(gate.free(), Some(1));

        // One request waiting on its upstream holds the only slot: the wait for an answer is
        // part of being in flight.
        let (base, client, k) = (app.base.clone(), app.client.clone(), key.clone());
        let first = tokio::spawn(async move {
            TestApp::read(client.post(format!("{base}/v1/chat/completions")).bearer_auth(k).json(&ask("slow")).send().await.unwrap()).await
        });
        while gate.free() != Some(0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Another is turned away once the wait is over, in each door's own envelope, with a
        // retry-after the SDKs honour; it reserved nothing and left no usage record.
        let shed = app.chat(&key, ask("mock-1")).await.expect_error(503, "overloaded");
        assert_eq!(shed.headers["retry-after"], "1");
        assert_eq!(shed.body["error"]["type"], "api_error");
        let request_id = shed.headers["x-request-id"].to_str().unwrap();
        assert!(tollgate::usage::by_request_id(app.state.store.as_ref(), request_id).await.unwrap().is_none());
        let messages = app.post("/v1/messages", Some(&key), ask("mock-1")).await.expect(503);
        assert_eq!(messages.body["error"]["type"], "overloaded_error", "{}", messages.text);
        assert_eq!(messages.headers["retry-after"], "1");
        let metrics = scrape(&app, &admin).await;
        assert!(metrics.contains(r#"tollgate_proxy_refusals_total{reason="overload",level="gateway"} 2"#), "{metrics}");

        // The first is served and charged as usual; its slot comes back with its end.
        let served = first.await.unwrap().expect(200);
        assert!(record_of(&app, &served).await.cost_micros > 0);
        assert_eq!(gate.free(), Some(1));
        app.chat(&key, ask("mock-1")).await.expect(200);
        assert_eq!(gate.free(), Some(1));
    }
}
