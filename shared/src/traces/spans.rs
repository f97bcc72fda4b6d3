//! The spans of a proxied request: the request's own (continuing the caller's trace), and its
//! admission, upstream attempts and settlement beneath it.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanExporter as _};

use super::export::{self, Batching, Collector};
use crate::canonical::Endpoint;
use crate::config::TraceConfig;
use crate::egress::HttpClient;
use crate::metrics::Metrics;
use crate::usage::{Outcome, UsageRecord};

/// The longest prompt recorded on a span (with `TOLLGATE_TRACE_CONTENT=true`).
const MAX_CONTENT: usize = 16 * 1024;

/// The process's tracer.
pub struct Tracing {
    tracer: SdkTracer,
    /// Kept for the life of the process: the tracer stops when its provider is dropped.
    _provider: SdkTracerProvider,
    content: bool,
}

impl Tracing {
    /// The tracer for `config`, or none when tracing is off. Needs a Tokio runtime (the
    /// exporting task).
    pub fn start(config: &TraceConfig, http: HttpClient, metrics: Arc<Metrics>) -> anyhow::Result<Option<Self>> {
        let Some(endpoint) = &config.endpoint else { return Ok(None) };
        let mut resource = opentelemetry_sdk::Resource::builder();
        let named = std::env::var("OTEL_SERVICE_NAME").is_ok() || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
        if !named {
            resource = resource.with_service_name("tollgate");
        }
        let resource = resource.build();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Collector(http))
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| anyhow::anyhow!("the OTLP exporter for {endpoint} could not be built: {e}"))?;
        exporter.set_resource(&resource);
        let processor = export::start(exporter, Batching::from_env(), metrics);
        let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
        let tracer = provider.tracer("tollgate");
        Ok(Some(Tracing { tracer, _provider: provider, content: config.content }))
    }

    /// The span of one proxied request to `endpoint`, a child of the caller's `traceparent`
    /// when it sent a valid one.
    pub fn request(&self, endpoint: Endpoint, traceparent: Option<&str>) -> FlightTrace {
        let parent = match traceparent {
            Some(value) => TraceContextPropagator::new().extract(&HashMap::from([("traceparent".to_string(), value.to_string())])),
            None => Context::new(),
        };
        let operation = operation(endpoint);
        let span = self
            .tracer
            .span_builder(operation)
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("gen_ai.operation.name", operation)])
            .start_with_context(&self.tracer, &parent);
        FlightTrace { cx: parent.with_span(span), tracer: self.tracer.clone(), content: self.content, operation, end_on_drop: false }
    }
}

/// The GenAI semantic conventions' operation for a front door's endpoint.
fn operation(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Completions => "text_completion",
        Endpoint::Embeddings => "embeddings",
        _ => "chat",
    }
}

/// A request's span, ended when this is dropped (however the request ends), and what makes
/// its children.
pub struct FlightTrace {
    cx: Context,
    tracer: SdkTracer,
    content: bool,
    operation: &'static str,
    /// Whether dropping this ends the span: once a flight holds it. Before that, the admission
    /// ends it through its `Root`, after saying why it refused.
    end_on_drop: bool,
}

/// A child span, ended when this is dropped (unless `end` says how it went first).
pub struct Child(Context);

impl Child {
    /// The `traceparent` naming this span, for the upstream it calls.
    pub fn traceparent(&self) -> Option<String> {
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&self.0, &mut carrier);
        carrier.remove("traceparent")
    }

    /// Ends it as failed, saying why.
    pub fn fail(&self, why: String) {
        self.0.span().set_status(Status::error(why));
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.0.span().end();
    }
}

impl FlightTrace {
    fn child(&self, name: String, kind: SpanKind, attributes: Vec<KeyValue>) -> Child {
        let span = self.tracer.span_builder(name).with_kind(kind).with_attributes(attributes).start_with_context(&self.tracer, &self.cx);
        Child(self.cx.with_span(span))
    }

    /// The reservation against the request's limits.
    pub fn admission(&self) -> Child {
        self.child("tollgate.admission".into(), SpanKind::Internal, vec![])
    }

