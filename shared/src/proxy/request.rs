//! What the proxy needs to know about an OpenAI-shaped request before forwarding it: the model,
//! whether it streams, and the bounds of its worst case (input size, output cap).

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// The token scope this endpoint needs.
    pub fn scope(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }

    /// The path under an OpenAI-compatible base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat/completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

pub struct Inspected {
    pub endpoint: Endpoint,
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// Whether the client asked for the usage chunk at the end of a stream.
    pub client_wants_usage: bool,
    pub max_output: Option<i64>,
    /// UTF-8 bytes of every text input, plus the length of token-id inputs.
    pub input_bytes: i64,
    pub input_words: i64,
    pub messages: i64,
    /// The texts of the prompt, last one last (the mock provider answers it).
    pub texts: Vec<String>,
}

impl Inspected {
    /// An upper bound on the input tokens: no tokenizer makes more tokens than bytes, plus the
    /// per-message framing chat formats add.
    pub fn worst_input_tokens(&self) -> i64 {
        self.input_bytes + 4 * self.messages + 3
    }

    /// A fair guess at the input tokens when the upstream reports none (a cancelled stream).
    pub fn estimated_input_tokens(&self) -> i64 {
        self.input_words.max((self.input_bytes + 3) / 4)
    }
}

fn collect(value: &Value, texts: &mut Vec<String>, token_ids: &mut i64) {
    match value {
        Value::String(s) => texts.push(s.clone()),
        Value::Number(_) => *token_ids += 1,
        Value::Array(items) => items.iter().for_each(|v| collect(v, texts, token_ids)),
        // Content parts: {"type": "text", "text": "..."}; images and audio are not counted.
        Value::Object(part) => {
            if let Some(text) = part.get("text") {
                collect(text, texts, token_ids);
            }
        }
        _ => {}
    }
}

pub fn inspect(endpoint: Endpoint, bytes: &[u8]) -> ApiResult<Inspected> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(ApiError::bad_request("invalid_body", "the body must be a JSON object"));
    };
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(ApiError::invalid_param("model", "model is required: the id of a model from GET /v1/models")),
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid_param("stream", "stream must be true or false")),
    };
    if stream && endpoint == Endpoint::Embeddings {
        return Err(ApiError::invalid_param("stream", "embeddings cannot stream"));
    }
    let client_wants_usage = body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    let mut max_output = None;
    for name in ["max_completion_tokens", "max_tokens"] {
        match body.get(name) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_i64() {
                Some(n) if n >= 1 => {
                    max_output = Some(max_output.map_or(n, |m: i64| m.min(n)));
                }
                _ => return Err(ApiError::invalid_param(name, format!("{name} must be a positive integer"))),
            },
        }
    }
    let (mut texts, mut token_ids, mut messages) = (Vec::new(), 0i64, 0i64);
    match endpoint {
        Endpoint::Chat => {
            let Some(Value::Array(list)) = body.get("messages") else {
                return Err(ApiError::invalid_param("messages", "messages is required: a list of {role, content}"));
            };
            if list.is_empty() {
                return Err(ApiError::invalid_param("messages", "messages must not be empty"));
            }
            for message in list {
                let Some(m) = message.as_object() else {
                    return Err(ApiError::invalid_param("messages", "each message must be an object with role and content"));
                };
                messages += 1;
                if let Some(content) = m.get("content") {
                    collect(content, &mut texts, &mut token_ids);
                }
            }
        }
        Endpoint::Completions => match body.get("prompt") {
            Some(p @ (Value::String(_) | Value::Array(_))) => collect(p, &mut texts, &mut token_ids),
            _ => return Err(ApiError::invalid_param("prompt", "prompt is required: a string or a list of strings")),
        },
        Endpoint::Embeddings => match body.get("input") {
            Some(i @ (Value::String(_) | Value::Array(_))) => collect(i, &mut texts, &mut token_ids),
            _ => return Err(ApiError::invalid_param("input", "input is required: a string or a list of strings")),
        },
    }
    let input_bytes = texts.iter().map(|t| t.len() as i64).sum::<i64>() + token_ids;
    let input_words = texts.iter().map(|t| t.split_whitespace().count() as i64).sum::<i64>() + token_ids;
    Ok(Inspected { endpoint, body, model, stream, client_wants_usage, max_output, input_bytes, input_words, messages, texts })
}
