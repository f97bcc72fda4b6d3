//! The one list of provider types. Everything else that names types (the catalog's validation,
//! users' own providers, the dashboard's choice, each type's default endpoint) is derived from
//! it, and a name outside it is an error, never a silent fallback.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A provider type: how its requests are made (its `Provider`), and where they go by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ProviderType {
    /// The built-in deterministic provider: no upstream, no key.
    #[serde(rename = "mock")]
    Mock,
    #[serde(rename = "openai")]
    OpenAi,
    /// Any endpoint that speaks OpenAI's chat completions (vLLM, Ollama, LM Studio, ...).
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    #[serde(rename = "anthropic")]
    Anthropic,
    #[serde(rename = "openrouter")]
    OpenRouter,
    #[serde(rename = "huggingface")]
    HuggingFace,
    /// Azure OpenAI: the base URL is the deployment's,
    /// `https://<resource>.openai.azure.com/openai/deployments/<name>`.
    #[serde(rename = "azure")]
    Azure,
    /// Amazon Bedrock: the base URL is the region's runtime endpoint,
    /// `https://bedrock-runtime.<region>.amazonaws.com` (without one, AWS_REGION's).
    #[serde(rename = "bedrock")]
    Bedrock,
    #[serde(rename = "gemini")]
    Gemini,
    /// Vertex AI: the base URL is the publisher's,
    /// `https://<location>-aiplatform.googleapis.com/v1/projects/<project>/locations/<location>/publishers/google`.
    #[serde(rename = "vertex")]
    Vertex,
}

impl ProviderType {
    pub const ALL: [ProviderType; 10] = [
        ProviderType::Mock,
        ProviderType::OpenAi,
        ProviderType::OpenAiCompatible,
        ProviderType::Anthropic,
        ProviderType::OpenRouter,
        ProviderType::HuggingFace,
        ProviderType::Azure,
        ProviderType::Bedrock,
        ProviderType::Gemini,
        ProviderType::Vertex,
    ];

    /// Its name in the API and in stored items.
    pub fn name(self) -> &'static str {
        match self {
            ProviderType::Mock => "mock",
            ProviderType::OpenAi => "openai",
            ProviderType::OpenAiCompatible => "openai-compatible",
            ProviderType::Anthropic => "anthropic",
            ProviderType::OpenRouter => "openrouter",
            ProviderType::HuggingFace => "huggingface",
            ProviderType::Azure => "azure",
            ProviderType::Bedrock => "bedrock",
            ProviderType::Gemini => "gemini",
            ProviderType::Vertex => "vertex",
        }
    }

    /// The type a name stands for; `None` for any other name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The type a name stands for, or a 400 on `param` listing the names (`only`: the types
    /// allowed there).
    pub fn parse_param(name: &str, param: &str, only: &[ProviderType]) -> crate::error::ApiResult<Self> {
        Self::parse(name).filter(|t| only.contains(t)).ok_or_else(|| {
            let names: Vec<&str> = only.iter().map(|t| t.name()).collect();
            crate::error::ApiError::invalid_param(param, format!("unknown {param} {name:?}; use one of {}", names.join(", ")))
        })
    }

    /// Where its requests go when a model names no base URL.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderType::OpenAi => Some("https://api.openai.com/v1"),
            ProviderType::Anthropic => Some("https://api.anthropic.com"),
            ProviderType::OpenRouter => Some("https://openrouter.ai/api/v1"),
            ProviderType::HuggingFace => Some("https://router.huggingface.co/v1"),
            ProviderType::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
            ProviderType::Mock | ProviderType::OpenAiCompatible | ProviderType::Azure | ProviderType::Bedrock | ProviderType::Vertex => None,
        }
    }

    /// Whether a model of this type must name its base URL (it has no default, and an
    /// upstream). Bedrock's endpoint can come from the region alone.
    pub fn needs_base_url(self) -> bool {
        matches!(self, ProviderType::OpenAiCompatible | ProviderType::Azure | ProviderType::Vertex)
    }

    /// Whether a user may have a provider of their own of this type (every upstream type).
    pub fn user_may_own(self) -> bool {
        self != ProviderType::Mock
    }

    /// Whether the gateway's own cloud identity (the AWS chain, Google's default credentials)
    /// could serve it: a user's provider of such a type must carry credentials of its own.
    pub fn has_ambient_identity(self) -> bool {
        matches!(self, ProviderType::Bedrock | ProviderType::Vertex)
    }

    /// The types a user's own provider may have.
    pub fn user_owned() -> Vec<ProviderType> {
        Self::ALL.into_iter().filter(|t| t.user_may_own()).collect()
    }
}

impl fmt::Display for ProviderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_nothing_else_does() {
        for t in ProviderType::ALL {
            assert_eq!(ProviderType::parse(t.name()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.name());
            assert_eq!(serde_json::from_value::<ProviderType>(t.name().into()).unwrap(), t);
        }
        assert_eq!(ProviderType::parse("OpenAI"), None);
        assert_eq!(ProviderType::parse("openai_compatible"), None);
        assert!(serde_json::from_value::<ProviderType>("made-up".into()).is_err());
    }
}
