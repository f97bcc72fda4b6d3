//! What the proxy needs to know about an OpenAI-shaped request before forwarding it: the model,
//! whether it streams, and the bounds of its worst case (input size, output cap); and of the
//! answer that comes back (`answer`).

use serde_json::{Map, Value};

pub mod answer;
pub mod extras;
pub mod media;

use crate::error::{ApiError, ApiResult};
use media::Media;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    /// OpenAI's Responses API, where an upstream takes it natively (the request is inspected
    /// as the canonical chat request it translates to).
    Responses,
}

impl Endpoint {
    /// The token scope this endpoint needs.
    pub fn scope(self) -> &'static str {
        match self {
            Endpoint::Chat | Endpoint::Responses => "chat",
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
            Endpoint::Responses => "responses",
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
    /// How many answers the upstream may generate, each up to `max_output`: `n`, or for
    /// completions `best_of` when larger (the upstream bills every candidate it generates).
    pub choices: i64,
    /// The UTF-8 bytes of every text the prompt is made of: message contents, roles, names,
    /// tool calls and their arguments, the prompt or input, and the definitions of tools and of
    /// the response format. A token is at least one byte of the text it stands for, so these
    /// bound the input tokens but for framing and media. JSON syntax is not counted.
    pub prompt_bytes: i64,
    /// Tools and functions offered (each rendered with some framing of its own).
    pub tools: i64,
    /// Image, file and audio parts, each reserved as its target provider documents it
    /// (`media`), whatever its bytes.
    pub media: Vec<Media>,
    /// UTF-8 bytes of every text input, plus the length of token-id inputs.
    pub input_bytes: i64,
    pub input_words: i64,
    pub messages: i64,
    /// The texts of the prompt, last one last (the mock provider answers it).
    pub texts: Vec<String>,
    /// What it asks for beyond tokens (built-in tools, a service tier, provider objects).
    pub extras: extras::Extras,
}

/// The most answers (`n`, `best_of`) one request may ask for, as OpenAI allows.
const MAX_CHOICES: i64 = 128;

/// Framing tokens a chat format adds per message (role markers, separators; OpenAI documents
/// 3, plus 1 for a name), per offered tool, and once to prime the reply.
pub const MESSAGE_FRAMING_TOKENS: i64 = 4;
pub const TOOL_FRAMING_TOKENS: i64 = 16;
pub const REPLY_FRAMING_TOKENS: i64 = 3;

impl Inspected {
    /// An upper bound on the input tokens `model` (its upstream id, on a provider of type
    /// `provider`, with this context window) can bill: no tokenizer makes more tokens than
    /// bytes of text, plus the framing chat formats add per message and per tool, plus each
    /// media part at what the provider documents for it (`media`); media no formula bounds,
    /// and anything past the context window, at the context window.
    pub fn worst_input_tokens(&self, provider: crate::provider_type::ProviderType, model: &str, context_window: i64) -> i64 {
        let window = context_window.max(1);
        // Saturating: every term comes from the request, and a wrapped sum would reserve less.
        let mut bound = self
            .prompt_bytes
            .saturating_add(self.messages.saturating_mul(MESSAGE_FRAMING_TOKENS))
            .saturating_add(self.tools.saturating_mul(TOOL_FRAMING_TOKENS))
            .saturating_add(REPLY_FRAMING_TOKENS);
        for part in &self.media {
            match media::worst_tokens(part, provider, model) {
                Some(tokens) => bound = bound.saturating_add(tokens),
                None => return window,
            }
        }
        bound.min(window)
    }

    /// An upper bound on the output tokens from a model that writes at most `cap` tokens per
    /// answer (its maxOutputTokens, else its context window): every answer at the request's
    /// `max_tokens`, else at the model's cap.
    pub fn worst_output_tokens(&self, cap: i64) -> i64 {
        self.output_tokens_each(cap).saturating_mul(self.choices)
    }

    /// The output cap of one answer.
    pub fn output_tokens_each(&self, cap: i64) -> i64 {
        if self.endpoint == Endpoint::Embeddings {
            return 0;
        }
        let cap = cap.max(1);
        self.max_output.map_or(cap, |m| m.min(cap))
    }

    /// Lowers the request's output cap to `max_tokens` (the body sent upstream says so too).
    pub fn lower_max_tokens(&mut self, max_tokens: i64) {
        self.max_output = Some(max_tokens);
        let name = if self.body.contains_key("max_completion_tokens") { "max_completion_tokens" } else { "max_tokens" };
        self.body.insert(name.into(), Value::from(max_tokens));
        if name == "max_completion_tokens" && self.body.contains_key("max_tokens") {
            self.body.insert("max_tokens".into(), Value::from(max_tokens));
        }
    }

