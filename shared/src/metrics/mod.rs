//! What the gateway counts and times, for operators: HTTP answers by route, proxied requests
//! by model and provider with their tokens, cost and latency (the gateway's own time apart
//! from the upstream's), refusals by reason and level, reservations held, store round trips,
//! the outbox's backlog and the rollups' lag.
//!
//! Figures go where the process can hand them on: on a long-running server, to a Prometheus
//! recorder of our own that `/metrics` renders (no global recorder, so every test app counts
//! alone); inside Lambda, as CloudWatch Embedded Metric Format lines in the function's log
//! (`emf`). Recording does no I/O, and label values are bounded: model, provider, route
//! template, outcome, project and workspace; never a key or a user unless the operator asks
//! (`TOLLGATE_METRICS_KEY_LABELS`).

pub mod emf;
mod handles;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use handles::{Handles, status_text};

use crate::usage::UsageRecord;

/// Latency buckets, in seconds: from a cache hit's fraction of a millisecond to a long
/// completion's two minutes.
const BUCKETS: [f64; 16] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

static META: Metadata<'static> = Metadata::new("tollgate", metrics::Level::INFO, Some("tollgate::metrics"));

/// Every metric: its name in the exposition, its unit and what it counts. The Grafana dashboard
/// in docs/ names only these (tests check it).
pub const FAMILIES: &[(&str, Unit, &str)] = &[
    ("tollgate_http_requests_total", Unit::Count, "HTTP answers, by route template, method and status"),
    ("tollgate_http_request_duration_seconds", Unit::Seconds, "Time to an HTTP answer's head, by route template and method"),
    ("tollgate_proxy_requests_total", Unit::Count, "Proxied requests, by endpoint, model, provider, outcome and status"),
    (
        "tollgate_proxy_duration_seconds",
        Unit::Seconds,
        "Proxied requests' time, by model and provider; part total, upstream (the attempts) or gateway (the rest)",
    ),
    ("tollgate_proxy_ttft_seconds", Unit::Seconds, "Streamed requests' time to the first token, by model and provider"),
    ("tollgate_proxy_tokens_total", Unit::Count, "Tokens, by model, provider and kind (input, output, cached, cache_write, reasoning)"),
    ("tollgate_proxy_cost_microdollars_total", Unit::Count, "Cost charged, in millionths of a dollar, by model, provider, project and workspace"),
    ("tollgate_proxy_refusals_total", Unit::Count, "Requests refused before the upstream, by reason and level"),
    ("tollgate_proxy_reservations_held", Unit::Count, "Requests holding a reservation against their limits now"),
    ("tollgate_proxy_leases_lapsed_total", Unit::Count, "Reservations of dead requests found lapsed and released by a settlement"),
    ("tollgate_upstream_attempts_total", Unit::Count, "Upstream attempts, by provider and result"),
    ("tollgate_upstream_fallbacks_total", Unit::Count, "Requests that moved on to another model after their first one failed"),
    ("tollgate_upstream_retries_total", Unit::Count, "Attempts made after a failed one, by the failed one's model, provider and reason"),
    ("tollgate_deployment_cooldowns_total", Unit::Count, "Cooldowns begun, by model and deployment"),
    ("tollgate_deployments_cooling", Unit::Count, "Deployments cooling down now, by model"),
    ("tollgate_store_round_trip_seconds", Unit::Seconds, "Round trips to the store, by operation"),
    ("tollgate_outbox_backlog", Unit::Count, "Budget events waiting in the outbox for delivery"),
    ("tollgate_rollup_lag_seconds", Unit::Seconds, "Age of the oldest usage record not yet in its rollups (0 when none waits)"),
    ("tollgate_trace_spans_dropped_total", Unit::Count, "Spans dropped: the export queue was full, or the collector refused their batch"),
];

/// Why a request was refused before it reached an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// A budget (a cost limit) had no room.
    Budget,
    /// A rate or token limit was reached.
    Rate,
    /// The key lacks the scope, or may not use the model.
    Scope,
    /// The request came from an address the key does not allow.
    Address,
    /// The gateway was at capacity (`admission`); its level is `gateway`.
    Overload,
}

impl RefusalReason {
    pub fn name(self) -> &'static str {
        match self {
            RefusalReason::Budget => "budget",
            RefusalReason::Rate => "rate",
            RefusalReason::Scope => "scope",
            RefusalReason::Address => "address",
            RefusalReason::Overload => "overload",
        }
    }
}

/// How metrics leave the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Kept for `/metrics` to render (a long-running server).
    Prometheus,
    /// Written as EMF lines on stdout (inside Lambda, whose log CloudWatch reads).
    Emf,
}

struct Prometheus {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    held: Gauge,
    lapsed: Counter,
    fallbacks: Counter,
    spans_dropped: Counter,
    backlog: Gauge,
    lag: Gauge,
    counters: Handles<Counter>,
    gauges: Handles<Gauge>,
    histograms: Handles<Histogram>,
}

