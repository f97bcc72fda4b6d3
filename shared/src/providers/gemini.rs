//! Google's Gemini API (AI Studio: `POST {base}/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, the key in `x-goog-api-key`). The same wire serves Vertex
//! AI (`vertex`), which differs only in its URL and its OAuth authentication. From the Gemini
//! API reference:
//!
//! - request: system messages become `systemInstruction`; turns become `contents` with roles
//!   `user` and `model` (consecutive turns of one role merged); text parts `{text}`; images and
//!   PDFs as data URLs `{inlineData: {mimeType, data}}`, `gs://` links `{fileData}` (other links
//!   are a 400: the API does not fetch them); an assistant's tool calls `{functionCall: {name,
//!   args}}`; tool results `{functionResponse: {name, response: {content}}}` (by the name of the
//!   call they answer); `generationConfig` holds `maxOutputTokens`, `temperature`, `topP`,
//!   `stopSequences`, `candidateCount`, and JSON output as `responseMimeType:
//!   application/json` with `responseJsonSchema`; tools are `functionDeclarations` (with
//!   `parametersJsonSchema`) and `toolConfig.functionCallingConfig` (`AUTO`, `ANY`, `NONE`,
//!   `allowedFunctionNames`).
//! - answer: `candidates[].content.parts` (text, `functionCall`), `finishReason` (`STOP`,
//!   `MAX_TOKENS`, `SAFETY`, `RECITATION`, ...), `usageMetadata` (`promptTokenCount` including
//!   `cachedContentTokenCount`; `candidatesTokenCount` and `thoughtsTokenCount`, both billed as
//!   output).
//! - stream: server-sent events, each a whole `GenerateContentResponse` holding the new parts;
//!   the last carries the finish reason and the usage.
//! - errors: `{"error": {"code", "message", "status"}}`: the message where the canonical
//!   envelope keeps it.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use super::{Provider, StreamError, StreamTranslator};
use crate::canonical::Endpoint;

pub struct Gemini;

/// A model's method URL under a base that ends in `.../models`' parent.
pub fn method_url(base: &str, model: &str, stream: bool) -> String {
    let method = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
    format!("{}/models/{model}:{method}", base.trim_end_matches('/'))
}

impl Provider for Gemini {
    fn path(&self, endpoint: Endpoint) -> Option<&'static str> {
        (endpoint == Endpoint::Chat).then_some("models")
    }

    fn model_url(&self, base: &str, endpoint: Endpoint, model: &str, stream: bool) -> Option<String> {
        self.path(endpoint)?;
        Some(method_url(base, model, stream))
    }

    fn authenticate(&self, request: reqwest::RequestBuilder, key: Option<&SecretString>) -> reqwest::RequestBuilder {
        match key {
            Some(key) => request.header("x-goog-api-key", key.expose_secret()),
            None => request,
        }
    }

    fn wire_body(&self, canonical: &Map<String, Value>, _model: &str, max_tokens: i64) -> Option<Result<Value, super::Unsupported>> {
        Some(request(canonical, max_tokens))
    }

    fn answer_translator(&self) -> Option<fn(&Value, i64) -> Value> {
        Some(answer)
    }

    fn stream_translator(&self, model: &str, created: i64) -> Option<Box<dyn StreamTranslator>> {
        Some(Box::new(Chunks::new(model, created)))
    }
}

/// A data URL's media type and base64 data.
fn data_url(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("data:")?.split_once(";base64,")
}

