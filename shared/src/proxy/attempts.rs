//! One request's attempts: which model and deployment each goes to (`retry::Plan`, the
//! `balance::Balancer`), what goes upstream, how long it may take, and how each went.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::observed::Observed;
use super::upstream::{self, Failure};
use super::{Answer, Flight, Gateway, retry};
use crate::canonical::Endpoint;
use crate::catalog::Model;
use crate::doors::Door;
use crate::error::{ApiError, ApiResult};
use crate::limits::Charge;
use crate::providers;
use crate::traces::Child;
use crate::usage::{self, Outcome};

pub(super) async fn model_secret(gw: &Gateway, model: &Model) -> ApiResult<Option<Arc<SecretString>>> {
    if !model.has_api_key {
        return Ok(None);
    }
    let name = model.secret_name();
    if let Some(secret) = gw.hot.secrets.get(&name) {
        return Ok(Some(secret));
    }
    let secret = gw.secrets.get(&name).await.map_err(ApiError::internal)?.map(Arc::new);
    if let Some(s) = &secret {
        gw.hot.secrets.insert(name, s.clone());
    }
    Ok(secret)
}

/// `body` (a JSON object, as its bytes) with `"stream_options":{"include_usage":true}` added
/// as its last member; None if it does not end as an object does. The caller has checked that
/// it has no `stream_options` member.
fn with_usage_asked(body: &[u8]) -> Option<Bytes> {
    const MEMBER: &[u8] = br#""stream_options":{"include_usage":true}"#;
    let end = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if body[end] != b'}' {
        return None;
    }
    let members = &body[..end];
    let empty = members.iter().rposition(|b| !b.is_ascii_whitespace()).is_some_and(|last| members[last] == b'{');
    let mut out = Vec::with_capacity(body.len() + MEMBER.len() + 2);
    out.extend_from_slice(members);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(MEMBER);
    out.push(b'}');
    Some(Bytes::from(out))
}

/// Removes every `cache_control` from a canonical request's messages' parts and its tools.
fn strip_cache_control(body: &mut serde_json::Map<String, Value>) {
    for name in ["messages", "tools"] {
        for item in body.get_mut(name).and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut) {
            item.remove("cache_control");
            for part in item.get_mut("content").and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut) {
                part.remove("cache_control");
            }
        }
    }
}

