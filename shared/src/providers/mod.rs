//! Upstream provider types: how a request in the canonical shape (OpenAI's chat completions,
//! which every front door and the mock already speak) goes to a provider on its wire, and how
//! the provider's answer, stream and errors come back in the canonical shape. Routing,
//! reservation, settlement and usage records only ever see the canonical shape.
//!
//! A provider type is one module implementing `Provider`, registered in `of`. Where the
//! provider speaks the canonical shape itself (OpenAI and every OpenAI-compatible service),
//! bodies and stream chunks pass through untouched: `wire_body`, `answer_translator` and
//! `stream_translator` return `None`. See docs/providers.md.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod credentials;
pub mod gemini;
pub mod google_auth;
pub mod mock;
pub mod openai;
pub mod openai_responses;
pub mod openrouter;
pub mod sigv4;
pub mod vertex;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

pub use crate::provider_type::ProviderType;
pub use credentials::{AuthError, Credentials};

use crate::canonical::{Endpoint, Inspected};
use crate::egress::HttpClient;

/// One provider type.
pub trait Provider: Send + Sync {
    /// Where an endpoint's requests go, under the model's base URL; `None` when the provider
    /// has no such endpoint.
    fn path(&self, endpoint: Endpoint) -> Option<&'static str>;

    /// The whole URL for an endpoint under the model's base URL (the base, a slash, the path,
    /// unless the type says otherwise).
    fn url(&self, base: &str, endpoint: Endpoint) -> Option<String> {
        Some([base.trim_end_matches('/'), "/", self.path(endpoint)?].concat())
    }

    /// The URL of a call to `model` (its upstream id), streamed or not: where a provider puts
    /// the model and the streaming mode in the path (Bedrock); `url` by default.
    fn model_url(&self, base: &str, endpoint: Endpoint, _model: &str, _stream: bool) -> Option<String> {
        self.url(base, endpoint)
    }

    /// For providers on AWS: the service and region (from the model's base URL) a request is
    /// signed for with SigV4 (`sigv4`).
    fn sigv4(&self, _base: &str) -> Option<(&'static str, String)> {
        None
    }

    /// Whether requests carry a Google OAuth token made from the model's service account key
    /// (`google_auth`).
    fn google_oauth(&self) -> bool {
        false
    }

    /// How a streamed answer is framed.
    fn framing(&self) -> Framing {
        Framing::Sse
    }

    /// A cheap authenticated read that shows whether a key works (the model list).
    fn probe_url(&self, base: &str) -> String {
        format!("{}/models", base.trim_end_matches('/'))
    }

    /// Adds the provider's authentication (and version) headers.
    fn authenticate(&self, request: reqwest::RequestBuilder, key: Option<&SecretString>) -> reqwest::RequestBuilder;

    /// Adds what the provider takes about the app calling it (OpenRouter's attribution
    /// headers); nothing by default.
    fn attribute(&self, request: reqwest::RequestBuilder, _app: &App) -> reqwest::RequestBuilder {
        request
    }

    /// Whether the provider serves OpenAI's Responses API itself (`responses` under its base
    /// URL), so a Responses request goes to it untranslated.
    fn speaks_responses(&self) -> bool {
        false
    }

    /// Whether the provider reports what it charged in the canonical usage's `cost` (dollars),
    /// to be metered at instead of the catalog's prices.
    fn reports_cost(&self) -> bool {
        false
    }

    /// The wire body for a canonical request to `model` whose answers may have up to
    /// `max_tokens` tokens each; `None` (the default) to send the canonical body as it is;
    /// `Unsupported` for what the provider's wire has no form of (nothing is sent; routing
    /// tries the next candidate, and with none the caller gets a 400 naming the field).
    fn wire_body(&self, _canonical: &Map<String, Value>, _model: &str, _max_tokens: i64) -> Option<Result<Value, Unsupported>> {
        None
    }

    /// What turns a whole answer into the canonical shape (given its wire JSON and `created`,
    /// its timestamp); `None` (the default) when it is in it already: then the answer is not
    /// parsed whole unless the caller's door or the cache needs it.
    fn answer_translator(&self) -> Option<fn(&Value, i64) -> Value> {
        None
    }

