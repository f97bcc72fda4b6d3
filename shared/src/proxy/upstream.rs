//! Calling a model's provider: over real HTTP, streaming included, or in the gateway itself for
//! a provider with no upstream (the mock).

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::Url;
use reqwest::header::HeaderValue;

use crate::egress::{Answer, HttpClient, SendError};
use crate::providers::{App, Credentials, Framing, Local, Provider, StreamTranslator, Unsupported};
use serde_json::Value;

use crate::cache::TtlCache;
use crate::canonical::answer::Parsed;
use crate::canonical::{Endpoint, Inspected};

/// Why an upstream call failed.
#[derive(Debug)]
pub enum Failure {
    Timeout,
    /// Connection refused, reset, DNS, TLS, malformed answer.
    Transport(String),
    /// The upstream answered with an error status.
    Status(u16, String),
    /// The upstream answered 429, saying when to come back (`retry-after`, or `retry-after-ms`
    /// as Azure and OpenAI send it) when it did.
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// The provider cannot carry the request (nothing was sent): the gateway's own refusal,
    /// naming the field; routing tries the next candidate.
    Unsupported(Unsupported),
}

impl Failure {
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Status(s, _) => Some(*s),
            Failure::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Failure::Timeout => "the upstream did not answer in time".into(),
            Failure::Transport(e) => format!("the upstream could not be reached: {e}"),
            Failure::Status(s, m) => format!("the upstream answered {s}: {m}"),
            Failure::RateLimited { message, .. } => format!("the upstream answered 429: {message}"),
            Failure::Unsupported(u) => format!("this model's provider cannot carry the request's {}: {}", u.param, u.message),
        }
    }
}

