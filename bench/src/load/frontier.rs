//! 2. The open-loop throughput frontier.

use super::*;

pub(crate) const LADDER: [f64; 8] = [250.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0];
pub(crate) const P99_LIMITS_MS: [f64; 3] = [5.0, 10.0, 50.0];
/// A request of the open-loop generator that takes longer than this counts as an error.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

// ---- 2. Open loop ----

/// One open-loop run at one offered rate.
#[derive(Clone, Debug, Default)]
pub(crate) struct Step {
    pub(crate) offered: f64,
    pub(crate) achieved: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) errors: usize,
    pub(crate) requests: usize,
    /// The path's processes' CPU per request served (µs), their work after the rate's window
    /// included; None for the direct path, which has no process of its own.
    pub(crate) cpu_us: Option<f64>,
    /// Its threads' context switches per request served, over the same span: each is a thread
    /// put to sleep or woken, the handoffs between threads that CPU per request pays for.
    pub(crate) switches: Option<f64>,
}

impl Step {
    /// The rate was met: p99 under the limit, no errors, at least 90% of it achieved.
    pub(crate) fn meets(&self, p99_limit_ms: f64) -> bool {
        self.p99 < p99_limit_ms && self.errors == 0 && self.achieved >= 0.9 * self.offered
    }

    /// The path could not keep up.
    pub(crate) fn saturated(&self) -> bool {
        self.achieved < 0.9 * self.offered || self.p99 > 50.0 || self.errors * 100 > self.requests
    }
}

/// Requests `body` at `rate` per second for `window`: each one is started at its scheduled
/// instant by a pacing thread whether or not earlier ones have finished, and its latency is
/// counted from that instant, so a path that falls behind shows it (no coordinated omission).
pub(crate) async fn open_loop(client: &reqwest::Client, via: &Via, body: Bytes, rate: f64, window: Duration) -> Step {
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
    Step {
        offered: rate,
        achieved: latencies.len() as f64 / seconds,
        p50: pct_ms(&latencies, 0.5),
        p99: pct_ms(&latencies, 0.99),
        errors,
        requests: n,
        cpu_us: None,
        switches: None,
    }
}

/// Waits (up to 30 s) until the path's process has gone quiet: under 20% of a core over a
/// quarter second. An overloaded process may go on working after its load has stopped
/// (requests still queued, records to settle); the next rate, or the next path's, should not
/// run beside that. Returns the wait.
pub(crate) async fn settle(via: &Via) -> Duration {
    let started = Instant::now();
    let Some(pid) = via.pid else { return Duration::ZERO };
    while started.elapsed() < Duration::from_secs(30) {
        let Some(a) = tollgate_bench::tree_cpu_ticks(pid) else { break };
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Ticks are 10 ms: at most 5 of them in 250 ms is under 20% of a core.
        if tollgate_bench::tree_cpu_ticks(pid).is_none_or(|b| b.saturating_sub(a) <= 5) {
            break;
        }
    }
    started.elapsed()
}

/// The highest offered rate that met `p99_limit_ms`, and whether it was the ladder's top
/// (then the true frontier may lie above it).
pub(crate) fn frontier(steps: &[Step], p99_limit_ms: f64, top: f64) -> Option<(f64, bool)> {
    steps.iter().filter(|s| s.meets(p99_limit_ms)).map(|s| s.offered).max_by(f64::total_cmp).map(|r| (r, r >= top))
}

pub(crate) fn show_frontier(f: Option<(f64, bool)>) -> String {
    match f {
        None => format!("<{}", LADDER[0]),
        Some((r, true)) => format!(">={r}"),
        Some((r, false)) => format!("{r}"),
    }
}

/// `ours` over `floor`, where both are known; a floor at the ladder's top makes it an upper bound.
pub(crate) fn share(ours: Option<(f64, bool)>, floor: Option<(f64, bool)>) -> String {
    match (ours, floor) {
        (Some((_, true)), _) | (_, None) => "-".into(),
        (None, Some(_)) => "~0".into(),
        (Some((a, false)), Some((b, capped))) => format!("{}{:.2}", if capped { "<=" } else { "" }, a / b),
    }
}

/// CPU µs per request from two readings of a process's clock ticks (10 ms each) around
/// `requests`; None when too few ticks passed to say (under 10: +-10% or worse).
pub(crate) fn cpu_per_request(start: u64, end: u64, requests: f64) -> Option<f64> {
    let ticks = end.checked_sub(start)?;
    (ticks >= 10 && requests >= 1.0).then(|| ticks as f64 * 10_000.0 / requests)
}

