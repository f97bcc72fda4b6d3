//! Azure OpenAI: OpenAI's wire at a deployment's URL. A model's base URL is its deployment,
//! `https://<resource>.openai.azure.com/openai/deployments/<deployment>` (as the portal's
//! target URI shows it, optionally with its own `?api-version=`); requests go to
//! `<deployment>/chat/completions?api-version=<version>` with the key in the `api-key` header.
//! Bodies, answers and stream chunks are OpenAI's, so they pass through.

use secrecy::{ExposeSecret, SecretString};

use super::Provider;
use crate::canonical::Endpoint;

/// The data-plane API version used when the base URL names none (Azure's latest GA version).
pub const API_VERSION: &str = "2024-10-21";

pub struct Azure;

impl Provider for Azure {
    fn path(&self, endpoint: Endpoint) -> Option<&'static str> {
        Some(endpoint.path())
    }

    fn url(&self, base: &str, endpoint: Endpoint) -> Option<String> {
        let (deployment, query) = base.split_once('?').unwrap_or((base, ""));
        let version = query.split('&').find_map(|pair| pair.strip_prefix("api-version=")).filter(|v| !v.is_empty()).unwrap_or(API_VERSION);
        Some(format!("{}/{}?api-version={version}", deployment.trim_end_matches('/'), self.path(endpoint)?))
    }

    /// The resource's model list (a deployment's URL names its resource before `/openai/`).
    fn probe_url(&self, base: &str) -> String {
        let base = base.split_once('?').map_or(base, |(b, _)| b);
        let resource = base.find("/openai/").map_or(base.trim_end_matches('/'), |i| &base[..i]);
        format!("{resource}/openai/models?api-version={API_VERSION}")
    }

    fn authenticate(&self, request: reqwest::RequestBuilder, key: Option<&SecretString>) -> reqwest::RequestBuilder {
        match key {
            Some(key) => request.header("api-key", key.expose_secret()),
            None => request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_urls_carry_the_api_version() {
        let base = "https://acme.openai.azure.com/openai/deployments/gpt-4o/";
        assert_eq!(Azure.url(base, Endpoint::Chat).unwrap(), "https://acme.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21");
        let pinned = "https://acme.openai.azure.com/openai/deployments/emb?api-version=2023-05-15";
        assert_eq!(Azure.url(pinned, Endpoint::Embeddings).unwrap(), "https://acme.openai.azure.com/openai/deployments/emb/embeddings?api-version=2023-05-15");
    }
}
