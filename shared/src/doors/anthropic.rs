//! The Anthropic Messages API as a front door (`POST /v1/messages`), so the Anthropic SDKs,
//! Claude Code and the tools built on them reach any provider. From Anthropic's API reference:
//!
//! - request: `system` (a string or text blocks) becomes a system message; `user` and
//!   `assistant` turns keep their text, `image` blocks (base64 or URL) become `image_url`
//!   parts, `document` blocks `file` parts, an assistant's `tool_use` blocks its `tool_calls`,
//!   and a user turn's `tool_result` blocks `tool` messages (before the turn's other content);
//!   `max_tokens` is required; `stop_sequences`, `temperature`, `top_p`, `stream`, `tools`,
//!   `tool_choice` and `metadata.user_id` are mapped.
//! - answer: a `message` with `text` and `tool_use` blocks, `stop_reason` (`end_turn`,
//!   `max_tokens`, `tool_use`, `refusal`) and `usage` with the cache apart
//!   (`input_tokens` excludes the cache's tokens).
//! - stream: `message_start`, `content_block_start`/`_delta`/`_stop` (`text_delta`,
//!   `input_json_delta`), `message_delta` with the stop reason and usage, `message_stop`; an
//!   `error` event when the upstream breaks off.
//! - errors: `{"type": "error", "error": {"type", "message"}}` with Anthropic's error types.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::StreamWriter;
use crate::error::{ApiError, ApiResult};

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_param(param, message)
}

/// Anthropic content (a string or blocks) as canonical content parts, and the tool results
/// among them as canonical `tool` messages.
fn parts(content: &Value) -> ApiResult<(Vec<Value>, Vec<Value>)> {
    let blocks = match content {
        Value::String(s) => return Ok((vec![json!({"type": "text", "text": s})], vec![])),
        Value::Array(blocks) => blocks,
        _ => return Err(invalid("messages", "each message's content must be a string or a list of content blocks")),
    };
    let (mut out, mut results) = (Vec::new(), Vec::new());
    for block in blocks {
        let before = out.len();
        match block.get("type").and_then(Value::as_str) {
            Some("text") => out.push(json!({"type": "text", "text": block.get("text").and_then(Value::as_str).unwrap_or_default()})),
            Some("image") => {
                let source = block.get("source").cloned().unwrap_or_default();
                let url = match source.get("type").and_then(Value::as_str) {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        source.get("media_type").and_then(Value::as_str).unwrap_or("image/png"),
                        source.get("data").and_then(Value::as_str).unwrap_or_default()
                    ),
                    _ => source.get("url").and_then(Value::as_str).unwrap_or_default().to_string(),
                };
                out.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Some("document") => {
                let source = block.get("source").cloned().unwrap_or_default();
                if let (Some(media_type), Some(data)) = (source.get("media_type").and_then(Value::as_str), source.get("data").and_then(Value::as_str)) {
                    out.push(json!({"type": "file", "file": {"file_data": format!("data:{media_type};base64,{data}")}}));
                }
            }
            Some("tool_result") => {
                let text = match block.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(inner)) => inner.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"),
                    _ => String::new(),
                };
                results.push(json!({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}));
            }
            // tool_use in a user turn, thinking blocks and later additions carry nothing a
            // canonical request can hold.
            _ => {}
        }
        keep_cache_control(block, &mut out[before..]);
    }
    Ok((out, results))
}

/// A block's prompt-cache breakpoint (`cache_control`, with its `ttl`), kept on the canonical
/// part made of it: the canonical shape carries it as OpenRouter's and LiteLLM's do, Anthropic's
/// wire gives it back, and providers without a prompt cache of this kind never see it.
fn keep_cache_control(block: &Value, made: &mut [Value]) {
    if let (Some(cache), Some(part)) = (block.get("cache_control").filter(|c| c.is_object()), made.last_mut()) {
        part["cache_control"] = cache.clone();
    }
}

