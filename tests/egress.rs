//! What a user with no permissions can make the gateway reach and spend, on both backends:
//! their own provider's URL pointed inside (every spelling of loopback, a name that resolves
//! there, a redirect there), a credentials test used as a port scanner, a webhook pointed
//! inside, a cloud provider without credentials of its own, and what they may read of the
//! catalog's providers and invites.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, backend_tests};

/// What an internal service (the instance metadata service, say) hands whoever asks.
const INTERNAL_SECRET: &str = "ASIA-INTERNAL-ROLE-CREDENTIALS";
const REDIRECT_BODY: &str = "REDIRECT-BODY-NEVER-RELAYED";

/// A server on `ip` that counts what reaches it and answers every path with `answer`.
async fn server(ip: &str, answer: impl Fn(u16) -> axum::response::Response + Clone + Send + Sync + 'static) -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        let answer = answer.clone();
        async move { answer(port) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, hits)
}

/// The internal service, on 127.0.0.1, and a public-looking host on 127.0.0.2 (which the
/// operator allowed) that redirects to it.
async fn internal_and_redirector() -> (u16, Arc<AtomicUsize>, u16, Arc<AtomicUsize>) {
    let (internal, internal_hits) = server("127.0.0.1", |_| Json(json!({"Code": "Success", "AccessKeyId": INTERNAL_SECRET})).into_response()).await;
    let target = format!("http://127.0.0.1:{internal}/latest/meta-data/iam/security-credentials/role");
    let (redirector, redirector_hits) = server("127.0.0.2", move |_| {
        (
            StatusCode::FOUND,
            [(header::LOCATION, target.clone()), (header::CONTENT_TYPE, "application/json".to_string())],
            format!("{{\"moved\": \"{REDIRECT_BODY}\"}}"),
        )
            .into_response()
    })
    .await;
    (internal, internal_hits, redirector, redirector_hits)
}

/// An app whose operator allowed only 127.0.0.2 among private addresses.
async fn app(backend: tollgate_tests::Backend) -> TestApp {
    TestApp::start_with(backend, &tollgate::Group::ALL, |c| c.private_upstreams = vec!["127.0.0.2/32".parse().unwrap()], None).await
}

fn provider(name: &str, base_url: &str) -> Value {
    json!({"name": name, "provider_type": "openai-compatible", "base_url": base_url, "api_key": "sk-user-own", "models": ["m"]})
}

fn ask(model: &str) -> Value {
    json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
}

