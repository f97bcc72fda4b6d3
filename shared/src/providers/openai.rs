//! OpenAI and every OpenAI-compatible service (OpenRouter, Hugging Face, vLLM, Ollama, Groq,
//! Together, DeepSeek, Mistral): the canonical wire, so everything passes through as sent.

use secrecy::{ExposeSecret, SecretString};

use super::Provider;
use crate::canonical::Endpoint;

/// `responses`: OpenAI itself, which also serves the Responses API (the compatible services
/// serve chat completions).
pub struct OpenAi {
    pub responses: bool,
}

impl Provider for OpenAi {
    fn speaks_responses(&self) -> bool {
        self.responses
    }

    fn path(&self, endpoint: Endpoint) -> Option<&'static str> {
        Some(endpoint.path())
    }

    fn authenticate(&self, request: reqwest::RequestBuilder, key: Option<&SecretString>) -> reqwest::RequestBuilder {
        match key {
            Some(key) => request.bearer_auth(key.expose_secret()),
            None => request,
        }
    }
}