/// How long a 429 asks to wait: `retry-after-ms`, else `retry-after` in seconds or as an HTTP
/// date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|t| t.parse::<f64>().ok()).filter(|ms| ms.is_finite() && *ms >= 0.0) {
        return Some(Duration::from_secs_f64((ms / 1000.0).min(86_400.0)));
    }
    let value = text("retry-after")?;
    if let Some(secs) = value.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0) {
        return Some(Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

/// One server-sent event from an upstream stream.
pub enum Event {
    /// A chunk: its JSON (or where nothing needs more, what the proxy reads of it), and the
    /// event as it goes to the client.
    Data(Parsed, Bytes),
    Done,
}

impl Event {
    /// A chunk of ours (the mock's, or one to lay out again) as an event.
    pub fn ours(value: Value) -> Self {
        let frame = sse(&value);
        Event::Data(Parsed::Json(value), frame)
    }
}

/// A JSON value as a server-sent event.
pub fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

pub type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Failure>> + Send>>;

/// An answer's body that failed while it was read (hyper's messages name no URL: API key
/// holders see these, and a model's base URL is the admin's, credentials and internal hosts
/// included). Slow bodies are timed out by the caller.
fn classify(err: hyper::Error) -> Failure {
    Failure::Transport(crate::egress::with_causes(err.to_string(), &err))
}

/// An answer's whole body.
async fn body_bytes(response: Answer) -> Result<Bytes, hyper::Error> {
    use http_body_util::BodyExt;
    Ok(response.into_body().collect().await?.to_bytes())
}

/// An answer's body, chunk by chunk as it arrives.
fn chunks(response: Answer) -> http_body_util::BodyDataStream<hyper::body::Incoming> {
    http_body_util::BodyDataStream::new(response.into_body())
}

fn classify_send(err: SendError) -> Failure {
    if err.is_timeout() { Failure::Timeout } else { Failure::Transport(err.to_string()) }
}

/// One call to an upstream.
pub struct Call<'a> {
    /// The provider type: its wire, its authentication, its translation to the canonical shape.
    pub provider: &'a dyn Provider,
    /// The request as the gateway read it (for a provider that answers it here), and the id
    /// such an answer gets.
    pub request: &'a Inspected,
    pub id: &'a str,
    /// The calling app, for providers that attribute usage to apps.
    pub app: &'a App,
    /// The time a translated answer is stamped with (with the model `request` names).
    pub created: i64,
    /// The trusted client for a catalog model, the restricted one for anything a user supplied.
    pub client: &'a HttpClient,
    pub base_url: &'a str,
    /// The model's key, and whether the gateway's own cloud identity may stand in for it.
    pub credentials: Credentials<'a>,
    pub endpoint: Endpoint,
    /// The model's id at its provider.
    pub model: &'a str,
    /// Parsed upstream URLs by their text: parsing one was ~2% of a proxied request's CPU.
    pub urls: &'a TtlCache<String, Target>,
    /// The JSON request body, as it goes upstream; or what the provider's wire cannot carry
    /// (nothing is sent).
    pub body: Result<Bytes, Unsupported>,
    /// Bounds the wait for the answer's head; a stream then runs as long as it runs.
    pub timeout: Duration,
    /// The W3C trace context of this attempt's span, sent upstream when tracing is on.
    pub traceparent: Option<&'a str>,
    /// Whether the caller needs a whole answer's JSON (a door that translates it, the response
    /// cache): else an answer already in the canonical shape is only glimpsed (`Parsed`).
    pub json_needed: bool,
}

/// An upstream URL, parsed once, with the `Host` header its requests carry: made here once
/// rather than by the HTTP client for each request (which formats `host:port` every time,
/// ~2k instructions a request where the port is not the scheme's own).
#[derive(Clone)]
pub struct Target {
    url: Url,
    host: Option<HeaderValue>,
}

impl Target {
    fn of(url: Url) -> Self {
        // As the HTTP client writes it: the port only where it is not the scheme's default
        // (`Url::port` leaves that out), an IPv6 host in brackets.
        let host = url.host_str().and_then(|host| match url.port() {
            Some(port) => HeaderValue::try_from(format!("{host}:{port}")).ok(),
            None => HeaderValue::from_str(host).ok(),
        });
        Target { url, host }
    }
}

impl Call<'_> {
    fn target(&self) -> Result<Target, Failure> {
        let text = self
            .provider
            .model_url(self.base_url, self.endpoint, self.model, self.request.stream)
            .ok_or_else(|| Failure::Unsupported(Unsupported::new("model", format!("this model's provider has no {} endpoint", self.endpoint.path()))))?;
        if let Some(target) = self.urls.get(&text) {
            return Ok(target);
        }
        // Without the URL, as in `classify`.
        let url = Url::parse(&text).map_err(|e| {
            Failure::Transport(format!("the model's base URL does not make a valid URL ({e}); an admin can fix it with PUT /api/models/{{id}}"))
        })?;
        let target = Target::of(url);
        self.urls.insert(text, target.clone());
        Ok(target)
    }

    async fn send(&self) -> Result<Answer, Failure> {
        let body = self.body.clone().map_err(Failure::Unsupported)?;
        let Target { url, host } = self.target()?;
        let mut request = self.client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        if let Some(traceparent) = self.traceparent {
            request = request.header("traceparent", traceparent);
        }
        let key = self.credentials.key;
        let mut request = crate::providers::prepare(self.client, self.provider, self.provider.attribute(request, self.app), self.base_url, self.credentials)
            .await
            .map_err(|why| Failure::Transport(crate::providers::redact(why.to_string(), key)))?;
        // After signing, which may have named the host itself.
        if let Some(host) = host {
            request.headers_mut().entry(reqwest::header::HOST).or_insert(host);
        }
        let response = tokio::time::timeout(self.timeout, self.client.relay(request)).await.map_err(|_| Failure::Timeout)?.map_err(classify_send)?;
        let status = response.status();
        if status.is_redirection() {
            // Never followed, and its body (wherever it points) never relayed.
            return Err(Failure::Status(status.as_u16(), crate::providers::redirect_refused(status)));
        }
        if !status.is_success() {
            let retry_after = (status == reqwest::StatusCode::TOO_MANY_REQUESTS).then(|| retry_after(response.headers()));
            // Bounded like the answer's head: an error body that never ends is a timeout.
            let body = tokio::time::timeout(self.timeout, body_bytes(response)).await.map_err(|_| Failure::Timeout)?.unwrap_or_default();
            let text = String::from_utf8_lossy(&body);
            let message = crate::providers::redact(self.provider.error_message(&text), key);
            return Err(match retry_after {
                Some(retry_after) => Failure::RateLimited { retry_after, message },
                None => Failure::Status(status.as_u16(), message),
            });
        }
        Ok(response)
    }

    /// A whole (non-streamed) answer: its bytes, as they go to the client, and their JSON (or,
    /// where `json_needed` is false, what the proxy reads of it).
    pub async fn complete(&self) -> Result<(Bytes, Parsed), Failure> {
        if let Some(local) = self.provider.local_answer(self.request, self.id, self.created, false) {
            return whole(local, self.timeout).await;
        }
        let response = self.send().await?;
        let bytes = tokio::time::timeout(self.timeout, body_bytes(response)).await.map_err(|_| Failure::Timeout)?.map_err(classify)?;
        let not_json = |e: serde_json::Error| Failure::Transport(format!("the upstream's answer is not JSON: {e}"));
        let parse = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).map_err(not_json);
        // A Responses request that went as it is comes back as it is.
        if self.endpoint == Endpoint::Responses {
            let value = parse(&bytes)?;
            return Ok((bytes, Parsed::Json(value)));
        }
        match self.provider.answer_translator() {
            Some(translate) => {
                let canonical = translate(&parse(&bytes)?, self.created);
                Ok((Bytes::from(canonical.to_string()), Parsed::Json(canonical)))
            }
            None => {
                let parsed = Parsed::read(&bytes, self.json_needed).map_err(not_json)?;
                Ok((bytes, parsed))
            }
        }
    }

    /// A streamed answer, as parsed events.
    pub async fn stream(&self) -> Result<Events, Failure> {
        if let Some(local) = self.provider.local_answer(self.request, self.id, self.created, true) {
            return streamed(local);
        }
        let response = self.send().await?;
        if let Some(translator) = self.provider.stream_translator(&self.request.model, self.created).filter(|_| self.endpoint != Endpoint::Responses) {
            return Ok(match self.provider.framing() {
                Framing::Sse => translated(response, translator),
                Framing::AwsEventStream => aws_event_stream(response, translator),
            });
        }
        let json_needed = self.json_needed;
        let events = server_events(chunks(response)).filter_map(move |event| async move {
            let bad = |err: serde_json::Error| Failure::Transport(format!("bad event from upstream: {err}"));
            match event {
                Ok(e) if e.data.trim() == "[DONE]" => Some(Ok(Event::Done)),
                Ok(e) if e.data.trim().is_empty() => None,
                // Laid out again: it came on several `data:` lines (joined by newlines here).
                Ok(e) if e.data.contains('\n') => Some(serde_json::from_str(&e.data).map(Event::ours).map_err(bad)),
                // The chunk goes on as the upstream sent it, read for its usage, not rewritten
                // (and parsed whole only when the door or the cache needs its JSON).
                Ok(e) => Some(
                    Parsed::read(e.data.as_bytes(), json_needed)
                        .map(|parsed| Event::Data(parsed, Bytes::from(["data: ", &e.data, "\n\n"].concat())))
                        .map_err(bad),
                ),
                Err(err) => Some(Err(Failure::Transport(err.to_string()))),
            }
        });
        Ok(Box::pin(events))
    }
}

