//! Upstream provider types: how a request in the canonical shape (OpenAI's chat completions,
//! which every front door and the mock already speak) goes to a provider on its wire, and how
//! the provider's answer, stream and errors come back in the canonical shape. Routing,
//! reservation, settlement and usage records only ever see the canonical shape.
//!
//! A provider type is one module implementing `Provider`, registered in `of`. Where the
//! provider speaks the canonical shape itself (OpenAI and every OpenAI-compatible service),
//! bodies and stream chunks pass through untouched: `wire_body`, `canonical_answer` and
//! `stream_translator` return `None`. See docs/providers.md.

pub mod anthropic;
pub mod azure;
pub mod openai;

use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::proxy::request::Endpoint;

/// One provider type.
pub trait Provider: Send + Sync {
    /// Where an endpoint's requests go, under the model's base URL; `None` when the provider
    /// has no such endpoint.
    fn path(&self, endpoint: Endpoint) -> Option<&'static str>;

    /// The whole URL for an endpoint under the model's base URL (the base, a slash, the path,
    /// unless the type says otherwise).
    fn url(&self, base: &str, endpoint: Endpoint) -> Option<String> {
        Some(format!("{}/{}", base.trim_end_matches('/'), self.path(endpoint)?))
    }

    /// Adds the provider's authentication (and version) headers.
    fn authenticate(&self, request: reqwest::RequestBuilder, key: Option<&SecretString>) -> reqwest::RequestBuilder;

    /// The wire body for a canonical request to `model` whose answers may have up to
    /// `max_tokens` tokens each; `None` to send the canonical body as it is.
    fn wire_body(&self, canonical: &Map<String, Value>, model: &str, max_tokens: i64) -> Option<Value>;

    /// A whole answer in the canonical shape (`created`: its timestamp); `None` when it is in
    /// it already.
    fn canonical_answer(&self, wire: &Value, created: i64) -> Option<Value>;

    /// What the provider said went wrong, from an error answer's body.
    fn error_message(&self, body: &str) -> String;

    /// Turns the provider's stream events into canonical chunks; `None` when they are already.
    fn stream_translator(&self, model: &str, created: i64) -> Option<Box<dyn StreamTranslator>>;
}

/// A stream's translation, event by event.
pub trait StreamTranslator: Send {
    /// The canonical chunks for one event (`name` is the SSE event name, `data` its JSON), and
    /// whether the stream is over.
    fn translate(&mut self, name: &str, data: &Value) -> Result<(Vec<Value>, bool), String>;
}

/// The provider type a catalog model names: the registration of every type but the built-in
/// mock (which answers in the proxy itself).
pub fn of(provider: &str) -> &'static dyn Provider {
    match provider {
        "anthropic" => &anthropic::Anthropic,
        "azure" => &azure::Azure,
        // openai, openrouter, huggingface, openai-compatible: the canonical wire.
        _ => &openai::OpenAi,
    }
}

/// The canonical error envelope's message, or the body's start.
pub fn openai_error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect())
}
