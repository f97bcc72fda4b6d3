//! Measures what the proxy adds: the same OpenAI-shaped upstream (local, instant) called
//! directly, through a bare forwarder (`tollgate-forwarder`: the gateway's own HTTP parts and
//! nothing else, the floor of any proxy built from them), through the same forwarder syncing a
//! one-line record of each request to disk before the answer ends (the floor of any proxy that
//! keeps a durable record, as the gateway does with strict durability) and through a
//! `tollgate` server (a separate process, embedded store, with authentication, limits and usage
//! recording all on), at 1, 16 and 64 concurrent connections, unstreamed and streamed. Prints
//! p50/p99 latency and throughput of each path, the latency the gateway and the durable
//! forwarder add over the direct path, each process's CPU time per request (from /proc, so
//! Linux only) and the share of the machine's time the hypervisor stole meanwhile, which says
//! how far to trust that row on a shared virtual machine.
//!
//!   scripts/bench                      # builds with the perf profile and runs
//!   TOLLGATE_DURABILITY=relaxed scripts/bench   # the same, records synced within 50 ms
//!   tollgate-bench GATEWAY_BINARY [SECONDS_PER_RUN [CONCURRENCY...]]   # default 1 16 64

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_bench::{CpuMeter, Pacing, Upstream, machine_ticks, resident_mib, steal_since, wait_listening};

struct Target {
    url: String,
    key: Option<String>,
}

struct Run {
    latencies_us: Vec<u64>,
    seconds: f64,
    errors: usize,
}

impl Run {
    fn pct(&self, p: f64) -> f64 {
        tollgate_bench::pct_ms(&self.latencies_us, p)
    }
    fn rps(&self) -> f64 {
        self.latencies_us.len() as f64 / self.seconds
    }
}

async fn load(client: &reqwest::Client, target: &Target, body: &Value, concurrency: usize, duration: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, key, body, stop) = (client.clone(), target.url.clone(), target.key.clone(), body.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::new(), 0);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let mut req = client.post(&url).json(&body);
                    if let Some(k) = &key {
                        req = req.bearer_auth(k);
                    }
                    match req.send().await {
                        Ok(r) if r.status().is_success() => match r.bytes().await {
                            Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                            Err(_) => errors += 1,
                        },
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = Run { latencies_us: Vec::new(), seconds: 0.0, errors: 0 };
    for w in workers {
        let (lat, errors) = w.await.unwrap();
        run.latencies_us.extend(lat);
        run.errors += errors;
    }
    run.seconds = started.elapsed().as_secs_f64();
    run.latencies_us.sort_unstable();
    run
}