/// An upstream's answer, chunk by chunk, as server-sent events.
fn server_events<E>(chunks: impl Stream<Item = Result<Bytes, E>>) -> sseer::EventStream<impl Stream<Item = Result<Bytes, E>>> {
    sseer::EventStream::new(chunks)
}

/// A local answer, whole, after its delay (or a timeout, when the delay is longer than the
/// wait for an upstream's answer may be).
async fn whole(local: Local, timeout: Duration) -> Result<(Bytes, Parsed), Failure> {
    if local.delay > timeout {
        tokio::time::sleep(timeout).await;
        return Err(Failure::Timeout);
    }
    tokio::time::sleep(local.delay).await;
    let body = local.outcome.map_err(|(status, why)| Failure::Status(status, why))?.into_iter().next().unwrap_or_default();
    Ok((Bytes::from(body.to_string()), Parsed::Json(body)))
}

/// A local answer's chunks as a stream, each after the delay.
fn streamed(local: Local) -> Result<Events, Failure> {
    let chunks = local.outcome.map_err(|(status, why)| Failure::Status(status, why))?;
    let delay = local.delay;
    Ok(Box::pin(futures::stream::iter(chunks).then(move |chunk| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(Event::ours(chunk))
    })))
}

/// A stream in a provider's own event format, as canonical chunks.
fn translated(response: Answer, mut translator: Box<dyn StreamTranslator>) -> Events {
    let events = server_events(chunks(response)).map(move |event| {
        let out: Vec<Result<Event, Failure>> = match event {
            Ok(e) if e.data.trim().is_empty() => vec![],
            Ok(e) => match serde_json::from_str::<Value>(&e.data) {
                Ok(data) => match translator.translate(&e.event, &data) {
                    Ok((chunks, done)) => chunks.into_iter().map(|c| Ok(Event::ours(c))).chain(done.then_some(Ok(Event::Done))).collect(),
                    Err(why) => vec![Err(Failure::Transport(why.to_string()))],
                },
                Err(err) => vec![Err(Failure::Transport(format!("bad event from upstream: {err}")))],
            },
            Err(err) => vec![Err(Failure::Transport(err.to_string()))],
        };
        futures::stream::iter(out)
    });
    Box::pin(events.flatten())
}

