//! Traces: OpenTelemetry spans over OTLP (HTTP/protobuf), configured by the standard variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `_HEADERS`,
//! `_TIMEOUT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`) and off when no endpoint is set
//! (or `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`).
//!
//! One span per proxied request (a caller's W3C `traceparent` continued), with children for the
//! admission (the reservation), each upstream attempt (whose own `traceparent` goes upstream)
//! and the settlement. Attributes follow the GenAI semantic conventions; Tollgate's own are
//! under `tollgate.*`. Prompts are recorded only with `TOLLGATE_TRACE_CONTENT=true`.
//!
//! Export runs off the request path: an ended span goes into a bounded queue
//! (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048) that a background task sends in batches
//! (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512, at least every `OTEL_BSP_SCHEDULE_DELAY` ms, 1000);
//! a span that finds the queue full, or whose batch the collector refused, is dropped and
//! counted (`tollgate_trace_spans_dropped_total`).

pub mod export;
pub mod spans;

pub use spans::{Child, FlightTrace, Tracing};
