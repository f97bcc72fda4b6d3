//! The ID token's checks (OpenID Connect Core 3.1.3.7): the signature against the provider's
//! published keys, with an asymmetric algorithm only (never `none`, never an HMAC keyed with a
//! public key); the issuer; the audience (and `azp` when there are several); expiry and issue
//! time against the clock every rule uses; the nonce this sign-in sent. Then the claims the
//! gateway uses: the email, whether the provider verified it, the groups.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// Clocks drift: a token is accepted this many seconds past its `exp` (and issued up to this
/// far in the future).
pub const LEEWAY_SECS: i64 = 60;

const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why an ID token was refused. Each says what is wrong, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the ID token is not a well-formed JWT")]
    Malformed,
    #[error("the ID token is signed with {0}, which is not an asymmetric algorithm this gateway accepts")]
    Algorithm(String),
    /// No published key has the token's `kid`: the caller fetches the keys again once (the
    /// provider may have rotated them) and retries.
    #[error("no key published by the provider matches the ID token's key id")]
    UnknownKey,
    #[error("the ID token's signature does not verify against the provider's keys")]
    Signature,
    #[error("the ID token was issued by {0:?}, not by the configured issuer")]
    Issuer(String),
    #[error("the ID token is not meant for this gateway (its audience does not include the client id)")]
    Audience,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token was issued in the future; check the clocks")]
    NotYetValid,
    #[error("the ID token's nonce does not match this sign-in (a replayed or injected token)")]
    Nonce,
    #[error("the ID token has no email claim; ask for the email scope, or map an email in the provider")]
    NoEmail,
    #[error("the provider has not verified this email address (email_verified is not true)")]
    EmailNotVerified,
}

/// What was expected of the token.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    /// Now, in seconds since the epoch.
    pub now: i64,
    pub groups_claim: &'a str,
    pub require_verified_email: bool,
    /// The userinfo endpoint's claims, when the ID token lacked the email or the groups:
    /// used for those (and the name) only when their `sub` is the token's.
    pub userinfo: Option<&'a serde_json::Map<String, Value>>,
}

impl Expected<'_> {
    /// Whether the ID token's claims leave out what the userinfo endpoint may add.
    pub fn wants_userinfo(&self, token: &str) -> bool {
        let Ok(claims) = jsonwebtoken::dangerous::insecure_decode::<serde_json::Map<String, Value>>(token).map(|d| d.claims) else { return false };
        !claims.contains_key("email") || !claims.contains_key(self.groups_claim)
    }
}

/// The claims the gateway acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub email: String,
    pub name: Option<String>,
    /// The groups claim; none when the provider sent none (groups may come from SCIM then).
    pub groups: Option<Vec<String>>,
}

/// Checks `token` against `keys` and `expected`.
pub fn verify(token: &str, keys: &JwkSet, expected: &Expected) -> Result<Identity, Refused> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Malformed)?;
    if !ASYMMETRIC.contains(&header.alg) {
        return Err(Refused::Algorithm(format!("{:?}", header.alg)));
    }
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        // Without a kid, a provider with one key of the right family means that one.
        None => {
            let mut fitting = keys.keys.iter().filter(|k| DecodingKey::from_jwk(k).is_ok_and(|d| family_fits(&d, header.alg)));
            match (fitting.next(), fitting.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        }
    }
    .ok_or(Refused::UnknownKey)?;
    // A key published for one algorithm is not used with another.
    if let Some(alg) = jwk.common.key_algorithm
        && alg.to_string() != format!("{:?}", header.alg)
    {
        return Err(Refused::Algorithm(format!("{:?}", header.alg)));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| Refused::Signature)?;
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    // Checked below, against the gateway's clock, with messages of our own.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => Refused::Algorithm(format!("{:?}", header.alg)),
            jsonwebtoken::errors::ErrorKind::InvalidSignature | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat => Refused::Signature,
            _ => Refused::Malformed,
        })?
        .claims;
    check_claims(&claims, expected)
}

fn family_fits(key: &DecodingKey, alg: Algorithm) -> bool {
    key.family() == alg.family()
}

