//! OpenAI's Responses API as an upstream (`POST {base}/responses`, a bearer key): for the
//! models OpenAI serves only there (o1-pro, o3-pro, the codex family), a canonical (chat
//! completions) request becomes a Responses request, and the answer and its stream events come
//! back canonical. A request that came in at the Responses door goes to it as it is
//! (`speaks_responses`). From OpenAI's API reference (and the openai-python SDK's
//! `types/responses`):
//!
//! - request: messages become `input` items: system and developer messages `developer`
//!   messages, user content `input_text` / `input_image` (`detail` is required there) /
//!   `input_file` parts, an assistant's text a `message` of `output_text` parts, its
//!   `tool_calls` `function_call` items, tool results `function_call_output` items (both by
//!   `call_id`). `max_output_tokens` (at least 16) is the gateway's cap; `reasoning_effort`
//!   becomes `reasoning.effort`, `response_format` `text.format` and `verbosity`
//!   `text.verbosity`. Function tools are flat (`{type, name, description, parameters,
//!   strict}`) and `strict` defaults to true there, unlike chat: it is sent false unless the
//!   caller set it. Nothing is stored upstream (`store: false`): the gateway is stateless here.
//! - refused, as the API has no form of them: `n` > 1, `logprobs`/`top_logprobs`, `stop`,
//!   penalties, `logit_bias`, `seed`, audio, `prediction`, `web_search_options`, the legacy
//!   `functions`, tools other than functions, and audio content parts.
//! - answer: a `response` object; `output` holds `message` items (`output_text` and `refusal`
//!   parts), `function_call` items and `reasoning` items (the model's, not the answer's: left
//!   out). `status` `incomplete` with `incomplete_details.reason` `max_output_tokens` is
//!   `length`, `content_filter` is `content_filter`. Usage counts reasoning inside
//!   `output_tokens` and the cache inside `input_tokens`, as the canonical usage does.
//! - stream: typed events (`response.created`, `response.output_item.added`,
//!   `response.output_text.delta`, `response.function_call_arguments.delta`, ...,
//!   `response.completed` / `response.incomplete` with the whole response and its usage;
//!   `response.failed` and `error` when it breaks). No `[DONE]`.
//! - errors: OpenAI's own envelope, which the trait's default reads.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use super::{Provider, StreamError, StreamTranslator, Unsupported};
use crate::canonical::Endpoint;

pub struct OpenAiResponses;

pub static OPENAI_RESPONSES: OpenAiResponses = OpenAiResponses;

/// The least `max_output_tokens` the API takes (a 400 below it).
pub const MIN_OUTPUT_TOKENS: i64 = 16;

impl Provider for OpenAiResponses {
    fn path(&self, endpoint: Endpoint) -> Option<&'static str> {
        matches!(endpoint, Endpoint::Chat | Endpoint::Responses).then_some("responses")
    }

    fn authenticate(&self, request: reqwest::RequestBuilder, key: Option<&SecretString>) -> reqwest::RequestBuilder {
        match key {
            Some(key) => request.bearer_auth(key.expose_secret()),
            None => request,
        }
    }

    fn speaks_responses(&self) -> bool {
        true
    }

    fn wire_body(&self, canonical: &Map<String, Value>, model: &str, max_tokens: i64) -> Option<Result<Value, Unsupported>> {
        Some(request(canonical, model, max_tokens))
    }

    fn answer_translator(&self) -> Option<fn(&Value, i64) -> Value> {
        Some(answer)
    }

    fn stream_translator(&self, model: &str, created: i64) -> Option<Box<dyn StreamTranslator>> {
        Some(Box::new(Chunks { model: model.to_string(), created, ..Chunks::default() }))
    }
}

