//! SCIM 2.0 provisioning over HTTP, on both backends: tokens (shown once, stored hashed),
//! Users and Groups with filters, pagination, PUT, PATCH and DELETE, deprovisioning that ends
//! sessions and API keys at once, the group mapping driving roles and workspaces, and the
//! audit log naming the SCIM token as actor.

use reqwest::Method;
use serde_json::{Value, json};
use tollgate::identity::sha256_hex;
use tollgate::store::{Index, Query, query_all};
use tollgate::workspaces::{self, Role};
use tollgate_tests::{Resp, TestApp, backend_tests};
use uuid::Uuid;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A SCIM token made by the first admin; returns (admin session, SCIM token).
async fn setup(app: &TestApp) -> (String, String) {
    let (admin, _) = app.admin().await;
    let created = app.post("/api/scim/tokens", Some(&admin), json!({"name": "Okta"})).await.expect(201);
    (admin, created.body["token"].as_str().unwrap().to_string())
}

fn user_body(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "active": true
    })
}

async fn scim_user(app: &TestApp, scim: &str, user_name: &str) -> String {
    let r = app.post("/scim/v2/Users", Some(scim), user_body(user_name)).await.expect(201);
    r.body["id"].as_str().unwrap().to_string()
}

async fn patch(app: &TestApp, scim: &str, path: &str, operations: Value) -> Resp {
    app.call(Method::PATCH, path, Some(scim), Some(json!({"schemas": [PATCH_OP], "Operations": operations}))).await
}

