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

use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures::StreamExt;
use serde_json::json;
use tollgate_bench::{Child, HELD, INSTANT, PACED, Pacing, Upstream, machine_ticks, micros_since, pct_ms, steal_since, tree_resident_mib, wait_listening};

const LADDER: [f64; 8] = [250.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0];
const P99_LIMITS_MS: [f64; 3] = [5.0, 10.0, 50.0];
/// A request of the open-loop generator that takes longer than this counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Soak growth under this share counts as flat.
const FLAT_PERCENT: f64 = 10.0;

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

// ---- Server-sent events, parsed as they arrive ----

/// The events of one streamed answer, split on blank lines as the bytes come: when each
/// content event arrived, and whether `data: [DONE]` did.
#[derive(Default)]
struct Sse {
    buf: Vec<u8>,
    contents: Vec<Instant>,
    done: bool,
}

impl Sse {
    fn feed(&mut self, bytes: &[u8], at: Instant) {
        self.buf.extend_from_slice(bytes);
        while let Some((end, separator)) = event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end + separator).collect();
            self.event(&event[..end], at);
        }
    }

    fn event(&mut self, event: &[u8], at: Instant) {
        for line in String::from_utf8_lossy(event).lines() {
            let Some(data) = line.strip_prefix("data:") else { continue };
            let data = data.trim();
            if data == "[DONE]" {
                self.done = true;
            } else if let Ok(chunk) = serde_json::from_str::<serde_json::Value>(data)
                && chunk["choices"][0]["delta"]["content"].as_str().is_some_and(|c| !c.is_empty())
            {
                self.contents.push(at);
            }
        }
    }
}

/// Where the first event in `buf` ends, and the length of the blank line after it.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

// ---- 1. Time to first token and gaps ----

#[derive(Default)]
struct Streams {
    ttft_us: Vec<u64>,
    gaps_us: Vec<u64>,
    errors: usize,
}

impl Streams {
    fn add(&mut self, other: Streams) {
        self.ttft_us.extend(other.ttft_us);
        self.gaps_us.extend(other.gaps_us);
        self.errors += other.errors;
    }
}

/// One paced stream: its time to first content event and the gaps between content events
/// (an error when it does not bring all the events and `[DONE]`).
async fn paced_stream(client: &reqwest::Client, via: &Via, events: usize) -> Streams {
    let mut out = Streams::default();
    let start = Instant::now();
    let sse = async {
        let resp = via.post(client, body(PACED, true)).send().await.ok()?.error_for_status().ok()?;
        let mut bytes = resp.bytes_stream();
        let mut sse = Sse::default();
        while let Some(chunk) = bytes.next().await {
            sse.feed(&chunk.ok()?, Instant::now());
        }
        Some(sse)
    };
    match sse.await {
        Some(sse) if sse.done && sse.contents.len() == events => {
            out.ttft_us.push((sse.contents[0] - start).as_micros() as u64);
            out.gaps_us.extend(sse.contents.windows(2).map(|w| (w[1] - w[0]).as_micros() as u64));
        }
        _ => out.errors += 1,
    }
    out
}

async fn paced_streams(client: &reqwest::Client, via: &Via, events: usize, concurrency: usize, count: usize, duration: Duration) -> Streams {
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, via) = (client.clone(), via.clone());
            tokio::spawn(async move {
                let mut all = Streams::default();
                let mut n = 0;
                // One at a time: `count` streams; concurrently: until the deadline.
                while (concurrency == 1 && n < count) || (concurrency > 1 && Instant::now() < deadline) {
                    all.add(paced_stream(&client, &via, events).await);
                    n += 1;
                }
                all
            })
        })
        .collect();
    let mut all = Streams::default();
    for w in workers {
        all.add(w.await.unwrap_or_default());
    }
    all.ttft_us.sort_unstable();
    all.gaps_us.sort_unstable();
    all
}