/// Canonical content as Gemini parts.
fn parts(content: &Value) -> Result<Vec<Value>, super::Unsupported> {
    let mut out = Vec::new();
    match content {
        Value::String(s) if !s.is_empty() => out.push(json!({"text": s})),
        Value::Array(items) => {
            for part in items {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => out.push(json!({"text": part.get("text").and_then(Value::as_str).unwrap_or_default()})),
                    Some("image_url") => {
                        let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or_default();
                        out.push(match data_url(url) {
                            Some((mime, data)) => json!({"inlineData": {"mimeType": mime, "data": data}}),
                            None if url.starts_with("gs://") => json!({"fileData": {"fileUri": url, "mimeType": mime_of(url)}}),
                            None => return Err(super::Unsupported::new("messages", "Gemini takes images inline (data: URLs) or as gs:// URIs, not web links")),
                        });
                    }
                    Some("file") => match part.pointer("/file/file_data").and_then(Value::as_str).and_then(data_url) {
                        Some((mime, data)) => out.push(json!({"inlineData": {"mimeType": mime, "data": data}})),
                        None => return Err(super::Unsupported::new("messages", "Gemini takes files inline, as data: URLs in file.file_data")),
                    },
                    other => return Err(super::Unsupported::new("messages", format!("no Gemini form for a {} content part", other.unwrap_or("(untyped)")))),
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// A gs:// object's media type, from its extension.
fn mime_of(url: &str) -> &'static str {
    match url.rsplit('.').next().map(str::to_ascii_lowercase).as_deref() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("pdf") => "application/pdf",
        _ => "image/jpeg",
    }
}

/// The Gemini request for a canonical chat request.
pub fn request(canonical: &Map<String, Value>, max_tokens: i64) -> Result<Value, super::Unsupported> {
    let mut system = Vec::new();
    let mut contents: Vec<(String, Vec<Value>)> = Vec::new();
    // Tool results name the function they answer; canonical ones name the call's id.
    let mut call_names = std::collections::HashMap::new();
    let mut push = |role: &str, new: Vec<Value>| super::push_turn(&mut contents, role, new);
    for message in canonical.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let content = message.get("content").unwrap_or(&Value::Null);
        match message.get("role").and_then(Value::as_str).unwrap_or("user") {
            "system" | "developer" => system.extend(parts(content)?),
            "assistant" => {
                let mut out = parts(content)?;
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let name = call.pointer("/function/name").cloned().unwrap_or(Value::Null);
                    call_names.insert(call.get("id").and_then(Value::as_str).unwrap_or_default().to_string(), name.clone());
                    let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                    let args: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
                    out.push(json!({"functionCall": {"name": name, "args": args}}));
                }
                push("model", out);
            }
            "tool" | "function" => {
                let id = message.get("tool_call_id").and_then(Value::as_str).unwrap_or_default();
                let name = call_names.get(id).cloned().or_else(|| message.get("name").cloned()).unwrap_or(Value::Null);
                let text = match content {
                    Value::String(s) => s.clone(),
                    other => other.as_array().into_iter().flatten().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
                };
                push("user", vec![json!({"functionResponse": {"name": name, "response": {"content": text}}})]);
            }
            _ => push("user", parts(content)?),
        }
    }
    let contents: Vec<Value> = contents.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect();
    let mut config = json!({"maxOutputTokens": max_tokens});
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP"), ("n", "candidateCount"), ("seed", "seed")] {
        if let Some(v) = canonical.get(from).filter(|v| !v.is_null()) {
            config[to] = v.clone();
        }
    }
    match canonical.get("stop") {
        Some(Value::String(s)) => config["stopSequences"] = json!([s]),
        Some(Value::Array(list)) if !list.is_empty() => config["stopSequences"] = Value::Array(list.clone()),
        _ => {}
    }
    match canonical.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_object") => config["responseMimeType"] = json!("application/json"),
        Some("json_schema") => {
            config["responseMimeType"] = json!("application/json");
            if let Some(schema) = canonical.get("response_format").and_then(|f| f.pointer("/json_schema/schema")) {
                config["responseJsonSchema"] = schema.clone();
            }
        }
        _ => {}
    }
    let mut out = json!({"contents": contents, "generationConfig": config});
    if !system.is_empty() {
        out["systemInstruction"] = json!({"parts": system});
    }
    let declarations: Vec<Value> = super::offered_functions(canonical)
        .map(|f| {
            let mut declaration = json!({"name": f.get("name"), "description": f.get("description").cloned().unwrap_or(json!(""))});
            if let Some(parameters) = f.get("parameters").filter(|p| !p.is_null()) {
                declaration["parametersJsonSchema"] = parameters.clone();
            }
            declaration
        })
        .collect();
    if !declarations.is_empty() {
        out["tools"] = json!([{"functionDeclarations": declarations}]);
        let calling = match canonical.get("tool_choice") {
            Some(Value::String(s)) if s == "required" => json!({"mode": "ANY"}),
            Some(Value::String(s)) if s == "none" => json!({"mode": "NONE"}),
            Some(Value::Object(named)) => json!({"mode": "ANY", "allowedFunctionNames": [named.get("function").and_then(|f| f.get("name"))]}),
            _ => json!({"mode": "AUTO"}),
        };
        out["toolConfig"] = json!({"functionCallingConfig": calling});
    }
    Ok(out)
}

fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// Gemini usage as canonical usage: thoughts are output (billed so), and the cached tokens are
/// part of the prompt's.
pub fn usage(metadata: &Value) -> Value {
    let n = |name: &str| metadata.get(name).and_then(Value::as_i64).unwrap_or(0);
    let (prompt, thoughts) = (n("promptTokenCount"), n("thoughtsTokenCount"));
    let output = n("candidatesTokenCount") + thoughts;
    json!({"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
           "prompt_tokens_details": {"cached_tokens": n("cachedContentTokenCount")}, "completion_tokens_details": {"reasoning_tokens": thoughts}})
}

/// A candidate's text and tool calls (`first_call`: the index the first call gets).
fn content_of(candidate: &Value, first_call: usize) -> (String, Vec<Value>) {
    let parts = candidate.pointer("/content/parts").and_then(Value::as_array).cloned().unwrap_or_default();
    // Thought summaries (`thought: true`) are the model's reasoning, not its answer.
    let text = parts.iter().filter(|p| p.get("thought") != Some(&Value::Bool(true))).filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
    let calls = parts
        .iter()
        .filter_map(|p| p.get("functionCall"))
        .enumerate()
        .map(|(i, call)| {
            let id = call.get("id").and_then(Value::as_str).map_or_else(|| format!("call_{}", uuid::Uuid::new_v4().simple()), str::to_string);
            json!({"index": first_call + i, "id": id, "type": "function",
                   "function": {"name": call.get("name"), "arguments": call.get("args").cloned().unwrap_or_else(|| json!({})).to_string()}})
        })
        .collect();
    (text, calls)
}

/// The canonical chat completion for a Gemini answer.
pub fn answer(wire: &Value, created: i64) -> Value {
    let choices: Vec<Value> = wire
        .get("candidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, candidate)| {
            let (text, calls) = content_of(candidate, 0);
            let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
            let called = !calls.is_empty();
            if called {
                message["tool_calls"] = Value::Array(calls.into_iter().map(|mut c| { c.as_object_mut().map(|o| o.remove("index")); c }).collect());
            }
            let reason = candidate.get("finishReason").and_then(Value::as_str).unwrap_or("STOP");
            json!({"index": candidate.get("index").and_then(Value::as_i64).unwrap_or(i as i64), "message": message, "finish_reason": finish_reason(reason, called)})
        })
        .collect();
    json!({
        "id": wire.get("responseId").and_then(Value::as_str).map_or_else(|| format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()), str::to_string),
        "object": "chat.completion", "created": created, "model": wire.get("modelVersion"),
        "choices": choices, "usage": usage(wire.get("usageMetadata").unwrap_or(&Value::Null)),
    })
}

/// A Gemini stream's responses as canonical chunks.
struct Chunks {
    id: String,
    model: String,
    created: i64,
    calls: usize,
}