/// The latency of 200 synced writes of 4 KiB to a file in `dir`, p50 and p99 in ms: appended
/// through the page cache, then `fdatasync`; and as the embedded store's write-ahead log
/// writes (`appender`: into a file written ahead, directly with `O_DSYNC` where the
/// filesystem allows), with whether it could.
fn sync_latency(dir: &std::path::Path) -> std::io::Result<([(f64, f64); 2], bool)> {
    use std::io::Write;
    fn timed(mut write: impl FnMut() -> std::io::Result<()>) -> std::io::Result<(f64, f64)> {
        let mut took: Vec<f64> = (0..200)
            .map(|_| {
                let start = Instant::now();
                write()?;
                Ok(start.elapsed().as_secs_f64() * 1000.0)
            })
            .collect::<std::io::Result<_>>()?;
        took.sort_by(f64::total_cmp);
        Ok((took[took.len() / 2], took[took.len() * 99 / 100]))
    }
    let block = [7u8; 4096];
    let path = dir.join("sync-probe");
    let mut file = std::fs::File::create(&path)?;
    let appended = timed(|| {
        file.write_all(&block)?;
        file.sync_data()
    })?;
    file.sync_all()?;
    let mut log = tollgate_bench::appender::Appender::open(&path, true)?;
    let logged = timed(|| log.append(&block))?;
    std::fs::remove_file(&path)?;
    Ok(([appended, logged], log.direct()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let gateway_bin = args.get(1).cloned().unwrap_or_else(|| "target/perf/tollgate".into());
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut levels: Vec<usize> = args.iter().skip(3).filter_map(|s| s.parse().ok()).collect();
    if levels.is_empty() {
        levels = vec![1, 16, 64];
    }

    // Its answers are written whole: Nagle's algorithm left on, as it always was here.
    let upstream = Upstream::start(Pacing { events: 5, gap: Duration::ZERO }, false).await?;
    let upstream_addr = upstream.addr;

    let data = tempfile::tempdir()?;
    let port = tollgate_bench::free_port()?;
    let gateway = tollgate_bench::spawn_gateway(&gateway_bin, data.path(), port)?;
    let forwarder_port = tollgate_bench::free_port()?;
    let forwarder = tollgate_bench::spawn_forwarder(forwarder_port, &upstream.url(), None)?;
    // Its log on the same disk as the gateway's data (both under the temporary directory).
    let log_dir = tempfile::tempdir()?;
    let durable_port = tollgate_bench::free_port()?;
    let durable_forwarder = tollgate_bench::spawn_forwarder(durable_port, &upstream.url(), Some(log_dir.path()))?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).tcp_nodelay(true).build()?;
    wait_listening(&client, &format!("{base}/api/setup/status")).await;
    wait_listening(&client, &format!("http://127.0.0.1:{forwarder_port}/")).await;
    wait_listening(&client, &format!("http://127.0.0.1:{durable_port}/")).await;
    let idle_rss = resident_mib(gateway.id());
    let admin = tollgate_bench::first_admin(&client, &base).await?;
    tollgate_bench::add_model(&client, &base, &admin, tollgate_bench::INSTANT, upstream_addr).await?;
    // Every limit on, none binding.
    let key = tollgate_bench::create_key(&client, &base, &admin, "bench").await?;

    let direct = Target { url: format!("http://{upstream_addr}/v1/chat/completions"), key: None };
    let bare = Target { url: format!("http://127.0.0.1:{forwarder_port}/v1/chat/completions"), key: None };
    let durable = Target { url: format!("http://127.0.0.1:{durable_port}/v1/chat/completions"), key: None };
    let proxied = Target { url: format!("{base}/v1/chat/completions"), key: Some(key) };
    let durability = std::env::var("TOLLGATE_DURABILITY").unwrap_or_else(|_| "strict".into());
    println!(
        "tollgate-bench: {seconds} s per run; upstream answers at once; gateway {gateway_bin} (embedded store, TOLLGATE_DURABILITY={durability}, auth + limits + usage on)"
    );
    // Strict durability syncs each request's record before answering: the disk's own sync
    // time is the floor under the latency the gateway adds at one connection.
    let ([(sync50, sync99), (log50, log99)], log_direct) = sync_latency(data.path())?;
    println!("  fsync of the data directory's disk (4 KiB appended, then fdatasync, 200 times): p50 {sync50:.3}ms p99 {sync99:.3}ms");
    let how = if log_direct { "O_DIRECT|O_DSYNC" } else { "then fdatasync: the filesystem refuses O_DIRECT" };
    println!("  a synced write as the gateway's log makes it (4 KiB into a file written ahead, {how}): p50 {log50:.3}ms p99 {log99:.3}ms");
    println!(
        "{:>4} {:>8} | {:>8} {:>8} {:>6} | {:>8} {:>8} {:>6} {:>5} | {:>8} {:>8} {:>6} {:>5} | {:>8} {:>8} {:>6} {:>5} | {:>8} {:>8} | {:>8} {:>8} | {:>4} {:>4} {:>4} {:>5}",
        "conc",
        "mode",
        "direct50",
        "direct99",
        "/s",
        "bare50",
        "bare99",
        "/s",
        "ratio",
        "dur50",
        "dur99",
        "/s",
        "ratio",
        "proxy50",
        "proxy99",
        "/s",
        "ratio",
        "added50",
        "added99",
        "floor50",
        "floor99",
        "bare",
        "dur",
        "gw",
        "steal"
    );
    println!(
        "  bare: tollgate-forwarder, the floor of one more hop; dur: the same forwarder syncing a record of each request before its answer ends, the floor of strict durability; ratio: throughput over the direct path's; added: proxy minus direct; floor: dur minus direct; bare, dur, gw: CPU us per request"
    );
    let ms = |v: f64| format!("{v:.3}ms");
    let mut loaded_rss = 0.0f64;
    let mut proxied_requests = 0usize;
    // The files as set up (the log's files are written ahead, 16 MiB of zeros): what requests
    // add is measured from here.
    let disk_before = disk_usage(data.path());
    for streamed in [false, true] {
        let body =
            json!({"model": "bench", "stream": streamed, "max_tokens": 16, "messages": [{"role": "user", "content": "benchmark prompt of a few words"}]});
        for &concurrency in &levels {
            proxied_requests += load(&client, &proxied, &body, concurrency, Duration::from_millis(500)).await.latencies_us.len(); // warm-up
            let _ = load(&client, &bare, &body, concurrency, Duration::from_millis(200)).await;
            let _ = load(&client, &durable, &body, concurrency, Duration::from_millis(200)).await;
            let machine = machine_ticks();
            let d = load(&client, &direct, &body, concurrency, Duration::from_secs(seconds)).await;
            let meter = CpuMeter::start(forwarder.id());
            let b = load(&client, &bare, &body, concurrency, Duration::from_secs(seconds)).await;
            let bare_cpu = meter.per_request(b.latencies_us.len());
            let meter = CpuMeter::start(durable_forwarder.id());
            let f = load(&client, &durable, &body, concurrency, Duration::from_secs(seconds)).await;
            let durable_cpu = meter.per_request(f.latencies_us.len());
            let meter = CpuMeter::start(gateway.id());
            let p = load(&client, &proxied, &body, concurrency, Duration::from_secs(seconds)).await;
            let gateway_cpu = meter.per_request(p.latencies_us.len());
            proxied_requests += p.latencies_us.len();
            loaded_rss = loaded_rss.max(resident_mib(gateway.id()));
            let errors = d.errors + b.errors + f.errors + p.errors;
            println!(
                "{:>4} {:>8} | {:>8} {:>8} {:>6.0} | {:>8} {:>8} {:>6.0} {:>5.2} | {:>8} {:>8} {:>6.0} {:>5.2} | {:>8} {:>8} {:>6.0} {:>5.2} | {:>8} {:>8} | {:>8} {:>8} | {:>4} {:>4} {:>4} {:>5}{}",
                concurrency,
                if streamed { "streamed" } else { "whole" },
                ms(d.pct(0.5)),
                ms(d.pct(0.99)),
                d.rps(),
                ms(b.pct(0.5)),
                ms(b.pct(0.99)),
                b.rps(),
                b.rps() / d.rps(),
                ms(f.pct(0.5)),
                ms(f.pct(0.99)),
                f.rps(),
                f.rps() / d.rps(),
                ms(p.pct(0.5)),
                ms(p.pct(0.99)),
                p.rps(),
                p.rps() / d.rps(),
                ms(p.pct(0.5) - d.pct(0.5)),
                ms(p.pct(0.99) - d.pct(0.99)),
                ms(f.pct(0.5) - d.pct(0.5)),
                ms(f.pct(0.99) - d.pct(0.99)),
                bare_cpu,
                durable_cpu,
                gateway_cpu,
                steal_since(machine),
                if errors > 0 { format!("  errors: direct {} bare {} dur {} proxy {}", d.errors, b.errors, f.errors, p.errors) } else { String::new() }
            );
        }
    }
    // What the gateway holds in memory: started, right after the heaviest run, and a while after
    // the load (what it keeps: caches, pools, the allocator's retained pages).
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "  gateway resident memory: {idle_rss:.1} MiB idle after start, {loaded_rss:.1} MiB at most right after a run, {:.1} MiB 5 s after the last",
        resident_mib(gateway.id())
    );
    // What each request leaves on disk: what the store's files (records, rollups, counters, the
    // log) grew by over every request the gateway served, apparent size and blocks allocated.
    let (apparent, allocated) = disk_usage(data.path());
    let per = |bytes: u64, before: u64| bytes.saturating_sub(before) as f64 / proxied_requests.max(1) as f64;
    println!(
        "  data directory after {proxied_requests} proxied requests: {:.1} MiB apparent, {:.1} MiB allocated; grew by {:.0} and {:.0} bytes per request",
        apparent as f64 / 1048576.0,
        allocated as f64 / 1048576.0,
        per(apparent, disk_before.0),
        per(allocated, disk_before.1)
    );
    Ok(())
}

/// The apparent size and the allocated bytes of every file under `dir`.
fn disk_usage(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (a, b) = disk_usage(&entry.path());
            total = (total.0 + a, total.1 + b);
        } else {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    total
}
