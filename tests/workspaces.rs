//! Workspaces, members and invitations (workspace-admin family), on both store backends.

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, backend_tests};

const REDIRECT: &str = "https://app.example.com/signin?from=mail";

async fn workspace(app: &TestApp, token: &str) -> String {
    workspace_named(app, token, "Acme").await
}

async fn workspace_named(app: &TestApp, token: &str, name: &str) -> String {
    let r = app.post("/api/workspaces", Some(token), json!({"name": name})).await.expect(201);
    assert_eq!(r.body["role"], "owner");
    r.body["id"].as_str().unwrap().to_string()
}

async fn invite(app: &TestApp, token: &str, ws: &str, email: &str, role: &str) -> (String, String) {
    let (id, token) = app.invite(token, ws, email, role, REDIRECT).await;
    assert!(token.starts_with("tgi_"));
    (id, token)
}

async fn remove(app: &TestApp, token: &str, body: Value) -> tollgate_tests::Resp {
    app.call(Method::DELETE, "/api/invite-user", Some(token), Some(body)).await
}

fn emails(listing: &Value, what: &str) -> Vec<(String, String)> {
    listing[what].as_array().unwrap().iter().map(|m| (m["email"].as_str().unwrap().to_string(), m["role"].as_str().unwrap().to_string())).collect()
}

