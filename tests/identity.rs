//! The auth group over HTTP, on both backends: setup, login, refresh rotation, sessions, me,
//! users, roles and permissions, export and account deletion.

use std::sync::{Arc, OnceLock};

use futures::future::join_all;
use serde_json::json;
use tollgate::Group;
use tollgate::store::Store;
use tollgate_tests::crashing::CrashingStore;
use tollgate_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, backend_tests};

backend_tests! {
    async fn setup_creates_the_first_admin_once(backend) {
        let app = TestApp::start(backend).await;
        assert_eq!(app.get("/api/setup/status", None).await.expect(200).body, json!({"configured": false}));
        let created = app.post("/api/setup/first-admin", None, json!({"email": "Admin@Example.com", "password": ADMIN_PASSWORD})).await.expect(201);
        assert_eq!(created.body["user"]["email"], "admin@example.com");
        assert_eq!(created.body["user"]["role"], "admin");
        assert!(created.body["user"]["permissions"].as_array().unwrap().contains(&json!("settings:write")));
        assert!(created.body["token"].as_str().unwrap().starts_with("eyJ"));
        assert!(created.body["refreshToken"].as_str().unwrap().starts_with("rt_"));
        assert_eq!(app.get("/api/setup/status", None).await.expect(200).body, json!({"configured": true}));
        app.post("/api/setup/first-admin", None, json!({"email": "second@example.com", "password": ADMIN_PASSWORD}))
            .await
            .expect_error(409, "already_configured");
    }

    async fn concurrent_setups_make_exactly_one_admin(backend) {
        let app = TestApp::start(backend).await;
        let attempts = (0..8).map(|i| app.post("/api/setup/first-admin", None, json!({"email": format!("a{i}@example.com"), "password": ADMIN_PASSWORD})));
        let statuses: Vec<u16> = join_all(attempts).await.iter().map(|r| r.status.as_u16()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
    }

    async fn setup_and_login_validate_their_input(backend) {
        let app = TestApp::start(backend).await;
        let bad_email = app.post("/api/setup/first-admin", None, json!({"email": "not-an-email", "password": ADMIN_PASSWORD})).await.expect_error(400, "invalid_value");
        assert_eq!(bad_email.body["error"]["param"], "email");
        let short = app.post("/api/setup/first-admin", None, json!({"email": "a@example.com", "password": "short"})).await.expect_error(400, "invalid_value");
        assert_eq!(short.body["error"]["param"], "password");
        assert_eq!(app.get("/api/setup/status", None).await.body["configured"], false, "nothing is half-written");
    }

    async fn login_accepts_the_right_password_only_and_says_the_same_for_unknown_accounts(backend) {
        let app = TestApp::start(backend).await;
        app.admin().await;
        let ok = app.post("/api/auth/login", None, json!({"email": "ADMIN@example.com", "password": ADMIN_PASSWORD})).await.expect(200);
        assert_eq!(ok.body["user"]["email"], ADMIN_EMAIL);
        let wrong = app.post("/api/auth/login", None, json!({"email": ADMIN_EMAIL, "password": "wrong password"})).await.expect_error(401, "unauthorized");
        let unknown = app.post("/api/auth/login", None, json!({"email": "nobody@example.com", "password": "wrong password"})).await.expect_error(401, "unauthorized");
        assert_eq!(wrong.body["error"]["message"], unknown.body["error"]["message"]);
        assert_eq!(wrong.body["error"]["type"], "authentication_error");
    }

    async fn failed_logins_slow_the_failing_address_and_never_lock_the_owner_out(backend) {
        // Behind a trusted proxy, so each request can come from an address of its own.
        let app = TestApp::start_with(backend, &Group::ALL, |c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()], None).await;
        // At the start of a window: every failure below falls in it.
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        app.user(&admin, "other@example.com", "viewer").await;
        let login_from = |ip: &'static str, email: String, password: &'static str| {
            let req = app.client.post(format!("{}/api/auth/login", app.base)).header("x-forwarded-for", ip).json(&json!({"email": email, "password": password}));
            async move { TestApp::read(req.send().await.unwrap()).await }
        };
        const ATTACKER: &str = "203.0.113.9";
        const OWNER: &str = "198.51.100.7";
        for _ in 0..5 {
            login_from(ATTACKER, ADMIN_EMAIL.into(), "guess guess").await.expect(401);
        }
        // The attacker's address is locked on this account, even with the right password, so
        // guessing gains nothing from a lucky hit...
        let refused = login_from(ATTACKER, ADMIN_EMAIL.into(), ADMIN_PASSWORD).await.expect_error(429, "too_many_login_attempts");
        let retry: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
        // Five failures in this window: refused until the next one ends (30 minutes from its
        // start, not the 15 that would let them go when this one ends).
        assert!((901..=1800).contains(&retry), "retry-after {retry}");
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("account from your address"));
        // ...while the owner, from their own address, still gets in.
        login_from(OWNER, ADMIN_EMAIL.into(), ADMIN_PASSWORD).await.expect(200);
        // Many more failures from the attacker change nothing for the owner.
        for i in 0..15 {
            login_from(ATTACKER, format!("guess{i}@example.com"), "guess guess").await.expect(401);
        }
        login_from(OWNER, ADMIN_EMAIL.into(), ADMIN_PASSWORD).await.expect(200);
        // The attacker's address has now failed too often across accounts: refused for any.
        let by_address = login_from(ATTACKER, "other@example.com".into(), "user password 1").await.expect_error(429, "too_many_login_attempts");
        assert!(by_address.body["error"]["message"].as_str().unwrap().contains("address"));
        login_from(OWNER, "other@example.com".into(), "user password 1").await.expect(200);
        // Without a proxy header everything comes from one address, throttled the same way.
        for _ in 0..5 {
            app.post("/api/auth/login", None, json!({"email": "other@example.com", "password": "guess guess"})).await.expect(401);
        }
        app.post("/api/auth/login", None, json!({"email": "other@example.com", "password": "user password 1"})).await.expect_error(429, "too_many_login_attempts");
    }

    async fn the_end_of_a_window_never_wipes_a_count_of_failed_logins(backend) {
        let app = TestApp::start(backend).await;
        // Mid-window: the clock only moves forward below.
        app.pin_mid_period();
        app.clock.advance(chrono::Duration::minutes(5));
        app.admin().await;
        let window = tollgate::identity::throttle::WINDOW_SECS;
        let now = app.clock.now().timestamp();
        let next_window = now - now.rem_euclid(window) + window;
        let at = |secs: i64| chrono::DateTime::from_timestamp(secs, 0).unwrap();
        let login = |password: &'static str| app.post("/api/auth/login", None, json!({"email": ADMIN_EMAIL, "password": password}));
        // Five failures a minute before a window ends...
        for _ in 0..5 {
            app.clock.set(at(next_window - 60));
            login("guess guess").await.expect(401);
        }
        // ...still count a second after it: refused until the new window ends, when theirs
        // drops out (not the end of the window after, which five failures in this one earn).
        app.clock.set(at(next_window + 1));
        let refused = login(ADMIN_PASSWORD).await.expect_error(429, "too_many_login_attempts");
        let retry: i64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((window - 60..window).contains(&retry), "retry-after {retry}");
        app.clock.set(at(next_window + window));
        login(ADMIN_PASSWORD).await.expect(200);
    }

    async fn refresh_rotates_and_reuse_revokes_the_whole_session(backend) {
        let app = TestApp::start(backend).await;
        let (access1, refresh1) = app.admin().await;
        let second = app.post("/api/auth/refresh", None, json!({"refreshToken": refresh1})).await.expect(200);
        let access2 = second.body["token"].as_str().unwrap().to_string();
        let refresh2 = second.body["refreshToken"].as_str().unwrap().to_string();
        assert_ne!(refresh1, refresh2);
        app.get("/api/me", Some(&access2)).await.expect(200);
        let third = app.post("/api/auth/refresh", None, json!({"refreshToken": refresh2})).await.expect(200);
        let refresh3 = third.body["refreshToken"].as_str().unwrap().to_string();

        // Re-using an already rotated token: 401, and the session it belongs to is gone.
        app.post("/api/auth/refresh", None, json!({"refreshToken": refresh1})).await.expect_error(401, "unauthorized");
        app.post("/api/auth/refresh", None, json!({"refreshToken": refresh3})).await.expect_error(401, "unauthorized");
        app.get("/api/me", Some(&access1)).await.expect_error(401, "unauthorized");
        app.get("/api/me", Some(&access2)).await.expect_error(401, "unauthorized");
        app.post("/api/auth/refresh", None, json!({"refreshToken": "rt_made_up"})).await.expect_error(401, "unauthorized");
        // Other sessions of the same user are untouched.
        let other = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        app.get("/api/me", Some(&other)).await.expect(200);
    }

    async fn access_tokens_are_checked_strictly(backend) {
        let app = TestApp::start(backend).await;
        let (token, _) = app.admin().await;
        app.get("/api/me", None).await.expect_error(401, "unauthorized");
        app.get("/api/me", Some("not.a.jwt")).await.expect_error(401, "unauthorized");
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        app.get("/api/me", Some(&tampered)).await.expect_error(401, "unauthorized");
        // alg=none with the same claims.
        let claims = token.split('.').nth(1).unwrap();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.");
        app.get("/api/me", Some(&none)).await.expect_error(401, "unauthorized");
        // Signed with another key.
        let me = app.get("/api/me", Some(&token)).await.expect(200);
        let user_id: uuid::Uuid = me.body["id"].as_str().unwrap().parse().unwrap();
        let foreign = tollgate::identity::jwt::JwtKeys::from_secret(&[9u8; 64]).issue(user_id, uuid::Uuid::new_v4(), chrono::Utc::now().timestamp()).unwrap();
        app.get("/api/me", Some(&foreign)).await.expect_error(401, "unauthorized");
        // Expired: issued two hours ago by the real key, for the real session.
        let sessions = app.get("/admin/v1/me/sessions", Some(&token)).await.expect(200);
        let sid: uuid::Uuid = sessions.body["current_session_id"].as_str().unwrap().parse().unwrap();
        let expired = app.state.jwt().await.unwrap().issue(user_id, sid, chrono::Utc::now().timestamp() - 7200).unwrap();
        app.get("/api/me", Some(&expired)).await.expect_error(401, "unauthorized");
        let fresh = app.state.jwt().await.unwrap().issue(user_id, sid, chrono::Utc::now().timestamp()).unwrap();
        app.get("/api/me", Some(&fresh)).await.expect(200);
    }

    async fn sessions_are_listed_and_revoking_one_stops_its_tokens_at_once(backend) {
        let app = TestApp::start(backend).await;
        let (first, first_refresh) = app.admin().await;
        let second = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let listed = app.get("/admin/v1/me/sessions", Some(&second)).await.expect(200);
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);
        assert_eq!(listed.body["enhanced_enabled"], true);
        let current = listed.body["current_session_id"].as_str().unwrap().to_string();
        let other = listed.body["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).find(|id| *id != current).unwrap();
        assert!(listed.body["data"][0]["device"].is_object());

        let revoked = app.delete(&format!("/admin/v1/me/sessions/{other}"), Some(&second)).await.expect(200);
        assert_eq!(revoked.body, json!({"sessions_revoked": 1}));
        app.get("/api/me", Some(&first)).await.expect_error(401, "unauthorized");
        app.post("/api/auth/refresh", None, json!({"refreshToken": first_refresh})).await.expect_error(401, "unauthorized");
        app.delete(&format!("/admin/v1/me/sessions/{other}"), Some(&second)).await.expect_error(404, "not_found");
        app.delete("/admin/v1/me/sessions/not-a-uuid", Some(&second)).await.expect_error(400, "invalid_value");

        // Someone else's session id is simply not found for you.
        let (_, viewer) = app.user(&second, "viewer@example.com", "viewer").await;
        app.delete(&format!("/admin/v1/me/sessions/{current}"), Some(&viewer)).await.expect_error(404, "not_found");
        app.get("/api/me", Some(&second)).await.expect(200);

        app.delete(&format!("/admin/v1/me/sessions/{current}"), Some(&second)).await.expect(200);
        app.get("/api/me", Some(&second)).await.expect_error(401, "unauthorized");
    }

    async fn me_changes_name_email_and_password_with_the_current_password(backend) {
        let app = TestApp::start(backend).await;
        let (token, _) = app.admin().await;
        let other_session = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let renamed = app.put("/api/me", Some(&token), json!({"name": "Ada"})).await.expect(200);
        assert_eq!(renamed.body["name"], "Ada");
        let missing = app.put("/api/me", Some(&token), json!({"newPassword": "a new password"})).await.expect_error(400, "current_password_required");
        assert_eq!(missing.body["error"]["param"], "currentPassword");
        app.put("/api/me", Some(&token), json!({"newPassword": "a new password", "currentPassword": "wrong one"})).await.expect_error(400, "invalid_current_password");
        app.put("/api/me", Some(&token), json!({"newPassword": "short", "currentPassword": ADMIN_PASSWORD})).await.expect_error(400, "invalid_value");
        app.put("/api/me", Some(&token), json!({"newPassword": "a new password", "currentPassword": ADMIN_PASSWORD})).await.expect(200);
        app.post("/api/auth/login", None, json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})).await.expect(401);
        app.login(ADMIN_EMAIL, "a new password").await;
        app.get("/api/me", Some(&token)).await.expect(200);
        app.get("/api/me", Some(&other_session)).await.expect_error(401, "unauthorized");

        app.user(&token, "taken@example.com", "viewer").await;
        app.put("/api/me", Some(&token), json!({"email": "TAKEN@example.com", "currentPassword": "a new password"})).await.expect_error(409, "email_taken");
        let moved = app.put("/api/me", Some(&token), json!({"email": "boss@example.com", "currentPassword": "a new password"})).await.expect(200);
        assert_eq!(moved.body["email"], "boss@example.com");
        app.login("boss@example.com", "a new password").await;
        app.post("/api/auth/login", None, json!({"email": ADMIN_EMAIL, "password": "a new password"})).await.expect(401);
        // The old email is free again.
        app.post("/api/users", Some(&token), json!({"email": ADMIN_EMAIL, "password": "user password 1", "role": "viewer"})).await.expect(201);
        app.put("/api/me", Some(&token), json!({"role": "viewer"})).await.expect_error(400, "invalid_body");
    }

    async fn users_crud_with_permission_checks(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let (op_id, operator) = app.user(&admin, "op@example.com", "operator").await;
        let (viewer_id, viewer) = app.user(&admin, "viewer@example.com", "viewer").await;

        let listed = app.get("/api/users", Some(&operator)).await.expect(200);
        assert_eq!(listed.body.as_array().unwrap().len(), 3);
        assert!(!listed.text.contains("argon2"), "password hashes never leave the server");
        app.get("/api/users", Some(&viewer)).await.expect_error(403, "insufficient_permissions");
        let denied = app.post("/api/users", Some(&operator), json!({"email": "x@example.com", "password": "user password 1", "role": "viewer"})).await.expect_error(403, "insufficient_permissions");
        assert!(denied.body["error"]["message"].as_str().unwrap().contains("user:write"));

        let got = app.get(&format!("/api/users/{viewer_id}"), Some(&operator)).await.expect(200);
        assert_eq!(got.body["email"], "viewer@example.com");
        assert_eq!(got.body["permissions"], json!(["project:read", "model:read", "report:read"]));
        app.get(&format!("/api/users/{}", uuid::Uuid::new_v4()), Some(&admin)).await.expect_error(404, "not_found");
        app.get("/api/users/42", Some(&admin)).await.expect_error(400, "invalid_value");

        app.post("/api/users", Some(&admin), json!({"email": "VIEWER@example.com", "password": "user password 1", "role": "viewer"})).await.expect_error(409, "email_taken");
        app.post("/api/users", Some(&admin), json!({"email": "new@example.com", "password": "user password 1", "role": "emperor"})).await.expect_error(400, "invalid_value");

        let promoted = app.put(&format!("/api/users/{viewer_id}"), Some(&admin), json!({"role": "operator", "name": "Vi"})).await.expect(200);
        assert_eq!(promoted.body["role"], "operator");
        app.get("/api/users", Some(&viewer)).await.expect(200);

        // A new password signs the user out everywhere.
        app.put(&format!("/api/users/{op_id}"), Some(&admin), json!({"password": "reset password 2"})).await.expect(200);
        app.get("/api/me", Some(&operator)).await.expect_error(401, "unauthorized");
        app.login("op@example.com", "reset password 2").await;

        let me = app.get("/api/me", Some(&admin)).await.body;
        let admin_id = me["id"].as_str().unwrap();
        app.delete(&format!("/api/users/{admin_id}"), Some(&admin)).await.expect_error(400, "cannot_delete_self");
        app.put(&format!("/api/users/{admin_id}"), Some(&admin), json!({"role": "viewer"})).await.expect_error(409, "last_admin");
        app.delete(&format!("/api/users/{viewer_id}"), Some(&admin)).await.expect(204);
        app.get("/api/me", Some(&viewer)).await.expect_error(401, "unauthorized");
        app.get(&format!("/api/users/{viewer_id}"), Some(&admin)).await.expect_error(404, "not_found");
        // The deleted user's email can be used again.
        app.user(&admin, "viewer@example.com", "viewer").await;
    }

    async fn emails_stay_unique_under_concurrent_creation(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let attempts = (0..16).map(|i| {
            let email = if i % 2 == 0 { "race@example.com" } else { "RACE@example.com" };
            app.post("/api/users", Some(&admin), json!({"email": email, "password": "user password 1", "role": "viewer"}))
        });
        let statuses: Vec<u16> = join_all(attempts).await.iter().map(|r| r.status.as_u16()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 15, "{statuses:?}");
        let users = app.get("/api/users", Some(&admin)).await.expect(200).body;
        assert_eq!(users.as_array().unwrap().iter().filter(|u| u["email"] == "race@example.com").count(), 1);
    }

    async fn roles_built_in_and_custom(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let listed = app.get("/api/roles", Some(&admin)).await.expect(200);
        let names: Vec<&str> = listed.body.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["admin", "operator", "viewer", "none"]);
        assert_eq!(listed.body[3]["permissions"], json!([]), "the role of accounts made by invites grants nothing");
        assert_eq!(listed.body[1]["permissions"], json!(["project:read", "project:write", "model:read", "model:write", "user:read", "report:read"]));

        let created = app.post("/api/roles", Some(&admin), json!({"name": "billing_reviewer", "permissions": ["report:read", "project:read"]})).await.expect(201);
        assert_eq!(created.body, json!({"name": "billing_reviewer", "permissions": ["project:read", "report:read"], "builtIn": false}));
        app.post("/api/roles", Some(&admin), json!({"name": "billing_reviewer", "permissions": []})).await.expect_error(409, "role_exists");
        app.post("/api/roles", Some(&admin), json!({"name": "viewer", "permissions": []})).await.expect_error(409, "role_exists");
        let bad = app.post("/api/roles", Some(&admin), json!({"name": "x", "permissions": ["fly"]})).await.expect_error(400, "invalid_value");
        assert!(bad.body["error"]["message"].as_str().unwrap().contains("user:read"), "names the valid permissions");
        app.post("/api/roles", Some(&admin), json!({"name": "Bad Name", "permissions": []})).await.expect_error(400, "invalid_value");

        let (_, reviewer) = app.user(&admin, "rev@example.com", "billing_reviewer").await;
        app.get("/api/users", Some(&reviewer)).await.expect_error(403, "insufficient_permissions");
        app.put("/api/roles/billing_reviewer", Some(&admin), json!({"permissions": ["report:read", "user:read"]})).await.expect(200);
        app.get("/api/users", Some(&reviewer)).await.expect(200);
        app.get("/api/roles", Some(&reviewer)).await.expect(200);
        app.post("/api/roles", Some(&reviewer), json!({"name": "sneaky", "permissions": ["user:write"]})).await.expect_error(403, "insufficient_permissions");

        app.put("/api/roles/admin", Some(&admin), json!({"permissions": []})).await.expect_error(403, "built_in_role");
        app.delete("/api/roles/viewer", Some(&admin)).await.expect_error(403, "built_in_role");
        app.delete("/api/roles/billing_reviewer", Some(&admin)).await.expect_error(409, "role_in_use");
        app.put("/api/roles/ghost", Some(&admin), json!({"permissions": []})).await.expect_error(404, "not_found");
        app.post("/api/roles", Some(&admin), json!({"name": "unused", "permissions": []})).await.expect(201);
        app.delete("/api/roles/unused", Some(&admin)).await.expect(204);
        app.delete("/api/roles/unused", Some(&admin)).await.expect_error(404, "not_found");
    }

    async fn export_holds_my_data_and_no_secrets(backend) {
        let app = TestApp::start(backend).await;
        let (admin, refresh) = app.admin().await;
        let export = app.get("/admin/v1/me/export", Some(&admin)).await.expect(200);
        assert_eq!(export.body["user"]["email"], ADMIN_EMAIL);
        assert_eq!(export.body["sessions"].as_array().unwrap().len(), 1);
        for key in ["api_keys", "audit_logs", "conversations", "memberships", "usage_summary", "exported_at"] {
            assert!(export.body.get(key).is_some(), "export lacks {key}");
        }
        for secret in [ADMIN_PASSWORD, "argon2", refresh.as_str(), admin.as_str()] {
            assert!(!export.text.contains(secret), "export leaks {secret}");
        }
    }

    async fn deleting_myself_removes_my_account_but_not_the_last_admin(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.delete("/admin/v1/me", Some(&admin)).await.expect_error(409, "last_admin");
        let (viewer_id, viewer) = app.user(&admin, "leaving@example.com", "viewer").await;
        app.model(&admin, "mock-1", 0.0, 0.0, None).await;
        let (_, key) = app.api_key(&viewer, json!({})).await;
        app.api_key(&viewer, json!({})).await;
        app.chat(&key, json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        let exported = app.get("/admin/v1/me/export", Some(&viewer)).await.expect(200);
        assert_eq!(exported.body["api_keys"].as_array().unwrap().len(), 2);
        assert!(!exported.text.contains(&key), "the export never holds a key's secret");
        let deleted = app.delete("/admin/v1/me", Some(&viewer)).await.expect(200);
        assert_eq!(deleted.body["deleted"], true);
        assert_eq!(deleted.body["user_id"], viewer_id);
        assert_eq!(deleted.body["api_keys_deleted"], 2);
        assert_eq!(deleted.body["usage_records_deleted"], 1);
        app.chat(&key, json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]})).await.expect_error(401, "invalid_api_key");
        app.get("/api/me", Some(&viewer)).await.expect_error(401, "unauthorized");
        app.post("/api/auth/login", None, json!({"email": "leaving@example.com", "password": "user password 1"})).await.expect(401);
    }

    async fn sessions_and_access_tokens_expire_by_the_clock(backend) {
        let app = TestApp::start(backend).await;
        let (token, refresh) = app.admin().await;
        // An access token lives an hour.
        app.clock.advance(chrono::Duration::minutes(59));
        app.get("/api/me", Some(&token)).await.expect(200);
        app.clock.advance(chrono::Duration::minutes(1) + chrono::Duration::seconds(1));
        app.get("/api/me", Some(&token)).await.expect_error(401, "unauthorized");
        // A session lives 30 days from its last refresh, whatever the store's TTL sweep does.
        let renewed = app.post("/api/auth/refresh", None, json!({"refreshToken": refresh})).await.expect(200);
        let refresh = renewed.body["refreshToken"].as_str().unwrap().to_string();
        app.clock.advance(chrono::Duration::days(29));
        let renewed = app.post("/api/auth/refresh", None, json!({"refreshToken": refresh})).await.expect(200);
        let (token, refresh) = (renewed.body["token"].as_str().unwrap().to_string(), renewed.body["refreshToken"].as_str().unwrap().to_string());
        app.get("/api/me", Some(&token)).await.expect(200);
        app.clock.advance(chrono::Duration::days(30));
        app.post("/api/auth/refresh", None, json!({"refreshToken": refresh})).await.expect_error(401, "unauthorized");
    }

    async fn an_account_deletion_cut_short_never_leaves_a_usable_account_and_is_finished(backend) {
        // The store dies right after the account is marked for deletion.
        let slot: Arc<OnceLock<Arc<CrashingStore>>> = Default::default();
        let wrap = {
            let slot = slot.clone();
            move |inner: Arc<dyn Store>| -> Arc<dyn Store> {
                let store = Arc::new(CrashingStore::after_update(inner, |_, update| update.set_if_absent.iter().any(|(name, _)| name == "deleting_since")));
                let _ = slot.set(store.clone());
                store
            }
        };
        let app = TestApp::start_with(backend, &Group::ALL, |_| {}, Some(&wrap)).await;
        let crash = slot.get().unwrap().clone();
        let store = app.state.store.clone();
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.0, 0.0, None).await;
        let hi = json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]});
        let (leaving_id, leaving) = app.user(&admin, "leaving@example.com", "viewer").await;
        let refresh = app.post("/api/auth/login", None, json!({"email": "leaving@example.com", "password": "user password 1"})).await.expect(200).body["refreshToken"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, key) = app.api_key(&leaving, json!({})).await;
        app.chat(&key, hi.clone()).await.expect(200);

        app.delete("/admin/v1/me", Some(&leaving)).await.expect(500);
        assert!(crash.crashed(), "the deletion was cut where the test meant it to be");
        crash.recover();
        // Half done, and none of it works: no session, no refresh, no login, no key.
        app.get("/api/me", Some(&leaving)).await.expect_error(401, "unauthorized");
        app.post("/api/auth/refresh", None, json!({"refreshToken": refresh})).await.expect_error(401, "unauthorized");
        app.post("/api/auth/login", None, json!({"email": "leaving@example.com", "password": "user password 1"})).await.expect_error(401, "unauthorized");
        app.chat(&key, hi.clone()).await.expect_error(401, "invalid_api_key");
        // The next pass (the local server runs one every 30 s; every deletion runs one) finishes it.
        let user_id: uuid::Uuid = leaving_id.parse().unwrap();
        assert_eq!(tollgate::account_deletion::resume_deletions(store.as_ref(), app.state.secrets.as_ref(), app.clock.now(), &tollgate::invalidate::NoCaches).await.unwrap(), 1);
        app.get(&format!("/api/users/{leaving_id}"), Some(&admin)).await.expect_error(404, "not_found");
        assert!(tollgate::identity::sessions::list(store.as_ref(), user_id).await.unwrap().is_empty());
        let owner = tollgate::keys::Owner::User { user_id }.tag();
        assert_eq!(tollgate::usage::first_and_last(store.as_ref(), &owner, None, None).await.unwrap(), (None, None), "its usage records are erased");
        assert!(tollgate::usage::rollups::all_of(store.as_ref(), &owner).await.unwrap().is_empty(), "and their rollups");
        assert!(!tollgate::usage::owners::all(store.as_ref()).await.unwrap().contains(&owner), "and it has no usage to list");
        assert_eq!(tollgate::account_deletion::resume_deletions(store.as_ref(), app.state.secrets.as_ref(), app.clock.now(), &tollgate::invalidate::NoCaches).await.unwrap(), 0, "and it is done");
        // Its email is free again.
        app.user(&admin, "leaving@example.com", "viewer").await;

        // Cut short again; this time an admin's delete of that user finishes it (on Lambda,
        // where no background pass runs, so does the next deletion of anyone).
        crash.arm();
        let (second_id, second) = app.user(&admin, "second@example.com", "viewer").await;
        app.delete("/admin/v1/me", Some(&second)).await.expect(500);
        crash.recover();
        // Changing it midway would drop it from the deletions to finish: refused.
        app.put(&format!("/api/users/{second_id}"), Some(&admin), json!({"name": "x"})).await.expect_error(409, "user_being_deleted");
        app.delete(&format!("/api/users/{second_id}"), Some(&admin)).await.expect(204);
        app.get(&format!("/api/users/{second_id}"), Some(&admin)).await.expect_error(404, "not_found");
        app.user(&admin, "second@example.com", "viewer").await;
    }
}
