//! Workspace integrations: an OpenRouter or Hugging Face token, checked against that service
//! and saved on a workspace, so the workspace's tokens can route `openrouter/<model>` and
//! `huggingface/<model>` through the workspace's own account. And Hugging Face dataset URLs,
//! checked for form and for resolving on the hub. The services' URLs are configuration
//! (`TOLLGATE_OPENROUTER_URL`, `TOLLGATE_HUGGINGFACE_URL`, `TOLLGATE_HUGGINGFACE_HUB_URL`).

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::egress::HttpClient;
use crate::error::{ApiError, ApiResult};
use crate::invalidate::Invalidate;
use crate::secrets::SecretStore;
use crate::store::{Key, Store, from_item, keyed_item};

/// The services a workspace can connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    OpenRouter,
    HuggingFace,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::OpenRouter => "openrouter",
            Service::HuggingFace => "huggingface",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "openrouter" => Some(Service::OpenRouter),
            "huggingface" => Some(Service::HuggingFace),
            _ => None,
        }
    }
}

/// Where the services are (tests point them at local fakes).
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// OpenRouter's API: `/key` checks a token, and models are served under it.
    pub openrouter: String,
    /// Hugging Face's inference router (OpenAI-compatible).
    pub huggingface: String,
    /// The Hugging Face hub: `/api/whoami-v2` checks a token; datasets resolve under it.
    pub huggingface_hub: String,
}

/// A workspace's saved integration (its token is in the secret store).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Integration {
    pub workspace_id: Uuid,
    pub service: Service,
    /// Who the token belongs to, as the service said.
    pub account: Option<String>,
    pub saved_by: Uuid,
    pub saved_at: DateTime<Utc>,
}

fn key(workspace_id: Uuid, service: Service) -> Key {
    Key::new(format!("WS#{workspace_id}"), format!("INTEGRATION#{}", service.name()))
}

pub fn secret_name(workspace_id: Uuid, service: Service) -> String {
    format!("workspaces/{workspace_id}/integrations/{}", service.name())
}

/// Why a service did not vouch for a token.
#[derive(Debug, thiserror::Error)]
pub enum Unverified {
    #[error("{service} could not be reached: {why}")]
    Unreachable { service: &'static str, why: String },
    /// The service's own reason, with the token cut out of it.
    #[error("{service} answered {status}: {reason}")]
    Refused { service: &'static str, status: u16, reason: String },
}

/// Asks the service whether `token` is good: who it belongs to when it is.
pub async fn check_token(http: &HttpClient, endpoints: &Endpoints, service: Service, token: &SecretString) -> Result<Option<String>, Unverified> {
    let url = match service {
        Service::OpenRouter => format!("{}/key", endpoints.openrouter.trim_end_matches('/')),
        Service::HuggingFace => format!("{}/api/whoami-v2", endpoints.huggingface_hub.trim_end_matches('/')),
    };
    let response = http
        .send(http.get(url).bearer_auth(token.expose_secret()).timeout(std::time::Duration::from_secs(10)))
        .await
        .map_err(|e| Unverified::Unreachable { service: service.name(), why: e.to_string() })?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let reason = body.pointer("/error/message").or_else(|| body.get("error")).and_then(Value::as_str).unwrap_or("the token was refused");
        return Err(Unverified::Refused {
            service: service.name(),
            status: status.as_u16(),
            reason: crate::providers::redact(reason.to_string(), Some(token)),
        });
    }
    let account = match service {
        Service::OpenRouter => body.pointer("/data/label").and_then(Value::as_str),
        Service::HuggingFace => body.get("name").and_then(Value::as_str),
    };
    Ok(account.map(str::to_string))
}

/// Saves a checked token on a workspace (replacing any earlier one).
pub async fn save(store: &dyn Store, secrets: &dyn SecretStore, integration: &Integration, token: &SecretString, caches: &dyn Invalidate) -> ApiResult<()> {
    let secret = secret_name(integration.workspace_id, integration.service);
    secrets.put(&secret, token).await.map_err(ApiError::internal)?;
    store.put(keyed_item(integration, &key(integration.workspace_id, integration.service))?, None).await?;
    caches.integration(integration.workspace_id, integration.service.name());
    caches.secret(&secret);
    Ok(())
}

pub async fn get(store: &dyn Store, workspace_id: Uuid, service: Service) -> ApiResult<Option<Integration>> {
    Ok(store.get(&key(workspace_id, service)).await?.map(from_item).transpose()?)
}

/// A dataset file on the hub: `https://<hub>/datasets/<owner>/<name>/(resolve|blob)/<revision>/<path>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DatasetFile {
    pub repo: String,
    pub revision: String,
    pub path: String,
}

