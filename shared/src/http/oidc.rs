//! Single sign-on over HTTP (`identity::oidc`): the dashboard's button and the CLI go to
//! `GET /api/auth/oidc/login`, the provider sends the browser back to `GET
//! /api/auth/oidc/callback`, which sends it on with a one-time code (or the reason it failed)
//! for `POST /api/auth/oidc/exchange` to turn into today's session. Global admins configure it
//! at `/api/settings/oidc`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{SessionResponse, session_response};
use super::error::ErrorEnvelope;
use super::extract::{ApiJson, ApiQuery, Caller, ClientIp, UserAgent};
use crate::error::{ApiError, ApiResult};
use crate::identity::oidc::flow::{self, ReturnTo};
use crate::identity::oidc::{self, OidcSettings, PasswordLogin, Provider};
use crate::identity::{normalize_email, sessions, users};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(oidc_status))
        .routes(routes!(oidc_login))
        .routes(routes!(oidc_callback))
        .routes(routes!(oidc_exchange))
        .routes(routes!(get_oidc_settings, put_oidc_settings))
}

pub const CALLBACK_PATH: &str = "/api/auth/oidc/callback";

async fn provider(state: &AppState) -> ApiResult<Option<Provider>> {
    oidc::settings::provider(state.store.as_ref(), state.config.oidc.as_ref()).await
}

async fn require_provider(state: &AppState) -> ApiResult<Provider> {
    provider(state).await?.ok_or_else(|| {
        ApiError::not_found_as(
            "sso_not_configured",
            "single sign-on is not configured: set TOLLGATE_OIDC_ISSUER, TOLLGATE_OIDC_CLIENT_ID and TOLLGATE_OIDC_CLIENT_SECRET, or PUT /api/settings/oidc",
        )
    })
}

/// The redirect URI registered with the provider: the callback under the gateway's public URL.
async fn redirect_uri(state: &AppState) -> ApiResult<String> {
    let base = super::public_url(state).await?;
    Ok(format!("{}{CALLBACK_PATH}", base.as_str().trim_end_matches('/')))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcStatus {
    /// Whether single sign-on is configured.
    enabled: bool,
    /// The button's name: "Sign in with {displayName}".
    display_name: Option<String>,
    /// Where the sign-in starts.
    login_url: Option<String>,
    /// `enabled`, or `break_glass_only` (password sign-in only for one admin).
    password_login: PasswordLogin,
}

/// What the sign-in page offers. Public: the page shows it before anyone signs in.
#[utoipa::path(get, path = "/api/auth/oidc/status", tag = "auth", responses((status = 200, body = OidcStatus)))]
async fn oidc_status(State(state): State<AppState>) -> ApiResult<Json<OidcStatus>> {
    let saved = oidc::settings::get(state.store.as_ref()).await?;
    let password_login = saved.password_login;
    let provider = oidc::settings::provider_of(saved, state.config.oidc.as_ref());
    Ok(Json(OidcStatus {
        enabled: provider.is_some(),
        display_name: provider.as_ref().map(|p| p.display_name.clone()),
        login_url: provider.map(|_| "/api/auth/oidc/login".into()),
        password_login,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LoginParams {
    /// Where to go afterwards: a dashboard path (`/`, the default), or the CLI's loopback
    /// address (`http://127.0.0.1:<port>/...`, which needs `challenge`).
    return_to: Option<String>,
    /// The caller's own PKCE challenge (base64url SHA-256 of a verifier it keeps); the one-time
    /// code is then redeemed only with that verifier.
    challenge: Option<String>,
}

fn see_other(location: &str) -> ApiResult<Response> {
    let value = HeaderValue::from_str(location).map_err(|_| ApiError::internal("a sign-in redirect is not a valid header"))?;
    // The one-time code is in the URL: no cache may keep it, no page after it may see it.
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, value),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
    )
        .into_response())
}

/// Starts single sign-on: redirects the browser to the identity provider.
#[utoipa::path(get, path = "/api/auth/oidc/login", tag = "auth", params(LoginParams),
    responses((status = 302, description = "To the provider's sign-in page"), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope)))]
async fn oidc_login(State(state): State<AppState>, ApiQuery(q): ApiQuery<LoginParams>) -> ApiResult<Response> {
    let return_to = ReturnTo::parse(q.return_to.as_deref())?;
    let provider = require_provider(&state).await?;
    let url = flow::begin(state.store.as_ref(), &state.oidc, &provider, &redirect_uri(&state).await?, return_to, q.challenge, state.clock.now()).await?;
    see_other(&url)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    /// The provider's refusal (`access_denied`...), instead of a code.
    error: Option<String>,
    error_description: Option<String>,
}

