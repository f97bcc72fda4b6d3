//! What a request to a provider is authenticated with, and why authenticating it failed.

use secrecy::{ExposeSecret, SecretString};

/// What a request to a provider is authenticated with: the model's own key, and whether the
/// gateway's own cloud identity (the AWS credential chain, Google's application default
/// credentials) may stand in when it has none. Only catalog models, which a global admin
/// configured, may use the gateway's identity.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub key: Option<&'a SecretString>,
    pub ambient: bool,
}

impl<'a> Credentials<'a> {
    /// A key supplied by a user (their provider, their test): never the gateway's identity.
    pub fn own(key: Option<&'a SecretString>) -> Self {
        Credentials { key: key.filter(|k| !k.expose_secret().is_empty()), ambient: false }
    }
}

/// The cloud whose identity a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    Aws,
    Google,
}

impl Cloud {
    fn name(self) -> &'static str {
        match self {
            Cloud::Aws => "AWS",
            Cloud::Google => "Google",
        }
    }

    /// The forms a provider's own key may take.
    fn key_forms(self) -> &'static str {
        match self {
            Cloud::Aws => "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN] or a Bedrock API key",
            Cloud::Google => "a service account's JSON key or a Google API key",
        }
    }
}

impl std::fmt::Display for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request could not be authenticated to its provider. Nothing was sent; each message
/// says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A user's provider without a key: only catalog models may use the gateway's identity.
    #[error("this provider has no {0} credentials of its own: set its api_key to {forms}", forms = .0.key_forms())]
    NoOwnKey(Cloud),
    /// The gateway's identity goes only to its cloud's own API hosts.
    #[error("the gateway's own {cloud} identity serves only requests to {allowed}; give this model a key of its own to use another endpoint")]
    ForeignHost { cloud: Cloud, allowed: String },
    /// A catalog model without a key, and the gateway has no identity of that cloud either.
    #[error("no {cloud} credentials: {why}")]
    NoAmbient { cloud: Cloud, why: String },
    /// The key is there but is not of a usable form.
    #[error("the model's key cannot be used: {0}")]
    BadKey(String),
    /// Signing failed (a request or a token request).
    #[error("could not sign the request: {0}")]
    Signing(String),
    /// The cloud's token service could not be reached, or refused the key.
    #[error("{0}")]
    TokenService(String),
    /// The request itself could not be built.
    #[error("the request could not be built: {0}")]
    Request(String),
}
