//! `tollgate-bench-load`: what `tollgate-bench`'s closed-loop table does not show. The same
//! local upstream, bare forwarder and `tollgate serve` gateway (embedded store; auth, limits
//! and usage on), measured five more ways:
//!
//! 1. ttft: time to the first content event and the gap between events of a stream the
//!    upstream paces (N events a fixed gap apart), directly, via the forwarder and via the
//!    gateway, one at a time and concurrently; "added" is via minus direct.
//! 2. frontier: an open-loop generator at fixed offered rates (each request started at its
//!    scheduled instant whether or not earlier ones finished, latency counted from that
//!    instant, so back-pressure cannot hide it); the highest rate whose p99 stays under 5, 10
//!    and 50 ms, and the gateway's as a share of the forwarder's. Resident memory before, at
//!    most under that load, and after.
//! 3. keys: resident memory of a fresh gateway after creating 10,000 API keys and using each
//!    once, per key.
//! 4. streams: resident memory of a fresh gateway and forwarder with 1,000 streams held open,
//!    per stream.
//! 5. soak (only with `--soak SECONDS`): a constant open-loop rate, resident memory every
//!    10 s, and whether it stayed flat.
//!
//! LiteLLM (`litellm` on PATH, or LITELLM_BIN) and Portkey's gateway (PORTKEY_BIN, or
//! `@portkey-ai/gateway` installed for node) are measured beside ours when found, pointed at
//! the same upstream, so every figure is a ratio from one run.
//!
//!   scripts/bench-load                    # builds with the perf profile and runs
//!   tollgate-bench-load GATEWAY_BINARY [--only ttft,frontier,keys,streams] [--soak SECONDS]
//!       [--rate PER_SECOND] [--step SECONDS] [--keys N] [--streams N] [--events N] [--gap-ms MS]

mod frontier;
mod memory;
mod others;
mod ttft;

use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures::StreamExt;
use serde_json::json;
use tollgate_bench::{Child, HELD, INSTANT, PACED, Pacing, Upstream, machine_ticks, micros_since, pct_ms, steal_since, tree_resident_mib, wait_listening};

use frontier::*;
use memory::*;
use others::*;
use ttft::*;

struct Options {
    gateway_bin: String,
    sections: Vec<String>,
    soak: Option<u64>,
    rate: Option<f64>,
    step: Duration,
    keys: usize,
    streams: usize,
    pacing: Pacing,
    ttft_sequential: usize,
    ttft_concurrency: usize,
    /// Every path runs every rate of the frontier's ladder, past its capacity too, to show
    /// whether it levels off or collapses there.
    whole_ladder: bool,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = Options {
            gateway_bin: "target/perf/tollgate".into(),
            sections: ["ttft", "frontier", "keys", "streams"].map(String::from).to_vec(),
            soak: None,
            rate: None,
            step: Duration::from_secs(2),
            keys: 10_000,
            streams: 1_000,
            pacing: Pacing { events: 20, gap: Duration::from_millis(5) },
            ttft_sequential: 30,
            ttft_concurrency: 32,
            whole_ladder: false,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| anyhow::anyhow!("{arg} needs a value"));
            match arg.as_str() {
                "--only" => {
                    o.sections = value()?.split(',').map(|s| s.trim().to_string()).collect();
                }
                "--soak" => o.soak = Some(value()?.parse()?),
                "--rate" => o.rate = Some(value()?.parse()?),
                "--step" => o.step = Duration::from_secs_f64(value()?.parse()?),
                "--keys" => o.keys = value()?.parse()?,
                "--streams" => o.streams = value()?.parse()?,
                "--events" => o.pacing.events = value()?.parse()?,
                "--gap-ms" => o.pacing.gap = Duration::from_millis(value()?.parse()?),
                "--whole-ladder" => o.whole_ladder = true,
                flag if flag.starts_with("--") => anyhow::bail!("unknown option {flag}"),
                bin => o.gateway_bin = bin.to_string(),
            }
        }
        if let Some(unknown) = o.sections.iter().find(|s| !["ttft", "frontier", "streams", "keys", "soak"].contains(&s.as_str())) {
            anyhow::bail!("--only takes ttft, frontier, keys, streams, soak; not {unknown}");
        }
        // `--soak` adds the soak to the sections run (its rate, unless `--rate`, is half the
        // gateway's 10 ms frontier when that runs too); `--only soak` alone soaks 10 minutes.
        if o.soak.is_some() && !o.runs("soak") {
            o.sections.push("soak".into());
        }
        if o.runs("soak") && o.soak.is_none() {
            o.soak = Some(600);
        }
        Ok(o)
    }

    fn runs(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s == section)
    }
}

