//! The response cache: a project or key that opts in (`cache: {ttl, mode: "exact"}`) is
//! answered from the store when it sends a request it sent before, byte for byte in meaning.
//!
//! The key is the owner (a user, workspace or project: entries are never shared across owners)
//! and the canonical request (model, messages, tools, parameters; not whether it streams), as
//! sorted-key JSON, hashed. An entry holds the canonical answer and what it cost, and lives in
//! the store with a TTL on both backends (expired entries are never read, and DynamoDB deletes
//! them). It is written in the same transaction as the request's settlement, so a miss costs no
//! extra round trip after the answer; a lookup is one read before the upstream, only for those
//! who opted in.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::store::{Attr, Item, Key, Store, TxOp};

/// The longest an entry may be kept: 30 days.
pub const MAX_TTL_SECS: u32 = 30 * 86_400;

/// How a project or key caches answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Seconds an answer is kept (1 to 2592000).
    pub ttl: u32,
    /// `exact`: the same canonical request.
    pub mode: CacheMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    Exact,
}

impl CacheSettings {
    pub fn validate(&self, param: &str) -> ApiResult<()> {
        if !(1..=MAX_TTL_SECS).contains(&self.ttl) {
            return Err(ApiError::invalid_param(param, format!("{param}.ttl must be from 1 to {MAX_TTL_SECS} seconds")));
        }
        Ok(())
    }
}

/// What the caller's `Cache-Control` asks of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Directive {
    #[default]
    Use,
    /// `no-cache`: answer from the upstream, and keep that answer.
    Refresh,
    /// `no-store`: neither read nor keep.
    Skip,
}

impl Directive {
    pub fn of(cache_control: Option<&str>) -> Directive {
        let Some(value) = cache_control else { return Directive::Use };
        let has = |name: &str| value.split(',').any(|d| d.trim().eq_ignore_ascii_case(name));
        if has("no-store") {
            Directive::Skip
        } else if has("no-cache") {
            Directive::Refresh
        } else {
            Directive::Use
        }
    }
}

/// A cached answer.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The canonical (chat completion) answer.
    pub answer: Value,
    /// What it cost when it was answered, in micro-dollars.
    pub cost_micros: i64,
}

/// The entry's key: the owner and the canonical request without how it is delivered.
pub fn key(owner: &str, endpoint: &str, canonical: &Map<String, Value>) -> Key {
    let mut request = canonical.clone();
    for delivery in ["stream", "stream_options"] {
        request.remove(delivery);
    }
    // Content that is only text reads the same as a string or as text parts (Anthropic's door
    // makes parts of what OpenAI's callers send as a string).
    for message in request.get_mut("messages").and_then(Value::as_array_mut).into_iter().flatten() {
        let Some(parts) = message.get("content").and_then(Value::as_array) else { continue };
        let texts: Option<Vec<&str>> = parts
            .iter()
            .map(|p| {
                (p.get("type").and_then(Value::as_str) == Some("text") && p.as_object().is_some_and(|o| o.len() == 2))
                    .then(|| p.get("text").and_then(Value::as_str))
                    .flatten()
            })
            .collect();
        if let Some(texts) = texts {
            message["content"] = Value::String(texts.join(""));
        }
    }
    // serde_json's maps keep their keys sorted, so equal requests print equal.
    let text = format!("{owner}\n{endpoint}\n{}", Value::Object(request));
    Key::new(format!("RCACHE#{}", crate::identity::sha256_hex(&text)), "RCACHE")
}

/// The entry under `key`, if one is there and unexpired at `now` (the gateway clock's epoch
/// seconds, which the store's own expiry, by the system clock, may not have reached).
pub async fn get(store: &dyn Store, key: &Key, now: i64) -> ApiResult<Option<Entry>> {
    let Some(item) = store.get(key).await? else { return Ok(None) };
    if crate::store::is_expired(&item, now) {
        return Ok(None);
    }
    let answer = item.get("answer").and_then(Attr::as_str).and_then(|a| serde_json::from_str(a).ok());
    Ok(answer.map(|answer| Entry { answer, cost_micros: item.get("cost").and_then(Attr::as_i64).unwrap_or(0) }))
}

/// The write that keeps `answer` under `key` until `expires_at` (epoch seconds), for the
/// settlement's transaction.
pub fn put(key: &Key, answer: &Value, cost_micros: i64, expires_at: i64) -> TxOp {
    let mut item = Item::new();
    item.insert(crate::store::PK.into(), Attr::S(key.pk.clone()));
    item.insert(crate::store::SK.into(), Attr::S(key.sk.clone()));
    item.insert("answer".into(), Attr::S(answer.to_string()));
    item.insert("cost".into(), Attr::N(cost_micros));
    item.insert(crate::store::TTL.into(), Attr::N(expires_at));
    TxOp::Put { item, cond: None }
}

/// Whether an answer can be kept and replayed: one choice, finished (not cut by an error).
pub fn storable(answer: &Value) -> bool {
    answer.get("choices").and_then(Value::as_array).is_some_and(|c| c.len() == 1 && c[0].get("finish_reason").is_some_and(Value::is_string))
}

