//! The `tollgate` binary itself: it prints where it listens and how to create the first admin,
//! stops cleanly on Ctrl-C, keeps its data across restarts, honours the documented
//! environment names, and never writes a password or token to its output, even at debug level.

use std::process::Command;

use serde_json::{Value, json};

const PASSWORD: &str = "a-very-distinct-password-9";

mod common;

use common::{free_port, start};

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new().post(format!("{base}{path}")).json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// An upstream that refuses every request, echoing the key it was sent in its error (as some
/// providers do, in part or whole). Returns its base URL.
fn echoing_upstream() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut auth, mut length) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().trim_start_matches("Bearer ").to_string();
                }
                if let Some(n) = lower.strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let answer = json!({"error": {"message": format!("Incorrect API key provided: {auth}"), "type": "invalid_request_error"}}).to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/v1")
}

async fn get(base: &str, path: &str, token: &str) -> u16 {
    reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// Runs a session: start, set up, log in, refresh, stop, restart, use the old token.
async fn round_trip(envs: &[(&str, String)], args: &[&str]) {
    let first = start(envs, args);
    let (status, created) = post(&first.base, "/api/setup/first-admin", json!({"email": "ops@example.com", "password": PASSWORD})).await;
    assert_eq!(status, 201, "{created}");
    let (status, login) = post(&first.base, "/api/auth/login", json!({"email": "ops@example.com", "password": PASSWORD})).await;
    assert_eq!(status, 200);
    let token = login["token"].as_str().unwrap().to_string();
    let (_, refreshed) = post(&first.base, "/api/auth/refresh", json!({"refreshToken": login["refreshToken"]})).await;
    // A model with a provider key, a personal API key, and a proxied request with it.
    let client = reqwest::Client::new();
    let model = json!({"id": "mock-1", "provider": "mock", "apiKey": "sk-provider-key-never-logged", "inputPrice": 1, "outputPrice": 1, "contextWindow": 100});
    assert_eq!(client.post(format!("{}/api/models", first.base)).bearer_auth(&token).json(&model).send().await.unwrap().status(), 201);
    let key: Value =
        client.post(format!("{}/admin/v1/me/api-keys", first.base)).bearer_auth(&token).json(&json!({"name": "k"})).send().await.unwrap().json().await.unwrap();
    let api_key = key["key"].as_str().unwrap().to_string();
    let chat = json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(client.post(format!("{}/v1/chat/completions", first.base)).bearer_auth(&api_key).json(&chat).send().await.unwrap().status(), 200);
    // A real upstream that refuses the provider key and echoes it back: neither the caller, nor
    // the usage record, nor the log sees it.
    let echoing = json!({"id": "echo-1", "provider": "openai-compatible", "baseUrl": echoing_upstream(), "apiKey": "sk-upstream-key-never-logged-0123456789",
        "inputPrice": 1, "outputPrice": 1, "contextWindow": 100});
    assert_eq!(client.post(format!("{}/api/models", first.base)).bearer_auth(&token).json(&echoing).send().await.unwrap().status(), 201);
    let refused = client
        .post(format!("{}/v1/chat/completions", first.base))
        .bearer_auth(&api_key)
        .json(&json!({"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let refused = refused.text().await.unwrap();
    assert!(refused.contains("Incorrect API key provided: [redacted]"), "{refused}");
    let logs = client.get(format!("{}/admin/v1/me/usage/logs", first.base)).bearer_auth(&token).send().await.unwrap().text().await.unwrap();
    assert!(logs.contains("[redacted]") && !logs.contains("upstream-key-never"), "{logs}");
    // Notification channels with secrets, an invite whose delivery fails (and is logged), and
    // a workspace token used through the proxy.
    let settings = json!({"publicUrl": "https://app.example.com", "notifications": [
        {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "whsec-never-logged"},
        {"name": "mail", "type": "smtp", "host": "127.0.0.1", "port": 9, "tls": "none", "username": "u", "password": "smtp-pass-never-logged",
         "from": "tollgate@example.com", "to": ["ops@example.com"]}
    ]});
    assert_eq!(client.put(format!("{}/api/settings", first.base)).bearer_auth(&token).json(&settings).send().await.unwrap().status(), 200);
    let ws: Value =
        client.post(format!("{}/api/workspaces", first.base)).bearer_auth(&token).json(&json!({"name": "Acme"})).send().await.unwrap().json().await.unwrap();
    let ws = ws["id"].as_str().unwrap().to_string();
    let invite = json!({"email": "new@example.com", "role": "member", "business_id": ws, "redirect_to": "https://app.example.com/join"});
    let invite: Value = client.post(format!("{}/api/invite-user", first.base)).bearer_auth(&token).json(&invite).send().await.unwrap().json().await.unwrap();
    assert_eq!(invite["delivery"][0]["ok"], false, "{invite}");
    // No channel delivered it: the global admin reads the link once.
    let link = json!({"business_id": ws, "invite_id": invite["invite"]["id"]});
    let link: Value = client.post(format!("{}/api/invite-user/link", first.base)).bearer_auth(&token).json(&link).send().await.unwrap().json().await.unwrap();
    let invite_url = reqwest::Url::parse(link["invite_url"].as_str().unwrap()).unwrap();
    let invite_token = invite_url.query_pairs().find(|(k, _)| k == "invite_token").unwrap().1.to_string();
    let ws_token: Value = client
        .post(format!("{}/api/tokens", first.base))
        .bearer_auth(&token)
        .json(&json!({"name": "w", "business_id": ws}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ws_token = ws_token["secret"].as_str().unwrap().to_string();
    assert_eq!(client.post(format!("{}/v1/chat/completions", first.base)).bearer_auth(&ws_token).json(&chat).send().await.unwrap().status(), 200);
    let mut secrets = vec![
        "whsec-never-logged".to_string(),
        "smtp-pass-never-logged".to_string(),
        invite_token,
        ws_token,
        "sk-provider-key-never-logged".to_string(),
        "upstream-key-never".to_string(),
        api_key,
        token.clone(),
        login["refreshToken"].as_str().unwrap().to_string(),
        refreshed["refreshToken"].as_str().unwrap().to_string(),
        created["token"].as_str().unwrap().to_string(),
    ];
    let first_output = first.stop();
    assert!(first_output.contains("Tollgate listening on http://127.0.0.1:"), "{first_output}");
    assert!(first_output.contains("/api/setup/first-admin"), "the first start explains how to create an admin:\n{first_output}");
    assert!(first_output.contains("was not delivered"), "the failed invite delivery is logged (and checked for secrets below):\n{first_output}");

    // The data, and the JWT signing key, survive the restart.
    let second = start(envs, args);
    assert_eq!(get(&second.base, "/api/me", &token).await, 200);
    let (status, _) = post(&second.base, "/api/auth/login", json!({"email": "ops@example.com", "password": PASSWORD})).await;
    assert_eq!(status, 200);
    let second_output = second.stop();
    assert!(!second_output.contains("No admin exists yet"), "{second_output}");

    secrets.push(PASSWORD.to_string());
    for output in [&first_output, &second_output] {
        for secret in &secrets {
            assert!(!output.contains(secret.as_str()), "a secret reached the output:\n{output}");
        }
    }
}

#[tokio::test]
async fn embedded_store_serves_stops_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(&[("TOLLGATE_DATA_DIR", dir.path().display().to_string())], &["serve"]).await;
    assert!(dir.path().join("tollgate.redb").exists());
    assert!(dir.path().join("secrets.redb").exists());
}

#[tokio::test]
async fn dynamodb_and_secrets_manager_through_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let envs = common::dynamo_envs(dir.path(), "serve");
    round_trip(&envs, &["serve", "--create-table"]).await;
    // Nothing was written locally: both stores were remote.
    assert!(!dir.path().join("tollgate.redb").exists());
    assert!(!dir.path().join("secrets.redb").exists());
}

/// Runs `tollgate serve` expecting it to refuse to start; returns what it printed.
fn refuses_to_start(envs: &[(&str, String)]) -> String {
    refuses_to_start_with(envs, true)
}

fn refuses_to_start_with(envs: &[(&str, String)], credentials: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command.arg("serve").env("TOLLGATE_LISTEN", format!("127.0.0.1:{}", free_port())).env("AWS_REGION", "us-east-1").env("AWS_EC2_METADATA_DISABLED", "true");
    if credentials {
        command.env("AWS_ACCESS_KEY_ID", "testing").env("AWS_SECRET_ACCESS_KEY", "testing");
    } else {
        let home = tempfile::tempdir().unwrap();
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ] {
            command.env_remove(name);
        }
        // No shared config or credentials files either.
        command.env("HOME", home.path()).env("AWS_CONFIG_FILE", home.path().join("none")).env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"));
    }
    let output = command.envs(envs.iter().map(|(k, v)| (*k, v.as_str()))).output().expect("run tollgate");
    assert!(!output.status.success(), "it started anyway");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!stderr.contains("Stack backtrace") && !stderr.contains("panicked"), "a stack trace instead of a message:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("tollgate: ")).collect();
    assert_eq!(lines.len(), 1, "one line naming the problem:\n{stderr}");
    lines[0].to_string()
}

#[test]
fn start_up_failures_say_what_to_do_in_one_line() {
    // A DynamoDB table that does not exist (moto's server, as the tests run it).
    if let Ok(endpoint) = std::env::var("TOLLGATE_TEST_DYNAMODB_ENDPOINT") {
        let line = refuses_to_start(&[
            ("TOLLGATE_STORE", "dynamodb".into()),
            ("TOLLGATE_DYNAMODB_ENDPOINT", endpoint.clone()),
            ("TOLLGATE_TABLE", "no-such-table-for-tollgate".into()),
        ]);
        assert!(line.contains("no-such-table-for-tollgate") && line.contains(&endpoint) && line.contains("--create-table"), "{line}");
    }
    // An endpoint nothing listens on.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let line = refuses_to_start(&[("TOLLGATE_STORE", "dynamodb".into()), ("TOLLGATE_DYNAMODB_ENDPOINT", closed.clone())]);
    assert!(line.contains("cannot reach") && line.contains(&closed) && line.contains("TOLLGATE_DYNAMODB_ENDPOINT"), "{line}");
    let line = refuses_to_start(&[("TOLLGATE_SECRETS", "secretsmanager".into()), ("TOLLGATE_SECRETS_ENDPOINT", closed.clone())]);
    assert!(line.contains("cannot reach") && line.contains("TOLLGATE_SECRETS_ENDPOINT"), "{line}");

    // No AWS credentials anywhere.
    let line = refuses_to_start_with(&[("TOLLGATE_STORE", "dynamodb".into()), ("TOLLGATE_DYNAMODB_ENDPOINT", closed.clone())], false);
    assert!(line.contains("no AWS credentials") && line.contains("AWS_ACCESS_KEY_ID"), "{line}");

    // A data directory that is a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let line = refuses_to_start(&[("TOLLGATE_DATA_DIR", file.display().to_string())]);
    assert!(line.contains("TOLLGATE_DATA_DIR") && line.contains("not-a-dir"), "{line}");

    // A master key of the wrong size.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("master.key"), [7u8; 20]).unwrap();
    let line = refuses_to_start(&[("TOLLGATE_DATA_DIR", data.display().to_string())]);
    assert!(line.contains("master.key") && line.contains("20 bytes") && line.contains("32-byte"), "{line}");
}
