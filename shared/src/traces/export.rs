//! Spans leave the process off the request path: ended spans wait in a bounded queue that a
//! background task sends to the collector in batches, over our own HTTP client (the one for
//! what the operator configures). What does not fit, or what the collector refuses, is
//! dropped and counted.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpError, Request, Response};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use tokio::sync::mpsc;

use crate::egress::HttpClient;
use crate::metrics::Metrics;

/// How the queue is sized and drained (the batch span processor's standard variables).
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// `OTEL_BSP_MAX_QUEUE_SIZE`, default 2048: spans waiting at most.
    pub queue: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, default 512.
    pub batch: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY` (ms), default 1000: the longest a span waits for its batch.
    pub delay: Duration,
}

impl Batching {
    pub fn from_env() -> Self {
        let number = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok()).filter(|n| *n > 0).unwrap_or(default);
        Batching {
            queue: number("OTEL_BSP_MAX_QUEUE_SIZE", 2048) as usize,
            batch: number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512) as usize,
            delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 1000)),
        }
    }
}

/// The span processor: `on_end` only puts the span in the queue (never waits).
pub struct Queued {
    spans: mpsc::Sender<SpanData>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued").field("capacity", &self.spans.max_capacity()).finish()
    }
}

impl SpanProcessor for Queued {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if self.spans.try_send(span).is_err() {
            self.metrics.spans_dropped(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Starts the sender; returns the processor that feeds it.
pub fn start(exporter: impl SpanExporter + 'static, batching: Batching, metrics: Arc<Metrics>) -> Queued {
    let (spans, mut waiting) = mpsc::channel::<SpanData>(batching.queue.max(1));
    let counted = metrics.clone();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(batching.batch);
        while let Some(first) = waiting.recv().await {
            batch.push(first);
            let due = tokio::time::Instant::now() + batching.delay;
            while batch.len() < batching.batch {
                match tokio::time::timeout_at(due, waiting.recv()).await {
                    Ok(Some(span)) => batch.push(span),
                    Ok(None) | Err(_) => break,
                }
            }
            let sent = batch.len();
            if let Err(error) = exporter.export(std::mem::replace(&mut batch, Vec::with_capacity(batching.batch))).await {
                counted.spans_dropped(sent);
                tracing::warn!(%error, spans = sent, "the trace collector did not take a batch of spans; they are dropped");
            }
        }
    });
    Queued { spans, metrics }
}

/// The exporter's HTTP client: ours, so the collector is reached as every other configured
/// endpoint is (no redirects), with no second HTTP stack.
#[derive(Clone)]
pub struct Collector(pub HttpClient);

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Collector")
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Collector {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = self.0.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).timeout(Duration::from_secs(10));
        let response = self.0.send(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        if !status.is_success() {
            return Err(format!("the collector answered {status}").into());
        }
        let mut out = Response::builder().status(status).body(body)?;
        *out.headers_mut() = headers;
        Ok(out)
    }
}