impl Chunks {
    fn new(model: &str, created: i64) -> Self {
        Chunks { id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()), model: model.to_string(), created, calls: 0 }
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let mut chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model, "choices": choices});
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        chunk
    }
}

impl StreamTranslator for Chunks {
    fn translate(&mut self, _name: &str, data: &Value) -> Result<(Vec<Value>, bool), StreamError> {
        if let Some(message) = data.pointer("/error/message").and_then(Value::as_str) {
            return Err(StreamError::Upstream(message.to_string()));
        }
        let mut out = Vec::new();
        let candidate = data.pointer("/candidates/0").cloned().unwrap_or_default();
        let (text, calls) = content_of(&candidate, self.calls);
        if !text.is_empty() {
            out.push(self.chunk(json!([{"index": 0, "delta": {"content": text}, "finish_reason": null}]), None));
        }
        if !calls.is_empty() {
            self.calls += calls.len();
            out.push(self.chunk(json!([{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": null}]), None));
        }
        let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) else { return Ok((out, false)) };
        out.push(self.chunk(json!([{"index": 0, "delta": {}, "finish_reason": finish_reason(reason, self.calls > 0)}]), None));
        out.push(self.chunk(json!([]), Some(usage(data.get("usageMetadata").unwrap_or(&Value::Null)))));
        Ok((out, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canonical_conversation_becomes_a_gemini_request() {
        let canonical = json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "a cat"}],
            "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}], "tool_choice": {"type": "function", "function": {"name": "look"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}, "stop": "END"});
        let wire = request(canonical.as_object().unwrap(), 100).unwrap();
        assert_eq!(wire["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
        assert_eq!(wire["contents"][0]["parts"][1], json!({"inlineData": {"mimeType": "image/png", "data": "iVBO"}}));
        assert_eq!(wire["contents"][1], json!({"role": "model", "parts": [{"functionCall": {"name": "look", "args": {"x": 1}}}]}));
        assert_eq!(wire["contents"][2]["parts"][0], json!({"functionResponse": {"name": "look", "response": {"content": "a cat"}}}));
        assert_eq!(wire["generationConfig"]["maxOutputTokens"], 100);
        assert_eq!(wire["generationConfig"]["stopSequences"], json!(["END"]));
        assert_eq!(wire["generationConfig"]["responseJsonSchema"], json!({"type": "object"}));
        assert_eq!(wire["toolConfig"]["functionCallingConfig"], json!({"mode": "ANY", "allowedFunctionNames": ["look"]}));
        let linked = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]});
        assert!(request(linked.as_object().unwrap(), 10).is_err());
    }

    #[test]
    fn an_answer_and_a_stream_become_canonical() {
        let wire = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "thinking", "thought": true}, {"text": "Hi"}, {"functionCall": {"name": "f", "args": {"a": 1}}}]},
            "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 6, "cachedContentTokenCount": 3}, "modelVersion": "gemini-x"});
        let canonical = answer(&wire, 1);
        assert_eq!(canonical["choices"][0]["message"]["content"], "Hi");
        assert_eq!(canonical["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(canonical["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(canonical["usage"]["completion_tokens"], 10, "thoughts are output");
        assert_eq!(canonical["usage"]["completion_tokens_details"]["reasoning_tokens"], 6);
        assert_eq!(canonical["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
        let mut chunks = Gemini.stream_translator("m", 1).unwrap();
        let (first, done) = chunks.translate("", &json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]})).unwrap();
        assert!(!done);
        assert_eq!(first[0]["choices"][0]["delta"]["content"], "Hel");
        let (last, done) = chunks
            .translate(
                "",
                &json!({"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "MAX_TOKENS"}],
            "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 2}}),
            )
            .unwrap();
        assert!(done);
        assert_eq!(last[1]["choices"][0]["finish_reason"], "length");
        assert_eq!(last[2]["usage"]["total_tokens"], 4);
        assert!(chunks.translate("", &json!({"error": {"code": 429, "message": "Resource exhausted"}})).is_err());
    }
}
