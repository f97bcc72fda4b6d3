//! The CLI end to end, against the local server: login (the session file, 0600, refreshed
//! within five minutes of expiry), models, keys, a chat through a key, usage by model (table
//! and JSON), the export with its progress, revocation, and errors that print the API's
//! message and exit non-zero.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

mod common;

const PASSWORD: &str = "cli test password";

struct Cli {
    server: String,
    config: tempfile::TempDir,
}

impl Cli {
    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(args)
            .env("TOLLGATE_SERVER", &self.server)
            .env("XDG_CONFIG_HOME", self.config.path())
            .env_remove("TOLLGATE_PASSWORD")
            .env_remove("TOLLGATE_API_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs a command that must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run_with_stdin(args, "");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
        assert!(out.status.success(), "tollgate {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    /// Runs a command that must fail; its standard error.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run_with_stdin(args, "");
        assert!(!out.status.success(), "tollgate {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    fn session_file(&self) -> std::path::PathBuf {
        self.config.path().join("tollgate").join("session.json")
    }

    fn session(&self) -> Value {
        serde_json::from_slice::<Value>(&std::fs::read(self.session_file()).unwrap()).unwrap()[&self.server].clone()
    }
}

/// A model's routing: deployments (keys from standard input only), strategy, fallbacks and
/// retry set, shown and removed; the API's message, with its field, for a bad one. (The
/// deployments' URLs are never called: nothing here is sent through the proxy.)
fn routing(cli: &Cli) {
    let add = ["models", "add", "relay", "--provider", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1", "--input-price", "1", "--output-price", "2"];
    assert!(cli.ok(&add).contains("Added model relay"));
    let east = "id=east,provider=openai-compatible,base-url=http://127.0.0.1:9/v1,region=eastus,weight=3,rpm=100,tpm=50000";
    let args = [
        ["models", "route", "relay", "--strategy", "least_busy", "--fallback", "mock-a", "--max-attempts", "3", "--max-total-ms", "20000"].as_slice(),
        &["--deployment", east, "--deployment", "id=west,base-url=http://127.0.0.1:9/v2", "--deployment-key-stdin", "east"],
    ]
    .concat();
    let out = cli.run_with_stdin(&args, "sk-east-secret\n");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("Changed the routing of relay") && stdout.contains("least_busy") && stdout.contains("at most 3 attempts, within 20000 ms"),
        "{stdout}"
    );
    assert!(stdout.contains("eastus") && !stdout.contains("sk-east-secret"), "the key is never shown: {stdout}");

    let listed: Value = serde_json::from_str(&cli.ok(&["models", "deployments", "relay", "--json"])).unwrap();
    assert_eq!(
        listed[0],
        json!({"id": "east", "provider": "openai-compatible", "baseUrl": "http://127.0.0.1:9/v1", "region": "eastus", "weight": 3, "rpm": 100, "tpm": 50000, "hasApiKey": true})
    );
    assert_eq!((listed[1]["id"].as_str(), listed[1]["weight"].as_i64(), listed[1]["hasApiKey"].as_bool()), (Some("west"), Some(1), Some(false)));
    let table = cli.ok(&["models", "deployments", "relay"]);
    assert!(table.lines().next().unwrap().starts_with("ID") && table.contains("west") && table.contains("50000"), "{table}");

    // A key for one deployment alone: the others, and the rest of the routing, stay.
    let out = cli.run_with_stdin(&["models", "route", "relay", "--deployment-key-stdin", "west", "--json"], "sk-west-secret\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(model["deployments"].as_array().unwrap().iter().map(|d| d["hasApiKey"].clone()).collect::<Vec<_>>(), [true, true]);
    assert_eq!(
        (model["deployments"][0]["weight"].clone(), model["fallbacks"].clone(), model["retry"]["maxAttempts"].clone()),
        (json!(3), json!(["mock-a"]), json!(3))
    );
    assert!(cli.ok(&["models", "route", "relay"]).contains("Fallbacks:               mock-a"), "without options, the routing is shown");

    // Refused: the API's message with the field it names; a key on the command line; an unknown id.
    let bad = cli.fails(&["models", "route", "relay", "--deployment", "id=east,weight=0"]);
    assert!(bad.contains("weight must be") && bad.contains("deployments[0].weight") && bad.contains("HTTP 400"), "{bad}");
    let keyed = cli.fails(&["models", "route", "relay", "--deployment", "id=east,api-key=sk-typed"]);
    assert!(keyed.contains("--deployment-key-stdin") && !keyed.contains("sk-typed"), "{keyed}");
    assert!(cli.fails(&["models", "route", "relay", "--deployment-key-stdin", "north"]).contains("no deployment \"north\""));

    let cleared: Value =
        serde_json::from_str(&cli.ok(&["models", "route", "relay", "--no-deployments", "--no-fallbacks", "--strategy", "weighted", "--json"])).unwrap();
    assert!(cleared.get("deployments").is_none() && cleared.get("fallbacks").is_none() && cleared.get("routingStrategy").is_none(), "{cleared}");
    assert!(cli.ok(&["models", "deployments", "relay"]).contains("served by its own provider (openai-compatible)"));
}

async fn drive_the_gateway(envs: &[(&str, String)], args: &[&str]) {
    let server = common::start(envs, args);
    let http = reqwest::Client::new();
    let setup =
        http.post(format!("{}/api/setup/first-admin", server.base)).json(&json!({"email": "cli@example.com", "password": PASSWORD})).send().await.unwrap();
    assert_eq!(setup.status(), 201);
    let cli = Cli { server: server.base.clone(), config: tempfile::tempdir().unwrap() };

    // Before a login: told what to do.
    assert!(cli.fails(&["models", "list"]).contains("tollgate login"));
    let wrong = cli.run_with_stdin(&["login", "--email", "cli@example.com", "--password-stdin"], "wrong password\n");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("HTTP 401"), "{}", String::from_utf8_lossy(&wrong.stderr));
    let login = cli.run_with_stdin(&["login", "--email", "cli@example.com", "--password-stdin"], &format!("{PASSWORD}\n"));
    assert!(login.status.success(), "{}", String::from_utf8_lossy(&login.stderr));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(cli.session_file()).unwrap().permissions().mode() & 0o777, 0o600, "the refresh token is private");
    let refresh = cli.session()["refresh_token"].as_str().unwrap().to_string();

    assert!(cli.ok(&["models", "add", "mock-a", "--input-price", "1", "--output-price", "2"]).contains("Added model mock-a"));
    let listed = cli.ok(&["models", "list"]);
    assert!(listed.lines().next().unwrap().starts_with("ID") && listed.contains("mock-a"), "{listed}");
    // The API's own message, and a non-zero exit.
    let duplicate = cli.fails(&["models", "add", "mock-a", "--input-price", "1", "--output-price", "2"]);
    assert!(duplicate.contains("HTTP 409"), "{duplicate}");
    assert_eq!(cli.session()["refresh_token"], refresh.as_str(), "a token far from expiry is not refreshed");
    routing(&cli);

    let created = cli.ok(&["keys", "create", "--name", "cli", "--budget-cents", "100"]);
    let secret = created.lines().last().unwrap().to_string();
    assert!(created.contains("shown once") && secret.starts_with("tg"), "{created}");
    let keys: Value = serde_json::from_str(&cli.ok(&["keys", "list", "--json"])).unwrap();
    let key_id = keys["data"][0]["id"].as_str().unwrap().to_string();
    assert!(!cli.ok(&["keys", "list"]).contains(&secret), "a secret is never listed");

    let answer = cli.ok(&["chat", "hello [mock:words=4]", "--model", "mock-a", "--key", &secret]);
    assert_eq!(answer.split_whitespace().count(), 4, "{answer}");

    // The usage summary, once the rollups have the request (within about a second).
    let mut summary = Value::Null;
    for _ in 0..50 {
        summary = serde_json::from_str(&cli.ok(&["usage", "--by", "model", "--json"])).unwrap();
        if summary["total"]["requestCount"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(summary["groups"][0]["key"], "mock-a", "{summary}");
    let table = cli.ok(&["usage", "--by", "model"]);
    assert!(table.contains("mock-a") && table.contains("TOTAL"), "{table}");
    assert!(cli.fails(&["usage", "--from", "not-a-date"]).contains("from must be a date"));

    let file = cli.config.path().join("usage.csv");
    let out = cli.run_with_stdin(&["usage", "export", "--format", "csv", "--output", file.to_str().unwrap()], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported 1 records"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2, "a header and the record");

    // A token within five minutes of expiry is refreshed before the call, and the rotated
    // refresh token kept (the stand-in token is never sent).
    let mut all: Value = serde_json::from_slice(&std::fs::read(cli.session_file()).unwrap()).unwrap();
    let soon = chrono::Utc::now().timestamp() + 120;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{soon}}}"#));
    all[&cli.server]["token"] = json!(format!("x.{payload}.y"));
    std::fs::write(cli.session_file(), serde_json::to_vec(&all).unwrap()).unwrap();
    assert!(cli.ok(&["models", "list"]).contains("mock-a"));
    let rotated = cli.session()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rotated, refresh, "refreshed, and the new refresh token kept");

    assert!(cli.ok(&["keys", "revoke", &key_id]).contains("Revoked"));
    let refused = cli.fails(&["chat", "hello", "--model", "mock-a", "--key", &secret]);
    assert!(refused.contains("HTTP 401"), "{refused}");

    assert!(cli.ok(&["logout"]).contains("Logged out"));
    assert!(cli.fails(&["keys", "list"]).contains("tollgate login"));
    // The session ended on the server too: its refresh token no longer works.
    let reuse = http.post(format!("{}/api/auth/refresh", server.base)).json(&json!({"refreshToken": rotated})).send().await.unwrap();
    assert_eq!(reuse.status(), 401);
    server.stop();
}

#[tokio::test]
async fn the_cli_drives_the_gateway_end_to_end_embedded() {
    let dir = tempfile::tempdir().unwrap();
    drive_the_gateway(&[("TOLLGATE_DATA_DIR", dir.path().display().to_string())], &["serve"]).await;
}

#[tokio::test]
async fn the_cli_drives_the_gateway_end_to_end_dynamodb() {
    let dir = tempfile::tempdir().unwrap();
    drive_the_gateway(&common::dynamo_envs(dir.path(), "cli"), &["serve", "--create-table"]).await;
}