backend_tests! {
    async fn a_users_provider_never_reaches_an_internal_address(backend) {
        let app = app(backend).await;
        let (internal, hits, _, _) = internal_and_redirector().await;
        let (admin, _) = app.admin().await;
        let (_, alice) = app.user(&admin, "alice@example.com", "viewer").await;
        // Every spelling of loopback, IPv4-mapped IPv6 and the metadata addresses: refused as
        // they are saved, and by the credentials test before anything connects.
        for (i, url) in [
            format!("http://127.0.0.1:{internal}/v1"),
            format!("http://[::ffff:127.0.0.1]:{internal}/v1"),
            format!("http://2130706433:{internal}/v1"),
            format!("http://0x7f000001:{internal}/v1"),
            format!("http://0177.0.0.1:{internal}/v1"),
            format!("http://127.1:{internal}/v1"),
            format!("http://0.0.0.0:{internal}/v1"),
            format!("http://[::1]:{internal}/v1"),
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "http://[fd00:ec2::254]/latest/meta-data/".to_string(),
            "http://100.100.100.200/v1".to_string(),
            "http://10.0.0.1/v1".to_string(),
        ]
        .iter()
        .enumerate()
        {
            let refused = app.post("/admin/v1/me/providers", Some(&alice), provider(&format!("p{i}"), url)).await.expect_error(400, "invalid_value");
            assert_eq!(refused.body["error"]["param"], "base_url", "{url}: {}", refused.text);
            assert!(refused.text.contains("not a public address") && refused.text.contains("TOLLGATE_PRIVATE_UPSTREAMS"), "{}", refused.text);
            app.post("/admin/v1/me/providers/test-credentials", Some(&alice), provider("probe", url)).await.expect_error(400, "invalid_value");
        }
        // A name that resolves to loopback is checked after resolution, at every connection.
        let named = format!("http://localhost:{internal}/v1");
        app.post("/admin/v1/me/providers", Some(&alice), provider("named", &named)).await.expect(201);
        let (_, key) = app.api_key(&alice, json!({})).await;
        let r = app.chat(&key, ask("named/m")).await.expect_error(502, "upstream_error");
        assert!(r.text.contains("localhost resolves to") && r.text.contains("not a public address"), "{}", r.text);
        let r = app.post("/v1/chat/completions", Some(&key), json!({"model": "named/m", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await;
        assert_eq!(r.status, 502, "{}", r.text);
        let probe = app.post("/admin/v1/me/providers/test-credentials", Some(&alice), provider("probe", &named)).await.expect(200);
        assert_eq!(probe.body["status"], "error");
        assert!(probe.text.contains("not a public address"), "{}", probe.text);
        assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the internal service");
    }

    async fn no_upstream_call_follows_a_redirect(backend) {
        let app = app(backend).await;
        let (_, hits, redirector, redirector_hits) = internal_and_redirector().await;
        let (admin, _) = app.admin().await;
        let (_, alice) = app.user(&admin, "alice@example.com", "viewer").await;
        let url = format!("http://127.0.0.2:{redirector}/v1");
        // The operator allowed 127.0.0.2, so the user's provider reaches it; its redirect to
        // 127.0.0.1 is an upstream error naming the status, whose body is not relayed.
        app.post("/admin/v1/me/providers", Some(&alice), provider("mine", &url)).await.expect(201);
        let (_, key) = app.api_key(&alice, json!({})).await;
        for stream in [false, true] {
            let mut body = ask("mine/m");
            body["stream"] = json!(stream);
            let r = app.chat(&key, body).await;
            assert_eq!(r.status, 502, "{}", r.text);
            assert!(r.text.contains("302") && r.text.contains("does not follow"), "{}", r.text);
            assert!(!r.text.contains(REDIRECT_BODY) && !r.text.contains(INTERNAL_SECRET) && !r.text.contains("127.0.0.1"), "{}", r.text);
        }
        let probe = app.post("/admin/v1/me/providers/test-credentials", Some(&alice), provider("probe", &url)).await.expect(200);
        assert_eq!(probe.body["status"], "error", "{}", probe.text);
        assert!(probe.text.contains("302") && !probe.text.contains(INTERNAL_SECRET), "{}", probe.text);
        // A catalog model (an admin's) does not follow one either.
        app.model(&admin, "catalog-m", 1.0, 1.0, Some((&url, "sk-admin"))).await;
        let (_, admin_key) = app.api_key(&admin, json!({})).await;
        let r = app.chat(&admin_key, ask("catalog-m")).await;
        assert_eq!(r.status, 502, "{}", r.text);
        assert!(!r.text.contains(REDIRECT_BODY) && !r.text.contains(INTERNAL_SECRET), "{}", r.text);
        // The usage record says what happened, without the body either.
        let usage = app.get("/api/usage?limit=10", Some(&admin)).await.expect(200);
        assert!(usage.text.contains("302") && !usage.text.contains(REDIRECT_BODY), "{}", usage.text);
        assert!(redirector_hits.load(Ordering::SeqCst) >= 4, "the allowed host was reached");
        assert_eq!(hits.load(Ordering::SeqCst), 0, "no redirect was followed");
    }

    async fn webhooks_follow_the_same_address_policy(backend) {
        let app = app(backend).await;
        let (internal, hits, _, _) = internal_and_redirector().await;
        let (admin, _) = app.admin().await;
        let hooks = json!([{"name": "inside", "type": "webhook", "url": format!("http://127.0.0.1:{internal}/hook"), "secret": "whsec-1"}]);
        app.put("/api/settings", Some(&admin), json!({"notifications": hooks})).await.expect(200);
        let failed = app.post("/api/notifications/test", Some(&admin), json!({"channelName": "inside"})).await.expect_error(502, "notification_failed");
        assert!(failed.text.contains("not a public address"), "{}", failed.text);
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    async fn a_users_cloud_provider_carries_its_own_credentials(backend) {
        let app = app(backend).await;
        let (admin, _) = app.admin().await;
        let (_, alice) = app.user(&admin, "alice@example.com", "viewer").await;
        for (kind, base) in [
            ("bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com"),
            ("vertex", "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google"),
        ] {
            let keyless = json!({"name": format!("my-{kind}"), "provider_type": kind, "base_url": base, "models": ["m"]});
            let refused = app.post("/admin/v1/me/providers", Some(&alice), keyless.clone()).await.expect_error(400, "invalid_value");
            assert_eq!(refused.body["error"]["param"], "api_key", "{}", refused.text);
            assert!(refused.text.contains("own credentials"), "{}", refused.text);
            let mut empty = keyless.clone();
            empty["api_key"] = json!("");
            app.post("/admin/v1/me/providers", Some(&alice), empty).await.expect_error(400, "invalid_value");
            app.post("/admin/v1/me/providers/test-credentials", Some(&alice), keyless).await.expect_error(400, "invalid_value");
        }
    }

    async fn without_model_read_the_catalogs_providers_show_type_and_name_only(backend) {
        let app = app(backend).await;
        let (admin, _) = app.admin().await;
        for (id, url) in [("a", "https://user:pass@internal-llm.corp.example/v1"), ("b", "https://other.corp.example/v1")] {
            app.post("/api/models", Some(&admin), json!({"id": id, "provider": "openai-compatible", "baseUrl": url, "inputPrice": 1, "outputPrice": 1, "contextWindow": 100}))
                .await
                .expect(201);
        }
        let seen = app.get("/admin/v1/me/built-in-providers", Some(&admin)).await.expect(200);
        assert!(seen.text.contains("internal-llm.corp.example"), "model:read sees the URLs: {}", seen.text);
        // A user whose role has no permissions at all (the built-in `none`).
        let (_, token) = app.user(&admin, "nobody@example.com", "none").await;
        let shown = app.get("/admin/v1/me/built-in-providers", Some(&token)).await.expect(200);
        assert!(!shown.text.contains("corp.example") && !shown.text.contains("pass") && !shown.text.contains("base_url"), "{}", shown.text);
        let names: Vec<&str> = shown.body["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["openai-compatible", "openai-compatible#2"]);
        // A key acting for the admin sees types and names only too.
        let (_, key) = app.api_key(&admin, json!({"scopes": ["usage:read"]})).await;
        let by_key = app.get("/admin/v1/me/built-in-providers", Some(&key)).await.expect(200);
        assert!(!by_key.text.contains("corp.example"), "{}", by_key.text);
    }

    async fn invite_links_stay_on_the_gateways_public_url(backend) {
        let app = app(backend).await;
        let (admin, _) = app.admin().await;
        let ws = app.post("/api/workspaces", Some(&admin), json!({"name": "Acme"})).await.expect(201).body["id"].as_str().unwrap().to_string();
        for elsewhere in ["https://evil.example/join", "https://app.example.com.evil.example/join", "http://app.example.com/join", "https://app.example.com:8443/join"] {
            let body = json!({"email": "bob@example.com", "role": "member", "business_id": ws, "redirect_to": elsewhere});
            let refused = app.post("/api/invite-user", Some(&admin), body).await.expect_error(400, "invalid_value");
            assert_eq!(refused.body["error"]["param"], "redirect_to", "{elsewhere}: {}", refused.text);
        }
        app.invite(&admin, &ws, "bob@example.com", "member", "https://app.example.com/join").await;
        // The settings' publicUrl, once set, is the one that counts.
        app.put("/api/settings", Some(&admin), json!({"publicUrl": "https://gw.example.com/console"})).await.expect(200);
        let body = json!({"email": "carol@example.com", "role": "member", "business_id": ws, "redirect_to": "https://app.example.com/join"});
        app.post("/api/invite-user", Some(&admin), body).await.expect_error(400, "invalid_value");
        let body = json!({"email": "carol@example.com", "role": "member", "business_id": ws, "redirect_to": "https://gw.example.com/consoleevil/join"});
        app.post("/api/invite-user", Some(&admin), body).await.expect_error(400, "invalid_value");
        app.invite(&admin, &ws, "carol@example.com", "member", "https://gw.example.com/console/join").await;
    }

    async fn a_huge_usage_offset_is_refused_not_loaded(backend) {
        let app = app(backend).await;
        let (admin, _) = app.admin().await;
        let r = app.get("/api/usage?offset=18446744073709551615", Some(&admin)).await.expect_error(400, "invalid_value");
        assert_eq!(r.body["error"]["param"], "offset", "{}", r.text);
        assert!(r.text.contains("cursor"), "{}", r.text);
        app.get("/api/usage?offset=10000", Some(&admin)).await.expect(200);
    }
}
