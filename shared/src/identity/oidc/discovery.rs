//! The provider's metadata (`/.well-known/openid-configuration`) and its signing keys, fetched
//! with the client for admin-configured URLs (no redirects followed) and kept per process: the
//! metadata for an hour, the keys until a token names a key they lack (a rotation), when they
//! are fetched again, at most once per `REFETCH_AFTER`. ID tokens come from the provider's own
//! token endpoint, not from browsers, so only a misbehaving provider could ask for more.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use crate::egress::HttpClient;

const METADATA_TTL: Duration = Duration::from_secs(3600);
const REFETCH_AFTER: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(10);
/// Metadata and key sets are small; anything larger is not what we asked for.
const MAX_BODY: usize = 1 << 20;

/// What the gateway uses of the provider's metadata.
#[derive(Clone, Debug, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

impl Metadata {
    /// `client_secret_basic` is the default (Core 9); `client_secret_post` when the provider
    /// lists only that.
    pub fn secret_in_body(&self) -> bool {
        self.token_endpoint_auth_methods_supported
            .as_ref()
            .is_some_and(|m| !m.iter().any(|m| m == "client_secret_basic") && m.iter().any(|m| m == "client_secret_post"))
    }
}

struct Cached {
    issuer: String,
    metadata: Metadata,
    metadata_at: Instant,
    keys: Option<(JwkSet, Instant)>,
}

/// The provider's documents, cached.
pub struct Discovery {
    http: HttpClient,
    cached: Mutex<Option<Cached>>,
}

/// Why the provider could not be asked: a message for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

impl Discovery {
    pub fn new(http: HttpClient) -> Self {
        Discovery { http, cached: Mutex::new(None) }
    }

    pub(super) fn http(&self) -> &HttpClient {
        &self.http
    }

    async fn fetch<T: serde::de::DeserializeOwned>(&self, url: &str, what: &str) -> Result<T, Unreachable> {
        let request = self.http.get(url).timeout(TIMEOUT).header("accept", "application/json");
        let response = self.http.send(request).await.map_err(|e| Unreachable(format!("could not fetch the provider's {what} at {url}: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Unreachable(format!("the provider's {what} at {url} answered {status}")));
        }
        let body = read_limited(response).await.map_err(|e| Unreachable(format!("reading the provider's {what} at {url}: {e}")))?;
        serde_json::from_slice(&body).map_err(|e| Unreachable(format!("the provider's {what} at {url} is not what OpenID Connect describes: {e}")))
    }

    /// The metadata of `issuer`, which must name itself exactly (Discovery 4.3).
    pub async fn metadata(&self, issuer: &str) -> Result<Metadata, Unreachable> {
        if let Some(c) = self.cached.lock().expect("oidc cache").as_ref()
            && c.issuer == issuer
            && c.metadata_at.elapsed() < METADATA_TTL
        {
            return Ok(c.metadata.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let metadata: Metadata = self.fetch(&url, "metadata").await?;
        if metadata.issuer != issuer {
            return Err(Unreachable(format!(
                "the provider at {url} calls itself {:?}: set the issuer to exactly that (TOLLGATE_OIDC_ISSUER or PUT /api/settings/oidc)",
                metadata.issuer
            )));
        }
        let mut cached = self.cached.lock().expect("oidc cache");
        let keys = cached.take().filter(|c| c.issuer == issuer).and_then(|c| c.keys);
        *cached = Some(Cached { issuer: issuer.to_string(), metadata: metadata.clone(), metadata_at: Instant::now(), keys });
        Ok(metadata)
    }

    /// The provider's keys; `again`: the ones held lack a token's key, so fetch them anew
    /// (unless they were fetched moments ago).
    pub async fn keys(&self, metadata: &Metadata, again: bool) -> Result<JwkSet, Unreachable> {
        if let Some(c) = self.cached.lock().expect("oidc cache").as_ref()
            && c.issuer == metadata.issuer
            && let Some((keys, at)) = &c.keys
            && (!again || at.elapsed() < REFETCH_AFTER)
        {
            return Ok(keys.clone());
        }
        let keys: JwkSet = self.fetch(&metadata.jwks_uri, "signing keys").await?;
        if let Some(c) = self.cached.lock().expect("oidc cache").as_mut()
            && c.issuer == metadata.issuer
        {
            c.keys = Some((keys.clone(), Instant::now()));
        }
        Ok(keys)
    }
}

/// The body, refused past `MAX_BODY`.
pub(super) async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, Unreachable> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| Unreachable(e.to_string()))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Unreachable(format!("the answer is larger than {MAX_BODY} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
