//! OpenAI's Responses API as a front door (`POST /v1/responses`), the API the current openai
//! SDKs, Codex and most agent frameworks call first. From OpenAI's API reference:
//!
//! - request: `input` (a string, or items: `message` with `input_text`, `input_image`,
//!   `input_file` and `output_text` parts; `function_call`; `function_call_output`),
//!   `instructions`, `max_output_tokens`, `tools` (function tools), `tool_choice`,
//!   `text.format` (`text`, `json_object`, `json_schema`), `reasoning.effort`, `temperature`,
//!   `top_p`, `parallel_tool_calls`, `user`, `metadata`, `store`, `previous_response_id`,
//!   `stream`.
//! - answer: a `response` object whose `output` holds `message` items (`output_text` parts)
//!   and `function_call` items, `status` (`completed`, `incomplete` with its reason), and
//!   `usage` (`input_tokens_details.cached_tokens`, `output_tokens_details.reasoning_tokens`).
//!
//! To OpenAI itself a request goes natively (`Exchange::native`). To every other provider it is
//! translated over the canonical chat request; what has no canonical form (OpenAI's built-in
//! tools, stored prompts, background mode, file ids) is a 400 naming it, never dropped. The
//! stream's events are in `responses_stream`.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_param(param, message)
}

/// Parameters of a Responses request that only OpenAI can honour: a request with any of them
/// is served by OpenAI models alone.
const NATIVE_ONLY: [&str; 5] = ["prompt", "conversation", "top_logprobs", "max_tool_calls", "background"];

/// One Responses request on its way through the gateway.
#[derive(Debug)]
pub struct Exchange {
    /// The response's id, ours (`resp_...`): what `previous_response_id` and `GET` name.
    pub id: String,
    pub created_at: i64,
    /// The request's own parameters, echoed in the response object.
    pub request: Map<String, Value>,
    /// The conversation before this request: the items of the response it continues.
    pub history: Vec<Value>,
    /// This request's input items, each with an id.
    pub input: Vec<Value>,
    /// Whether the response is kept, for `GET` and for continuing it.
    pub store: bool,
    /// Why the request cannot go to a provider other than OpenAI (`None`: it can).
    pub untranslatable: Option<ApiError>,
}

/// A Responses body, read: its parameters and the response it continues, if any.
pub struct Parsed {
    pub body: Map<String, Value>,
    pub previous_response_id: Option<String>,
}

/// Reads a Responses body far enough to know what it continues.
pub fn parse(bytes: &[u8]) -> ApiResult<Parsed> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(body) = value else { return Err(ApiError::bad_request("invalid_body", "the body must be a JSON object")) };
    if body.get("model").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(invalid("model", "model is required: the id of a model from GET /v1/models"));
    }
    if body.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(invalid("background", "background responses are not served by this gateway; send the request without background"));
    }
    if body.get("conversation").is_some_and(|c| !c.is_null()) {
        return Err(invalid("conversation", "the Conversations API is not served by this gateway; continue a conversation with previous_response_id"));
    }
    let previous_response_id = match body.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
        Some(_) => return Err(invalid("previous_response_id", "previous_response_id must be the id of a stored response")),
    };
    if body.get("max_output_tokens").is_some_and(|v| !v.is_null() && v.as_i64().is_none_or(|n| n < 1)) {
        return Err(invalid("max_output_tokens", "max_output_tokens must be a positive integer"));
    }
    for (name, check) in [("store", Value::is_boolean as fn(&Value) -> bool), ("stream", Value::is_boolean), ("instructions", Value::is_string)] {
        if body.get(name).is_some_and(|v| !v.is_null() && !check(v)) {
            return Err(invalid(name, format!("{name} has the wrong type")));
        }
    }
    Ok(Parsed { body, previous_response_id })
}

impl Parsed {
    /// The exchange and its canonical chat request, the conversation so far being `history`.
    pub fn exchange(self, id: String, created_at: i64, history: Vec<Value>) -> ApiResult<(Exchange, Value)> {
        let mut body = self.body;
        let input = input_items(body.remove("input").unwrap_or(Value::Null))?;
        let store = body.get("store").and_then(Value::as_bool).unwrap_or(true);
        let mut exchange = Exchange { id, created_at, request: body, history, input, store, untranslatable: None };
        let canonical = match canonical(&exchange, true) {
            Ok(canonical) => canonical,
            Err(why) => {
                exchange.untranslatable = Some(why);
                // For the reservation alone: everything the request holds, counted, though only
                // OpenAI can serve it.
                canonical(&exchange, false)?
            }
        };
        Ok((exchange, canonical))
    }
}

