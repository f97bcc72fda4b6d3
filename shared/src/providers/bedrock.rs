//! Amazon Bedrock's Converse and ConverseStream APIs (`POST /model/{modelId}/converse` and
//! `/converse-stream` on `https://bedrock-runtime.<region>.amazonaws.com`), signed with SigV4
//! (`sigv4`). From the Bedrock API reference:
//!
//! - the request is built from the Messages shape Anthropic's translation makes (the same
//!   turn rules: system apart, user and assistant alternating, tool results in user turns), its
//!   blocks renamed: `{text}`, `{image: {format, source: {bytes}}}`, `{document: {format, name,
//!   source: {bytes}}}`, `{toolUse: {toolUseId, name, input}}`, `{toolResult: {toolUseId,
//!   content: [{text}]}}`; `inferenceConfig` holds `maxTokens`, `temperature`, `topP`,
//!   `stopSequences`; tools are `toolConfig.tools[].toolSpec {name, description, inputSchema:
//!   {json}}` with `toolChoice` `auto`/`any`/`tool`. Images must be inline (Converse takes no
//!   web URLs) and JSON output modes have no Converse form: both are a 400 naming them.
//! - the answer: `output.message.content` blocks, `stopReason` (`end_turn`, `stop_sequence`,
//!   `max_tokens`, `tool_use`, `guardrail_intervened`, `content_filtered`), `usage`
//!   (`inputTokens` without the cache, `cacheReadInputTokens`, `cacheWriteInputTokens`).
//! - the stream: AWS's binary event-stream framing, one message per event named by its
//!   `:event-type` header: `messageStart`, `contentBlockStart` (a tool use), `contentBlockDelta`
//!   (`text` or `toolUse.input`), `contentBlockStop`, `messageStop` (the stop reason),
//!   `metadata` (usage, last); an `:message-type: exception` message when it fails.
//! - errors: `{"message": "..."}`.
//!
//! The model id (or inference profile id, such as `us.anthropic.claude-...`) is the model's
//! upstream id; the region is the base URL's (else `AWS_REGION`).

use secrecy::SecretString;
use serde_json::{Map, Value, json};

use super::Unsupported;
use super::{Framing, Provider, StreamError, StreamTranslator, anthropic};
use crate::canonical::Endpoint;

pub struct Bedrock;

/// What a model id keeps of itself in a URL path segment: RFC 3986's unreserved characters
/// (an inference profile's `:` and an ARN's `/` are escaped).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The region a Bedrock endpoint is in: its `?region=` (for endpoints whose host does not
/// say, such as a local or proxied one), else the label after `bedrock-runtime` in its host
/// (`bedrock-runtime.<region>.amazonaws.com`, VPC endpoints' `...bedrock-runtime.<region>.vpce...`),
/// else the environment's (`AWS_REGION`, `AWS_DEFAULT_REGION`), else us-east-1.
pub fn region(base: &str) -> String {
    let (address, query) = base.split_once('?').unwrap_or((base, ""));
    if let Some(region) = query.split('&').find_map(|pair| pair.strip_prefix("region=")).filter(|r| !r.is_empty()) {
        return region.to_string();
    }
    let host = address.split("://").nth(1).unwrap_or(address).split(['/', ':']).next().unwrap_or_default();
    let labels: Vec<&str> = host.split('.').collect();
    let named = labels.windows(2).find(|w| w[0].starts_with("bedrock")).map(|w| w[1]).filter(|r| r.contains('-'));
    match named {
        Some(region) => region.to_string(),
        None => std::env::var("AWS_REGION").or_else(|_| std::env::var("AWS_DEFAULT_REGION")).unwrap_or_else(|_| "us-east-1".into()),
    }
}

/// The endpoint without its `?region=`, or the environment region's when there is none.
fn base_or_default(base: &str) -> String {
    let address = base.split_once('?').map_or(base, |(a, _)| a);
    if address.is_empty() { format!("https://bedrock-runtime.{}.amazonaws.com", region(base)) } else { address.trim_end_matches('/').to_string() }
}