/// Asserts a SCIM error: its status, shape, content type and scimType.
#[track_caller]
fn scim_error(resp: Resp, status: u16, scim_type: Option<&str>) -> Resp {
    let resp = resp.expect(status);
    assert_eq!(resp.headers["content-type"], "application/scim+json", "{}", resp.text);
    assert_eq!(resp.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:Error"]), "{}", resp.text);
    assert_eq!(resp.body["status"], status.to_string(), "{}", resp.text);
    assert!(resp.body["detail"].as_str().is_some_and(|d| d.len() > 10), "{}", resp.text);
    assert_eq!(resp.body["scimType"].as_str(), scim_type, "{}", resp.text);
    resp
}

async fn list(app: &TestApp, scim: &str, query: &str) -> Resp {
    app.get(&format!("/scim/v2/Users?{query}"), Some(scim)).await
}

async fn role_of(app: &TestApp, admin: &str, id: &str) -> String {
    app.get(&format!("/api/users/{id}"), Some(admin)).await.expect(200).body["role"].as_str().unwrap().to_string()
}

/// A mapping is refused with 400, naming the field to fix.
async fn bad_mapping(app: &TestApp, admin: &str, mapping: Value, param: &str) {
    let r = app.put("/api/settings/group-mapping", Some(admin), mapping).await.expect_error(400, "invalid_value");
    assert_eq!(r.body["error"]["param"], param, "{}", r.text);
}

fn user_names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

backend_tests! {
    async fn tokens_are_shown_once_kept_hashed_and_required(backend) {
        let app = TestApp::start(backend).await;
        let (admin, token) = setup(&app).await;
        assert!(token.starts_with("scim_") && token.len() > 40, "{token}");
        let listed = app.get("/api/scim/tokens", Some(&admin)).await.expect(200);
        assert_eq!(listed.body.as_array().unwrap().len(), 1);
        assert_eq!(listed.body[0]["name"], "Okta");
        assert!(!listed.text.contains(&token), "the secret is shown once: {}", listed.text);
        // Only the hash is stored.
        let items = query_all(app.state.store.as_ref(), Query::new(Index::Primary, "SCIM_TOKENS")).await.unwrap();
        assert_eq!(items.len(), 1);
        let stored = format!("{:?}", items[0]);
        assert!(stored.contains(&sha256_hex(&token)) && !stored.contains(&token), "{stored}");

        // Only global admins manage tokens.
        let (_, viewer) = app.user(&admin, "viewer@example.com", "viewer").await;
        app.post("/api/scim/tokens", Some(&viewer), json!({"name": "x"})).await.expect_error(403, "admin_required");
        app.post("/api/scim/tokens", Some(&admin), json!({"name": " "})).await.expect_error(400, "invalid_value");

        scim_error(app.get("/scim/v2/Users", None).await, 401, None);
        scim_error(app.get("/scim/v2/Users", Some("scim_wrong")).await, 401, None);
        scim_error(app.get("/scim/v2/Users", Some(&admin)).await, 401, None);
        app.get("/scim/v2/Users", Some(&token)).await.expect(200);
        scim_error(app.get("/scim/v2/Nothing", Some(&token)).await, 404, None);
        scim_error(app.post("/scim/v2/.search", Some(&token), json!({})).await, 501, None);
        let config = app.get("/scim/v2/ServiceProviderConfig", Some(&token)).await.expect(200).body;
        assert_eq!((config["patch"]["supported"].as_bool(), config["filter"]["supported"].as_bool(), config["bulk"]["supported"].as_bool()), (Some(true), Some(true), Some(false)));
        let schemas = app.get("/scim/v2/Schemas", Some(&token)).await.expect(200).body;
        assert_eq!(schemas["totalResults"], 2);
        app.get("/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group", Some(&token)).await.expect(200);
        app.get("/scim/v2/ResourceTypes/User", Some(&token)).await.expect(200);

        let id = listed.body[0]["id"].as_str().unwrap();
        app.delete(&format!("/api/scim/tokens/{id}"), Some(&admin)).await.expect(204);
        scim_error(app.get("/scim/v2/Users", Some(&token)).await, 401, None);
        app.delete(&format!("/api/scim/tokens/{id}"), Some(&admin)).await.expect_error(404, "not_found");
    }

    async fn users_are_created_read_filtered_paged_replaced_patched_and_deleted(backend) {
        let app = TestApp::start(backend).await;
        let (admin, scim) = setup(&app).await;
        let ada = scim_user(&app, &scim, "ada@example.com").await;
        scim_user(&app, &scim, "bob@example.com").await;
        scim_user(&app, &scim, "bea@other.org").await;

        let got = app.get(&format!("/scim/v2/Users/{ada}"), Some(&scim)).await.expect(200);
        assert_eq!(got.headers["content-type"], "application/scim+json");
        assert_eq!(got.body["userName"], "ada@example.com");
        assert_eq!(got.body["name"]["familyName"], "Lovelace");
        assert_eq!(got.body["active"], true);
        assert_eq!(got.body["meta"]["resourceType"], "User");
        assert!(got.body["meta"]["location"].as_str().unwrap().ends_with(&format!("/scim/v2/Users/{ada}")));
        // It is an account like any other, with no role until a mapping gives one.
        let account = app.get(&format!("/api/users/{ada}"), Some(&admin)).await.expect(200);
        assert_eq!(account.body["email"], "ada@example.com");
        assert_eq!(account.body["role"], "none");
        assert_eq!(account.body["name"], "Ada Lovelace");

        scim_error(app.post("/scim/v2/Users", Some(&scim), user_body("ADA@example.com")).await, 409, Some("uniqueness"));
        scim_error(app.post("/scim/v2/Users", Some(&scim), json!({"userName": "no email"})).await, 400, Some("invalidValue"));
        scim_error(app.post("/scim/v2/Users", Some(&scim), json!({"userName": 5})).await, 400, Some("invalidValue"));
        scim_error(app.get(&format!("/scim/v2/Users/{}", Uuid::new_v4()), Some(&scim)).await, 404, None);

        let everyone = list(&app, &scim, "").await.expect(200).body;
        assert_eq!(everyone["totalResults"], 4, "the admin's account is a User too: {everyone}");
        assert_eq!(user_names(&list(&app, &scim, "filter=userName%20eq%20%22Bob%40example.com%22").await.expect(200).body), ["bob@example.com"]);
        assert_eq!(user_names(&list(&app, &scim, "filter=emails.value%20ew%20%22other.org%22").await.expect(200).body), ["bea@other.org"]);
        let both = list(&app, &scim, "filter=userName%20sw%20%22b%22%20and%20not%20(userName%20co%20%22other%22)%20or%20userName%20eq%20%22ada%40example.com%22").await.expect(200).body;
        assert_eq!(user_names(&both), ["ada@example.com", "bob@example.com"]);
        scim_error(list(&app, &scim, "filter=userName%20eq").await, 400, Some("invalidFilter"));
        scim_error(list(&app, &scim, "count=many").await, 400, Some("invalidValue"));
        let page = list(&app, &scim, "startIndex=2&count=2").await.expect(200).body;
        assert_eq!((page["totalResults"].as_u64(), page["startIndex"].as_u64(), page["itemsPerPage"].as_u64()), (Some(4), Some(2), Some(2)));
        let rest = list(&app, &scim, "startIndex=4&count=2").await.expect(200).body;
        assert_eq!(rest["itemsPerPage"], 1);
        let shaped = list(&app, &scim, "attributes=userName&filter=userName%20eq%20%22ada%40example.com%22").await.expect(200).body;
        assert_eq!(shaped["Resources"][0].as_object().unwrap().keys().collect::<Vec<_>>(), ["id", "meta", "schemas", "userName"]);

        // PUT replaces, and a new primary email becomes the account's email.
        let mut replaced = user_body("ada@example.com");
        replaced["emails"] = json!([{"value": "ada@new.example.com", "primary": true}]);
        replaced["displayName"] = json!("Countess");
        let put = app.put(&format!("/scim/v2/Users/{ada}"), Some(&scim), replaced).await.expect(200);
        assert_eq!(put.body["displayName"], "Countess");
        assert_eq!(app.get(&format!("/api/users/{ada}"), Some(&admin)).await.expect(200).body["email"], "ada@new.example.com");

        let patched = patch(&app, &scim, &format!("/scim/v2/Users/{ada}"), json!([
            {"op": "Replace", "path": "name.givenName", "value": "Augusta"},
            {"op": "add", "path": "externalId", "value": "00u1"},
        ])).await.expect(200);
        assert_eq!(patched.body["name"], json!({"givenName": "Augusta", "familyName": "Lovelace"}));
        assert_eq!(patched.body["externalId"], "00u1");
        assert_eq!(user_names(&list(&app, &scim, "filter=externalId%20eq%20%2200u1%22").await.expect(200).body), ["ada@example.com"]);
        scim_error(patch(&app, &scim, &format!("/scim/v2/Users/{ada}"), json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "x@y.z"}])).await, 400, Some("noTarget"));
        scim_error(app.call(Method::PATCH, &format!("/scim/v2/Users/{ada}"), Some(&scim), Some(json!({"Operations": []}))).await, 400, Some("invalidSyntax"));

        // Renaming onto another user's userName is a conflict.
        scim_error(patch(&app, &scim, &format!("/scim/v2/Users/{ada}"), json!([{"op": "replace", "path": "userName", "value": "bob@example.com"}])).await, 409, Some("uniqueness"));

        app.delete(&format!("/scim/v2/Users/{ada}"), Some(&scim)).await.expect(204);
        scim_error(app.get(&format!("/scim/v2/Users/{ada}"), Some(&scim)).await, 404, None);
        app.get(&format!("/api/users/{ada}"), Some(&admin)).await.expect_error(404, "not_found");
        // The userName is free again.
        let again = scim_user(&app, &scim, "ada@example.com").await;
        // An account deleted by an admin takes its SCIM profile along, and frees its userName.
        app.delete(&format!("/api/users/{again}"), Some(&admin)).await.expect(204);
        let left = query_all(app.state.store.as_ref(), Query::new(Index::Primary, format!("USER#{again}"))).await.unwrap();
        assert!(left.is_empty(), "{left:?}");
        scim_user(&app, &scim, "ada@example.com").await;
    }

    async fn deprovisioning_ends_sessions_and_api_keys_at_once(backend) {
        let app = TestApp::start(backend).await;
        let (admin, scim) = setup(&app).await;
        app.model(&admin, "mock-1", 1.0, 2.0, None).await;
        let (id, session) = app.user(&admin, "dev@example.com", "operator").await;
        let login = app.post("/api/auth/login", None, json!({"email": "dev@example.com", "password": "user password 1"})).await.expect(200);
        let refresh = login.body["refreshToken"].as_str().unwrap().to_string();
        let (_, key) = app.api_key(&session, json!({})).await;
        let chat = json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        app.chat(&key, chat.clone()).await.expect(200);

        // Okta's shape: replace without a path.
        let off = patch(&app, &scim, &format!("/scim/v2/Users/{id}"), json!([{"op": "replace", "value": {"active": false}}])).await.expect(200);
        assert_eq!(off.body["active"], false);
        let refused = app.get("/api/me", Some(&session)).await.expect(401);
        assert_eq!(refused.body["error"]["code"], "unauthorized", "the session was revoked: {}", refused.text);
        app.post("/api/auth/refresh", None, json!({"refreshToken": refresh})).await.expect(401);
        let login = app.post("/api/auth/login", None, json!({"email": "dev@example.com", "password": "user password 1"})).await.expect_error(401, "account_deactivated");
        assert!(login.body["error"]["message"].as_str().unwrap().contains("identity provider"), "{}", login.text);
        app.chat(&key, chat.clone()).await.expect_error(401, "invalid_api_key");
        let filtered = app.get("/scim/v2/Users?filter=active%20eq%20false", Some(&scim)).await.expect(200).body;
        assert_eq!(user_names(&filtered), ["dev@example.com"]);

        // Entra ID's shape reactivates: the account signs in again; the revoked key stays revoked.
        patch(&app, &scim, &format!("/scim/v2/Users/{id}"), json!([{"op": "Replace", "path": "active", "value": "True"}])).await.expect(200);
        let again = app.login("dev@example.com", "user password 1").await;
        app.get("/api/me", Some(&again)).await.expect(200);
        app.chat(&key, chat).await.expect_error(401, "invalid_api_key");
    }

    async fn group_membership_drives_role_and_workspaces_through_the_mapping(backend) {
        let app = TestApp::start(backend).await;
        let (admin, scim) = setup(&app).await;
        let ws = app.post("/api/workspaces", Some(&admin), json!({"name": "Platform"})).await.expect(201).body["id"].as_str().unwrap().to_string();
        let unmanaged = app.post("/api/workspaces", Some(&admin), json!({"name": "Other"})).await.expect(201).body["id"].as_str().unwrap().to_string();
        assert_eq!(app.get("/api/settings/group-mapping", Some(&admin)).await.expect(200).body, json!({"defaultRole": "none", "rules": []}));

        let mapping = json!({"defaultRole": "viewer", "rules": [
            {"group": "platform-admins", "role": "operator", "workspaces": [{"workspaceId": ws, "role": "admin"}]},
            {"group": "everyone", "workspaces": [{"workspaceId": ws, "role": "member"}]},
        ]});
        bad_mapping(&app, &admin, json!({"defaultRole": "wizard", "rules": []}), "defaultRole").await;
        bad_mapping(&app, &admin, json!({"defaultRole": "none", "rules": [{"group": "", "role": "admin"}]}), "rules[0].group").await;
        bad_mapping(&app, &admin, json!({"defaultRole": "none", "rules": [{"group": "g", "role": "wizard"}]}), "rules[0].role").await;
        bad_mapping(&app, &admin, json!({"defaultRole": "none", "rules": [{"group": "g", "workspaces": [{"workspaceId": Uuid::new_v4(), "role": "member"}]}]}), "rules[0].workspaces").await;
        app.put("/api/settings/group-mapping", Some(&admin), mapping.clone()).await.expect(200);
        assert_eq!(app.get("/api/settings/group-mapping", Some(&admin)).await.expect(200).body, mapping);
        let (_, viewer) = app.user(&admin, "viewer@example.com", "viewer").await;
        app.get("/api/settings/group-mapping", Some(&viewer)).await.expect_error(403, "admin_required");

        // A new user gets the default role.
        let u = scim_user(&app, &scim, "eng@example.com").await;
        let uid: Uuid = u.parse().unwrap();
        assert_eq!(role_of(&app, &admin, &u).await, "viewer");
        // Their membership of a workspace no rule names is theirs to keep.
        let store = app.state.store.as_ref();
        store.transact(vec![workspaces::member_put(&workspaces::Member { workspace_id: unmanaged.parse().unwrap(), user_id: uid, role: Role::Member, joined_at: chrono::Utc::now() }).unwrap()]).await.unwrap();

        let group = app.post("/scim/v2/Groups", Some(&scim), json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "platform-admins", "members": [{"value": u}]})).await.expect(201);
        let gid = group.body["id"].as_str().unwrap().to_string();
        assert_eq!(group.body["members"][0]["value"], u.as_str());
        assert_eq!(role_of(&app, &admin, &u).await, "operator");
        let membership = workspaces::membership(store, ws.parse().unwrap(), uid).await.unwrap().expect("a member of the mapped workspace");
        assert_eq!(membership.role, Role::Admin);
        let shown = app.get(&format!("/scim/v2/Users/{u}"), Some(&scim)).await.expect(200).body;
        assert_eq!(shown["groups"][0]["display"], "platform-admins");

        // In a second group too: the workspace keeps the highest role; then the first group drops them.
        let everyone = app.post("/scim/v2/Groups", Some(&scim), json!({"displayName": "everyone", "members": [{"value": u}]})).await.expect(201).body["id"].as_str().unwrap().to_string();
        assert_eq!(workspaces::membership(store, ws.parse().unwrap(), uid).await.unwrap().unwrap().role, Role::Admin);
        patch(&app, &scim, &format!("/scim/v2/Groups/{gid}"), json!([{"op": "remove", "path": format!("members[value eq \"{u}\"]")}])).await.expect(200);
        assert_eq!(role_of(&app, &admin, &u).await, "viewer");
        assert_eq!(workspaces::membership(store, ws.parse().unwrap(), uid).await.unwrap().unwrap().role, Role::Member);
        let filtered = app.get("/scim/v2/Groups?filter=displayName%20eq%20%22everyone%22", Some(&scim)).await.expect(200).body;
        assert_eq!(filtered["totalResults"], 1);

        // Out of every group: out of the managed workspace, still in the unmanaged one.
        app.delete(&format!("/scim/v2/Groups/{everyone}"), Some(&scim)).await.expect(204);
        assert!(workspaces::membership(store, ws.parse().unwrap(), uid).await.unwrap().is_none());
        assert!(workspaces::membership(store, unmanaged.parse().unwrap(), uid).await.unwrap().is_some());
        scim_error(app.get(&format!("/scim/v2/Groups/{everyone}"), Some(&scim)).await, 404, None);

        // The last admin is never demoted by the mapping, nor deactivated.
        let admin_id = app.get("/api/me", Some(&admin)).await.expect(200).body["id"].as_str().unwrap().to_string();
        app.put(&format!("/scim/v2/Groups/{gid}"), Some(&scim), json!({"displayName": "platform-admins", "members": [{"value": admin_id}]})).await.expect(200);
        app.get("/api/me", Some(&admin)).await.expect(200);
        assert_eq!(app.get(&format!("/api/users/{admin_id}"), Some(&admin)).await.expect(200).body["role"], "admin");
        scim_error(patch(&app, &scim, &format!("/scim/v2/Users/{admin_id}"), json!([{"op": "replace", "path": "active", "value": false}])).await, 409, None);
        scim_error(app.delete(&format!("/scim/v2/Users/{admin_id}"), Some(&scim)).await, 409, None);
        app.get("/api/me", Some(&admin)).await.expect(200);
        scim_error(app.post("/scim/v2/Groups", Some(&scim), json!({"displayName": "g", "members": [{"value": Uuid::new_v4()}]})).await, 400, Some("invalidValue"));
    }

    async fn scim_changes_are_audited_with_the_token_as_actor(backend) {
        let app = TestApp::start(backend).await;
        let (admin, scim) = setup(&app).await;
        let token_id = app.get("/api/scim/tokens", Some(&admin)).await.expect(200).body[0]["id"].as_str().unwrap().to_string();
        let u = scim_user(&app, &scim, "audited@example.com").await;
        patch(&app, &scim, &format!("/scim/v2/Users/{u}"), json!([{"op": "replace", "path": "active", "value": false}])).await.expect(200);
        app.delete(&format!("/scim/v2/Users/{u}"), Some(&scim)).await.expect(204);
        // A refused request changes nothing and leaves no event.
        app.post("/scim/v2/Users", None, user_body("nobody@example.com")).await.expect(401);

        let events = app.get(&format!("/api/audit?actor={token_id}"), Some(&admin)).await.expect(200).body["data"].as_array().unwrap().clone();
        // One event per write: a deletion writes several (keys, memberships, the account).
        let mut actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
        actions.dedup();
        assert_eq!(actions, ["DELETE /scim/v2/Users/{id}", "PATCH /scim/v2/Users/{id}", "POST /scim/v2/Users"], "{events:#?}");
        for event in &events {
            assert_eq!(event["actor"], json!({"kind": "scim_token", "id": token_id}));
        }
        let created = &events.last().unwrap()["changes"];
        assert!(created.as_array().unwrap().iter().any(|c| c["item"] == "USER" && c["op"] == "created" && c["after"]["email"] == "audited@example.com"), "{created:#}");
        let patched: Vec<&Value> = events.iter().filter(|e| e["action"] == "PATCH /scim/v2/Users/{id}").flat_map(|e| e["changes"].as_array().unwrap()).collect();
        assert!(patched.iter().any(|c| c["item"] == "USER" && c["after"].get("disabled_at").is_some()), "{patched:#?}");
        // The token's creation is the admin's change, with its hash redacted.
        let made = app.get("/api/audit?action=POST%20/api/scim/tokens", Some(&admin)).await.expect(200).body;
        assert!(!made.to_string().contains(&sha256_hex(&scim)), "{made}");
    }
}
