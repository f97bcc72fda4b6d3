//! Google OAuth for Vertex AI: a service account's key (the JSON Google issues) is exchanged
//! for an access token with the JWT-bearer grant (RFC 7523), as Google's own libraries do: an
//! RS256 assertion (`iss` the account's email, `scope` cloud-platform, `aud` the token URL) is
//! posted to the key's `token_uri` (so a test points it at a local fake), and the token is
//! kept until a minute before it expires. Without a key on the model, the file named by
//! `GOOGLE_APPLICATION_CREDENTIALS` is used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::Deserialize;

use super::credentials::{AuthError, Cloud, Credentials};
use crate::egress::HttpClient;

/// Whether a URL is one of Google's API hosts, over HTTPS.
fn google_host(url: &reqwest::Url) -> bool {
    url.scheme() == "https" && url.host_str().is_some_and(|h| h == "googleapis.com" || h.ends_with(".googleapis.com"))
}

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

/// Access tokens by the SHA-256 of the key they came from, with when to stop using them.
static TOKENS: Mutex<Option<HashMap<String, (String, Instant)>>> = Mutex::new(None);

/// The service account key: the model's, else (for a catalog model only) the environment's.
fn key_text(credentials: Credentials<'_>) -> Result<String, AuthError> {
    if let Some(key) = credentials.key.map(|k| k.expose_secret()).filter(|k| !k.is_empty()) {
        return Ok(key.to_string());
    }
    if !credentials.ambient {
        return Err(AuthError::NoOwnKey(Cloud::Google));
    }
    let path = std::env::var("GOOGLE_APPLICATION_CREDENTIALS").map_err(|_| AuthError::NoAmbient {
        cloud: Cloud::Google,
        why: "set the model's key to a service account's JSON key, or GOOGLE_APPLICATION_CREDENTIALS".into(),
    })?;
    std::fs::read_to_string(&path)
        .map_err(|e| AuthError::NoAmbient { cloud: Cloud::Google, why: format!("GOOGLE_APPLICATION_CREDENTIALS ({path}) could not be read: {e}") })
}

/// An access token for the service account (from the cache while it lasts).
pub async fn access_token(http: &HttpClient, credentials: Credentials<'_>) -> Result<String, AuthError> {
    let text = key_text(credentials)?;
    let id = crate::identity::sha256_hex(&text);
    if let Some((token, until)) = TOKENS.lock().expect("token cache").as_ref().and_then(|t| t.get(&id)).cloned()
        && until > Instant::now()
    {
        return Ok(token);
    }
    let account: ServiceAccount = serde_json::from_str(&text)
        .map_err(|e| AuthError::BadKey(format!("it is not a service account's JSON key (client_email, private_key, token_uri): {e}")))?;
    let token_uri = account.token_uri.as_deref().unwrap_or(TOKEN_URI);
    let now = chrono::Utc::now().timestamp();
    let claims = Claims { iss: &account.client_email, scope: SCOPE, aud: token_uri, iat: now, exp: now + 3600 };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = account.private_key_id.clone();
    let signing = jsonwebtoken::EncodingKey::from_rsa_pem(account.private_key.as_bytes())
        .map_err(|e| AuthError::BadKey(format!("the service account's private_key is not an RSA key: {e}")))?;
    let assertion = jsonwebtoken::encode(&header, &claims, &signing).map_err(|e| AuthError::Signing(e.to_string()))?;
    let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())];
    let response = http
        .send(http.post(token_uri).form(&form).timeout(Duration::from_secs(10)))
        .await
        .map_err(|e| AuthError::TokenService(format!("Google's token endpoint could not be reached: {e}")))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let token = body.get("access_token").and_then(|t| t.as_str()).filter(|_| status.is_success()).ok_or_else(|| {
        let why = body.get("error_description").or_else(|| body.get("error")).and_then(|e| e.as_str()).unwrap_or("no access_token");
        AuthError::TokenService(format!("Google refused the service account ({status}): {why}"))
    })?;
    let lasts = body.get("expires_in").and_then(serde_json::Value::as_u64).unwrap_or(3600).saturating_sub(60);
    TOKENS.lock().expect("token cache").get_or_insert_with(HashMap::new).insert(id, (token.to_string(), Instant::now() + Duration::from_secs(lasts)));
    Ok(token.to_string())
}

/// Puts the service account's access token on the request, or a Google API key (one that is
/// not a service account's JSON) as `x-goog-api-key`. A token made from the gateway's own
/// credentials goes only to Google's API hosts.
pub async fn authorize(http: &HttpClient, request: &mut reqwest::Request, credentials: Credentials<'_>) -> Result<(), AuthError> {
    if let Some(api_key) = credentials.key.map(|k| k.expose_secret().trim()).filter(|k| !k.is_empty() && !k.starts_with('{')) {
        let value = api_key.parse().map_err(|_| AuthError::BadKey("the Google API key is not a valid header value".into()))?;
        request.headers_mut().insert("x-goog-api-key", value);
        return Ok(());
    }
    let own = credentials.key.is_some_and(|k| !k.expose_secret().is_empty());
    if !own && credentials.ambient && !google_host(request.url()) {
        return Err(AuthError::ForeignHost { cloud: Cloud::Google, allowed: "https://*.googleapis.com".into() });
    }
    let token = access_token(http, credentials).await?;
    let value = format!("Bearer {token}").parse().map_err(|_| AuthError::TokenService("Google's access token is not a valid header value".into()))?;
    request.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
    Ok(())
}
