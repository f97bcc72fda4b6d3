//! OpenAI and every OpenAI-compatible service (OpenRouter, Hugging Face, vLLM, Ollama, Groq,
//! Together, DeepSeek, Mistral): the canonical wire, so everything passes through as sent.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::{Provider, StreamTranslator};
use crate::proxy::request::Endpoint;

pub struct OpenAi;

impl Provider for OpenAi {
    fn path(&self, endpoint: Endpoint) -> Option<&'static str> {
        Some(endpoint.path())
    }

    fn authenticate(&self, request: reqwest::RequestBuilder, key: Option<&SecretString>) -> reqwest::RequestBuilder {
        match key {
            Some(key) => request.bearer_auth(key.expose_secret()),
            None => request,
        }
    }

    fn wire_body(&self, _: &Map<String, Value>, _: &str, _: i64) -> Option<Value> {
        None
    }

    fn canonical_answer(&self, _: &Value, _: i64) -> Option<Value> {
        None
    }

    fn error_message(&self, body: &str) -> String {
        super::openai_error_message(body)
    }

    fn stream_translator(&self, _: &str, _: i64) -> Option<Box<dyn StreamTranslator>> {
        None
    }
}
