//! The proxy's hot path. Per request, in order: authenticate the key (one cached read), check
//! its source address, scope and model; reserve the worst case against every limit (one atomic
//! update); forward; settle the real cost and write the usage record (one transaction). With a
//! warm key cache that is two store round trips per request.

mod attempts;
pub mod balance;
pub mod fees;
mod fit;
mod gateway;
mod headers;
pub mod levels;
mod observed;
mod record;
mod relay;
mod replay;
pub mod retry;
pub mod routing;
mod settle;
pub mod upstream;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use crate::canonical::answer::Parsed;
pub use crate::canonical::{Endpoint, Inspected};
pub use gateway::{Gateway, Hot, Tuning};
use headers::standing;
use observed::{Observed, failure_error, outcome_of};
use routing::route;
pub use routing::{count_input_tokens, get_model, list_models};
use upstream::Failure;

use crate::budget_events;
use crate::catalog::Model;
use crate::doors::{Door, Entered};
use crate::error::{ApiError, ApiResult, current_request_id};
use crate::identity::sha256_hex;
use crate::keys::{self, ApiKey};
use crate::limits::{self, Charge, Reservation, Tier};
use crate::metrics::RefusalReason;
use crate::money::{self, TokenClasses};
use crate::providers;
use crate::traces::{Child, FlightTrace};
use crate::usage::{self, Outcome};

/// Who is calling the proxy, as the HTTP layer saw it (not to be confused with a signed-in
/// user, `http::extract::Caller`).
pub struct Requester {
    pub secret: Option<String>,
    pub ip: Option<IpAddr>,
    /// The calling app's URL and name, as it says them (OpenRouter's attribution headers).
    pub referer: Option<String>,
    pub title: Option<String>,
    /// The caller's W3C trace context, which the request's span continues.
    pub traceparent: Option<String>,
    /// What the caller's `Cache-Control` asks of the response cache.
    pub cache: crate::response_cache::Directive,
}

/// The key behind a presented secret, refusing unknown, revoked, expired and rotated-out keys
/// and source addresses outside its allowlist.
pub async fn authenticate(gw: &Gateway, secret: Option<&str>, ip: Option<IpAddr>) -> ApiResult<Arc<ApiKey>> {
    let secret = secret.ok_or_else(|| ApiError::unauthorized_as("missing_api_key", "send your API key as Authorization: Bearer tg_... or X-API-Key"))?;
    let hash = sha256_hex(secret);
    let key = match gw.hot.keys.get(&hash) {
        Some(key) => key,
        None => {
            let key =
                keys::by_hash(gw.store.as_ref(), &hash).await?.ok_or_else(|| ApiError::unauthorized_as("invalid_api_key", "this API key does not exist"))?;
            // Shared, not copied, by every request that finds it here (a copy was six allocations).
            let key = Arc::new(key);
            gw.hot.keys.insert(hash, key.clone());
            key
        }
    };
    key.check_usable(gw.clock.now())?;
    if !key.allows_ip(ip) {
        let from = ip.map_or_else(|| "an unknown address".to_string(), |i| i.to_string());
        return Err(ApiError::forbidden("ip_not_allowed", format!("requests from {from} are not in this API key's ip_allowlist")));
    }
    Ok(key)
}

/// How `model`, on a deployment of `provider` type, is called: the provider type's own wire,
/// or OpenAI's Responses API for a model served only there (`upstreamApi: responses`).
fn serving(model: &Model, provider: crate::catalog::ProviderType) -> &'static dyn providers::Provider {
    match model.routing.upstream_api {
        crate::catalog::UpstreamApi::Responses => &providers::openai_responses::OPENAI_RESPONSES,
        crate::catalog::UpstreamApi::Chat => providers::of(provider),
    }
}

pub fn require_scope(key: &ApiKey, scope: &str) -> ApiResult<()> {
    if key.grants(scope) { Ok(()) } else { Err(ApiError::forbidden("insufficient_scope", format!("this API key lacks the {scope} scope"))) }
}

