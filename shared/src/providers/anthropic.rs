//! Anthropic's native Messages API (`POST /v1/messages`, `x-api-key`, `anthropic-version`):
//! the canonical (OpenAI chat) request becomes a Messages request, and the answer, its stream
//! events and its errors come back canonical. From Anthropic's API reference:
//!
//! - system and developer messages become `system`; consecutive messages of one role merge
//!   (the API wants user and assistant turns to alternate); tool results (`role: tool`) become
//!   `tool_result` blocks of a user turn; an assistant's `tool_calls` become `tool_use` blocks.
//! - images (`image_url`, data URLs or links) become `image` blocks; PDFs sent as `file`
//!   data become `document` blocks.
//! - `max_tokens` is required: the request's, else the model's output cap.
//! - tools become `{name, description, input_schema}`; `tool_choice` auto/required/none/named
//!   becomes `auto`/`any`/`none`/`tool`; `parallel_tool_calls: false` sets
//!   `disable_parallel_tool_use`; `stop` becomes `stop_sequences`; `user` becomes
//!   `metadata.user_id`.
//! - stop reasons: `end_turn`/`stop_sequence` -> `stop`, `max_tokens` -> `length`, `tool_use`
//!   -> `tool_calls`, `refusal` -> `content_filter`.
//! - usage: `input_tokens` excludes the cache; the canonical prompt tokens are input + cache
//!   read + cache creation, with `cached_tokens` (read) and `cache_write_tokens` (creation).
//! - errors: `{"type": "error", "error": {"type", "message"}}` keeps its message at
//!   `error.message`, where the canonical envelope does, so the trait's default reads it.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use super::{Provider, StreamError, StreamTranslator};
use crate::canonical::Endpoint;

pub struct Anthropic;

/// The API version every request names.
pub const VERSION: &str = "2023-06-01";

impl Provider for Anthropic {
    fn path(&self, endpoint: Endpoint) -> Option<&'static str> {
        (endpoint == Endpoint::Chat).then_some("v1/messages")
    }

    fn probe_url(&self, base: &str) -> String {
        format!("{}/v1/models", base.trim_end_matches('/'))
    }

    fn authenticate(&self, request: reqwest::RequestBuilder, key: Option<&SecretString>) -> reqwest::RequestBuilder {
        let request = request.header("anthropic-version", VERSION);
        match key {
            Some(key) => request.header("x-api-key", key.expose_secret()),
            None => request,
        }
    }

    fn wire_body(&self, canonical: &Map<String, Value>, model: &str, max_tokens: i64) -> Option<Result<Value, super::Unsupported>> {
        if let Some(format) = canonical.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str).filter(|t| *t != "text") {
            return Some(Err(super::Unsupported::new(
                "response_format",
                format!("Anthropic's Messages API has no {format} response format; ask for JSON in the prompt, or offer a tool whose input is the JSON"),
            )));
        }
        Some(Ok(request(canonical, model, max_tokens)))
    }

    fn answer_translator(&self) -> Option<fn(&Value, i64) -> Value> {
        Some(answer)
    }

    fn stream_translator(&self, model: &str, created: i64) -> Option<Box<dyn StreamTranslator>> {
        Some(Box::new(Chunks { model: model.to_string(), created, ..Chunks::default() }))
    }
}

/// A content value's text: a string, or the text of its text parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// A `data:<media type>;base64,<data>` URL's parts.
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (media_type, data) = rest.split_once(";base64,")?;
    Some((media_type, data))
}

/// A canonical part's (or tool's) prompt-cache breakpoint, on the Messages block made of it.
fn cache_control(from: &Value, made: &mut [Value]) {
    if let (Some(cache), Some(block)) = (from.get("cache_control").filter(|c| c.is_object()), made.last_mut()) {
        block["cache_control"] = cache.clone();
    }
}