/// A kept answer as the chunks of a stream, for a streamed request: the role, the text, the
/// tool calls, the finish and the usage, each its own chunk.
pub fn replay_chunks(answer: &Value) -> Vec<Value> {
    let head = |delta: Value, finish: Value| {
        serde_json::json!({"id": answer.get("id"), "object": "chat.completion.chunk", "created": answer.get("created"), "model": answer.get("model"),
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let choice = answer.pointer("/choices/0").cloned().unwrap_or_default();
    let mut chunks = vec![head(serde_json::json!({"role": "assistant", "content": ""}), Value::Null)];
    if let Some(text) = choice.pointer("/message/content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        chunks.push(head(serde_json::json!({"content": text}), Value::Null));
    }
    if let Some(calls) = choice.pointer("/message/tool_calls").and_then(Value::as_array).filter(|c| !c.is_empty()) {
        let indexed: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut c = c.clone();
                c["index"] = i.into();
                c
            })
            .collect();
        chunks.push(head(serde_json::json!({"tool_calls": indexed}), Value::Null));
    }
    chunks.push(head(serde_json::json!({}), choice.get("finish_reason").cloned().unwrap_or_else(|| "stop".into())));
    if let Some(usage) = answer.get("usage") {
        chunks.push(serde_json::json!({"id": answer.get("id"), "object": "chat.completion.chunk", "created": answer.get("created"),
                                       "model": answer.get("model"), "choices": [], "usage": usage}));
    }
    chunks
}

/// A streamed answer's canonical chunks put back together as the whole answer, so that a
/// streamed miss is kept as a whole one is.
#[derive(Default)]
pub struct Assembler {
    head: Option<(Value, Value, Value)>,
    text: String,
    calls: Vec<Value>,
    finish: Option<Value>,
    usage: Option<Value>,
    /// A chunk of another choice (`n` > 1), which is not kept.
    several: bool,
}

impl Assembler {
    pub fn push(&mut self, chunk: &Value) {
        if self.head.is_none() {
            let field = |name: &str| chunk.get(name).cloned().unwrap_or(Value::Null);
            self.head = Some((field("id"), field("model"), field("created")));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        for choice in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
            if choice.get("index").and_then(Value::as_i64).unwrap_or(0) != 0 {
                self.several = true;
                continue;
            }
            if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str) {
                self.text.push_str(text);
            }
            for call in choice.pointer("/delta/tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let i = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if i >= 128 {
                    continue;
                }
                while self.calls.len() <= i {
                    self.calls.push(serde_json::json!({"id": null, "type": "function", "function": {"name": null, "arguments": ""}}));
                }
                let kept = &mut self.calls[i];
                if let Some(id) = call.get("id").filter(|v| v.is_string()) {
                    kept["id"] = id.clone();
                }
                if let Some(name) = call.pointer("/function/name").filter(|v| v.is_string()) {
                    kept["function"]["name"] = name.clone();
                }
                if let Some(part) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    let arguments = format!("{}{part}", kept["function"]["arguments"].as_str().unwrap_or_default());
                    kept["function"]["arguments"] = Value::String(arguments);
                }
            }
            if let Some(reason) = choice.get("finish_reason").filter(|r| r.is_string()) {
                self.finish = Some(reason.clone());
            }
        }
    }

    /// The whole answer, when the stream finished with one choice.
    pub fn answer(self) -> Option<Value> {
        let (id, model, created) = self.head?;
        let finish = self.finish.filter(|_| !self.several)?;
        let mut message = serde_json::json!({"role": "assistant", "content": if self.text.is_empty() && !self.calls.is_empty() { Value::Null } else { Value::String(self.text) }});
        if !self.calls.is_empty() {
            message["tool_calls"] = Value::Array(self.calls);
        }
        let mut answer = serde_json::json!({"id": id, "object": "chat.completion", "created": created, "model": model,
                                            "choices": [{"index": 0, "message": message, "finish_reason": finish}]});
        if let Some(usage) = self.usage {
            answer["usage"] = usage;
        }
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_key_is_the_owner_and_the_request_but_not_how_it_is_delivered() {
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0});
        let b =
            json!({"temperature": 0, "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}], "model": "m"});
        let of = |owner: &str, v: &Value| key(owner, "chat", v.as_object().unwrap());
        assert_eq!(of("user#1", &a), of("user#1", &b), "the same request, streamed or not, in any key order");
        assert_ne!(of("user#1", &a), of("user#2", &a), "never shared across owners");
        assert_ne!(of("user#1", &a), of("user#1", &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 1})));
        let parts = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "temperature": 0});
        assert_eq!(of("user#1", &a), of("user#1", &parts), "text parts read as the string they make");
    }

    #[test]
    fn cache_control_says_whether_to_read_and_keep() {
        assert_eq!(Directive::of(None), Directive::Use);
        assert_eq!(Directive::of(Some("max-age=0, No-Cache")), Directive::Refresh);
        assert_eq!(Directive::of(Some("no-store")), Directive::Skip);
    }

    #[test]
    fn a_kept_answer_replays_as_chunks() {
        let answer = json!({"id": "c1", "created": 1, "model": "m", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
        assert!(storable(&answer));
        let chunks = replay_chunks(&answer);
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "hello");
        assert_eq!(chunks[2]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[4]["usage"]["total_tokens"], 5);
        assert!(!storable(&json!({"choices": [{"message": {}}, {"message": {}}]})), "several choices are not kept");
        // And back: the chunks assemble into the answer they came from.
        let mut assembler = Assembler::default();
        for chunk in &chunks {
            assembler.push(chunk);
        }
        assert_eq!(assembler.answer().unwrap(), answer);
    }
}