/// The key behind a request to `endpoint`, with the scope it needs: checked from the headers
/// alone, before the body is read, so nobody without a key makes the proxy hold a body.
pub async fn admit_key(gw: &Gateway, endpoint: Endpoint, caller: &Requester) -> ApiResult<Arc<ApiKey>> {
    let key = authenticate(gw, caller.secret.as_deref(), caller.ip).await.inspect_err(|e| {
        if e.is("ip_not_allowed") {
            gw.metrics.refusal(RefusalReason::Address, Tier::Token.name());
        }
    })?;
    require_scope(&key, endpoint.scope()).inspect_err(|_| gw.metrics.refusal(RefusalReason::Scope, Tier::Token.name()))?;
    Ok(key)
}

/// A slot among the requests in flight (`admission`), taken once the body is read; or
/// `overloaded`, counted as a refusal at the gateway's level.
pub async fn enter(gw: &Gateway) -> ApiResult<crate::admission::Slot> {
    gw.admission.enter().await.inspect_err(|_| gw.metrics.refusal(RefusalReason::Overload, "gateway"))
}

/// Response headers: names and values, for the HTTP layer to set.
pub type Headers = Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>;

/// What the proxy answers; the HTTP layer (`http::proxy`) turns it into the response.
pub enum Answer {
    /// A whole JSON answer.
    Whole { body: Bytes, headers: Headers },
    /// Server-sent events, as they come.
    Stream { events: tokio::sync::mpsc::Receiver<Bytes>, headers: Headers },
    /// An error; a limit's refusal carries the key's standing in the same headers a served
    /// answer has.
    Error { error: ApiError, headers: Headers },
}

impl From<ApiError> for Answer {
    fn from(error: ApiError) -> Self {
        Answer::Error { error, headers: vec![] }
    }
}

/// One POST to the proxy as the HTTP layer hands it over: read, its key accepted by
/// `admit_key` at `started`, its place among the requests in flight taken.
pub struct Inbound {
    pub endpoint: Endpoint,
    /// The shape the caller speaks; the answer goes back through it.
    pub door: Door,
    pub key: Arc<ApiKey>,
    pub caller: Requester,
    /// Canonical (a door other than OpenAI's has translated it).
    pub body: Entered,
    pub started: Instant,
    /// Given back when the request is over: refused, or answered and settled (a stream, after
    /// its last event).
    pub slot: crate::admission::Slot,
}

/// Serves one POST to the proxy.
pub async fn handle(gw: Arc<Gateway>, inbound: Inbound) -> Answer {
    let trace = gw.traces.as_ref().map(|t| t.request(inbound.endpoint, inbound.caller.traceparent.as_deref()));
    let root = trace.as_ref().map(FlightTrace::root);
    // Boxed: admission's future holds the request's parts and is kilobytes; inline it would
    // grow this future, which every layer above copies.
    match Box::pin(admit(gw, inbound, trace)).await {
        Ok(flight) => {
            // The flight runs on its own task, so a client that goes away cannot cut its
            // settlement and record short.
            let streaming = flight.req.stream;
            // Boxed: the flight's future is ~7 KB, and spawning moves a future several times
            // before it lands in its task.
            let task = tokio::spawn(Box::pin(async move { if streaming { flight.stream().await } else { flight.complete().await } }));
            match task.await {
                Ok(Ok(answer)) => answer,
                Ok(Err(error)) => error.into(),
                Err(join) => ApiError::internal(format!("proxy task failed: {join}")).into(),
            }
        }
        Err(answer) => {
            // No flight took the request's span: it ends here, saying why.
            if let Some(root) = root {
                if let Answer::Error { error, .. } = &answer {
                    root.failed(error.status_code(), error.to_string());
                }
                root.end();
            }
            answer
        }
    }
}