    /// What the provider said went wrong, from an error answer's body (by default the
    /// canonical error envelope's message).
    fn error_message(&self, body: &str) -> String {
        openai_error_message(body)
    }

    /// Turns the provider's stream events into canonical chunks; `None` (the default) when
    /// they are already.
    fn stream_translator(&self, _model: &str, _created: i64) -> Option<Box<dyn StreamTranslator>> {
        None
    }

    /// The answer of a provider with no upstream, made in the gateway itself (the built-in
    /// mock): the whole answer (`stream` false) or the stream's chunks, in the canonical shape
    /// (`id` and `created` stamp it). `None` (the default) for every provider reached over HTTP.
    fn local_answer(&self, _req: &Inspected, _id: &str, _created: i64, _stream: bool) -> Option<Local> {
        None
    }
}

/// What a provider cannot carry: the request's field, and why. It is the gateway's own
/// refusal (nothing was sent), never the upstream's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unsupported {
    pub param: &'static str,
    pub message: String,
}

impl Unsupported {
    pub fn new(param: &'static str, message: impl Into<String>) -> Self {
        Unsupported { param, message: message.into() }
    }
}

/// The app a request comes from, as providers that attribute usage to apps are told: the
/// caller's own `HTTP-Referer` (or `Referer`) and `X-OpenRouter-Title` (or `X-Title`), else the
/// gateway's (`TOLLGATE_APP_URL`, `TOLLGATE_APP_TITLE`), else nothing.
#[derive(Clone, Debug, Default)]
pub struct App {
    pub referer: Option<String>,
    pub title: Option<String>,
}

/// How a provider frames a stream's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Server-sent events.
    Sse,
    /// AWS's binary event-stream (`application/vnd.amazon.eventstream`): each message's
    /// `:event-type` header names it, its payload is JSON.
    AwsEventStream,
}

/// An answer made in the gateway, by a provider with no upstream.
pub struct Local {
    /// How long it takes: before a whole answer, and before each streamed chunk.
    pub delay: Duration,
    /// The whole answer (one value) or the stream's chunks; or the HTTP status it fails with,
    /// and why.
    pub outcome: Result<Vec<Value>, (u16, String)>,
}

/// A stream's translation, event by event.
pub trait StreamTranslator: Send {
    /// The canonical chunks for one event (`name` is the SSE event name, `data` its JSON), and
    /// whether the stream is over.
    fn translate(&mut self, name: &str, data: &Value) -> Result<(Vec<Value>, bool), StreamError>;
}

/// Why a stream's event could not be translated: the stream ends there.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The upstream reported an error inside the stream (its own message).
    #[error("the upstream's stream failed: {0}")]
    Upstream(String),
    /// The upstream broke its own stream protocol.
    #[error("the upstream's stream broke its protocol: {0}")]
    Protocol(&'static str),
}

/// How a provider type's requests are made: the registration of every type.
pub fn of(provider: ProviderType) -> &'static dyn Provider {
    match provider {
        ProviderType::Anthropic => &anthropic::Anthropic,
        ProviderType::Azure => &azure::Azure,
        ProviderType::Bedrock => &bedrock::Bedrock,
        ProviderType::Gemini => &gemini::Gemini,
        ProviderType::Vertex => &vertex::Vertex,
        ProviderType::Mock => &mock::Mock,
        ProviderType::OpenRouter => &openrouter::OpenRouter,
        ProviderType::OpenAi => &openai::OpenAi { responses: true },
        // The canonical wire (chat completions), without OpenAI's Responses API.
        ProviderType::HuggingFace | ProviderType::OpenAiCompatible => &openai::OpenAi { responses: false },
    }
}

/// What a test of a provider's credentials found.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Probe {
    /// `ok`, or `error` with the provider's own reason in `message`.
    pub status: &'static str,
    pub message: String,
    pub latency_ms: i64,
}

