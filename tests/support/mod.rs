//! The test harness: a real Tollgate router on a real port, over either backend, and a macro
//! that writes each test once and runs it on both.
//!
//! The DynamoDB backend needs `TOLLGATE_TEST_DYNAMODB_ENDPOINT` (moto's server, DynamoDB Local
//! or AWS, and the same endpoint serves Secrets Manager unless
//! `TOLLGATE_TEST_SECRETS_ENDPOINT` says otherwise). `scripts/test` starts moto and sets it.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod counting;
pub mod crashing;
pub mod google;
pub mod services;
pub mod sinks;
pub mod stub;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

/// Wraps a test app's store (e.g. in a counter of round trips).
pub type WrapStore = dyn Fn(Arc<dyn Store>) -> Arc<dyn Store>;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tollgate::config::{Config, SecretsKind, StoreKind};
use tollgate::secrets::SecretStore;
use tollgate::store::Store;
use tollgate::{AppState, Group};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Dynamo,
}

/// Writes each test once and runs it against both backends: `mod embedded` and `mod dynamodb`.
#[macro_export]
macro_rules! backend_tests {
    // A second block in one file names its own module: `backend_tests! { mod more; ... }`.
    (mod $group:ident; $($rest:tt)*) => {
        mod $group {
            #[allow(unused_imports)]
            use super::*;
            $crate::backend_tests! { $($rest)* }
        }
    };
    ($($(#[$meta:meta])* async fn $name:ident($backend:ident) $body:block)*) => {
        mod embedded {
            #[allow(unused_imports)]
            use super::*;
            $( $(#[$meta])* #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let $backend = $crate::Backend::Embedded; $body } )*
        }
        mod dynamodb {
            #[allow(unused_imports)]
            use super::*;
            $( $(#[$meta])* #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let $backend = $crate::Backend::Dynamo; $body } )*
        }
    };
}

fn dynamo_endpoint() -> String {
    std::env::var("TOLLGATE_TEST_DYNAMODB_ENDPOINT")
        .unwrap_or_else(|_| panic!("TOLLGATE_TEST_DYNAMODB_ENDPOINT is not set: run the tests with scripts/test, which starts moto's server and sets it"))
}

/// A configuration of its own for one test: a fresh data dir, or a fresh table and secret
/// prefix, so tests never see each other's data.
pub fn test_config(backend: Backend, dir: &std::path::Path) -> Config {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    // The fakes of upstreams and webhooks listen on loopback, which users' URLs may not reach
    // unless the operator allows it: the tests allow it as an operator would for a local vLLM.
    // (tests/security.rs narrows it again to test the policy itself.)
    let private_upstreams = vec!["127.0.0.0/8".parse().expect("cidr"), "::1/128".parse().expect("cidr")];
    // Invite links must stay on the gateway's public URL; the tests' invites point here.
    let public_url = Some("https://app.example.com".to_string());
    let mut config = Config { data_dir: dir.to_path_buf(), private_upstreams, public_url, ..Config::default() };
    if backend == Backend::Dynamo {
        let endpoint = dynamo_endpoint();
        config.store = StoreKind::DynamoDb;
        config.secrets = SecretsKind::SecretsManager;
        config.secrets_endpoint = Some(std::env::var("TOLLGATE_TEST_SECRETS_ENDPOINT").unwrap_or_else(|_| endpoint.clone()));
        config.dynamodb_endpoint = Some(endpoint);
        config.table = format!("tollgate-test-{unique}");
        config.secrets_prefix = format!("tollgate-test-{unique}/");
    }
    config
}

/// A store of its own for one test (the conformance suite uses it bare).
pub async fn store_for(backend: Backend) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = tollgate::state::open_store(&test_config(backend, dir.path()), true).await.expect("open store");
    (store, dir)
}

pub async fn secrets_for(backend: Backend) -> (Arc<dyn SecretStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let secrets = tollgate::state::open_secrets(&test_config(backend, dir.path())).await.expect("open secrets");
    (secrets, dir)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        self
    }

    /// Asserts an error envelope with this status and code, whose request_id matches the header.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Self {
        let resp = self.expect(status);
        let error = &resp.body["error"];
        assert_eq!(error["code"], code, "unexpected error code; body: {}", resp.text);
        for field in ["message", "param", "request_id", "type"] {
            assert!(error.get(field).is_some(), "envelope lacks {field}: {}", resp.text);
        }
        assert!(error["message"].as_str().is_some_and(|m| m.len() > 10), "message should say what to fix: {}", resp.text);
        let header = resp.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(error["request_id"], header, "request_id must equal the x-request-id header");
        resp
    }
}

pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    /// The clock the app decides by: tests move it instead of sleeping.
    pub clock: Arc<tollgate::clock::ShiftedClock>,
    pub backend: Backend,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

impl TestApp {
    /// Waits (5 s at most) until every admission slot is free again; whether they all are.
    /// A request gives its slot back when its task ends, just after its client's last byte.
    pub async fn slots_all_free(&self) -> bool {
        let gate = &self.state.gateway.admission;
        for _ in 0..500 {
            if gate.free() == Some(self.state.config.max_in_flight) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    }

    pub async fn start(backend: Backend) -> Self {
        Self::start_groups(backend, &Group::ALL).await
    }

    pub async fn start_groups(backend: Backend, groups: &[Group]) -> Self {
        Self::start_with(backend, groups, |_| {}, None).await
    }

    /// A test app with configuration changes, its store optionally wrapped (e.g. to count).
    pub async fn start_with(backend: Backend, groups: &[Group], configure: impl FnOnce(&mut Config), wrap: Option<&WrapStore>) -> Self {
        // Server-side errors show in a failing test's output.
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn,tollgate=debug").try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(backend, dir.path());
        configure(&mut config);
        let store = tollgate::state::open_store(&config, true).await.expect("open store");
        let store = match wrap {
            Some(wrap) => wrap(store),
            None => store,
        };
        let secrets = tollgate::state::open_secrets(&config).await.expect("open secrets");
        let clock = tollgate::clock::ShiftedClock::new();
        let state = AppState::wire(config, store, secrets, clock.clone()).expect("app state");
        let app = tollgate::http::app(state.clone(), groups);
        // As the local server does: budget events wait in the outbox until delivered.
        let deliverer = state.spawn_background();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            tollgate::runtime::serve(listener, app, shutdown).await.expect("serve");
            deliverer.abort();
        });
        TestApp {
            base: format!("http://{addr}"),
            addr,
            client: reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client"),
            state,
            clock,
            backend,
            _dir: dir,
            _shutdown: tx,
        }
    }

    /// Sends a request; `body` is JSON when given.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::read(req.send().await.expect("request")).await
    }

    pub async fn read(resp: reqwest::Response) -> Resp {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, headers, body, text }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call(Method::GET, path, token, None).await
    }
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call(Method::POST, path, token, Some(body)).await
    }
    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call(Method::PUT, path, token, Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.call(Method::DELETE, path, token, None).await
    }

    /// Sets the app's clock to 12:00:00 UTC on 15 March 2031: mid-month and mid-day, at the
    /// start of an hour and of a minute. A test whose requests must share a calendar window (a
    /// daily, monthly or hourly limit) calls it first, so that running across a midnight or a
    /// month's end on the wall clock cannot split them. Before logging in: a jump of years
    /// outlives every token issued before it.
    pub fn pin_mid_period(&self) {
        self.clock.set("2031-03-15T12:00:00Z".parse().expect("a moment"));
    }

    /// Moves the app's clock a second into its next minute, so that the requests that follow
    /// share a minute's window (a rate limit, a deployment's capacity) however long they take
    /// (a minute at most), in a minute none before them touched. Returns the minute's start, for
    /// tests that set the clock to seconds after it.
    pub fn to_next_minute(&self) -> chrono::DateTime<chrono::Utc> {
        use chrono::DurationRound;
        let next = (self.clock.now() + chrono::Duration::minutes(1)).duration_trunc(chrono::Duration::minutes(1)).expect("a minute");
        self.clock.set(next + chrono::Duration::seconds(1));
        next
    }

    /// Creates the first admin; returns (access token, refresh token).
    pub async fn admin(&self) -> (String, String) {
        let r = self.post("/api/setup/first-admin", None, json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})).await.expect(201);
        (r.body["token"].as_str().unwrap().to_string(), r.body["refreshToken"].as_str().unwrap().to_string())
    }

    /// Creates a user with `role` (as the given admin) and logs them in; returns (id, token).
    pub async fn user(&self, admin: &str, email: &str, role: &str) -> (String, String) {
        let created = self.post("/api/users", Some(admin), json!({"email": email, "password": "user password 1", "role": role})).await.expect(201);
        let id = created.body["id"].as_str().unwrap().to_string();
        (id, self.login(email, "user password 1").await)
    }

    /// Adds a catalog model (prices in dollars per million tokens); `base_url`/`api_key` for a
    /// real upstream, neither for the built-in mock.
    pub async fn model(&self, admin: &str, id: &str, input_price: f64, output_price: f64, upstream: Option<(&str, &str)>) {
        let mut body = json!({"id": id, "provider": "mock", "inputPrice": input_price, "outputPrice": output_price, "contextWindow": 4096});
        if let Some((base_url, api_key)) = upstream {
            body["provider"] = json!("openai-compatible");
            body["baseUrl"] = json!(base_url);
            body["apiKey"] = json!(api_key);
        }
        self.post("/api/models", Some(admin), body).await.expect(201);
    }

    /// Creates a personal API key with these settings; returns (id, secret).
    pub async fn api_key(&self, token: &str, settings: Value) -> (String, String) {
        let mut body = json!({"name": "test key"});
        body.as_object_mut().unwrap().extend(settings.as_object().cloned().unwrap_or_default());
        let r = self.post("/admin/v1/me/api-keys", Some(token), body).await.expect(201);
        (r.body["id"].as_str().unwrap().to_string(), r.body["key"].as_str().unwrap().to_string())
    }

    /// A chat completion through the proxy with `key`.
    pub async fn chat(&self, key: &str, body: Value) -> Resp {
        self.post("/v1/chat/completions", Some(key), body).await
    }

    /// Invites `email` into workspace `ws` as `role`; returns (invite id, invite token). No
    /// channel is configured, so the link is read once by the global admin, as a local
    /// install without mail would; the inviter's answer never holds it.
    pub async fn invite(&self, inviter: &str, ws: &str, email: &str, role: &str, redirect_to: &str) -> (String, String) {
        let r = self
            .post("/api/invite-user", Some(inviter), json!({"email": email, "role": role, "business_id": ws, "redirect_to": redirect_to}))
            .await
            .expect(201);
        assert!(!r.text.contains("tgi_") && !r.text.contains("invite_token"), "the inviter must never see the invite's token: {}", r.text);
        assert_eq!(r.body["delivered"], false, "{}", r.text);
        let invite_id = r.body["invite"]["id"].as_str().unwrap().to_string();
        let admin = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let link = self.post("/api/invite-user/link", Some(&admin), json!({"business_id": ws, "invite_id": invite_id})).await.expect(200);
        self.post("/api/invite-user/link", Some(&admin), json!({"business_id": ws, "invite_id": invite_id})).await.expect_error(404, "not_found");
        let url = reqwest::Url::parse(link.body["invite_url"].as_str().unwrap()).unwrap();
        assert!(url.as_str().starts_with(redirect_to), "{url}");
        let token = url.query_pairs().find(|(k, _)| k == "invite_token").unwrap().1.to_string();
        (invite_id, token)
    }

    /// The JSON of every `data:` event of a stream from `path` (any front door's), `[DONE]` left out.
    pub async fn sse(&self, path: &str, key: &str, body: Value) -> Vec<Value> {
        let resp = self.client.post(format!("{}{path}", self.base)).bearer_auth(key).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        text.split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self.post("/api/auth/login", None, json!({"email": email, "password": password})).await.expect(200);
        r.body["token"].as_str().unwrap().to_string()
    }
}
