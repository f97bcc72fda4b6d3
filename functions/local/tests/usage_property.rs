//! Usage views are exact: thousands of randomized requests (models, outcomes, streamed or
//! not, cancelled by the client, concurrent, five keys of four owners: two users, a
//! workspace, a project) against the `tollgate` binary, killed with -9 halfway and restarted,
//! and then every rollup of every view equals the sum of the records it covers. On both store
//! backends.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

mod common;

use common::start;

/// A small deterministic generator: the same traffic every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
    async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        let (status, body) = self.send(reqwest::Method::POST, path, token, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {body}");
        body
    }
    async fn get(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, token, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
    async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self.send(reqwest::Method::POST, "/api/auth/login", "", Some(json!({"email": email, "password": password}))).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_string()
    }
}

const PASSWORD: &str = "property test password";

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Sums {
    requests: i64,
    input: i64,
    output: i64,
    cost_micros: i64,
}

impl Sums {
    fn add(&mut self, input: i64, output: i64, cost_micros: i64) {
        self.requests += 1;
        self.input += input;
        self.output += output;
        self.cost_micros += cost_micros;
    }
}

fn dollars_to_micros(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 1e6).round() as i64
}

/// Sends `n` randomized requests over the keys, eight in flight at any time.
async fn traffic(api: &Api, keys: &[String], rng: &mut Lcg, n: usize) {
    use futures::StreamExt;
    let requests: Vec<_> = (0..n)
        .map(|_| {
            let model = ["mock-a", "mock-b", "mock-c"][rng.below(3) as usize];
            let mut text = format!("hello [mock:words={}]", 1 + rng.below(30));
            let stream = rng.below(2) == 0;
            // Mostly served; some failing upstream, some too slow (a timeout), some streams
            // the client walks away from.
            let fate = rng.below(20);
            match fate {
                0 | 1 => text.push_str(" [mock:status=503]"),
                2 => text.push_str(" [mock:delay_ms=300]"),
                _ => {}
            }
            let cancel = stream && fate == 3;
            if cancel {
                text.push_str(" [mock:delay_ms=60]");
            }
            let body = json!({"model": model, "stream": stream, "max_tokens": 1 + rng.below(40), "messages": [{"role": "user", "content": text}]});
            (keys[rng.below(keys.len() as u64) as usize].clone(), body, cancel)
        })
        .collect();
    futures::stream::iter(requests)
        .for_each_concurrent(8, |(key, body, cancel)| async move {
            let request = api.client.post(format!("{}/v1/chat/completions", api.base)).bearer_auth(key).json(&body).send();
            if cancel {
                // Gone after the first chunk.
                let _ = tokio::time::timeout(Duration::from_millis(100), async {
                    let mut resp = request.await?;
                    resp.chunk().await
                })
                .await;
            } else if let Ok(resp) = request.await {
                let _ = resp.bytes().await;
            }
        })
        .await;
}

