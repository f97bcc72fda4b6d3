//! 3-5. Memory per key, per open stream, and over a soak.

use super::*;

/// Soak growth under this share counts as flat.
pub(crate) const FLAT_PERCENT: f64 = 10.0;

/// Opens `n` streams that the upstream holds after their first event, reads the process's
/// resident memory with all of them open, then lets them finish.
pub(crate) async fn held_streams(client: &reqwest::Client, via: &Via, upstream: &Upstream, n: usize) -> (f64, f64, f64, usize, usize) {
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

pub(crate) async fn streams_section(vias: &[Via], upstream: &Upstream, n: usize) -> anyhow::Result<()> {
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

pub(crate) async fn keys_section(client: &reqwest::Client, ours: &Ours, n: usize) -> anyhow::Result<()> {
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
pub(crate) fn soak_verdict(samples: &[(f64, f64)], warmup_s: f64, window_s: f64) -> Option<(f64, f64, f64, f64, f64)> {
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

pub(crate) async fn soak_section(client: &reqwest::Client, via: &Via, label: &str, seconds: u64, rate: f64) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