impl Provider for Bedrock {
    fn path(&self, endpoint: Endpoint) -> Option<&'static str> {
        (endpoint == Endpoint::Chat).then_some("converse")
    }

    fn model_url(&self, base: &str, endpoint: Endpoint, model: &str, stream: bool) -> Option<String> {
        self.path(endpoint)?;
        let model = percent_encoding::utf8_percent_encode(model, PATH_SEGMENT);
        Some(format!("{}/model/{model}/{}", base_or_default(base), if stream { "converse-stream" } else { "converse" }))
    }

    /// The control plane's model list, in the same region.
    fn probe_url(&self, base: &str) -> String {
        format!("{}/foundation-models", base_or_default(base).replacen("bedrock-runtime", "bedrock", 1))
    }

    fn authenticate(&self, request: reqwest::RequestBuilder, _key: Option<&SecretString>) -> reqwest::RequestBuilder {
        request
    }

    fn sigv4(&self, base: &str) -> Option<(&'static str, String)> {
        Some(("bedrock", region(base)))
    }

    fn framing(&self) -> Framing {
        Framing::AwsEventStream
    }

    fn wire_body(&self, canonical: &Map<String, Value>, model: &str, max_tokens: i64) -> Option<Result<Value, super::Unsupported>> {
        Some(request(canonical, model, max_tokens))
    }

    fn answer_translator(&self) -> Option<fn(&Value, i64) -> Value> {
        Some(answer)
    }

    fn error_message(&self, body: &str) -> String {
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("message").or_else(|| v.get("Message")).and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| body.chars().take(300).collect())
    }

    fn stream_translator(&self, model: &str, created: i64) -> Option<Box<dyn StreamTranslator>> {
        Some(Box::new(Chunks { id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()), model: model.to_string(), created, tools: vec![] }))
    }
}

/// An image's Converse format from its media type.
fn image_format(media_type: &str) -> Result<&str, Unsupported> {
    match media_type {
        "image/png" => Ok("png"),
        "image/jpeg" | "image/jpg" => Ok("jpeg"),
        "image/gif" => Ok("gif"),
        "image/webp" => Ok("webp"),
        other => Err(Unsupported::new("messages", format!("Bedrock takes png, jpeg, gif and webp images, not {other}"))),
    }
}

/// One Messages block as a Converse content block.
fn block(block: &Value) -> Result<Value, Unsupported> {
    let source = |b: &Value| b.pointer("/source/data").cloned().unwrap_or(Value::Null);
    Ok(match block.get("type").and_then(Value::as_str) {
        Some("text") => json!({"text": block["text"]}),
        Some("image") if block.pointer("/source/type").and_then(Value::as_str) == Some("base64") => {
            let format = image_format(block.pointer("/source/media_type").and_then(Value::as_str).unwrap_or_default())?;
            json!({"image": {"format": format, "source": {"bytes": source(block)}}})
        }
        Some("image") => return Err(Unsupported::new("messages", "Bedrock takes images inline only: send them as data: URLs (base64), not links")),
        Some("document") => json!({"document": {"format": "pdf", "name": "document", "source": {"bytes": source(block)}}}),
        Some("tool_use") => json!({"toolUse": {"toolUseId": block["id"], "name": block["name"], "input": block["input"]}}),
        Some("tool_result") => json!({"toolResult": {"toolUseId": block["tool_use_id"], "content": [{"text": block["content"]}]}}),
        other => return Err(Unsupported::new("messages", format!("no Converse form for a {} block", other.unwrap_or("(untyped)")))),
    })
}

