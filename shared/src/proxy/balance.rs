//! Which deployment of a model serves an attempt, from how each has been doing in this process:
//! its cooldown (a circuit breaker), its latency, its requests in flight and its per-minute
//! capacity.
//!
//! A deployment that fails `failures` times within `window` is cooling down for `cooldown`:
//! skipped while another deployment of the request's models can serve. When the cooldown ends
//! one request probes it (half-open); success closes it, failure cools it again. A 429's
//! retry-after cools it at least that long. With a shared store (DynamoDB, several processes)
//! a cooldown is also written to the store, one write per cooldown entered, and each process
//! reads a model's cooldowns at most once per `SHARED_REFRESH` in the background, never on a
//! request's way.
//!
//! Times are the gateway clock's milliseconds, so tests move them without sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::catalog::{Deployment, Model, Strategy};
pub use crate::config::CooldownPolicy;
use crate::metrics::Metrics;
use crate::store::{Key, Store, Update};

/// How often a process reads a model's shared cooldowns from the store.
pub const SHARED_REFRESH_MS: i64 = 2_000;

#[derive(Default)]
struct Health {
    /// Failures counted in the window that began at `window_start`.
    failures: u32,
    window_start: i64,
    /// Until when it is skipped (0: never cooled). Past it, and until a probe's answer, it is
    /// half-open.
    cooling_until: i64,
    /// A half-open probe is under way: others skip it.
    probing: bool,
    /// A moving average of its time to an answer's head, in ms.
    latency_ms: Option<f64>,
    in_flight: u32,
    /// The clock minute `requests` and `tokens` count in.
    minute: i64,
    requests: i64,
    tokens: i64,
}

impl Health {
    /// Starts counting a new clock minute when `now` is past the one counted.
    fn roll_minute(&mut self, now: i64) {
        if self.minute != now / 60_000 {
            (self.minute, self.requests, self.tokens) = (now / 60_000, 0, 0);
        }
    }

    fn at_capacity(&mut self, d: &Deployment, now: i64) -> bool {
        self.roll_minute(now);
        d.rpm.is_some_and(|rpm| self.requests >= rpm) || d.tpm.is_some_and(|tpm| self.tokens >= tpm)
    }

    fn cooling(&self, now: i64, shared_until: i64) -> bool {
        now < self.cooling_until || now < shared_until || (self.probing && self.cooling_until != 0)
    }
}

/// What the balancer found for a model.
pub enum Pick {
    /// This deployment, healthy (or half-open, and this request probes it).
    Healthy(Deployment),
    /// Only deployments cooling down are left: this one's cooldown ends first.
    Cooling(Deployment),
    /// Every deployment left is at its rpm/tpm capacity until the minute ends, in ms.
    Full(i64),
    /// No deployment is left to try.
    None,
}

type Id = (String, String);

#[derive(Default)]
struct Shared {
    /// Cooldowns other processes wrote, by (model, deployment): until when.
    until: HashMap<Id, i64>,
    /// When each model's cooldowns were last read (or a read began).
    read_at: HashMap<String, i64>,
}

pub struct Balancer {
    health: Mutex<HashMap<Id, Health>>,
    shared: Arc<Mutex<Shared>>,
    policy: CooldownPolicy,
    /// The store cooldowns are shared through, when several processes serve (DynamoDB).
    store: Option<Arc<dyn Store>>,
    metrics: Arc<Metrics>,
}

fn id(model: &Model, deployment: &str) -> Id {
    (model.id.clone(), deployment.to_string())
}

fn shared_key(model: &str) -> Key {
    Key::new(format!("COOLDOWNS#{model}"), "COOLDOWNS")
}

impl Balancer {
    pub fn new(policy: CooldownPolicy, store: Option<Arc<dyn Store>>, metrics: Arc<Metrics>) -> Self {
        Balancer { health: Mutex::default(), shared: Arc::default(), policy, store, metrics }
    }

