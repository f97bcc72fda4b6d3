//! The proxy's own path to upstreams: hyper's pooled HTTP/1.1 client over rustls, under the
//! same address policy as the reqwest client beside it (`HttpClient::relay`).
//!
//! reqwest's per-request layers cost ~20k of the ~390k instructions of a proxied request
//! (`scripts/bench-instructions`, 16 in flight): its redirect layer prints and parses the URL
//! again even with redirects off, and the answer's URL is printed and parsed once more. Requests
//! are still built with reqwest's builder, where providers sign and attribute them; this client
//! only sends them. It has no timeouts of its own: the proxy bounds the wait for an answer's
//! head and body itself. TLS is reqwest's: rustls with ring, webpki's roots, no client
//! certificate; no redirect is followed and no proxy from the environment is used.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use super::AddressPolicy;

/// An upstream's answer as the direct client hands it back: its body is read as it arrives.
pub type Answer = hyper::Response<hyper::body::Incoming>;

pub(super) type Direct = Client<hyper_rustls::HttpsConnector<HttpConnector<Resolver>>, reqwest::Body>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Host names as the connector resolves them: every address checked against the policy where
/// there is one (see `super::resolve`).
#[derive(Clone)]
pub(super) struct Resolver {
    policy: Option<Arc<AddressPolicy>>,
}

impl tower::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move { Ok(super::resolve(name.as_str(), policy.as_deref()).await?.into_iter()) })
    }
}

/// The public web's roots, as reqwest's `rustls-tls` trusts them.
pub(super) fn public_roots() -> rustls::RootCertStore {
    rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

/// A client that connects where `policy` allows (anywhere without one), trusting `roots`.
pub(super) fn client(policy: Option<Arc<AddressPolicy>>, roots: rustls::RootCertStore) -> Result<Direct, rustls::Error> {
    let mut http = HttpConnector::new_with_resolver(Resolver { policy });
    http.set_nodelay(true);
    // The TLS layer takes https URLs over this connector.
    http.enforce_http(false);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(https))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::{HttpClient, SendError};
    use http_body_util::BodyExt;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A throwaway CA and a certificate it signed for localhost and 127.0.0.1, made for this
    /// test with openssl (valid until 2126); the key protects nothing else.
    const CA: &[u8] = include_bytes!("testdata/ca.pem");
    const LEAF: &[u8] = include_bytes!("testdata/leaf.pem");
    const LEAF_KEY: &[u8] = include_bytes!("testdata/leaf.key");

    /// Serves one TLS connection: reads a request's head and answers `answer` to it.
    async fn tls_server(answer: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from_pem_slice(LEAF).unwrap()], PrivateKeyDer::from_pem_slice(LEAF_KEY).unwrap())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tls.read(&mut buf).await.unwrap();
                assert!(n > 0, "the connection closed before the request's head ended");
                head.extend_from_slice(&buf[..n]);
            }
            tls.write_all(answer.as_bytes()).await.unwrap();
            tls.shutdown().await.unwrap();
            String::from_utf8(head).unwrap()
        });
        (port, served)
    }

    fn roots(pem: &[u8]) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(pem).unwrap()).unwrap();
        roots
    }

    #[tokio::test]
    async fn an_https_upstream_is_reached_over_verified_tls() {
        let (port, served) = tls_server("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}").await;
        let client = HttpClient::with_roots(None, roots(CA)).unwrap();
        let request =
            client.post(format!("https://localhost:{port}/v1/chat/completions")).header("authorization", "Bearer sk-test").body("{}").build().unwrap();
        let answer = client.relay(request).await.unwrap();
        assert_eq!(answer.status(), 200);
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{\"ok\":true}");
        let head = served.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("post /v1/chat/completions http/1.1\r\n"), "{head}");
        assert!(
            head.contains("\r\nhost: localhost:") && head.contains("\r\ncontent-length: 2\r\n") && head.contains("\r\nauthorization: bearer sk-test\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_certificate_the_roots_do_not_vouch_for_is_refused() {
        let (port, _served) = tls_server("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        // The public roots, as in production: a private CA's certificate is not trusted.
        let client = HttpClient::with_roots(None, public_roots()).unwrap();
        let request = client.post(format!("https://localhost:{port}/v1")).body("{}").build().unwrap();
        let refused = client.relay(request).await.expect_err("an untrusted certificate");
        assert!(matches!(refused, SendError::Relay(_)), "{refused}");
        assert!(refused.to_string().to_lowercase().contains("certificate"), "{refused}");
    }

    #[tokio::test]
    async fn the_address_policy_holds_for_names_and_literals() {
        let client = HttpClient::with_roots(Some(Arc::new(AddressPolicy::default())), public_roots()).unwrap();
        for url in ["http://localhost:9/v1", "http://127.0.0.1:9/v1", "http://[::1]:9/v1"] {
            let request = client.post(url).body("{}").build().unwrap();
            let refused = client.relay(request).await.expect_err("a loopback address");
            assert!(refused.to_string().contains("is not a public address"), "{url}: {refused}");
            assert!(!refused.to_string().contains(":9"), "the message leaves the URL out: {refused}");
        }
    }

    #[tokio::test]
    async fn a_redirect_is_handed_back_not_followed() {
        let (port, served) =
            tls_server("HTTP/1.1 307 Temporary Redirect\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\n\r\n").await;
        let client = HttpClient::with_roots(None, roots(CA)).unwrap();
        let request = client.post(format!("https://127.0.0.1:{port}/v1")).body("{}").build().unwrap();
        let answer = client.relay(request).await.unwrap();
        assert_eq!(answer.status(), 307);
        served.await.unwrap();
    }
}