/// The Converse request for a canonical chat request.
pub fn request(canonical: &Map<String, Value>, model: &str, max_tokens: i64) -> Result<Value, Unsupported> {
    if let Some(format) = canonical.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str).filter(|t| *t != "text") {
        return Err(Unsupported::new(
            "response_format",
            format!("Bedrock's Converse API has no {format} response format; ask for JSON in the prompt or use a tool"),
        ));
    }
    let messages = anthropic::request(canonical, model, max_tokens);
    let converse_blocks = |blocks: &Value| blocks.as_array().into_iter().flatten().map(block).collect::<Result<Vec<_>, _>>();
    let turns = messages["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|turn| Ok(json!({"role": turn["role"], "content": converse_blocks(&turn["content"])?})))
        .collect::<Result<Vec<_>, Unsupported>>()?;
    let mut config = json!({"maxTokens": messages["max_tokens"]});
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP"), ("stop_sequences", "stopSequences")] {
        if let Some(v) = messages.get(from) {
            config[to] = v.clone();
        }
    }
    let mut out = json!({"messages": turns, "inferenceConfig": config});
    if let Some(system) = messages.get("system") {
        out["system"] = Value::Array(system.as_array().into_iter().flatten().map(|b| json!({"text": b["text"]})).collect());
    }
    if let Some(tools) = messages.get("tools").and_then(Value::as_array) {
        let specs: Vec<Value> = tools
            .iter()
            .map(|t| json!({"toolSpec": {"name": t["name"], "description": t.get("description").cloned().unwrap_or(json!("")), "inputSchema": {"json": t["input_schema"]}}}))
            .collect();
        out["toolConfig"] = json!({"tools": specs});
        // Converse has no "none": offered tools are then left to the model (auto).
        match messages.pointer("/tool_choice/type").and_then(Value::as_str) {
            Some("any") => out["toolConfig"]["toolChoice"] = json!({"any": {}}),
            Some("tool") => out["toolConfig"]["toolChoice"] = json!({"tool": {"name": messages.pointer("/tool_choice/name")}}),
            _ => {}
        }
    }
    Ok(out)
}

fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Converse usage as the canonical shape counts it (prompt tokens include the cache's).
fn usage(u: &Value) -> Value {
    let n = |name: &str| u.get(name).and_then(Value::as_i64).unwrap_or(0);
    anthropic::usage(n("inputTokens"), n("outputTokens"), n("cacheReadInputTokens"), n("cacheWriteInputTokens"), 0)
}

/// The canonical chat completion for a Converse answer.
pub fn answer(wire: &Value, created: i64) -> Value {
    let content = wire.pointer("/output/message/content").and_then(Value::as_array).cloned().unwrap_or_default();
    let text: String = content.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
    let calls: Vec<Value> = content
        .iter()
        .filter_map(|b| b.get("toolUse"))
        .map(|t| json!({"id": t["toolUseId"], "type": "function", "function": {"name": t["name"], "arguments": t.get("input").cloned().unwrap_or_else(|| json!({})).to_string()}}))
        .collect();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let stop = wire.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn");
    json!({
        "id": format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()), "object": "chat.completion", "created": created, "model": wire.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(stop)}],
        "usage": usage(wire.get("usage").unwrap_or(&Value::Null)),
    })
}

/// A ConverseStream's events as canonical chunks.
struct Chunks {
    id: String,
    model: String,
    created: i64,
    /// Content block index of each tool use, in order: its position is its tool call index.
    tools: Vec<i64>,
}

impl Chunks {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
    }
}

