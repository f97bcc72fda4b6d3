//! What `tollgate-bench` and `tollgate-bench-load` share: the local OpenAI-shaped upstream, the
//! gateway and forwarder child processes, the admin calls that set the gateway up, and the
//! meters read from /proc (CPU time, resident memory; Linux only).

use std::time::{Duration, Instant};

/// The gateway's own code for appending to its write-ahead log, not a copy: the durable
/// forwarder's log and the disk probe must write the way the gateway's log does.
#[path = "../../shared/src/store/embedded/appender.rs"]
pub mod appender;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const ANSWER: &str = r#"{"id":"b","object":"chat.completion","model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"a short benchmark answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;

/// The model that answers at once (its stream in one piece).
pub const INSTANT: &str = "bench";
/// The model whose stream comes as `Pacing::events` content events, `Pacing::gap` apart.
pub const PACED: &str = "bench-paced";
/// The model whose stream sends one content event, then holds until `Upstream::release`.
pub const HELD: &str = "bench-hold";

/// How the upstream paces `PACED` streams.
#[derive(Clone, Copy)]
pub struct Pacing {
    pub events: usize,
    pub gap: Duration,
}

/// The local upstream: its address and the switch that lets held streams finish.
pub struct Upstream {
    pub addr: std::net::SocketAddr,
    release: tokio::sync::watch::Sender<u64>,
}

impl Upstream {
    /// Starts it on a free local port, in this process's runtime; `nodelay`: without Nagle's
    /// algorithm on accepted connections, as a stream's events need (else each small write
    /// after the first waits for the client's delayed acknowledgement, ~40 ms).
    pub async fn start(pacing: Pacing, nodelay: bool) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| {
            if nodelay {
                let _ = tcp.set_nodelay(true);
            }
        });
        let (release, _) = tokio::sync::watch::channel(0u64);
        let state = UpstreamState { pacing, release: release.subscribe() };
        let app = axum::Router::new().route("/v1/chat/completions", post(upstream)).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr, release })
    }

    /// The chat completions URL.
    pub fn url(&self) -> String {
        format!("http://{}/v1/chat/completions", self.addr)
    }

    /// Lets every held stream open now finish.
    pub fn release_held(&self) {
        self.release.send_modify(|generation| *generation += 1);
    }
}

#[derive(Clone)]
struct UpstreamState {
    pacing: Pacing,
    release: tokio::sync::watch::Receiver<u64>,
}

fn chunk(word: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "b", "object": "chat.completion.chunk", "model": "bench", "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": null}]})
    )
}

fn usage_chunk(completion_tokens: usize) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "b", "object": "chat.completion.chunk", "model": "bench", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": completion_tokens, "total_tokens": 12 + completion_tokens}})
    )
}

fn event_stream(events: impl futures::Stream<Item = String> + Send + 'static) -> Response {
    use futures::StreamExt;
    let body = Body::from_stream(events.map(|e| Ok::<_, std::convert::Infallible>(Bytes::from(e))));
    Response::builder().header(header::CONTENT_TYPE, "text/event-stream").body(body).unwrap()
}