    /// One upstream attempt, at `provider`'s `model`.
    pub fn attempt(&self, operation_of: Endpoint, provider: &str, model: &str, deployment: Option<&str>) -> Child {
        let operation = operation(operation_of);
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", operation),
            KeyValue::new("gen_ai.provider.name", provider.to_string()),
            KeyValue::new("gen_ai.request.model", model.to_string()),
        ];
        // Which of the model's deployments the attempt went to, when it has several.
        if let Some(deployment) = deployment {
            attributes.push(KeyValue::new("tollgate.deployment", deployment.to_string()));
        }
        self.child(format!("{operation} {model}"), SpanKind::Client, attributes)
    }

    /// The settlement: counters, usage record and outbox, one transaction.
    pub fn settlement(&self) -> Child {
        self.child("tollgate.settlement".into(), SpanKind::Internal, vec![])
    }

    /// The request as admitted: the model asked for, and (with the operator's opt-in) its
    /// messages.
    pub fn admitted(&self, requested: &str, messages: Option<&serde_json::Value>) {
        let span = self.cx.span();
        span.update_name(format!("{} {requested}", self.operation));
        span.set_attribute(KeyValue::new("gen_ai.request.model", requested.to_string()));
        if let (true, Some(messages)) = (self.content, messages) {
            let text: String = messages.to_string().chars().take(MAX_CONTENT).collect();
            span.set_attribute(KeyValue::new("gen_ai.input.messages", text));
        }
    }

    /// What the request came to, from its usage record.
    pub fn settled(&self, record: &UsageRecord) {
        let span = self.cx.span();
        let mut attributes = vec![
            KeyValue::new("gen_ai.response.model", record.model.clone()),
            KeyValue::new("gen_ai.provider.name", record.provider.clone()),
            KeyValue::new("gen_ai.usage.input_tokens", record.input_tokens),
            KeyValue::new("gen_ai.usage.output_tokens", record.output_tokens),
            KeyValue::new("http.response.status_code", record.status_code),
            KeyValue::new("tollgate.cost_usd", record.cost_micros as f64 / 1e6),
            KeyValue::new("tollgate.outcome", record.outcome.as_str()),
            KeyValue::new("tollgate.fallback", record.routing.iter().any(|a| a.model != record.model)),
            KeyValue::new("tollgate.attempts", record.routing.len() as i64),
        ];
        if let Some(reason) = &record.finish_reason {
            attributes.push(KeyValue::new(
                "gen_ai.response.finish_reasons",
                opentelemetry::Value::Array(vec![opentelemetry::StringValue::from(reason.clone())].into()),
            ));
        }
        let ids = [("tollgate.key_id", record.api_key_id), ("tollgate.project_id", record.project_id), ("tollgate.workspace_id", record.org_id)];
        attributes.extend(ids.into_iter().filter_map(|(name, id)| Some(KeyValue::new(name, id?.to_string()))));
        span.set_attributes(attributes);
        if !matches!(record.outcome, Outcome::Success | Outcome::CacheHit) {
            span.set_status(Status::error(record.error.clone().unwrap_or_else(|| record.outcome.as_str().to_string())));
        }
    }

    /// Whether the response cache answered (`hit`), was asked in vain (`miss`) or was told
    /// by the caller not to answer (`bypass`).
    pub fn cache(&self, state: &'static str) {
        self.cx.span().set_attribute(KeyValue::new("tollgate.cache", state));
    }

    /// Handed to the flight, which ends the span when it ends.
    pub fn owned(mut self) -> Self {
        self.end_on_drop = true;
        self
    }

    /// A handle on the request's span, to end it if no flight takes it.
    pub fn root(&self) -> Root {
        Root(self.cx.clone())
    }
}

/// The request's span, to say how it ended after the flight is gone.
pub struct Root(Context);

impl Root {
    /// The request was refused or failed: the status it was answered with, and why.
    pub fn failed(&self, status: u16, why: String) {
        let span = self.0.span();
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
        span.set_status(Status::error(why));
    }

    /// Ends the span (nothing, if it has ended already).
    pub fn end(&self) {
        self.0.span().end();
    }
}

impl Drop for FlightTrace {
    fn drop(&mut self) {
        if self.end_on_drop {
            self.cx.span().end();
        }
    }
}