/// A stream in AWS's binary event-stream framing (Bedrock's ConverseStream), as canonical
/// chunks: each message's `:event-type` header and JSON payload go to the translator; an
/// exception message ends the stream with its type and message.
fn aws_event_stream(response: Answer, mut translator: Box<dyn StreamTranslator>) -> Events {
    use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
    let mut decoder = MessageFrameDecoder::new();
    let mut buffer = bytes::BytesMut::new();
    let events = chunks(response).map(move |chunk| {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => return futures::stream::iter(vec![Err(classify(err))]),
        };
        buffer.extend_from_slice(&chunk);
        let mut out = Vec::new();
        loop {
            let message = match decoder.decode_frame(&mut buffer) {
                Ok(DecodedFrame::Complete(message)) => message,
                Ok(DecodedFrame::Incomplete) => break,
                Err(err) => {
                    out.push(Err(Failure::Transport(format!("bad event-stream frame from upstream: {err}"))));
                    break;
                }
            };
            let header = |name: &str| {
                message.headers().iter().find(|h| h.name().as_str() == name).and_then(|h| h.value().as_string().ok()).map(|s| s.as_str().to_string())
            };
            let payload: Value = serde_json::from_slice(message.payload()).unwrap_or(Value::Null);
            if header(":message-type").as_deref() == Some("exception") {
                let kind = header(":exception-type").unwrap_or_else(|| "exception".into());
                let text = payload.get("message").or_else(|| payload.get("Message")).and_then(Value::as_str).unwrap_or_default();
                out.push(Err(Failure::Transport(format!("the upstream's stream failed: {kind}: {text}"))));
                break;
            }
            match translator.translate(&header(":event-type").unwrap_or_default(), &payload) {
                Ok((chunks, done)) => {
                    out.extend(chunks.into_iter().map(|c| Ok(Event::ours(c))));
                    if done {
                        out.push(Ok(Event::Done));
                    }
                }
                Err(why) => out.push(Err(Failure::Transport(why.to_string()))),
            }
        }
        futures::stream::iter(out)
    });
    Box::pin(events.flatten())
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::Target;
    use crate::providers::redact;

    #[test]
    fn a_target_names_its_host_as_the_http_client_would() {
        for (url, host) in [
            ("https://api.openai.com/v1/chat/completions", "api.openai.com"),
            ("https://api.openai.com:443/v1", "api.openai.com"),
            ("http://127.0.0.1:8080/v1", "127.0.0.1:8080"),
            ("http://upstream.example:80/", "upstream.example"),
            ("https://gw.example:8443/v1", "gw.example:8443"),
            ("http://[::1]:9000/v1", "[::1]:9000"),
            ("https://user:secret@api.example/v1", "api.example"),
        ] {
            let target = Target::of(reqwest::Url::parse(url).unwrap());
            assert_eq!(target.host.as_ref().map(|h| h.to_str().unwrap()), Some(host), "{url}");
        }
    }

    #[test]
    fn an_echoed_provider_key_is_cut_out_whole_or_in_part() {
        let key = SecretString::from("sk-proj-abcdefghijklmnopqrstuvwxyz0123456789");
        let whole = redact("Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz0123456789.".into(), Some(&key));
        assert_eq!(whole, "Incorrect API key provided: [redacted].");
        let part = redact("bad key sk-proj-abcdefghij****6789".into(), Some(&key));
        assert!(!part.contains("abcdefghij") && part.contains("6789"), "{part}");
        assert_eq!(redact("model not found".into(), Some(&key)), "model not found");
        assert_eq!(redact("anything".into(), None), "anything");
    }

    /// The framings upstreams use, cut anywhere between chunks: LF and CRLF line ends (Gemini
    /// sends CRLF), comments (OpenRouter's keep-alives), named events (Anthropic's), a field
    /// without its space, data on several lines, a line end split across two chunks, and an
    /// unfinished event at the end, which is dropped.
    #[tokio::test]
    async fn server_events_are_read_from_any_chunking() {
        use futures::StreamExt;
        let wire =
            "data: {\"a\":1}\n\n: OPENROUTER PROCESSING\n\nevent: message_start\r\ndata:{\"b\":2}\r\n\r\ndata: one\ndata: two\n\ndata: [DONE]\r\n\r\ndata: cut";
        for size in [1, 2, 3, 7, wire.len()] {
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = wire.as_bytes().chunks(size).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
            let events: Vec<(String, String)> =
                super::server_events(futures::stream::iter(chunks)).map(|e| e.map(|e| (e.event.to_string(), e.data.to_string())).unwrap()).collect().await;
            let want = [("message", "{\"a\":1}"), ("message_start", "{\"b\":2}"), ("message", "one\ntwo"), ("message", "[DONE]")];
            assert_eq!(events, want.map(|(e, d)| (e.to_string(), d.to_string())), "in chunks of {size}");
        }
    }
}