impl Flight {
    /// Every model and deployment the request may be served by: what its worst case is taken
    /// over (a deployment's provider counts a request's input its own way).
    pub(super) fn served_by(&self) -> std::borrow::Cow<'_, [Model]> {
        let chain = self.plan.chain();
        if chain.iter().all(|m| m.routing.deployments.is_empty()) {
            return std::borrow::Cow::Borrowed(chain);
        }
        std::borrow::Cow::Owned(chain.iter().flat_map(|m| m.deployments().into_iter().map(|d| m.deployed(&d))).collect())
    }

    /// How long the current attempt may wait for its answer: the timeout, or what is left
    /// of the request's total time if less.
    pub(super) fn attempt_timeout(&self) -> Duration {
        match self.plan.deadline {
            Some(deadline) => self.timeout.min(deadline.saturating_duration_since(Instant::now())).max(Duration::from_millis(1)),
            None => self.timeout,
        }
    }

    /// The clock's milliseconds, for the balancer.
    pub(super) fn now_ms(&self) -> i64 {
        self.gw.clock.now().timestamp_millis()
    }

    /// Begins the attempt `next` chose, after its wait. Only a deployment among several is
    /// watched by the balancer.
    pub(super) async fn begin(&mut self, next: retry::Next) {
        if !next.wait.is_zero() {
            Box::pin(tokio::time::sleep(next.wait)).await;
        }
        self.model = *next.model;
        if self.model.deployment.is_some() {
            let tokens = self.req.estimated_input_tokens();
            self.in_flight = Some(self.gw.balancer.begin(&self.model, tokens, self.now_ms()));
        }
    }

    /// After a failed attempt: counts it against its deployment, and finds the next attempt,
    /// if the failure and the plan allow one.
    pub(super) fn next_after(&mut self, failure: &Failure) -> Result<retry::Next, retry::Stop> {
        let reason = retry::Reason::of(failure);
        if let Some(attempt) = self.in_flight.take()
            && reason.unwell()
        {
            let retry_after = match failure {
                Failure::RateLimited { retry_after, .. } => retry_after.map(|d| d.as_millis() as i64),
                _ => None,
            };
            attempt.failed(self.now_ms(), retry_after);
        }
        let next = self.plan.after(failure, &self.model, &self.gw.balancer, self.now_ms());
        if next.is_ok() {
            self.gw.metrics.retry(&self.model.id, self.model.provider.name(), reason.name());
        }
        next
    }

    /// The first attempt, or the answer when every deployment is at its capacity.
    pub(super) async fn first(&mut self, streamed: bool) -> ApiResult<Result<(), Answer>> {
        match self.plan.first(&self.gw.balancer, self.now_ms()) {
            Ok(None) => Ok(Ok(())),
            Ok(Some(next)) => {
                self.begin(next).await;
                Ok(Ok(()))
            }
            Err(stop) => {
                let wait = match stop {
                    retry::Stop::Full(wait) => wait,
                    retry::Stop::Failed => Duration::from_secs(1),
                };
                let error = ApiError::TooManyRequests {
                    code: "deployments_at_capacity",
                    message: format!(
                        "every deployment of {} is at its requests- or tokens-per-minute capacity; try again in {} s",
                        self.model.id,
                        wait.as_secs().max(1)
                    ),
                    retry_after_secs: wait.as_secs().max(1),
                };
                Box::pin(self.record(Charge::default(), &Observed::default(), Outcome::Error, 429, streamed, Some(error.to_string()))).await?;
                Ok(Err(error.into()))
            }
        }
    }

    /// What goes upstream: the client's own bytes, unless the request was routed to another
    /// model than it named, or is a stream that must ask for its usage chunk.
    pub(super) fn upstream_body(&self, provider: &dyn providers::Provider) -> Result<Bytes, providers::Unsupported> {
        if let Door::Responses(exchange) = &self.door
            && self.native()
        {
            return Ok(Bytes::from(exchange.native(self.model.upstream_id(), self.lowered_max_tokens).to_string()));
        }
        let max_tokens = self.req.output_tokens_each(self.model.output_cap());
        if let Some(wire) = provider.wire_body(&self.req.body, self.model.upstream_id(), max_tokens) {
            return wire.map(|wire| Bytes::from(wire.to_string()));
        }
        let ask_usage = self.req.stream && !self.req.client_wants_usage;
        // An Anthropic client's cache breakpoints mean nothing to an OpenAI-shaped upstream,
        // which may refuse a field it does not know (OpenRouter takes them, for Claude).
        let uncache = matches!(self.door, Door::Anthropic)
            && self.model.provider != crate::catalog::ProviderType::OpenRouter
            && self.raw.windows(b"cache_control".len()).any(|w| w == b"cache_control");
        if !uncache && self.model.upstream_id() == self.req.model && self.lowered_max_tokens.is_none() {
            if !ask_usage {
                return Ok(self.raw.clone());
            }
            // A stream that only needs its usage asked for: the field added to the client's
            // bytes, where copying, editing and printing the parsed body again cost ~10k
            // instructions a request (`scripts/bench-instructions BIN 1000 stream`).
            if !self.req.body.contains_key("stream_options")
                && let Some(asked) = with_usage_asked(&self.raw)
            {
                return Ok(asked);
            }
        }
        let mut body = self.req.body.clone();
        if uncache {
            strip_cache_control(&mut body);
        }
        body.insert("model".into(), Value::String(self.model.upstream_id().to_string()));
        if ask_usage {
            // The usage chunk makes the cost exact; it is dropped again before the client sees it.
            match body.get_mut("stream_options").and_then(Value::as_object_mut) {
                Some(options) => {
                    options.insert("include_usage".into(), Value::Bool(true));
                }
                None => {
                    body.insert("stream_options".into(), json!({"include_usage": true}));
                }
            }
        }
        Ok(Bytes::from(Value::Object(body).to_string()))
    }

    /// Calls the current model's provider with the request (`id`: what an answer made here is
    /// called).
    pub(super) async fn call_upstream<T>(&self, id: &str, created: i64, go: impl AsyncFnOnce(upstream::Call<'_>) -> T) -> ApiResult<T> {
        let secret = model_secret(&self.gw, &self.model).await?;
        let base = self.model.endpoint().unwrap_or_default();
        let provider = super::serving(&self.model, self.model.provider);
        // Only what a global admin configured (a catalog model) gets the trusted client and the
        // gateway's own cloud identity; a user's provider or a workspace's integration gets
        // neither.
        let admin_configured = self.model.dynamic.is_none();
        let attempt =
            self.trace.as_ref().map(|t| t.attempt(self.req.endpoint, self.model.provider.name(), self.model.upstream_id(), self.model.deployment.as_deref()));
        let traceparent = attempt.as_ref().and_then(Child::traceparent);
        *self.attempt_span.lock().expect("attempt span") = attempt;
        let call = upstream::Call {
            provider,
            request: &self.req,
            id,
            app: &self.app,
            created,
            client: self.gw.http.for_admin_configured(admin_configured),
            base_url: &base,
            credentials: providers::Credentials { key: secret.as_deref(), ambient: admin_configured },
            endpoint: if self.native() { Endpoint::Responses } else { self.req.endpoint },
            model: self.model.upstream_id(),
            urls: &self.gw.hot.upstream_urls,
            body: self.upstream_body(provider),
            timeout: self.attempt_timeout(),
            traceparent: traceparent.as_deref(),
            json_needed: self.door.needs_json() || self.cache.is_some(),
        };
        Ok(go(call).await)
    }

    /// Notes an attempt at the current model in the routing trace.
    pub(super) fn attempted(&mut self, since: Instant, failure: Option<&Failure>) {
        // The attempt's span ends here, saying how it went.
        if let Some(span) = self.attempt_span.get_mut().expect("attempt span").take()
            && let Some(failure) = failure
        {
            span.fail(failure.describe());
        }
        let status = match failure {
            None => Some(200),
            Some(f) => f.status().map(i64::from),
        };
        if failure.is_none()
            && let Some(attempt) = &self.in_flight
        {
            attempt.succeeded(since.elapsed().as_millis() as i64);
        }
        self.attempts.push(usage::Attempt {
            model: self.model.id.clone(),
            provider: self.model.provider.name().to_string(),
            deployment: self.model.deployment.clone(),
            status,
            latency_ms: since.elapsed().as_millis() as i64,
            error: failure.map(Failure::describe),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::with_usage_asked;
    use serde_json::{Value, json};

    fn asked(body: &str) -> Option<Value> {
        with_usage_asked(body.as_bytes()).map(|b| serde_json::from_slice(&b).expect("still JSON"))
    }

    #[test]
    fn the_usage_option_is_added_to_the_clients_own_bytes() {
        let want = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "}"}], "stream_options": {"include_usage": true}});
        assert_eq!(asked(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"}"}]}"#), Some(want.clone()));
        assert_eq!(asked("{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"}\"}]}\n\t "), Some(want));
        assert_eq!(asked(" { } "), Some(json!({"stream_options": {"include_usage": true}})));
        assert_eq!(asked("[1]"), None);
        assert_eq!(asked("   "), None);
    }
}