    /// A fair guess at the input tokens when the upstream reports none (a cancelled stream).
    pub fn estimated_input_tokens(&self) -> i64 {
        self.input_words.max((self.input_bytes + 3) / 4)
    }
}

/// What the inputs hold: their texts and token ids (for the mock's answer and the estimate of a
/// cancelled request; the reservation counts `Text`).
#[derive(Default)]
struct Inputs {
    texts: Vec<String>,
    token_ids: i64,
}

fn collect(value: &Value, inputs: &mut Inputs) {
    match value {
        Value::String(s) => inputs.texts.push(s.clone()),
        Value::Number(_) => inputs.token_ids += 1,
        Value::Array(items) => items.iter().for_each(|v| collect(v, inputs)),
        // Content parts: {"type": "text", "text": "..."}; media parts have no text to answer.
        Value::Object(part) => {
            if let Some(text) = part.get("text") {
                collect(text, inputs);
            }
        }
        _ => {}
    }
}

/// The tags that name a part's or a call's kind: not text a provider renders. Any other `type`
/// value is counted as text.
const TAGS: [&str; 7] = ["text", "image_url", "file", "input_audio", "function", "refusal", "tool_call"];

/// What a prompt holds, as the reservation counts it.
#[derive(Default)]
struct Text {
    /// UTF-8 bytes of every string, 1 per number (a token id) or boolean.
    bytes: i64,
    media: Vec<Media>,
}

/// Adds a value's text and media to `text`: every string counts, whatever key holds it and
/// whatever tag its message or part carries (a message typed `file` is still read by the
/// provider), except the payload of a media part (sized as media by `media`) and the tags in
/// `TAGS`. JSON syntax and keys are not text.
fn walk(value: &Value, text: &mut Text) {
    match value {
        Value::String(s) => text.bytes = text.bytes.saturating_add(s.len() as i64),
        Value::Number(_) | Value::Bool(_) => text.bytes = text.bytes.saturating_add(1),
        Value::Array(items) => items.iter().for_each(|v| walk(v, text)),
        Value::Object(map) => {
            let kind = map.get("type").and_then(Value::as_str);
            for (key, v) in map {
                if key == "type" && v.as_str().is_some_and(|t| TAGS.contains(&t)) {
                    continue;
                }
                match (kind, key.as_str(), v) {
                    (Some("image_url"), "image_url", Value::String(url)) => text.media.push(media::image(url, None)),
                    (Some("image_url"), "image_url", Value::Object(image)) => {
                        let url = image.get("url").and_then(Value::as_str).unwrap_or_default();
                        text.media.push(media::image(url, image.get("detail").and_then(Value::as_str)));
                        image.iter().filter(|(k, _)| *k != "url").for_each(|(_, v)| walk(v, text));
                    }
                    (Some("file"), "file", Value::Object(file)) => {
                        match (file.get("file_data").and_then(Value::as_str), file.get("file_id")) {
                            (Some(data), _) => text.media.push(media::file(data)),
                            (None, Some(_)) => text.media.push(Media::Unseen),
                            (None, None) => {}
                        }
                        file.iter().filter(|(k, _)| !matches!(k.as_str(), "file_data" | "file_id")).for_each(|(_, v)| walk(v, text));
                    }
                    (Some("input_audio"), "input_audio", Value::Object(audio)) => {
                        text.media.push(media::audio(audio.get("data").and_then(Value::as_str).unwrap_or_default()));
                        audio.iter().filter(|(k, _)| *k != "data").for_each(|(_, v)| walk(v, text));
                    }
                    _ => walk(v, text),
                }
            }
        }
        Value::Null => {}
    }
}

/// The UTF-8 bytes of the text in a value (see `walk`), its media left out.
fn text_bytes(value: &Value) -> i64 {
    let mut text = Text::default();
    walk(value, &mut text);
    text.bytes
}

/// Definitions that are rendered into the prompt (tools, functions, the response format's
/// schema): their whole JSON, keys included, since providers render the schema's names too.
fn definition_bytes(body: &Map<String, Value>) -> (i64, i64) {
    let mut bytes = 0i64;
    let mut tools = 0i64;
    for name in ["tools", "functions", "response_format", "tool_choice", "function_call"] {
        if let Some(v) = body.get(name).filter(|v| !v.is_null()) {
            bytes = bytes.saturating_add(serde_json::to_string(v).map_or(0, |s| s.len() as i64));
            if matches!(name, "tools" | "functions") {
                tools = tools.saturating_add(v.as_array().map_or(1, |a| a.len() as i64));
            }
        }
    }
    (bytes, tools)
}

/// `n` and, for completions, `best_of`: how many answers the request may make.
fn choices(endpoint: Endpoint, body: &Map<String, Value>) -> ApiResult<i64> {
    let names: &[&str] = match endpoint {
        Endpoint::Chat | Endpoint::Responses => &["n"],
        Endpoint::Completions => &["n", "best_of"],
        Endpoint::Embeddings => &[],
    };
    let mut choices = 1;
    for name in names {
        match body.get(*name) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_i64() {
                Some(n) if (1..=MAX_CHOICES).contains(&n) => choices = choices.max(n),
                _ => return Err(ApiError::invalid_param(name, format!("{name} must be a whole number from 1 to {MAX_CHOICES}"))),
            },
        }
    }
    Ok(choices)
}

