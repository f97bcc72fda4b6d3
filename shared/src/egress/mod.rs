//! Where the gateway may connect. Two HTTP clients, neither of which follows a redirect:
//! - `trusted`, for what a global admin configured (catalog models, the integrations' service
//!   URLs, the hub);
//! - `restricted`, for every URL anyone else supplies (users' own providers, their credential
//!   tests, the token URL of a user's Google service account, webhooks). It connects only to
//!   public unicast addresses: a host name is resolved here, every address it resolves to is
//!   checked, and the connection goes to those checked addresses (no second lookup, so no DNS
//!   rebinding); a literal IP in the URL is checked before the request is sent. Operators who
//!   want users to reach a private host (a local vLLM or Ollama) list it in
//!   `TOLLGATE_PRIVATE_UPSTREAMS`.
//!
//! A 3xx answer is handed back as it is (callers treat it as an upstream error naming the
//! status): following it would let any public host send us to an internal one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

mod direct;
pub use direct::Answer;

/// Why the restricted client would not connect: a message that names the address and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked(pub String);

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Blocked {}

/// Which addresses user-supplied URLs may reach: public unicast ones, and the operator's
/// private exceptions.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    pub private_allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// Whether `ip` may be connected to, or why not.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Blocked> {
        if is_public(ip) || self.private_allowed.iter().any(|net| net.contains(&ip) || embedded_v4(ip).is_some_and(|v4| net.contains(&IpAddr::V4(v4)))) {
            return Ok(());
        }
        let which = if host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() { format!("{ip}") } else { format!("{host} resolves to {ip}, which") };
        Err(Blocked(format!(
            "{which} is not a public address; providers and webhooks that users configure may reach public addresses only (an operator can allow a private one with TOLLGATE_PRIVATE_UPSTREAMS)"
        )))
    }
}

/// The IPv4 address an IPv6 address stands for, where it embeds one that routes to it:
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated), NAT64's
/// well-known prefix (`64:ff9b::/96`) and 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // `::` and `::1` are themselves (unspecified, loopback), not compatible addresses.
        [0, 0, 0, 0, 0, 0, _, _] if !matches!(s[6..], [0, 0] | [0, 1]) => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8)),
        _ => None,
    }
}

/// Whether `ip` is a public unicast address: globally routable, per IANA's special-purpose
/// address registries (RFC 6890 and its updates). Refused: unspecified and "this network"
/// (0.0.0.0/8, ::), loopback, private (10/8, 172.16/12, 192.168/16), carrier-grade NAT
/// (100.64/10), link-local (169.254/16, fe80::/10, cloud metadata at 169.254.169.254), IETF
/// protocol assignments (192.0.0/24, 2001::/23), documentation ranges, benchmarking
/// (198.18/15), 6to4 relays, multicast, reserved (240/4) and broadcast; unique-local IPv6
/// (fc00::/7, so AWS's fd00:ec2::254), site-local, discard-only (100::/64), and anything
/// outside 2000::/3. IPv6 forms that embed an IPv4 address are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(ip) {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    const REFUSED: [(u32, u8); 15] = [
        (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
        (0x0a00_0000, 8),  // 10/8 private
        (0x6440_0000, 10), // 100.64/10 carrier-grade NAT
        (0x7f00_0000, 8),  // 127/8 loopback
        (0xa9fe_0000, 16), // 169.254/16 link-local, cloud metadata
        (0xac10_0000, 12), // 172.16/12 private
        (0xc000_0000, 24), // 192.0.0/24 IETF protocol assignments
        (0xc000_0200, 24), // 192.0.2/24 documentation
        (0xc058_6300, 24), // 192.88.99/24 6to4 relay anycast
        (0xc0a8_0000, 16), // 192.168/16 private
        (0xc612_0000, 15), // 198.18/15 benchmarking
        (0xc633_6400, 24), // 198.51.100/24 documentation
        (0xcb00_7100, 24), // 203.0.113/24 documentation
        (0xe000_0000, 4),  // 224/4 multicast
        (0xf000_0000, 4),  // 240/4 reserved, and 255.255.255.255
    ];
    let bits = u32::from(ip);
    !REFUSED.iter().any(|(net, len)| bits >> (32 - len) == net >> (32 - len))
}

