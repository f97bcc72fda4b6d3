//! Projects, project members and project tokens (management family): access rules, the limit
//! model at every level (a test per metric, per window kind and per mode), and routing with
//! fallback, on both store backends.

use serde_json::{Value, json};
use tollgate_tests::upstream::{Behaviour, FakeUpstream};
use tollgate_tests::{Resp, TestApp, backend_tests};

fn chat() -> Value {
    json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hello"}]})
}

async fn project(app: &TestApp, token: &str, slug: &str, extra: Value) -> Value {
    let mut body = json!({"name": format!("Project {slug}"), "slug": slug, "models": ["mock-1"]});
    body.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    app.post("/api/projects", Some(token), body).await.expect(201).body
}

async fn project_token(app: &TestApp, session: &str, slug: &str, limits: Value) -> String {
    let r = app.post(&format!("/api/projects/{slug}/tokens"), Some(session), json!({"name": "t", "limits": limits})).await.expect(201);
    r.body["token"].as_str().unwrap().to_string()
}

/// Sends requests until one is refused (at most `max`); returns how many passed and the refusal.
async fn until_refused(app: &TestApp, key: &str, max: usize) -> (usize, Resp) {
    for served in 0..max {
        let r = app.chat(key, chat()).await;
        if r.status != 200 {
            return (served, r);
        }
    }
    panic!("no refusal within {max} requests");
}

async fn record_of(app: &TestApp, resp: &Resp) -> tollgate::usage::UsageRecord {
    let id = resp.headers["x-request-id"].to_str().unwrap();
    tollgate::usage::by_request_id(app.state.store.as_ref(), id).await.unwrap().expect("a usage record")
}