/// The upstream: answers at once, so all measured time is HTTP and what is in between; a
/// streamed request for `PACED` or `HELD` is paced as those say.
async fn upstream(State(state): State<UpstreamState>, body: Bytes) -> Response {
    let request = serde_json::from_slice::<Value>(&body).unwrap_or_default();
    if request["stream"] != true {
        return ([(header::CONTENT_TYPE, "application/json")], ANSWER).into_response();
    }
    match request["model"].as_str() {
        Some(PACED) => {
            let Pacing { events, gap } = state.pacing;
            let start = tokio::time::Instant::now();
            let paced = futures::stream::unfold(0usize, move |i| async move {
                match i {
                    _ if i < events => {
                        // On a fixed schedule from the start, so the gaps do not drift; the
                        // first at once (a timer would wait for its next millisecond tick).
                        if i > 0 {
                            tokio::time::sleep_until(start + gap * i as u32).await;
                        }
                        Some((chunk(&format!("w{i} ")), i + 1))
                    }
                    _ if i == events => Some((usage_chunk(events) + "data: [DONE]\n\n", i + 1)),
                    _ => None,
                }
            });
            event_stream(paced)
        }
        Some(HELD) => {
            let mut release = state.release.clone();
            let generation = *release.borrow_and_update();
            let held = futures::stream::unfold(0usize, move |i| {
                let mut release = release.clone();
                async move {
                    match i {
                        0 => Some((chunk("held"), 1)),
                        1 => {
                            let _ = release.wait_for(|g| *g > generation).await;
                            Some((chunk(" released") + &usage_chunk(2) + "data: [DONE]\n\n", 2))
                        }
                        _ => None,
                    }
                }
            });
            event_stream(held)
        }
        _ => {
            let mut events = String::new();
            for word in ["a", "short", "benchmark", "answer", "!"] {
                events += &chunk(word);
            }
            events += &usage_chunk(5);
            events += "data: [DONE]\n\n";
            Response::builder().header(header::CONTENT_TYPE, "text/event-stream").body(Body::from(events)).unwrap()
        }
    }
}