/// Calls the provider with the key (its model list: nothing is generated or billed) and says
/// whether it answered, with its own reason when it did not (unreachable, bad key, ...).
///
/// Only users' own providers are probed, so only through the restricted client and with their
/// own credentials: the address policy applies before anything connects (no port scans).
pub async fn probe(http: &HttpClient, provider_type: ProviderType, base: &str, key: Option<&SecretString>) -> Probe {
    let provider = of(provider_type);
    let started = std::time::Instant::now();
    let request = http.get(provider.probe_url(base)).timeout(std::time::Duration::from_secs(10));
    let outcome = match prepare(http, provider, request, base, Credentials::own(key)).await {
        Err(why) => Err(why.to_string()),
        Ok(request) => match http.execute(request).await {
            Err(e) if e.is_timeout() => Err("the provider did not answer within 10 s".to_string()),
            Err(e) => Err(format!("the provider could not be reached: {e}")),
            Ok(response) if response.status().is_redirection() => Err(redirect_refused(response.status())),
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                Err(format!("the provider answered {status}: {}", provider.error_message(&body)))
            }
        },
    };
    let latency_ms = started.elapsed().as_millis() as i64;
    match outcome {
        Ok(()) => Probe { status: "ok", message: "the provider accepted the credentials".into(), latency_ms },
        Err(message) => Probe { status: "error", message: redact(message, key), latency_ms },
    }
}

/// What the caller is told of a redirect: its status, never its body or target.
pub fn redirect_refused(status: reqwest::StatusCode) -> String {
    format!("the provider answered {status}, a redirect, which Tollgate does not follow; point the base URL at the final address")
}

/// A request to a provider, authenticated as its type says: headers, a SigV4 signature over the
/// whole request (providers on AWS), or an OAuth token made from a service account (Vertex).
pub async fn prepare(
    http: &HttpClient,
    provider: &dyn Provider,
    request: reqwest::RequestBuilder,
    base: &str,
    credentials: Credentials<'_>,
) -> Result<reqwest::Request, AuthError> {
    let mut request = provider.authenticate(request, credentials.key).build().map_err(|e| AuthError::Request(e.without_url().to_string()))?;
    // Boxed: their futures (the AWS credential chain's above all) are kilobytes, and inline they
    // would grow every proxied request's task, which is copied whole when it is spawned.
    if let Some((service, region)) = provider.sigv4(base) {
        Box::pin(sigv4::authorize(&mut request, service, &region, credentials)).await?;
    }
    if provider.google_oauth() {
        Box::pin(google_auth::authorize(http, &mut request, credentials)).await?;
    }
    Ok(request)
}

/// How long a piece of the provider key an upstream's message may not repeat.
const KEY_FRAGMENT: usize = 12;

/// An upstream's message without the provider key in it: some providers echo the key they
/// were sent (whole or in part) when they refuse it, and the message reaches the caller, the
/// usage record and the log. Any run of `KEY_FRAGMENT` characters of the key is cut out.
pub fn redact(message: String, key: Option<&SecretString>) -> String {
    let Some(key) = key.map(|k| k.expose_secret()).filter(|k| !k.is_empty()) else { return message };
    let mut out = message.replace(key, "[redacted]");
    if key.len() > KEY_FRAGMENT && key.is_ascii() {
        for start in 0..=key.len() - KEY_FRAGMENT {
            let fragment = &key[start..start + KEY_FRAGMENT];
            if out.contains(fragment) {
                out = out.replace(fragment, "[redacted]");
            }
        }
    }
    out
}

/// Adds `content` to a conversation as a turn of `role`, merged into the last turn when that is
/// the same role's: the wires that want turns to alternate (Anthropic, Bedrock, Gemini).
pub fn push_turn(turns: &mut Vec<(String, Vec<Value>)>, role: &str, content: Vec<Value>) {
    if content.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, blocks)) if last == role => blocks.extend(content),
        _ => turns.push((role.to_string(), content)),
    }
}

/// The function definitions a canonical request offers (its `tools[].function`).
pub fn offered_functions(canonical: &Map<String, Value>) -> impl Iterator<Item = &Value> {
    canonical.get("tools").and_then(Value::as_array).into_iter().flatten().filter_map(|t| t.get("function"))
}

/// The canonical error envelope's message, or the body's start.
pub fn openai_error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect())
}
