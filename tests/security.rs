//! What a hostile user tried, on both backends: keys that mint wider keys, accounts minted
//! through invites, arithmetic on huge numbers, and project slugs as a cross-tenant oracle.

use serde_json::{Value, json};
use tollgate::keys::Owner;
use tollgate::store::Update;
use tollgate_tests::{TestApp, backend_tests};

const CHAT: &str = "/v1/chat/completions";

fn hi() -> Value {
    json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
}

async fn key_of(app: &TestApp, admin: &str, id: &str) -> tollgate::keys::ApiKey {
    let user_id = app.get("/api/me", Some(admin)).await.body["id"].as_str().unwrap().parse().unwrap();
    tollgate::keys::get(app.state.store.as_ref(), &Owner::User { user_id }, id.parse().unwrap()).await.unwrap()
}

backend_tests! {
    async fn a_key_cannot_mint_a_key_wider_than_itself(backend) {
        let app = TestApp::start(backend).await;
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        // The probe's key: a 1-cent budget, one model, 2 requests a minute, every scope.
        let (parent_id, parent) = app.api_key(&admin, json!({"budget_limit_cents": 1, "allowed_models": ["mock-1"], "rate_limit_rpm": 2})).await;
        let narrow = json!({"name": "child", "budget_limit_cents": 1, "allowed_models": ["mock-1"], "rate_limit_rpm": 2});
        let wider = |change: Value| {
            let mut body = narrow.clone();
            body.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
            body
        };
        // Today's bypass: a key with no limits at all.
        let r = app.post("/admin/v1/me/api-keys", Some(&parent), json!({"name": "unlimited"})).await.expect_error(403, "exceeds_parent_key");
        assert!(r.body["error"]["message"].as_str().unwrap().contains("allowed_models"), "{}", r.text);
        for (change, field) in [
            (json!({"budget_limit_cents": null}), "budget_limit_cents"),
            (json!({"budget_limit_cents": 2}), "budget_limit_cents"),
            (json!({"budget_period": "daily"}), "budget_period"),
            (json!({"allowed_models": ["mock-*"]}), "allowed_models"),
            (json!({"allowed_models": ["mock-1", "other"]}), "allowed_models"),
            (json!({"rate_limit_rpm": 3}), "rate_limit_rpm"),
            (json!({"rate_limit_rpm": null}), "rate_limit_rpm"),
        ] {
            let r = app.post("/admin/v1/me/api-keys", Some(&parent), wider(change.clone())).await.expect_error(403, "exceeds_parent_key");
            assert!(r.body["error"]["message"].as_str().unwrap().contains(field), "{change}: {}", r.text);
        }
        let made = app.post("/admin/v1/me/api-keys", Some(&parent), wider(json!({"scopes": ["chat", "keys:write"], "budget_period": "monthly"}))).await.expect(201);
        assert_eq!(made.body["parent_key_id"], parent_id.as_str());
        let (child_id, child) = (made.body["id"].as_str().unwrap().to_string(), made.body["key"].as_str().unwrap().to_string());
        // A child's scopes are within its parent's too.
        app.post("/admin/v1/me/api-keys", Some(&child), wider(json!({"scopes": null}))).await.expect_error(403, "exceeds_parent_key");
        app.post("/admin/v1/me/api-keys", Some(&child), wider(json!({"scopes": ["usage:read"]}))).await.expect_error(403, "exceeds_parent_key");

        // Keys without keys:write manage nothing, and see keys only with usage:read.
        let (_, chat_only) = app.api_key(&admin, json!({"scopes": ["chat"]})).await;
        app.post("/admin/v1/me/api-keys", Some(&chat_only), json!({"name": "x"})).await.expect_error(403, "insufficient_scope");
        app.get("/admin/v1/me/api-keys", Some(&chat_only)).await.expect_error(403, "insufficient_scope");
        app.get("/admin/v1/me/api-keys", Some(&child)).await.expect(200);

        // The child counts against its parent's budget: with the parent's budget all but
        // spent, the child is refused although its own is untouched.
        let parent_key = key_of(&app, &admin, &parent_id).await;
        let budget = parent_key.all_limits().into_iter().find(|l| l.id == "budget").unwrap();
        let (attr, _) = tollgate::limits::current_counter(&budget, app.clock.now());
        app.state.store.update(&parent_key.counters(), Update::default().add(&attr, 9_990), None).await.unwrap();
        let refused = app.post(CHAT, Some(&child), hi()).await.expect_error(402, "budget_exceeded");
        assert!(refused.headers.contains_key("x-request-id"));
        app.post(CHAT, Some(&parent), hi()).await.expect_error(402, "budget_exceeded");
        app.state.store.update(&parent_key.counters(), Update::default().add(&attr, -9_990), None).await.unwrap();
        app.post(CHAT, Some(&child), hi()).await.expect(200);
        let spent = app.state.store.get(&parent_key.counters()).await.unwrap().unwrap();
        assert!(spent.get(&attr).and_then(|a| a.as_i64()).unwrap() > 0, "the child's spend is on the parent's counter");

        // A key rotates or revokes only itself and what descends from it: rotating a wider
        // sibling would hand it that sibling's new secret.
        let (sibling_id, _) = app.api_key(&admin, json!({})).await;
        app.post(&format!("/admin/v1/me/api-keys/{sibling_id}/rotate"), Some(&child), json!({})).await.expect_error(403, "not_your_key_lineage");
        app.post(&format!("/admin/v1/me/api-keys/{parent_id}/rotate"), Some(&child), json!({})).await.expect_error(403, "not_your_key_lineage");
        app.delete(&format!("/admin/v1/me/api-keys/{sibling_id}"), Some(&child)).await.expect_error(403, "not_your_key_lineage");
        let rotated = app.post(&format!("/admin/v1/me/api-keys/{child_id}/rotate"), Some(&parent), json!({"grace_period_seconds": 1})).await.expect(201);
        assert_eq!(rotated.body["parent_key_id"], parent_id.as_str(), "a rotation keeps its lineage");
        let new_child = rotated.body["key"].as_str().unwrap().to_string();

        // Revoking the parent revokes what it made.
        app.delete(&format!("/admin/v1/me/api-keys/{parent_id}"), Some(&admin)).await.expect(204);
        app.post(CHAT, Some(&new_child), hi()).await.expect_error(401, "invalid_api_key");
        app.post(CHAT, Some(&child), hi()).await.expect_error(401, "invalid_api_key");
    }

    async fn an_account_made_by_an_invite_has_no_global_permissions(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        app.post("/api/projects", Some(&admin), json!({"name": "Secret", "slug": "secret", "models": ["mock-1"]})).await.expect(201);
        let (_, key) = app.api_key(&admin, json!({})).await;
        app.post(CHAT, Some(&key), hi()).await.expect(200);
        // A workspace admin with no permissions of their own...
        let (_, boss) = app.user(&admin, "boss@example.com", "none").await;
        let ws = app.post("/api/workspaces", Some(&boss), json!({"name": "Puppets"})).await.expect(201).body["id"].as_str().unwrap().to_string();
        // ...whose invite makes an account (the link reaches the invitee, not the boss).
        let (_, token) = app.invite(&boss, &ws, "puppet@example.com", "member", "https://app.example.com/join").await;
        let accepted = app.post("/api/invite-user/accept", None, json!({"token": token, "password": "puppet password"})).await.expect(200);
        assert_eq!(accepted.body["created_account"], true);
        let puppet = app.login("puppet@example.com", "puppet password").await;
        assert_eq!(app.get("/api/me", Some(&puppet)).await.expect(200).body["role"], "none");
        // It sees its workspace and nothing of the server's.
        app.get(&format!("/api/workspaces/{ws}"), Some(&puppet)).await.expect(200);
        assert_eq!(app.get("/api/projects", Some(&puppet)).await.expect(200).body, json!([]));
        app.get("/api/projects/secret", Some(&puppet)).await.expect_error(404, "not_found");
        app.get("/api/usage", Some(&puppet)).await.expect_error(403, "insufficient_permissions");
        app.get("/api/models", Some(&puppet)).await.expect_error(403, "insufficient_permissions");
        app.get("/api/users", Some(&puppet)).await.expect_error(403, "insufficient_permissions");
        app.get("/api/settings", Some(&puppet)).await.expect_error(403, "insufficient_permissions");
    }

    async fn no_arithmetic_panics_or_wraps(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        for (body, param) in [
            (json!({"name": "k", "budget_limit_cents": i64::MAX}), "budget_limit_cents"),
            (json!({"name": "k", "rate_limit_rpm": i64::MAX}), "rate_limit_rpm"),
            (json!({"name": "k", "rate_limit_tpm": 1_000_000_000_000_000_001_i64}), "rate_limit_tpm"),
        ] {
            let r = app.post("/admin/v1/me/api-keys", Some(&admin), body).await.expect(400);
            assert_eq!(r.body["error"]["param"], param, "{}", r.text);
        }
        let huge = json!({"id": "huge", "provider": "mock", "inputPrice": 1e9, "outputPrice": 1e9, "contextWindow": 1_000_000_000_000_i64});
        assert_eq!(app.post("/api/models", Some(&admin), huge).await.expect(400).body["error"]["param"], "contextWindow");
        let priced = json!({"id": "huge", "provider": "mock", "inputPrice": 1e12, "outputPrice": 1.0, "contextWindow": 1000});
        assert_eq!(app.post("/api/models", Some(&admin), priced).await.expect(400).body["error"]["param"], "inputPrice");
        let limits = json!({"name": "P", "slug": "p", "limits": [{"metric": "calls", "limit": 1e16, "window": "daily"}]});
        assert_eq!(app.post("/api/projects", Some(&admin), limits).await.expect(400).body["error"]["param"], "limits.limit");

        // The largest model and the largest budget there are: the worst case of n=128 answers
        // of 2^62 tokens each is far past any budget, and is refused, not wrapped around.
        let max = json!({"id": "mock-1", "provider": "mock", "inputPrice": 1e9, "outputPrice": 1e9, "contextWindow": tollgate::catalog::MAX_CONTEXT_WINDOW});
        app.post("/api/models", Some(&admin), max).await.expect(201);
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 100_000_000_000_i64})).await;
        let body = json!({"model": "mock-1", "n": 128, "max_tokens": 1_i64 << 62, "messages": [{"role": "user", "content": "hi"}]});
        app.post(CHAT, Some(&key), body.clone()).await.expect_error(402, "budget_exceeded");
        // Nothing was held by the refusal: a small request on the same key is served.
        app.post(CHAT, Some(&key), json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        // With a token limit only, the same request is bounded by the context window and served.
        let (_, tokens) = app.api_key(&admin, json!({"rate_limit_tpm": tollgate::limits::MAX_COUNT})).await;
        app.post(CHAT, Some(&tokens), body).await.expect(200);
    }

    async fn a_project_slug_tells_nothing_about_other_tenants(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let (_, alice) = app.user(&admin, "alice@example.com", "none").await;
        let (_, bob) = app.user(&admin, "bob@example.com", "none").await;
        let (_, carol) = app.user(&admin, "carol@example.com", "none").await;
        let ws = |token: String| {
            let app = &app;
            async move { app.post("/api/workspaces", Some(&token), json!({"name": "W"})).await.expect(201).body["id"].as_str().unwrap().to_string() }
        };
        let (wa, wb) = (ws(alice.clone()).await, ws(bob.clone()).await);
        app.post("/api/projects", Some(&bob), json!({"name": "Bob's", "slug": "acme", "workspaceId": wb})).await.expect(201);
        // Alice gets the same answer as if Bob had no acme: her own is created.
        let mine = app.post("/api/projects", Some(&alice), json!({"name": "Alice's", "slug": "acme", "workspaceId": wa})).await.expect(201);
        assert_eq!(mine.body["workspaceId"], wa.as_str());
        app.post("/api/projects", Some(&alice), json!({"name": "Again", "slug": "acme", "workspaceId": wa})).await.expect_error(409, "slug_taken");
        assert_eq!(app.get("/api/projects/acme", Some(&alice)).await.expect(200).body["name"], "Alice's");
        assert_eq!(app.get("/api/projects/acme", Some(&bob)).await.expect(200).body["name"], "Bob's");
        // An outsider cannot tell a slug someone has from one nobody has.
        let taken = app.get("/api/projects/acme", Some(&carol)).await.expect_error(404, "not_found");
        let free = app.get("/api/projects/zzz", Some(&carol)).await.expect_error(404, "not_found");
        assert_eq!(taken.body["error"]["message"].as_str().unwrap().replace("acme", "zzz"), free.body["error"]["message"]);
        // Whoever sees both names one.
        app.get("/api/projects/acme", Some(&admin)).await.expect_error(409, "ambiguous_slug");
        assert_eq!(app.get(&format!("/api/projects/{wa}:acme"), Some(&admin)).await.expect(200).body["name"], "Alice's");
        assert_eq!(app.get(&format!("/api/projects/{wb}:acme"), Some(&admin)).await.expect(200).body["name"], "Bob's");
        app.get(&format!("/api/projects/{wb}:acme"), Some(&alice)).await.expect_error(404, "not_found");
    }
}
