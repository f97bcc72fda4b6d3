//! What comes back from an upstream: the usage and progress observed in an answer or a
//! stream, the source a stream is read from, and how a failure reaches the client and the record.

use std::time::Instant;

use serde_json::Value;

use super::upstream::Failure;
use crate::canonical::answer::{Glimpse, Parsed, at};
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
    /// Takes in what an answer or stream chunk says (a Responses API answer or event too).
    pub(super) fn absorb(&mut self, answer: &Value, started: Instant) {
        if let Some(glimpse) = Glimpse::of_value(answer) {
            return self.take(&glimpse, started);
        }
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
        }
    }

    /// Takes in a whole answer, parsed or glimpsed.
    pub(super) fn absorb_parsed(&mut self, answer: &Parsed, started: Instant) {
        match answer {
            Parsed::Json(value) => self.absorb(value, started),
            Parsed::Glimpsed(glimpse) => self.take(glimpse, started),
        }
    }

    /// Takes in what a canonical answer or chunk says: its usage (what it reports replaces what
    /// an earlier chunk did), the first text delivered, how it finished.
    fn take(&mut self, glimpse: &Glimpse, started: Instant) {
        if let Some(usage) = &glimpse.usage {
            self.input = usage.input.or(self.input);
            self.output = usage.output.or(self.output);
            self.cached = usage.cached.unwrap_or(self.cached);
            self.cache_write = usage.cache_write.unwrap_or(self.cache_write);
            self.cache_write_1h = usage.cache_write_1h.unwrap_or(self.cache_write_1h);
            self.reasoning = usage.reasoning.unwrap_or(self.reasoning);
            if let Some(cost) = usage.cost {
                self.reported_cost = crate::money::reported_dollars_to_micros(cost);
            }
        }
        if glimpse.text {
            self.delivered_chunks += 1;
            self.ttft_ms.get_or_insert(started.elapsed().as_millis() as i64);
        }
        if let Some(reason) = &glimpse.finish_reason {
            self.finish_reason = Some(reason.clone());
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
            let n = |path: &[&str]| at(usage, path).and_then(Value::as_i64);
            self.input = n(&["input_tokens"]).or(self.input);
            self.output = n(&["output_tokens"]).or(self.output);
            self.cached = n(&["input_tokens_details", "cached_tokens"]).unwrap_or(self.cached);
            self.reasoning = n(&["output_tokens_details", "reasoning_tokens"]).unwrap_or(self.reasoning);
        }
        let reason = at(response, &["incomplete_details", "reason"]).and_then(Value::as_str);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_and_progress_are_read_from_chat_answers_chunks_and_responses() {
        let started = Instant::now();
        let mut seen = Observed::default();
        seen.absorb(&json!({"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]}), started);
        seen.absorb(&json!({"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}]}), started);
        seen.absorb(
            &json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5, "cost": 0.0015,
                "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 3, "cache_write_1h_tokens": 1},
                "completion_tokens_details": {"reasoning_tokens": 2}}}),
            started,
        );
        assert_eq!((seen.input, seen.output, seen.cached, seen.cache_write, seen.cache_write_1h, seen.reasoning), (Some(12), Some(5), 4, 3, 1, 2));
        assert_eq!((seen.delivered_chunks, seen.finish_reason.as_deref(), seen.reported_cost), (1, Some("stop"), Some(1_500)));
        assert!(seen.ttft_ms.is_some());

        let mut whole = Observed::default();
        whole.absorb(&json!({"choices": [{"index": 0, "text": "done", "finish_reason": "length"}], "usage": {"prompt_tokens": 1}}), started);
        assert_eq!((whole.input, whole.output, whole.delivered_chunks, whole.finish_reason.as_deref()), (Some(1), None, 1, Some("length")));

        let mut response = Observed::default();
        response.absorb(
            &json!({"object": "response", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
                "usage": {"input_tokens": 7, "output_tokens": 9, "input_tokens_details": {"cached_tokens": 6}, "output_tokens_details": {"reasoning_tokens": 8}}}),
            started,
        );
        assert_eq!((response.input, response.output, response.cached, response.reasoning), (Some(7), Some(9), 6, 8));
        assert_eq!(response.finish_reason.as_deref(), Some("length"));
    }
}