/// Chat parameters the Responses API has no form of, refused when they ask for anything (a
/// default — null, false, zero, empty, `n: 1` — asks for nothing and passes).
const REFUSED: [(&str, &str); 13] = [
    ("n", "the Responses API makes one answer per request; send n: 1, or several requests"),
    ("logprobs", "log probabilities are not translated from the Responses API"),
    ("top_logprobs", "log probabilities are not translated from the Responses API"),
    ("stop", "the Responses API has no stop sequences"),
    ("frequency_penalty", "the Responses API has no frequency penalty"),
    ("presence_penalty", "the Responses API has no presence penalty"),
    ("logit_bias", "the Responses API has no logit bias"),
    ("seed", "the Responses API has no seed"),
    ("audio", "the Responses API answers in text, not audio"),
    ("prediction", "the Responses API has no predicted outputs"),
    ("web_search_options", "web search on the Responses API is a built-in tool, not served by this gateway"),
    ("functions", "the legacy functions parameter is not translated; offer them as tools"),
    ("function_call", "the legacy function_call parameter is not translated; use tool_choice"),
];

/// Whether a parameter's value asks for anything.
fn asks(name: &str, v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) if name == "n" => n.as_i64() != Some(1),
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A content value's text: a string, or its parts' text (and refusals) joined.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").or_else(|| p.get("refusal")).and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

/// Canonical user (or system) content as Responses input content parts.
fn input_parts(content: &Value) -> Result<Vec<Value>, Unsupported> {
    let mut out = Vec::new();
    match content {
        Value::String(s) => out.push(json!({"type": "input_text", "text": s})),
        Value::Array(parts) => {
            for part in parts {
                out.push(match part.get("type").and_then(Value::as_str) {
                    Some("text") => json!({"type": "input_text", "text": part.get("text").and_then(Value::as_str).unwrap_or_default()}),
                    Some("image_url") => json!({"type": "input_image", "image_url": part.pointer("/image_url/url"),
                        "detail": part.pointer("/image_url/detail").filter(|d| d.is_string()).cloned().unwrap_or(json!("auto"))}),
                    Some("file") => {
                        let file = part.get("file").and_then(Value::as_object).cloned().unwrap_or_default();
                        let mut item = Map::from_iter([("type".to_string(), json!("input_file"))]);
                        item.extend(file.into_iter().filter(|(k, v)| matches!(k.as_str(), "file_data" | "file_id" | "filename") && !v.is_null()));
                        Value::Object(item)
                    }
                    other => return Err(Unsupported::new("messages", format!("no Responses form for a {} content part", other.unwrap_or("(untyped)")))),
                });
            }
        }
        _ => {}
    }
    Ok(out)
}

