//! The sign-in itself, the authorization code flow with PKCE (OpenID Connect Core 3.1, RFC 7636):
//!
//! 1. `begin`: a random state, nonce and PKCE verifier are kept in the store (ten minutes,
//!    keyed by the state's hash) and the browser is sent to the provider.
//! 2. `consume`: the provider sends the browser back with a code and the state; the state's item
//!    is deleted as it is read, so a callback works once (a replayed one is refused).
//! 3. `complete`: the code is exchanged at the token endpoint with the verifier, and the ID token
//!    checked (`verify`) against this sign-in's nonce.
//! 4. `account_for`: the email names the account, created on first sign-in (just in time).
//! 5. `issue_code` / `redeem`: the browser (or the CLI's loopback listener) gets a one-time code,
//!    good for two minutes, that `POST /api/auth/oidc/exchange` turns into today's session; no
//!    token ever travels in a URL. A sign-in begun with a `challenge` (the CLI's own PKCE)
//!    redeems only with its verifier, so another program on the machine that sees the code
//!    cannot use it.
//!
//! Everything lives in the store, not in the process: the callback may reach another replica
//! (or Lambda instance) than the one that began the sign-in.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use super::discovery::{Discovery, Metadata, Unreachable, read_limited};
use super::verify::{self, Expected, Identity, Refused};
use super::{Provider, pkce_challenge, random_token};
use crate::error::{ApiError, ApiResult};
use crate::identity::users::{self, User};
use crate::identity::{normalize_email, password, roles, sha256_hex};
use crate::store::{Attr, Cond, Item, Key, Store, StoreError, TTL};

/// How long the provider may take to send the browser back.
pub const FLOW_TTL_SECS: i64 = 600;
/// How long the one-time code is good for.
pub const CODE_TTL_SECS: i64 = 120;
const TOKEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Where the browser goes when the sign-in is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReturnTo {
    /// A page of the dashboard (a path on this gateway).
    Dashboard(String),
    /// The CLI's listener on this machine (`http://127.0.0.1:<port>/...`, RFC 8252 7.3).
    Loopback(String),
}

impl ReturnTo {
    /// Checks `return_to` as given to `GET /api/auth/oidc/login`: a path on this gateway, or a
    /// loopback URL with a port. Anything else could send the one-time code off the machine.
    pub fn parse(raw: Option<&str>) -> ApiResult<ReturnTo> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else { return Ok(ReturnTo::Dashboard("/".into())) };
        // Browsers drop tabs and newlines from a URL, so "/\t/evil.example" would become
        // "//evil.example": only visible ASCII is taken.
        let visible = raw.bytes().all(|b| b.is_ascii_graphic());
        if visible && raw.starts_with('/') && !raw.starts_with("//") && !raw.contains('\\') && raw.len() <= 512 {
            return Ok(ReturnTo::Dashboard(raw.into()));
        }
        let loopback = reqwest::Url::parse(raw).ok().filter(|u| {
            u.scheme() == "http"
                && matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"))
                && u.port().is_some()
                && u.username().is_empty()
                && u.password().is_none()
                && u.fragment().is_none()
        });
        match loopback {
            Some(url) => Ok(ReturnTo::Loopback(url.into())),
            None => Err(ApiError::invalid_param(
                "return_to",
                "return_to is a path of this gateway's dashboard (/...) or the CLI's loopback address (http://127.0.0.1:<port>/...)",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ReturnTo::Dashboard(s) | ReturnTo::Loopback(s) => s,
        }
    }

    fn from_stored(s: &str) -> ReturnTo {
        ReturnTo::parse(Some(s)).unwrap_or_else(|_| ReturnTo::Dashboard("/".into()))
    }
}

/// A sign-in under way, as `consume` read it back.
pub struct Flow {
    pub return_to: ReturnTo,
    nonce: String,
    verifier: String,
    /// The CLI's PKCE challenge, when it began the sign-in.
    challenge: Option<String>,
}

fn flow_key(state: &str) -> Key {
    Key::new(["OIDC_FLOW#", &sha256_hex(state)].concat(), "FLOW")
}

fn code_key(code: &str) -> Key {
    Key::new(["OIDC_CODE#", &sha256_hex(code)].concat(), "CODE")
}

fn check_challenge(challenge: &str) -> ApiResult<()> {
    // S256 of a verifier: 43 characters of base64url.
    let ok = challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(ApiError::invalid_param("challenge", "challenge is the base64url SHA-256 of your PKCE verifier (43 characters)")) }
}

