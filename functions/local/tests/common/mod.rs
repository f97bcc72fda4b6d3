//! Running the `tollgate` binary in tests: a free port, starting it and waiting until it
//! listens, stopping it with Ctrl-C (or killing it).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Server {
    pub child: Child,
    pub output: std::sync::Arc<std::sync::Mutex<String>>,
    pub base: String,
}

/// Starts `tollgate serve` and waits for its "listening" line.
pub fn start(envs: &[(&str, String)], args: &[&str]) -> Server {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .env("TOLLGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOLLGATE_LOG", "debug")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tollgate");
    let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    for stream in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
        let output = output.clone();
        let ready = ready_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if line.contains("Press Ctrl-C") {
                    let _ = ready.send(());
                }
                output.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        panic!("tollgate did not start:\n{}", output.lock().unwrap());
    }
    Server { child, output, base: format!("http://127.0.0.1:{port}") }
}

impl Server {
    /// Sends SIGINT (Ctrl-C) and waits for a clean exit; returns everything it printed.
    pub fn stop(mut self) -> String {
        let status = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let output = self.output.lock().unwrap().clone();
        assert!(exit.success(), "tollgate exited with {exit:?}:\n{output}");
        assert!(output.contains("Tollgate stopped."), "{output}");
        output
    }
}

/// The environment that points the binary at DynamoDB and Secrets Manager on the test endpoint
/// (moto's server under scripts/test), with a table and secret prefix of its own.
pub fn dynamo_envs(data_dir: &std::path::Path, name: &str) -> Vec<(&'static str, String)> {
    let endpoint = std::env::var("TOLLGATE_TEST_DYNAMODB_ENDPOINT")
        .expect("TOLLGATE_TEST_DYNAMODB_ENDPOINT is not set: run the tests with scripts/test, which starts moto's server and sets it");
    let unique = format!("{name}-{}", std::process::id());
    vec![
        ("TOLLGATE_DATA_DIR", data_dir.display().to_string()),
        ("TOLLGATE_STORE", "dynamodb".to_string()),
        ("TOLLGATE_DYNAMODB_ENDPOINT", endpoint.clone()),
        ("TOLLGATE_TABLE", unique.clone()),
        ("TOLLGATE_SECRETS", "secretsmanager".to_string()),
        ("TOLLGATE_SECRETS_ENDPOINT", endpoint),
        ("TOLLGATE_SECRETS_PREFIX", format!("{unique}/")),
    ]
}