/// The Responses request for a canonical chat request to `model`, its answer capped at
/// `max_tokens`.
pub fn request(canonical: &Map<String, Value>, model: &str, max_tokens: i64) -> Result<Value, Unsupported> {
    if let Some((name, why)) = REFUSED.iter().find(|(name, _)| canonical.get(*name).is_some_and(|v| asks(name, v))) {
        return Err(Unsupported::new(name, *why));
    }
    if canonical.get("modalities").and_then(Value::as_array).is_some_and(|m| m.iter().any(|m| m != "text")) {
        return Err(Unsupported::new("modalities", "the Responses API answers in text only"));
    }
    if max_tokens < MIN_OUTPUT_TOKENS {
        return Err(Unsupported::new("max_tokens", format!("the Responses API takes max_output_tokens of {MIN_OUTPUT_TOKENS} or more")));
    }
    let mut input = Vec::new();
    for message in canonical.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let content = message.get("content").unwrap_or(&Value::Null);
        match message.get("role").and_then(Value::as_str).unwrap_or("user") {
            "system" | "developer" => input.push(json!({"type": "message", "role": "developer", "content": input_parts(content)?})),
            "assistant" => {
                let mut parts = Vec::new();
                let text = text_of(content);
                if !text.is_empty() {
                    parts.push(json!({"type": "output_text", "text": text}));
                }
                if let Some(refusal) = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
                    parts.push(json!({"type": "refusal", "refusal": refusal}));
                }
                if !parts.is_empty() {
                    input.push(json!({"type": "message", "role": "assistant", "content": parts}));
                }
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                    input.push(json!({"type": "function_call", "call_id": call.get("id"), "name": call.pointer("/function/name"), "arguments": arguments}));
                }
            }
            "tool" | "function" => {
                let id = message.get("tool_call_id").or_else(|| message.get("name")).cloned().unwrap_or(Value::Null);
                input.push(json!({"type": "function_call_output", "call_id": id, "output": text_of(content)}));
            }
            _ => input.push(json!({"type": "message", "role": "user", "content": input_parts(content)?})),
        }
    }
    let mut out = json!({"model": model, "input": input, "max_output_tokens": max_tokens, "store": false});
    let body = out.as_object_mut().expect("an object");
    for name in ["temperature", "top_p", "stream", "parallel_tool_calls", "user", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"] {
        if let Some(v) = canonical.get(name).filter(|v| !v.is_null()) {
            body.insert(name.into(), v.clone());
        }
    }
    if let Some(effort) = canonical.get("reasoning_effort").filter(|e| !e.is_null()) {
        body.insert("reasoning".into(), json!({"effort": effort}));
    }
    let mut text = Map::new();
    if let Some(format) = canonical.get("response_format").filter(|f| !f.is_null()) {
        match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                text.insert("format".into(), json!({"type": "json_object"}));
            }
            Some("json_schema") => {
                let mut schema = format.get("json_schema").and_then(Value::as_object).cloned().unwrap_or_default();
                schema.retain(|_, v| !v.is_null());
                schema.insert("type".into(), json!("json_schema"));
                text.insert("format".into(), Value::Object(schema));
            }
            other => return Err(Unsupported::new("response_format", format!("no Responses form for a {} response format", other.unwrap_or("(untyped)")))),
        }
    }
    if let Some(verbosity) = canonical.get("verbosity").filter(|v| !v.is_null()) {
        text.insert("verbosity".into(), verbosity.clone());
    }
    if !text.is_empty() {
        body.insert("text".into(), Value::Object(text));
    }
    let mut tools = Vec::new();
    for tool in canonical.get("tools").and_then(Value::as_array).into_iter().flatten() {
        let Some(f) = tool.get("function").filter(|_| tool.get("type").and_then(Value::as_str).is_none_or(|t| t == "function")) else {
            return Err(Unsupported::new("tools", "the Responses API's built-in and custom tools are not translated; offer function tools"));
        };
        let mut out = json!({"type": "function", "name": f.get("name"),
            "parameters": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            "strict": f.get("strict").and_then(Value::as_bool).unwrap_or(false)});
        if let Some(d) = f.get("description").filter(|d| !d.is_null()) {
            out["description"] = d.clone();
        }
        tools.push(out);
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    match canonical.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(mode)) => {
            body.insert("tool_choice".into(), json!(mode));
        }
        Some(named) if named.get("type").and_then(Value::as_str) == Some("function") => {
            body.insert("tool_choice".into(), json!({"type": "function", "name": named.pointer("/function/name")}));
        }
        Some(_) => return Err(Unsupported::new("tool_choice", "only auto, none, required or a named function translate to the Responses API")),
    }
    Ok(out)
}

/// The canonical finish reason of a response (`called`: it called functions).
fn finish_reason(response: &Value, called: bool) -> &'static str {
    match (response.get("status").and_then(Value::as_str), response.pointer("/incomplete_details/reason").and_then(Value::as_str)) {
        (Some("incomplete"), Some("max_output_tokens")) => "length",
        (Some("incomplete"), Some("content_filter")) => "content_filter",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// A response's usage in the canonical shape (the two count alike: cached tokens inside the
/// input's, reasoning inside the output's).
pub fn usage(usage: Option<&Value>) -> Value {
    let u = usage.unwrap_or(&Value::Null);
    let n = |p: &str| u.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let (input, output) = (n("/input_tokens"), n("/output_tokens"));
    let total = u.get("total_tokens").and_then(Value::as_i64).unwrap_or(input + output);
    json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": total,
           "prompt_tokens_details": {"cached_tokens": n("/input_tokens_details/cached_tokens")},
           "completion_tokens_details": {"reasoning_tokens": n("/output_tokens_details/reasoning_tokens")}})
}