async fn ttft(client: &reqwest::Client, vias: &[Via], o: &Options) {
    let Pacing { events, gap } = o.pacing;
    println!();
    println!(
        "1. ttft and gaps: the upstream streams {events} content events {} ms apart, then usage and [DONE]; ttft: request sent to the first content event; gap: between consecutive content events as read; added: minus direct",
        gap.as_millis()
    );
    println!(
        "{:>10} {:>4} {:>7} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>6}",
        "path", "conc", "streams", "ttft50", "ttft99", "gap50", "gap99", "+ttft50", "+ttft99", "+gap50", "+gap99", "errors"
    );
    for concurrency in [1, o.ttft_concurrency] {
        let mut direct: Option<[f64; 4]> = None;
        for via in vias {
            let _ = paced_streams(client, via, events, 1, 2, Duration::ZERO).await; // warm-up: a connection, caches
            let s = paced_streams(client, via, events, concurrency, o.ttft_sequential, Duration::from_secs(2)).await;
            let v = [pct_ms(&s.ttft_us, 0.5), pct_ms(&s.ttft_us, 0.99), pct_ms(&s.gaps_us, 0.5), pct_ms(&s.gaps_us, 0.99)];
            let d = *direct.get_or_insert(v);
            let added = |i: usize| if via.pid.is_none() { "-".to_string() } else { ms(v[i] - d[i]) };
            println!(
                "{:>10} {:>4} {:>7} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>6}",
                via.name,
                concurrency,
                s.ttft_us.len(),
                ms(v[0]),
                ms(v[1]),
                ms(v[2]),
                ms(v[3]),
                added(0),
                added(1),
                added(2),
                added(3),
                s.errors
            );
        }
    }
}

fn ms(v: f64) -> String {
    if v.is_nan() { "-".into() } else { format!("{v:.3}ms") }
}

// ---- 2. Open loop ----

/// One open-loop run at one offered rate.
#[derive(Clone, Debug, Default)]
struct Step {
    offered: f64,
    achieved: f64,
    p50: f64,
    p99: f64,
    errors: usize,
    requests: usize,
}

impl Step {
    /// The rate was met: p99 under the limit, no errors, at least 90% of it achieved.
    fn meets(&self, p99_limit_ms: f64) -> bool {
        self.p99 < p99_limit_ms && self.errors == 0 && self.achieved >= 0.9 * self.offered
    }

    /// The path could not keep up.
    fn saturated(&self) -> bool {
        self.achieved < 0.9 * self.offered || self.p99 > 50.0 || self.errors * 100 > self.requests
    }
}

/// Requests `body` at `rate` per second for `window`: each one is started at its scheduled
/// instant by a pacing thread whether or not earlier ones have finished, and its latency is
/// counted from that instant, so a path that falls behind shows it (no coordinated omission).
async fn open_loop(client: &reqwest::Client, via: &Via, body: Bytes, rate: f64, window: Duration) -> Step {
    let n = (rate * window.as_secs_f64()).round() as usize;
    let runtime = tokio::runtime::Handle::current();
    let start = Instant::now() + Duration::from_millis(5);
    let (client, via) = (client.clone(), via.clone());
    let pacer = tokio::task::spawn_blocking(move || {
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let at = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            let req = via.post(&client, body.clone()).timeout(REQUEST_TIMEOUT);
            tasks.push(runtime.spawn(async move {
                let ok = match req.send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                (ok, micros_since(at), Instant::now())
            }));
        }
        tasks
    });
    let tasks = pacer.await.unwrap_or_default();
    let (mut latencies, mut errors, mut last) = (Vec::with_capacity(n), 0, start);
    for t in tasks {
        match t.await {
            Ok((true, us, done)) => {
                latencies.push(us);
                last = last.max(done);
            }
            _ => errors += 1,
        }
    }
    latencies.sort_unstable();
    let seconds = (last - start).as_secs_f64().max(window.as_secs_f64());
    Step { offered: rate, achieved: latencies.len() as f64 / seconds, p50: pct_ms(&latencies, 0.5), p99: pct_ms(&latencies, 0.99), errors, requests: n }
}

/// Waits (up to 30 s) until the path's process has gone quiet: under 20% of a core over a
/// quarter second. An overloaded process may go on working after its load has stopped
/// (requests still queued, records to settle); the next rate, or the next path's, should not
/// run beside that. Returns the wait.
async fn settle(via: &Via) -> Duration {
    let started = Instant::now();
    let Some(pid) = via.pid else { return Duration::ZERO };
    while started.elapsed() < Duration::from_secs(30) {
        let Some(a) = tollgate_bench::cpu_ticks(pid) else { break };
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Ticks are 10 ms: at most 5 of them in 250 ms is under 20% of a core.
        if tollgate_bench::cpu_ticks(pid).is_none_or(|b| b - a <= 5) {
            break;
        }
    }
    started.elapsed()
}