/// `input` as a list of items, each with an id (a string is one user message).
fn input_items(input: Value) -> ApiResult<Vec<Value>> {
    let items = match input {
        Value::String(text) => vec![json!({"type": "message", "role": "user", "content": text})],
        Value::Array(items) if !items.is_empty() => items,
        _ => return Err(invalid("input", "input is required: a string, or a list of input items")),
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Object(mut item) = item else { return Err(invalid("input", "each input item must be an object")) };
            // An item with a role and no type is a message (EasyInputMessage).
            if !item.contains_key("type") && item.contains_key("role") {
                item.insert("type".into(), json!("message"));
            }
            let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
            let prefix = match kind {
                "message" => "msg",
                "function_call" => "fc",
                "function_call_output" => "fco",
                "" => return Err(invalid("input", "each input item needs a type (message, function_call, function_call_output, ...)")),
                _ => "item",
            };
            if !item.get("id").is_some_and(Value::is_string) {
                item.insert("id".into(), json!(format!("{prefix}_{}", uuid::Uuid::new_v4().simple())));
            }
            Ok(Value::Object(item))
        })
        .collect()
}

impl Exchange {
    /// The request as it goes to OpenAI itself: the whole conversation as input (OpenAI does not
    /// know our stored responses), not stored there (the gateway keeps it), for `model`.
    pub fn native(&self, model: &str, max_output_tokens: Option<i64>) -> Value {
        let mut body = self.request.clone();
        let mut items: Vec<Value> = self.history.iter().filter_map(native_history_item).collect();
        items.extend(self.input.iter().cloned());
        body.insert("input".into(), Value::Array(items));
        body.insert("model".into(), json!(model));
        body.insert("store".into(), json!(false));
        body.remove("previous_response_id");
        if let Some(n) = max_output_tokens {
            body.insert("max_output_tokens".into(), json!(n));
        }
        Value::Object(body)
    }

    /// Every item of the conversation once this response is done: what continuing it sends.
    pub fn conversation(&self, output: &[Value]) -> Vec<Value> {
        self.history.iter().chain(&self.input).chain(output).cloned().collect()
    }

    /// The response object around `output`, with the request's parameters echoed.
    pub fn response(&self, model: &Value, status: &str, output: Vec<Value>, usage: Option<Value>, extra: Option<(&str, Value)>) -> Value {
        let r = &self.request;
        let or = |name: &str, default: Value| r.get(name).filter(|v| !v.is_null()).cloned().unwrap_or(default);
        let mut response = json!({
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status, "model": model,
            "output": output, "usage": usage, "error": null, "incomplete_details": null,
            "instructions": or("instructions", Value::Null), "max_output_tokens": or("max_output_tokens", Value::Null),
            "metadata": or("metadata", json!({})), "parallel_tool_calls": or("parallel_tool_calls", json!(true)),
            "previous_response_id": or("previous_response_id", Value::Null), "reasoning": or("reasoning", json!({"effort": null, "summary": null})),
            "store": self.store, "temperature": or("temperature", json!(1.0)), "text": or("text", json!({"format": {"type": "text"}})),
            "tool_choice": or("tool_choice", json!("auto")), "tools": or("tools", json!([])), "top_p": or("top_p", json!(1.0)),
            "truncation": or("truncation", json!("disabled")), "user": or("user", Value::Null), "background": false,
        });
        if let Some((name, value)) = extra {
            response[name] = value;
        }
        response
    }

    /// OpenAI's own response, as ours: our id, and what the client asked about storing it (the
    /// upstream was told not to).
    pub fn adopt(&self, mut upstream: Value) -> Value {
        if let Some(object) = upstream.as_object_mut() {
            object.insert("id".into(), json!(self.id));
            object.insert("store".into(), json!(self.store));
            object.insert("previous_response_id".into(), self.request.get("previous_response_id").cloned().unwrap_or(Value::Null));
        }
        upstream
    }