/// The canonical chat completion for a Responses answer.
pub fn answer(wire: &Value, created: i64) -> Value {
    let (mut text, mut refusal, mut calls) = (String::new(), String::new(), Vec::new());
    for item in wire.get("output").and_then(Value::as_array).into_iter().flatten() {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
                    match part.get("type").and_then(Value::as_str) {
                        Some("output_text") => text.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default()),
                        Some("refusal") => refusal.push_str(part.get("refusal").and_then(Value::as_str).unwrap_or_default()),
                        _ => {}
                    }
                }
            }
            Some("function_call") => calls.push(json!({"id": item.get("call_id"), "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("{}")}})),
            // Reasoning (the model's own) and anything added later.
            _ => {}
        }
    }
    let content = if text.is_empty() && (!calls.is_empty() || !refusal.is_empty()) { Value::Null } else { Value::String(text) };
    let mut message = json!({"role": "assistant", "content": content});
    if !refusal.is_empty() {
        message["refusal"] = json!(refusal);
    }
    let finish = finish_reason(wire, !calls.is_empty());
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": wire.get("id"), "object": "chat.completion", "created": created, "model": wire.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage(wire.get("usage")),
    })
}

/// A function call being streamed: its output item, and whether its arguments came yet.
struct Call {
    output_index: Option<i64>,
    item_id: Option<String>,
    streamed: bool,
}

/// A Responses stream's events as canonical chunks.
#[derive(Default)]
struct Chunks {
    id: String,
    model: String,
    created: i64,
    started: bool,
    /// By canonical tool call index.
    calls: Vec<Call>,
}

impl Chunks {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
    }

    /// Takes the response's id and model, from a lifecycle event.
    fn absorb(&mut self, response: Option<&Value>) {
        let get = |name: &str| response.and_then(|r| r.get(name)).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        self.id = get("id").unwrap_or(std::mem::take(&mut self.id));
        self.model = get("model").unwrap_or(std::mem::take(&mut self.model));
    }

    /// The role chunk, once, before anything else.
    fn start(&mut self, out: &mut Vec<Value>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
    }

    /// The canonical index of the call an event names (by output index, else by item id).
    fn call_of(&self, data: &Value) -> Option<usize> {
        let output_index = data.get("output_index").and_then(Value::as_i64);
        let item_id = data.get("item_id").or_else(|| data.pointer("/item/id")).and_then(Value::as_str);
        self.calls.iter().position(|c| (output_index.is_some() && c.output_index == output_index) || (item_id.is_some() && c.item_id.as_deref() == item_id))
    }

    /// A new function call's chunk (with its arguments, when the item already has them).
    fn add_call(&mut self, data: &Value, item: &Value) -> Value {
        let arguments = item.get("arguments").and_then(Value::as_str).unwrap_or_default();
        let index = self.calls.len();
        self.calls.push(Call {
            output_index: data.get("output_index").and_then(Value::as_i64),
            item_id: item.get("id").and_then(Value::as_str).map(str::to_string),
            streamed: !arguments.is_empty(),
        });
        self.chunk(
            json!({"tool_calls": [{"index": index, "id": item.get("call_id"), "type": "function",
                                          "function": {"name": item.get("name"), "arguments": arguments}}]}),
            None,
        )
    }
}