/// `return_to` with `name=value` added to its query (before any fragment: the dashboard reads
/// the query, and its pages are fragments).
fn with_param(return_to: &str, name: &str, value: &str) -> String {
    let (before, fragment) = return_to.split_once('#').map_or((return_to, None), |(b, f)| (b, Some(f)));
    let separator = if before.contains('?') { '&' } else { '?' };
    let value: String = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string();
    let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
    format!("{before}{separator}{name}={value}{fragment}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameters_go_into_the_query_before_the_fragment() {
        assert_eq!(super::with_param("/", "sso_code", "a b"), "/?sso_code=a%20b");
        assert_eq!(super::with_param("/#/keys", "sso_code", "c"), "/?sso_code=c#/keys");
        assert_eq!(super::with_param("/?x=1#/keys", "sso_error", "no"), "/?x=1&sso_error=no#/keys");
        assert_eq!(super::with_param("http://127.0.0.1:5555/callback", "sso_code", "c"), "http://127.0.0.1:5555/callback?sso_code=c");
    }
}

/// Where the provider sends the browser back. It goes on to where the sign-in began, with
/// `sso_code` (for `POST /api/auth/oidc/exchange`) or `sso_error` (what went wrong).
#[utoipa::path(get, path = "/api/auth/oidc/callback", tag = "auth", params(CallbackParams),
    responses((status = 302, description = "On to the dashboard or the CLI, with sso_code or sso_error")))]
