//! OpenRouter: the canonical wire at `https://openrouter.ai/api/v1`, so bodies and stream
//! chunks pass through. Two things of its own (from its API reference): the app attribution
//! headers `HTTP-Referer` and `X-OpenRouter-Title` (`X-Title`, the older name, is sent too), and
//! the cost it charged, in credits (dollars), in every answer's `usage.cost`, which is what the
//! request is metered at (`pricing_source: provider`).

use secrecy::SecretString;

use super::{App, Provider, openai::OpenAi};
use crate::canonical::Endpoint;

pub struct OpenRouter;

impl Provider for OpenRouter {
    fn path(&self, endpoint: Endpoint) -> Option<&'static str> {
        OpenAi { responses: false }.path(endpoint)
    }

    fn authenticate(&self, request: reqwest::RequestBuilder, key: Option<&SecretString>) -> reqwest::RequestBuilder {
        OpenAi { responses: false }.authenticate(request, key)
    }

    /// Optional: without them OpenRouter serves the request all the same.
    fn attribute(&self, mut request: reqwest::RequestBuilder, app: &App) -> reqwest::RequestBuilder {
        if let Some(referer) = &app.referer {
            request = request.header("HTTP-Referer", referer.as_str());
        }
        if let Some(title) = &app.title {
            request = request.header("X-OpenRouter-Title", title.as_str()).header("X-Title", title.as_str());
        }
        request
    }

    fn reports_cost(&self) -> bool {
        true
    }
}