/// The highest offered rate that met `p99_limit_ms`, and whether it was the ladder's top
/// (then the true frontier may lie above it).
fn frontier(steps: &[Step], p99_limit_ms: f64, top: f64) -> Option<(f64, bool)> {
    steps.iter().filter(|s| s.meets(p99_limit_ms)).map(|s| s.offered).max_by(f64::total_cmp).map(|r| (r, r >= top))
}

fn show_frontier(f: Option<(f64, bool)>) -> String {
    match f {
        None => format!("<{}", LADDER[0]),
        Some((r, true)) => format!(">={r}"),
        Some((r, false)) => format!("{r}"),
    }
}

/// `ours` over `floor`, where both are known; a floor at the ladder's top makes it an upper bound.
fn share(ours: Option<(f64, bool)>, floor: Option<(f64, bool)>) -> String {
    match (ours, floor) {
        (Some((_, true)), _) | (_, None) => "-".into(),
        (None, Some(_)) => "~0".into(),
        (Some((a, false)), Some((b, capped))) => format!("{}{:.2}", if capped { "<=" } else { "" }, a / b),
    }
}

/// Runs the ladder; returns each path's steps (paths interleaved at each rate, so a noisy
/// moment of the machine falls on all of them alike).
async fn frontier_section(client: &reqwest::Client, vias: &[Via], o: &Options) -> Vec<Vec<Step>> {
    println!();
    println!(
        "2. frontier: open loop, unstreamed; each offered rate for {:.0} s, requests started on schedule whether or not earlier ones finished, latency from the scheduled start; a path stops after two rates in a row it cannot keep up with (achieved < 90%, p99 > 50 ms or errors > 1%); steal: the machine's time the hypervisor took during the row",
        o.step.as_secs_f64()
    );
    let mut header = format!("{:>8}", "offered");
    for via in vias {
        header += &format!(" | {:>10} {:>8} {:>8} {:>5}", format!("{}/s", via.name), "p50", "p99", "err");
    }
    println!("{header} | {:>5}", "steal");
    let b = body(INSTANT, false);
    for via in vias {
        let _ = open_loop(client, via, b.clone(), 500.0, Duration::from_millis(500)).await; // warm-up
    }
    let mut steps: Vec<Vec<Step>> = vec![Vec::new(); vias.len()];
    let mut notes = Vec::new();
    // What came before (the ttft section's streams, say) may still keep it busy.
    for via in vias {
        let waited = settle(via).await;
        if waited > Duration::from_secs(2) {
            notes.push(format!("{} took {:.0} s to go quiet before the ladder", via.name, waited.as_secs_f64()));
        }
    }
    let idle: Vec<f64> = vias.iter().map(Via::rss).collect();
    let mut peak = idle.clone();
    for rate in LADDER {
        let mut row = format!("{rate:>8}");
        let machine = machine_ticks();
        for (i, via) in vias.iter().enumerate() {
            if steps[i].len() >= 2 && steps[i][steps[i].len() - 2..].iter().all(Step::saturated) {
                row += &format!(" | {:>10} {:>8} {:>8} {:>5}", "-", "", "", "");
                continue;
            }
            let s = open_loop(client, via, b.clone(), rate, o.step).await;
            peak[i] = peak[i].max(via.rss());
            row += &format!(" | {:>10.0} {:>8} {:>8} {:>5}", s.achieved, ms(s.p50), ms(s.p99), s.errors);
            steps[i].push(s);
            let waited = settle(via).await;
            if waited > Duration::from_secs(2) {
                notes.push(format!("{} took {:.0} s to go quiet after {rate}/s", via.name, waited.as_secs_f64()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("{row} | {:>5}", steal_since(machine));
    }
    for note in notes {
        println!("  {note}");
    }
    println!("  frontier: the highest offered rate with p99 under the limit, no errors and >= 90% achieved (>=: the ladder's top, the true one may be higher)");
    let bare = vias.iter().position(|v| v.name == "bare");
    for limit in P99_LIMITS_MS {
        let mut row = format!("  p99 < {limit:>2} ms:");
        for (i, via) in vias.iter().enumerate() {
            let f = frontier(&steps[i], limit, LADDER[LADDER.len() - 1]);
            row += &format!("  {} {}", via.name, show_frontier(f));
            if via.gateway
                && let Some(b) = bare
            {
                row += &format!(" ({} of bare)", share(f, frontier(&steps[b], limit, LADDER[LADDER.len() - 1])));
            }
        }
        println!("{row}");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (i, via) in vias.iter().enumerate().filter(|(_, v)| v.pid.is_some()) {
        println!(
            "  {} resident memory: {:.1} MiB before the ladder, {:.1} MiB at most right after a rate, {:.1} MiB 5 s after the last",
            via.name,
            idle[i],
            peak[i],
            via.rss()
        );
    }
    steps
}

// ---- 4. Held streams ----

/// Opens `n` streams that the upstream holds after their first event, reads the process's
/// resident memory with all of them open, then lets them finish.
async fn held_streams(client: &reqwest::Client, via: &Via, upstream: &Upstream, n: usize) -> (f64, f64, f64, usize, usize) {
    let before = via.rss();
    let (first_tx, mut first_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (client, via, first_tx) = (client.clone(), via.clone(), first_tx.clone());
        tasks.push(tokio::spawn(async move {
            let resp = via.post(&client, body(HELD, true)).send().await.ok()?.error_for_status().ok()?;
            let mut bytes = resp.bytes_stream();
            let mut sse = Sse::default();
            let mut told = false;
            while let Some(chunk) = bytes.next().await {
                sse.feed(&chunk.ok()?, Instant::now());
                if !told && !sse.contents.is_empty() {
                    let _ = first_tx.send(());
                    told = true;
                }
            }
            (sse.done && sse.contents.len() == 2).then_some(())
        }));
        // Opened in batches, so the listeners' accept queues do not overflow.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(first_tx);
    let mut open = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while open < n {
        match tokio::time::timeout_at(deadline, first_rx.recv()).await {
            Ok(Some(())) => open += 1,
            _ => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with = via.rss();
    upstream.release_held();
    let mut errors = 0;
    for t in tasks {
        if !matches!(t.await, Ok(Some(()))) {
            errors += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    (before, with, via.rss(), open, errors)
}

async fn streams_section(vias: &[Via], upstream: &Upstream, n: usize) -> anyhow::Result<()> {
    println!();
    println!(
        "4. streams: resident memory (a fresh gateway and forwarder) with {n} streamed requests open at once (each on its own connection; the upstream sends one event, then holds each until all have it), per stream"
    );
    for via in vias.iter().filter(|v| v.pid.is_some()) {
        // A client of its own: each stream on a new connection, as separate clients' would be.
        let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
        let (before, with, after, open, errors) = held_streams(&client, via, upstream, n).await;
        println!(
            "{:>10}: {:.1} MiB before, {:.1} MiB with {open} open, {:.1} MiB after they finished: {:.1} MiB, {:.1} KiB per open stream{}",
            via.name,
            before,
            with,
            after,
            with - before,
            (with - before) * 1024.0 / open.max(1) as f64,
            if errors > 0 { format!("  errors: {errors}") } else { String::new() }
        );
    }
    Ok(())
}

// ---- 3. Keys ----

async fn keys_section(client: &reqwest::Client, ours: &Ours, n: usize) -> anyhow::Result<()> {
    let (gateway, base, admin) = (&ours.via, ours.base.as_str(), ours.admin.as_str());
    println!();
    println!(
        "3. keys: a fresh gateway's resident memory before and after creating {n} API keys through the admin API (16 at a time) and sending one request with each, so each is in its key cache (TOLLGATE_KEY_CACHE_SECS, default 10 s, up to 100,000 keys; expired ones are dropped only when it is full)"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = gateway.rss();
    let started = Instant::now();
    let keys: Vec<String> = futures::stream::iter(0..n)
        .map(|i| async move { tollgate_bench::create_key(client, base, admin, &format!("bench-{i}")).await })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let created_in = started.elapsed().as_secs_f64();
    let created = gateway.rss();
    let started = Instant::now();
    let failed = futures::stream::iter(keys.iter())
        .map(|key| async move {
            let mut via = gateway.clone();
            via.headers = vec![("authorization".into(), format!("Bearer {key}"))];
            match via.post(client, body(INSTANT, false)).send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_err(),
                _ => true,
            }
        })
        .buffer_unordered(16)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    let used_in = started.elapsed().as_secs_f64();
    let used = gateway.rss();
    println!(
        "  {n} keys created in {created_in:.1} s ({:.0}/s), one request with each in {used_in:.1} s{}",
        n as f64 / created_in,
        if failed > 0 { format!(" ({failed} failed)") } else { String::new() }
    );
    println!(
        "  gateway: {before:.1} MiB before, {created:.1} MiB after creating them, {used:.1} MiB right after using each: {:.1} MiB, {:.2} KiB per key in all ({:.2} KiB created, {:.2} KiB more used)",
        used - before,
        (used - before) * 1024.0 / n as f64,
        (created - before) * 1024.0 / n as f64,
        (used - created) * 1024.0 / n as f64
    );
    Ok(())
}

// ---- 5. Soak ----

/// Resident memory over a soak: the mean of the first window after warm-up and of the last
/// window, the growth between them (MiB and %), and the least-squares slope in MiB per
/// minute over all samples after warm-up. `samples` are (seconds since start, MiB).
fn soak_verdict(samples: &[(f64, f64)], warmup_s: f64, window_s: f64) -> Option<(f64, f64, f64, f64, f64)> {
    let after: Vec<(f64, f64)> = samples.iter().copied().filter(|(t, _)| *t > warmup_s).collect();
    let end = after.last()?.0;
    let mean = |xs: Vec<f64>| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
    let first = mean(after.iter().filter(|(t, _)| *t <= warmup_s + window_s).map(|s| s.1).collect())?;
    let last = mean(after.iter().filter(|(t, _)| *t > end - window_s).map(|s| s.1).collect())?;
    let (n, tm, mm) =
        (after.len() as f64, after.iter().map(|s| s.0).sum::<f64>() / after.len() as f64, after.iter().map(|s| s.1).sum::<f64>() / after.len() as f64);
    let (cov, var) = after.iter().fold((0.0, 0.0), |(c, v), (t, m)| (c + (t - tm) * (m - mm), v + (t - tm) * (t - tm)));
    let slope = if n > 1.0 && var > 0.0 { cov / var * 60.0 } else { 0.0 };
    Some((first, last, last - first, (last - first) * 100.0 / first, slope))
}

async fn soak_section(client: &reqwest::Client, via: &Via, label: &str, seconds: u64, rate: f64) {
    let sample = 10u64;
    let warmup = if seconds >= 300 { 60.0 } else { seconds as f64 / 5.0 };
    let window = 60f64.min((seconds as f64 - warmup) / 2.0);
    println!();
    println!(
        "5. soak through {label}: {rate:.0} requests/s offered (open loop, unstreamed) for {seconds} s, resident memory every {sample} s; flat: the last {window:.0} s within {FLAT_PERCENT}% of the first {window:.0} s after {warmup:.0} s of warm-up"
    );
    let started = Instant::now();
    let mut samples = Vec::new();
    let b = body(INSTANT, false);
    while started.elapsed().as_secs() + sample <= seconds {
        let s = open_loop(client, via, b.clone(), rate, Duration::from_secs(sample)).await;
        // Each window's nominal end (each runs a little over, draining), so the windows of the
        // verdict hold the samples meant, not the one at 60.5 s in "after 60 s".
        let t = ((samples.len() + 1) as u64 * sample) as f64;
        let rss = via.rss();
        samples.push((t, rss));
        println!("  {t:>5.0} s {rss:>7.1} MiB   achieved {:>6.0}/s p50 {} p99 {} errors {}", s.achieved, ms(s.p50), ms(s.p99), s.errors);
    }
    match soak_verdict(&samples, warmup, window) {
        Some((first, last, growth, percent, slope)) => println!(
            "  {}: {first:.1} MiB in the first window after warm-up, {last:.1} MiB in the last: {growth:+.1} MiB ({percent:+.1}%), slope {slope:+.3} MiB/min: {}",
            via.name,
            if percent.abs() < FLAT_PERCENT { "flat (under the threshold)" } else { "not flat (over the threshold)" }
        ),
        None => println!("  too short a soak for a verdict"),
    }
}

// ---- Other gateways ----

fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

async fn wait_up(client: &reqwest::Client, url: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if client.get(url).send().await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// LiteLLM's proxy, configured with the three models on our upstream.
fn start_litellm(dir: &std::path::Path, port: u16, upstream: &Upstream) -> anyhow::Result<Option<(Child, Via)>> {
    let bin = match std::env::var_os("LITELLM_BIN") {
        Some(b) => std::path::PathBuf::from(b),
        None => match on_path("litellm") {
            Some(b) => b,
            None => return Ok(None),
        },
    };
    let mut config = String::from("model_list:\n");
    for model in [INSTANT, PACED, HELD] {
        config += &format!(
            "  - model_name: {model}\n    litellm_params:\n      model: openai/{model}\n      api_base: http://{}/v1\n      api_key: sk-bench\n",
            upstream.addr
        );
    }
    let path = dir.join("litellm.yaml");
    std::fs::write(&path, config)?;
    let child = Child(
        std::process::Command::new(&bin)
            .args(["--config", &path.to_string_lossy(), "--host", "127.0.0.1", "--port", &port.to_string(), "--num_workers", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let via = Via {
        name: "litellm".into(),
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        headers: vec![("authorization".into(), "Bearer sk-bench".into())],
        pid: Some(child.id()),
        gateway: true,
    };
    Ok(Some((child, via)))
}

/// Portkey's open-source gateway (node), sent to our upstream by its custom-host headers.
fn start_portkey(port: u16, upstream: &Upstream) -> anyhow::Result<Option<(Child, Via)>> {
    let args = [format!("--port={port}"), "--headless".into()];
    let mut command = if let Some(bin) = std::env::var_os("PORTKEY_BIN") {
        std::process::Command::new(bin)
    } else {
        // Installed for node, here or globally (`npm i -g @portkey-ai/gateway`); never fetched.
        let global = std::process::Command::new("npm").args(["root", "-g"]).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let script = [Some("node_modules".to_string()), global]
            .into_iter()
            .flatten()
            .map(|root| std::path::Path::new(&root).join("@portkey-ai/gateway/build/start-server.js"))
            .find(|p| p.is_file());
        match (script, on_path("node")) {
            (Some(script), Some(node)) => {
                let mut c = std::process::Command::new(node);
                c.arg(script);
                c
            }
            _ => return Ok(None),
        }
    };
    let child = Child(command.args(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn()?);
    let via = Via {
        name: "portkey".into(),
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        headers: vec![
            ("authorization".into(), "Bearer sk-bench".into()),
            ("x-portkey-provider".into(), "openai".into()),
            ("x-portkey-custom-host".into(), format!("http://{}/v1", upstream.addr)),
        ],
        pid: Some(child.id()),
        gateway: true,
    };
    Ok(Some((child, via)))
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

/// A `tollgate-forwarder` to the upstream.
struct Bare {
    _child: Child,
    via: Via,
}

async fn start_bare(upstream: &Upstream, client: &reqwest::Client) -> anyhow::Result<Bare> {
    let port = tollgate_bench::free_port()?;
    let child = tollgate_bench::spawn_forwarder(port, &upstream.url())?;
    wait_listening(client, &format!("http://127.0.0.1:{port}/")).await;
    let via = Via { name: "bare".into(), url: format!("http://127.0.0.1:{port}/v1/chat/completions"), headers: vec![], pid: Some(child.id()), gateway: false };
    Ok(Bare { _child: child, via })
}

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
    let bare = start_bare(&upstream, &client).await?;
    let mut vias = vec![Via { name: "direct".into(), url: upstream.url(), headers: vec![], pid: None, gateway: false }, bare.via.clone(), gateway.via.clone()];
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
        "tollgate-bench-load: gateway {} ({:.1} MiB resident idle after start; embedded store, TOLLGATE_DURABILITY={durability}, auth + limits + usage on); paths: direct (the upstream itself), bare (tollgate-forwarder, the floor of any proxy made of the gateway's HTTP parts), gateway{}; open files allowed: {open_files}",
        o.gateway_bin,
        gateway.idle_rss,
        vias[3..].iter().map(|v| format!(", {}", v.name)).collect::<String>()
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
        gateway_frontier = Some(frontier(&steps[2], 10.0, LADDER[LADDER.len() - 1]).map_or(LADDER[0], |(r, _)| r));
    }
    // The memory figures each on a fresh gateway (and forwarder): one that has just been
    // overloaded, or taken 10,000 keys, holds more for a while, and that would blur them.
    if o.runs("keys") {
        let fresh = start_ours(&o.gateway_bin, &upstream, &client).await?;
        keys_section(&client, &fresh, o.keys).await?;
    }
    if o.runs("streams") {
        let (fresh, fresh_bare) = (start_ours(&o.gateway_bin, &upstream, &client).await?, start_bare(&upstream, &client).await?);
        let paths: Vec<Via> = [fresh_bare.via.clone(), fresh.via.clone()].into_iter().chain(vias[3..].iter().cloned()).collect();
        streams_section(&paths, &upstream, o.streams).await?;
    }
    if let Some(seconds) = o.soak {
        let rate = o.rate.or(gateway_frontier.map(|r| r / 2.0)).unwrap_or(500.0);
        let fresh = start_ours(&o.gateway_bin, &upstream, &client).await?;
        soak_section(&client, &fresh.via, "a fresh gateway", seconds, rate).await;
        for via in &vias[3..] {
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
    fn events_are_split_on_blank_lines_as_bytes_arrive() {
        let t = Instant::now();
        let mut sse = Sse::default();
        let content = |w: &str| format!("data: {}\n\n", json!({"choices": [{"delta": {"content": w}}]}));
        let all = content("a") + &content("b") + "data: {\"choices\":[],\"usage\":{}}\r\n\r\n" + &content("") + "data: [DONE]\n\n";
        // Fed in pieces that split events and separators.
        for piece in all.as_bytes().chunks(7) {
            sse.feed(piece, t);
        }
        assert_eq!(sse.contents.len(), 2, "the usage chunk and the empty delta are no content");
        assert!(sse.done);
        assert!(sse.buf.is_empty());
    }

    fn step(offered: f64, p99: f64) -> Step {
        Step { offered, achieved: offered, p50: p99 / 2.0, p99, errors: 0, requests: offered as usize }
    }

    #[test]
    fn the_frontier_is_the_highest_rate_that_met_the_limit() {
        let steps = [step(250.0, 1.0), step(500.0, 6.0), step(1000.0, 4.0), step(2000.0, 80.0)];
        assert_eq!(frontier(&steps, 5.0, 8000.0), Some((1000.0, false)));
        assert_eq!(frontier(&steps, 0.5, 8000.0), None);
        assert_eq!(frontier(&steps, 5.0, 1000.0), Some((1000.0, true)), "the ladder's top: a lower bound");
        let mut behind = step(500.0, 1.0);
        behind.achieved = 400.0;
        assert!(!behind.meets(5.0) && behind.saturated(), "a rate not achieved is not met");
        let mut failing = step(500.0, 1.0);
        failing.errors = 1;
        assert!(!failing.meets(5.0));
        assert_eq!(share(Some((1000.0, false)), Some((4000.0, false))), "0.25");
        assert_eq!(share(Some((1000.0, false)), Some((8000.0, true))), "<=0.12");
    }

    #[test]
    fn a_soak_is_judged_on_its_windows_after_warm_up() {
        // Flat at 100 MiB after a warm-up at 50: no growth, no slope.
        let flat: Vec<(f64, f64)> = (1..=60).map(|i| (i as f64 * 10.0, if i <= 6 { 50.0 } else { 100.0 })).collect();
        let (first, last, growth, percent, slope) = soak_verdict(&flat, 60.0, 60.0).unwrap();
        assert_eq!((first, last, growth, percent), (100.0, 100.0, 0.0, 0.0));
        assert!(slope.abs() < 1e-9);
        // Growing 1 MiB a minute.
        let growing: Vec<(f64, f64)> = (1..=60).map(|i| (i as f64 * 10.0, 100.0 + i as f64 / 6.0)).collect();
        let (_, _, growth, _, slope) = soak_verdict(&growing, 60.0, 60.0).unwrap();
        assert!((slope - 1.0).abs() < 1e-9);
        assert!((growth - 8.0).abs() < 1e-9, "8 minutes between the windows' middles: {growth}");
        assert!(soak_verdict(&flat, 600.0, 60.0).is_none(), "nothing after warm-up");
    }

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