/// Everything about one admitted request on its way through.
struct Flight {
    gw: Arc<Gateway>,
    /// The shape the caller speaks.
    door: Door,
    key: Arc<ApiKey>,
    req: Inspected,
    /// The request body as the client sent it.
    raw: Bytes,
    /// The model being tried now, as the deployment it is tried on serves it.
    model: Model,
    /// The models this request may be served by, in routing order (a project's models for a
    /// project token, the requested model otherwise; then their fallbacks), and which attempt
    /// comes next.
    plan: retry::Plan,
    /// The current attempt's deployment, counted in flight there until the answer is over.
    in_flight: Option<balance::InFlight>,
    reservations: Vec<Reservation>,
    /// Budget events this request's settlement writes to the outbox.
    events: budget_events::Events,
    /// How long an upstream may take to answer (a project's `defaultTimeoutMs`).
    timeout: Duration,
    /// Every upstream attempt so far, for the routing trace.
    attempts: Vec<usage::Attempt>,
    context: Arc<levels::OwnerContext>,
    started: Instant,
    request_id: String,
    referer: Option<String>,
    /// The app providers that attribute usage are told of.
    app: providers::App,
    /// The `max_tokens` the request was lowered to so that a budget could pay for it.
    lowered_max_tokens: Option<i64>,
    /// Counts the reservation as held until the flight ends.
    held: Option<crate::metrics::Held>,
    /// Its place among the requests in flight, given back when the flight ends.
    _slot: crate::admission::Slot,
    /// The response cache's entry for this request, when its key or project opted in (boxed,
    /// like the rest of what most requests never use: the flight is copied whole).
    cache: Option<Box<replay::Cached>>,
    /// The answer to keep in the cache, written with the settlement.
    keep: Option<Box<crate::store::TxOp>>,
    /// The request's span (when tracing is on), and the upstream attempt's under way.
    trace: Option<FlightTrace>,
    attempt_span: std::sync::Mutex<Option<Child>>,
}

async fn admit(gw: Arc<Gateway>, inbound: Inbound, trace: Option<FlightTrace>) -> Result<Flight, Answer> {
    let Inbound { endpoint, door, key, caller, body: Entered { bytes: body, canonical }, started, slot } = inbound;
    let mut req = match canonical {
        Some(canonical) => crate::canonical::inspect_value(endpoint, canonical)?,
        None => crate::canonical::inspect(endpoint, &body)?,
    };
    if let Some(trace) = &trace {
        trace.admitted(&req.model, req.body.get("messages").or_else(|| req.body.get("input")));
    }
    if let Door::Responses(exchange) = &door {
        req.extras = crate::canonical::extras::of_responses(&exchange.request, &exchange.input);
    }
    if !key.allows_model(&req.model) {
        gw.metrics.refusal(RefusalReason::Scope, Tier::Token.name());
        return Err(ApiError::forbidden("model_not_allowed", format!("this API key may not use the model {:?}", req.model)).into());
    }
    let context = levels::owner_context(&gw, &key).await?;
    let routed = match &context.project {
        Some(project) => route(&gw, project, &req.model).await?,
        None => vec![routing::resolve_for(&gw, &key, &req.model).await?],
    };
    let chain = routing::with_fallbacks(&gw, &key, req.estimated_input_tokens(), routed).await?;
    let mut candidates = routing::priced(routing::sovereign(&key, chain)?)?;
    fees::admit(&req.extras, &mut candidates)?;
    if let Door::Responses(exchange) = &door
        && let Some(why) = &exchange.untranslatable
        && candidates.iter().any(|m| m.deployments().iter().any(|d| !serving(m, d.provider).speaks_responses()))
    {
        return Err(ApiError::invalid_param(why.param().unwrap_or("input"), why.to_string()).into());
    }
    let timeout = context.project.as_ref().map_or(gw.tuning.upstream_timeout, |p| Duration::from_millis(p.default_timeout_ms.max(1) as u64));
    let request_id = current_request_id();
    let model = candidates[0].clone();
    let directive = caller.cache;
    let app = providers::App { referer: caller.referer.clone().or_else(|| gw.app.referer.clone()), title: caller.title.or_else(|| gw.app.title.clone()) };
    let mut flight = Flight {
        gw,
        door,
        key,
        req,
        raw: body,
        model,
        plan: retry::Plan::new(candidates, started, context.project.as_ref().and_then(|p| p.retry)),
        in_flight: None,
        reservations: vec![],
        events: Default::default(),
        timeout,
        attempts: vec![],
        context: context.clone(),
        started,
        request_id,
        app,
        referer: caller.referer,
        lowered_max_tokens: None,
        held: None,
        _slot: slot,
        cache: None,
        keep: None,
        // From here the flight ends the span, whenever it ends.
        trace: trace.map(FlightTrace::owned),
        attempt_span: std::sync::Mutex::new(None),
    };
    flight.cache = replay::Cached::of(&flight.key, context.project.as_ref(), &flight.req, &flight.door, directive).map(Box::new);
    let levels = levels::levels(&flight.key, &context);
    routing::budgets_can_hold(&levels, flight.plan.chain())?;
    let now = flight.gw.clock.now();
    // Held until the upstream's timeout plus a margin: past that, the request is taken for
    // dead and the next request on these counters releases its reservation.
    let lease = limits::LeaseSpec {
        id: flight.request_id.clone(),
        // Past every attempt the request may make (retries and fallbacks included).
        expires_at: now.timestamp().saturating_add((flight.plan.longest(flight.timeout) + flight.gw.tuning.lease_margin).as_secs() as i64).saturating_add(1),
        record: usage::lease_record(&flight.key.owner.tag(), flight.key.id, &flight.model.id, flight.endpoint_name(), flight.record_expiry(now)),
    };
    let _admission = flight.trace.as_ref().map(FlightTrace::admission);
    let mut worst = fit::worst_case(&flight.req, &flight.served_by());
    // A key that opted in is lowered at most twice: to what the refusing budget has left, and
    // again if another level's budget then refuses.
    let mut lowerings = 0;
    loop {
        let refused = match limits::reserve_levels(flight.gw.store.as_ref(), &levels, &worst, now, &lease).await {
            Ok(reservations) => {
                flight.events = budget_events::after_reservation(&flight.gw.alerts, &reservations, now);
                flight.reservations = reservations;
                flight.held = Some(flight.gw.metrics.hold());
                return Ok(flight);
            }
            Err(refused) => refused,
        };
        let fits = refused.budget_left().and_then(|left| fit::max_tokens_within(left, &flight.req, &flight.served_by()));
        if let Some(n) = fits.filter(|_| flight.key.settings.fit_max_tokens && lowerings < 2) {
            flight.req.lower_max_tokens(n);
            flight.lowered_max_tokens = Some(n);
            worst = fit::worst_case(&flight.req, &flight.served_by());
            lowerings += 1;
            continue;
        }
        let refusal = fit::explain(refused, &worst, fits);
        match &refusal {
            limits::Refusal::Budget { level, .. } => flight.gw.metrics.refusal(RefusalReason::Budget, level.name()),
            limits::Refusal::Rate { level, .. } => flight.gw.metrics.refusal(RefusalReason::Rate, level.name()),
            limits::Refusal::Failed(_) => {}
        }
        // Where the key stands (read once, on the refusal path only): which budgets the refusal
        // exhausted, and the same headers a served answer has.
        let standing = limits::standing(flight.gw.store.as_ref(), &levels, now).await?;
        let outcome = if matches!(refusal, limits::Refusal::Budget { .. }) {
            flight.events = budget_events::after_refusal(&flight.gw.alerts, &standing, &worst, now);
            Outcome::BudgetExceeded
        } else {
            Outcome::Error
        };
        let refusal = ApiError::from(refusal);
        let seen = Observed::default();
        flight.record(Charge::default(), &seen, outcome, refusal.status_code(), false, Some(refusal.to_string())).await?;
        return Err(Answer::Error { error: refusal, headers: headers::standing(&standing, None, now) });
    }
}

