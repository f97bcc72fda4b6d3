//! The built-in `mock` provider: deterministic answers with real token counts and real
//! streaming, and no network, so the gateway answers requests the moment it starts. A token
//! is a whitespace-separated word. Directives in the last prompt text steer it (for tests and
//! demos):
//!
//! - `[mock:words=N]`    answer with exactly N words (before `max_tokens` cuts it)
//! - `[mock:delay_ms=N]` wait N ms before the answer and between streamed chunks
//! - `[mock:status=N]`   fail with HTTP status N
//! - `[mock:cached=N]`, `[mock:cache_write=N]`, `[mock:reasoning=N]` report N input tokens read
//!   from / written to the prompt cache (as OpenRouter reports them), or N reasoning tokens
//! - `[mock:tool]`       also call the first tool the request offers (arguments `{}`)
//!
//! Asked for JSON (`response_format` `json_object` or `json_schema`), it answers the same words
//! as one JSON object, `{"reply": "..."}`.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Local, Provider};
use crate::canonical::{Endpoint, Inspected};

/// The provider type: no upstream, no key; the answer is made here.
pub struct Mock;

impl Provider for Mock {
    fn path(&self, endpoint: Endpoint) -> Option<&'static str> {
        Some(endpoint.path())
    }

    fn authenticate(&self, request: reqwest::RequestBuilder, _key: Option<&SecretString>) -> reqwest::RequestBuilder {
        request
    }

    fn local_answer(&self, req: &Inspected, id: &str, created: i64, stream: bool) -> Option<Local> {
        let answer = answer(req);
        let outcome = match answer.fail_status {
            Some(status) => Err((status, "failure requested with [mock:status]".to_string())),
            None if stream => Ok(answer.chunks(req, id, created)),
            None => Ok(vec![answer.body(req, id, created)]),
        };
        Some(Local { delay: Duration::from_millis(answer.delay_ms), outcome })
    }
}

const PREAMBLE: &str = "This is a deterministic reply from the Tollgate mock provider.";
const FILLER: [&str; 8] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"];

fn directive(text: &str, name: &str) -> Option<i64> {
    let start = text.find(&format!("[mock:{name}="))? + name.len() + 7;
    let end = text[start..].find(']')? + start;
    text[start..end].trim().parse().ok()
}

/// The mock's answer to one request.
pub struct Answer {
    /// Each answer's words (every one of the `n` answers is the same).
    pub words: Vec<String>,
    /// The answers returned (`n`).
    pub returned: i64,
    /// The answers generated and billed (`best_of`, when larger).
    pub generated: i64,
    pub input_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub finish_reason: &'static str,
    /// The tool it calls, when asked to (`[mock:tool]`) and offered one.
    pub tool: Option<String>,
    pub delay_ms: u64,
    pub fail_status: Option<u16>,
}

pub fn answer(req: &Inspected) -> Answer {
    let last = req.texts.last().cloned().unwrap_or_default();
    let clean: Vec<String> = last.split_whitespace().filter(|w| !w.starts_with("[mock:")).map(str::to_string).collect();
    let mut words: Vec<String> = match directive(&last, "words") {
        Some(n) => (0..n.clamp(0, 100_000)).map(|i| FILLER[i as usize % FILLER.len()].to_string()).collect(),
        None => PREAMBLE.split_whitespace().map(str::to_string).chain(clean).collect(),
    };
    let mut finish_reason = "stop";
    if let Some(max) = req.max_output
        && words.len() as i64 > max
    {
        words.truncate(max as usize);
        finish_reason = "length";
    }
    let json = matches!(req.body.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str), Some("json_object" | "json_schema"));
    if json {
        // Each word escaped as a JSON string's content, the first and last carrying the object.
        words = words.iter().map(|w| Value::String(w.clone()).to_string().trim_matches('"').to_string()).collect();
        match words.len() {
            0 => words.push("{\"reply\": \"\"}".into()),
            n => {
                words[0] = format!("{{\"reply\": \"{}", words[0]);
                words[n - 1].push_str("\"}");
            }
        }
    }
    let returned = req.body.get("n").and_then(Value::as_i64).unwrap_or(1).max(1);
    let tool = last.contains("[mock:tool]").then(|| req.body.get("tools")?.get(0)?.pointer("/function/name")?.as_str().map(str::to_string)).flatten();
    if tool.is_some() && finish_reason == "stop" {
        finish_reason = "tool_calls";
    }
    Answer {
        words,
        returned,
        generated: req.choices.max(returned),
        input_tokens: req.input_words,
        cached_tokens: directive(&last, "cached").unwrap_or(0).clamp(0, req.input_words),
        cache_write_tokens: directive(&last, "cache_write").unwrap_or(0).clamp(0, req.input_words),
        reasoning_tokens: directive(&last, "reasoning").unwrap_or(0).max(0),
        finish_reason,
        tool,
        delay_ms: directive(&last, "delay_ms").unwrap_or(0).clamp(0, 60_000) as u64,
        fail_status: directive(&last, "status").and_then(|s| u16::try_from(s).ok()).filter(|s| (400..=599).contains(s)),
    }
}