backend_tests! {
    async fn invites_bring_people_in_once_and_roles_decide_who_manages(backend) {
        let app = TestApp::start(backend).await;
        let (owner, _) = app.admin().await;
        let ws = workspace_named(&app, &owner, "Acme").await;
        let mine = app.get("/api/workspaces", Some(&owner)).await.expect(200);
        assert_eq!(mine.body["workspaces"][0]["name"], "Acme");

        // Validation, each with the parameter to fix.
        for (body, param) in [
            (json!({"email": "bob@example.com", "role": "owner", "business_id": ws, "redirect_to": REDIRECT}), "role"),
            (json!({"email": "bob@example.com", "role": "viewer", "business_id": ws, "redirect_to": REDIRECT}), "role"),
            (json!({"email": "not an email", "role": "member", "business_id": ws, "redirect_to": REDIRECT}), "email"),
            (json!({"email": "bob@example.com", "role": "member", "business_id": ws, "redirect_to": "javascript:alert(1)"}), "redirect_to"),
            (json!({"email": "bob@example.com", "role": "member", "business_id": "nope", "redirect_to": REDIRECT}), "business_id"),
        ] {
            let r = app.post("/api/invite-user", Some(&owner), body).await.expect(400);
            assert_eq!(r.body["error"]["param"], param, "{}", r.text);
        }

        // Someone without an account: accepting needs a password and creates the account.
        let (_, bob_token) = invite(&app, &owner, &ws, "Bob@Example.com", "member").await;
        app.post("/api/invite-user", Some(&owner), json!({"email": "bob@example.com", "role": "admin", "business_id": ws, "redirect_to": REDIRECT}))
            .await.expect_error(409, "already_invited");
        let listing = app.get(&format!("/api/invite-user?business_id={ws}"), Some(&owner)).await.expect(200);
        assert_eq!(emails(&listing.body, "members"), vec![("admin@example.com".into(), "owner".into())]);
        assert_eq!(emails(&listing.body, "invites"), vec![("bob@example.com".into(), "member".into())]);
        assert!(!listing.text.contains(&bob_token) && !listing.text.contains("token_hash"), "the token is never listed");

        let r = app.post("/api/invite-user/accept", None, json!({"token": bob_token})).await.expect(400);
        assert_eq!(r.body["error"]["param"], "password");
        app.post("/api/invite-user/accept", None, json!({"token": "tgi_made_up"})).await.expect_error(404, "not_found");
        let accepted = app.post("/api/invite-user/accept", None, json!({"token": bob_token, "password": "bob password 1"})).await.expect(200);
        assert_eq!(accepted.body["created_account"], true);
        assert_eq!(accepted.body["business_id"], ws.as_str());
        app.post("/api/invite-user/accept", None, json!({"token": bob_token, "password": "bob password 1"})).await.expect_error(404, "not_found");
        let bob = app.login("bob@example.com", "bob password 1").await;
        let bobs = app.get("/api/workspaces", Some(&bob)).await.expect(200);
        assert_eq!(bobs.body["workspaces"][0]["role"], "member");
        let bob_id = accepted.body["user_id"].as_str().unwrap().to_string();

        // Members may look, not manage.
        app.get(&format!("/api/invite-user?business_id={ws}"), Some(&bob)).await.expect(200);
        app.post("/api/invite-user", Some(&bob), json!({"email": "x@example.com", "role": "member", "business_id": ws, "redirect_to": REDIRECT}))
            .await.expect_error(403, "workspace_admin_required");
        app.put(&format!("/api/workspaces/{ws}"), Some(&bob), json!({"name": "Mine now"})).await.expect_error(403, "workspace_admin_required");

        // Someone with an account joins without a password; as admin they manage invites.
        let (carol_id, carol) = app.user(&owner, "carol@example.com", "viewer").await;
        let (_, carol_token) = invite(&app, &owner, &ws, "carol@example.com", "admin").await;
        // Carol has an account: the token alone, or someone else's session, does not get in.
        app.post("/api/invite-user/accept", None, json!({"token": carol_token})).await.expect_error(401, "unauthorized");
        app.post("/api/invite-user/accept", Some(&owner), json!({"token": carol_token})).await.expect_error(403, "invite_for_another_account");
        let joined = app.post("/api/invite-user/accept", Some(&carol), json!({"token": carol_token})).await.expect(200);
        assert_eq!(joined.body["created_account"], false);
        assert_eq!(joined.body["user_id"], carol_id.as_str());
        app.post("/api/invite-user", Some(&carol), json!({"email": "carol@example.com", "role": "member", "business_id": ws, "redirect_to": REDIRECT}))
            .await.expect_error(409, "already_member");
        let (dave_invite, dave_token) = invite(&app, &carol, &ws, "dave@example.com", "member").await;
        remove(&app, &carol, json!({"business_id": ws, "invite_id": dave_invite})).await.expect(200);
        remove(&app, &carol, json!({"business_id": ws, "invite_id": dave_invite})).await.expect_error(404, "not_found");
        app.post("/api/invite-user/accept", None, json!({"token": dave_token, "password": "dave password 1"})).await.expect_error(404, "not_found");

        // Removing: exactly one of invite_id / user_id; never yourself; never an owner.
        remove(&app, &carol, json!({"business_id": ws})).await.expect_error(400, "invalid_request");
        remove(&app, &carol, json!({"business_id": ws, "user_id": bob_id, "invite_id": dave_invite})).await.expect_error(400, "invalid_request");
        let r = remove(&app, &carol, json!({"business_id": ws, "user_id": carol_id})).await.expect(400);
        assert!(r.body["error"]["message"].as_str().unwrap().contains("yourself"), "{}", r.text);
        let owner_id = listing.body["members"][0]["user_id"].as_str().unwrap().to_string();
        remove(&app, &carol, json!({"business_id": ws, "user_id": owner_id})).await.expect_error(403, "cannot_remove_owner");
        remove(&app, &carol, json!({"business_id": ws, "user_id": bob_id})).await.expect(200);
        app.get(&format!("/api/workspaces/{ws}"), Some(&bob)).await.expect_error(404, "not_found");
        assert_eq!(app.get("/api/workspaces", Some(&bob)).await.expect(200).body["workspaces"], json!([]));

        // Owners and admins change the name and the limits (cost in dollars).
        let limits = json!([{"metric": "cost", "limit": 25.5, "window": "monthly", "mode": "extend"}, {"metric": "calls", "limit": 100, "window": {"rolling": {"every": 5, "unit": "minute"}}}]);
        let updated = app.put(&format!("/api/workspaces/{ws}"), Some(&carol), json!({"name": "Acme Inc", "limits": limits})).await.expect(200);
        assert_eq!(updated.body["name"], "Acme Inc");
        assert_eq!(updated.body["limits"][0], json!({"metric": "cost", "limit": 25.5, "window": "monthly", "mode": "extend"}));
        assert_eq!(updated.body["limits"][1]["mode"], "replace");
        let twice = json!([{"metric": "calls", "limit": 1, "window": "daily"}, {"metric": "calls", "limit": 2, "window": "daily"}]);
        app.put(&format!("/api/workspaces/{ws}"), Some(&owner), json!({"limits": twice})).await.expect_error(400, "invalid_value");
        app.put(&format!("/api/workspaces/{ws}"), Some(&owner), json!({"limits": [{"metric": "calls", "limit": 1.5, "window": "daily"}]})).await.expect_error(400, "invalid_value");
        app.put(&format!("/api/workspaces/{ws}"), Some(&owner), json!({"name": "  "})).await.expect_error(400, "invalid_value");
        assert_eq!(app.get(&format!("/api/workspaces/{ws}"), Some(&owner)).await.expect(200).body["name"], "Acme Inc");
    }

    async fn an_invite_expires(backend) {
        let app = TestApp::start(backend).await;
        let (owner, _) = app.admin().await;
        let ws = workspace_named(&app, &owner, "Acme").await;
        let (invite_id, token) = invite(&app, &owner, &ws, "late@example.com", "member").await;
        // Seven days pass (the store has not swept the expired items yet: the rule holds
        // without it). A minute before, the invite still shows.
        app.clock.advance(chrono::Duration::days(7) - chrono::Duration::minutes(1));
        let owner = app.login(tollgate_tests::ADMIN_EMAIL, tollgate_tests::ADMIN_PASSWORD).await;
        let listing = app.get(&format!("/api/invite-user?business_id={ws}"), Some(&owner)).await.expect(200);
        assert_eq!(listing.body["invites"][0]["id"], invite_id.as_str());
        app.clock.advance(chrono::Duration::minutes(1));
        app.post("/api/invite-user/accept", None, json!({"token": token, "password": "late password 1"})).await.expect_error(404, "not_found");
        let listing = app.get(&format!("/api/invite-user?business_id={ws}"), Some(&owner)).await.expect(200);
        assert_eq!(listing.body["invites"], json!([]));
        // The email may be invited again.
        invite(&app, &owner, &ws, "late@example.com", "member").await;
    }

    async fn an_invite_accepted_by_many_at_once_makes_one_member(backend) {
        let app = TestApp::start(backend).await;
        let (owner, _) = app.admin().await;
        let ws = workspace_named(&app, &owner, "Acme").await;
        let (_, token) = invite(&app, &owner, &ws, "racer@example.com", "member").await;
        let attempts = (0..8).map(|_| app.post("/api/invite-user/accept", None, json!({"token": token, "password": "racer password"})));
        let results = futures::future::join_all(attempts).await;
        let won = results.iter().filter(|r| r.status == 200).count();
        assert_eq!(won, 1, "{:?}", results.iter().map(|r| &r.text).collect::<Vec<_>>());
        assert!(results.iter().all(|r| r.status == 200 || (400..500).contains(&r.status.as_u16())));
        let listing = app.get(&format!("/api/invite-user?business_id={ws}"), Some(&owner)).await.expect(200);
        assert_eq!(listing.body["members"].as_array().unwrap().len(), 2);
    }

    async fn a_member_sees_and_touches_only_their_own_workspaces(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let (_, alice) = app.user(&admin, "alice@example.com", "viewer").await;
        let (bob_id, bob) = app.user(&admin, "bob@example.com", "viewer").await;
        let theirs = workspace_named(&app, &bob, "Bob's").await;
        let (bob_invite, _) = invite(&app, &bob, &theirs, "friend@example.com", "member").await;
        let (_, carol_token) = invite(&app, &bob, &theirs, "carol@example.com", "member").await;
        let carol = app.post("/api/invite-user/accept", None, json!({"token": carol_token, "password": "carol password"})).await.expect(200);
        let carol_id = carol.body["user_id"].as_str().unwrap().to_string();
        let mine = workspace_named(&app, &alice, "Alice's").await;

        // Every workspace-scoped endpoint, with the other workspace's ids: 404, nothing changed.
        let attempts = [
            (Method::GET, format!("/api/workspaces/{theirs}"), None),
            (Method::PUT, format!("/api/workspaces/{theirs}"), Some(json!({"name": "taken"}))),
            (Method::GET, format!("/api/invite-user?business_id={theirs}"), None),
            (Method::POST, "/api/invite-user".into(), Some(json!({"email": "spy@example.com", "role": "admin", "business_id": theirs, "redirect_to": REDIRECT}))),
            (Method::DELETE, "/api/invite-user".into(), Some(json!({"business_id": theirs, "invite_id": bob_invite}))),
            (Method::DELETE, "/api/invite-user".into(), Some(json!({"business_id": theirs, "user_id": carol_id}))),
            (Method::DELETE, "/api/invite-user".into(), Some(json!({"business_id": theirs, "user_id": bob_id}))),
            // Their invite or member, named under my workspace, is not found either.
            (Method::DELETE, "/api/invite-user".into(), Some(json!({"business_id": mine, "invite_id": bob_invite}))),
            (Method::DELETE, "/api/invite-user".into(), Some(json!({"business_id": mine, "user_id": carol_id}))),
        ];
        for (method, path, body) in attempts {
            let r = app.call(method.clone(), &path, Some(&alice), body).await;
            assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
            assert!(!r.text.contains("Bob's"), "{method} {path} leaked: {}", r.text);
        }
        let listed = app.get("/api/workspaces", Some(&alice)).await.expect(200);
        assert_eq!(listed.body["workspaces"].as_array().unwrap().len(), 1);
        assert_eq!(listed.body["workspaces"][0]["id"], mine.as_str());
        let untouched = app.get(&format!("/api/invite-user?business_id={theirs}"), Some(&bob)).await.expect(200);
        assert_eq!(untouched.body["members"].as_array().unwrap().len(), 2);
        assert_eq!(emails(&untouched.body, "invites"), vec![("friend@example.com".into(), "member".into())]);
        assert_eq!(app.get(&format!("/api/workspaces/{theirs}"), Some(&bob)).await.expect(200).body["name"], "Bob's");
    }

    async fn export_and_account_deletion_cover_memberships_and_usage(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 2.0, None).await;
        let (_, owner) = app.user(&admin, "boss@example.com", "viewer").await;
        let ws = workspace(&app, &owner).await;
        let (_, token) = invite(&app, &owner, &ws, "member@example.com", "admin").await;
        app.post("/api/invite-user/accept", None, json!({"token": token, "password": "member password"})).await.expect(200);
        let member = app.login("member@example.com", "member password").await;
        let (_, key) = app.api_key(&member, json!({})).await;
        for _ in 0..3 {
            app.chat(&key, json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        }

        let member_id = app.get("/api/me", Some(&member)).await.expect(200).body["id"].as_str().unwrap().to_string();
        app.post("/api/projects", Some(&owner), json!({"name": "App", "slug": "app", "workspaceId": ws})).await.expect(201);
        app.post("/api/projects/app/members", Some(&owner), json!({"userId": member_id, "role": "editor"})).await.expect(201);
        let export = app.get("/admin/v1/me/export", Some(&member)).await.expect(200);
        let projects = &export.body["memberships"]["projects"];
        assert_eq!(projects[0]["project_slug"], "app");
        assert_eq!(projects[0]["role"], "editor");
        assert_eq!(projects[0]["org_id"], ws.as_str());
        let orgs = &export.body["memberships"]["organizations"];
        assert_eq!(orgs.as_array().unwrap().len(), 1);
        assert_eq!(orgs[0]["org_id"], ws.as_str());
        assert_eq!(orgs[0]["org_name"], "Acme");
        assert_eq!(orgs[0]["role"], "admin");
        assert_eq!(orgs[0]["source"], "invite");
        let summary = &export.body["usage_summary"];
        assert_eq!(summary["request_count"], 3);
        assert!(summary["total_tokens"].as_i64().unwrap() > 0);
        assert!(summary["total_cost_microcents"].as_i64().unwrap() > 0);
        assert!(summary["first_request_at"].is_string() && summary["last_request_at"].is_string());
        // The rollups the views read, every dimension of them, are the caller's data too.
        let rollups = export.body["usage_rollups"].as_array().unwrap();
        let count = |dim: &str, value: &str| rollups.iter().filter(|r| r["dimension"] == dim && r["value"] == value).map(|r| r["request_count"].as_i64().unwrap()).sum::<i64>();
        assert_eq!((count("all", ""), count("model", "mock-1"), count("provider", "mock")), (3, 3, 3), "{rollups:?}");
        let key_id = export.body["api_keys"][0]["id"].as_str().unwrap();
        assert_eq!(count("token", key_id), 3);
        assert_eq!(export.body["api_keys"].as_array().unwrap().len(), 1);

        // The only owner of a workspace cannot delete their account; a member can.
        let refused = app.delete("/admin/v1/me", Some(&owner)).await.expect_error(409, "sole_owner");
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("Acme"), "{}", refused.text);
        let deleted = app.delete("/admin/v1/me", Some(&member)).await.expect(200);
        assert_eq!(deleted.body["usage_records_deleted"], 3);
        let listing = app.get(&format!("/api/invite-user?business_id={ws}"), Some(&owner)).await.expect(200);
        assert_eq!(emails(&listing.body, "members"), vec![("boss@example.com".into(), "owner".into())]);
        app.chat(&key, json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]})).await.expect_error(401, "invalid_api_key");
        let project_members = app.get("/api/projects/app/members", Some(&owner)).await.expect(200);
        assert_eq!(project_members.body.as_array().unwrap().len(), 1, "only the project's creator is left: {}", project_members.text);
    }
}