fn public_v6(ip: Ipv6Addr) -> bool {
    const REFUSED: [(u128, u8); 6] = [
        (0x0064_ff9b_0001 << 80, 48),      // 64:ff9b:1::/48 local-use NAT64
        (0x2001_0000 << 96, 23),           // 2001::/23 IETF protocol assignments (Teredo included)
        (0x2001_0db8 << 96, 32),           // 2001:db8::/32 documentation
        (0x3fff_0000 << 96, 20),           // 3fff::/20 documentation
        (0x0100_0000_0000_0000 << 64, 64), // 100::/64 discard-only
        (0xfc00 << 112, 7),                // fc00::/7 unique local
    ];
    let bits = u128::from(ip);
    // Global unicast is 2000::/3; everything else (loopback, link-local, multicast, ...) is not.
    bits >> 125 == 0b001 && !REFUSED.iter().any(|(net, len)| bits >> (128 - len) == net >> (128 - len))
}

/// The addresses `host` resolves to; with a policy, only if every one of them passes it.
/// One address the policy refuses refuses the name: a name that mixes public and internal
/// addresses is a rebinding attempt more often than a real service. The connection then goes
/// to these addresses, with no second lookup.
async fn resolve(host: &str, policy: Option<&AddressPolicy>) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
    let Some(policy) = policy else { return Ok(found) };
    if found.is_empty() {
        return Err(Box::new(Blocked(format!("{host} resolves to no address"))));
    }
    for addr in &found {
        policy.check(host, addr.ip())?;
    }
    Ok(found)
}

/// Resolves host names for the restricted reqwest client (see `resolve`).
struct CheckedResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move { Ok(Box::new(resolve(name.as_str(), Some(&policy)).await?.into_iter()) as Addrs) })
    }
}

/// An HTTP client that never follows redirects, and, when it has a policy, connects only to
/// the addresses it allows. Requests go through `execute` (or `send`), or the proxy's `relay`,
/// each of which checks a URL's literal IP host before anything is sent (names are checked by
/// the resolvers).
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    /// The proxy's path (see `direct`): the same policy, without reqwest's per-request layers.
    direct: direct::Direct,
    policy: Option<Arc<AddressPolicy>>,
}

/// Why a request through an `HttpClient` got no answer.
#[derive(Debug)]
pub enum SendError {
    /// The address policy refused the URL's host.
    Blocked(Blocked),
    Http(reqwest::Error),
    /// From `relay`: no answer came (connection, TLS, a malformed answer).
    Relay(hyper_util::client::legacy::Error),
}

impl SendError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendError::Http(e) if e.is_timeout())
    }
}

impl std::fmt::Display for SendError {
    /// Without the URL (reqwest puts it in its messages): the caller of a model may not see its
    /// base URL. A refusal by the policy, wherever in the chain it surfaced, is said as such.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Blocked(b) => b.fmt(f),
            SendError::Http(e) => {
                if let Some(blocked) = blocked_in(e) {
                    return blocked.fmt(f);
                }
                let mut text = e.to_string();
                if let Some(url) = e.url() {
                    text = text.replace(&format!(" for url ({url})"), "").replace(url.as_str(), "[upstream]");
                }
                f.write_str(&with_causes(text, e))
            }
            // hyper's messages name no URL.
            SendError::Relay(e) => match blocked_in(e) {
                Some(blocked) => blocked.fmt(f),
                None => f.write_str(&with_causes(e.to_string(), e)),
            },
        }
    }
}

/// A refusal by the policy, wherever in the chain of causes it surfaced.
fn blocked_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Blocked> {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(blocked) = err.downcast_ref::<Blocked>() {
            return Some(blocked);
        }
        source = err.source();
    }
    None
}

/// `text` (an error's own message, short: "error sending request", "client error (Connect)")
/// followed by its causes, which say why.
pub fn with_causes(mut text: String, e: &dyn std::error::Error) -> String {
    let mut cause = e.source();
    while let Some(err) = cause {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cause = err.source();
    }
    text
}

impl HttpClient {
    fn build(policy: Option<Arc<AddressPolicy>>) -> anyhow::Result<Self> {
        Self::with_roots(policy, direct::public_roots())
    }