    /// A deployment of `model` for the next attempt, other than those in `tried`, by the model's
    /// strategy among the healthy ones; `random` in [0, 1) draws the weighted choice.
    pub fn choose(&self, model: &Model, tried: &[String], now: i64, random: f64) -> Pick {
        // A model served only by its own provider needs no choosing (and is never cooled:
        // there is nothing to choose instead within it).
        if model.routing.deployments.is_empty() {
            return match tried.is_empty() {
                true => Pick::Healthy(model.deployments().remove(0)),
                false => Pick::None,
            };
        }
        let deployments = &model.routing.deployments;
        self.refresh_shared(model, now);
        let shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let (mut healthy, mut soonest, mut full) = (Vec::new(), None::<(i64, &Deployment)>, false);
        for d in deployments.iter().filter(|d| !tried.contains(&d.id)) {
            let key = id(model, &d.id);
            let shared_until = shared.until.get(&key).copied().unwrap_or(0);
            let h = health.entry(key).or_default();
            if h.at_capacity(d, now) {
                full = true;
            } else if h.cooling(now, shared_until) {
                let ends = h.cooling_until.max(shared_until);
                if soonest.is_none_or(|(at, _)| ends < at) {
                    soonest = Some((ends, d));
                }
            } else {
                healthy.push((d, h.latency_ms, h.in_flight));
            }
        }
        let chosen = match model.routing.strategy {
            Strategy::Weighted => {
                let total: u64 = healthy.iter().map(|(d, ..)| u64::from(d.weight)).sum();
                let mut point = (random * total as f64) as u64;
                healthy.iter().find(|(d, ..)| {
                    let hit = point < u64::from(d.weight);
                    point = point.saturating_sub(u64::from(d.weight));
                    hit
                })
            }
            // One never measured goes first, so every deployment gets measured.
            Strategy::LeastLatency => healthy.iter().min_by(|a, b| a.1.unwrap_or(-1.0).total_cmp(&b.1.unwrap_or(-1.0))),
            Strategy::LeastBusy => healthy.iter().min_by_key(|(d, _, busy)| (*busy, u32::MAX - d.weight)),
        }
        .or(healthy.first())
        .map(|(d, ..)| (*d).clone());
        match (chosen, soonest) {
            (Some(d), _) => {
                let h = health.get_mut(&id(model, &d.id)).expect("seen above");
                if h.cooling_until != 0 && now >= h.cooling_until {
                    h.probing = true;
                }
                Pick::Healthy(d)
            }
            (None, Some((_, d))) => Pick::Cooling(d.clone()),
            (None, None) if full => Pick::Full(60_000 - now.rem_euclid(60_000)),
            (None, None) => Pick::None,
        }
    }

    /// An attempt begins on `model` (a deployed copy): counted in flight and against its
    /// per-minute capacity until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>, model: &Model, tokens: i64, now: i64) -> InFlight {
        let key = id(model, model.deployment_id());
        {
            let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            let h = health.entry(key.clone()).or_default();
            h.roll_minute(now);
            h.requests += 1;
            h.tokens = h.tokens.saturating_add(tokens.max(0));
            h.in_flight += 1;
        }
        InFlight { balancer: self.clone(), key, judged: std::sync::atomic::AtomicBool::new(false) }
    }

    /// The moving average's weight of a new latency.
    const LATENCY_ALPHA: f64 = 0.3;

    fn succeeded(&self, key: &Id, latency_ms: i64) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let h = health.entry(key.clone()).or_default();
        let latency = latency_ms.max(0) as f64;
        h.latency_ms = Some(h.latency_ms.map_or(latency, |avg| avg + Self::LATENCY_ALPHA * (latency - avg)));
        if h.probing {
            // The probe answered: closed again.
            (h.probing, h.cooling_until, h.failures) = (false, 0, 0);
        }
    }

    /// Counts a failure; returns until when the deployment cools down if this one began it.
    fn failed(&self, key: &Id, now: i64, retry_after_ms: Option<i64>) -> Option<i64> {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let h = health.entry(key.clone()).or_default();
        let probe_failed = std::mem::take(&mut h.probing);
        if now - h.window_start > self.policy.window_ms {
            (h.window_start, h.failures) = (now, 0);
        }
        h.failures += 1;
        let mut until = None;
        if probe_failed || h.failures >= self.policy.failures {
            h.failures = 0;
            until = Some(now + self.policy.cooldown_ms);
        }
        if let Some(wait) = retry_after_ms {
            until = Some(until.unwrap_or(0).max(now + wait));
        }
        let until = until.filter(|u| *u > h.cooling_until)?;
        h.cooling_until = until;
        Some(until)
    }

    /// How many deployments are cooling down now, by model (for the metrics' gauge).
    pub fn cooling(&self, now: i64) -> Vec<(String, usize)> {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_model: std::collections::BTreeMap<String, usize> = Default::default();
        for ((model, _), h) in health.iter() {
            *by_model.entry(model.clone()).or_default() += usize::from(now < h.cooling_until);
        }
        by_model.into_iter().collect()
    }

    /// Writes a cooldown for other processes to see: one update per cooldown entered.
    fn share(&self, key: &Id, until: i64) {
        let Some(store) = self.store.clone() else { return };
        let (model, deployment) = key.clone();
        let write = async move {
            let update = Update::default().set(&format!("d_{deployment}"), until).set(crate::store::TTL, until / 1000 + 3600);
            if let Err(e) = store.update(&shared_key(&model), update, None).await {
                tracing::warn!(model, deployment, error = %e, "could not share a deployment's cooldown");
            }
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(write);
        }
    }

    /// Reads the model's shared cooldowns in the background when the copy here is older than
    /// `SHARED_REFRESH_MS`.
    fn refresh_shared(&self, model: &Model, now: i64) {
        let Some(store) = self.store.clone() else { return };
        {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            let read_at = shared.read_at.entry(model.id.clone()).or_insert(i64::MIN);
            if now.saturating_sub(*read_at) < SHARED_REFRESH_MS {
                return;
            }
            *read_at = now;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let model_id = model.id.clone();
        let this = self.shared.clone();
        runtime.spawn(async move {
            match store.get(&shared_key(&model_id)).await {
                Ok(item) => {
                    let mut shared = this.lock().unwrap_or_else(|p| p.into_inner());
                    for (name, value) in item.iter().flatten() {
                        if let (Some(deployment), Some(until)) = (name.strip_prefix("d_"), value.as_i64()) {
                            shared.until.insert((model_id.clone(), deployment.to_string()), until);
                        }
                    }
                }
                Err(e) => tracing::warn!(model = model_id, error = %e, "could not read shared cooldowns"),
            }
        });
    }
}

