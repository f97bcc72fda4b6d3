//! Argon2id password hashing. Hashing is CPU-bound (~25 ms), so it runs on the blocking pool.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};

use crate::error::{ApiError, ApiResult};

pub const MIN_LEN: usize = 8;
/// Bounds the work one request can ask of argon2.
pub const MAX_LEN: usize = 256;

pub fn validate(password: &str, param: &str) -> ApiResult<()> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(ApiError::invalid_param(param, format!("{param} must be at least {MIN_LEN} characters")));
    }
    if password.len() > MAX_LEN {
        return Err(ApiError::invalid_param(param, format!("{param} must be at most {MAX_LEN} bytes")));
    }
    Ok(())
}

pub async fn hash(password: &str) -> ApiResult<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

/// The password hash of an account that has no password (it signs in through an identity
/// provider): a real hash of a random secret no one ever sees, so that no password matches it
/// and a login attempt costs what any other does (an empty hash would fail at once, and tell
/// by its speed that the account exists).
pub async fn unusable_hash() -> ApiResult<String> {
    hash(&super::random_secret("unusable_")).await
}

/// Verifies `password` against `stored`, or against a dummy hash when there is no account, so
/// that a login for an unknown email takes as long as one for a known email.
pub async fn verify(password: &str, stored: Option<&str>) -> ApiResult<bool> {
    let known = stored.is_some();
    let stored = stored.map_or_else(|| dummy_hash().to_string(), str::to_string);
    let password = password.to_string();
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(ok && known)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(b"not-a-real-password", &salt).map(|h| h.to_string()).unwrap_or_default()
    })
}
