//! The order of a request's attempts: over its models (the requested one, or a project's, then
//! each one's fallbacks), and within a model over its deployments, then again on the same one
//! after a backoff, until the model's attempts or the request's time are spent.
//!
//! Only failures that say the upstream is unwell are retried: 429 (after its retry-after, up to
//! `RETRY_AFTER_MAX`), 408, 5xx, unreachable, timed out. Another 4xx is the request's fault and
//! is the answer. What a provider cannot carry moves on to another deployment or model, never
//! to the same one again. A stream is retried only until its first byte reaches the client:
//! the flight asks for a next attempt only while opening.

use std::time::{Duration, Instant};

use super::balance::{Balancer, Pick};
use super::upstream::Failure;
use crate::catalog::{Model, RetryPolicy};

/// The longest retry-after the gateway waits out on the same deployment; past it, the attempt
/// moves on (or the 429 is the answer).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(10);
/// Backoff before the same deployment is tried again: exponential from the base, capped,
/// with jitter (a random half of it), so retries from many requests do not arrive together.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// Why an attempt failed, as retrying sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    RateLimited,
    ServerError,
    Unreachable,
    Timeout,
    /// The provider cannot carry the request: another provider may.
    Unsupported,
    /// The request's own fault (a 4xx): never retried.
    Rejected,
}

impl Reason {
    pub fn of(failure: &Failure) -> Reason {
        match failure {
            Failure::Timeout => Reason::Timeout,
            Failure::Transport(_) => Reason::Unreachable,
            Failure::Unsupported(_) => Reason::Unsupported,
            Failure::RateLimited { .. } | Failure::Status(429, _) => Reason::RateLimited,
            Failure::Status(408 | 500..=599, _) => Reason::ServerError,
            Failure::Status(..) => Reason::Rejected,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Reason::RateLimited => "rate_limited",
            Reason::ServerError => "server_error",
            Reason::Unreachable => "unreachable",
            Reason::Timeout => "timeout",
            Reason::Unsupported => "unsupported",
            Reason::Rejected => "rejected",
        }
    }

    /// Whether it says the deployment is unwell (counted towards its cooldown).
    pub fn unwell(self) -> bool {
        matches!(self, Reason::RateLimited | Reason::ServerError | Reason::Unreachable | Reason::Timeout)
    }
}

/// The next attempt: on this model (a copy for one deployment), after this wait. Boxed: it
/// passes through the flight's future, which its task copies whole.
pub struct Next {
    pub model: Box<Model>,
    pub wait: Duration,
}

/// What to do instead of an attempt.
pub enum Stop {
    /// The last failure is the answer.
    Failed,
    /// Every deployment left is at its capacity this minute: try again in this long.
    Full(Duration),
}

pub struct Plan {
    chain: Vec<Model>,
    /// The model being tried, in `chain`.
    at: usize,
    /// Deployments of that model tried so far, and attempts made on it.
    tried: Vec<String>,
    attempts: u32,
    /// Retries of one deployment after a backoff, for the next backoff's length.
    backoffs: u32,
    /// When the request's attempts must be over (its project's `retry.maxTotalMs`, else its
    /// first model's).
    pub deadline: Option<Instant>,
    /// A project's retry policy, over each model's own.
    policy: Option<RetryPolicy>,
}

impl Plan {
    pub fn new(chain: Vec<Model>, started: Instant, policy: Option<RetryPolicy>) -> Plan {
        let total = policy.or_else(|| chain.first().and_then(|m| m.routing.retry)).and_then(|r| r.max_total_ms);
        let deadline = total.map(|ms| started + Duration::from_millis(ms));
        Plan { chain, at: 0, tried: vec![], attempts: 0, backoffs: 0, deadline, policy }
    }

    /// How many attempts `model` may take: the project's limit, else the model's.
    fn attempts_on(&self, model: &Model) -> u32 {
        self.policy.map_or_else(|| model.max_attempts(), |p| p.max_attempts)
    }

    pub fn chain(&self) -> &[Model] {
        &self.chain
    }