impl Flight {
    /// Whether the current model takes the request in the caller's own shape: a Responses
    /// request to OpenAI goes as it is, not translated.
    pub(super) fn native(&self) -> bool {
        matches!(self.door, Door::Responses(_)) && serving(&self.model, self.model.provider).speaks_responses()
    }

    /// The endpoint the usage record names.
    pub(super) fn endpoint_name(&self) -> &'static str {
        if matches!(self.door, Door::Responses(_)) { Endpoint::Responses.path() } else { self.req.endpoint.path() }
    }

    pub(super) fn charge(&self, seen: &Observed) -> Charge {
        // A count below zero (a user's own upstream may say anything) is taken for none: it
        // would lower a key's token counters, and bound nothing.
        let input = seen.input.filter(|n| *n >= 0).unwrap_or_else(|| self.req.estimated_input_tokens());
        let output = seen.output.filter(|n| *n >= 0).unwrap_or(seen.delivered_chunks);
        // OpenAI-shaped usage counts cached and cache-written tokens inside the prompt tokens.
        let cached = seen.cached.clamp(0, input);
        let cache_write = seen.cache_write.clamp(0, input - cached);
        let cache_write_1h = seen.cache_write_1h.clamp(0, cache_write);
        let classes =
            TokenClasses { input: input - cached - cache_write, cached_input: cached, cache_write: cache_write - cache_write_1h, cache_write_1h, output };
        let cost_micros = match self.provider_cost(seen) {
            // Never past what a budget reserved for the request: a provider charging more than
            // the catalog's prices allow for would otherwise overspend it (the record keeps both).
            Some(reported) => reported.min(self.reserved_cost().unwrap_or(i64::MAX)),
            None => {
                // Built-in tool calls, as the answer shows them (a chat web search is one).
                let calls = if seen.hosted_calls.is_empty() { fees::chat_calls(&self.req.extras) } else { seen.hosted_calls.clone() };
                money::cost(&classes, &self.model.prices()).saturating_add(fees::charged(&calls, &self.model))
            }
        };
        Charge { calls: 1, input_tokens: input, output_tokens: output, cost_micros }
    }

    /// What the provider reported it charged, when its type meters by that.
    pub(super) fn provider_cost(&self, seen: &Observed) -> Option<i64> {
        seen.reported_cost.filter(|_| providers::of(self.model.provider).reports_cost())
    }

    /// The smallest worst-case cost a budget reserved for this request, if one did.
    pub(super) fn reserved_cost(&self) -> Option<i64> {
        self.reservations.iter().flat_map(|r| &r.entries).filter(|e| e.limit.metric == limits::Metric::Cost).map(|e| e.amount).min()
    }

    /// Says that (and to what) the request's max_tokens was lowered to fit a budget.
    pub(super) fn lowered_header(&self) -> Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)> {
        self.lowered_max_tokens.map(|n| (headers::MAX_TOKENS_LOWERED, headers::number(n)))
    }

    /// The id of an answer made here (the mock's; an upstream's answer keeps its own).
    pub(super) fn response_id(&self) -> String {
        let prefix = if self.req.endpoint == Endpoint::Chat { "chatcmpl-" } else { "cmpl-" };
        [prefix, Uuid::new_v4().simple().encode_lower(&mut Uuid::encode_buffer())].concat()
    }

    /// Records a request the upstream failed before answering (one call, no tokens, its whole
    /// reservation given back) and returns the error the client sees.
    pub(super) async fn fail(&self, failure: &Failure, streamed: bool) -> ApiResult<Answer> {
        let error = failure_error(failure);
        let actual = Charge { calls: 1, ..Charge::default() };
        self.record(actual, &Observed::default(), outcome_of(failure), error.status_code(), streamed, Some(failure.describe())).await?;
        Err(error)
    }

    /// One whole answer from the current model: its bytes and their JSON. An upstream's answer
    /// goes to the client as the upstream sent it (serialising it again was ~1.5% of a request's
    /// instructions, and a proxy has no business reformatting it).
    pub(super) async fn answer_once(&self, id: &str, created: i64) -> ApiResult<Result<(Bytes, Parsed), Failure>> {
        self.call_upstream(id, created, async |call| call.complete().await).await
    }

    async fn complete(mut self) -> ApiResult<Answer> {
        // Boxed, as are the other paths most requests never take: inline, each would grow the
        // flight's future, which its task copies whole (callgrind: ~100k instructions a request).
        if self.cache.is_some()
            && let Some(answer) = Box::pin(self.answer_from_cache()).await?
        {
            return Ok(answer);
        }
        let id = self.response_id();
        let created = self.gw.clock.now().timestamp();
        if let Err(answer) = self.first(false).await? {
            return Ok(answer);
        }
        loop {
            let since = Instant::now();
            match self.answer_once(&id, created).await? {
                Ok((bytes, body)) => {
                    self.attempted(since, None);
                    let mut seen = Observed::default();
                    seen.absorb_parsed(&body, self.started);
                    let actual = self.charge(&seen);
                    if self.cache.is_some() {
                        self.keep(&body.json(&bytes), actual.cost_micros);
                    }
                    let (answer, stored) = self.door.answer(bytes, &body, self.native());
                    self.record_full(actual, &seen, Outcome::Success, 200, false, false, None, stored).await?;
                    let mut headers = standing(&self.reservations, Some(&actual), self.gw.clock.now());
                    headers.push((headers::COST, headers::dollars(actual.cost_micros)));
                    headers.extend(self.lowered_header());
                    headers.extend(self.cache_header());
                    return Ok(Answer::Whole { body: answer, headers });
                }
                Err(failure) => {
                    self.attempted(since, Some(&failure));
                    match self.next_after(&failure) {
                        Ok(next) => self.begin(next).await,
                        Err(_) => return Box::pin(self.fail(&failure, false)).await,
                    }
                }
            }
        }
    }
}