backend_tests! {
    async fn projects_and_their_members_follow_their_roles(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        let created = project(&app, &admin, "my-app", json!({"defaultTimeoutMs": 20000})).await;
        assert_eq!(created["defaultTimeoutMs"], 20000);
        assert_eq!(created["models"], json!(["mock-1"]));
        assert_eq!(created["role"], "admin");
        app.post("/api/projects", Some(&admin), json!({"name": "again", "slug": "my-app"})).await.expect_error(409, "slug_taken");
        for (body, param) in [
            (json!({"name": "x", "slug": "Bad Slug"}), "slug"),
            (json!({"name": "x", "slug": "x", "models": ["nope"]}), "models"),
            (json!({"name": "x", "slug": "x", "defaultTimeoutMs": 0}), "defaultTimeoutMs"),
            (json!({"name": "", "slug": "x"}), "name"),
        ] {
            let r = app.post("/api/projects", Some(&admin), body).await.expect(400);
            assert_eq!(r.body["error"]["param"], param, "{}", r.text);
        }
        let updated = app.put("/api/projects/my-app", Some(&admin), json!({"name": "Renamed", "limits": [{"metric": "cost", "limit": 5, "window": "monthly"}]})).await.expect(200);
        assert_eq!(updated.body["name"], "Renamed");
        assert_eq!(updated.body["limits"][0]["limit"], 5.0);
        app.put("/api/projects/my-app", Some(&admin), json!({"slug": "other"})).await.expect_error(400, "invalid_value");

        // A global viewer sees projects outside workspaces, and changes nothing.
        let (viewer_id, viewer) = app.user(&admin, "viewer@example.com", "viewer").await;
        app.get("/api/projects/my-app", Some(&viewer)).await.expect(200);
        app.put("/api/projects/my-app", Some(&viewer), json!({"name": "x"})).await.expect_error(403, "project_role_required");
        app.post("/api/projects", Some(&viewer), json!({"name": "x", "slug": "x"})).await.expect_error(403, "insufficient_permissions");
        // As the project's editor they may change it and make tokens, not members.
        app.post("/api/projects/my-app/members", Some(&admin), json!({"userId": viewer_id, "role": "editor"})).await.expect(201);
        app.put("/api/projects/my-app", Some(&viewer), json!({"defaultTimeoutMs": 1000})).await.expect(200);
        project_token(&app, &viewer, "my-app", json!([])).await;
        app.post("/api/projects/my-app/members", Some(&viewer), json!({"userId": viewer_id, "role": "admin"})).await.expect_error(403, "project_role_required");
        let members = app.get("/api/projects/my-app/members", Some(&viewer)).await.expect(200);
        assert_eq!(members.body.as_array().unwrap().len(), 2);
        app.put(&format!("/api/projects/my-app/members/{viewer_id}"), Some(&admin), json!({"role": "viewer"})).await.expect(200);
        app.post("/api/projects/my-app/tokens", Some(&viewer), json!({"name": "no"})).await.expect_error(403, "project_role_required");
        app.delete(&format!("/api/projects/my-app/members/{viewer_id}"), Some(&admin)).await.expect(204);
        app.delete(&format!("/api/projects/my-app/members/{viewer_id}"), Some(&admin)).await.expect_error(404, "not_found");

        // A workspace's project: its members see it, a global viewer outside it does not.
        let (_, boss) = app.user(&admin, "boss@example.com", "viewer").await;
        let ws = app.post("/api/workspaces", Some(&boss), json!({"name": "Acme"})).await.expect(201).body["id"].as_str().unwrap().to_string();
        project(&app, &boss, "acme-app", json!({"workspaceId": ws})).await;
        app.get("/api/projects/acme-app", Some(&viewer)).await.expect_error(404, "not_found");
        let listed = app.get("/api/projects", Some(&viewer)).await.expect(200);
        assert!(listed.body.as_array().unwrap().iter().all(|p| p["slug"] != "acme-app"), "{}", listed.text);
        app.post("/api/projects/acme-app/members", Some(&boss), json!({"userId": viewer_id, "role": "viewer"})).await.expect_error(400, "invalid_value");
        app.post("/api/projects", Some(&viewer), json!({"name": "x", "slug": "sneaky", "workspaceId": ws})).await.expect_error(404, "not_found");

        // Deleting a project revokes its tokens and frees its slug.
        let key = project_token(&app, &admin, "my-app", json!([])).await;
        app.chat(&key, chat()).await.expect(200);
        app.delete("/api/projects/my-app", Some(&admin)).await.expect(204);
        app.chat(&key, chat()).await.expect_error(401, "invalid_api_key");
        app.get("/api/projects/my-app", Some(&admin)).await.expect_error(404, "not_found");
        project(&app, &admin, "my-app", json!({})).await;
    }

    async fn project_tokens_are_shown_once_changed_and_deleted(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        project(&app, &admin, "app", json!({})).await;
        let created = app.post("/api/projects/app/tokens", Some(&admin), json!({
            "name": "production", "limits": [{"metric": "cost", "limit": 10.00, "window": "monthly", "mode": "extend"}]
        })).await.expect(201);
        let secret = created.body["token"].as_str().unwrap().to_string();
        assert!(secret.starts_with(created.body["tokenPrefix"].as_str().unwrap()));
        assert_eq!(created.body["limits"], json!([{"metric": "cost", "limit": 10.0, "window": "monthly", "mode": "extend"}]));
        let listed = app.get("/api/projects/app/tokens", Some(&admin)).await.expect(200);
        assert_eq!(listed.body.as_array().unwrap().len(), 1);
        assert!(!listed.text.contains(&secret) && !listed.text.contains("\"token\""));
        let id = created.body["id"].as_str().unwrap();
        let changed = app.put(&format!("/api/projects/app/tokens/{id}"), Some(&admin), json!({"name": "prod", "limits": [{"metric": "calls", "limit": 1, "window": "daily"}]})).await.expect(200);
        assert_eq!(changed.body["name"], "prod");
        app.chat(&secret, chat()).await.expect(200);
        app.chat(&secret, chat()).await.expect_error(429, "rate_limit_exceeded");
        app.put(&format!("/api/projects/app/tokens/{id}"), Some(&admin), json!({"limits": [{"metric": "calls", "limit": 1, "window": "hourly", "mode": "sometimes"}]})).await.expect(400);
        app.delete(&format!("/api/projects/app/tokens/{id}"), Some(&admin)).await.expect(204);
        app.chat(&secret, chat()).await.expect_error(401, "invalid_api_key");
        app.delete(&format!("/api/projects/app/tokens/{id}"), Some(&admin)).await.expect_error(404, "not_found");
        assert_eq!(app.get("/api/projects/app/tokens", Some(&admin)).await.expect(200).body, json!([]));
    }

    async fn every_metric_is_enforced_at_every_level_and_never_overspent(backend) {
        let app = TestApp::start(backend).await;
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        // $100 per million tokens: 0.01 cents a token.
        app.model(&admin, "mock-1", 100.0, 100.0, None).await;
        let mut n = 0;
        for (metric, limit, status, code) in [
            ("cost", json!(0.01), 402, "budget_exceeded"),
            ("calls", json!(3), 429, "rate_limit_exceeded"),
            // A request's worst case is 16 input tokens ("user" and "hello": 9 bytes of text,
            // 4 framing for the message, 3 for the reply) and 5 output; it uses 1 and 5.
            ("input_tokens", json!(30), 429, "rate_limit_exceeded"),
            ("output_tokens", json!(22), 429, "rate_limit_exceeded"),
            ("total_tokens", json!(60), 429, "rate_limit_exceeded"),
        ] {
            for level in ["workspace", "project", "token"] {
                // A fresh workspace, project and token, with the one limit at one level.
                n += 1;
                let limits = json!([{"metric": metric, "limit": limit, "window": "daily"}]);
                let at = |l: &str| if l == level { limits.clone() } else { json!([]) };
                let ws = app.post("/api/workspaces", Some(&admin), json!({"name": format!("w{n}"), "limits": at("workspace")})).await.expect(201).body["id"].as_str().unwrap().to_string();
                let slug = format!("p{n}");
                project(&app, &admin, &slug, json!({"workspaceId": ws, "limits": at("project")})).await;
                let key = project_token(&app, &admin, &slug, at("token")).await;
                let (served, refused) = until_refused(&app, &key, 60).await;
                assert!(served >= 1, "{metric} at the {level}: nothing was served");
                assert_eq!(refused.status, status, "{metric} at the {level}: {}", refused.text);
                assert_eq!(refused.body["error"]["code"], code, "{metric} at the {level}");
                // What was recorded stays within the limit.
                let record = record_of(&app, &refused).await;
                let filter = tollgate::usage::LogFilter { api_key_id: record.api_key_id, ..Default::default() };
                let (records, _) = tollgate::usage::logs(app.state.store.as_ref(), &record.owner, &filter, 100, None, Default::default()).await.unwrap();
                let used: i64 = records.iter().map(|r| match metric {
                    "cost" => r.cost_micros,
                    "calls" => i64::from(r.outcome == tollgate::usage::Outcome::Success),
                    "input_tokens" => r.input_tokens,
                    "output_tokens" => r.output_tokens,
                    _ => r.input_tokens + r.output_tokens,
                }).sum();
                let cap = if metric == "cost" { 10_000 } else { limit.as_i64().unwrap() };
                assert!(used <= cap, "{metric} at the {level}: used {used} of {cap}");
                if metric == "calls" {
                    assert_eq!(served, 3, "calls at the {level}");
                }
            }
        }
    }

    async fn calendar_and_rolling_windows_both_limit_and_say_when_they_reset(backend) {
        let app = TestApp::start(backend).await;
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        project(&app, &admin, "app", json!({})).await;
        for (window, max_reset_secs) in [(json!("hourly"), 3600), (json!({"rolling": {"every": 1, "unit": "minute"}}), 65)] {
            let key = project_token(&app, &admin, "app", json!([{"metric": "calls", "limit": 2, "window": window}])).await;
            let first = app.chat(&key, chat()).await.expect(200);
            assert_eq!(first.headers["x-ratelimit-limit-requests"], "2");
            assert_eq!(first.headers["x-ratelimit-remaining-requests"], "1");
            app.chat(&key, chat()).await.expect(200);
            let refused = app.chat(&key, chat()).await.expect_error(429, "rate_limit_exceeded");
            let retry: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=max_reset_secs).contains(&retry), "{window}: retry-after {retry}");
        }
    }

    async fn modes_combine_workspace_project_and_token_limits(backend) {
        let app = TestApp::start(backend).await;
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        let calls = |n: i64, mode: &str| json!([{"metric": "calls", "limit": n, "window": "daily", "mode": mode}]);
        // replace: the token's limit stands instead of the project's.
        project(&app, &admin, "replace", json!({"limits": calls(2, "replace")})).await;
        let key = project_token(&app, &admin, "replace", calls(4, "replace")).await;
        assert_eq!(until_refused(&app, &key, 10).await.0, 4);
        // extend: both must pass, so the project's 2 decide.
        project(&app, &admin, "extend", json!({"limits": calls(2, "replace")})).await;
        let key = project_token(&app, &admin, "extend", calls(4, "extend")).await;
        assert_eq!(until_refused(&app, &key, 10).await.0, 2);
        // disable: the token's limit is off; the project's still applies.
        project(&app, &admin, "disable", json!({"limits": calls(3, "replace")})).await;
        let key = project_token(&app, &admin, "disable", calls(1, "disable")).await;
        assert_eq!(until_refused(&app, &key, 10).await.0, 3);
        // The workspace's limit is shared by every token of every project in it.
        let ws = app.post("/api/workspaces", Some(&admin), json!({"name": "Acme", "limits": calls(3, "replace")})).await.expect(201).body["id"].as_str().unwrap().to_string();
        project(&app, &admin, "ws-a", json!({"workspaceId": ws})).await;
        project(&app, &admin, "ws-b", json!({"workspaceId": ws})).await;
        let a = project_token(&app, &admin, "ws-a", json!([])).await;
        let b = project_token(&app, &admin, "ws-b", json!([])).await;
        app.chat(&a, chat()).await.expect(200);
        app.chat(&b, chat()).await.expect(200);
        app.chat(&a, chat()).await.expect(200);
        app.chat(&b, chat()).await.expect_error(429, "rate_limit_exceeded");
        // ... and a workspace token's own budget extends the workspace's, never escapes it.
        let wt = app.post("/api/tokens", Some(&admin), json!({"name": "w", "business_id": ws, "budget_limit": 100})).await.expect(201).body["secret"].as_str().unwrap().to_string();
        app.chat(&wt, chat()).await.expect_error(429, "rate_limit_exceeded");
    }

    async fn sixty_four_concurrent_requests_over_three_levels_serve_exactly_the_limit(backend) {
        let app = TestApp::start(backend).await;
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        let limits = |n: i64| json!([{"metric": "calls", "limit": n, "window": "daily", "mode": "extend"}]);
        let ws = app.post("/api/workspaces", Some(&admin), json!({"name": "Acme", "limits": limits(7)})).await.expect(201).body["id"].as_str().unwrap().to_string();
        project(&app, &admin, "app", json!({"workspaceId": ws, "limits": limits(50)})).await;
        let key = project_token(&app, &admin, "app", limits(60)).await;
        let results = futures::future::join_all((0..64).map(|_| app.chat(&key, chat()))).await;
        let served = results.iter().filter(|r| r.status == 200).count();
        assert_eq!(served, 7, "{:?}", results.iter().filter(|r| r.status != 200 && r.status != 429).map(|r| &r.text).collect::<Vec<_>>());
        assert!(results.iter().all(|r| r.status == 200 || r.status == 429));
        // Every level counted exactly the served requests once settled.
        for counters in [format!("LIMITS#workspace#{ws}")] {
            let item = app.state.store.get(&tollgate::store::Key::new(counters, "COUNTERS")).await.unwrap().unwrap();
            let total: i64 = item.iter().filter(|(k, _)| k.starts_with("u_")).filter_map(|(_, v)| v.as_i64()).sum();
            assert_eq!(total, 7);
        }
    }

    async fn a_project_token_falls_back_over_the_projects_models_and_records_the_trace(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let broken = FakeUpstream::start().await;
        let slow = FakeUpstream::start().await;
        app.model(&admin, "broken", 1.0, 1.0, Some((&broken.base_url, "sk-broken"))).await;
        app.model(&admin, "slow", 1.0, 1.0, Some((&slow.base_url, "sk-slow"))).await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        project(&app, &admin, "routed", json!({"models": ["broken", "slow", "mock-1"], "defaultTimeoutMs": 300})).await;
        let key = project_token(&app, &admin, "routed", json!([])).await;
        broken.behave(Behaviour::Fail(503));
        slow.behave(Behaviour::Delay(std::time::Duration::from_millis(2000)));

        let r = app.chat(&key, json!({"model": "anything", "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        let record = record_of(&app, &r).await;
        assert_eq!(record.candidates, vec!["broken", "slow", "mock-1"]);
        let trace: Vec<(String, Option<i64>)> = record.routing.iter().map(|a| (a.model.clone(), a.status)).collect();
        assert_eq!(trace, vec![("broken".into(), Some(503)), ("slow".into(), None), ("mock-1".into(), Some(200))]);
        assert!(record.routing[0].error.as_deref().unwrap().contains("503"));
        assert!(record.routing[1].error.as_deref().unwrap().contains("in time"));
        assert!(record.routing[1].latency_ms >= 300);
        assert_eq!(record.model, "mock-1");
        // Each upstream is asked for its own model, not the name the client sent.
        for (upstream, id) in [(&broken, "broken"), (&slow, "slow")] {
            let asked: Vec<Value> = upstream.requests().into_iter().map(|(_, body)| body["model"].clone()).collect();
            assert_eq!(asked, vec![json!(id)]);
        }

        // Streamed, the fallback happens before the first byte.
        let streamed = app.post("/v1/chat/completions", Some(&key), json!({"model": "broken", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        assert!(streamed.text.ends_with("data: [DONE]\n\n"), "{}", streamed.text);
        // A 4xx is the request's fault: no fallback.
        broken.behave(Behaviour::Fail(400));
        let r = app.chat(&key, json!({"model": "broken", "messages": [{"role": "user", "content": "hi"}]})).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(record_of(&app, &r).await.routing.len(), 1);
        // Every candidate failing: the last failure is the answer, each attempt in the trace.
        broken.behave(Behaviour::Fail(500));
        project(&app, &admin, "doomed", json!({"models": ["broken"]})).await;
        let doomed = project_token(&app, &admin, "doomed", json!([])).await;
        let r = app.chat(&doomed, json!({"model": "broken", "messages": [{"role": "user", "content": "hi"}]})).await.expect_error(502, "upstream_error");
        assert_eq!(record_of(&app, &r).await.outcome, tollgate::usage::Outcome::Error);
    }

    async fn the_usage_view_filters_pages_and_shows_each_caller_only_their_records(backend) {
        let app = TestApp::start(backend).await;
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        app.model(&admin, "mock-2", 1.0, 1.0, None).await;
        let mine = app.post("/api/workspaces", Some(&admin), json!({"name": "Admin's"})).await.expect(201).body["id"].as_str().unwrap().to_string();
        project(&app, &admin, "alpha", json!({"models": ["mock-1", "mock-2"], "workspaceId": mine})).await;
        let (_, boss) = app.user(&admin, "boss@example.com", "viewer").await;
        let ws = app.post("/api/workspaces", Some(&boss), json!({"name": "Acme"})).await.expect(201).body["id"].as_str().unwrap().to_string();
        project(&app, &boss, "beta", json!({"workspaceId": ws})).await;
        let alpha = project_token(&app, &admin, "alpha", json!([{"metric": "calls", "limit": 3, "window": "daily"}])).await;
        let beta = project_token(&app, &boss, "beta", json!([])).await;
        let mut alpha_ids = Vec::new();
        for model in ["mock-1", "mock-2", "mock-2"] {
            let r = app.chat(&alpha, json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
            alpha_ids.push(r.headers["x-request-id"].to_str().unwrap().to_string());
        }
        app.chat(&alpha, chat()).await.expect_error(429, "rate_limit_exceeded");
        let beta_id = app.chat(&beta, chat()).await.expect(200).headers["x-request-id"].to_str().unwrap().to_string();
        let (_, personal) = app.api_key(&admin, json!({})).await;
        app.chat(&personal, chat()).await.expect(200);

        let ids = |r: &Resp| r.body["records"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        let all = app.get("/api/usage", Some(&admin)).await.expect(200);
        assert_eq!(ids(&all).len(), 6, "{}", all.text);
        assert_eq!(all.body["hasMore"], false);
        let alpha_only = app.get("/api/usage?project=alpha", Some(&admin)).await.expect(200);
        assert_eq!(ids(&alpha_only).len(), 4);
        let mock2 = app.get("/api/usage?project=alpha&model=mock-2", Some(&admin)).await.expect(200);
        assert_eq!(ids(&mock2), vec![alpha_ids[2].clone(), alpha_ids[1].clone()], "newest first");
        let refused = app.get("/api/usage?outcome=error&project=alpha", Some(&admin)).await.expect(200);
        assert_eq!(refused.body["records"][0]["statusCode"], 429);
        let page = app.get("/api/usage?limit=2&offset=2", Some(&admin)).await.expect(200);
        assert_eq!(ids(&page), ids(&all)[2..4].to_vec());
        assert_eq!(page.body["hasMore"], true);
        let yesterday = (app.clock.now() - chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
        assert_eq!(ids(&app.get(&format!("/api/usage?to={yesterday}"), Some(&admin)).await.expect(200)).len(), 0);
        assert_eq!(ids(&app.get(&format!("/api/usage?from={yesterday}"), Some(&admin)).await.expect(200)).len(), 6);
        for bad in ["from=yesterday", "limit=0", "outcome=maybe", "colour=red"] {
            app.get(&format!("/api/usage?{bad}"), Some(&admin)).await.expect(400);
        }
        app.get("/api/usage?project=nope", Some(&admin)).await.expect_error(404, "not_found");

        let one = app.get(&format!("/api/usage/{}", alpha_ids[0]), Some(&admin)).await.expect(200);
        assert_eq!(one.body["candidates"], json!(["mock-1", "mock-2"]));
        assert_eq!(one.body["routing"][0]["model"], "mock-1");
        assert_eq!(one.body["routing"][0]["status"], 200);
        assert!(all.body["records"][0].get("routing").is_none(), "the list leaves the trace out");
        app.get("/api/usage/no-such-request", Some(&admin)).await.expect_error(404, "not_found");

        // Another workspace's owner sees their project's record, not alpha's nor the admin's own.
        let theirs = app.get("/api/usage", Some(&boss)).await.expect(200);
        assert_eq!(ids(&theirs), vec![beta_id.clone()]);
        app.get(&format!("/api/usage/{}", alpha_ids[0]), Some(&boss)).await.expect_error(404, "not_found");
        app.get(&format!("/api/usage/{beta_id}"), Some(&boss)).await.expect(200);
        app.get("/api/usage?project=alpha", Some(&boss)).await.expect_error(404, "not_found");

        // Our cursor pages the same records, each page read below the last.
        let mut paged = Vec::new();
        let mut next = "/api/usage?limit=2".to_string();
        loop {
            let page = app.get(&next, Some(&admin)).await.expect(200);
            paged.extend(ids(&page));
            match page.body["nextCursor"].as_str() {
                Some(cursor) => next = format!("/api/usage?limit=2&cursor={cursor}"),
                None => break,
            }
        }
        assert_eq!(paged, ids(&all));
        let by_cursor = app.get("/api/usage?project=alpha&model=mock-2&limit=1", Some(&admin)).await.expect(200);
        let cursor = by_cursor.body["nextCursor"].as_str().unwrap().to_string();
        let second = app.get(&format!("/api/usage?project=alpha&model=mock-2&limit=1&cursor={cursor}"), Some(&admin)).await.expect(200);
        assert_eq!(ids(&second), vec![alpha_ids[1].clone()]);
        assert_eq!(second.body["hasMore"], false);
        app.get("/api/usage?cursor=not-ours", Some(&admin)).await.expect_error(400, "invalid_value");

        // Grouped for dashboards, from the rollups, by the same visibility.
        tollgate::usage::rollups::roll_up(app.state.store.as_ref()).await.unwrap();
        let summary = |query: &str, token: &str| {
            let path = format!("/api/usage/summary?{query}");
            let (app, token) = (&app, token.to_string());
            async move { app.get(&path, Some(&token)).await.expect(200).body }
        };
        let counts = |body: &Value| {
            body["groups"].as_array().unwrap().iter().map(|g| (g["key"].as_str().map(str::to_string), g["requestCount"].as_i64().unwrap())).collect::<Vec<_>>()
        };
        let by_model = summary("group_by=model", &admin).await;
        let mut want: std::collections::BTreeMap<Option<String>, i64> = Default::default();
        for r in all.body["records"].as_array().unwrap() {
            *want.entry(r["model"].as_str().map(str::to_string)).or_default() += 1;
        }
        assert_eq!(counts(&by_model), want.into_iter().collect::<Vec<_>>());
        assert_eq!(by_model["total"]["requestCount"], 6);
        let cost: f64 = all.body["records"].as_array().unwrap().iter().map(|r| r["cost"].as_f64().unwrap()).sum();
        assert!((by_model["total"]["cost"].as_f64().unwrap() - cost).abs() < 1e-9, "{by_model}");
        let alpha_uuid = app.get("/api/projects/alpha", Some(&admin)).await.expect(200).body["id"].as_str().unwrap().to_string();
        let beta_uuid = app.get("/api/projects/beta", Some(&boss)).await.expect(200).body["id"].as_str().unwrap().to_string();
        let mut by_project = counts(&summary("group_by=project", &admin).await);
        by_project.sort();
        let mut want = vec![(None, 1), (Some(alpha_uuid.clone()), 4), (Some(beta_uuid.clone()), 1)];
        want.sort();
        assert_eq!(by_project, want);
        let today = app.clock.now().format("%Y-%m-%d").to_string();
        assert_eq!(counts(&summary(&format!("group_by=day&from={today}&to={today}"), &admin).await), vec![(Some(today.clone()), 6)]);
        assert_eq!(counts(&summary(&format!("to={yesterday}"), &admin).await), vec![]);
        assert_eq!(counts(&summary("group_by=token&project=alpha", &admin).await).iter().map(|g| g.1).sum::<i64>(), 4);
        assert_eq!(counts(&summary(&format!("group_by=project&business_id={mine}"), &admin).await), vec![(Some(alpha_uuid), 4)]);
        // The boss sees their workspace's project only; the admin's workspace does not exist for them.
        assert_eq!(counts(&summary("group_by=project", &boss).await), vec![(Some(beta_uuid.clone()), 1)]);
        assert_eq!(counts(&summary(&format!("group_by=project&business_id={ws}"), &boss).await), vec![(Some(beta_uuid), 1)]);
        app.get(&format!("/api/usage/summary?business_id={mine}"), Some(&boss)).await.expect_error(404, "not_found");
        app.get("/api/usage/summary?project=alpha", Some(&boss)).await.expect_error(404, "not_found");
        for bad in ["group_by=colour", "from=2031-02-02&to=2031-02-01", "business_id=nope"] {
            app.get(&format!("/api/usage/summary?{bad}"), Some(&admin)).await.expect(400);
        }
    }
}
