//! Identity: users, roles and permissions, passwords, sessions with rotating refresh tokens,
//! JWT access tokens and login throttling. Handlers in `http::auth` only call into these.

pub mod accounts;
pub mod jwt;
pub mod oidc;
pub mod password;
pub mod roles;
pub mod sessions;
pub mod throttle;
pub mod users;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// A random opaque secret: `prefix` + 32 random bytes, URL-safe base64.
pub fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 in hex: how opaque secrets (refresh tokens, API keys) are stored and looked up.
pub fn sha256_hex(secret: &str) -> String {
    // Every proxied request hashes its key. Written into a buffer on the stack and copied out
    // once: `hex::encode` collects chars one at a time, a third of the hash's own cost.
    let mut text = [0u8; 64];
    match hex::encode_to_slice(Sha256::digest(secret.as_bytes()), &mut text) {
        Ok(()) => String::from_utf8_lossy(&text).into_owned(),
        Err(_) => unreachable!("a SHA-256 digest is 32 bytes, 64 in hex"),
    }
}

/// Emails are compared case-insensitively and stored lower-cased.
pub fn normalize_email(raw: &str, param: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains('@'));
    if valid { Ok(email) } else { Err(ApiError::invalid_param(param, format!("{param} must be an email address such as name@example.com"))) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_hex_is_lowercase_hex_of_the_digest() {
        assert_eq!(super::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