/// A Messages body's object and its model (what `messages` and `count_tokens` both need).
fn object_and_model(body: &[u8]) -> ApiResult<(Map<String, Value>, String)> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(body) = value else { return Err(ApiError::bad_request("invalid_body", "the body must be a JSON object")) };
    let model = body.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).ok_or_else(|| invalid("model", "model is required"))?;
    let model = model.to_string();
    Ok((body, model))
}

/// A Messages request as the canonical chat request.
pub fn canonical_request(body: &[u8]) -> ApiResult<Value> {
    let (body, model) = object_and_model(body)?;
    let max_tokens = body
        .get("max_tokens")
        .and_then(Value::as_i64)
        .filter(|n| *n >= 1)
        .ok_or_else(|| invalid("max_tokens", "max_tokens is required: a positive integer"))?;
    canonical(&body, &model, Some(max_tokens))
}

/// A `count_tokens` request (a Messages request without `max_tokens`) as the canonical one.
pub fn canonical_count_request(body: &[u8]) -> ApiResult<Value> {
    let (body, model) = object_and_model(body)?;
    canonical(&body, &model, None)
}

/// The canonical request for a Messages body (`max_tokens` absent for count_tokens).
fn canonical(body: &Map<String, Value>, model: &str, max_tokens: Option<i64>) -> ApiResult<Value> {
    let mut messages = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        // Blocks with a cache breakpoint stay blocks, so the breakpoint reaches the provider.
        Some(Value::Array(blocks)) if blocks.iter().any(|b| b.get("cache_control").is_some()) => {
            let (parts, _) = parts(&Value::Array(blocks.clone()))?;
            messages.push(json!({"role": "system", "content": parts}));
        }
        Some(Value::Array(blocks)) => {
            let text: Vec<&str> = blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
            messages.push(json!({"role": "system", "content": text.join("\n")}));
        }
        Some(_) => return Err(invalid("system", "system must be a string or a list of text blocks")),
    }
    let turns = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid("messages", "messages is required: a non-empty list of {role, content}"))?;
    for turn in turns {
        let content = turn.get("content").unwrap_or(&Value::Null);
        match turn.get("role").and_then(Value::as_str) {
            Some("user") => {
                let (parts, results) = parts(content)?;
                messages.extend(results);
                if !parts.is_empty() {
                    messages.push(json!({"role": "user", "content": parts}));
                }
            }
            Some("assistant") => {
                let blocks: Vec<Value> = match content {
                    Value::String(s) => vec![json!({"type": "text", "text": s})],
                    Value::Array(b) => b.clone(),
                    _ => return Err(invalid("messages", "each message's content must be a string or a list of content blocks")),
                };
                let text: String = blocks.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect();
                let calls: Vec<Value> = blocks
                    .iter()
                    .filter(|b| b["type"] == "tool_use")
                    .map(|b| json!({"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": b.get("input").cloned().unwrap_or_else(|| json!({})).to_string()}}))
                    .collect();
                let mut message = json!({"role": "assistant", "content": text});
                if !calls.is_empty() {
                    message["tool_calls"] = Value::Array(calls);
                }
                messages.push(message);
            }
            _ => return Err(invalid("messages", "each message's role must be user or assistant (system goes in `system`)")),
        }
    }
    let mut out = json!({"model": model, "messages": messages});
    let canonical = out.as_object_mut().expect("an object");
    if let Some(n) = max_tokens {
        canonical.insert("max_tokens".into(), json!(n));
    }
    for name in ["temperature", "top_p", "stream"] {
        if let Some(v) = body.get(name).filter(|v| !v.is_null()) {
            canonical.insert(name.into(), v.clone());
        }
    }
    if let Some(stop) = body.get("stop_sequences").filter(|s| s.as_array().is_some_and(|a| !a.is_empty())) {
        canonical.insert("stop".into(), stop.clone());
    }
    if let Some(user) = body.get("metadata").and_then(|m| m.get("user_id")).and_then(Value::as_str) {
        canonical.insert("user".into(), json!(user));
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty()) {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut tool =
                    json!({"type": "function", "function": {"name": t["name"], "description": t.get("description"), "parameters": t.get("input_schema")}});
                keep_cache_control(t, std::slice::from_mut(&mut tool));
                tool
            })
            .collect();
        canonical.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = body.get("tool_choice") {
            let mapped = match choice.get("type").and_then(Value::as_str) {
                Some("any") => json!("required"),
                Some("none") => json!("none"),
                Some("tool") => json!({"type": "function", "function": {"name": choice.get("name")}}),
                _ => json!("auto"),
            };
            canonical.insert("tool_choice".into(), mapped);
            if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
                canonical.insert("parallel_tool_calls".into(), json!(false));
            }
        }
    }
    Ok(out)
}

fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Canonical usage as Messages usage: the cache's tokens apart from `input_tokens`.
fn usage(canonical: Option<&Value>) -> Value {
    let n = |p: &str| canonical.and_then(|u| u.pointer(p)).and_then(Value::as_i64).unwrap_or(0);
    let (read, write) = (n("/prompt_tokens_details/cached_tokens"), n("/prompt_tokens_details/cache_write_tokens"));
    let long = n("/prompt_tokens_details/cache_write_1h_tokens").clamp(0, write);
    // Anthropic says which of the writes went to which cache.
    json!({"input_tokens": (n("/prompt_tokens") - read - write).max(0), "output_tokens": n("/completion_tokens"),
           "cache_read_input_tokens": read, "cache_creation_input_tokens": write,
           "cache_creation": {"ephemeral_5m_input_tokens": write - long, "ephemeral_1h_input_tokens": long}})
}

fn message_id(canonical_id: Option<&str>) -> String {
    match canonical_id {
        Some(id) if id.starts_with("msg_") => id.to_string(),
        Some(id) => format!("msg_{id}"),
        None => format!("msg_{}", uuid::Uuid::new_v4().simple()),
    }
}

/// A canonical chat completion as a Messages answer.
pub fn answer(canonical: &Value) -> Value {
    let message = canonical.pointer("/choices/0/message").cloned().unwrap_or_default();
    let mut content = Vec::new();
    if let Some(text) = message.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": call.get("id"), "name": call.pointer("/function/name"), "input": input}));
    }
    let finish = canonical.pointer("/choices/0/finish_reason").and_then(Value::as_str).unwrap_or("stop");
    json!({
        "id": message_id(canonical.get("id").and_then(Value::as_str)), "type": "message", "role": "assistant",
        "model": canonical.get("model"), "content": content, "stop_reason": stop_reason(finish), "stop_sequence": null,
        "usage": usage(canonical.get("usage")),
    })
}

/// Anthropic's error type for a status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// Our error envelope as Anthropic's (the request id and our code kept beside it).
pub fn error_body(status: u16, ours: &Value) -> Value {
    let error = ours.get("error").cloned().unwrap_or_default();
    json!({"type": "error", "error": {"type": error_type(status), "message": error.get("message"), "code": error.get("code")},
           "request_id": error.get("request_id")})
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Tool,
}

/// Writes a canonical stream as Messages events.
#[derive(Default)]
pub struct EventWriter {
    started: bool,
    /// The open content block: its index and kind.
    open: Option<(usize, Block)>,
    blocks: usize,
    stop_reason: Option<&'static str>,
    usage: Option<Value>,
}