/// Canonical content (a string or parts) as Messages content blocks.
fn blocks(content: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    match content {
        Value::String(s) if !s.is_empty() => out.push(json!({"type": "text", "text": s})),
        Value::Array(parts) => {
            for part in parts {
                let before = out.len();
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(text) = part.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                            out.push(json!({"type": "text", "text": text}));
                        }
                    }
                    Some("image_url") => {
                        let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or_default();
                        out.push(match data_url(url) {
                            Some((media_type, data)) => json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
                            None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                        });
                    }
                    Some("file") => {
                        if let Some((media_type, data)) = part.pointer("/file/file_data").and_then(Value::as_str).and_then(data_url) {
                            out.push(json!({"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}));
                        }
                    }
                    _ => {}
                }
                cache_control(part, &mut out[before..]);
            }
        }
        _ => {}
    }
    out
}

/// The Messages request for a canonical chat request.
pub fn request(canonical: &Map<String, Value>, model: &str, max_tokens: i64) -> Value {
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    let mut push = |role: &str, content: Vec<Value>| super::push_turn(&mut turns, role, content);
    for message in canonical.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let content = message.get("content").unwrap_or(&Value::Null);
        match message.get("role").and_then(Value::as_str).unwrap_or("user") {
            "system" | "developer" => system.extend(blocks(content)),
            "assistant" => {
                let mut out = blocks(content);
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                    let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
                    out.push(json!({"type": "tool_use", "id": call.get("id"), "name": call.pointer("/function/name"), "input": input}));
                }
                push("assistant", out);
            }
            "tool" | "function" => {
                let id = message.get("tool_call_id").or_else(|| message.get("name")).cloned().unwrap_or(Value::Null);
                push("user", vec![json!({"type": "tool_result", "tool_use_id": id, "content": text_of(content)})]);
            }
            _ => push("user", blocks(content)),
        }
    }
    let messages: Vec<Value> = turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    let mut out = json!({"model": model, "max_tokens": max_tokens, "messages": messages});
    let body = out.as_object_mut().expect("an object");
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    for name in ["temperature", "top_p", "stream"] {
        if let Some(v) = canonical.get(name).filter(|v| !v.is_null()) {
            body.insert(name.into(), v.clone());
        }
    }
    match canonical.get("stop") {
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(list)) if !list.is_empty() => {
            body.insert("stop_sequences".into(), Value::Array(list.clone()));
        }
        _ => {}
    }
    if let Some(user) = canonical.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    let tools: Vec<Value> = canonical
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t, t.get("function")?)))
        .map(|(t, f)| {
            let mut tool = json!({"name": f.get("name"), "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}))});
            if let Some(d) = f.get("description") {
                tool["description"] = d.clone();
            }
            cache_control(t, std::slice::from_mut(&mut tool));
            tool
        })
        .collect();
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        let mut choice = match canonical.get("tool_choice") {
            Some(Value::String(s)) if s == "required" => json!({"type": "any"}),
            Some(Value::String(s)) if s == "none" => json!({"type": "none"}),
            Some(Value::Object(named)) => json!({"type": "tool", "name": named.get("function").and_then(|f| f.get("name"))}),
            _ => json!({"type": "auto"}),
        };
        if canonical.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
            choice["disable_parallel_tool_use"] = Value::Bool(true);
        }
        body.insert("tool_choice".into(), choice);
    }
    out
}

fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Usage as the canonical shape counts it (prompt tokens include the cache's; cache writes
/// include the 1-hour cache's, said apart since they cost more).
pub(super) fn usage(input: i64, output: i64, cache_read: i64, cache_write: i64, cache_write_1h: i64) -> Value {
    let prompt = input + cache_read + cache_write;
    let mut details = json!({"cached_tokens": cache_read, "cache_write_tokens": cache_write});
    if cache_write_1h > 0 {
        details["cache_write_1h_tokens"] = json!(cache_write_1h.min(cache_write));
    }
    json!({"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output, "prompt_tokens_details": details})
}

fn n(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The canonical chat completion for a Messages answer.
pub fn answer(wire: &Value, created: i64) -> Value {
    let content = wire.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
    let text: String =
        content.iter().filter(|b| b.get("type").and_then(Value::as_str) == Some("text")).filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
    let calls: Vec<Value> = content
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .map(|b| json!({"id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": b.get("input").cloned().unwrap_or_else(|| json!({})).to_string()}}))
        .collect();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let stop = wire.get("stop_reason").and_then(Value::as_str).unwrap_or("end_turn");
    json!({
        "id": wire.get("id"), "object": "chat.completion", "created": created, "model": wire.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(stop)}],
        "usage": usage(
            n(wire, "/usage/input_tokens"),
            n(wire, "/usage/output_tokens"),
            n(wire, "/usage/cache_read_input_tokens"),
            n(wire, "/usage/cache_creation_input_tokens"),
            n(wire, "/usage/cache_creation/ephemeral_1h_input_tokens"),
        ),
    })
}

/// A Messages stream's events as canonical chunks.
#[derive(Default)]
struct Chunks {
    id: String,
    model: String,
    created: i64,
    input: i64,
    output: i64,
    cache_read: i64,
    cache_write: i64,
    cache_write_1h: i64,
    /// Content block index -> tool call index, for tool_use blocks.
    tools: Vec<(i64, i64)>,
}

impl Chunks {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
    }

    fn absorb_usage(&mut self, usage: Option<&Value>) {
        let Some(u) = usage else { return };
        let get = |name: &str| u.get(name).and_then(Value::as_i64);
        self.input = get("input_tokens").unwrap_or(self.input);
        self.output = get("output_tokens").unwrap_or(self.output);
        self.cache_read = get("cache_read_input_tokens").unwrap_or(self.cache_read);
        self.cache_write = get("cache_creation_input_tokens").unwrap_or(self.cache_write);
        self.cache_write_1h = u.pointer("/cache_creation/ephemeral_1h_input_tokens").and_then(Value::as_i64).unwrap_or(self.cache_write_1h);
    }
}