/// What is wrong with a dataset URL's form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadDatasetUrl {
    #[error("not a URL ({0})")]
    NotUrl(String),
    #[error("it must be an https URL")]
    Scheme,
    #[error("the dataset's owner and name may hold letters, digits, - _ and . only")]
    Name,
    #[error("the file path may not climb out of the dataset")]
    Climbs,
    #[error("use https://huggingface.co/datasets/<owner>/<name>/resolve/<revision>/<file>")]
    Form,
}

/// Reads a dataset URL's parts, or says what is wrong with its form.
pub fn dataset_file(url: &str) -> Result<DatasetFile, BadDatasetUrl> {
    let parsed = reqwest::Url::parse(url).map_err(|e| BadDatasetUrl::NotUrl(e.to_string()))?;
    if parsed.scheme() != "https" && parsed.scheme() != "http" {
        return Err(BadDatasetUrl::Scheme);
    }
    let segments: Vec<&str> = parsed.path_segments().map(|s| s.filter(|p| !p.is_empty()).collect()).unwrap_or_default();
    match segments.as_slice() {
        ["datasets", owner, name, "resolve" | "blob", revision, path @ ..] if !path.is_empty() => {
            let valid = |s: &str| !s.is_empty() && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid(owner) || !valid(name) {
                return Err(BadDatasetUrl::Name);
            }
            if path.contains(&"..") {
                return Err(BadDatasetUrl::Climbs);
            }
            Ok(DatasetFile { repo: format!("{owner}/{name}"), revision: revision.to_string(), path: path.join("/") })
        }
        _ => Err(BadDatasetUrl::Form),
    }
}

/// Why a dataset file does not resolve on the hub.
#[derive(Debug, thiserror::Error)]
pub enum Unresolved {
    #[error("the hub could not be reached: {0}")]
    Unreachable(String),
    #[error("the hub answered {0}: the dataset is private or gated")]
    Gated(u16),
    #[error("the hub answered 404: no such dataset, revision or file")]
    Missing,
    #[error("the hub answered {0}")]
    Status(u16),
}

/// Whether the file resolves on the hub (a HEAD request). Redirects are not followed: the hub
/// answers a file kept in its storage with a redirect there, which says the file exists.
pub async fn dataset_resolves(http: &HttpClient, hub: &str, file: &DatasetFile) -> Result<(), Unresolved> {
    let url = format!("{}/datasets/{}/resolve/{}/{}", hub.trim_end_matches('/'), file.repo, file.revision, file.path);
    let response = http
        .send(http.request(reqwest::Method::HEAD, url).timeout(std::time::Duration::from_secs(10)))
        .await
        .map_err(|e| Unresolved::Unreachable(e.to_string()))?;
    match response.status() {
        s if s.is_success() || s.is_redirection() => Ok(()),
        s if s.as_u16() == 401 || s.as_u16() == 403 => Err(Unresolved::Gated(s.as_u16())),
        s if s.as_u16() == 404 => Err(Unresolved::Missing),
        s => Err(Unresolved::Status(s.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_urls_are_read_or_refused_with_a_reason() {
        let f = dataset_file("https://huggingface.co/datasets/acme/support-evals/resolve/main/data/eval.jsonl").unwrap();
        assert_eq!(f, DatasetFile { repo: "acme/support-evals".into(), revision: "main".into(), path: "data/eval.jsonl".into() });
        assert!(dataset_file("https://huggingface.co/datasets/acme/support-evals/blob/v1/eval.jsonl").is_ok());
        for bad in [
            "not a url",
            "ftp://huggingface.co/datasets/a/b/resolve/main/x",
            "https://huggingface.co/acme/model/resolve/main/x",
            "https://huggingface.co/datasets/acme/support-evals",
            "https://huggingface.co/datasets/../b/resolve/main/x",
            "https://huggingface.co/datasets/a/b/resolve/main/",
        ] {
            assert!(dataset_file(bad).is_err(), "{bad}");
        }
    }
}