impl EventWriter {
    fn start(&mut self, chunk: Option<&Value>, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = message_id(chunk.and_then(|c| c.get("id")).and_then(Value::as_str));
        let model = chunk.and_then(|c| c.get("model")).cloned().unwrap_or(Value::Null);
        let message = json!({"id": id, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null,
                             "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}});
        out.push(event("message_start", &json!({"type": "message_start", "message": message})));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open.take() {
            out.push(event("content_block_stop", &json!({"type": "content_block_stop", "index": index})));
        }
    }

    fn open(&mut self, kind: Block, block: Value, out: &mut Vec<Bytes>) -> usize {
        self.close(out);
        let index = self.blocks;
        self.blocks += 1;
        self.open = Some((index, kind));
        out.push(event("content_block_start", &json!({"type": "content_block_start", "index": index, "content_block": block})));
        index
    }
}

impl StreamWriter for EventWriter {
    fn chunk(&mut self, chunk: &Value, _: Bytes) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.start(Some(chunk), &mut out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else { return out };
        let delta = choice.get("delta").cloned().unwrap_or_default();
        if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            let index = match self.open {
                Some((index, Block::Text)) => index,
                _ => self.open(Block::Text, json!({"type": "text", "text": ""}), &mut out),
            };
            out.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}})));
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            if let Some(id) = call.get("id").filter(|id| !id.is_null()) {
                let block = json!({"type": "tool_use", "id": id, "name": call.pointer("/function/name"), "input": {}});
                self.open(Block::Tool, block, &mut out);
            }
            if let (Some((index, Block::Tool)), Some(args)) = (self.open, call.pointer("/function/arguments").and_then(Value::as_str).filter(|a| !a.is_empty()))
            {
                out.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": args}}),
                ));
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(stop_reason(finish));
        }
        out
    }

    fn finish(&mut self, failure: Option<(&str, &str)>, request_id: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.start(None, &mut out);
        if let Some((_, message)) = failure {
            out.push(event("error", &json!({"type": "error", "error": {"type": "api_error", "message": message}, "request_id": request_id})));
            return out;
        }
        self.close(&mut out);
        let delta = json!({"type": "message_delta", "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
                           "usage": usage(self.usage.as_ref())});
        out.push(event("message_delta", &delta));
        out.push(event("message_stop", &json!({"type": "message_stop"})));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_messages_request_becomes_canonical() {
        let body = json!({"model": "m", "max_tokens": 100, "system": [{"type": "text", "text": "Be brief."}], "stop_sequences": ["END"],
        "metadata": {"user_id": "u"}, "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Paris?"}, {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAA"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}, {"type": "text", "text": "Thanks"}]},
        ]});
        let out = canonical_request(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(out["max_tokens"], 100);
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!(out["user"], "u");
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(out["tools"][0]["function"]["parameters"], json!({"type": "object"}));
        let roles: Vec<&str> = out["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
        assert_eq!(out["messages"][1]["content"][1]["image_url"]["url"], "data:image/jpeg;base64,AAA");
        assert_eq!(out["messages"][2]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(out["messages"][3], json!({"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}));
        let missing = serde_json::to_vec(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})).unwrap();
        assert!(matches!(canonical_request(&missing), Err(ApiError::BadRequest { param: Some(p), .. }) if p == "max_tokens"));
    }

    #[test]
    fn a_canonical_stream_becomes_messages_events() {
        let mut w = EventWriter::default();
        let chunk = |delta: Value, finish: Value| json!({"id": "chatcmpl-1", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        let mut frames = Vec::new();
        for c in [
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hi "}), Value::Null),
            chunk(json!({"content": "there"}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":1}"}}]}), Value::Null),
            chunk(json!({}), json!("tool_calls")),
            json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 3}}}),
        ] {
            frames.extend(w.chunk(&c, Bytes::new()));
        }
        frames.extend(w.finish(None, "r"));
        let text: Vec<String> = frames.iter().map(|f| String::from_utf8(f.to_vec()).unwrap()).collect();
        let names: Vec<&str> = text.iter().map(|t| t.lines().next().unwrap().trim_start_matches("event: ")).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let data = |i: usize| serde_json::from_str::<Value>(text[i].lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
        assert_eq!(data(0)["message"]["id"], "msg_chatcmpl-1");
        assert_eq!(data(5)["content_block"], json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {}}));
        assert_eq!(data(6)["delta"], json!({"type": "input_json_delta", "partial_json": "{\"a\":1}"}));
        assert_eq!(data(8)["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            data(8)["usage"],
            json!({"input_tokens": 7, "output_tokens": 4, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 0,
                   "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}})
        );
    }
}