impl Answer {
    pub fn output_tokens(&self) -> i64 {
        self.words.len() as i64 * self.generated + self.reasoning_tokens
    }

    pub fn usage(&self) -> Value {
        let mut usage = json!({
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens(),
            "total_tokens": self.input_tokens + self.output_tokens(),
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        });
        // OpenAI never reports cache writes; OpenRouter does, under this name.
        if self.cache_write_tokens > 0 {
            usage["prompt_tokens_details"]["cache_write_tokens"] = self.cache_write_tokens.into();
        }
        usage
    }

    /// The whole answer, as the OpenAI API shapes it for `endpoint`.
    pub fn body(&self, req: &Inspected, id: &str, created: i64) -> Value {
        let text = self.words.join(" ");
        let choices = |choice: &dyn Fn(i64) -> Value| (0..self.returned).map(choice).collect::<Vec<_>>();
        match req.endpoint {
            Endpoint::Chat | Endpoint::Responses => json!({
                "id": id, "object": "chat.completion", "created": created, "model": req.model,
                "choices": choices(&|i| {
                    let mut message = json!({"role": "assistant", "content": text});
                    if let Some(name) = &self.tool {
                        message["tool_calls"] = json!([{"id": "call_mock", "type": "function", "function": {"name": name, "arguments": "{}"}}]);
                    }
                    json!({"index": i, "message": message, "finish_reason": self.finish_reason, "logprobs": null})
                }),
                "usage": self.usage(),
            }),
            Endpoint::Completions => json!({
                "id": id, "object": "text_completion", "created": created, "model": req.model,
                "choices": choices(&|i| json!({"index": i, "text": text, "finish_reason": self.finish_reason, "logprobs": null})),
                "usage": self.usage(),
            }),
            Endpoint::Embeddings => {
                let dims = req.body.get("dimensions").and_then(Value::as_u64).unwrap_or(8).clamp(1, 4096) as usize;
                let data: Vec<Value> = embedding_inputs(req.body.get("input"))
                    .iter()
                    .enumerate()
                    .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embed(t, dims)}))
                    .collect();
                json!({
                    "object": "list", "model": req.model, "data": data,
                    "usage": {"prompt_tokens": self.input_tokens, "total_tokens": self.input_tokens},
                })
            }
        }
    }

    /// The streamed answer: for each of the `n` answers a role chunk, one chunk per word and
    /// the finishing chunk; then the usage chunk, as OpenAI streams them.
    pub fn chunks(&self, req: &Inspected, id: &str, created: i64) -> Vec<Value> {
        let chat = req.endpoint == Endpoint::Chat;
        let object = if chat { "chat.completion.chunk" } else { "text_completion" };
        let chunk = |choice: Value| json!({"id": id, "object": object, "created": created, "model": req.model, "choices": [choice]});
        let piece = |index: i64, text: String, finish: Option<&str>| {
            if chat {
                json!({"index": index, "delta": if finish.is_some() { json!({}) } else { json!({"content": text}) }, "finish_reason": finish})
            } else {
                json!({"index": index, "text": text, "finish_reason": finish})
            }
        };
        let mut out = Vec::with_capacity((self.words.len() + 2) * self.returned as usize + 1);
        for index in 0..self.returned {
            if chat {
                out.push(chunk(json!({"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": null})));
            }
            for (i, word) in self.words.iter().enumerate() {
                out.push(chunk(piece(index, if i == 0 { word.clone() } else { format!(" {word}") }, None)));
            }
            if let Some(name) = self.tool.as_ref().filter(|_| chat) {
                let call = json!({"index": 0, "id": "call_mock", "type": "function", "function": {"name": name, "arguments": "{}"}});
                out.push(chunk(json!({"index": index, "delta": {"tool_calls": [call]}, "finish_reason": null})));
            }
            out.push(chunk(piece(index, String::new(), Some(self.finish_reason))));
        }
        out.push(json!({"id": id, "object": object, "created": created, "model": req.model, "choices": [], "usage": self.usage()}));
        out
    }
}

/// The texts an embeddings request embeds, one per input: a string, each string of a list, a
/// list of token ids, or each list of a list of them (token ids embed as their JSON text).
fn embedding_inputs(input: Option<&Value>) -> Vec<String> {
    match input {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => vec![Value::Array(items.clone()).to_string()],
        Some(Value::Array(items)) => items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// A deterministic unit-length-ish vector from the text's hash.
fn embed(text: &str, dims: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(dims);
    let mut block = Sha256::digest(text.as_bytes());
    while out.len() < dims {
        for byte in block.iter() {
            if out.len() == dims {
                break;
            }
            out.push(f64::from(*byte) / 127.5 - 1.0);
        }
        block = Sha256::digest(block);
    }
    out
}