    /// A canonical chat completion as a response object.
    pub fn translate(&self, canonical: &Value) -> Value {
        let message = canonical.pointer("/choices/0/message").cloned().unwrap_or_default();
        let mut output = Vec::new();
        if let Some(text) = message.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            output.push(message_item(&new_id("msg"), text, "completed"));
        }
        for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
            output.push(function_call_item(&new_id("fc"), call.get("id"), call.pointer("/function/name"), arguments, "completed"));
        }
        let finish = canonical.pointer("/choices/0/finish_reason").and_then(Value::as_str).unwrap_or("stop");
        let (status, extra) = status_of(finish);
        self.response(canonical.get("model").unwrap_or(&Value::Null), status, output, canonical.get("usage").map(usage), extra)
    }
}

/// A history item as OpenAI takes it when nothing is stored there: without the ids of items it
/// never kept, and without reasoning items that carry no encrypted content (OpenAI refuses
/// references to reasoning it did not store; the reasoning's text is the model's own, not the
/// conversation's).
fn native_history_item(item: &Value) -> Option<Value> {
    let mut item = item.clone();
    let object = item.as_object_mut()?;
    if object.get("type").and_then(Value::as_str) == Some("reasoning") && !object.contains_key("encrypted_content") {
        return None;
    }
    if object.get("type").and_then(Value::as_str) != Some("reasoning") {
        object.remove("id");
    }
    Some(item)
}

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "completed" { json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]) } else { json!([]) };
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

pub fn function_call_item(id: &str, call_id: Option<&Value>, name: Option<&Value>, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments, "status": status})
}

/// A canonical finish reason as the response's status, and its `incomplete_details`.
pub fn status_of(finish_reason: &str) -> (&'static str, Option<(&'static str, Value)>) {
    match finish_reason {
        "length" => ("incomplete", Some(("incomplete_details", json!({"reason": "max_output_tokens"})))),
        "content_filter" => ("incomplete", Some(("incomplete_details", json!({"reason": "content_filter"})))),
        _ => ("completed", None),
    }
}

/// Canonical usage as a response's usage.
pub fn usage(canonical: &Value) -> Value {
    let n = |p: &str| canonical.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let (input, output) = (n("/prompt_tokens"), n("/completion_tokens"));
    json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": n("/prompt_tokens_details/cached_tokens")},
           "output_tokens": output, "output_tokens_details": {"reasoning_tokens": n("/completion_tokens_details/reasoning_tokens")},
           "total_tokens": input + output})
}

