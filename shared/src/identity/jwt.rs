//! Access tokens: HS256 JWTs valid one hour, naming the user and the session. The algorithm is
//! pinned, `exp`, `iat`, `iss` and `sid` are required, and the session must still exist (checked
//! by `sessions::authenticate`), so revoking a session kills its access tokens at once.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::secrets::SecretStore;

pub const ACCESS_TTL_SECS: i64 = 3600;
const ISSUER: &str = "tollgate";
/// The secret store name of the signing key.
pub const SIGNING_KEY_SECRET: &str = "jwt-signing-key";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        // Expiry is checked against the clock every rule uses (`verify`), not the system's.
        validation.validate_exp = false;
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    /// Loads the signing key from the secret store, creating it on first start. When two
    /// processes start at once, `create` lets exactly one key win and both then read it.
    pub async fn load_or_create(secrets: &dyn SecretStore) -> anyhow::Result<Self> {
        if let Some(existing) = secrets.get(SIGNING_KEY_SECRET).await? {
            return Self::decode_key(&existing);
        }
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
        let fresh = SecretString::from(base64::engine::general_purpose::STANDARD.encode(bytes));
        secrets.create(SIGNING_KEY_SECRET, &fresh).await?;
        let stored = secrets.get(SIGNING_KEY_SECRET).await?.ok_or_else(|| anyhow::anyhow!("the JWT signing key vanished right after it was created"))?;
        Self::decode_key(&stored)
    }

    fn decode_key(stored: &SecretString) -> anyhow::Result<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(stored.expose_secret())
            .map_err(|_| anyhow::anyhow!("the stored JWT signing key is not base64"))?;
        anyhow::ensure!(bytes.len() >= 32, "the stored JWT signing key is shorter than 32 bytes");
        Ok(Self::from_secret(&bytes))
    }

    pub fn issue(&self, user_id: Uuid, session_id: Uuid, now: i64) -> anyhow::Result<String> {
        let claims = Claims { sub: user_id, sid: session_id, iat: now, exp: now + ACCESS_TTL_SECS, iss: ISSUER.into() };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    /// The claims of a valid token at `now`; `None` for anything forged, expired, or of another
    /// algorithm.
    pub fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok().map(|d| d.claims).filter(|c| c.exp >= now)
    }
}
