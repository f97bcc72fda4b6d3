//! Single sign-on through an OpenID provider (Okta, Entra ID, Google, Keycloak, Auth0...): the
//! authorization code flow with PKCE (`flow`), the provider's metadata and keys (`discovery`),
//! and the ID token's checks (`verify`).
//!
//! The provider is the operator's: its issuer, client id and secret come from the environment
//! (`TOLLGATE_OIDC_*`, which win) or from a global admin through `PUT /api/settings/oidc`
//! (`settings`), so the gateway reaches it with the client for admin-configured URLs.
//!
//! Why by hand on `jsonwebtoken` rather than the `openidconnect` crate: the part that must be
//! right, the signature against a JWK set, is `jsonwebtoken`'s (already ours, on aws-lc), and
//! what is left (two JSON documents and one form POST) is smaller than the glue the other
//! crate's generic client types ask for, and would add a second RSA/EC stack to every build.

pub mod discovery;
pub mod flow;
pub mod settings;
pub mod verify;

use secrecy::SecretString;

pub use settings::{OidcSettings, PasswordLogin};

/// The provider in use, wherever it was configured.
#[derive(Clone)]
pub struct Provider {
    pub issuer: String,
    pub client_id: String,
    /// The environment's client secret; a saved one stays in the secret store until the token
    /// exchange needs it (`settings::client_secret`).
    pub client_secret: Option<SecretString>,
    /// The name on the dashboard's button ("Sign in with Okta").
    pub display_name: String,
    /// Scopes asked for besides `openid email profile` (`groups` on Okta and Keycloak).
    pub extra_scopes: Vec<String>,
    /// The claim listing the user's groups (`groups`; Entra ID sends group ids under it).
    pub groups_claim: String,
    /// Whether the email must be marked verified by the provider (`email_verified: true`).
    pub require_verified_email: bool,
}

/// An OpenID provider the operator named in the environment.
/// (`TOLLGATE_OIDC_*`, read by `config`.)
#[derive(Clone, Debug)]
pub struct OidcClientConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: secrecy::SecretString,
}

/// An issuer URL single sign-on cannot use, and why.
#[derive(Debug, thiserror::Error)]
#[error("issuer {0:?} must be an https URL (http only on a loopback address) without query or fragment")]
pub struct BadIssuer(pub String);

/// An OpenID provider's issuer URL: https, or http on a loopback address (a provider on the
/// operator's own machine, a test's), without query or fragment.
pub fn check_issuer(issuer: &str) -> Result<reqwest::Url, BadIssuer> {
    let bad = || BadIssuer(issuer.to_string());
    let url = reqwest::Url::parse(issuer).map_err(|_| bad())?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let ok_scheme = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !ok_scheme || host.is_empty() || url.query().is_some() || url.fragment().is_some() {
        return Err(bad());
    }
    Ok(url)
}

/// Random URL-safe text of 32 bytes: states, nonces, PKCE verifiers, one-time codes.
pub fn random_token() -> String {
    super::random_secret("")
}

/// PKCE's S256 challenge of a verifier (RFC 7636 4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(super::pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn issuers_are_https_or_loopback_http() {
        assert!(super::check_issuer("https://example.okta.com").is_ok());
        assert!(super::check_issuer("https://login.microsoftonline.com/tid/v2.0").is_ok());
        assert!(super::check_issuer("http://127.0.0.1:9400").is_ok());
        assert!(super::check_issuer("http://localhost:8080/realms/acme").is_ok());
        assert!(super::check_issuer("http://idp.example.com").is_err());
        assert!(super::check_issuer("https://idp.example.com/?x=1").is_err());
        assert!(super::check_issuer("not a url").is_err());
    }
}
