//! Workspace tokens (workspace-admin family's /api/tokens), managed by the workspace's owners
//! and admins and enforced by the proxy like personal keys, on both store backends.

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, backend_tests};

async fn workspace(app: &TestApp, token: &str) -> String {
    app.post("/api/workspaces", Some(token), json!({"name": "Acme"})).await.expect(201).body["id"].as_str().unwrap().to_string()
}

async fn token(app: &TestApp, session: &str, ws: &str, extra: Value) -> Value {
    let mut body = json!({"name": "server production", "business_id": ws});
    body.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    app.post("/api/tokens", Some(session), body).await.expect(201).body
}

fn chat_body() -> Value {
    json!({"model": "mock-1", "max_tokens": 10, "messages": [{"role": "user", "content": "hello there"}]})
}

backend_tests! {
    async fn workspace_tokens_are_created_listed_revoked_and_deleted_as_the_seed_says(backend) {
        let app = TestApp::start(backend).await;
        let (owner, _) = app.admin().await;
        let ws = workspace(&app, &owner).await;
        let created = token(&app, &owner, &ws, json!({
            "scopes": ["leaderboards:inference", "leaderboards:read"], "expires_in": "90d", "budget_limit": 25, "budget_reset_interval": "monthly"
        })).await;
        let secret = created["secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("tg_") && secret.starts_with(created["key_prefix"].as_str().unwrap()));
        assert_eq!(created["business_id"], ws.as_str());
        assert_eq!(created["budget_limit"], 25.0);
        assert_eq!(created["budget_reset_interval"], "monthly");
        assert_eq!(created["scopes"], json!(["leaderboards:inference", "leaderboards:read"]));
        let expires: DateTime<Utc> = created["expires_at"].as_str().unwrap().parse().unwrap();
        let days = (expires - Utc::now()).num_hours();
        assert!((89 * 24..=90 * 24).contains(&days), "90d is 90 days: {days} hours");
        let lifetime = token(&app, &owner, &ws, json!({"name": "no expiry"})).await;
        assert_eq!(lifetime["expires_at"], Value::Null);
        assert_eq!(lifetime["budget_limit"], Value::Null);

        let listed = app.get(&format!("/api/tokens?business_id={ws}"), Some(&owner)).await.expect(200);
        assert_eq!(listed.body["tokens"].as_array().unwrap().len(), 2);
        assert_eq!(listed.body["tokens"][1]["id"], created["id"], "newest first");
        assert!(!listed.text.contains(&secret) && !listed.text.contains("\"secret\""), "the secret is shown once");

        for (body, param) in [
            (json!({"expires_in": "2h"}), "expires_in"),
            (json!({"budget_limit": -1}), "budget_limit"),
            (json!({"budget_reset_interval": "daily"}), "budget_reset_interval"),
            (json!({"scopes": ["leaderboards:write"]}), "scopes"),
            (json!({"name": ""}), "name"),
        ] {
            let mut full = json!({"name": "t", "business_id": ws});
            full.as_object_mut().unwrap().extend(body.as_object().cloned().unwrap());
            let r = app.post("/api/tokens", Some(&owner), full).await.expect(400);
            assert_eq!(r.body["error"]["param"], param, "{}", r.text);
        }
        app.post("/api/tokens", Some(&owner), json!({"name": "t", "business_id": ws, "budget_reset_interval": "hourly", "budget_limit": 1}))
            .await.expect(400);

        // Revoked: stops working, stays listed as revoked. Deleted: gone.
        let id = created["id"].as_str().unwrap();
        let revoked = app.post(&format!("/api/tokens/{id}/revoke"), Some(&owner), json!({})).await.expect(200);
        assert!(revoked.body["revoked_at"].is_string());
        let listed = app.get(&format!("/api/tokens?business_id={ws}"), Some(&owner)).await.expect(200);
        assert!(listed.body["tokens"].as_array().unwrap().iter().any(|t| t["id"] == id && t["revoked_at"].is_string()));
        app.delete(&format!("/api/tokens/{id}"), Some(&owner)).await.expect(200);
        let listed = app.get(&format!("/api/tokens?business_id={ws}"), Some(&owner)).await.expect(200);
        assert_eq!(listed.body["tokens"].as_array().unwrap().len(), 1);
        app.delete(&format!("/api/tokens/{id}"), Some(&owner)).await.expect_error(404, "not_found");
        app.post(&format!("/api/tokens/{id}/revoke"), Some(&owner), json!({})).await.expect_error(404, "not_found");
    }

    async fn only_managers_manage_and_outsiders_see_nothing(backend) {
        let app = TestApp::start(backend).await;
        let (owner, _) = app.admin().await;
        let ws = workspace(&app, &owner).await;
        let created = token(&app, &owner, &ws, json!({})).await;
        let id = created["id"].as_str().unwrap();
        let (_, outsider) = app.user(&owner, "outsider@example.com", "admin").await;
        let (_, invite_token) = app.invite(&owner, &ws, "member@example.com", "member", "https://app.example.com/").await;
        app.post("/api/invite-user/accept", None, json!({"token": invite_token, "password": "member password"})).await.expect(200);
        let member = app.login("member@example.com", "member password").await;

        app.get(&format!("/api/tokens?business_id={ws}"), Some(&member)).await.expect(200);
        app.post("/api/tokens", Some(&member), json!({"name": "mine", "business_id": ws})).await.expect_error(403, "workspace_admin_required");
        app.post(&format!("/api/tokens/{id}/revoke"), Some(&member), json!({})).await.expect_error(403, "workspace_admin_required");
        app.delete(&format!("/api/tokens/{id}"), Some(&member)).await.expect_error(403, "workspace_admin_required");

        // A global admin who is not in the workspace is an outsider here too.
        for (method, path, body) in [
            (Method::GET, format!("/api/tokens?business_id={ws}"), None),
            (Method::POST, "/api/tokens".to_string(), Some(json!({"name": "x", "business_id": ws}))),
            (Method::POST, format!("/api/tokens/{id}/revoke"), Some(json!({}))),
            (Method::DELETE, format!("/api/tokens/{id}"), None),
        ] {
            let named_by_caller = path.contains(&ws) || body.as_ref().is_some_and(|b| b.to_string().contains(&ws));
            let r = app.call(method.clone(), &path, Some(&outsider), body).await;
            assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
            assert!(named_by_caller || !r.text.contains(&ws), "{method} {path} named the token's workspace: {}", r.text);
        }
        let listed = app.get(&format!("/api/tokens?business_id={ws}"), Some(&owner)).await.expect(200);
        assert!(listed.body["tokens"][0]["revoked_at"].is_null(), "nothing was revoked");
    }

    async fn the_proxy_enforces_workspace_tokens_scopes_budget_and_revocation(backend) {
        let app = TestApp::start(backend).await;
        let (owner, _) = app.admin().await;
        // $1000 per million tokens: a tenth of a cent a token, so a small budget runs out fast.
        app.model(&owner, "mock-1", 1000.0, 1000.0, None).await;
        let ws = workspace(&app, &owner).await;
        let secret = |t: &Value| t["secret"].as_str().unwrap().to_string();

        let inference = secret(&token(&app, &owner, &ws, json!({"scopes": ["leaderboards:inference"]})).await);
        app.chat(&inference, chat_body()).await.expect(200);
        app.get("/v1/models", Some(&inference)).await.expect_error(403, "insufficient_scope");
        let read_only = secret(&token(&app, &owner, &ws, json!({"scopes": ["leaderboards:read"]})).await);
        app.chat(&read_only, chat_body()).await.expect_error(403, "insufficient_scope");
        let models = app.get("/v1/models", Some(&read_only)).await.expect(200);
        assert_eq!(models.body["data"][0]["id"], "mock-1");
        let nothing = secret(&token(&app, &owner, &ws, json!({"scopes": []})).await);
        app.chat(&nothing, chat_body()).await.expect_error(403, "insufficient_scope");
        // Not a personal key: the self-service family refuses it.
        app.get("/admin/v1/me/api-keys", Some(&inference)).await.expect_error(403, "not_a_personal_key");

        // A budget of 50 cents, lifetime: requests pass until the next worst case (~100 tokens,
        // 10 cents) would not fit.
        let budgeted = token(&app, &owner, &ws, json!({"budget_limit": 0.5, "budget_reset_interval": "never"})).await;
        let key = secret(&budgeted);
        let mut served = 0;
        let refused = loop {
            let r = app.chat(&key, chat_body()).await;
            if r.status != 200 {
                break r;
            }
            assert_eq!(r.headers["x-budget-limit-usd"], "0.500000", "{:?}", r.headers);
            served += 1;
            assert!(served < 50, "the budget never ran out");
        };
        assert_eq!(refused.status, 402, "{}", refused.text);
        assert_eq!(refused.body["error"]["code"], "budget_exceeded");
        assert!(served >= 1);
        let filter = tollgate::usage::LogFilter { api_key_id: budgeted["id"].as_str().unwrap().parse().ok(), ..Default::default() };
        let (records, _) = tollgate::usage::logs(app.state.store.as_ref(), &format!("workspace#{ws}"), &filter, 100, None, Default::default()).await.unwrap();
        assert_eq!(records.len(), served + 1, "every request is recorded, the refused one too");
        let spent: i64 = records.iter().map(|r| r.cost_micros).sum();
        assert!(spent > 0 && spent <= 500_000, "recorded {spent} micro-dollars against a 500 000 budget");

        // Revoked: refused at once.
        let revoked = token(&app, &owner, &ws, json!({})).await;
        let revoked_key = secret(&revoked);
        app.chat(&revoked_key, chat_body()).await.expect(200);
        app.post(&format!("/api/tokens/{}/revoke", revoked["id"].as_str().unwrap()), Some(&owner), json!({})).await.expect(200);
        app.chat(&revoked_key, chat_body()).await.expect_error(401, "invalid_api_key");
    }
}
