//! 1. Time to first token and the gaps between events, added by each path.

use super::*;

/// The events of one streamed answer, split on blank lines as the bytes come: when each
/// content event arrived, and whether `data: [DONE]` did.
#[derive(Default)]
pub(crate) struct Sse {
    pub(crate) buf: Vec<u8>,
    pub(crate) contents: Vec<Instant>,
    pub(crate) done: bool,
}

impl Sse {
    pub(crate) fn feed(&mut self, bytes: &[u8], at: Instant) {
        self.buf.extend_from_slice(bytes);
        while let Some((end, separator)) = event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end + separator).collect();
            self.event(&event[..end], at);
        }
    }

    pub(crate) fn event(&mut self, event: &[u8], at: Instant) {
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
pub(crate) fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

// ---- 1. Time to first token and gaps ----

#[derive(Default)]
pub(crate) struct Streams {
    pub(crate) ttft_us: Vec<u64>,
    pub(crate) gaps_us: Vec<u64>,
    pub(crate) errors: usize,
}

impl Streams {
    pub(crate) fn add(&mut self, other: Streams) {
        self.ttft_us.extend(other.ttft_us);
        self.gaps_us.extend(other.gaps_us);
        self.errors += other.errors;
    }
}

/// One paced stream: its time to first content event and the gaps between content events
/// (an error when it does not bring all the events and `[DONE]`).
pub(crate) async fn paced_stream(client: &reqwest::Client, via: &Via, events: usize) -> Streams {
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

pub(crate) async fn paced_streams(client: &reqwest::Client, via: &Via, events: usize, concurrency: usize, count: usize, duration: Duration) -> Streams {
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

pub(crate) async fn ttft(client: &reqwest::Client, vias: &[Via], o: &Options) {
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
}
