//! `tollgate-forwarder LISTEN UPSTREAM_URL [LOG_DIR]`: the floor any proxy built from the
//! gateway's own parts stands on. One axum route that sends the request's bytes to the upstream
//! as the gateway's proxy does (a request built with reqwest's builder, sent by hyper's pooled
//! client; the gateway's TLS layer, which passes an http URL straight through, left out) and
//! relays the answer as it comes (streams included), on the same allocator and runtime, with
//! nothing else: no authentication, no limits, no usage record. `tollgate-bench` runs it beside
//! the gateway, so what the gateway costs above this is the price of its work, and what this
//! costs above the direct path is the price of one more HTTP hop on this machine.
//!
//! With LOG_DIR it is the floor of a proxy that keeps a durable record of every request, as
//! the gateway does with strict durability: after the answer's last byte is relayed and
//! before its body ends, a one-line record of the request is appended to a log file and
//! synced (group commit: one thread writes and syncs whatever lines arrived meanwhile, as the
//! gateway's write-ahead log does, on a file written ahead with zeros like its log, and with
//! the log's own appender: directly, each append synced by its write, where the filesystem
//! allows). What the gateway adds above this one is what its accounting costs beyond the
//! disk's own price.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use http_body_util::BodyDataStream;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use tollgate_bench::appender::Appender;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone)]
struct Upstream {
    client: Client<HttpConnector, reqwest::Body>,
    url: reqwest::Url,
    log: Option<Arc<Log>>,
}

async fn forward(State(up): State<Upstream>, body: Bytes) -> Response {
    let sent_bytes = body.len();
    let mut request = reqwest::Request::new(reqwest::Method::POST, up.url.clone());
    request.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    *request.body_mut() = Some(body.into());
    let sent = match hyper::Request::try_from(request) {
        Ok(request) => up.client.request(request).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match sent {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let mut response = Response::builder().status(status);
            if let Some(kind) = answer.headers().get(header::CONTENT_TYPE) {
                response = response.header(header::CONTENT_TYPE, kind);
            }
            let relayed = match up.log {
                None => Body::from_stream(BodyDataStream::new(answer.into_body())),
                Some(log) => Body::from_stream(recorded(BodyDataStream::new(answer.into_body()), log, sent_bytes, status)),
            };
            response.body(relayed).unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
    }
}

/// The answer's chunks as they come, then (before the body ends) the request's record, synced.
fn recorded<E: Send>(
    answer: impl futures::Stream<Item = Result<Bytes, E>> + Send,
    log: Arc<Log>,
    sent_bytes: usize,
    status: u16,
) -> impl futures::Stream<Item = Result<Bytes, E>> + Send {
    let received = Arc::new(AtomicU64::new(0));
    let counted = received.clone();
    let chunks = answer.inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    });
    let record = futures::stream::once(async move {
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let line = format!("{at} {status} {sent_bytes} {}\n", received.load(Ordering::Relaxed));
        log.append(line.as_bytes()).await;
        Ok(Bytes::new())
    });
    chunks.chain(record).filter(|chunk| std::future::ready(!matches!(chunk, Ok(c) if c.is_empty())))
}

/// The lines waiting for the next sync, and how many lines were ever appended.
#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    appended: u64,
}

/// A group-committed log: `append` returns once its line is on disk.
struct Log {
    pending: Mutex<Pending>,
    wake: Condvar,
    synced: tokio::sync::watch::Sender<u64>,
}

/// The log file's size, written ahead with zeros (as the gateway's log is, so a sync writes no
/// file metadata); it is written round and round.
const LOG_BYTES: u64 = 16 << 20;

