//! The response cache: opted into per key or per project, keyed by owner and canonical request,
//! kept in the store with a TTL, a hit answered whole or as a replayed stream, recorded as
//! `cache_hit` and charged the operator's share; `Cache-Control` from the caller obeyed. On both
//! backends.

use serde_json::{Value, json};
use tollgate_tests::upstream::FakeUpstream;
use tollgate_tests::{Resp, TestApp, backend_tests};

async fn record_of(app: &TestApp, resp: &Resp) -> tollgate::usage::UsageRecord {
    let id = resp.headers["x-request-id"].to_str().unwrap();
    tollgate::usage::by_request_id(app.state.store.as_ref(), id).await.unwrap().expect("a usage record")
}

fn ask(text: &str) -> Value {
    json!({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": text}]})
}

async fn post_with(app: &TestApp, key: &str, body: Value, cache_control: &str) -> Resp {
    let resp =
        app.client.post(format!("{}/v1/chat/completions", app.base)).bearer_auth(key).header("cache-control", cache_control).json(&body).send().await.unwrap();
    TestApp::read(resp).await
}

async fn gpt(app: &TestApp, admin: &str, fake: &FakeUpstream) {
    app.post(
        "/api/models",
        Some(admin),
        json!({"id": "gpt-4o", "provider": "openai-compatible", "baseUrl": fake.base_url, "apiKey": "sk-x",
        "inputPrice": 10.0, "outputPrice": 30.0, "contextWindow": 128000}),
    )
    .await
    .expect(201);
}

/// The text of a chat stream's deltas.
fn streamed_text(text: &str) -> String {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v.pointer("/choices/0/delta/content").and_then(Value::as_str).map(str::to_string))
        .collect()
}

backend_tests! {
    async fn a_key_that_opted_in_is_answered_from_the_cache_whole_and_streamed(backend) {
        let app = TestApp::start(backend).await;
        let fake = FakeUpstream::start().await;
        let (admin, _) = app.admin().await;
        gpt(&app, &admin, &fake).await;
        let (key_id, key) = app.api_key(&admin, json!({"cache": {"ttl": 60, "mode": "exact"}, "budget_limit_cents": 100})).await;
        assert_eq!(app.get(&format!("/admin/v1/me/api-keys/{key_id}"), Some(&admin)).await.expect(200).body["cache"], json!({"ttl": 60, "mode": "exact"}));

        let first = app.chat(&key, ask("hello")).await.expect(200);
        assert_eq!(first.headers["x-tollgate-cache"], "miss");
        assert_eq!(first.headers["x-tollgate-cost-usd"], "0.000220");
        let hit = app.chat(&key, ask("hello")).await.expect(200);
        assert_eq!(hit.headers["x-tollgate-cache"], "hit");
        assert_eq!(hit.body["choices"], first.body["choices"]);
        assert_eq!(fake.requests().len(), 1, "the upstream was asked once");
        // Recorded as a hit, charged 0 by default, no tokens through a model.
        let record = record_of(&app, &hit).await;
        assert_eq!((record.outcome, record.cost_micros, record.input_tokens, record.routing.len()), (tollgate::usage::Outcome::CacheHit, 0, 0, 0));
        assert_eq!(hit.headers["x-tollgate-cost-usd"], "0.000000");

        // Streamed, the same request is replayed as a stream.
        let streamed = app.chat(&key, json!({"model": "gpt-4o", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hello"}]})).await.expect(200);
        assert_eq!(streamed.headers["x-tollgate-cache"], "hit");
        assert!(streamed.text.ends_with("data: [DONE]\n\n"), "{}", streamed.text);
        assert_eq!(streamed_text(&streamed.text), first.body["choices"][0]["message"]["content"].as_str().unwrap());
        assert!(record_of(&app, &streamed).await.streamed);
        // Through Anthropic's door, the same request in Messages' shape.
        let messages = app
            .client
            .post(format!("{}/v1/messages", app.base))
            .header("x-api-key", &key)
            .json(&json!({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(messages.headers()["x-tollgate-cache"], "hit");
        let messages: Value = messages.json().await.unwrap();
        assert_eq!(messages["type"], "message");
        assert_eq!(fake.requests().len(), 1);

        // Another request is a miss; Cache-Control: no-cache goes upstream and keeps the new
        // answer; no-store neither reads nor keeps.
        assert_eq!(app.chat(&key, ask("other")).await.expect(200).headers["x-tollgate-cache"], "miss");
        assert_eq!(post_with(&app, &key, ask("hello"), "no-cache").await.expect(200).headers["x-tollgate-cache"], "bypass");
        assert_eq!(fake.requests().len(), 3);
        let skipped = post_with(&app, &key, ask("never kept"), "no-store").await.expect(200);
        assert!(!skipped.headers.contains_key("x-tollgate-cache"));
        assert_eq!(app.chat(&key, ask("never kept")).await.expect(200).headers["x-tollgate-cache"], "miss");

        // A streamed miss is kept too: the same request whole is then a hit, with the streamed text.
        let stream = |text: &str| json!({"model": "gpt-4o", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": text}]});
        let streamed_miss = app.chat(&key, stream("streamed first")).await.expect(200);
        assert_eq!(streamed_miss.headers["x-tollgate-cache"], "miss");
        let whole_hit = app.chat(&key, ask("streamed first")).await.expect(200);
        assert_eq!(whole_hit.headers["x-tollgate-cache"], "hit");
        assert_eq!(whole_hit.body["choices"][0]["message"]["content"].as_str().unwrap(), streamed_text(&streamed_miss.text));

        // Past its TTL an entry is gone.
        app.clock.advance(chrono::Duration::seconds(61));
        assert_eq!(app.chat(&key, ask("hello")).await.expect(200).headers["x-tollgate-cache"], "miss");
    }

    async fn entries_are_never_shared_across_owners_and_hits_are_charged_the_operators_share(backend) {
        let app = TestApp::start_with(backend, &tollgate::Group::ALL, |c| c.cache_hit_percent = 50, None).await;
        let fake = FakeUpstream::start().await;
        let (admin, _) = app.admin().await;
        gpt(&app, &admin, &fake).await;
        let cache = json!({"cache": {"ttl": 600, "mode": "exact"}});
        let (_, mine) = app.api_key(&admin, cache.clone()).await;
        let (_, other_user) = app.user(&admin, "other@example.com", "viewer").await;
        let (_, theirs) = app.api_key(&other_user, cache.clone()).await;
        app.chat(&mine, ask("hello")).await.expect(200);
        assert_eq!(app.chat(&theirs, ask("hello")).await.expect(200).headers["x-tollgate-cache"], "miss", "another owner's entry");
        // Half of the first answer's $0.000220.
        let hit = app.chat(&mine, ask("hello")).await.expect(200);
        assert_eq!((hit.headers["x-tollgate-cache"].to_str().unwrap(), hit.headers["x-tollgate-cost-usd"].to_str().unwrap()), ("hit", "0.000110"));
        // A key without the opt-in never touches the cache.
        let (_, plain) = app.api_key(&admin, json!({})).await;
        assert!(!app.chat(&plain, ask("hello")).await.expect(200).headers.contains_key("x-tollgate-cache"));

        // A project opts its tokens in.
        app.post("/api/projects", Some(&admin), json!({"name": "Cached", "slug": "cached", "models": ["gpt-4o"], "cache": {"ttl": 60, "mode": "exact"}}))
            .await
            .expect(201);
        let token = app.post("/api/projects/cached/tokens", Some(&admin), json!({"name": "t"})).await.expect(201).body["token"].as_str().unwrap().to_string();
        app.chat(&token, ask("project")).await.expect(200);
        assert_eq!(app.chat(&token, ask("project")).await.expect(200).headers["x-tollgate-cache"], "hit");
        app.put("/api/projects/cached", Some(&admin), json!({"cacheOff": true})).await.expect(200);

        // Bad settings are refused, naming the field.
        for bad in [json!({"ttl": 0, "mode": "exact"}), json!({"ttl": 9999999, "mode": "exact"})] {
            let r = app.post("/admin/v1/me/api-keys", Some(&admin), json!({"name": "k", "cache": bad})).await.expect_error(400, "invalid_value");
            assert_eq!(r.body["error"]["param"], "cache", "{}", r.text);
        }
        app.post("/admin/v1/me/api-keys", Some(&admin), json!({"name": "k", "cache": {"ttl": 5, "mode": "semantic"}})).await.expect(400);
    }
}