fn check_claims(claims: &serde_json::Map<String, Value>, expected: &Expected) -> Result<Identity, Refused> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let issuer = text("iss").unwrap_or_default();
    if issuer != expected.issuer {
        return Err(Refused::Issuer(issuer.to_string()));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !audiences.contains(&expected.client_id) {
        return Err(Refused::Audience);
    }
    // Several audiences: the authorized party must be us (Core 3.1.3.7, items 4 and 5).
    if (audiences.len() > 1 || claims.contains_key("azp")) && text("azp") != Some(expected.client_id) {
        return Err(Refused::Audience);
    }
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    match number("exp") {
        Some(exp) if exp.saturating_add(LEEWAY_SECS) > expected.now => {}
        _ => return Err(Refused::Expired),
    }
    match number("iat") {
        Some(iat) if iat <= expected.now.saturating_add(LEEWAY_SECS) => {}
        Some(_) => return Err(Refused::NotYetValid),
        None => return Err(Refused::Malformed),
    }
    if number("nbf").is_some_and(|nbf| nbf > expected.now.saturating_add(LEEWAY_SECS)) {
        return Err(Refused::NotYetValid);
    }
    // Compared as hashes (as the metrics token is), so the time taken says nothing of how much
    // of this sign-in's nonce matched.
    let nonce = text("nonce").unwrap_or_default();
    if crate::identity::sha256_hex(nonce) != crate::identity::sha256_hex(expected.nonce) {
        return Err(Refused::Nonce);
    }
    let subject = text("sub").filter(|s| !s.is_empty()).ok_or(Refused::Malformed)?.to_string();
    // Userinfo speaks for the same user only (Core 5.3.2: its sub must be the token's).
    let userinfo = expected.userinfo.filter(|u| u.get("sub").and_then(Value::as_str) == Some(subject.as_str()));
    let claim = |name: &str| claims.get(name).or_else(|| userinfo.and_then(|u| u.get(name)));
    let email = claim("email").and_then(Value::as_str).filter(|e| !e.is_empty()).ok_or(Refused::NoEmail)?.to_string();
    // The flag comes from where the email came from. Some providers send it as the string "true".
    let flag = if claims.contains_key("email") { claims.get("email_verified") } else { userinfo.and_then(|u| u.get("email_verified")) };
    let verified = matches!(flag, Some(Value::Bool(true))) || flag.and_then(Value::as_str) == Some("true");
    if expected.require_verified_email && !verified {
        return Err(Refused::EmailNotVerified);
    }
    let name = claim("name").and_then(Value::as_str).map(str::to_string);
    let groups = claim(expected.groups_claim).map(|c| groups_in(Some(c)));
    Ok(Identity { subject, email, name, groups })
}

