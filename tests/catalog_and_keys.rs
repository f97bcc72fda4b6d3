//! The models catalog (management family) and personal API keys (self-service family).

use secrecy::ExposeSecret;
use serde_json::json;
use tollgate_tests::{TestApp, backend_tests};

backend_tests! {
    async fn models_catalog_keeps_keys_in_the_secret_store(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let created = app.post("/api/models", Some(&admin), json!({
            "id": "gpt-5-mini", "provider": "openai", "apiKey": "sk-secret-model-key", "inputPrice": 0.25, "outputPrice": 2.0,
            "contextWindow": 128000, "capabilities": ["functionCalling", "json"]
        })).await.expect(201);
        assert_eq!(created.body["inputPrice"], 0.25);
        assert_eq!(created.body["outputPrice"], 2.0);
        assert_eq!(created.body["hasApiKey"], true);
        assert!(!created.text.contains("sk-secret-model-key"));
        let listed = app.get("/api/models", Some(&admin)).await.expect(200);
        assert_eq!(listed.body.as_array().unwrap().len(), 1);
        assert!(!listed.text.contains("sk-secret"));
        let got = app.get("/api/models/gpt-5-mini", Some(&admin)).await.expect(200);
        assert_eq!(got.body["contextWindow"], 128000);
        assert!(got.body.get("apiKey").is_none());

        // The key is in the secret store, under the model's secret name, and nowhere in the table.
        let model = tollgate::catalog::require(app.state.store.as_ref(), "gpt-5-mini").await.unwrap();
        assert_eq!(app.state.secrets.get(&model.secret_name()).await.unwrap().unwrap().expose_secret(), "sk-secret-model-key");
        app.post("/api/models/gpt-5-mini/apikey", Some(&admin), json!({"apiKey": "sk-rotated"})).await.expect(200);
        assert_eq!(app.state.secrets.get(&model.secret_name()).await.unwrap().unwrap().expose_secret(), "sk-rotated");

        let updated = app.put("/api/models/gpt-5-mini", Some(&admin), json!({"inputPrice": 0.5, "capabilities": ["json"]})).await.expect(200);
        assert_eq!(updated.body["inputPrice"], 0.5);
        assert_eq!(updated.body["outputPrice"], 2.0);
        assert_eq!(model.input_price_micros, 250_000, "prices are integer micro-dollars per million tokens");

        app.post("/api/models", Some(&admin), json!({"id": "gpt-5-mini", "provider": "openai", "inputPrice": 1, "outputPrice": 1, "contextWindow": 1})).await.expect_error(409, "model_exists");
        app.post("/api/models", Some(&admin), json!({"id": "x", "provider": "nope", "inputPrice": 1, "outputPrice": 1, "contextWindow": 1})).await.expect_error(400, "invalid_value");
        app.post("/api/models", Some(&admin), json!({"id": "x", "provider": "openai", "inputPrice": -1, "outputPrice": 1, "contextWindow": 1})).await.expect_error(400, "invalid_value");
        app.post("/api/models", Some(&admin), json!({"id": "a/b", "provider": "openai", "inputPrice": 1, "outputPrice": 1, "contextWindow": 1})).await.expect_error(400, "invalid_value");
        app.post("/api/models", Some(&admin), json!({"id": "x", "provider": "openai-compatible", "inputPrice": 1, "outputPrice": 1, "contextWindow": 1})).await.expect_error(400, "invalid_value");
        app.post("/api/models", Some(&admin), json!({"id": "x", "provider": "openai", "baseUrl": "ftp://x", "inputPrice": 1, "outputPrice": 1, "contextWindow": 1})).await.expect_error(400, "invalid_value");

        let (_, viewer) = app.user(&admin, "viewer@example.com", "viewer").await;
        app.get("/api/models", Some(&viewer)).await.expect(200);
        app.post("/api/models", Some(&viewer), json!({"id": "y", "provider": "mock", "inputPrice": 1, "outputPrice": 1, "contextWindow": 1})).await.expect_error(403, "insufficient_permissions");

        app.delete("/api/models/gpt-5-mini", Some(&admin)).await.expect(204);
        app.get("/api/models/gpt-5-mini", Some(&admin)).await.expect_error(404, "not_found");
        assert!(app.state.secrets.get(&model.secret_name()).await.unwrap().is_none(), "deleting a model deletes its key");
    }

    async fn personal_keys_show_their_secret_once_and_store_only_its_hash(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let created = app.post("/admin/v1/me/api-keys", Some(&admin), json!({
            "name": "server", "allowed_models": ["gpt-*", "mock-1"], "budget_limit_cents": 2500, "budget_period": "monthly",
            "expires_at": "2099-01-01T00:00:00Z", "ip_allowlist": ["127.0.0.1", "10.0.0.0/8"], "rate_limit_rpm": 60,
            "rate_limit_tpm": 100000, "scopes": ["chat", "models"], "sovereignty_requirements": {"regions": ["eu-west-1"], "zero_data_retention": true}
        })).await.expect(201);
        let secret = created.body["key"].as_str().unwrap().to_string();
        let id = created.body["id"].as_str().unwrap().to_string();
        assert!(secret.starts_with("tg_") && secret.len() >= 40, "{secret}");
        assert!(secret.starts_with(created.body["key_prefix"].as_str().unwrap()));
        assert_eq!(created.body["owner"]["type"], "user");
        assert_eq!(created.body["sovereignty_requirements"]["regions"], json!(["eu-west-1"]));
        for field in ["allowed_models", "budget_limit_cents", "budget_period", "expires_at", "ip_allowlist", "rate_limit_rpm", "rate_limit_tpm", "scopes", "last_used_at", "revoked_at", "rotated_from_key_id", "rotation_grace_until"] {
            assert!(created.body.get(field).is_some(), "missing {field}");
        }
        let got = app.get(&format!("/admin/v1/me/api-keys/{id}"), Some(&admin)).await.expect(200);
        assert!(got.body.get("key").is_none() && !got.text.contains(&secret), "the secret is shown once");
        let listed = app.get("/admin/v1/me/api-keys", Some(&admin)).await.expect(200);
        assert!(!listed.text.contains(&secret));
        // Only the hash is stored: the secret is nowhere in the key's stored items.
        let record = app.state.store.get(&tollgate::store::Key::new(format!("TOKEN#{id}"), "TOKEN")).await.unwrap().unwrap();
        assert!(!format!("{record:?}").contains(&secret));
        assert_eq!(record["key_hash"].as_str().unwrap(), tollgate::identity::sha256_hex(&secret));

        for (body, param) in [
            (json!({"name": ""}), "name"),
            (json!({"name": "k", "scopes": ["fly"]}), "scopes"),
            (json!({"name": "k", "allowed_models": ["a*b"]}), "allowed_models"),
            (json!({"name": "k", "ip_allowlist": ["not-an-ip"]}), "ip_allowlist"),
            (json!({"name": "k", "budget_limit_cents": -1}), "budget_limit_cents"),
            (json!({"name": "k", "budget_period": "daily"}), "budget_period"),
            (json!({"name": "k", "rate_limit_rpm": 0}), "rate_limit_rpm"),
            (json!({"name": "k", "expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
        ] {
            let r = app.post("/admin/v1/me/api-keys", Some(&admin), body).await.expect_error(400, "invalid_value");
            assert_eq!(r.body["error"]["param"], param);
        }
        app.post("/admin/v1/me/api-keys", Some(&admin), json!({"name": "k", "budget_period": "hourly", "budget_limit_cents": 1})).await.expect_error(400, "invalid_body");
        app.get("/admin/v1/me/api-keys/nope", Some(&admin)).await.expect_error(400, "invalid_value");

        // Someone else's key is not found for you.
        let (_, other) = app.user(&admin, "other@example.com", "viewer").await;
        app.get(&format!("/admin/v1/me/api-keys/{id}"), Some(&other)).await.expect_error(404, "not_found");
        app.delete(&format!("/admin/v1/me/api-keys/{id}"), Some(&other)).await.expect_error(404, "not_found");
        // A key with full access may manage its owner's keys; a restricted one may not mint
        // itself an unrestricted key.
        let (_, full) = app.api_key(&admin, json!({})).await;
        let listed_by_key = app.get("/admin/v1/me/api-keys", Some(&full)).await.expect(200);
        assert_eq!(listed_by_key.body["data"].as_array().unwrap().len(), 2);
        app.post("/admin/v1/me/api-keys", Some(&full), json!({"name": "made by a key"})).await.expect(201);
        app.get("/admin/v1/me/api-keys", Some(&secret)).await.expect_error(403, "insufficient_scope");
        app.post("/admin/v1/me/api-keys", Some(&secret), json!({"name": "escalate"})).await.expect_error(403, "insufficient_scope");
        let (_, usage_only) = app.api_key(&admin, json!({"scopes": ["usage:read"]})).await;
        app.get("/admin/v1/me/usage/logs", Some(&usage_only)).await.expect(200);
        app.get("/admin/v1/me/usage/logs", Some(&secret)).await.expect_error(403, "insufficient_scope");
        app.post("/admin/v1/me/api-keys", Some(&usage_only), json!({"name": "escalate"})).await.expect_error(403, "insufficient_scope");
    }

    async fn keys_paginate_with_cursors_and_hide_deleted_ones(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(app.api_key(&admin, json!({"name": format!("k{i}")})).await.0);
        }
        let first = app.get("/admin/v1/me/api-keys?limit=2", Some(&admin)).await.expect(200);
        let names = |r: &tollgate_tests::Resp| r.body["data"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(names(&first), ["k4", "k3"], "newest first");
        assert_eq!(first.body["pagination"]["has_more"], true);
        assert_eq!(first.body["pagination"]["limit"], 2);
        let cursor = first.body["pagination"]["next_cursor"].as_str().unwrap().to_string();
        let second = app.get(&format!("/admin/v1/me/api-keys?limit=2&cursor={cursor}"), Some(&admin)).await.expect(200);
        assert_eq!(names(&second), ["k2", "k1"]);
        let back = second.body["pagination"]["prev_cursor"].as_str().unwrap().to_string();
        let cursor = second.body["pagination"]["next_cursor"].as_str().unwrap().to_string();
        let third = app.get(&format!("/admin/v1/me/api-keys?limit=2&cursor={cursor}"), Some(&admin)).await.expect(200);
        assert_eq!(names(&third), ["k0"]);
        assert_eq!(third.body["pagination"]["has_more"], false);
        assert!(third.body["pagination"]["next_cursor"].is_null());
        let backward = app.get(&format!("/admin/v1/me/api-keys?limit=2&cursor={back}&direction=backward"), Some(&admin)).await.expect(200);
        assert_eq!(names(&backward), ["k4", "k3"], "prev_cursor with direction=backward returns the page before");

        app.delete(&format!("/admin/v1/me/api-keys/{}", ids[4]), Some(&admin)).await.expect(204);
        let visible = app.get("/admin/v1/me/api-keys", Some(&admin)).await.expect(200);
        assert_eq!(names(&visible), ["k3", "k2", "k1", "k0"]);
        let all = app.get("/admin/v1/me/api-keys?include_deleted=true", Some(&admin)).await.expect(200);
        assert_eq!(names(&all).len(), 5);
        assert!(all.body["data"][0]["revoked_at"].is_string());
        app.get("/admin/v1/me/api-keys?limit=0", Some(&admin)).await.expect_error(400, "invalid_value");
        app.get("/admin/v1/me/api-keys?cursor=garbage", Some(&admin)).await.expect_error(400, "invalid_value");
        app.get("/admin/v1/me/api-keys?direction=sideways", Some(&admin)).await.expect_error(400, "invalid_query");
    }

    async fn rotation_copies_settings_and_keeps_the_old_key_for_its_grace(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.0, 0.0, None).await;
        let (id, old) = app.api_key(&admin, json!({"scopes": ["chat"], "rate_limit_rpm": 100, "allowed_models": ["mock-*"]})).await;
        let msg = json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]});
        app.post(&format!("/admin/v1/me/api-keys/{id}/rotate"), Some(&admin), json!({"grace_period_seconds": 0})).await.expect_error(400, "invalid_value");
        app.post(&format!("/admin/v1/me/api-keys/{id}/rotate"), Some(&admin), json!({"grace_period_seconds": 604801})).await.expect_error(400, "invalid_value");
        let rotated = app.post(&format!("/admin/v1/me/api-keys/{id}/rotate"), Some(&admin), json!({"grace_period_seconds": 2})).await.expect(201);
        let new = rotated.body["key"].as_str().unwrap().to_string();
        assert_eq!(rotated.body["rotated_from_key_id"], id.as_str());
        assert_eq!(rotated.body["scopes"], json!(["chat"]));
        assert_eq!(rotated.body["allowed_models"], json!(["mock-*"]));
        assert_eq!(rotated.body["rate_limit_rpm"], 100);
        let old_view = app.get(&format!("/admin/v1/me/api-keys/{id}"), Some(&admin)).await.expect(200);
        assert!(old_view.body["rotation_grace_until"].is_string());
        app.chat(&old, msg.clone()).await.expect(200);
        app.chat(&new, msg.clone()).await.expect(200);
        app.post(&format!("/admin/v1/me/api-keys/{id}/rotate"), Some(&admin), json!({})).await.expect_error(409, "key_rotating");
        app.clock.advance(chrono::Duration::seconds(3));
        app.chat(&old, msg.clone()).await.expect_error(401, "invalid_api_key");
        app.chat(&new, msg.clone()).await.expect(200);

        // An empty body takes the default grace (a day).
        let new_id = rotated.body["id"].as_str().unwrap();
        let again = app.call(reqwest::Method::POST, &format!("/admin/v1/me/api-keys/{new_id}/rotate"), Some(&admin), None).await.expect(201);
        let grace: chrono::DateTime<chrono::Utc> = app.get(&format!("/admin/v1/me/api-keys/{new_id}"), Some(&admin)).await.body["rotation_grace_until"].as_str().unwrap().parse().unwrap();
        assert!((grace - chrono::Utc::now()).num_seconds() > 86_000);
        assert!(again.body["key"].is_string());
        let revoked = app.api_key(&admin, json!({})).await.0;
        app.delete(&format!("/admin/v1/me/api-keys/{revoked}"), Some(&admin)).await.expect(204);
        app.post(&format!("/admin/v1/me/api-keys/{revoked}/rotate"), Some(&admin), json!({})).await.expect_error(409, "key_revoked");
    }
}