async fn oidc_callback(State(state): State<AppState>, ApiQuery(q): ApiQuery<CallbackParams>) -> ApiResult<Response> {
    let store = state.store.as_ref();
    let now = state.clock.now();
    // Ending the sign-in's state is bookkeeping, not anyone's change: the audit event is the
    // account (created or not) signing in, below.
    let flow = match crate::audit::context::unaudited(flow::consume(store, q.state.as_deref().unwrap_or_default(), now)).await {
        Ok(flow) => flow,
        Err(e) => return see_other(&with_param("/", "sso_error", &e.to_string())),
    };
    let outcome = async {
        if let Some(error) = &q.error {
            let detail = q.error_description.as_deref().unwrap_or_default().chars().take(300).collect::<String>();
            return Err(ApiError::unauthorized_as("sso_refused", format!("the identity provider said {error}: {detail}")));
        }
        let code =
            q.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 4096).ok_or_else(|| ApiError::invalid_param("code", "the provider sent no code"))?;
        let provider = require_provider(&state).await?;
        let secret = oidc::settings::client_secret(&provider, state.secrets.as_ref()).await?;
        let identity = flow::complete(&state.oidc, &provider, &secret, &flow, code, &redirect_uri(&state).await?, now).await?;
        let acting = |id| crate::audit::context::identify(crate::audit::Actor::User { id });
        let (user, created) = flow::account_for(store, &identity, now, &acting).await?;
        if created {
            tracing::info!(user = %user.id, "single sign-on created an account");
        }
        // The groups decide the role and memberships at every sign-in; without a groups claim,
        // the ones SCIM provisioned (kept on the user) do.
        let groups = identity.groups.clone().unwrap_or_else(|| user.groups.clone());
        let user = crate::group_mapping::apply(store, &user, &groups, now).await?;
        // The code is bookkeeping; the sign-in's event is the session it becomes (exchange).
        crate::audit::context::unaudited(flow::issue_code(store, &flow, user.id, now)).await
    }
    .await;
    match outcome {
        Ok(code) => see_other(&with_param(flow.return_to.as_str(), "sso_code", &code)),
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on failed");
            see_other(&with_param(flow.return_to.as_str(), "sso_error", &e.to_string()))
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoExchange {
    /// The `sso_code` the callback sent.
    code: String,
    /// The PKCE verifier, when the sign-in was begun with a `challenge`.
    verifier: Option<String>,
}

/// Turns the callback's one-time code into a session, as `POST /api/auth/login` answers.
#[utoipa::path(post, path = "/api/auth/oidc/exchange", tag = "auth", request_body = SsoExchange,
    responses((status = 200, body = SessionResponse), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
async fn oidc_exchange(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    UserAgent(agent): UserAgent,
    ApiJson(body): ApiJson<SsoExchange>,
) -> ApiResult<Json<SessionResponse>> {
    let store = state.store.as_ref();
    let now = state.clock.now();
    // Spending the code is bookkeeping; the audit event is the session started below.
    let user_id = crate::audit::context::unaudited(flow::redeem(store, &body.code, body.verifier.as_deref(), now)).await?;
    crate::audit::context::identify(crate::audit::Actor::User { id: user_id });
    let user = users::get(store, user_id)
        .await?
        .filter(|u| u.deleting_since.is_none())
        .ok_or_else(|| ApiError::unauthorized("this account no longer exists (or is being deleted)"))?;
    // Deprovisioned between the callback and now.
    if user.disabled_at.is_some() {
        return Err(users::deactivated());
    }
    let tokens = sessions::start(store, state.jwt().await?, now, &user, ip.map(|i| i.to_string()), agent).await?;
    Ok(Json(session_response(&state, tokens, &user).await?))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcSettingsView {
    issuer: Option<String>,
    client_id: Option<String>,
    /// Whether a client secret is saved (it is never shown).
    has_client_secret: bool,
    display_name: Option<String>,
    extra_scopes: Vec<String>,
    groups_claim: String,
    require_verified_email: bool,
    password_login: PasswordLogin,
    break_glass_email: Option<String>,
    /// `environment` when `TOLLGATE_OIDC_*` are set (they win over the saved issuer, client id
    /// and secret), else `settings`.
    source: &'static str,
    /// The redirect URI to register with the provider.
    redirect_uri: String,
    updated_at: Option<DateTime<Utc>>,
}

async fn view(state: &AppState, s: OidcSettings) -> ApiResult<OidcSettingsView> {
    Ok(OidcSettingsView {
        issuer: s.issuer,
        client_id: s.client_id,
        has_client_secret: s.has_secret,
        display_name: s.display_name,
        extra_scopes: s.extra_scopes,
        groups_claim: s.groups_claim,
        require_verified_email: s.require_verified_email,
        password_login: s.password_login,
        break_glass_email: s.break_glass_email,
        source: if state.config.oidc.is_some() { "environment" } else { "settings" },
        redirect_uri: redirect_uri(state).await?,
        updated_at: s.updated_at,
    })
}

/// The single sign-on settings (the client secret only as `hasClientSecret`).
#[utoipa::path(get, path = "/api/settings/oidc", tag = "settings",
    responses((status = 200, body = OidcSettingsView), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
async fn get_oidc_settings(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<OidcSettingsView>> {
    caller.require_global_admin("single sign-on settings are")?;
    let saved = oidc::settings::get(state.store.as_ref()).await?;
    Ok(Json(view(&state, saved).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcSettingsInput {
    /// The provider's issuer URL (discovery reads `{issuer}/.well-known/openid-configuration`).
    issuer: Option<String>,
    client_id: Option<String>,
    /// Write-only; omit to keep the saved one.
    #[schema(value_type = Option<String>)]
    client_secret: Option<SecretString>,
    display_name: Option<String>,
    /// Scopes besides `openid email profile`, such as `groups`.
    extra_scopes: Option<Vec<String>>,
    /// The claim listing the user's groups (default `groups`).
    groups_claim: Option<String>,
    /// Refuse emails the provider has not verified (default true).
    require_verified_email: Option<bool>,
    /// `enabled` or `break_glass_only`.
    password_login: Option<PasswordLogin>,
    /// The admin who may still sign in with a password when it is `break_glass_only`.
    break_glass_email: Option<String>,
}

/// Changes the single sign-on settings; fields left out keep their values.
#[utoipa::path(put, path = "/api/settings/oidc", tag = "settings", request_body = OidcSettingsInput,
    responses((status = 200, body = OidcSettingsView), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
async fn put_oidc_settings(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<OidcSettingsInput>) -> ApiResult<Json<OidcSettingsView>> {
    caller.require_global_admin("single sign-on settings are")?;
    let mut s = oidc::settings::get(state.store.as_ref()).await?;
    s.issuer = body.issuer.or(s.issuer);
    s.client_id = body.client_id.or(s.client_id);
    s.display_name = body.display_name.or(s.display_name);
    s.extra_scopes = body.extra_scopes.unwrap_or(s.extra_scopes);
    s.groups_claim = body.groups_claim.unwrap_or(s.groups_claim);
    s.require_verified_email = body.require_verified_email.unwrap_or(s.require_verified_email);
    s.password_login = body.password_login.unwrap_or(s.password_login);
    if let Some(email) = body.break_glass_email {
        s.break_glass_email = Some(normalize_email(&email, "breakGlassEmail")?);
    }
    let saved =
        oidc::settings::save(state.store.as_ref(), state.secrets.as_ref(), state.config.oidc.as_ref(), s, body.client_secret, state.clock.now()).await?;
    Ok(Json(view(&state, saved).await?))
}
