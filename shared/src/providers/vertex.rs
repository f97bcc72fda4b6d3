//! Google's Gemini models on Vertex AI: Gemini's wire (`gemini`) at a project's regional
//! endpoint, authenticated with a service account's OAuth token (`google_auth`). A model's base
//! URL is the publisher's, as Vertex's REST reference writes it:
//! `https://<location>-aiplatform.googleapis.com/v1/projects/<project>/locations/<location>/publishers/google`;
//! requests go to `<base>/models/<model>:generateContent` and `:streamGenerateContent?alt=sse`.

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::{Provider, StreamTranslator, gemini};
use crate::canonical::Endpoint;

pub struct Vertex;

impl Provider for Vertex {
    fn path(&self, endpoint: Endpoint) -> Option<&'static str> {
        gemini::Gemini.path(endpoint)
    }

    fn model_url(&self, base: &str, endpoint: Endpoint, model: &str, stream: bool) -> Option<String> {
        gemini::Gemini.model_url(base, endpoint, model, stream)
    }

    /// The publisher's model list at the same endpoint (an authenticated read, nothing billed).
    fn probe_url(&self, base: &str) -> String {
        let origin = base.find("/v1").map_or(base, |i| &base[..i]);
        format!("{origin}/v1beta1/publishers/google/models?pageSize=1")
    }

    fn authenticate(&self, request: reqwest::RequestBuilder, _key: Option<&SecretString>) -> reqwest::RequestBuilder {
        request
    }

    fn google_oauth(&self) -> bool {
        true
    }

    fn wire_body(&self, canonical: &Map<String, Value>, model: &str, max_tokens: i64) -> Option<Result<Value, super::Unsupported>> {
        gemini::Gemini.wire_body(canonical, model, max_tokens)
    }

    fn answer_translator(&self) -> Option<fn(&Value, i64) -> Value> {
        gemini::Gemini.answer_translator()
    }

    fn stream_translator(&self, model: &str, created: i64) -> Option<Box<dyn StreamTranslator>> {
        gemini::Gemini.stream_translator(model, created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_the_publishers() {
        let base = "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme/locations/europe-west4/publishers/google";
        assert_eq!(
            Vertex.model_url(base, Endpoint::Chat, "gemini-2.5-flash", true).unwrap(),
            format!("{base}/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
        );
        assert_eq!(Vertex.probe_url(base), "https://europe-west4-aiplatform.googleapis.com/v1beta1/publishers/google/models?pageSize=1");
    }
}