impl StreamTranslator for Chunks {
    fn translate(&mut self, name: &str, data: &Value) -> Result<(Vec<Value>, bool), StreamError> {
        let kind = data.get("type").and_then(Value::as_str).unwrap_or(name);
        let mut out = Vec::new();
        match kind {
            "response.created" | "response.in_progress" => {
                self.absorb(data.get("response"));
                self.start(&mut out);
            }
            "response.output_item.added" => {
                let item = data.get("item").cloned().unwrap_or_default();
                if item.get("type").and_then(Value::as_str) == Some("function_call") {
                    self.start(&mut out);
                    out.push(self.add_call(data, &item));
                }
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                if let Some(delta) = data.get("delta").and_then(Value::as_str).filter(|d| !d.is_empty()) {
                    self.start(&mut out);
                    let field = if kind == "response.output_text.delta" { "content" } else { "refusal" };
                    out.push(self.chunk(json!({ field: delta }), None));
                }
            }
            "response.function_call_arguments.delta" => {
                let index = self.call_of(data).ok_or(StreamError::Protocol("function call arguments for a call never added"))?;
                self.calls[index].streamed = true;
                let delta = data.get("delta").and_then(Value::as_str).unwrap_or_default();
                out.push(self.chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": delta}}]}), None));
            }
            // A call whose arguments came only whole (or that was never announced) gets them here.
            "response.output_item.done" => {
                let item = data.get("item").cloned().unwrap_or_default();
                if item.get("type").and_then(Value::as_str) == Some("function_call") {
                    match self.call_of(data) {
                        None => {
                            self.start(&mut out);
                            out.push(self.add_call(data, &item));
                        }
                        Some(index) if !self.calls[index].streamed => {
                            self.calls[index].streamed = true;
                            let arguments = item.get("arguments").and_then(Value::as_str).unwrap_or_default();
                            out.push(self.chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}), None));
                        }
                        Some(_) => {}
                    }
                }
            }
            "response.completed" | "response.incomplete" => {
                let response = data.get("response").cloned().unwrap_or_default();
                self.absorb(Some(&response));
                self.start(&mut out);
                out.push(self.chunk(json!({}), Some(finish_reason(&response, !self.calls.is_empty()))));
                out.push(json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                                "choices": [], "usage": usage(response.get("usage"))}));
                return Ok((out, true));
            }
            "response.failed" => {
                let message = data.pointer("/response/error/message").and_then(Value::as_str).unwrap_or("the response failed");
                return Err(StreamError::Upstream(message.to_string()));
            }
            "error" => {
                let message = data.get("message").or_else(|| data.pointer("/error/message")).and_then(Value::as_str).unwrap_or("no message");
                return Err(StreamError::Upstream(message.to_string()));
            }
            // Reasoning summaries, content part and `.done` events, built-in tools' progress.
            _ => {}
        }
        Ok((out, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canonical_conversation_becomes_a_responses_request() {
        let canonical = json!({
            "model": "o3-pro", "max_completion_tokens": 500, "stream": true, "user": "u-1", "metadata": {"team": "a"}, "reasoning_effort": "high",
            "n": 1, "stop": null, "logprobs": false, "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather here?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": "Checking.", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
            ]
        });
        let wire = OPENAI_RESPONSES.wire_body(canonical.as_object().unwrap(), "o3-pro-2025-06-10", 500).unwrap().unwrap();
        assert_eq!(
            wire["input"],
            json!([
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather here?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "18C, sunny"},
            ])
        );
        assert_eq!((wire["model"].as_str(), wire["max_output_tokens"].as_i64(), wire["store"].as_bool()), (Some("o3-pro-2025-06-10"), Some(500), Some(false)));
        assert_eq!(
            wire["tools"],
            json!([{"type": "function", "name": "weather", "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": false}]),
            "chat tools are not strict unless they say so; Responses tools are by default"
        );
        assert_eq!(wire["tool_choice"], json!({"type": "function", "name": "weather"}));
        assert_eq!(wire["text"], json!({"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}}));
        assert_eq!(wire["reasoning"], json!({"effort": "high"}));
        assert_eq!((wire["stream"].as_bool(), wire["user"].as_str(), wire["metadata"]["team"].as_str()), (Some(true), Some("u-1"), Some("a")));
        for absent in ["messages", "max_completion_tokens", "n", "stop", "logprobs", "stream_options", "response_format", "reasoning_effort"] {
            assert!(wire.get(absent).is_none(), "{absent} has no place in a Responses request");
        }
        let json_mode = json!({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}, "tool_choice": "required"});
        let wire = request(json_mode.as_object().unwrap(), "m", 100).unwrap();
        assert_eq!((wire["text"]["format"].clone(), wire["tool_choice"].clone()), (json!({"type": "json_object"}), json!("required")));
        let paths = [Endpoint::Chat, Endpoint::Responses, Endpoint::Embeddings].map(|e| OPENAI_RESPONSES.path(e));
        assert_eq!(paths, [Some("responses"), Some("responses"), None]);
        assert!(OPENAI_RESPONSES.speaks_responses());
    }

    #[test]
    fn what_the_responses_api_cannot_carry_is_refused() {
        let refused = |extra: Value, max_tokens: i64| {
            let mut body = json!({"messages": [{"role": "user", "content": "hi"}]});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            request(body.as_object().unwrap(), "o1-pro", max_tokens).err().map(|u| u.param)
        };
        assert_eq!(refused(json!({"n": 2}), 100), Some("n"));
        assert_eq!(refused(json!({"stop": ["END"]}), 100), Some("stop"));
        assert_eq!(refused(json!({"logprobs": true, "top_logprobs": 3}), 100), Some("logprobs"));
        assert_eq!(refused(json!({"presence_penalty": 0.5}), 100), Some("presence_penalty"));
        assert_eq!(refused(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}), 100), Some("tools"));
        assert_eq!(refused(json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}), 100), Some("messages"));
        assert_eq!(refused(json!({}), 8), Some("max_tokens"), "below the API's minimum output cap");
        assert_eq!(refused(json!({"n": 1, "stop": [], "presence_penalty": 0, "seed": null}), 100), None, "defaults ask for nothing");
    }

    #[test]
    fn a_response_becomes_a_chat_completion() {
        let wire = json!({"id": "resp_1", "object": "response", "created_at": 1_741_476_542, "status": "completed", "model": "o3-pro-2025-06-10",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "The user wants weather."}]},
                {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "weather", "arguments": "{\"city\":\"Oslo\"}", "status": "completed"},
            ],
            "usage": {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100}, "output_tokens": 50,
                      "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 170}});
        let out = OPENAI_RESPONSES.answer_translator().unwrap()(&wire, 1_700_000_000);
        assert_eq!((out["id"].as_str(), out["model"].as_str(), out["created"].as_i64()), (Some("resp_1"), Some("o3-pro-2025-06-10"), Some(1_700_000_000)));
        assert_eq!(out["object"], "chat.completion");
        let choice = &out["choices"][0];
        assert_eq!(choice["message"]["content"], "Let me check.", "the reasoning is not the answer");
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}])
        );
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 120, "completion_tokens": 50, "total_tokens": 170,
                   "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 30}})
        );
        let cut = json!({"id": "resp_2", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "output": [
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Once upon"}]}]});
        assert_eq!(answer(&cut, 1)["choices"][0]["finish_reason"], "length");
        let filtered = json!({"status": "incomplete", "incomplete_details": {"reason": "content_filter"}, "output": []});
        assert_eq!(answer(&filtered, 1)["choices"][0]["finish_reason"], "content_filter");
    }

    #[test]
    fn a_stream_of_response_events_becomes_chunks() {
        let response =
            |status: &str, usage: Value| json!({"id": "resp_7", "object": "response", "status": status, "model": "gpt-5-codex", "output": [], "usage": usage});
        let events = [
            json!({"type": "response.created", "sequence_number": 0, "response": response("in_progress", Value::Null)}),
            json!({"type": "response.in_progress", "sequence_number": 1, "response": response("in_progress", Value::Null)}),
            json!({"type": "response.output_item.added", "sequence_number": 2, "output_index": 0, "item": {"id": "rs_1", "type": "reasoning", "summary": []}}),
            json!({"type": "response.output_item.done", "sequence_number": 3, "output_index": 0, "item": {"id": "rs_1", "type": "reasoning", "summary": []}}),
            json!({"type": "response.output_item.added", "sequence_number": 4, "output_index": 1,
                   "item": {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
            json!({"type": "response.content_part.added", "sequence_number": 5, "item_id": "msg_1", "output_index": 1, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": []}}),
            json!({"type": "response.output_text.delta", "sequence_number": 6, "item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": "Hel", "logprobs": []}),
            json!({"type": "response.output_text.delta", "sequence_number": 7, "item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": "lo", "logprobs": []}),
            json!({"type": "response.output_text.done", "sequence_number": 8, "item_id": "msg_1", "output_index": 1, "content_index": 0, "text": "Hello", "logprobs": []}),
            json!({"type": "response.output_item.done", "sequence_number": 9, "output_index": 1,
                   "item": {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]}}),
            json!({"type": "response.output_item.added", "sequence_number": 10, "output_index": 2,
                   "item": {"id": "fc_1", "type": "function_call", "status": "in_progress", "arguments": "", "call_id": "call_1", "name": "run"}}),
            json!({"type": "response.function_call_arguments.delta", "sequence_number": 11, "item_id": "fc_1", "output_index": 2, "delta": "{\"cmd\":"}),
            json!({"type": "response.function_call_arguments.delta", "sequence_number": 12, "item_id": "fc_1", "output_index": 2, "delta": "\"ls\"}"}),
            json!({"type": "response.function_call_arguments.done", "sequence_number": 13, "item_id": "fc_1", "output_index": 2, "arguments": "{\"cmd\":\"ls\"}"}),
            json!({"type": "response.output_item.done", "sequence_number": 14, "output_index": 2,
                   "item": {"id": "fc_1", "type": "function_call", "status": "completed", "arguments": "{\"cmd\":\"ls\"}", "call_id": "call_1", "name": "run"}}),
            json!({"type": "response.completed", "sequence_number": 15, "response": response("completed", json!({"input_tokens": 40,
                   "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 25, "output_tokens_details": {"reasoning_tokens": 10}, "total_tokens": 65}))}),
        ];
        let mut translator = OPENAI_RESPONSES.stream_translator("codex", 5).unwrap();
        let (mut all, mut done) = (Vec::new(), false);
        for event in &events {
            assert!(!done, "nothing comes after the end");
            let (chunks, end) = translator.translate(event["type"].as_str().unwrap(), event).unwrap();
            all.extend(chunks);
            done = end;
        }
        assert!(done);
        let deltas: Vec<Value> = all.iter().map(|c| c["choices"][0]["delta"].clone()).collect();
        assert_eq!(deltas[0], json!({"role": "assistant", "content": ""}));
        assert_eq!(
            (all[0]["id"].as_str(), all[0]["model"].as_str(), all[0]["object"].as_str()),
            (Some("resp_7"), Some("gpt-5-codex"), Some("chat.completion.chunk"))
        );
        assert_eq!((deltas[1]["content"].as_str(), deltas[2]["content"].as_str()), (Some("Hel"), Some("lo")));
        assert_eq!(deltas[3], json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "run", "arguments": ""}}]}));
        let args: String = deltas[4..6].iter().map(|d| d["tool_calls"][0]["function"]["arguments"].as_str().unwrap()).collect();
        assert_eq!(args, "{\"cmd\":\"ls\"}", "and output_item.done does not repeat them");
        assert_eq!(all[6]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(all[7]["choices"], json!([]));
        assert_eq!(
            all[7]["usage"],
            json!({"prompt_tokens": 40, "completion_tokens": 25, "total_tokens": 65,
                                            "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 10}})
        );
        assert_eq!(all.len(), 8);
        let mut cut = OPENAI_RESPONSES.stream_translator("m", 1).unwrap();
        let incomplete =
            json!({"type": "response.incomplete", "response": {"id": "r", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}});
        let (chunks, end) = cut.translate("response.incomplete", &incomplete).unwrap();
        assert!(end);
        assert_eq!((chunks[0]["choices"][0]["delta"]["role"].as_str(), chunks[1]["choices"][0]["finish_reason"].as_str()), (Some("assistant"), Some("length")));
    }

    #[test]
    fn a_failed_stream_is_an_upstream_error() {
        let mut translator = OPENAI_RESPONSES.stream_translator("m", 1).unwrap();
        let failed = json!({"type": "response.failed", "sequence_number": 3, "response": {"id": "resp_1", "status": "failed",
                            "error": {"code": "server_error", "message": "The model crashed."}}});
        assert!(matches!(translator.translate("response.failed", &failed), Err(StreamError::Upstream(m)) if m == "The model crashed."));
        let error = json!({"type": "error", "sequence_number": 1, "code": "rate_limit_exceeded", "message": "Slow down.", "param": null});
        assert!(matches!(translator.translate("error", &error), Err(StreamError::Upstream(m)) if m == "Slow down."));
        let stray = json!({"type": "response.function_call_arguments.delta", "item_id": "fc_9", "output_index": 9, "delta": "{}"});
        assert!(matches!(translator.translate("", &stray), Err(StreamError::Protocol(_))));
    }
}