/// An attempt in flight on one deployment (`Balancer::begin`): it says how the attempt went,
/// and stops counting as in flight when dropped (a stream's, when the stream ends).
pub struct InFlight {
    balancer: Arc<Balancer>,
    key: Id,
    /// Whether it said how the attempt went (a probe that never does frees the deployment
    /// for the next probe).
    judged: std::sync::atomic::AtomicBool,
}

impl InFlight {
    /// The deployment answered (its head, for a stream) after `latency_ms`.
    pub fn succeeded(&self, latency_ms: i64) {
        self.judged.store(true, std::sync::atomic::Ordering::Relaxed);
        self.balancer.succeeded(&self.key, latency_ms);
    }

    /// The deployment failed in a way that says it is unwell (429, 5xx, unreachable, slow).
    pub fn failed(&self, now: i64, retry_after_ms: Option<i64>) {
        self.judged.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(until) = self.balancer.failed(&self.key, now, retry_after_ms) {
            self.balancer.metrics.cooldown(&self.key.0, &self.key.1);
            self.balancer.share(&self.key, until);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut health = self.balancer.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = health.get_mut(&self.key) {
            h.in_flight = h.in_flight.saturating_sub(1);
            if !self.judged.load(std::sync::atomic::Ordering::Relaxed) {
                h.probing = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::{Balancer, CooldownPolicy, Pick};
    use crate::catalog::{Model, Strategy};
    use crate::metrics::{Metrics, Sink};

    fn model(strategy: Strategy, deployments: serde_json::Value) -> Model {
        let mut model: Model = serde_json::from_value(json!({
            "id": "m", "provider": "openai-compatible", "base_url": "http://127.0.0.1:1/v1", "input_price_micros": 1, "output_price_micros": 1,
            "context_window": 1000, "capabilities": [], "has_api_key": false, "secret_id": uuid::Uuid::nil(),
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "routing": {"deployments": deployments}
        }))
        .expect("a model");
        model.routing.strategy = strategy;
        model
    }

    fn two(strategy: Strategy) -> Model {
        model(strategy, json!([{"id": "a", "provider": "openai-compatible", "weight": 1}, {"id": "b", "provider": "openai-compatible", "weight": 1, "rpm": 2}]))
    }

    fn balancer() -> Arc<Balancer> {
        Arc::new(Balancer::new(CooldownPolicy { failures: 2, window_ms: 10_000, cooldown_ms: 5_000 }, None, Arc::new(Metrics::new(Sink::Prometheus, false))))
    }

    fn chosen(pick: Pick) -> String {
        match pick {
            Pick::Healthy(d) => d.id,
            Pick::Cooling(d) => format!("cooling {}", d.id),
            Pick::Full(ms) => format!("full {ms}"),
            Pick::None => "none".into(),
        }
    }

    #[test]
    fn least_busy_takes_the_one_with_fewest_in_flight_and_least_latency_the_fastest() {
        let b = balancer();
        let m = two(Strategy::LeastBusy);
        let busy = b.begin(&m.deployed(&m.routing.deployments[0]), 0, 0);
        assert_eq!(chosen(b.choose(&m, &[], 0, 0.0)), "b");
        drop(busy);
        assert_eq!(chosen(b.choose(&m, &[], 0, 0.0)), "a", "a tie goes to the first");

        let m = two(Strategy::LeastLatency);
        let (a, bb) = (m.deployed(&m.routing.deployments[0]), m.deployed(&m.routing.deployments[1]));
        b.begin(&a, 0, 0).succeeded(300);
        assert_eq!(chosen(b.choose(&m, &[], 0, 0.0)), "b", "one never measured goes first");
        b.begin(&bb, 0, 0).succeeded(50);
        assert_eq!(chosen(b.choose(&m, &[], 0, 0.0)), "b");
        for _ in 0..10 {
            b.begin(&bb, 0, 0).succeeded(900);
        }
        assert_eq!(chosen(b.choose(&m, &[], 0, 0.0)), "a", "the moving average follows b's slowdown");
    }

    #[test]
    fn weights_split_the_draw_and_a_full_deployment_is_skipped_until_the_minute_ends() {
        let b = balancer();
        let m = two(Strategy::Weighted);
        assert_eq!(chosen(b.choose(&m, &[], 0, 0.49)), "a");
        assert_eq!(chosen(b.choose(&m, &[], 0, 0.51)), "b");
        assert_eq!(chosen(b.choose(&m, &["a".into()], 0, 0.0)), "b");
        let on_b = m.deployed(&m.routing.deployments[1]);
        drop((b.begin(&on_b, 10, 1_000), b.begin(&on_b, 10, 2_000)));
        assert_eq!(chosen(b.choose(&m, &[], 3_000, 0.99)), "a", "b took its 2 requests this minute");
        assert_eq!(chosen(b.choose(&m, &["a".into()], 3_000, 0.0)), "full 57000");
        assert_eq!(chosen(b.choose(&m, &[], 60_000, 0.99)), "b", "a new minute");
        assert_eq!(chosen(b.choose(&m, &["a".into(), "b".into()], 0, 0.0)), "none");
    }

    #[test]
    fn failures_in_the_window_cool_a_deployment_then_one_probe_decides() {
        let b = balancer();
        let m = two(Strategy::Weighted);
        let a = m.deployed(&m.routing.deployments[0]);
        b.begin(&a, 0, 0).failed(0, None);
        assert_eq!(chosen(b.choose(&m, &[], 1, 0.0)), "a", "one failure is not enough");
        // The window restarts: an old failure does not count.
        b.begin(&a, 0, 20_000).failed(20_000, None);
        assert_eq!(chosen(b.choose(&m, &[], 20_001, 0.0)), "a");
        b.begin(&a, 0, 20_002).failed(20_002, None);
        assert_eq!(chosen(b.choose(&m, &[], 20_003, 0.0)), "b", "two failures in the window: cooling");
        assert_eq!(chosen(b.choose(&m, &["b".into()], 20_003, 0.0)), "cooling a", "the last resort says so");
        // The cooldown over, one request probes; the others skip it meanwhile.
        assert_eq!(chosen(b.choose(&m, &[], 25_002, 0.0)), "a");
        assert_eq!(chosen(b.choose(&m, &[], 25_003, 0.0)), "b", "a probe is under way");
        b.begin(&a, 0, 25_004).failed(25_004, None);
        assert_eq!(chosen(b.choose(&m, &[], 25_005, 0.0)), "b", "the probe failed: cooling again at once");
        assert_eq!(chosen(b.choose(&m, &[], 30_004, 0.0)), "a");
        b.begin(&a, 0, 30_005).succeeded(10);
        assert_eq!(chosen(b.choose(&m, &[], 30_006, 0.0)), "a", "the probe answered: closed");
        // A 429's retry-after cools it at least that long.
        b.begin(&a, 0, 40_000).failed(40_000, Some(8_000));
        assert_eq!(chosen(b.choose(&m, &[], 47_000, 0.0)), "b");
        assert_eq!(b.cooling(47_000), vec![("m".to_string(), 1)]);
    }
}
