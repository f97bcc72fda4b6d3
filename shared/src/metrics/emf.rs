//! CloudWatch Embedded Metric Format: one JSON object per log line whose `_aws` member tells
//! CloudWatch which of its other members are metrics and which are dimensions, so a Lambda
//! function's log becomes metrics with no agent and no API call. The format:
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::io::Write;

use serde_json::{Map, Value, json};

use crate::usage::UsageRecord;

/// The CloudWatch namespace every Tollgate metric goes to.
pub const NAMESPACE: &str = "Tollgate";

/// One EMF object: `dimensions` (name, value) are the sets it is aggregated by (the first set
/// is all of them, the others each a prefix), `metrics` (name, unit, value).
fn line(dimension_sets: &[&[&str]], dimensions: &[(&str, String)], metrics: &[(&str, &str, f64)]) -> Value {
    let mut out = Map::new();
    out.insert(
        "_aws".into(),
        json!({
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimension_sets,
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (name, value) in dimensions {
        out.insert((*name).into(), Value::String(value.clone()));
    }
    for (name, _, value) in metrics {
        out.insert((*name).into(), json!(value));
    }
    Value::Object(out)
}

/// A settled request's figures, aggregated by model and provider, and by outcome.
pub fn request(record: &UsageRecord, upstream_ms: i64) -> Value {
    let total = record.latency_ms.max(0) as f64;
    let upstream = (upstream_ms as f64).min(total);
    let mut metrics = vec![
        ("Requests", "Count", 1.0),
        ("Latency", "Milliseconds", total),
        ("UpstreamLatency", "Milliseconds", upstream),
        ("GatewayLatency", "Milliseconds", total - upstream),
        ("InputTokens", "Count", record.input_tokens as f64),
        ("OutputTokens", "Count", record.output_tokens as f64),
        ("CachedTokens", "Count", record.cached_tokens as f64),
        ("ReasoningTokens", "Count", record.reasoning_tokens as f64),
        ("CostMicroDollars", "None", record.cost_micros as f64),
        ("UpstreamAttempts", "Count", record.routing.len() as f64),
        ("Fallbacks", "Count", if record.routing.len() > 1 { 1.0 } else { 0.0 }),
    ];
    if let Some(ttft) = record.ttft_ms.filter(|_| record.streamed) {
        metrics.push(("TimeToFirstToken", "Milliseconds", ttft.max(0) as f64));
    }
    let dimensions = [("Model", record.model.clone()), ("Provider", record.provider.clone()), ("Outcome", record.outcome.as_str().to_string())];
    line(&[&["Model", "Provider"], &["Outcome"]], &dimensions, &metrics)
}

/// A refusal, aggregated by reason and level.
pub fn refusal(reason: &str, level: &str) -> Value {
    line(&[&["Reason", "Level"]], &[("Reason", reason.to_string()), ("Level", level.to_string())], &[("Refusals", "Count", 1.0)])
}

/// Writes one object as one line of the function's log (stdout, which Lambda sends to
/// CloudWatch Logs), whole: one write under stdout's lock.
pub fn print(value: &Value) {
    let mut text = value.to_string();
    text.push('\n');
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