    /// The direct path trusting `roots` (the public web's outside tests).
    fn with_roots(policy: Option<Arc<AddressPolicy>>, roots: rustls::RootCertStore) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would resolve the names itself, past the policy.
            .no_proxy();
        if let Some(policy) = &policy {
            builder = builder.dns_resolver(Arc::new(CheckedResolver { policy: policy.clone() }));
        }
        Ok(HttpClient { client: builder.build()?, direct: direct::client(policy.clone(), roots)?, policy })
    }

    /// For what global admins configure.
    pub fn trusted() -> anyhow::Result<Self> {
        Self::build(None)
    }

    /// For URLs anyone else supplies.
    pub fn restricted(policy: AddressPolicy) -> anyhow::Result<Self> {
        Self::build(Some(Arc::new(policy)))
    }

    /// Whether a URL's host passes the policy before any lookup: a literal IP must be allowed
    /// (names are checked when they are resolved).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Blocked> {
        let Some(policy) = &self.policy else { return Ok(()) };
        check_host(url, policy)
    }

    /// A request to build; send it with `execute` or `send`.
    pub fn request(&self, method: reqwest::Method, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    pub fn post(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, url)
    }

    pub fn get(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, url)
    }

    pub async fn execute(&self, request: reqwest::Request) -> Result<reqwest::Response, SendError> {
        self.check_url(request.url()).map_err(SendError::Blocked)?;
        self.client.execute(request).await.map_err(SendError::Http)
    }

    /// Sends a built request on the proxy's direct path (see `direct`): no timeout of its own,
    /// the answer's body read as it arrives.
    pub async fn relay(&self, request: reqwest::Request) -> Result<Answer, SendError> {
        self.check_url(request.url()).map_err(SendError::Blocked)?;
        let request = hyper::Request::try_from(request).map_err(SendError::Http)?;
        self.direct.request(request).await.map_err(SendError::Relay)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, SendError> {
        self.execute(request.build().map_err(SendError::Http)?).await
    }
}

/// Both clients, built once per process.
#[derive(Clone)]
pub struct Egress {
    pub trusted: HttpClient,
    pub restricted: HttpClient,
}

impl Egress {
    pub fn new(private_allowed: Vec<IpNet>) -> anyhow::Result<Self> {
        Ok(Egress { trusted: HttpClient::trusted()?, restricted: HttpClient::restricted(AddressPolicy { private_allowed })? })
    }

    /// The client for a URL that a global admin configured (`true`) or someone else supplied.
    pub fn for_admin_configured(&self, admin_configured: bool) -> &HttpClient {
        if admin_configured { &self.trusted } else { &self.restricted }
    }
}

/// Checks a URL given to be stored (a user's provider, a webhook) as early as its text allows:
/// a literal IP host must pass the policy. Names are checked again at every connection.
pub fn check_literal(url: &str, policy: &AddressPolicy) -> Result<(), Blocked> {
    let parsed = reqwest::Url::parse(url).map_err(|e| Blocked(format!("not a URL ({e})")))?;
    check_host(&parsed, policy)
}

/// A parsed URL's host is a literal IP in its one normal form (dotted decimal, or bracketed
/// IPv6: the parser has read decimal, octal and hex spellings already), or a name.
fn check_host(url: &reqwest::Url, policy: &AddressPolicy) -> Result<(), Blocked> {
    let host = url.host_str().ok_or_else(|| Blocked("the URL has no host".into()))?;
    match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) => policy.check(host, ip),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().unwrap())
    }

    #[test]
    fn only_public_unicast_addresses_pass() {
        for refused in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "169.254.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "2001:db8::1",
            "2001::1",
            "3fff::1",
            "100::1",
        ] {
            assert!(!public(refused), "{refused} must be refused");
        }
        for allowed in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(public(allowed), "{allowed} is public");
        }
    }

    #[test]
    fn every_spelling_of_an_address_is_judged_by_the_address() {
        let policy = AddressPolicy::default();
        // The URL parser reads decimal, octal and hex IPv4 forms (WHATWG), and brackets IPv6.
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://2130706433:8080/v1",
            "http://0x7f000001/v1",
            "http://0177.0.0.1/v1",
            "http://0x7f.1/v1",
            "http://127.1/v1",
            "http://[::ffff:127.0.0.1]:8080/v1",
            "http://[::ffff:7f00:1]/v1",
            "http://[::1]/v1",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://0/v1",
        ] {
            assert!(check_literal(url, &policy).is_err(), "{url} must be refused");
        }
        assert!(check_literal("https://8.8.8.8/v1", &policy).is_ok());
        assert!(check_literal("https://api.openai.com/v1", &policy).is_ok(), "names are checked when resolved");
        let allowed = AddressPolicy { private_allowed: vec!["10.1.2.0/24".parse().unwrap()] };
        assert!(check_literal("http://10.1.2.3:8000/v1", &allowed).is_ok(), "the operator's exception");
        assert!(check_literal("http://[::ffff:10.1.2.3]:8000/v1", &allowed).is_ok());
        assert!(check_literal("http://10.1.3.3:8000/v1", &allowed).is_err());
    }

    #[tokio::test]
    async fn a_name_is_connected_to_only_at_the_addresses_that_were_checked() {
        let resolver = CheckedResolver { policy: Arc::new(AddressPolicy::default()) };
        let refused = resolver.resolve("localhost".parse().unwrap()).await.err().expect("localhost is loopback");
        assert!(refused.to_string().contains("localhost resolves to"), "{refused}");
        let allowed = CheckedResolver { policy: Arc::new(AddressPolicy { private_allowed: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()] }) };
        let addrs: Vec<SocketAddr> = allowed.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