impl StreamTranslator for Chunks {
    fn translate(&mut self, name: &str, data: &Value) -> Result<(Vec<Value>, bool), StreamError> {
        let kind = data.get("type").and_then(Value::as_str).unwrap_or(name);
        let index = data.get("index").and_then(Value::as_i64).unwrap_or(0);
        Ok(match kind {
            "message_start" => {
                let message = data.get("message").cloned().unwrap_or_default();
                self.id = message.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                if let Some(model) = message.get("model").and_then(Value::as_str) {
                    self.model = model.to_string();
                }
                self.absorb_usage(message.get("usage"));
                (vec![self.chunk(json!({"role": "assistant", "content": ""}), None)], false)
            }
            "content_block_start" => {
                let block = data.get("content_block").cloned().unwrap_or_default();
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let call = self.tools.len() as i64;
                        self.tools.push((index, call));
                        let delta = json!({"tool_calls": [{"index": call, "id": block.get("id"), "type": "function",
                            "function": {"name": block.get("name"), "arguments": ""}}]});
                        (vec![self.chunk(delta, None)], false)
                    }
                    Some("text") => match block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                        Some(text) => (vec![self.chunk(json!({"content": text}), None)], false),
                        None => (vec![], false),
                    },
                    _ => (vec![], false),
                }
            }
            "content_block_delta" => {
                let delta = data.get("delta").cloned().unwrap_or_default();
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => (vec![self.chunk(json!({"content": delta.get("text")}), None)], false),
                    Some("input_json_delta") => {
                        let call = self.tools.iter().find(|(block, _)| *block == index).map_or(0, |(_, call)| *call);
                        let delta = json!({"tool_calls": [{"index": call, "function": {"arguments": delta.get("partial_json")}}]});
                        (vec![self.chunk(delta, None)], false)
                    }
                    // Thinking and its signature have no place in the canonical chunk.
                    _ => (vec![], false),
                }
            }
            "message_delta" => {
                self.absorb_usage(data.get("usage"));
                match data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    Some(stop) => (vec![self.chunk(json!({}), Some(finish_reason(stop)))], false),
                    None => (vec![], false),
                }
            }
            "message_stop" => {
                let last = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model, "choices": [],
                                  "usage": usage(self.input, self.output, self.cache_read, self.cache_write, self.cache_write_1h)});
                (vec![last], true)
            }
            "error" => {
                let message = data.pointer("/error/message").and_then(Value::as_str).unwrap_or("no message");
                return Err(StreamError::Upstream(message.to_string()));
            }
            // ping, content_block_stop, and event types added later.
            _ => (vec![], false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canonical_conversation_with_tools_becomes_a_messages_request() {
        let canonical = json!({
            "model": "claude", "stop": "END", "user": "u-1", "temperature": 0.3, "stream": true, "parallel_tool_calls": false,
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C, sunny"},
                {"role": "user", "content": "And tomorrow?"},
            ]
        });
        let wire = request(canonical.as_object().unwrap(), "claude-sonnet", 1024);
        assert_eq!(wire["model"], "claude-sonnet");
        assert_eq!(wire["max_tokens"], 1024);
        assert_eq!(wire["system"], json!([{"type": "text", "text": "Be brief."}]));
        assert_eq!(wire["stop_sequences"], json!(["END"]));
        assert_eq!(wire["metadata"], json!({"user_id": "u-1"}));
        assert_eq!(wire["tools"][0]["input_schema"]["properties"]["city"]["type"], "string");
        assert_eq!(wire["tool_choice"], json!({"type": "tool", "name": "weather", "disable_parallel_tool_use": true}));
        let messages = wire["messages"].as_array().unwrap();
        assert_eq!(messages.iter().map(|m| m["role"].as_str().unwrap()).collect::<Vec<_>>(), ["user", "assistant", "user"], "turns alternate");
        assert_eq!(messages[0]["content"][1]["source"], json!({"type": "base64", "media_type": "image/png", "data": "AAAA"}));
        assert_eq!(messages[1]["content"][0], json!({"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}));
        assert_eq!(messages[2]["content"][0], json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"}));
        assert_eq!(messages[2]["content"][1], json!({"type": "text", "text": "And tomorrow?"}), "the tool result and the next question are one user turn");
    }

    #[test]
    fn a_messages_answer_becomes_a_chat_completion() {
        let wire = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Oslo"}}],
            "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}});
        let out = answer(&wire, 1_700_000_000);
        assert_eq!(out["choices"][0]["message"]["content"], "Let me check.");
        assert_eq!(out["choices"][0]["message"]["tool_calls"][0]["function"], json!({"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}));
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 130, "completion_tokens": 7, "total_tokens": 137,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20}})
        );
    }

    #[test]
    fn every_stream_event_type_is_translated() {
        let mut t = Chunks { model: "m".into(), created: 1, ..Chunks::default() };
        let mut all = Vec::new();
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": 2}}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ];
        let mut done = false;
        for e in &events {
            let (chunks, end) = t.translate(e["type"].as_str().unwrap(), e).unwrap();
            all.extend(chunks);
            done = end;
        }
        assert!(done);
        assert_eq!(all[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(all[0]["id"], "msg_1");
        assert_eq!(all[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(all[2]["choices"][0]["delta"]["tool_calls"][0]["id"], "toolu_1");
        let args: String = all[3..5].iter().map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().unwrap()).collect();
        assert_eq!(args, "{\"a\":1}");
        assert_eq!(all[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(all[6]["choices"], json!([]));
        assert_eq!(all[6]["usage"]["prompt_tokens"], 7);
        assert_eq!(all[6]["usage"]["completion_tokens"], 9);
        let err = t.translate("error", &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
        assert!(matches!(err, Err(StreamError::Upstream(m)) if m == "Overloaded"));
    }
}