/// A request body as the client sent it, parsed once and inspected.
pub fn inspect(endpoint: Endpoint, bytes: &[u8]) -> ApiResult<Inspected> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")))?;
    inspect_value(endpoint, value)
}

/// A request already parsed (a front door's canonical request), inspected.
pub fn inspect_value(endpoint: Endpoint, value: Value) -> ApiResult<Inspected> {
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
                // Both given, they must agree: the body goes upstream as it came, and an upstream
                // may honour either, so a request reserved at the smaller could be answered at
                // the larger.
                Some(n) if n >= 1 && max_output.is_some_and(|m| m != n) => {
                    let m = max_output.unwrap_or(n);
                    return Err(ApiError::invalid_param(
                        name,
                        format!(
                            "max_tokens ({n}) and max_completion_tokens ({m}) disagree, and an upstream may honour either: send one of them, or the same in both"
                        ),
                    ));
                }
                Some(n) if n >= 1 => max_output = Some(n),
                _ => return Err(ApiError::invalid_param(name, format!("{name} must be a positive integer"))),
            },
        }
    }
    let choices = choices(endpoint, &body)?;
    let (mut inputs, mut messages, mut text) = (Inputs::default(), 0i64, Text::default());
    match endpoint {
        Endpoint::Chat | Endpoint::Responses => {
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
                walk(message, &mut text);
                if let Some(content) = m.get("content") {
                    collect(content, &mut inputs);
                }
            }
        }
        Endpoint::Completions => match body.get("prompt") {
            Some(p @ (Value::String(_) | Value::Array(_))) => {
                collect(p, &mut inputs);
                text.bytes = text_bytes(p).saturating_add(body.get("suffix").map_or(0, text_bytes));
            }
            _ => return Err(ApiError::invalid_param("prompt", "prompt is required: a string or a list of strings")),
        },
        Endpoint::Embeddings => match body.get("input") {
            Some(Value::String(t)) if t.is_empty() => return Err(ApiError::invalid_param("input", "input must not be empty")),
            Some(Value::Array(list)) if list.is_empty() => return Err(ApiError::invalid_param("input", "input must not be an empty list")),
            Some(i @ (Value::String(_) | Value::Array(_))) => {
                collect(i, &mut inputs);
                text.bytes = text_bytes(i);
            }
            _ => return Err(ApiError::invalid_param("input", "input is required: a string or a list of strings")),
        },
    }
    let Inputs { texts, token_ids } = inputs;
    let (definitions, tools) = definition_bytes(&body);
    let prompt_bytes = text.bytes.saturating_add(definitions);
    let media = text.media;
    let extras = if endpoint == Endpoint::Chat { extras::of_chat(&body) } else { extras::Extras::default() };
    let input_bytes = texts.iter().fold(token_ids, |sum, t| sum.saturating_add(t.len() as i64));
    let input_words = texts.iter().fold(token_ids, |sum, t| sum.saturating_add(t.split_whitespace().count() as i64));
    Ok(Inspected {
        endpoint,
        body,
        model,
        stream,
        client_wants_usage,
        max_output,
        choices,
        prompt_bytes,
        tools,
        media,
        input_bytes,
        input_words,
        messages,
        texts,
        extras,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{Endpoint, inspect};
    use crate::error::ApiError;
    use crate::provider_type::ProviderType;

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    fn refused(endpoint: Endpoint, body: Value) -> String {
        match inspect(endpoint, &bytes(&body)) {
            Err(ApiError::BadRequest { param: Some(param), .. }) => param,
            Err(other) => panic!("not a parameter error: {other:?}"),
            Ok(_) => panic!("accepted {body}"),
        }
    }

    #[test]
    fn every_answer_asked_for_is_in_the_worst_case() {
        let chat = |extra: Value| {
            let mut body = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            inspect(Endpoint::Chat, &bytes(&body)).unwrap()
        };
        assert_eq!(chat(json!({})).worst_output_tokens(4096), 10);
        assert_eq!(chat(json!({"n": 3})).worst_output_tokens(4096), 30);
        assert_eq!(chat(json!({"n": 3, "max_tokens": null})).worst_output_tokens(4096), 3 * 4096, "no cap: the context window, per answer");
        let completion = inspect(Endpoint::Completions, &bytes(&json!({"model": "m", "prompt": "p", "max_tokens": 10, "n": 2, "best_of": 5}))).unwrap();
        assert_eq!(completion.worst_output_tokens(4096), 50, "best_of answers are generated and billed");
        for n in [json!(0), json!(129), json!("2"), json!(1.5)] {
            assert_eq!(refused(Endpoint::Chat, json!({"model": "m", "n": n, "messages": [{"role": "user", "content": "hi"}]})), "n");
        }
        assert_eq!(refused(Endpoint::Completions, json!({"model": "m", "prompt": "p", "best_of": 0})), "best_of");
    }

    #[test]
    fn the_worst_input_covers_the_whole_body_and_each_image() {
        let tools = json!([{"type": "function", "function": {"name": "lookup", "description": "x".repeat(3000), "parameters": {"type": "object"}}}]);
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools});
        let req = inspect(Endpoint::Chat, &bytes(&body)).unwrap();
        assert!(req.worst_input_tokens(ProviderType::OpenAi, "gpt-4o", 1_000_000) > 3000, "tool definitions are input tokens");
        assert_eq!(req.worst_input_tokens(ProviderType::OpenAi, "gpt-4o", 100), 100, "no model takes more than its context window");

        let image = format!("data:image/png;base64,{}", "A".repeat(100_000));
        let body = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": image}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}},
        ]}]});
        let req = inspect(Endpoint::Chat, &bytes(&body)).unwrap();
        let worst = req.worst_input_tokens(ProviderType::OpenAi, "gpt-4o", 1_000_000);
        // gpt-4o: neither image's size is known (the data is no image), so each is its most,
        // 85 + 8 tiles of 170.
        assert!((2 * 1445..2 * 1445 + 100).contains(&worst), "an image counts as its formula says, not its bytes: {worst}");
        assert_eq!(req.worst_input_tokens(ProviderType::Gemini, "gemini-2.5-pro", 1_000_000), 1_000_000, "Gemini cannot size a link: the context window");
    }

    /// Run in CI with the release profile's arithmetic too (`scripts/test`), where an overflow
    /// would wrap silently instead of panicking.
    #[test]
    fn huge_requests_saturate_instead_of_overflowing() {
        let body = json!({"model": "m", "n": 128, "max_tokens": 1_i64 << 62, "messages": [{"role": "user", "content": "hi"}]});
        let req = inspect(Endpoint::Chat, &bytes(&body)).unwrap();
        let window = crate::catalog::MAX_CONTEXT_WINDOW;
        assert_eq!(req.worst_output_tokens(window), window * 128);
        assert_eq!(req.worst_output_tokens(i64::MAX), i64::MAX, "saturates, never wraps below zero");
        assert!(req.worst_input_tokens(ProviderType::OpenAi, "gpt-4o", i64::MAX) > 0);
        let cost =
            crate::money::cost_micros(req.worst_input_tokens(ProviderType::OpenAi, "gpt-4o", i64::MAX), req.worst_output_tokens(i64::MAX), i64::MAX, i64::MAX);
        assert_eq!(cost, i64::MAX);
        let charge = crate::limits::Charge { calls: 1, input_tokens: i64::MAX, output_tokens: i64::MAX, cost_micros: cost };
        assert_eq!(charge.amount(crate::limits::Metric::TotalTokens), i64::MAX);
    }

    #[test]
    fn lowering_max_tokens_rewrites_every_cap_the_body_has() {
        let mut req = inspect(
            Endpoint::Chat,
            &bytes(&json!({"model": "m", "max_completion_tokens": 900, "max_tokens": 900, "messages": [{"role": "user", "content": "hi"}]})),
        )
        .unwrap();
        req.lower_max_tokens(30);
        assert_eq!((req.body["max_completion_tokens"].as_i64(), req.body["max_tokens"].as_i64(), req.max_output), (Some(30), Some(30), Some(30)));
        let mut req = inspect(Endpoint::Chat, &bytes(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))).unwrap();
        req.lower_max_tokens(7);
        // Two caps that disagree are refused: the body goes upstream as it came, and the
        // upstream may honour the larger while the smaller was reserved.
        let two = inspect(Endpoint::Chat, &bytes(&json!({"model": "m", "max_completion_tokens": 100000, "max_tokens": 1, "messages": []})));
        let refused = two.err().expect("refused").to_string();
        assert!(refused.contains("max_tokens (1) and max_completion_tokens (100000) disagree"), "{refused}");
        assert_eq!((req.body["max_tokens"].as_i64(), req.body.get("max_completion_tokens")), (Some(7), None));
    }

    #[test]
    fn the_input_bound_is_the_text_not_the_json() {
        let plain = inspect(Endpoint::Chat, &bytes(&json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]}))).unwrap();
        assert_eq!(plain.worst_input_tokens(ProviderType::OpenAi, "gpt-4o", 1_000_000), 9 + 4 + 3);
        // Parameters and metadata are not prompt text; escapes count as the text they decode to.
        let padded = inspect(
            Endpoint::Chat,
            &bytes(&json!({"model": "m", "temperature": 0.5, "user": "u".repeat(500), "metadata": {"k": "v".repeat(500)},
            "messages": [{"role": "user", "content": "hello"}]})),
        )
        .unwrap();
        assert_eq!(padded.worst_input_tokens(ProviderType::OpenAi, "gpt-4o", 1_000_000), 16);
        // Tool calls and their results are prompt text.
        let tools = inspect(
            Endpoint::Chat,
            &bytes(&json!({"model": "m", "messages": [
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}]})),
        )
        .unwrap();
        assert_eq!(tools.worst_input_tokens(ProviderType::OpenAi, "gpt-4o", 1_000_000), (9 + 2 + 1 + 7) + (4 + 2 + 2) + 2 * 4 + 3);
        // Content parts count their text, not their tags.
        let parts =
            inspect(Endpoint::Chat, &bytes(&json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}))).unwrap();
        assert_eq!(parts.worst_input_tokens(ProviderType::OpenAi, "gpt-4o", 1_000_000), 16);
    }

    #[test]
    fn embeddings_need_something_to_embed() {
        assert_eq!(refused(Endpoint::Embeddings, json!({"model": "m", "input": ""})), "input");
        assert_eq!(refused(Endpoint::Embeddings, json!({"model": "m", "input": []})), "input");
        assert_eq!(inspect(Endpoint::Embeddings, &bytes(&json!({"model": "m", "input": [[1, 2], [3]]}))).unwrap().input_words, 3);
    }

    #[test]
    fn every_string_a_provider_may_read_counts_whatever_its_tag() {
        let big = "x".repeat(400_000);
        // A message typed `file` (or anything else) is still sent, and read, as text.
        for message in [
            json!({"role": "user", "type": "file", "content": big}),
            json!({"role": "user", "type": "image_url", "content": big}),
            json!({"role": "user", "content": [{"type": "file", "text": big}]}),
            json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}, "text": big}]}),
            json!({"role": "user", "content": "hi", "unknown_field": big}),
            json!({"role": "user", "content": [{"type": "made_up", "payload": big}]}),
            json!({"role": "user", "content": [{"type": "file", "file": {"filename": big, "file_data": "data:text/plain;base64,aGk="}}]}),
        ] {
            let req = inspect(Endpoint::Chat, &bytes(&json!({"model": "m", "messages": [message.clone()]}))).unwrap();
            assert!(req.worst_input_tokens(ProviderType::OpenAi, "gpt-4o", 10_000_000) >= 400_000, "{}", &message.to_string()[..80]);
        }
        // A file by id cannot be sized: the context window.
        let by_id = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]});
        assert_eq!(inspect(Endpoint::Chat, &bytes(&by_id)).unwrap().worst_input_tokens(ProviderType::OpenAi, "gpt-4o", 128_000), 128_000);
        // Audio by its decoded bytes.
        let audio = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "A".repeat(40_000), "format": "wav"}}]}]});
        assert!(inspect(Endpoint::Chat, &bytes(&audio)).unwrap().worst_input_tokens(ProviderType::OpenAi, "gpt-4o-audio-preview", 1_000_000) >= 30_000);
    }
}