/// The canonical chat request for an exchange. `strict`: what has no canonical form is an error
/// naming it; otherwise it is kept as it is, for the reservation to count.
fn canonical(exchange: &Exchange, strict: bool) -> ApiResult<Value> {
    let body = &exchange.request;
    if strict && let Some(name) = NATIVE_ONLY.iter().find(|n| body.get(**n).is_some_and(|v| !v.is_null())) {
        return Err(invalid(name, format!("{name} is OpenAI's own; only OpenAI models can serve this request")));
    }
    let mut messages = Vec::new();
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    for item in exchange.history.iter().chain(&exchange.input) {
        add_item(&mut messages, item, strict)?;
    }
    if messages.iter().all(|m| m["role"] == "system") {
        return Err(invalid("input", "input must hold at least one message or function call output"));
    }
    let mut out = json!({"model": body.get("model"), "messages": messages});
    let canonical = out.as_object_mut().expect("an object");
    if let Some(n) = body.get("max_output_tokens").filter(|v| !v.is_null()) {
        canonical.insert("max_tokens".into(), n.clone());
    }
    for name in ["temperature", "top_p", "stream", "parallel_tool_calls", "user"] {
        if let Some(v) = body.get(name).filter(|v| !v.is_null()) {
            canonical.insert(name.into(), v.clone());
        }
    }
    if let Some(effort) = body.get("reasoning").and_then(|r| r.get("effort")).filter(|e| !e.is_null()) {
        canonical.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(format) = body.get("text").and_then(|t| t.get("format")) {
        match format.get("type").and_then(Value::as_str) {
            Some("text") | None => {}
            Some("json_object") => {
                canonical.insert("response_format".into(), json!({"type": "json_object"}));
            }
            Some("json_schema") => {
                let mut schema = format.as_object().cloned().unwrap_or_default();
                schema.remove("type");
                canonical.insert("response_format".into(), json!({"type": "json_schema", "json_schema": schema}));
            }
            Some(other) => return Err(invalid("text.format", format!("text.format.type {other:?} is not one of text, json_object, json_schema"))),
        }
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty()) {
        let mut canonical_tools = Vec::new();
        for tool in tools {
            match tool.get("type").and_then(Value::as_str) {
                Some("function") => canonical_tools.push(json!({"type": "function", "function": {
                    "name": tool.get("name"), "description": tool.get("description"), "parameters": tool.get("parameters"), "strict": tool.get("strict")}})),
                other if strict => {
                    let kind = other.unwrap_or("(none)");
                    return Err(invalid(
                        "tools",
                        format!("the {kind} tool is OpenAI's own; only OpenAI models can serve it (function tools reach every provider)"),
                    ));
                }
                _ => canonical_tools.push(tool.clone()),
            }
        }
        canonical.insert("tools".into(), Value::Array(canonical_tools));
    }
    if let Some(choice) = body.get("tool_choice").filter(|c| !c.is_null()) {
        let mapped = match choice {
            Value::String(_) => choice.clone(),
            _ if choice.get("type").and_then(Value::as_str) == Some("function") => json!({"type": "function", "function": {"name": choice.get("name")}}),
            _ if strict => return Err(invalid("tool_choice", "tool_choice names one of OpenAI's own tools; only OpenAI models can serve it")),
            _ => choice.clone(),
        };
        canonical.insert("tool_choice".into(), mapped);
    }
    Ok(out)
}

/// One input item added to the canonical messages.
fn add_item(messages: &mut Vec<Value>, item: &Value, strict: bool) -> ApiResult<()> {
    match item.get("type").and_then(Value::as_str).unwrap_or_default() {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some(role @ ("user" | "assistant" | "system")) => role,
                Some("developer") => "system",
                _ => return Err(invalid("input", "a message's role must be user, assistant, system or developer")),
            };
            let content = match item.get("content") {
                Some(Value::String(text)) => json!(text),
                Some(Value::Array(parts)) => Value::Array(parts.iter().map(|p| part(p, strict)).collect::<ApiResult<_>>()?),
                _ => return Err(invalid("input", "a message's content must be a string or a list of content parts")),
            };
            // An assistant's text as a string: every provider's translation takes that.
            let content = if role == "assistant" { json!(text_of(&content)) } else { content };
            messages.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let call = json!({"id": item.get("call_id"), "type": "function",
                              "function": {"name": item.get("name"), "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("{}")}});
            // Calls made together are one assistant turn.
            match messages.last_mut() {
                Some(last) if last["role"] == "assistant" && last["tool_calls"].is_array() => last["tool_calls"].as_array_mut().expect("array").push(call),
                Some(last) if last["role"] == "assistant" => last["tool_calls"] = json!([call]),
                _ => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => text_of(other),
                None => String::new(),
            };
            messages.push(json!({"role": "tool", "tool_call_id": item.get("call_id"), "content": output}));
        }
        // The model's private reasoning from an earlier turn: its state, not the conversation's.
        "reasoning" => {}
        other if strict => {
            return Err(invalid("input", format!("input items of type {other:?} are OpenAI's own; only OpenAI models can serve them")));
        }
        _ => messages.push(json!({"role": "user", "content": text_of(item)})),
    }
    Ok(())
}

/// One content part in the canonical shape.
fn part(part: &Value, strict: bool) -> ApiResult<Value> {
    Ok(match part.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => json!({"type": "text", "text": part.get("text").and_then(Value::as_str).unwrap_or_default()}),
        Some("refusal") => json!({"type": "text", "text": part.get("refusal").and_then(Value::as_str).unwrap_or_default()}),
        Some("input_image") => match part.get("image_url").and_then(Value::as_str) {
            Some(url) => json!({"type": "image_url", "image_url": {"url": url, "detail": part.get("detail").cloned().unwrap_or(json!("auto"))}}),
            None => return Err(invalid("input", "input_image needs image_url (a URL or a data: URL); file ids are not served by this gateway")),
        },
        Some("input_file") => match part.get("file_data").and_then(Value::as_str) {
            Some(data) => json!({"type": "file", "file": {"file_data": data, "filename": part.get("filename")}}),
            None if strict => return Err(invalid("input", "input_file needs file_data (a data: URL); file ids and URLs are OpenAI's own")),
            None => json!({"type": "file", "file": {}}),
        },
        other if strict => return Err(invalid("input", format!("content parts of type {:?} are not supported", other.unwrap_or("(none)")))),
        _ => json!({"type": "text", "text": text_of(part)}),
    })
}

/// The text in a value (a string, or the text of its parts).
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().map(text_of).collect::<Vec<_>>().join(""),
        Value::Object(o) => o.get("text").or_else(|| o.get("refusal")).map(text_of).unwrap_or_default(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(body: Value, history: Vec<Value>) -> ApiResult<(Exchange, Value)> {
        let parsed = parse(body.to_string().as_bytes())?;
        parsed.exchange("resp_1".into(), 1, history)
    }

    #[test]
    fn a_responses_request_becomes_canonical() {
        let body = json!({"model": "m", "instructions": "be brief", "max_output_tokens": 50, "stream": true,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "weather?"}, {"type": "input_image", "image_url": "https://x/y.png"}]},
                      {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                      {"type": "function_call_output", "call_id": "c1", "output": "sunny"}],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}}});
        let (exchange, canonical) =
            exchange(body, vec![json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]})]).unwrap();
        assert!(exchange.untranslatable.is_none());
        assert_eq!(canonical["messages"][0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(canonical["messages"][1], json!({"role": "assistant", "content": "hi"}), "history comes first");
        assert_eq!(canonical["messages"][2]["content"][1]["image_url"]["url"], "https://x/y.png");
        assert_eq!(canonical["messages"][3]["tool_calls"][0]["function"]["name"], "weather");
        assert_eq!(canonical["messages"][4], json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"}));
        assert_eq!(canonical["max_tokens"], 50);
        assert_eq!(canonical["tools"][0]["function"]["name"], "weather");
        assert_eq!(canonical["response_format"]["json_schema"]["name"], "w");
        assert!(exchange.input.iter().all(|i| i["id"].is_string()), "every input item gets an id");
    }

    #[test]
    fn what_only_openai_serves_is_named_and_kept_for_openai() {
        let (exchange, canonical) = exchange(json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}), vec![]).unwrap();
        let why = exchange.untranslatable.as_ref().expect("web_search has no canonical form").to_string();
        assert!(why.contains("web_search"), "{why}");
        assert_eq!(canonical["tools"][0]["type"], "web_search", "counted for the reservation");
        let native = exchange.native("gpt-x", Some(10));
        assert_eq!(native["tools"][0]["type"], "web_search");
        assert_eq!((native["store"].clone(), native["max_output_tokens"].clone()), (json!(false), json!(10)));
        for bad in [json!({"model": "m"}), json!({"model": "m", "input": []}), json!({"model": "m", "input": "x", "background": true})] {
            assert!(exchange_err(bad));
        }
    }

    fn exchange_err(body: Value) -> bool {
        exchange(body, vec![]).is_err()
    }

    #[test]
    fn an_answer_becomes_a_response() {
        let (exchange, _) = exchange(json!({"model": "m", "input": "hi", "store": false}), vec![]).unwrap();
        let canonical = json!({"model": "m", "choices": [{"message": {"content": "hello", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1}}});
        let response = exchange.translate(&canonical);
        assert_eq!(response["id"], "resp_1");
        assert_eq!(response["status"], "incomplete");
        assert_eq!(response["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(response["output"][0]["content"][0]["text"], "hello");
        assert_eq!(response["output"][1]["call_id"], "c1");
        assert_eq!(response["usage"]["input_tokens_details"]["cached_tokens"], 2);
        assert_eq!(response["usage"]["output_tokens_details"]["reasoning_tokens"], 1);
        assert_eq!(response["usage"]["total_tokens"], 12);
        assert_eq!(response["store"], false);
    }
}
