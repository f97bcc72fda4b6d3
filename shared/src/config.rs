//! Configuration from the environment, with the names the README documents. The same names
//! drive the local server and the Lambda functions (whose template sets the AWS ones).

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;

/// When a deployment cools down, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct CooldownPolicy {
    pub failures: u32,
    pub window_ms: i64,
    pub cooldown_ms: i64,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        CooldownPolicy { failures: 3, window_ms: 60_000, cooldown_ms: 30_000 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Embedded,
    DynamoDb,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretsKind {
    Embedded,
    SecretsManager,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// `TOLLGATE_LISTEN`, default 127.0.0.1:8080.
    pub listen: SocketAddr,
    /// `TOLLGATE_DATA_DIR`, default ./.tollgate: the embedded store and secrets live here.
    pub data_dir: PathBuf,
    /// `TOLLGATE_STORE`: `embedded` (default) or `dynamodb`.
    pub store: StoreKind,
    /// `TOLLGATE_DYNAMODB_ENDPOINT`: DynamoDB Local, moto's server, or unset for AWS.
    pub dynamodb_endpoint: Option<String>,
    /// `TOLLGATE_TABLE`, default `tollgate`.
    pub table: String,
    /// `TOLLGATE_SECRETS`: `embedded` (default) or `secretsmanager`.
    pub secrets: SecretsKind,
    /// `TOLLGATE_SECRETS_ENDPOINT`: a Secrets Manager emulator, or unset for AWS.
    pub secrets_endpoint: Option<String>,
    /// `TOLLGATE_SECRETS_PREFIX`, default `tollgate/`: every Secrets Manager name starts so.
    pub secrets_prefix: String,
    /// `TOLLGATE_TRUSTED_PROXIES`: comma-separated IPs or CIDRs whose X-Forwarded-For is
    /// believed. Empty (default): the peer address is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// `TOLLGATE_PRIVATE_UPSTREAMS`: comma-separated IPs or CIDRs that URLs supplied by users
    /// (their own providers, webhooks) may reach although they are not public (a local vLLM
    /// or Ollama). Empty (default): public unicast addresses only (see `egress`).
    pub private_upstreams: Vec<IpNet>,
    /// `TOLLGATE_KEY_CACHE_SECS`, default 10: how long a warm process trusts its copy of an API
    /// key, model or provider secret, and so the longest a revoked key keeps working. 0 = off.
    pub key_cache: std::time::Duration,
    /// `TOLLGATE_UPSTREAM_TIMEOUT_MS`, default 60000: the wait for an upstream's answer to begin.
    pub upstream_timeout: std::time::Duration,
    /// `TOLLGATE_STREAM_IDLE_TIMEOUT_SECS`, default 600: how long a stream's upstream may send
    /// nothing, once it began, before the stream is ended with an error event and recorded as
    /// timed out (generous: reasoning models stream nothing while they think).
    pub stream_idle_timeout: std::time::Duration,
    /// `TOLLGATE_MAX_IN_FLIGHT`, default 1024 (0: no limit): how many proxied requests one
    /// process serves at once, streams included until their last event (see `admission`).
    pub max_in_flight: usize,
    /// `TOLLGATE_ADMISSION_WAIT_MS`, default 100: how long a request past `max_in_flight` waits
    /// for another to end before it is answered 503 `overloaded`.
    pub admission_wait: std::time::Duration,
    /// `TOLLGATE_COOLDOWN_FAILURES` (default 3), `TOLLGATE_COOLDOWN_WINDOW_SECS` (60) and
    /// `TOLLGATE_COOLDOWN_SECS` (30): a deployment failing that many times within the window
    /// (429, 5xx, unreachable, timed out) is skipped for the cooldown, then probed once.
    pub cooldown: CooldownPolicy,
    /// `TOLLGATE_CACHE_HIT_PERCENT`, default 0: what an answer from the response cache is
    /// charged, as a percentage (0 to 100) of what the first answer cost.
    pub cache_hit_percent: u8,
    /// `TOLLGATE_LEASE_MARGIN_SECS`, default 600: how long past its upstream timeout a request's
    /// reservation is held before anyone may release it as abandoned (its process died). A live
    /// stream renews its lease halfway through each such period.
    pub lease_margin: std::time::Duration,
    /// `TOLLGATE_DURABILITY` (embedded store only): `strict` (default) syncs every usage record
    /// to disk before its request is over; `relaxed` lets records and settlements reach the
    /// disk within 50 ms instead, trading that window of loss on a crash for latency.
    pub relaxed_durability: bool,
    /// `TOLLGATE_USAGE_RETENTION_DAYS`, default 400 (0: forever): how long a usage record is
    /// kept, through the table's TTL. Rollups (and so the usage views) are kept for good.
    pub usage_retention_days: u32,
    /// `TOLLGATE_RESPONSES_TTL_DAYS`, default 30 (as OpenAI keeps them): how long a stored
    /// response can be read and continued.
    pub responses_ttl_days: u32,
    /// `TOLLGATE_OPENROUTER_URL`, default https://openrouter.ai/api/v1: where workspace
    /// OpenRouter tokens are checked and used.
    pub openrouter_url: String,
    /// `TOLLGATE_HUGGINGFACE_URL`, default https://router.huggingface.co/v1: Hugging Face's
    /// inference router, for workspace Hugging Face tokens.
    pub huggingface_url: String,
    /// `TOLLGATE_HUGGINGFACE_HUB_URL`, default https://huggingface.co: where Hugging Face tokens
    /// are checked and dataset URLs resolved.
    pub huggingface_hub_url: String,
    /// `TOLLGATE_APP_URL` and `TOLLGATE_APP_TITLE`, unset by default: the app OpenRouter
    /// attributes requests to (`HTTP-Referer`, `X-OpenRouter-Title`) when the caller sends none.
    pub app_url: Option<String>,
    pub app_title: Option<String>,
    /// `TOLLGATE_PUBLIC_URL`, unset by default: where the gateway (and its dashboard) is
    /// reached, which invite links must point to, when the settings' `publicUrl` is not set.
    /// Without either, the local server's own `http://<TOLLGATE_LISTEN>/`.
    pub public_url: Option<String>,
    /// `TOLLGATE_METRICS_TOKEN`, unset by default: the bearer token `GET /metrics` asks for.
    /// Unset, `/metrics` answers anyone who reaches the listen address (keep it private, or
    /// set the token).
    pub metrics_token: Option<secrecy::SecretString>,
    /// `TOLLGATE_METRICS_KEY_LABELS`, `false` by default: `true` adds the API key's id to the
    /// proxied requests' and cost counters (one series per key: mind the cardinality).
    pub metrics_key_labels: bool,
    /// Where metrics go: EMF lines inside Lambda (`AWS_LAMBDA_RUNTIME_API` is set), else
    /// `/metrics`.
    pub metrics_sink: crate::metrics::Sink,
    /// `TOLLGATE_LOG_FORMAT`: `text` (default) or `json`, one object per line with an access
    /// line per request (request id, trace id, route, status, latency, outcome).
    pub log_json: bool,
    /// Traces (see `traces`): off unless an OTLP endpoint is set.
    pub traces: TraceConfig,
    /// `TOLLGATE_AUDIT_RETENTION_DAYS`, default 400 (0: forever): how long an audit event is
    /// kept, through the table's TTL.
    pub audit_retention_days: u32,
    /// `TOLLGATE_OIDC_ISSUER`, `TOLLGATE_OIDC_CLIENT_ID` and `TOLLGATE_OIDC_CLIENT_SECRET`, all
    /// three or none: single sign-on through this OpenID provider (`identity::oidc`). Set
    /// here, they win over the ones saved through `PUT /api/settings/oidc`.
    pub oidc: Option<crate::identity::oidc::OidcClientConfig>,
}

/// Where spans go and what they may carry.
#[derive(Clone, Debug, Default)]
pub struct TraceConfig {
    /// The OTLP traces URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`; none (or `OTEL_SDK_DISABLED=true`, or
    /// `OTEL_TRACES_EXPORTER=none`): tracing is off.
    pub endpoint: Option<String>,
    /// `TOLLGATE_TRACE_CONTENT=true`: a request's messages go on its span (never by default).
    pub content: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(".tollgate"),
            store: StoreKind::Embedded,
            dynamodb_endpoint: None,
            table: "tollgate".into(),
            secrets: SecretsKind::Embedded,
            secrets_endpoint: None,
            secrets_prefix: "tollgate/".into(),
            trusted_proxies: Vec::new(),
            private_upstreams: Vec::new(),
            key_cache: std::time::Duration::from_secs(10),
            upstream_timeout: std::time::Duration::from_secs(60),
            stream_idle_timeout: std::time::Duration::from_secs(600),
            max_in_flight: 1024,
            admission_wait: std::time::Duration::from_millis(100),
            cooldown: Default::default(),
            cache_hit_percent: 0,
            lease_margin: std::time::Duration::from_secs(600),
            relaxed_durability: false,
            usage_retention_days: 400,
            responses_ttl_days: 30,
            openrouter_url: "https://openrouter.ai/api/v1".into(),
            huggingface_url: "https://router.huggingface.co/v1".into(),
            huggingface_hub_url: "https://huggingface.co".into(),
            app_url: None,
            app_title: None,
            public_url: None,
            metrics_token: None,
            metrics_key_labels: false,
            metrics_sink: crate::metrics::Sink::Prometheus,
            log_json: false,
            traces: TraceConfig::default(),
            audit_retention_days: 400,
            oidc: None,
        }
    }
}