impl StreamTranslator for Chunks {
    fn translate(&mut self, name: &str, data: &Value) -> Result<(Vec<Value>, bool), StreamError> {
        let index = data.get("contentBlockIndex").and_then(Value::as_i64).unwrap_or(0);
        Ok(match name {
            "messageStart" => (vec![self.chunk(json!({"role": "assistant", "content": ""}), None)], false),
            "contentBlockStart" => match data.pointer("/start/toolUse") {
                Some(tool) => {
                    self.tools.push(index);
                    let call = json!({"index": self.tools.len() - 1, "id": tool["toolUseId"], "type": "function", "function": {"name": tool["name"], "arguments": ""}});
                    (vec![self.chunk(json!({"tool_calls": [call]}), None)], false)
                }
                None => (vec![], false),
            },
            "contentBlockDelta" => {
                if let Some(text) = data.pointer("/delta/text").and_then(Value::as_str) {
                    (vec![self.chunk(json!({"content": text}), None)], false)
                } else if let Some(input) = data.pointer("/delta/toolUse/input").and_then(Value::as_str) {
                    let at = self.tools.iter().position(|i| *i == index).ok_or(StreamError::Protocol("a tool use delta for a block that did not start"))?;
                    (vec![self.chunk(json!({"tool_calls": [{"index": at, "function": {"arguments": input}}]}), None)], false)
                } else {
                    // Reasoning content and later additions carry nothing canonical.
                    (vec![], false)
                }
            }
            "messageStop" => {
                let stop = data.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn");
                (vec![self.chunk(json!({}), Some(finish_reason(stop)))], false)
            }
            "metadata" => {
                let usage = usage(data.get("usage").unwrap_or(&Value::Null));
                let chunk =
                    json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model, "choices": [], "usage": usage});
                (vec![chunk], true)
            }
            _ => (vec![], false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canonical_conversation_becomes_a_converse_request() {
        let canonical = json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "a cat"}],
            "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}], "tool_choice": "required",
            "temperature": 0.2, "stop": ["END"]});
        let wire = request(canonical.as_object().unwrap(), "anthropic.claude-3-haiku", 100).unwrap();
        assert_eq!(wire["system"], json!([{"text": "Be brief."}]));
        assert_eq!(wire["messages"][0]["content"][1], json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}));
        assert_eq!(wire["messages"][1]["content"][0], json!({"toolUse": {"toolUseId": "t1", "name": "look", "input": {"x": 1}}}));
        assert_eq!(wire["messages"][2]["content"][0], json!({"toolResult": {"toolUseId": "t1", "content": [{"text": "a cat"}]}}));
        assert_eq!(wire["inferenceConfig"], json!({"maxTokens": 100, "temperature": 0.2, "stopSequences": ["END"]}));
        assert_eq!(wire["toolConfig"]["toolChoice"], json!({"any": {}}));
        let linked = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]});
        assert!(request(linked.as_object().unwrap(), "m", 10).unwrap_err().message.contains("inline"));
        let json_mode = json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}});
        assert!(request(json_mode.as_object().unwrap(), "m", 10).is_err());
    }

    #[test]
    fn urls_carry_the_model_and_the_region() {
        let base = "https://bedrock-runtime.eu-west-1.amazonaws.com";
        assert_eq!(region(base), "eu-west-1");
        assert_eq!(region("https://vpce-1.bedrock-runtime.us-west-2.vpce.amazonaws.com"), "us-west-2");
        assert_eq!(region("http://127.0.0.1:9000/?region=ap-south-1"), "ap-south-1");
        assert_eq!(
            Bedrock.model_url("http://127.0.0.1:9000/?region=ap-south-1", Endpoint::Chat, "m", false).unwrap(),
            "http://127.0.0.1:9000/model/m/converse"
        );
        assert_eq!(
            Bedrock.model_url(base, Endpoint::Chat, "us.anthropic.claude-3-5-haiku-20241022-v1:0", true).unwrap(),
            "https://bedrock-runtime.eu-west-1.amazonaws.com/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
        );
        assert_eq!(Bedrock.probe_url(base), "https://bedrock.eu-west-1.amazonaws.com/foundation-models");
        assert!(Bedrock.model_url(base, Endpoint::Embeddings, "m", false).is_none());
    }

    #[test]
    fn an_answer_and_a_stream_become_canonical() {
        let wire = json!({"output": {"message": {"role": "assistant", "content": [{"text": "Hi"}, {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}}]}},
            "stopReason": "tool_use", "usage": {"inputTokens": 10, "outputTokens": 4, "totalTokens": 19, "cacheReadInputTokens": 3, "cacheWriteInputTokens": 2}});
        let canonical = answer(&wire, 1);
        assert_eq!(canonical["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(canonical["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(canonical["usage"]["prompt_tokens"], 15);
        assert_eq!(canonical["usage"]["prompt_tokens_details"], json!({"cached_tokens": 3, "cache_write_tokens": 2}));
        let mut chunks = Bedrock.stream_translator("m", 1).unwrap();
        let mut out = vec![];
        for (name, data) in [
            ("messageStart", json!({"role": "assistant"})),
            ("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}})),
            ("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}})),
            ("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":1}"}}})),
            ("messageStop", json!({"stopReason": "tool_use"})),
        ] {
            let (chunks, done) = chunks.translate(name, &data).unwrap();
            assert!(!done);
            out.extend(chunks);
        }
        assert_eq!(out[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(out[2]["choices"][0]["delta"]["tool_calls"][0]["id"], "t1");
        assert_eq!(out[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(out[4]["choices"][0]["finish_reason"], "tool_calls");
        let (last, done) = chunks.translate("metadata", &json!({"usage": {"inputTokens": 5, "outputTokens": 2}})).unwrap();
        assert!(done);
        assert_eq!(last[0]["usage"]["total_tokens"], 7);
    }
}
