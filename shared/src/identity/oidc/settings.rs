//! Single sign-on's settings, as a global admin saves them (`PUT /api/settings/oidc`), and the
//! password switch: password sign-in for everyone, or only for one break-glass admin once
//! everyone else signs in through the provider. The client secret lives in the secret store
//! (`oidc/client-secret`); the item only says whether one is set.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{OidcClientConfig, Provider, check_issuer};
use crate::error::{ApiError, ApiResult};
use crate::identity::users;
use crate::secrets::SecretStore;
use crate::store::{Key, Store, from_item, keyed_item};

pub const CLIENT_SECRET: &str = "oidc/client-secret";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PasswordLogin {
    /// Everyone may sign in with a password.
    #[default]
    Enabled,
    /// Only `breakGlassEmail` may; everyone else signs in through the provider.
    BreakGlassOnly,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OidcSettings {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub has_secret: bool,
    pub display_name: Option<String>,
    #[serde(default)]
    pub extra_scopes: Vec<String>,
    pub groups_claim: String,
    pub require_verified_email: bool,
    #[serde(default)]
    pub password_login: PasswordLogin,
    pub break_glass_email: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Default for OidcSettings {
    fn default() -> Self {
        OidcSettings {
            issuer: None,
            client_id: None,
            has_secret: false,
            display_name: None,
            extra_scopes: vec![],
            groups_claim: "groups".into(),
            require_verified_email: true,
            password_login: PasswordLogin::Enabled,
            break_glass_email: None,
            updated_at: None,
        }
    }
}

fn key() -> Key {
    Key::new("SYSTEM", "OIDC")
}

pub async fn get(store: &dyn Store) -> ApiResult<OidcSettings> {
    Ok(store.get(&key()).await?.map(from_item).transpose()?.unwrap_or_default())
}

/// A name shown on the button when none is configured: the issuer's host.
fn default_display_name(issuer: &str) -> String {
    reqwest::Url::parse(issuer).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_else(|| "your identity provider".into())
}

/// The provider in use: the environment's when `TOLLGATE_OIDC_*` are set, else the saved
/// one when complete; none when single sign-on is not configured.
pub async fn provider(store: &dyn Store, env: Option<&OidcClientConfig>) -> ApiResult<Option<Provider>> {
    Ok(provider_of(get(store).await?, env))
}

/// `provider`, from settings already read. A saved client secret is not read here: only the
/// token exchange needs it (`client_secret`), and the sign-in page asks whether single sign-on
/// is on at every view, which must not cost a secret store call.
pub fn provider_of(saved: OidcSettings, env: Option<&OidcClientConfig>) -> Option<Provider> {
    let (issuer, client_id, client_secret) = match env {
        Some(env) => (env.issuer.clone(), env.client_id.clone(), Some(env.client_secret.clone())),
        None => {
            let (Some(issuer), Some(client_id), true) = (saved.issuer, saved.client_id, saved.has_secret) else { return None };
            (issuer, client_id, None)
        }
    };
    Some(Provider {
        display_name: saved.display_name.unwrap_or_else(|| default_display_name(&issuer)),
        issuer,
        client_id,
        client_secret,
        extra_scopes: saved.extra_scopes,
        groups_claim: saved.groups_claim,
        require_verified_email: saved.require_verified_email,
    })
}

/// The provider's client secret: the environment's, else the saved one from the secret store.
pub async fn client_secret(provider: &Provider, secrets: &dyn SecretStore) -> ApiResult<SecretString> {
    if let Some(secret) = &provider.client_secret {
        return Ok(secret.clone());
    }
    secrets
        .get(CLIENT_SECRET)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("the saved single sign-on client secret is missing from the secret store; save it again with PUT /api/settings/oidc"))
}

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_param(param, message)
}

/// Checks settings before they are saved. `sso_available`: a provider will be configured
/// (saved here or in the environment), without which password sign-in cannot be switched off.
pub async fn validate(store: &dyn Store, s: &OidcSettings, sso_available: bool) -> ApiResult<()> {
    if let Some(issuer) = &s.issuer {
        check_issuer(issuer).map_err(|e| bad("issuer", e.to_string()))?;
    }
    if s.client_id.as_ref().is_some_and(|id| id.is_empty() || id.len() > 512) {
        return Err(bad("clientId", "clientId is the client id the provider gave this gateway (1-512 characters)"));
    }
    if s.display_name.as_ref().is_some_and(|n| n.trim().is_empty() || n.chars().count() > 64) {
        return Err(bad("displayName", "displayName is 1-64 characters, such as Okta"));
    }
    let scope_ok = |sc: &String| !sc.is_empty() && sc.len() <= 128 && sc.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if s.extra_scopes.len() > 20 || !s.extra_scopes.iter().all(scope_ok) {
        return Err(bad("extraScopes", "extraScopes are at most 20 scope names without spaces, such as groups"));
    }
    if s.groups_claim.is_empty() || s.groups_claim.len() > 128 {
        return Err(bad("groupsClaim", "groupsClaim names the ID token claim listing the user's groups, such as groups"));
    }
    if s.password_login == PasswordLogin::BreakGlassOnly {
        if !sso_available {
            return Err(bad(
                "passwordLogin",
                "password sign-in can be switched off only once single sign-on is configured (issuer, clientId and clientSecret)",
            ));
        }
        let Some(email) = &s.break_glass_email else {
            return Err(bad("breakGlassEmail", "switching password sign-in off needs breakGlassEmail: the admin who may still sign in with a password"));
        };
        let admin = users::find_by_email(store, email).await?.filter(|u| u.role == "admin" && u.deleting_since.is_none());
        if admin.is_none() {
            return Err(bad("breakGlassEmail", format!("breakGlassEmail {email:?} must be an existing admin's email")));
        }
    }
    Ok(())
}

/// Saves the settings, and the client secret when a new one is given.
pub async fn save(
    store: &dyn Store,
    secrets: &dyn SecretStore,
    env: Option<&OidcClientConfig>,
    mut settings: OidcSettings,
    new_secret: Option<SecretString>,
    now: DateTime<Utc>,
) -> ApiResult<OidcSettings> {
    let before = get(store).await?;
    settings.has_secret = before.has_secret || new_secret.is_some();
    let saved_complete = settings.issuer.is_some() && settings.client_id.is_some() && settings.has_secret;
    validate(store, &settings, env.is_some() || saved_complete).await?;
    if let Some(secret) = new_secret {
        secrets.put(CLIENT_SECRET, &secret).await.map_err(ApiError::internal)?;
    }
    settings.updated_at = Some(now);
    store.put(keyed_item(&settings, &key())?, None).await?;
    Ok(settings)
}

/// Whether this email may sign in with a password now.
pub async fn check_password_login(store: &dyn Store, email: &str) -> ApiResult<()> {
    let s = get(store).await?;
    if s.password_login == PasswordLogin::BreakGlassOnly && s.break_glass_email.as_deref() != Some(email) {
        return Err(ApiError::forbidden(
            "password_login_disabled",
            "password sign-in is switched off here: sign in with your identity provider (GET /api/auth/oidc/login, or the dashboard's button)",
        ));
    }
    Ok(())
}