/// A gateway's CPU per request over a floor's at each offered rate both kept up with (the
/// same load, so the same batching and the same idle wakeups, where the closed-loop table of
/// `scripts/bench` compares each path at its own throughput).
pub(crate) fn cpu_ratios(name: &str, gateway: &[Step], floor_name: &str, floor: &[Step]) -> String {
    let pairs: Vec<String> = gateway
        .iter()
        .zip(floor)
        .filter(|(g, f)| !g.saturated() && !f.saturated())
        .filter_map(|(g, f)| Some(format!("{:.0}/s {:.1}x", g.offered, g.cpu_us? / f.cpu_us?)))
        .collect();
    if pairs.is_empty() {
        format!("CPU per request, {name} over {floor_name} at the same offered rate: no rate both kept up with and used enough CPU to measure")
    } else {
        format!("CPU per request, {name} over {floor_name} at the same offered rate (both kept up): {}", pairs.join(", "))
    }
}

/// Runs the ladder; returns each path's steps (paths interleaved at each rate, so a noisy
/// moment of the machine falls on all of them alike).
pub(crate) async fn frontier_section(client: &reqwest::Client, vias: &[Via], o: &Options) -> Vec<Vec<Step>> {
    println!();
    println!(
        "2. frontier: open loop, unstreamed; each offered rate for {:.0} s, requests started on schedule whether or not earlier ones finished, latency from the scheduled start; a path stops after two rates in a row it cannot keep up with (achieved < 90%, p99 > 50 ms or errors > 1%) unless --whole-ladder; err: failed, timed out or refused (503 overloaded); steal: the machine's time the hypervisor took during the row",
        o.step.as_secs_f64()
    );
    let mut header = format!("{:>8}", "offered");
    for via in vias {
        header += &format!(" | {:>10} {:>8} {:>8} {:>5} {:>4} {:>4}", format!("{}/s", via.name), "p50", "p99", "err", "cpu", "cs");
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
            if !o.whole_ladder && steps[i].len() >= 2 && steps[i][steps[i].len() - 2..].iter().all(Step::saturated) {
                row += &format!(" | {:>10} {:>8} {:>8} {:>5} {:>4} {:>4}", "-", "", "", "", "", "");
                continue;
            }
            let cpu = via.pid.map(|pid| (pid, tollgate_bench::tree_cpu_ticks(pid), tollgate_bench::tree_context_switches(pid)));
            let mut s = open_loop(client, via, b.clone(), rate, o.step).await;
            peak[i] = peak[i].max(via.rss());
            let waited = settle(via).await;
            if waited > Duration::from_secs(2) {
                notes.push(format!("{} took {:.0} s to go quiet after {rate}/s", via.name, waited.as_secs_f64()));
            }
            // Counted until the process went quiet: records settled after the window are the
            // rate's work too.
            let served = s.requests.saturating_sub(s.errors) as f64;
            if let Some((pid, ticks, switches)) = cpu {
                s.cpu_us = ticks.zip(tollgate_bench::tree_cpu_ticks(pid)).and_then(|(a, b)| cpu_per_request(a, b, served));
                s.switches = switches
                    .zip(tollgate_bench::tree_context_switches(pid))
                    .and_then(|(a, b)| b.checked_sub(a))
                    .filter(|_| served >= 1.0)
                    .map(|n| n as f64 / served);
            }
            let shown = |v: Option<f64>, places: usize| v.map_or("-".into(), |v| format!("{v:.places$}"));
            row += &format!(" | {:>10.0} {:>8} {:>8} {:>5} {:>4} {:>4}", s.achieved, ms(s.p50), ms(s.p99), s.errors, shown(s.cpu_us, 0), shown(s.switches, 1));
            steps[i].push(s);
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
    for (g, gateway) in vias.iter().enumerate().filter(|(_, v)| v.gateway) {
        for floor in ["bare", "durable"] {
            if let Some(f) = vias.iter().position(|v| v.name == floor) {
                println!("  {}", cpu_ratios(&gateway.name, &steps[g], floor, &steps[f]));
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, p99: f64) -> Step {
        Step { offered, achieved: offered, p50: p99 / 2.0, p99, errors: 0, requests: offered as usize, cpu_us: None, switches: None }
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
    fn cpu_is_compared_only_where_both_kept_up_and_enough_ticks_passed() {
        assert_eq!(cpu_per_request(100, 150, 2000.0), Some(250.0), "50 ticks of 10 ms over 2000 requests");
        assert_eq!(cpu_per_request(100, 105, 2000.0), None, "5 ticks are too coarse to say");
        assert_eq!(cpu_per_request(100, 90, 2000.0), None);
        let with = |offered: f64, p99: f64, cpu: Option<f64>| Step { cpu_us: cpu, ..step(offered, p99) };
        let gateway = [with(500.0, 1.0, Some(300.0)), with(1000.0, 2.0, Some(250.0)), with(2000.0, 80.0, Some(200.0))];
        let floor = [with(500.0, 0.5, Some(100.0)), with(1000.0, 0.5, None), with(2000.0, 0.5, Some(50.0))];
        assert_eq!(cpu_ratios("gateway", &gateway, "bare", &floor), "CPU per request, gateway over bare at the same offered rate (both kept up): 500/s 3.0x");
        assert!(cpu_ratios("gateway", &gateway[2..], "bare", &floor[2..]).contains("no rate"), "a saturated rate is not compared");
    }
}