/// The OpenID provider of `TOLLGATE_OIDC_*`: all three set, or none.
fn oidc_from(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<crate::identity::oidc::OidcClientConfig>, BadSetting> {
    let (issuer, client_id, secret) = (lookup("TOLLGATE_OIDC_ISSUER"), lookup("TOLLGATE_OIDC_CLIENT_ID"), lookup("TOLLGATE_OIDC_CLIENT_SECRET"));
    let (Some(issuer), Some(client_id), Some(secret)) = (issuer.clone(), client_id.clone(), secret.clone()) else {
        return match (issuer, client_id, secret) {
            (None, None, None) => Ok(None),
            (issuer, client_id, _) => Err(BadSetting::new(
                "TOLLGATE_OIDC_ISSUER",
                issuer.as_deref().or(client_id.as_deref()).unwrap_or("(unset)"),
                "set TOLLGATE_OIDC_ISSUER, TOLLGATE_OIDC_CLIENT_ID and TOLLGATE_OIDC_CLIENT_SECRET together, or none of them",
            )),
        };
    };
    if crate::identity::oidc::check_issuer(&issuer).is_err() {
        return Err(BadSetting::new(
            "TOLLGATE_OIDC_ISSUER",
            &issuer,
            "use the provider's issuer URL, such as https://example.okta.com (https, or http on a loopback address)",
        ));
    }
    Ok(Some(crate::identity::oidc::OidcClientConfig { issuer, client_id, client_secret: secrecy::SecretString::from(secret) }))
}

/// A setting whose value cannot be used: its name, the value, and what to use instead.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?}: {expected}")]
pub struct BadSetting {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl BadSetting {
    fn new(name: &'static str, value: &str, expected: &'static str) -> Self {
        BadSetting { name, value: value.to_string(), expected }
    }
}

/// A `true`/`false` setting, if set.
fn flag(lookup: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<Option<bool>, BadSetting> {
    match lookup(name).as_deref() {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(BadSetting::new(name, other, "use `true` or `false`")),
    }
}

/// A whole-number setting, if set: within `range`, else refused saying what to use instead.
fn number<T: std::str::FromStr + PartialOrd>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    range: impl std::ops::RangeBounds<T>,
    expected: &'static str,
) -> Result<Option<T>, BadSetting> {
    lookup(name).map(|v| v.parse().ok().filter(|n| range.contains(n)).ok_or_else(|| BadSetting::new(name, &v, expected))).transpose()
}

impl Config {
    pub fn from_env() -> Result<Self, BadSetting> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, BadSetting> {
        let mut config = Config::default();
        if let Some(v) = lookup("TOLLGATE_LISTEN") {
            config.listen = v.parse().map_err(|_| BadSetting::new("TOLLGATE_LISTEN", &v, "use an addr:port such as 127.0.0.1:8080"))?;
        }
        if let Some(v) = lookup("TOLLGATE_DATA_DIR") {
            config.data_dir = PathBuf::from(v);
        }
        if let Some(v) = lookup("TOLLGATE_STORE") {
            config.store = match v.as_str() {
                "embedded" => StoreKind::Embedded,
                "dynamodb" => StoreKind::DynamoDb,
                _ => return Err(BadSetting::new("TOLLGATE_STORE", &v, "use `embedded` or `dynamodb`")),
            };
        }
        config.dynamodb_endpoint = lookup("TOLLGATE_DYNAMODB_ENDPOINT");
        if let Some(v) = lookup("TOLLGATE_TABLE") {
            config.table = v;
        }
        if let Some(v) = lookup("TOLLGATE_SECRETS") {
            config.secrets = match v.as_str() {
                "embedded" => SecretsKind::Embedded,
                "secretsmanager" => SecretsKind::SecretsManager,
                _ => return Err(BadSetting::new("TOLLGATE_SECRETS", &v, "use `embedded` or `secretsmanager`")),
            };
        }
        config.secrets_endpoint = lookup("TOLLGATE_SECRETS_ENDPOINT");
        config.app_url = lookup("TOLLGATE_APP_URL");
        config.app_title = lookup("TOLLGATE_APP_TITLE");
        if let Some(v) = lookup("TOLLGATE_PUBLIC_URL") {
            if !(v.starts_with("http://") || v.starts_with("https://")) || reqwest::Url::parse(&v).is_err() {
                return Err(BadSetting::new("TOLLGATE_PUBLIC_URL", &v, "use the http(s) URL the gateway is reached at, such as https://gateway.example.com"));
            }
            config.public_url = Some(v);
        }
        if let Some(v) = lookup("TOLLGATE_SECRETS_PREFIX") {
            config.secrets_prefix = v;
        }
        for (name, field) in [("TOLLGATE_TRUSTED_PROXIES", &mut config.trusted_proxies), ("TOLLGATE_PRIVATE_UPSTREAMS", &mut config.private_upstreams)] {
            if let Some(v) = lookup(name) {
                *field = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<IpNet>().or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from)))
                    .collect::<Result<_, _>>()
                    .map_err(|_| BadSetting::new(name, &v, "use comma-separated IPs or CIDRs"))?;
            }
        }
        if let Some(v) = lookup("TOLLGATE_KEY_CACHE_SECS") {
            config.key_cache = std::time::Duration::from_secs(
                v.parse().map_err(|_| BadSetting::new("TOLLGATE_KEY_CACHE_SECS", &v, "use a number of seconds (0 turns the cache off)"))?,
            );
        }
        if let Some(ms) = number(&lookup, "TOLLGATE_UPSTREAM_TIMEOUT_MS", 1.., "use a positive number of milliseconds")? {
            config.upstream_timeout = std::time::Duration::from_millis(ms);
        }
        if let Some(secs) = number(&lookup, "TOLLGATE_STREAM_IDLE_TIMEOUT_SECS", 1..=86_400, "use a whole number of seconds from 1 to 86400")? {
            config.stream_idle_timeout = std::time::Duration::from_secs(secs);
        }
        if let Some(n) = number(&lookup, "TOLLGATE_MAX_IN_FLIGHT", ..=1_000_000, "use a whole number up to 1000000 (0: no limit)")? {
            config.max_in_flight = n;
        }
        if let Some(ms) = number(&lookup, "TOLLGATE_ADMISSION_WAIT_MS", ..=60_000, "use a whole number of milliseconds up to 60000")? {
            config.admission_wait = std::time::Duration::from_millis(ms);
        }
        for (name, field, expected) in [
            ("TOLLGATE_USAGE_RETENTION_DAYS", &mut config.usage_retention_days, "use a whole number of days up to 36500 (0: keep records forever)"),
            ("TOLLGATE_AUDIT_RETENTION_DAYS", &mut config.audit_retention_days, "use a whole number of days up to 36500 (0: keep events forever)"),
        ] {
            if let Some(days) = number(&lookup, name, ..=36_500, expected)? {
                *field = days;
            }
        }
        if let Some(days) = number(&lookup, "TOLLGATE_RESPONSES_TTL_DAYS", 1..=3650, "use a whole number of days from 1 to 3650")? {
            config.responses_ttl_days = days;
        }
        let cooldown = &mut config.cooldown;
        for (name, field, scale) in
            [("TOLLGATE_COOLDOWN_WINDOW_SECS", &mut cooldown.window_ms, 1000), ("TOLLGATE_COOLDOWN_SECS", &mut cooldown.cooldown_ms, 1000)]
        {
            if let Some(n) = number::<i64>(&lookup, name, 1..=86_400, "use a whole number from 1 to 86400")? {
                *field = n * scale;
            }
        }
        if let Some(percent) = number(&lookup, "TOLLGATE_CACHE_HIT_PERCENT", ..=100, "use a whole percentage from 0 to 100")? {
            config.cache_hit_percent = percent;
        }
        if let Some(n) = number(&lookup, "TOLLGATE_COOLDOWN_FAILURES", 1..=1000, "use a whole number from 1 to 1000")? {
            cooldown.failures = n;
        }
        if let Some(v) = lookup("TOLLGATE_LEASE_MARGIN_SECS") {
            config.lease_margin =
                std::time::Duration::from_secs(v.parse().map_err(|_| BadSetting::new("TOLLGATE_LEASE_MARGIN_SECS", &v, "use a whole number of seconds"))?);
        }
        for (name, field) in [
            ("TOLLGATE_OPENROUTER_URL", &mut config.openrouter_url),
            ("TOLLGATE_HUGGINGFACE_URL", &mut config.huggingface_url),
            ("TOLLGATE_HUGGINGFACE_HUB_URL", &mut config.huggingface_hub_url),
        ] {
            if let Some(v) = lookup(name) {
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(BadSetting::new(name, &v, "use an http(s) URL"));
                }
                *field = v;
            }
        }
        if let Some(v) = lookup("TOLLGATE_DURABILITY") {
            config.relaxed_durability = match v.as_str() {
                "strict" => false,
                "relaxed" => true,
                _ => return Err(BadSetting::new("TOLLGATE_DURABILITY", &v, "use `strict` or `relaxed`")),
            };
        }
        config.metrics_token = lookup("TOLLGATE_METRICS_TOKEN").map(secrecy::SecretString::from);
        config.oidc = oidc_from(&lookup)?;
        if let Some(on) = flag(&lookup, "TOLLGATE_METRICS_KEY_LABELS")? {
            config.metrics_key_labels = on;
        }
        if let Some(v) = lookup("TOLLGATE_LOG_FORMAT") {
            config.log_json = match v.as_str() {
                "json" => true,
                "text" => false,
                _ => return Err(BadSetting::new("TOLLGATE_LOG_FORMAT", &v, "use `text` or `json`")),
            };
        }
        let traces_off = lookup("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || lookup("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        config.traces.endpoint = match (lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), lookup("OTEL_EXPORTER_OTLP_ENDPOINT")) {
            _ if traces_off => None,
            (Some(url), _) => Some(url),
            (None, Some(base)) => Some(format!("{}/v1/traces", base.trim_end_matches('/'))),
            (None, None) => None,
        };
        if let Some(url) = &config.traces.endpoint
            && reqwest::Url::parse(url).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        {
            return Err(BadSetting::new("OTEL_EXPORTER_OTLP_ENDPOINT", url, "use the collector's http(s) URL, such as http://127.0.0.1:4318"));
        }
        if let Some(on) = flag(&lookup, "TOLLGATE_TRACE_CONTENT")? {
            config.traces.content = on;
        }
        if lookup("AWS_LAMBDA_RUNTIME_API").is_some() {
            config.metrics_sink = crate::metrics::Sink::Emf;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, value: &str) -> Result<Config, BadSetting> {
        Config::from_lookup(|n| (n == name).then(|| value.to_string()))
    }

    #[test]
    fn numbers_are_read_within_their_ranges_and_bad_values_are_named() {
        let default = with("NONE", "").expect("defaults");
        assert_eq!((default.max_in_flight, default.admission_wait), (1024, std::time::Duration::from_millis(100)));
        assert_eq!(with("TOLLGATE_MAX_IN_FLIGHT", "256").ok().map(|c| c.max_in_flight), Some(256));
        assert_eq!(with("TOLLGATE_MAX_IN_FLIGHT", "0").ok().map(|c| c.max_in_flight), Some(0), "0: no limit");
        assert_eq!(with("TOLLGATE_ADMISSION_WAIT_MS", "250").ok().map(|c| c.admission_wait.as_millis()), Some(250));
        assert_eq!(with("TOLLGATE_UPSTREAM_TIMEOUT_MS", "1500").expect("ms").upstream_timeout.as_millis(), 1500);
        assert_eq!(with("TOLLGATE_COOLDOWN_SECS", "30").expect("secs").cooldown.cooldown_ms, 30_000);
        assert_eq!(with("TOLLGATE_USAGE_RETENTION_DAYS", "0").expect("days").usage_retention_days, 0);
        for (name, value) in [
            ("TOLLGATE_MAX_IN_FLIGHT", "-1"),
            ("TOLLGATE_MAX_IN_FLIGHT", "lots"),
            ("TOLLGATE_ADMISSION_WAIT_MS", "60001"),
            ("TOLLGATE_UPSTREAM_TIMEOUT_MS", "0"),
            ("TOLLGATE_STREAM_IDLE_TIMEOUT_SECS", "86401"),
            ("TOLLGATE_CACHE_HIT_PERCENT", "101"),
            ("TOLLGATE_COOLDOWN_FAILURES", "0"),
            ("TOLLGATE_RESPONSES_TTL_DAYS", "3651"),
        ] {
            let bad = with(name, value).expect_err("refused");
            assert_eq!((bad.name, bad.value.as_str()), (name, value));
        }
    }
}