/// A child process, killed when dropped (also when the benchmark fails half-way).
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Child {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

/// A free local port (free when asked; the child binds it soon after).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A `tollgate serve` on the embedded store in `data`, listening on `port`.
pub fn spawn_gateway(bin: &str, data: &std::path::Path, port: u16) -> anyhow::Result<Child> {
    Ok(Child(
        std::process::Command::new(bin)
            .arg("serve")
            .env("TOLLGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("TOLLGATE_DATA_DIR", data)
            .env("TOLLGATE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {bin}: {e} (build it: cargo build --profile perf -p tollgate-local)"))?,
    ))
}

/// The bare forwarder (`tollgate-forwarder`, beside this executable) on `port`, to `upstream_url`;
/// with `log_dir`, the floor of a proxy that syncs a record of each request before its answer
/// ends (its log file goes there).
pub fn spawn_forwarder(port: u16, upstream_url: &str, log_dir: Option<&std::path::Path>) -> anyhow::Result<Child> {
    let bin = std::env::current_exe()?.with_file_name("tollgate-forwarder");
    let mut command = std::process::Command::new(&bin);
    command.arg(format!("127.0.0.1:{port}")).arg(upstream_url);
    if let Some(dir) = log_dir {
        command.arg(dir);
    }
    Ok(Child(command.spawn().map_err(|e| anyhow::anyhow!("cannot start {}: {e} (build it: cargo build --profile perf -p tollgate-bench)", bin.display()))?))
}

pub async fn wait_listening(client: &reqwest::Client, url: &str) {
    for _ in 0..200 {
        if client.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn admin_call(client: &reqwest::Client, base: &str, path: &str, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
    let mut req = client.post(format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    anyhow::ensure!(resp.status().is_success(), "{path}: {}", resp.text().await?);
    Ok(resp.json().await?)
}

/// Creates the first admin and returns its token.
pub async fn first_admin(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let admin = admin_call(client, base, "/api/setup/first-admin", None, json!({"email": "bench@example.com", "password": "bench password"})).await?;
    Ok(admin["token"].as_str().unwrap_or_default().to_string())
}

/// Adds a catalog model `id` served by the upstream at `upstream_addr` (sent upstream as `id`).
pub async fn add_model(client: &reqwest::Client, base: &str, admin: &str, id: &str, upstream_addr: std::net::SocketAddr) -> anyhow::Result<()> {
    admin_call(
        client,
        base,
        "/api/models",
        Some(admin),
        json!({
            "id": id, "provider": "openai-compatible", "baseUrl": format!("http://{upstream_addr}/v1"), "apiKey": "sk-bench",
            "inputPrice": 0.25, "outputPrice": 2.0, "contextWindow": 128000
        }),
    )
    .await?;
    Ok(())
}

/// Creates an API key with every limit on, none binding, and returns it.
pub async fn create_key(client: &reqwest::Client, base: &str, admin: &str, name: &str) -> anyhow::Result<String> {
    let key = admin_call(
        client,
        base,
        "/admin/v1/me/api-keys",
        Some(admin),
        json!({
            "name": name, "budget_limit_cents": 100_000_000, "rate_limit_rpm": 100_000_000, "rate_limit_tpm": 2_000_000_000
        }),
    )
    .await?;
    Ok(key["key"].as_str().unwrap_or_default().to_string())
}

/// The CPU time a process has used, from /proc (user + system, in clock ticks of 10 ms).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are space-separated.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The machine's (all, stolen) time so far, in ticks, from the first line of /proc/stat.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    Some((ticks.iter().take(8).sum(), *ticks.get(7)?))
}

/// The CPU µs per request a process spent over one run.
pub struct CpuMeter {
    pid: u32,
    start: Option<u64>,
}

impl CpuMeter {
    pub fn start(pid: u32) -> Self {
        Self { pid, start: cpu_ticks(pid) }
    }

    pub fn per_request(&self, requests: usize) -> String {
        match (self.start, cpu_ticks(self.pid)) {
            (Some(a), Some(b)) if requests > 0 => format!("{:.0}", (b - a) as f64 * 10_000.0 / requests as f64),
            _ => "-".into(),
        }
    }
}

/// The share of the machine's time the hypervisor stole since `start`.
pub fn steal_since(start: Option<(u64, u64)>) -> String {
    match (start, machine_ticks()) {
        (Some((all_a, st_a)), Some((all_b, st_b))) if all_b > all_a => format!("{:.0}%", (st_b - st_a) as f64 * 100.0 / (all_b - all_a) as f64),
        _ => "-".into(),
    }
}

/// A process's resident set (VmRSS) in MiB, from /proc (0 where there is none to read).
pub fn resident_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kib.unwrap_or(0.0) / 1024.0
}

/// A process and all its descendants (a gateway that runs as several processes, as LiteLLM's
/// workers or `npx` over node do, is measured whole).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if let Some(ppid) = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok()) {
            parents.push((child, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// The resident memory of a process and all its descendants, in MiB.
pub fn tree_resident_mib(pid: u32) -> f64 {
    process_tree(pid).into_iter().map(resident_mib).sum()
}

/// `read` of a process plus that of each of its living descendants (None when the process
/// itself is gone).
fn tree_total(pid: u32, read: fn(u32) -> Option<u64>) -> Option<u64> {
    let own = read(pid)?;
    Some(own + process_tree(pid).into_iter().skip(1).filter_map(read).sum::<u64>())
}

/// The CPU time a process and its living descendants have used, in clock ticks of 10 ms.
pub fn tree_cpu_ticks(pid: u32) -> Option<u64> {
    tree_total(pid, cpu_ticks)
}

/// The context switches (voluntary and not) of every thread of a process so far, from /proc
/// (threads that have ended no longer count).
pub fn context_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        total += switches_in(&std::fs::read_to_string(task.path().join("status")).unwrap_or_default());
    }
    Some(total)
}

/// A thread's context switches, from its /proc status.
fn switches_in(status: &str) -> u64 {
    status
        .lines()
        .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// `context_switches` over a process and its living descendants.
pub fn tree_context_switches(pid: u32) -> Option<u64> {
    tree_total(pid, context_switches)
}

/// The `p` quantile (0 to 1) of sorted values, in ms from µs (NaN when there are none).
pub fn pct_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[i] as f64 / 1000.0
}

/// How long since `start`, in µs.
pub fn micros_since(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_tree_is_read_whole_from_proc() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let tree = process_tree(me);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tree[0], me);
        assert!(tree.contains(&child.id()), "a child is in its parent's tree: {tree:?}");
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\nSigQ:\t0/1\n";
        assert_eq!(switches_in(status), 15);
        assert!(tree_context_switches(me).is_some_and(|n| n > 0), "this test's own threads have switched");
        assert!(tree_cpu_ticks(me).is_some() && cpu_ticks(u32::MAX).is_none());
    }
}
