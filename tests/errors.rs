//! Bad input of every kind gets a 4xx envelope that says what to fix, never a 500.

use reqwest::Method;
use serde_json::json;
use tollgate_tests::{TestApp, backend_tests};

backend_tests! {
    async fn malformed_bodies_get_envelopes_that_say_what_to_fix(backend) {
        let app = TestApp::start(backend).await;
        let url = format!("{}/api/auth/login", app.base);
        let raw = |body: &'static str, content_type: Option<&'static str>| {
            let mut req = app.client.post(&url).body(body);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            req.send()
        };
        let syntax = TestApp::read(raw("{\"email\": ", Some("application/json")).await.unwrap()).await.expect_error(400, "invalid_json");
        assert!(syntax.body["error"]["message"].as_str().unwrap().contains("not valid JSON"));
        TestApp::read(raw("", Some("application/json")).await.unwrap()).await.expect_error(400, "invalid_json");
        TestApp::read(raw("[\"a@example.com\", \"password\"]", Some("application/json")).await.unwrap()).await.expect_error(400, "invalid_body");
        TestApp::read(raw("{}", None).await.unwrap()).await.expect_error(415, "unsupported_media_type");
        TestApp::read(raw("{}", Some("text/plain")).await.unwrap()).await.expect_error(415, "unsupported_media_type");

        let missing = app.post("/api/auth/login", None, json!({"email": "a@example.com"})).await.expect_error(400, "invalid_body");
        assert_eq!(missing.body["error"]["param"], "password");
        assert!(missing.body["error"]["message"].as_str().unwrap().contains("missing field `password`"));
        let wrong_type = app.post("/api/auth/login", None, json!({"email": 42, "password": "x"})).await.expect_error(400, "invalid_body");
        assert!(wrong_type.body["error"]["message"].as_str().unwrap().contains("invalid type"));
        let unknown = app.post("/api/auth/login", None, json!({"email": "a@example.com", "password": "x", "pasword": "y"})).await.expect_error(400, "invalid_body");
        assert_eq!(unknown.body["error"]["param"], "pasword");
        app.post("/api/auth/login", None, json!(["not", "an", "object"])).await.expect_error(400, "invalid_body");
    }

    async fn oversize_bodies_are_refused(backend) {
        let app = TestApp::start(backend).await;
        let huge = json!({"email": "a@example.com", "password": "x".repeat(2 << 20)});
        let resp = app.post("/api/auth/login", None, huge).await.expect_error(413, "payload_too_large");
        assert!(resp.body["error"]["message"].as_str().unwrap().contains("limit"));
    }

    async fn unknown_routes_and_wrong_methods_are_named(backend) {
        let app = TestApp::start(backend).await;
        let missing = app.get("/api/nothing-here", None).await.expect_error(404, "unknown_route");
        assert!(missing.body["error"]["message"].as_str().unwrap().contains("/api/nothing-here"));
        app.get("/nothing", None).await.expect_error(404, "unknown_route");
        // `/` is the dashboard's page; a file it does not have is a 404 in the envelope.
        assert_eq!(app.get("/", None).await.status, 200);
        app.get("/assets/none.js", None).await.expect_error(404, "not_found");
        let wrong = app.call(Method::PATCH, "/api/me", None, None).await.expect_error(405, "method_not_allowed");
        assert!(wrong.body["error"]["message"].as_str().unwrap().contains("PATCH"));
        app.delete("/api/setup/status", None).await.expect_error(405, "method_not_allowed");
    }

    async fn bad_ids_and_bad_authorization_headers(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let bad = app.get("/api/users/not-a-uuid", Some(&admin)).await.expect_error(400, "invalid_value");
        assert_eq!(bad.body["error"]["param"], "id");
        app.delete("/admin/v1/me/sessions/%20", Some(&admin)).await.expect_error(400, "invalid_value");
        let basic = app.client.get(format!("{}/api/me", app.base)).header("authorization", "Basic abc").send().await.unwrap();
        TestApp::read(basic).await.expect_error(401, "unauthorized");
        let empty = app.client.get(format!("{}/api/me", app.base)).header("authorization", "Bearer ").send().await.unwrap();
        TestApp::read(empty).await.expect_error(401, "unauthorized");
        let none = app.get("/api/users", None).await.expect_error(401, "unauthorized");
        assert_eq!(none.body["error"]["type"], "authentication_error");
        assert!(none.body["error"]["message"].as_str().unwrap().contains("Authorization: Bearer"));
    }

    async fn every_response_carries_a_request_id(backend) {
        let app = TestApp::start(backend).await;
        let ok = app.get("/api/setup/status", None).await.expect(200);
        let a = ok.headers["x-request-id"].to_str().unwrap().to_string();
        let b = app.get("/api/setup/status", None).await.headers["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(a, b);
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }
}