/// One path to the upstream: its URL, the headers it needs and the process to measure.
#[derive(Clone)]
struct Via {
    name: String,
    url: String,
    headers: Vec<(String, String)>,
    pid: Option<u32>,
    /// A gateway (ours or another), not the direct path or the bare forwarder.
    gateway: bool,
}

impl Via {
    fn post(&self, client: &reqwest::Client, body: Bytes) -> reqwest::RequestBuilder {
        let mut req = client.post(&self.url).header("content-type", "application/json").body(body);
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        req
    }

    fn rss(&self) -> f64 {
        self.pid.map_or(f64::NAN, tree_resident_mib)
    }
}

fn body(model: &str, stream: bool) -> Bytes {
    let mut b = json!({"model": model, "stream": stream, "max_tokens": 16, "messages": [{"role": "user", "content": "benchmark prompt of a few words"}]});
    if stream {
        b["stream_options"] = json!({"include_usage": true});
    }
    Bytes::from(b.to_string())
}

fn ms(v: f64) -> String {
    if v.is_nan() { "-".into() } else { format!("{v:.3}ms") }
}

/// A `tollgate serve` of ours on the embedded store, set up with an admin, the upstream's
/// three models and an API key with every limit on, none binding.
struct Ours {
    _child: Child,
    _data: tempfile::TempDir,
    base: String,
    admin: String,
    idle_rss: f64,
    via: Via,
}

async fn start_ours(bin: &str, upstream: &Upstream, client: &reqwest::Client) -> anyhow::Result<Ours> {
    let data = tempfile::tempdir()?;
    let port = tollgate_bench::free_port()?;
    let child = tollgate_bench::spawn_gateway(bin, data.path(), port)?;
    let base = format!("http://127.0.0.1:{port}");
    wait_listening(client, &format!("{base}/api/setup/status")).await;
    let idle_rss = tree_resident_mib(child.id());
    let admin = tollgate_bench::first_admin(client, &base).await?;
    for model in [INSTANT, PACED, HELD] {
        tollgate_bench::add_model(client, &base, &admin, model, upstream.addr).await?;
    }
    let key = tollgate_bench::create_key(client, &base, &admin, "bench").await?;
    let via = Via {
        name: "gateway".into(),
        url: format!("{base}/v1/chat/completions"),
        headers: vec![("authorization".into(), format!("Bearer {key}"))],
        pid: Some(child.id()),
        gateway: true,
    };
    Ok(Ours { _child: child, _data: data, base, admin, idle_rss, via })
}

/// A `tollgate-forwarder` to the upstream: bare, or with `log_dir` the durable one, which syncs
/// a record of each request there before its answer ends.
struct Bare {
    _child: Child,
    via: Via,
}

async fn start_bare(upstream: &Upstream, client: &reqwest::Client, log_dir: Option<&std::path::Path>) -> anyhow::Result<Bare> {
    let port = tollgate_bench::free_port()?;
    let child = tollgate_bench::spawn_forwarder(port, &upstream.url(), log_dir)?;
    wait_listening(client, &format!("http://127.0.0.1:{port}/")).await;
    let name = if log_dir.is_some() { "durable" } else { "bare" };
    let via = Via { name: name.into(), url: format!("http://127.0.0.1:{port}/v1/chat/completions"), headers: vec![], pid: Some(child.id()), gateway: false };
    Ok(Bare { _child: child, via })
}

/// Where the other gateways start in the paths: after direct, bare, durable and ours.
const OTHERS: usize = 4;