/// The process's metrics.
pub struct Metrics {
    prometheus: Option<Prometheus>,
    emf: bool,
    /// Whether proxied requests' counters carry the key's id (an operator's opt-in: one series
    /// per key).
    key_labels: bool,
}

/// An id as label text, written into `buffer` (no allocation); `none` for no id.
fn id_text(buffer: &mut [u8; 36], id: Option<uuid::Uuid>) -> &str {
    match id {
        Some(id) => id.hyphenated().encode_lower(buffer),
        None => "none",
    }
}

/// A metric's key: its name and labels (built only when a label set is first seen).
fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(name, labels.iter().map(|(k, v)| Label::new(*k, v.to_string())).collect::<Vec<_>>())
}

impl Metrics {
    pub fn new(sink: Sink, key_labels: bool) -> Self {
        let prometheus = (sink == Sink::Prometheus).then(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
                .expect("the buckets are not empty")
                .build_recorder();
            for (name, unit, help) in FAMILIES {
                let (name, help) = (KeyName::from_const_str(name), SharedString::const_str(help));
                if name.as_str().ends_with("_seconds") {
                    recorder.describe_histogram(name, Some(*unit), help);
                } else if name.as_str().ends_with("_total") {
                    recorder.describe_counter(name, Some(*unit), help);
                } else {
                    recorder.describe_gauge(name, Some(*unit), help);
                }
            }
            let gauge = |name: &'static str| recorder.register_gauge(&Key::from_static_name(name), &META);
            let counter = |name: &'static str| recorder.register_counter(&Key::from_static_name(name), &META);
            let (held, backlog, lag) = (gauge("tollgate_proxy_reservations_held"), gauge("tollgate_outbox_backlog"), gauge("tollgate_rollup_lag_seconds"));
            let (lapsed, fallbacks) = (counter("tollgate_proxy_leases_lapsed_total"), counter("tollgate_upstream_fallbacks_total"));
            let spans_dropped = counter("tollgate_trace_spans_dropped_total");
            // Present from the start at zero, so a scrape before any traffic sees them.
            for g in [&held, &backlog, &lag] {
                g.set(0.0);
            }
            for c in [&lapsed, &fallbacks, &spans_dropped] {
                c.absolute(0);
            }
            let handle = recorder.handle();
            Prometheus {
                recorder,
                handle,
                held,
                lapsed,
                fallbacks,
                spans_dropped,
                backlog,
                lag,
                counters: Handles::default(),
                gauges: Handles::default(),
                histograms: Handles::default(),
            }
        });
        Metrics { prometheus, emf: sink == Sink::Emf, key_labels }
    }

    /// The Prometheus text exposition, or `None` where metrics leave as EMF.
    pub fn render(&self) -> Option<String> {
        self.prometheus.as_ref().map(|p| p.handle.render())
    }

    /// Every proxied request records a dozen figures: each into a handle registered once per
    /// label set (`handles`), so recording allocates nothing once the set has been seen.
    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        if let Some(p) = &self.prometheus {
            p.counters.get(name, labels, || p.recorder.register_counter(&key(name, labels), &META)).increment(by);
        }
    }

    fn seconds(&self, name: &'static str, labels: &[(&'static str, &str)], took: Duration) {
        if let Some(p) = &self.prometheus {
            p.histograms.get(name, labels, || p.recorder.register_histogram(&key(name, labels), &META)).record(took.as_secs_f64());
        }
    }

    /// Folds recorded latencies into their buckets; the background task calls it every pass, so
    /// what waits between scrapes stays small.
    pub fn upkeep(&self) {
        if let Some(p) = &self.prometheus {
            p.handle.run_upkeep();
        }
    }

    /// An HTTP answer: its route template (`unmatched` for no route), method and status.
    pub fn http(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.counter("tollgate_http_requests_total", &[("route", route), ("method", method), ("status", status_text(i64::from(status)))], 1);
        self.seconds("tollgate_http_request_duration_seconds", &[("route", route), ("method", method)], took);
    }

    /// A proxied request as its usage record says, written when it is settled.
    pub fn request(&self, record: &UsageRecord) {
        let upstream_ms: i64 = record.routing.iter().map(|a| a.latency_ms.max(0)).sum();
        if self.emf {
            emf::print(&emf::request(record, upstream_ms));
        }
        let Some(p) = &self.prometheus else { return };
        let (model, provider) = (record.model.as_str(), record.provider.as_str());
        let mut ids = [[0u8; 36]; 3];
        let [key_id, project, workspace] = &mut ids;
        // The key's label comes last, kept only where the operator opted in.
        let key = ("key", if self.key_labels { id_text(key_id, record.api_key_id) } else { "" });
        let keyed = |labels: usize| if self.key_labels { labels + 1 } else { labels };
        let requests = [
            ("endpoint", record.endpoint.as_str()),
            ("model", model),
            ("provider", provider),
            ("outcome", record.outcome.as_str()),
            ("status", status_text(record.status_code)),
            key,
        ];
        self.counter("tollgate_proxy_requests_total", &requests[..keyed(5)], 1);
        let total = Duration::from_millis(record.latency_ms.max(0) as u64);
        let upstream = Duration::from_millis(upstream_ms as u64).min(total);
        for (part, took) in [("total", total), ("upstream", upstream), ("gateway", total - upstream)] {
            self.seconds("tollgate_proxy_duration_seconds", &[("model", model), ("provider", provider), ("part", part)], took);
        }
        if let Some(ttft) = record.ttft_ms.filter(|_| record.streamed) {
            self.seconds("tollgate_proxy_ttft_seconds", &[("model", model), ("provider", provider)], Duration::from_millis(ttft.max(0) as u64));
        }
        let tokens = [
            ("input", record.input_tokens),
            ("output", record.output_tokens),
            ("cached", record.cached_tokens),
            ("cache_write", record.cache_write_tokens),
            ("reasoning", record.reasoning_tokens),
        ];
        for (kind, n) in tokens.into_iter().filter(|(_, n)| *n > 0) {
            self.counter("tollgate_proxy_tokens_total", &[("model", model), ("provider", provider), ("kind", kind)], n as u64);
        }
        let (project, workspace) = (id_text(project, record.project_id), id_text(workspace, record.org_id));
        let cost = [("model", model), ("provider", provider), ("project", project), ("workspace", workspace), key];
        self.counter("tollgate_proxy_cost_microdollars_total", &cost[..keyed(4)], record.cost_micros.max(0) as u64);
        for attempt in &record.routing {
            let result = match (attempt.status, attempt.error.is_some()) {
                (Some(200), false) => "ok",
                (Some(status), _) => match status / 100 {
                    2 => "status_2xx",
                    3 => "status_3xx",
                    4 => "status_4xx",
                    _ => "status_5xx",
                },
                (None, _) if record.outcome == crate::usage::Outcome::Timeout => "timeout",
                (None, _) => "error",
            };
            self.counter("tollgate_upstream_attempts_total", &[("provider", attempt.provider.as_str()), ("result", result)], 1);
        }
        if record.routing.iter().any(|a| a.model != record.model) {
            p.fallbacks.increment(1);
        }
    }

    /// A request refused before any upstream: why, and at which level (workspace, project or
    /// token; `token` for a key's own scope and address rules).
    pub fn refusal(&self, reason: RefusalReason, level: &'static str) {
        if self.emf {
            emf::print(&emf::refusal(reason.name(), level));
        }
        self.counter("tollgate_proxy_refusals_total", &[("reason", reason.name()), ("level", level)], 1);
    }

    /// An attempt failed for `reason` and another follows.
    pub fn retry(&self, model: &str, provider: &str, reason: &'static str) {
        self.counter("tollgate_upstream_retries_total", &[("model", model), ("provider", provider), ("reason", reason)], 1);
    }

    /// A deployment began a cooldown.
    pub fn cooldown(&self, model: &str, deployment: &str) {
        self.counter("tollgate_deployment_cooldowns_total", &[("model", model), ("deployment", deployment)], 1);
    }

    /// How many deployments of each model are cooling down now.
    pub fn cooling(&self, by_model: &[(String, usize)]) {
        if let Some(p) = &self.prometheus {
            for (model, n) in by_model {
                p.gauges
                    .get("tollgate_deployments_cooling", &[("model", model)], || {
                        p.recorder.register_gauge(&key("tollgate_deployments_cooling", &[("model", model)]), &META)
                    })
                    .set(*n as f64);
            }
        }
    }

    /// A request took its reservation: counted as held until the guard is dropped, however
    /// the request ends.
    pub fn hold(self: &Arc<Self>) -> Held {
        if let Some(p) = &self.prometheus {
            p.held.increment(1.0);
        }
        Held(self.clone())
    }

    /// A settlement released `n` lapsed leases of dead requests.
    pub fn lapsed(&self, n: usize) {
        if let (Some(p), true) = (&self.prometheus, n > 0) {
            p.lapsed.increment(n as u64);
        }
    }

    /// Spans the trace exporter dropped.
    pub fn spans_dropped(&self, n: usize) {
        if let Some(p) = &self.prometheus {
            p.spans_dropped.increment(n as u64);
        }
    }

    /// One round trip to the store.
    pub fn store(&self, op: &'static str, took: Duration) {
        self.seconds("tollgate_store_round_trip_seconds", &[("op", op)], took);
    }

    /// The outbox's backlog and the rollups' lag, as the background pass found them.
    pub fn background(&self, backlog: usize, lag: Duration) {
        if let Some(p) = &self.prometheus {
            p.backlog.set(backlog as f64);
            p.lag.set(lag.as_secs_f64());
        }
    }
}

/// A reservation counted as held (`Metrics::hold`), until this is dropped.
pub struct Held(Arc<Metrics>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(p) = &self.0.prometheus {
            p.held.decrement(1.0);
        }
    }
}
