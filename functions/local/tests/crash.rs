//! A kill -9 under load holds no budget for good: the reservations of the requests it cut
//! carry leases, which lapse after the upstream timeout plus a margin, and the restarted
//! server releases them (recording each lost request), so every counter agrees with the
//! records again. On both store backends.

use std::time::Duration;

use serde_json::{Value, json};

mod common;

use common::start;

const PASSWORD: &str = "crash test password";

async fn call(client: &reqwest::Client, method: reqwest::Method, url: String, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

/// A dollar header ("0.950000") in micro-dollars.
fn micros(resp: &reqwest::Response, name: &str) -> i64 {
    let text = resp.headers()[name].to_str().unwrap();
    let (whole, frac) = text.split_once('.').unwrap();
    whole.parse::<i64>().unwrap() * 1_000_000 + frac.parse::<i64>().unwrap()
}

async fn kill_under_load(envs: &[(&str, String)], args: &[&str]) {
    // Leases lapse 1 s past a 300 ms upstream timeout.
    let mut envs = envs.to_vec();
    envs.push(("TOLLGATE_UPSTREAM_TIMEOUT_MS", "300".into()));
    envs.push(("TOLLGATE_LEASE_MARGIN_SECS", "1".into()));
    let client = reqwest::Client::new();
    let first = start(&envs, args);
    let base = first.base.clone();
    let admin: Value = client
        .post(format!("{base}/api/setup/first-admin"))
        .json(&json!({"email": "crash@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = admin["token"].as_str().unwrap().to_string();
    // Output at $2000 per million tokens: 5 tokens are one cent.
    let model = json!({"id": "mock-1", "provider": "mock", "inputPrice": 0, "outputPrice": 2000, "contextWindow": 4096});
    assert_eq!(call(&client, reqwest::Method::POST, format!("{base}/api/models"), &admin, Some(model)).await.status(), 201);
    let key: Value = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/admin/v1/me/api-keys"),
        &admin,
        Some(json!({"name": "load", "budget_limit_cents": 100, "rate_limit_rpm": 1000})),
    )
    .await
    .json()
    .await
    .unwrap();
    let key = key["key"].as_str().unwrap().to_string();
    let chat = |content: &str| json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": content}]});
    for _ in 0..3 {
        assert_eq!(call(&client, reqwest::Method::POST, format!("{base}/v1/chat/completions"), &key, Some(chat("done [mock:words=9]"))).await.status(), 200);
    }
    // Twenty slow streams in flight (a chunk a second), each holding its one-cent worst case...
    let mut slow_body = chat("slow [mock:delay_ms=1000] [mock:words=9]");
    slow_body["stream"] = json!(true);
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let (client, url, key, body) = (client.clone(), format!("{base}/v1/chat/completions"), key.clone(), slow_body.clone());
            tokio::spawn(async move {
                let resp = client.post(url).bearer_auth(key).json(&body).send().await?;
                resp.text().await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // ...when the server is killed.
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    for request in slow {
        assert!(request.await.unwrap().is_err(), "a stream cut by the kill ended whole");
    }

    let second = start(&envs, &["serve"]);
    let base = second.base.clone();
    // The leases lapse; the next request releases them in its settlement.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let first_after = call(&client, reqwest::Method::POST, format!("{base}/v1/chat/completions"), &key, Some(chat("after [mock:words=9]"))).await;
    assert_eq!(first_after.status(), 200);
    let standing = call(&client, reqwest::Method::POST, format!("{base}/v1/chat/completions"), &key, Some(chat("after [mock:words=9]"))).await;
    assert_eq!(standing.status(), 200);
    let remaining = micros(&standing, "x-budget-remaining-usd");
    let logs: Value = call(&client, reqwest::Method::GET, format!("{base}/admin/v1/me/usage/logs?limit=100"), &admin, None).await.json().await.unwrap();
    let records = logs["data"].as_array().unwrap();
    let recorded: i64 = records.iter().map(|r| r["cost_micros"].as_i64().unwrap()).sum();
    let lost = records.iter().filter(|r| r["error"].as_str().is_some_and(|e| e.contains("never settled"))).count();
    assert_eq!(lost, 20, "each request the kill cut is recorded as lost: {logs}");
    assert_eq!(records.len(), 25, "{logs}");
    assert_eq!(remaining, 1_000_000 - recorded, "the budget's counter agrees with the records");
    assert_eq!(recorded, 5 * 10_000, "five served requests of one cent each");
    // The usage views agree with the records too, across the kill: records whose rollup was
    // pending when it came are added by the restarted server's consumer, once.
    let mut summary = Value::Null;
    for _ in 0..50 {
        summary = call(&client, reqwest::Method::GET, format!("{base}/admin/v1/me/usage"), &admin, None).await.json().await.unwrap();
        if summary["request_count"] == 25 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(summary["request_count"], 25, "{summary}");
    assert_eq!(summary["total_cost"].as_f64(), Some(recorded as f64 / 1e6), "{summary}");
    second.stop();
}

#[tokio::test]
async fn a_kill_under_load_holds_no_budget_once_the_leases_lapse_embedded() {
    let dir = tempfile::tempdir().unwrap();
    kill_under_load(&[("TOLLGATE_DATA_DIR", dir.path().display().to_string())], &["serve"]).await;
}

#[tokio::test]
async fn a_kill_under_load_holds_no_budget_once_the_leases_lapse_dynamodb() {
    let dir = tempfile::tempdir().unwrap();
    let envs = common::dynamo_envs(dir.path(), "crash");
    kill_under_load(&envs, &["serve", "--create-table"]).await;
}
