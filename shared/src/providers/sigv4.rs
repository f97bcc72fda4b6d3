//! AWS Signature Version 4 for providers on AWS (Bedrock), with the AWS SDK's own signer.
//! The credentials are, in order: the model's key when it is `ACCESS_KEY_ID:SECRET[:SESSION_TOKEN]`,
//! else the standard AWS chain (the environment, which holds a Lambda function's role, then
//! profiles, web identity, container and instance roles). A key without a `:` is a Bedrock API
//! key, sent as a bearer token instead of signing.

use std::time::SystemTime;

use aws_credential_types::Credentials as AwsCredentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;

use super::credentials::{AuthError, Cloud, Credentials};

/// Whether a request signed with the gateway's own AWS identity goes where that identity is
/// meant for: the region's Bedrock runtime (FIPS, or a VPC endpoint of it), over HTTPS.
fn aws_host(url: &reqwest::Url, region: &str) -> Result<(), AuthError> {
    let host = url.host_str().unwrap_or_default();
    let official = [format!("bedrock-runtime.{region}.amazonaws.com"), format!("bedrock-runtime-fips.{region}.amazonaws.com")];
    let vpce = format!(".bedrock-runtime.{region}.vpce.amazonaws.com");
    if url.scheme() == "https" && (official.iter().any(|h| h == host) || host.ends_with(&vpce)) {
        Ok(())
    } else {
        Err(AuthError::ForeignHost { cloud: Cloud::Aws, allowed: format!("https://bedrock-runtime.{region}.amazonaws.com (or its VPC endpoint)") })
    }
}

/// The standard chain, built once per process (building it reads the environment and files).
static CHAIN: OnceCell<SharedCredentialsProvider> = OnceCell::const_new();

async fn chain() -> &'static SharedCredentialsProvider {
    CHAIN
        .get_or_init(|| async { SharedCredentialsProvider::new(aws_config::default_provider::credentials::DefaultCredentialsChain::builder().build().await) })
        .await
}

/// Static credentials in a key, if it holds them.
fn static_credentials(key: &str) -> Option<AwsCredentials> {
    let mut parts = key.splitn(3, ':');
    let (id, secret) = (parts.next()?, parts.next()?);
    Some(AwsCredentials::new(id, secret, parts.next().map(str::to_string), None, "tollgate-model-key"))
}

/// Authenticates `request` to `service` in `region`: a bearer API key, or SigV4 with the
/// key's or the chain's credentials. The message of an error says what to fix.
pub async fn authorize(request: &mut reqwest::Request, service: &str, region: &str, credentials: Credentials<'_>) -> Result<(), AuthError> {
    let key = credentials.key.map(|k| k.expose_secret()).filter(|k| !k.is_empty());
    if key.is_none() {
        if !credentials.ambient {
            return Err(AuthError::NoOwnKey(Cloud::Aws));
        }
        aws_host(request.url(), region)?;
    }
    let credentials = match key.map(|k| (k, static_credentials(k))) {
        Some((_, Some(credentials))) => credentials,
        Some((api_key, None)) => {
            let value = format!("Bearer {api_key}").parse().map_err(|_| AuthError::BadKey("it is not a valid header value".into()))?;
            request.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
            return Ok(());
        }
        None => chain().await.provide_credentials().await.map_err(|e| AuthError::NoAmbient {
            cloud: Cloud::Aws,
            why: format!("set the model's key to ACCESS_KEY_ID:SECRET, or give the gateway a role or AWS_* variables ({e})"),
        })?,
    };
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| AuthError::Signing(e.to_string()))?
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
    .map_err(|e| AuthError::Signing(e.to_string()))?;
    let (instructions, _) = sign(signable, &params).map_err(|e| AuthError::Signing(e.to_string()))?.into_parts();
    for (name, value) in instructions.headers() {
        let value = value.parse().map_err(|_| AuthError::Signing(format!("a bad {name} header")))?;
        request.headers_mut().insert(reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| AuthError::Signing(e.to_string()))?, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[tokio::test]
    async fn a_request_is_signed_with_the_keys_credentials_or_carries_an_api_key() {
        let client = reqwest::Client::new();
        let mut request = client.post("https://bedrock-runtime.eu-west-1.amazonaws.com/model/m/converse").body("{}").build().unwrap();
        let key = SecretString::from("AKIDEXAMPLE:secret");
        authorize(&mut request, "bedrock", "eu-west-1", Credentials::own(Some(&key))).await.unwrap();
        let auth = request.headers()["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
        assert!(auth.contains("/eu-west-1/bedrock/aws4_request"), "{auth}");
        assert!(request.headers().contains_key("x-amz-date"));
        let mut bearer = client.post("https://x/converse").build().unwrap();
        let api_key = SecretString::from("ABSKbedrockapikey");
        authorize(&mut bearer, "bedrock", "eu-west-1", Credentials::own(Some(&api_key))).await.unwrap();
        assert_eq!(bearer.headers()["authorization"], "Bearer ABSKbedrockapikey");
    }

    #[tokio::test]
    async fn the_gateways_own_identity_signs_only_for_a_catalog_model_and_only_to_bedrock() {
        let client = reqwest::Client::new();
        let mut request = client.post("https://bedrock-runtime.eu-west-1.amazonaws.com/model/m/converse").build().unwrap();
        let why = authorize(&mut request, "bedrock", "eu-west-1", Credentials::own(None)).await.unwrap_err();
        assert!(matches!(why, AuthError::NoOwnKey(Cloud::Aws)), "{why}");
        assert!(why.to_string().contains("no AWS credentials of its own"), "{why}");
        assert!(!request.headers().contains_key("authorization"));
        let ambient = Credentials { key: None, ambient: true };
        for elsewhere in [
            "https://attacker.example/model/m/converse",
            "http://bedrock-runtime.eu-west-1.amazonaws.com/x",
            "https://bedrock-runtime.us-east-1.amazonaws.com/x",
        ] {
            let mut request = client.post(elsewhere).build().unwrap();
            let why = authorize(&mut request, "bedrock", "eu-west-1", ambient).await.unwrap_err();
            assert!(why.to_string().contains("serves only requests to https://bedrock-runtime.eu-west-1.amazonaws.com"), "{elsewhere}: {why}");
            assert!(!request.headers().contains_key("authorization"));
        }
        assert!(aws_host(&"https://vpce-1.bedrock-runtime.eu-west-1.vpce.amazonaws.com/x".parse().unwrap(), "eu-west-1").is_ok());
    }
}