impl Log {
    fn open(dir: &std::path::Path) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("forwarder.log");
        let file = std::fs::File::create(&path)?;
        let zeros = vec![0u8; 1 << 20];
        for n in 0..LOG_BYTES / zeros.len() as u64 {
            file.write_all_at(&zeros, n * zeros.len() as u64)?;
        }
        file.sync_all()?;
        // Appended to as the gateway's log is: directly, each append synced by its own write.
        let file = Appender::open(&path, true)?;
        if !file.direct() {
            eprintln!("tollgate-forwarder: {} refuses O_DIRECT; the log is written through the page cache", dir.display());
        }
        let log = Arc::new(Self { pending: Mutex::default(), wake: Condvar::new(), synced: tokio::sync::watch::Sender::new(0) });
        let writer = log.clone();
        std::thread::Builder::new().name("forwarder-log".into()).spawn(move || writer.run(file))?;
        Ok(log)
    }

    async fn append(&self, line: &[u8]) {
        let mine = {
            let mut pending = self.pending.lock().unwrap();
            pending.lines.extend_from_slice(line);
            pending.appended += 1;
            pending.appended
        };
        self.wake.notify_one();
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|done| *done >= mine).await;
    }

    /// Writes and syncs whatever lines arrived since the last sync, until the process ends.
    fn run(&self, mut file: Appender) {
        let (mut at, mut batch) = (0u64, Vec::new());
        loop {
            let upto = {
                let mut pending = self.pending.lock().unwrap();
                while pending.lines.is_empty() {
                    pending = self.wake.wait(pending).unwrap();
                }
                std::mem::swap(&mut pending.lines, &mut batch);
                pending.appended
            };
            if at + batch.len() as u64 > LOG_BYTES {
                at = 0;
                file.restart();
            }
            if let Err(e) = file.append(&batch) {
                eprintln!("tollgate-forwarder: the log cannot be written: {e}");
                std::process::exit(1);
            }
            at += batch.len() as u64;
            batch.clear();
            self.synced.send_replace(upto);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(url)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: tollgate-forwarder LISTEN_ADDR UPSTREAM_URL [LOG_DIR]");
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).pool_max_idle_per_host(256).build(connector);
    let log = args.get(3).map(|dir| Log::open(std::path::Path::new(dir))).transpose()?;
    let up = Upstream { client, url: reqwest::Url::parse(url)?, log };
    // As the gateway serves: without Nagle's algorithm on accepted connections.
    let listener = axum::serve::ListenerExt::tap_io(tokio::net::TcpListener::bind(listen).await?, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = axum::Router::new().route("/v1/chat/completions", post(forward)).with_state(up);
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log file's text up to the zeros it was written ahead with.
    fn logged(dir: &std::path::Path) -> String {
        let bytes = std::fs::read(dir.join("forwarder.log")).unwrap();
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        String::from_utf8(bytes[..end].to_vec()).unwrap()
    }

    #[tokio::test]
    async fn appends_return_once_their_lines_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("forwarder.log")).unwrap().len(), LOG_BYTES);
        let lines: Vec<String> = (0..50).map(|n| format!("line {n}\n")).collect();
        futures::future::join_all(lines.iter().map(|line| log.append(line.as_bytes()))).await;
        let text = logged(dir.path());
        let mut seen: Vec<&str> = text.lines().collect();
        seen.sort_unstable();
        let mut wanted: Vec<&str> = lines.iter().map(|l| l.trim_end()).collect();
        wanted.sort_unstable();
        assert_eq!(seen, wanted);
    }

    #[tokio::test]
    async fn the_answer_is_relayed_whole_and_its_record_synced_before_the_body_ends() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        let answer = futures::stream::iter(["data: one\n\n", "data: two\n\n"].map(|c| Ok::<_, std::io::Error>(Bytes::from(c))));
        let chunks: Vec<Bytes> = recorded(answer, log, 42, 200).map(Result::unwrap).collect().await;
        assert_eq!(chunks.concat(), b"data: one\n\ndata: two\n\n");
        assert!(chunks.iter().all(|c| !c.is_empty()), "the record's empty chunk is not relayed");
        let text = logged(dir.path());
        let fields: Vec<&str> = text.trim_end().split(' ').collect();
        assert_eq!(fields[1..], ["200", "42", "22"], "{text}");
    }
}
