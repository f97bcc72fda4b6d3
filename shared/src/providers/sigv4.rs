//! AWS Signature Version 4 for providers on AWS (Bedrock), with the AWS SDK's own signer.
//! The credentials are, in order: the model's key when it is `ACCESS_KEY_ID:SECRET[:SESSION_TOKEN]`,
//! else the standard AWS chain (the environment, which holds a Lambda function's role, then
//! profiles, web identity, container and instance roles). A key without a `:` is a Bedrock API
//! key, sent as a bearer token instead of signing.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

/// The standard chain, built once per process (building it reads the environment and files).
static CHAIN: OnceCell<SharedCredentialsProvider> = OnceCell::const_new();

async fn chain() -> &'static SharedCredentialsProvider {
    CHAIN
        .get_or_init(|| async { SharedCredentialsProvider::new(aws_config::default_provider::credentials::DefaultCredentialsChain::builder().build().await) })
        .await
}

/// Static credentials in a key, if it holds them.
fn static_credentials(key: &str) -> Option<Credentials> {
    let mut parts = key.splitn(3, ':');
    let (id, secret) = (parts.next()?, parts.next()?);
    Some(Credentials::new(id, secret, parts.next().map(str::to_string), None, "tollgate-model-key"))
}

/// Authenticates `request` to `service` in `region`: a bearer API key, or SigV4 with the
/// key's or the chain's credentials. The message of an error says what to fix.
pub async fn authorize(request: &mut reqwest::Request, service: &str, region: &str, key: Option<&SecretString>) -> Result<(), String> {
    let key = key.map(|k| k.expose_secret()).filter(|k| !k.is_empty());
    let credentials = match key.map(|k| (k, static_credentials(k))) {
        Some((_, Some(credentials))) => credentials,
        Some((api_key, None)) => {
            let value = format!("Bearer {api_key}").parse().map_err(|_| "the model's API key is not a valid header value".to_string())?;
            request.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
            return Ok(());
        }
        None => chain()
            .await
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials: set the model's key to ACCESS_KEY_ID:SECRET, or give the gateway a role or AWS_* variables ({e})"))?,
    };
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("could not sign the request: {e}"))?
        .into();
    let body = request.body().and_then(reqwest::Body::as_bytes).unwrap_or_default();
    let headers: Vec<(String, String)> =
        request.headers().iter().filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))).collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.url().as_str(),
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("could not sign the request: {e}"))?;
    let (instructions, _) = sign(signable, &params).map_err(|e| format!("could not sign the request: {e}"))?.into_parts();
    for (name, value) in instructions.headers() {
        let value = value.parse().map_err(|_| format!("could not sign the request: a bad {name} header"))?;
        request.headers_mut().insert(reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_is_signed_with_the_keys_credentials_or_carries_an_api_key() {
        let client = reqwest::Client::new();
        let mut request = client.post("https://bedrock-runtime.eu-west-1.amazonaws.com/model/m/converse").body("{}").build().unwrap();
        authorize(&mut request, "bedrock", "eu-west-1", Some(&SecretString::from("AKIDEXAMPLE:secret"))).await.unwrap();
        let auth = request.headers()["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
        assert!(auth.contains("/eu-west-1/bedrock/aws4_request"), "{auth}");
        assert!(request.headers().contains_key("x-amz-date"));
        let mut bearer = client.post("https://x/converse").build().unwrap();
        authorize(&mut bearer, "bedrock", "eu-west-1", Some(&SecretString::from("ABSKbedrockapikey"))).await.unwrap();
        assert_eq!(bearer.headers()["authorization"], "Bearer ABSKbedrockapikey");
    }
}
