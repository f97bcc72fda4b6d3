//! AWS Secrets Manager. Every name is put under the deployment's prefix (for example
//! `tollgate/`), which is also what the IAM policies in the SAM template allow.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use secrecy::{ExposeSecret, SecretString};

use super::{SecretError, SecretResult, SecretStore, check_name};

pub struct SecretsManagerStore {
    client: Client,
    prefix: String,
}

fn backend<E: std::error::Error>(err: E) -> SecretError {
    // The SDK's error text names the secret id at most, never its value.
    SecretError::Backend(DisplayErrorContext(err).to_string())
}

impl SecretsManagerStore {
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self { client, prefix: prefix.into() }
    }

    /// Whether Secrets Manager answers with these credentials: a read of the JWT signing
    /// key, which may not exist yet (asked by the local server at start).
    pub async fn ready(&self) -> Result<(), crate::readiness::Unready> {
        let id = self.id("jwt-signing-key").map_err(|e| crate::readiness::Unready::Other(e.to_string()))?;
        match self.client.describe_secret().secret_id(id).send().await {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(()),
            Err(err) => Err(crate::readiness::classify(&err)),
        }
    }

    fn id(&self, name: &str) -> SecretResult<String> {
        check_name(name)?;
        Ok(format!("{}{}", self.prefix, name))
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get(&self, name: &str) -> SecretResult<Option<SecretString>> {
        match self.client.get_secret_value().secret_id(self.id(name)?).send().await {
            Ok(out) => Ok(out.secret_string.map(SecretString::from)),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(None),
            Err(err) => Err(backend(err)),
        }
    }

    async fn create(&self, name: &str, value: &SecretString) -> SecretResult<bool> {
        let result = self.client.create_secret().name(self.id(name)?).secret_string(value.expose_secret()).send().await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_exists_exception()) => Ok(false),
            Err(err) => Err(backend(err)),
        }
    }

    async fn put(&self, name: &str, value: &SecretString) -> SecretResult<()> {
        if self.create(name, value).await? {
            return Ok(());
        }
        self.client.put_secret_value().secret_id(self.id(name)?).secret_string(value.expose_secret()).send().await.map_err(backend)?;
        Ok(())
    }

    async fn delete(&self, name: &str) -> SecretResult<()> {
        let result = self.client.delete_secret().secret_id(self.id(name)?).force_delete_without_recovery(true).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(()),
            Err(err) => Err(backend(err)),
        }
    }
}
