//! Secret storage: provider and model keys, channel secrets and the JWT signing key. Values are
//! `SecretString`, whose Debug never shows the value, so a secret cannot slip into a log line by
//! formatting. Two implementations share one conformance suite (tests/secrets_conformance.rs).

mod aws;
mod embedded;

use async_trait::async_trait;
pub use secrecy::{ExposeSecret, SecretString};

pub use aws::SecretsManagerStore;
pub use embedded::EmbeddedSecrets;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret name {0:?} is not valid: use letters, digits and / _ + = . @ -")]
    InvalidName(String),
    #[error("secret backend error: {0}")]
    Backend(String),
}

pub type SecretResult<T> = Result<T, SecretError>;

#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    async fn get(&self, name: &str) -> SecretResult<Option<SecretString>>;
    /// Creates the secret only if it does not exist; returns whether it was created. This lets
    /// concurrent first starts agree on a single JWT signing key.
    async fn create(&self, name: &str, value: &SecretString) -> SecretResult<bool>;
    /// Creates or replaces.
    async fn put(&self, name: &str, value: &SecretString) -> SecretResult<()>;
    /// Deletes at once (no recovery window); deleting a missing secret is not an error.
    async fn delete(&self, name: &str) -> SecretResult<()>;
}

/// Secret names are the same on both backends: Secrets Manager's alphabet.
pub(crate) fn check_name(name: &str) -> SecretResult<()> {
    let ok = !name.is_empty() && name.len() <= 512 && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if ok { Ok(()) } else { Err(SecretError::InvalidName(name.to_string())) }
}