    /// The longest the attempts can take: each model's attempts at `timeout` each plus their
    /// backoffs, or the deadline if sooner (what a reservation's lease must outlast).
    pub fn longest(&self, timeout: Duration) -> Duration {
        let wait = BACKOFF_CAP.max(RETRY_AFTER_MAX);
        let all: Duration = self.chain.iter().map(|m| self.attempts_on(m)).map(|n| timeout * n + wait * (n - 1)).sum();
        match self.deadline {
            Some(deadline) => all.min(deadline.saturating_duration_since(Instant::now())),
            None => all,
        }
    }

    /// The first attempt: the first model with a healthy deployment; if none has one, the
    /// first model's deployment whose cooldown ends first.
    /// `None`: the first model as it is (a model served only by its own provider, the common
    /// case, needs no choosing and no copy).
    pub fn first(&mut self, balancer: &Balancer, now_ms: i64) -> Result<Option<Next>, Stop> {
        if self.chain[0].routing.deployments.is_empty() {
            return Ok(None);
        }
        self.pick_from(0, balancer, now_ms).map(Some)
    }

    /// The attempt after `failure` (already counted against the deployment), if any.
    pub fn after(&mut self, failure: &Failure, tried: &Model, balancer: &Balancer, now_ms: i64) -> Result<Next, Stop> {
        let reason = Reason::of(failure);
        if reason == Reason::Rejected {
            return Err(Stop::Failed);
        }
        self.tried.push(tried.deployment_id().to_string());
        self.attempts += 1;
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Stop::Failed);
        }
        let model = &self.chain[self.at];
        if reason != Reason::Unsupported && self.attempts < self.attempts_on(model) {
            // Another deployment, at once.
            if let Pick::Healthy(d) = balancer.choose(model, &self.tried, now_ms, random()) {
                return Ok(Next { model: Box::new(model.deployed(&d)), wait: Duration::ZERO });
            }
            // Then the same one (or the best of those tried) again, after a backoff.
            let wait = match failure {
                Failure::RateLimited { retry_after: Some(after), .. } => Some(*after).filter(|a| *a <= RETRY_AFTER_MAX),
                _ => Some(self.backoff()),
            };
            let again = match balancer.choose(model, &[], now_ms, random()) {
                Pick::Healthy(d) | Pick::Cooling(d) => Some(d),
                _ => None,
            };
            if let (Some(wait), Some(d)) = (wait, again)
                && self.deadline.is_none_or(|deadline| Instant::now() + wait < deadline)
            {
                self.backoffs += 1;
                return Ok(Next { model: Box::new(model.deployed(&d)), wait });
            }
        }
        self.pick_from(self.at + 1, balancer, now_ms)
    }

    /// The first model from `from` on with a healthy deployment; else the cooled deployment of
    /// the first of them whose cooldown ends first.
    fn pick_from(&mut self, from: usize, balancer: &Balancer, now_ms: i64) -> Result<Next, Stop> {
        let mut cooling = None;
        let mut full = None;
        for at in from..self.chain.len() {
            match balancer.choose(&self.chain[at], &[], now_ms, random()) {
                Pick::Healthy(d) => {
                    self.move_to(at);
                    return Ok(Next { model: Box::new(self.chain[at].deployed(&d)), wait: Duration::ZERO });
                }
                Pick::Cooling(d) => {
                    cooling.get_or_insert((at, d));
                }
                Pick::Full(ms) => full = Some(full.unwrap_or(ms).min(ms)),
                Pick::None => {}
            }
        }
        if let Some((at, d)) = cooling {
            self.move_to(at);
            return Ok(Next { model: Box::new(self.chain[at].deployed(&d)), wait: Duration::ZERO });
        }
        match full {
            Some(ms) if from == 0 => Err(Stop::Full(Duration::from_millis(ms.max(1) as u64))),
            _ => Err(Stop::Failed),
        }
    }

    fn move_to(&mut self, at: usize) {
        if at != self.at {
            (self.at, self.attempts, self.backoffs) = (at, 0, 0);
            self.tried.clear();
        }
    }

    fn backoff(&self) -> Duration {
        let full = BACKOFF_BASE.saturating_mul(1 << self.backoffs.min(10)).min(BACKOFF_CAP);
        full / 2 + full.mul_f64(random() / 2.0)
    }
}

/// A random number in [0, 1), for the weighted choice and the backoff's jitter.
fn random() -> f64 {
    (getrandom::u64().unwrap_or(0) >> 11) as f64 / (1u64 << 53) as f64
}