/// Every record the admin sees, through `/api/usage`'s cursor.
async fn all_records(api: &Api, admin: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/api/usage?limit=1000".to_string();
    loop {
        let page = api.get(&path, admin).await;
        out.extend(page["records"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/usage?limit=1000&cursor={c}"),
            None => return out,
        }
    }
}

async fn exact_under_a_kill(envs: Vec<(&'static str, String)>, first_args: &[&str], n: usize) {
    let mut envs = envs;
    // A request slower than 200 ms times out; the leases of requests the kill cuts lapse a
    // second after that.
    envs.push(("TOLLGATE_UPSTREAM_TIMEOUT_MS", "200".into()));
    envs.push(("TOLLGATE_LEASE_MARGIN_SECS", "1".into()));
    let client = reqwest::Client::builder().pool_max_idle_per_host(16).build().unwrap();
    let server = start(&envs, first_args);
    let api = Api { client: client.clone(), base: server.base.clone() };
    let admin = api.post("/api/setup/first-admin", "", json!({"email": "prop@example.com", "password": PASSWORD})).await["token"].as_str().unwrap().to_string();
    for (id, input, output) in [("mock-a", 1.0, 2.0), ("mock-b", 30.0, 150.0), ("mock-c", 0.25, 0.5)] {
        api.post("/api/models", &admin, json!({"id": id, "provider": "mock", "inputPrice": input, "outputPrice": output, "contextWindow": 4096})).await;
    }
    api.post("/api/users", &admin, json!({"email": "other@example.com", "password": PASSWORD, "role": "viewer"})).await;
    let other = api.login("other@example.com", PASSWORD).await;
    let ws = api.post("/api/workspaces", &admin, json!({"name": "Acme"})).await["id"].as_str().unwrap().to_string();
    api.post("/api/projects", &admin, json!({"name": "App", "slug": "app", "models": ["mock-a", "mock-b", "mock-c"], "workspaceId": ws})).await;
    let mut keys = Vec::new();
    // A personal key with a rate limit it never reaches (its counters hold the leases the kill
    // leaves), one with a budget that runs out (budget_exceeded), the other user's, the
    // workspace's token, the project's token.
    for settings in [json!({"name": "a", "rate_limit_rpm": 1000000}), json!({"name": "b", "budget_limit_cents": 1})] {
        keys.push(api.post("/admin/v1/me/api-keys", &admin, settings).await["key"].as_str().unwrap().to_string());
    }
    keys.push(api.post("/admin/v1/me/api-keys", &other, json!({"name": "c"})).await["key"].as_str().unwrap().to_string());
    keys.push(api.post("/api/tokens", &admin, json!({"name": "ws", "business_id": ws})).await["secret"].as_str().unwrap().to_string());
    keys.push(api.post("/api/projects/app/tokens", &admin, json!({"name": "p", "limits": []})).await["token"].as_str().unwrap().to_string());

    let mut rng = Lcg(20261202);
    let started = std::time::Instant::now();
    traffic(&api, &keys, &mut rng, n / 2).await;
    // Killed with requests in flight, some records' rollups still pending.
    let inflight = {
        let (client, base, key) = (client.clone(), server.base.clone(), keys[0].clone());
        tokio::spawn(async move {
            let body = json!({"model": "mock-a", "stream": true, "messages": [{"role": "user", "content": "slow [mock:delay_ms=150] [mock:words=20]"}]});
            join_all((0..6).map(|_| client.post(format!("{base}/v1/chat/completions")).bearer_auth(&key).json(&body).send())).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let _ = inflight.await;
    let server = start(&envs, &["serve"]);
    let api = Api { client, base: server.base.clone() };
    traffic(&api, &keys, &mut rng, n - n / 2).await;
    // Leases the kill left lapse and are recorded by the next settlement on their counters.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    for key in &keys {
        let body = json!({"model": "mock-c", "messages": [{"role": "user", "content": "last"}]});
        let _ = api.client.post(format!("{}/v1/chat/completions", api.base)).bearer_auth(key).json(&body).send().await.unwrap().bytes().await;
    }
    let admin = api.login("prop@example.com", PASSWORD).await;
    let other = api.login("other@example.com", PASSWORD).await;
    let records = all_records(&api, &admin).await;
    println!("{} records from {n} requests in {:.1} s", records.len(), started.elapsed().as_secs_f64());
    assert!(records.len() >= n, "{} records", records.len());
    let outcomes: std::collections::BTreeSet<&str> = records.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    for outcome in ["success", "error", "budget_exceeded", "timeout"] {
        assert!(outcomes.contains(outcome), "{outcome} in {outcomes:?}");
    }
    assert!(records.iter().any(|r| r["cancelled"] == true && r["streamed"] == true), "a cancelled stream");
    assert!(records.iter().any(|r| r["error"].as_str().is_some_and(|e| e.contains("never settled"))), "a request the kill cut");

    // The consumer catches up (every second), then everything must agree.
    let total = records.len() as i64;
    for _ in 0..100 {
        if api.get("/api/usage/summary", &admin).await["total"]["requestCount"] == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = |r: &Value, f: &str| r[f].as_str().map(str::to_string);
    let sums = |key: &dyn Fn(&Value) -> Option<String>| {
        let mut out: BTreeMap<Option<String>, Sums> = BTreeMap::new();
        for r in &records {
            out.entry(key(r)).or_default().add(r["inputTokens"].as_i64().unwrap(), r["outputTokens"].as_i64().unwrap(), dollars_to_micros(&r["cost"]));
        }
        out
    };
    let day = |r: &Value| text(r, "timestamp").map(|t| t[..10].to_string());
    type GroupOf<'a> = &'a dyn Fn(&Value) -> Option<String>;
    let groups: [(&str, GroupOf); 5] = [
        ("day", &day),
        ("model", &|r| text(r, "model")),
        ("provider", &|r| text(r, "provider").filter(|p| !p.is_empty())),
        ("project", &|r| text(r, "projectId")),
        ("token", &|r| text(r, "tokenId")),
    ];
    for (by, key) in groups {
        let view = api.get(&format!("/api/usage/summary?group_by={by}"), &admin).await;
        let mut got = BTreeMap::new();
        for g in view["groups"].as_array().unwrap() {
            let s = Sums {
                requests: g["requestCount"].as_i64().unwrap(),
                input: g["inputTokens"].as_i64().unwrap(),
                output: g["outputTokens"].as_i64().unwrap(),
                cost_micros: dollars_to_micros(&g["cost"]),
            };
            got.insert(g["key"].as_str().map(str::to_string), s);
        }
        assert_eq!(got, sums(key), "group_by={by}");
    }
    // Each user's own views (the self-service seed's) against their own records.
    for (session, email) in [(&admin, "prop@example.com"), (&other, "other@example.com")] {
        let me = api.get("/api/me", session).await["id"].as_str().unwrap().to_string();
        let mine: Vec<&Value> = records.iter().filter(|r| r["userId"].as_str() == Some(me.as_str())).collect();
        let mut want: BTreeMap<String, Sums> = BTreeMap::new();
        for r in &mine {
            want.entry(text(r, "model").unwrap()).or_default().add(
                r["inputTokens"].as_i64().unwrap(),
                r["outputTokens"].as_i64().unwrap(),
                dollars_to_micros(&r["cost"]),
            );
        }
        let view = api.get("/admin/v1/me/usage/by-model", session).await;
        let got: BTreeMap<String, Sums> = view
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let s = Sums {
                    requests: row["request_count"].as_i64().unwrap(),
                    input: row["input_tokens"].as_i64().unwrap(),
                    output: row["output_tokens"].as_i64().unwrap(),
                    cost_micros: dollars_to_micros(&row["total_cost"]),
                };
                (row["model"].as_str().unwrap().to_string(), s)
            })
            .collect();
        assert_eq!(got, want, "{email}'s by-model view");
        let summary = api.get("/admin/v1/me/usage", session).await;
        assert_eq!(summary["request_count"].as_i64(), Some(mine.len() as i64), "{email}");
    }
    server.stop();
}

#[tokio::test]
async fn every_view_is_exact_over_thousands_of_requests_and_a_kill_embedded() {
    let dir = tempfile::tempdir().unwrap();
    exact_under_a_kill(vec![("TOLLGATE_DATA_DIR", dir.path().display().to_string())], &["serve"], 2000).await;
}

#[tokio::test]
async fn every_view_is_exact_over_thousands_of_requests_and_a_kill_dynamodb() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::env::var("TOLLGATE_PROPERTY_REQUESTS_DYNAMODB").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    exact_under_a_kill(common::dynamo_envs(dir.path(), "property"), &["serve", "--create-table"], n).await;
}
