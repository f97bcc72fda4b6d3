//! What comes back from an upstream: the usage and progress observed in an answer or a
//! stream, the source a stream is read from, and how a failure reaches the client and the record.

use std::time::Instant;

use serde_json::Value;

use super::upstream::Failure;
use crate::error::ApiError;
use crate::usage::Outcome;

/// What the upstream reported (or what we saw delivered) about one answer.
#[derive(Default)]
pub(super) struct Observed {
    pub(super) input: Option<i64>,
    pub(super) output: Option<i64>,
    /// Input tokens read from / written to the provider's prompt cache (part of `input`).
    pub(super) cached: i64,
    pub(super) cache_write: i64,
    /// Of `cache_write`, the tokens written to Anthropic's 1-hour cache.
    pub(super) cache_write_1h: i64,
    pub(super) reasoning: i64,
    /// What the provider says it charged (`usage.cost`, OpenRouter's), in micro-dollars.
    pub(super) reported_cost: Option<i64>,
    pub(super) finish_reason: Option<String>,
    pub(super) ttft_ms: Option<i64>,
    pub(super) delivered_chunks: i64,
    /// Built-in tool calls in a Responses answer, by tool (`fees`).
    pub(super) hosted_calls: std::collections::BTreeMap<String, i64>,
}

impl Observed {
    pub(super) fn absorb(&mut self, answer: &Value, started: Instant) {
        // The Responses API's answers and events (from OpenAI, untranslated) name their type.
        if answer.get("object").and_then(Value::as_str) == Some("response") {
            return self.absorb_response(answer);
        }
        if let Some(kind) = answer.get("type").and_then(Value::as_str) {
            if kind == "response.output_text.delta" {
                self.delivered_chunks += 1;
                self.ttft_ms.get_or_insert(started.elapsed().as_millis() as i64);
            } else if let Some(response) = answer.get("response").filter(|_| kind.starts_with("response.")) {
                self.absorb_response(response);
            }
            return;
        }
        if let Some(usage) = answer.get("usage").filter(|u| u.is_object()) {
            let n = |p: &str| usage.pointer(p).and_then(Value::as_i64);
            self.input = n("/prompt_tokens").or(self.input);
            self.output = n("/completion_tokens").or(self.output);
            self.cached = n("/prompt_tokens_details/cached_tokens").unwrap_or(self.cached);
            // OpenRouter's name for the tokens a request wrote to the prompt cache.
            self.cache_write = n("/prompt_tokens_details/cache_write_tokens").unwrap_or(self.cache_write);
            self.cache_write_1h = n("/prompt_tokens_details/cache_write_1h_tokens").unwrap_or(self.cache_write_1h);
            self.reasoning = n("/completion_tokens_details/reasoning_tokens").unwrap_or(self.reasoning);
            if let Some(cost) = usage.get("cost").and_then(Value::as_f64) {
                self.reported_cost = crate::money::reported_dollars_to_micros(cost);
            }
        }
        if let Some(choice) = answer.pointer("/choices/0") {
            let text = choice.pointer("/delta/content").or_else(|| choice.get("text")).and_then(Value::as_str);
            if text.is_some_and(|t| !t.is_empty()) {
                self.delivered_chunks += 1;
                self.ttft_ms.get_or_insert(started.elapsed().as_millis() as i64);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(reason.to_string());
            }
        }
    }
}

impl Observed {
    /// A Responses API response: its usage and how it ended.
    fn absorb_response(&mut self, response: &Value) {
        if let Some(output) = response.get("output").and_then(Value::as_array).filter(|o| !o.is_empty()) {
            self.hosted_calls.clear();
            for kind in output.iter().filter_map(|item| item.get("type").and_then(Value::as_str)).filter_map(crate::canonical::extras::call_kind) {
                *self.hosted_calls.entry(kind).or_default() += 1;
            }
        }
        if let Some(usage) = response.get("usage").filter(|u| u.is_object()) {
            let n = |p: &str| usage.pointer(p).and_then(Value::as_i64);
            self.input = n("/input_tokens").or(self.input);
            self.output = n("/output_tokens").or(self.output);
            self.cached = n("/input_tokens_details/cached_tokens").unwrap_or(self.cached);
            self.reasoning = n("/output_tokens_details/reasoning_tokens").unwrap_or(self.reasoning);
        }
        let reason = response.pointer("/incomplete_details/reason").and_then(Value::as_str);
        match (response.get("status").and_then(Value::as_str), reason) {
            (Some("incomplete"), Some("max_output_tokens")) => self.finish_reason = Some("length".into()),
            (Some("incomplete"), Some(other)) => self.finish_reason = Some(other.into()),
            (Some("completed"), _) => self.finish_reason = Some("stop".into()),
            _ => {}
        }
    }
}

/// An upstream failure as the client sees it.
pub(super) fn failure_error(failure: &Failure) -> ApiError {
    match failure {
        Failure::Timeout => ApiError::upstream(504, "upstream_timeout", failure.describe()),
        Failure::Unsupported(u) => ApiError::BadRequest { code: "unsupported_by_provider", message: failure.describe(), param: Some(u.param.to_string()) },
        Failure::RateLimited { retry_after: Some(after), .. } => {
            ApiError::TooManyRequests { code: "upstream_rate_limited", message: failure.describe(), retry_after_secs: after.as_secs_f64().ceil() as u64 }
        }
        Failure::Status(429, _) | Failure::RateLimited { .. } => ApiError::upstream(429, "upstream_rate_limited", failure.describe()),
        Failure::Status(s, _) if (400..500).contains(s) => ApiError::upstream(*s, "upstream_rejected", failure.describe()),
        _ => ApiError::upstream(502, "upstream_error", failure.describe()),
    }
}

/// What an upstream failure counts as in the usage record.
pub(super) fn outcome_of(failure: &Failure) -> Outcome {
    if matches!(failure, Failure::Timeout) { Outcome::Timeout } else { Outcome::Error }
}