/// A groups claim: a list of names (or ids), or one name.
pub fn groups_in(claim: Option<&Value>) -> Vec<String> {
    match claim {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn key(pem: &[u8]) -> EncodingKey {
        EncodingKey::from_rsa_pem(pem).unwrap()
    }

    fn key_a() -> EncodingKey {
        key(include_bytes!("testdata/test-only-key-a.pem"))
    }

    fn key_b() -> EncodingKey {
        key(include_bytes!("testdata/test-only-key-b.pem"))
    }

    fn published(kid: &str, key: &EncodingKey) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some(kid.into());
        jwk
    }

    fn keys() -> JwkSet {
        JwkSet { keys: vec![published("a", &key_a())] }
    }

    fn claims() -> Value {
        json!({"iss": "https://idp.example.com", "aud": "tollgate", "sub": "u-1", "email": "ada@example.com", "email_verified": true,
               "nonce": "n-123", "iat": NOW - 5, "exp": NOW + 300, "groups": ["eng", "admins"], "name": "Ada"})
    }

    fn signed(claims: &Value, kid: Option<&str>, key: &EncodingKey) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://idp.example.com",
            client_id: "tollgate",
            nonce: "n-123",
            now: NOW,
            groups_claim: "groups",
            require_verified_email: true,
            userinfo: None,
        }
    }

    fn with(field: &str, value: Value) -> Value {
        let mut c = claims();
        c[field] = value;
        c
    }

    #[test]
    fn a_good_token_gives_the_identity() {
        let identity = verify(&signed(&claims(), Some("a"), &key_a()), &keys(), &expected()).unwrap();
        assert_eq!(
            identity,
            Identity { subject: "u-1".into(), email: "ada@example.com".into(), name: Some("Ada".into()), groups: Some(vec!["eng".into(), "admins".into()]) }
        );
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        assert_eq!(verify(&signed(&claims(), Some("a"), &key_b()), &keys(), &expected()), Err(Refused::Signature));
        // A token whose payload was edited after signing.
        let token = signed(&claims(), Some("a"), &key_a());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, with("email", json!("eve@example.com")).to_string());
        assert_eq!(verify(&format!("{}.{forged}.{}", parts[0], parts[2]), &keys(), &expected()), Err(Refused::Signature));
    }

    #[test]
    fn an_unknown_key_id_asks_for_the_keys_again() {
        assert_eq!(verify(&signed(&claims(), Some("rotated"), &key_b()), &keys(), &expected()), Err(Refused::UnknownKey));
        // After a rotation both keys are published, and each verifies its own tokens.
        let rotated = JwkSet { keys: vec![published("a", &key_a()), published("b", &key_b())] };
        assert!(verify(&signed(&claims(), Some("b"), &key_b()), &rotated, &expected()).is_ok());
        assert!(verify(&signed(&claims(), Some("a"), &key_a()), &rotated, &expected()).is_ok());
    }

    #[test]
    fn without_a_key_id_the_only_key_is_used() {
        assert!(verify(&signed(&claims(), None, &key_a()), &keys(), &expected()).is_ok());
        let two = JwkSet { keys: vec![published("a", &key_a()), published("b", &key_b())] };
        assert_eq!(verify(&signed(&claims(), None, &key_a()), &two, &expected()), Err(Refused::UnknownKey));
    }

    #[test]
    fn none_and_hmac_algorithms_are_refused() {
        let header = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, r#"{"alg":"none","typ":"JWT"}"#);
        let body = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims().to_string());
        assert!(verify(&format!("{header}.{body}."), &keys(), &expected()).is_err());
        // HS256 keyed with the public modulus: the classic confusion.
        let hs = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &EncodingKey::from_secret(b"public")).unwrap();
        assert_eq!(verify(&hs, &keys(), &expected()), Err(Refused::Algorithm("HS256".into())));
    }

    #[test]
    fn the_wrong_issuer_or_audience_is_refused() {
        let check = |c: Value| verify(&signed(&c, Some("a"), &key_a()), &keys(), &expected());
        assert_eq!(check(with("iss", json!("https://evil.example.com"))), Err(Refused::Issuer("https://evil.example.com".into())));
        assert_eq!(check(with("aud", json!("another-app"))), Err(Refused::Audience));
        assert_eq!(check(with("aud", json!(["another-app", "tollgate"]))), Err(Refused::Audience), "several audiences need azp = us");
        let mut ok = with("aud", json!(["another-app", "tollgate"]));
        ok["azp"] = json!("tollgate");
        assert!(check(ok).is_ok());
    }

    #[test]
    fn expiry_and_issue_time_follow_the_clock_with_leeway() {
        let check = |c: Value| verify(&signed(&c, Some("a"), &key_a()), &keys(), &expected());
        assert_eq!(check(with("exp", json!(NOW - LEEWAY_SECS))), Err(Refused::Expired));
        assert!(check(with("exp", json!(NOW - LEEWAY_SECS + 1))).is_ok());
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(no_exp), Err(Refused::Expired));
        assert_eq!(check(with("iat", json!(NOW + LEEWAY_SECS + 1))), Err(Refused::NotYetValid));
    }

    #[test]
    fn the_nonce_must_be_this_sign_ins() {
        let check = |c: Value| verify(&signed(&c, Some("a"), &key_a()), &keys(), &expected());
        assert_eq!(check(with("nonce", json!("n-from-an-earlier-sign-in"))), Err(Refused::Nonce));
        let mut none = claims();
        none.as_object_mut().unwrap().remove("nonce");
        assert_eq!(check(none), Err(Refused::Nonce));
    }

    #[test]
    fn an_unverified_email_is_refused_unless_the_operator_allows_it() {
        let token = signed(&with("email_verified", json!(false)), Some("a"), &key_a());
        assert_eq!(verify(&token, &keys(), &expected()), Err(Refused::EmailNotVerified));
        let mut lenient = expected();
        lenient.require_verified_email = false;
        assert!(verify(&token, &keys(), &lenient).is_ok());
        assert!(verify(&signed(&with("email_verified", json!("true")), Some("a"), &key_a()), &keys(), &expected()).is_ok());
        let mut no_email = claims();
        no_email.as_object_mut().unwrap().remove("email");
        assert_eq!(verify(&signed(&no_email, Some("a"), &key_a()), &keys(), &expected()), Err(Refused::NoEmail));
    }

    #[test]
    fn userinfo_fills_in_the_email_and_groups_of_the_same_subject_only() {
        let mut thin = claims();
        for name in ["email", "email_verified", "groups", "name"] {
            thin.as_object_mut().unwrap().remove(name);
        }
        let token = signed(&thin, Some("a"), &key_a());
        assert!(expected().wants_userinfo(&token));
        assert!(!expected().wants_userinfo(&signed(&claims(), Some("a"), &key_a())));
        let info = json!({"sub": "u-1", "email": "ada@example.com", "email_verified": true, "groups": ["eng"]});
        let mut with_info = expected();
        with_info.userinfo = info.as_object();
        let identity = verify(&token, &keys(), &with_info).unwrap();
        assert_eq!((identity.email.as_str(), identity.groups), ("ada@example.com", Some(vec!["eng".to_string()])));
        // Another subject's userinfo is not this user's.
        let other = json!({"sub": "u-2", "email": "eve@example.com", "email_verified": true});
        with_info.userinfo = other.as_object();
        assert_eq!(verify(&token, &keys(), &with_info), Err(Refused::NoEmail));
        // The ID token's email is verified by the ID token's flag, not userinfo's.
        let unverified = signed(&with("email_verified", json!(false)), Some("a"), &key_a());
        with_info.userinfo = info.as_object();
        assert_eq!(verify(&unverified, &keys(), &with_info), Err(Refused::EmailNotVerified));
    }

    #[test]
    fn groups_are_a_list_or_one_name() {
        assert_eq!(groups_in(Some(&json!(["a", "b", 3]))), vec!["a", "b"]);
        assert_eq!(groups_in(Some(&json!("a"))), vec!["a"]);
        assert!(groups_in(None).is_empty());
    }
}