/// Lets this process (and the gateway, which inherits it) hold as many sockets as allowed.
fn raise_open_files() -> libc::rlim_t {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    limit.rlim_cur
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = Options::parse(&args)?;
    let open_files = raise_open_files();

    let upstream = Upstream::start(o.pacing, true).await?;
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let data = tempfile::tempdir()?;
    let gateway = start_ours(&o.gateway_bin, &upstream, &client).await?;
    let bare = start_bare(&upstream, &client, None).await?;
    let durable = start_bare(&upstream, &client, Some(data.path())).await?;
    let mut vias = vec![
        Via { name: "direct".into(), url: upstream.url(), headers: vec![], pid: None, gateway: false },
        bare.via.clone(),
        durable.via.clone(),
        gateway.via.clone(),
    ];
    let mut others = Vec::new();
    let mut absent = Vec::new();
    for (name, started) in [
        ("LiteLLM (litellm on PATH or LITELLM_BIN)", start_litellm(data.path(), tollgate_bench::free_port()?, &upstream)),
        ("Portkey's gateway (PORTKEY_BIN or @portkey-ai/gateway for node)", start_portkey(tollgate_bench::free_port()?, &upstream)),
    ] {
        match started {
            Ok(Some((child, via))) => {
                let up = wait_up(&client, &via.url.replace("/v1/chat/completions", "/"), Duration::from_secs(60)).await;
                let works = up && via.post(&client, body(INSTANT, false)).send().await.is_ok_and(|r| r.status().is_success());
                if works {
                    vias.push(via);
                    others.push(child);
                } else {
                    absent.push(format!("{name}: found but it did not answer"));
                }
            }
            Ok(None) => absent.push(format!("{name}: not found")),
            Err(e) => absent.push(format!("{name}: cannot start: {e}")),
        }
    }

    let durability = std::env::var("TOLLGATE_DURABILITY").unwrap_or_else(|_| "strict".into());
    println!(
        "tollgate-bench-load: gateway {} ({:.1} MiB resident idle after start; embedded store, TOLLGATE_DURABILITY={durability}, auth + limits + usage on); paths: direct (the upstream itself), bare (tollgate-forwarder, the floor of any proxy made of the gateway's HTTP parts), durable (the same forwarder syncing a record of each request before its answer ends), gateway{}; open files allowed: {open_files}",
        o.gateway_bin,
        gateway.idle_rss,
        vias[OTHERS..].iter().map(|v| format!(", {}", v.name)).collect::<String>()
    );
    println!(
        "  sections: {} (1 ttft: added time to first token and between events; 2 frontier: open-loop rate at p99 < 5/10/50 ms, memory before/under/after; 3 keys: memory per key; 4 streams: memory per open stream; 5 soak: memory over time)",
        o.sections.join(",")
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "  machine: {} cores, load average {} at start (the client, upstream, forwarder and gateways share them)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    for line in &absent {
        println!("  other gateways: {line}, skipped");
    }

    if o.runs("ttft") {
        ttft(&client, &vias, &o).await;
    }
    let mut gateway_frontier = None;
    if o.runs("frontier") {
        let steps = frontier_section(&client, &vias, &o).await;
        // Below the ladder's lowest rate: half of that.
        gateway_frontier = Some(frontier(&steps[OTHERS - 1], 10.0, LADDER[LADDER.len() - 1]).map_or(LADDER[0], |(r, _)| r));
    }
    // The memory figures each on a fresh gateway (and forwarder): one that has just been
    // overloaded, or taken 10,000 keys, holds more for a while, and that would blur them.
    if o.runs("keys") {
        let fresh = start_ours(&o.gateway_bin, &upstream, &client).await?;
        keys_section(&client, &fresh, o.keys).await?;
    }
    if o.runs("streams") {
        let (fresh, fresh_bare) = (start_ours(&o.gateway_bin, &upstream, &client).await?, start_bare(&upstream, &client, None).await?);
        let paths: Vec<Via> = [fresh_bare.via.clone(), fresh.via.clone()].into_iter().chain(vias[OTHERS..].iter().cloned()).collect();
        streams_section(&paths, &upstream, o.streams).await?;
    }
    if let Some(seconds) = o.soak {
        let rate = o.rate.or(gateway_frontier.map(|r| r / 2.0)).unwrap_or(500.0);
        let fresh = start_ours(&o.gateway_bin, &upstream, &client).await?;
        soak_section(&client, &fresh.via, "a fresh gateway", seconds, rate).await;
        for via in &vias[OTHERS..] {
            soak_section(&client, via, &via.name, seconds, rate).await;
        }
    }
    drop(others);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_select_sections() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = Options::parse(&args("bin --only keys,streams --keys 10")).unwrap();
        assert!(o.runs("keys") && o.runs("streams") && !o.runs("ttft") && !o.runs("soak"));
        assert_eq!((o.gateway_bin.as_str(), o.keys), ("bin", 10));
        let o = Options::parse(&args("bin --soak 60")).unwrap();
        assert!(o.runs("ttft") && o.runs("frontier") && o.runs("soak"), "--soak adds the soak to the default run");
        let o = Options::parse(&args("bin --only frontier --soak 60")).unwrap();
        assert!(o.runs("frontier") && o.runs("soak") && !o.runs("keys"));
        assert_eq!(Options::parse(&args("bin --only soak")).unwrap().soak, Some(600));
        assert!(Options::parse(&args("bin --only speed")).is_err());
    }
}