/// Begins a sign-in: keeps its secrets and answers the provider's authorization URL.
pub async fn begin(
    store: &dyn Store,
    discovery: &Discovery,
    provider: &Provider,
    redirect_uri: &str,
    return_to: ReturnTo,
    challenge: Option<String>,
    now: DateTime<Utc>,
) -> ApiResult<String> {
    if let Some(c) = &challenge {
        check_challenge(c)?;
    } else if matches!(return_to, ReturnTo::Loopback(_)) {
        return Err(ApiError::invalid_param(
            "challenge",
            "a sign-in that returns to a loopback address needs challenge (PKCE S256 of a verifier the caller keeps)",
        ));
    }
    let metadata = discovery.metadata(&provider.issuer).await.map_err(unreachable)?;
    let (state, nonce, verifier) = (random_token(), random_token(), random_token());
    let k = flow_key(&state);
    let mut item = Item::from([
        ("PK".into(), Attr::S(k.pk)),
        ("SK".into(), Attr::S(k.sk)),
        ("nonce".into(), Attr::S(nonce.clone())),
        ("verifier".into(), Attr::S(verifier.clone())),
        ("return_to".into(), Attr::S(return_to.as_str().into())),
        ("created".into(), Attr::N(now.timestamp())),
        (TTL.into(), Attr::N(now.timestamp() + FLOW_TTL_SECS)),
    ]);
    if let Some(c) = challenge {
        item.insert("challenge".into(), Attr::S(c));
    }
    store.put(item, Some(Cond::NotExists)).await?;
    let mut scopes = vec!["openid", "email", "profile"];
    scopes.extend(provider.extra_scopes.iter().map(String::as_str).filter(|s| !["openid", "email", "profile"].contains(s)));
    let mut url =
        reqwest::Url::parse(&metadata.authorization_endpoint).map_err(|e| unreachable(format!("the provider's authorization endpoint is not a URL: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &pkce_challenge(&verifier))
        .append_pair("code_challenge_method", "S256");
    Ok(url.into())
}

/// The provider could not be asked (down, misconfigured): a 502 naming what failed.
fn unreachable(reason: impl std::fmt::Display) -> ApiError {
    ApiError::upstream(502, "sso_provider_unreachable", reason.to_string())
}

/// Reads an item and deletes it, for whoever reads it first: of two callers racing, the one
/// whose conditional delete lands gets it, the other nothing (a state or a code works once).
async fn take_once(store: &dyn Store, key: &Key) -> ApiResult<Option<Item>> {
    let Some(item) = store.get(key).await? else { return Ok(None) };
    match store.delete(key, Some(Cond::Exists)).await {
        Ok(()) => Ok(Some(item)),
        Err(StoreError::ConditionFailed) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn unknown_flow() -> ApiError {
    ApiError::bad_request("sign_in_expired", "this sign-in is unknown, expired or was already completed; start again from the sign-in page")
}

/// Reads back and ends the sign-in `state` names: it completes once.
pub async fn consume(store: &dyn Store, state: &str, now: DateTime<Utc>) -> ApiResult<Flow> {
    if state.is_empty() || state.len() > 256 {
        return Err(unknown_flow());
    }
    let Some(item) = take_once(store, &flow_key(state)).await? else { return Err(unknown_flow()) };
    let text = |name: &str| item.get(name).and_then(Attr::as_str).map(str::to_string);
    let created = item.get("created").and_then(Attr::as_i64).unwrap_or_default();
    if created + FLOW_TTL_SECS <= now.timestamp() {
        return Err(unknown_flow());
    }
    let (Some(nonce), Some(verifier)) = (text("nonce"), text("verifier")) else { return Err(unknown_flow()) };
    Ok(Flow { return_to: ReturnTo::from_stored(&text("return_to").unwrap_or_default()), nonce, verifier, challenge: text("challenge") })
}

fn refused(reason: impl std::fmt::Display) -> ApiError {
    ApiError::unauthorized_as("sso_refused", format!("single sign-on refused: {reason}"))
}

/// Exchanges the code for tokens and checks the ID token: who signed in.
pub async fn complete(
    discovery: &Discovery,
    provider: &Provider,
    client_secret: &SecretString,
    flow: &Flow,
    code: &str,
    redirect_uri: &str,
    now: DateTime<Utc>,
) -> ApiResult<Identity> {
    let metadata = discovery.metadata(&provider.issuer).await.map_err(unreachable)?;
    let (id_token, access_token) = exchange(discovery, provider, client_secret, &metadata, flow, code, redirect_uri).await?;
    let mut expected = Expected {
        issuer: &provider.issuer,
        client_id: &provider.client_id,
        nonce: &flow.nonce,
        now: now.timestamp(),
        groups_claim: &provider.groups_claim,
        require_verified_email: provider.require_verified_email,
        userinfo: None,
    };
    // Some providers keep the email or the groups out of the ID token; userinfo has them.
    let mut userinfo = None;
    if expected.wants_userinfo(&id_token)
        && let (Some(endpoint), Some(access_token)) = (&metadata.userinfo_endpoint, &access_token)
    {
        match fetch_userinfo(discovery, endpoint, access_token).await {
            Ok(claims) => userinfo = Some(claims),
            Err(e) => tracing::warn!(error = %e, "the provider's userinfo endpoint failed; signing in with the ID token's claims alone"),
        }
    }
    expected.userinfo = userinfo.as_ref();
    let keys = discovery.keys(&metadata, false).await.map_err(unreachable)?;
    match verify::verify(&id_token, &keys, &expected) {
        // The provider may have rotated its keys since they were fetched (a token without a key
        // id fails on the old key's signature rather than on the id).
        Err(Refused::UnknownKey | Refused::Signature) => {
            let keys = discovery.keys(&metadata, true).await.map_err(unreachable)?;
            verify::verify(&id_token, &keys, &expected).map_err(refused)
        }
        other => other.map_err(refused),
    }
}

/// The userinfo endpoint's claims for the access token.
async fn fetch_userinfo(discovery: &Discovery, endpoint: &str, access_token: &str) -> Result<serde_json::Map<String, serde_json::Value>, Unreachable> {
    let http = discovery.http();
    let request = http.get(endpoint).timeout(TOKEN_TIMEOUT).bearer_auth(access_token).header("accept", "application/json");
    let response = http.send(request).await.map_err(|e| Unreachable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(Unreachable(format!("{endpoint} answered {}", response.status())));
    }
    let body = read_limited(response).await?;
    serde_json::from_slice(&body).map_err(|e| Unreachable(format!("{endpoint} did not answer a JSON object: {e}")))
}

/// The token endpoint's answer: the ID token and the access token, or the provider's reason
/// for refusing.
async fn exchange(
    discovery: &Discovery,
    provider: &Provider,
    client_secret: &SecretString,
    metadata: &Metadata,
    flow: &Flow,
    code: &str,
    redirect_uri: &str,
) -> ApiResult<(String, Option<String>)> {
    use secrecy::ExposeSecret;
    let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri), ("code_verifier", &flow.verifier)];
    let secret = client_secret.expose_secret();
    let http = discovery.http();
    let mut request = http.post(&metadata.token_endpoint).timeout(TOKEN_TIMEOUT).header("accept", "application/json");
    if metadata.secret_in_body() {
        form.extend([("client_id", provider.client_id.as_str()), ("client_secret", secret)]);
    } else {
        // RFC 6749 2.3.1: both parts form-encoded before the basic scheme.
        let encode = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        request = request.basic_auth(encode(&provider.client_id), Some(encode(secret)));
    }
    let response = http
        .send(request.form(&form))
        .await
        .map_err(|e| unreachable(format!("could not reach the provider's token endpoint {}: {e}", metadata.token_endpoint)))?;
    let status = response.status();
    let body = read_limited(response).await.map_err(|e| unreachable(format!("reading the provider's token answer: {e}")))?;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if !status.is_success() {
        let text = |name: &str| answer.get(name).and_then(|v| v.as_str()).unwrap_or_default().chars().take(300).collect::<String>();
        return Err(refused(format!("the provider refused the code ({status}): {} {}", text("error"), text("error_description"))));
    }
    let text = |name: &str| answer.get(name).and_then(|t| t.as_str()).map(str::to_string);
    let id_token = text("id_token").ok_or_else(|| refused("the provider's token answer has no id_token (is the openid scope allowed for this client?)"))?;
    Ok((id_token, text("access_token")))
}

/// The account the identity signs in to: the one with its email, else a new one without a
/// password (it signs in through the provider) and with the role `none`, which the group
/// mapping, applied next, may change. Accounts being deleted or deactivated stay out. `acting`
/// is told the account's id before anything is written for it (the HTTP layer names it as the
/// actor of the audit events).
pub async fn account_for(store: &dyn Store, identity: &Identity, now: DateTime<Utc>, acting: &(dyn Fn(Uuid) + Sync)) -> ApiResult<(User, bool)> {
    let email = normalize_email(&identity.email, "email").map_err(|_| refused(format!("the email claim {:?} is not an email address", identity.email)))?;
    if let Some(user) = users::find_by_email(store, &email).await? {
        if user.deleting_since.is_some() {
            return Err(refused("this account is being deleted"));
        }
        if user.disabled_at.is_some() {
            return Err(users::deactivated());
        }
        acting(user.id);
        return Ok((user, false));
    }
    let mut user = users::new_user(email, password::unusable_hash().await?, roles::NO_ROLE.to_string(), now);
    user.name = identity.name.clone().filter(|n| !n.trim().is_empty()).map(|n| n.chars().take(200).collect());
    // The new user's id is known before the write: they are the actor of their creation.
    acting(user.id);
    match users::create(store, &user).await {
        Ok(()) => Ok((user, true)),
        // Two first sign-ins at once: the other created it.
        Err(ApiError::Conflict { .. }) => {
            let user = users::find_by_email(store, &user.email).await?.ok_or_else(|| ApiError::internal("the account created at sign-in vanished"))?;
            Ok((user, false))
        }
        Err(e) => Err(e),
    }
}

/// A one-time code for the signed-in user, which `redeem` turns into a session.
pub async fn issue_code(store: &dyn Store, flow: &Flow, user_id: Uuid, now: DateTime<Utc>) -> ApiResult<String> {
    let code = random_token();
    let k = code_key(&code);
    let mut item = Item::from([
        ("PK".into(), Attr::S(k.pk)),
        ("SK".into(), Attr::S(k.sk)),
        ("user_id".into(), Attr::S(user_id.to_string())),
        ("created".into(), Attr::N(now.timestamp())),
        (TTL.into(), Attr::N(now.timestamp() + CODE_TTL_SECS)),
    ]);
    if let Some(c) = &flow.challenge {
        item.insert("challenge".into(), Attr::S(c.clone()));
    }
    store.put(item, Some(Cond::NotExists)).await?;
    Ok(code)
}

/// The user a one-time code stands for; the code is spent.
pub async fn redeem(store: &dyn Store, code: &str, verifier: Option<&str>, now: DateTime<Utc>) -> ApiResult<Uuid> {
    let invalid = || ApiError::unauthorized_as("invalid_sso_code", "this sign-in code is unknown, expired or already used; sign in again");
    if code.is_empty() || code.len() > 256 {
        return Err(invalid());
    }
    let Some(item) = take_once(store, &code_key(code)).await? else { return Err(invalid()) };
    if item.get("created").and_then(Attr::as_i64).unwrap_or_default() + CODE_TTL_SECS <= now.timestamp() {
        return Err(invalid());
    }
    if let Some(challenge) = item.get("challenge").and_then(Attr::as_str) {
        let Some(verifier) = verifier else {
            return Err(ApiError::invalid_param("verifier", "this sign-in was begun with a challenge: send the verifier it was made from"));
        };
        if pkce_challenge(verifier) != challenge {
            return Err(invalid());
        }
    }
    item.get("user_id").and_then(Attr::as_str).and_then(|s| s.parse().ok()).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::ReturnTo;

    #[test]
    fn return_to_is_a_dashboard_path_or_a_loopback_url() {
        assert_eq!(ReturnTo::parse(None).unwrap(), ReturnTo::Dashboard("/".into()));
        assert_eq!(ReturnTo::parse(Some("/#/keys")).unwrap(), ReturnTo::Dashboard("/#/keys".into()));
        assert!(matches!(ReturnTo::parse(Some("http://127.0.0.1:5555/callback")).unwrap(), ReturnTo::Loopback(_)));
        assert!(matches!(ReturnTo::parse(Some("http://[::1]:5555/callback")).unwrap(), ReturnTo::Loopback(_)));
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "https://evil.example/",
            "http://127.0.0.1/no-port",
            "http://127.0.0.1:5555@evil.example/",
            "http://user@127.0.0.1:5555/",
            "http://10.0.0.1:5555/",
            "javascript:alert(1)",
        ] {
            assert!(ReturnTo::parse(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
