//! The response cache on a request's way (`response_cache`): looked up before the first
//! attempt; a hit answered whole or replayed as a stream, recorded with outcome `cache_hit` and
//! charged the operator's share of what the first answer cost; a whole answer kept with the
//! settlement of the request that got it.
//!
//! A hit still takes its reservation and settles it, so the key's rate limits count it and its
//! budget pays the (default zero) charge exactly once.

use bytes::Bytes;
use serde_json::Value;

use super::headers::standing;
use super::observed::Observed;
use super::upstream::sse;
use super::{Answer, Flight};
use crate::canonical::{Endpoint, Inspected};
use crate::doors::Door;
use crate::error::ApiResult;
use crate::keys::ApiKey;
use crate::limits::Charge;
use crate::response_cache::{self, Directive};
use crate::store::Key;
use crate::usage::Outcome;

/// A request the response cache applies to.
pub(super) struct Cached {
    key: Key,
    ttl: u32,
    /// Whether to answer from the cache (not when the caller said `no-cache`).
    read: bool,
}

impl Cached {
    /// The cache entry of a chat request whose key (or else its project) opted in, unless the
    /// caller said `no-store`. Only chat requests are cached: the answer is replayed through
    /// the caller's door, which a Responses request's stored state would not survive.
    pub(super) fn of(key: &ApiKey, project: Option<&crate::projects::Project>, req: &Inspected, door: &Door, directive: Directive) -> Option<Cached> {
        let settings = key.settings.cache.or_else(|| project.and_then(|p| p.cache))?;
        if req.endpoint != Endpoint::Chat || matches!(door, Door::Responses(_)) || directive == Directive::Skip {
            return None;
        }
        Some(Cached { key: response_cache::key(&key.owner.tag(), req.endpoint.path(), &req.body), ttl: settings.ttl, read: directive == Directive::Use })
    }
}

impl Flight {
    /// The answer from the cache, when it has one for this request.
    pub(super) async fn answer_from_cache(&self) -> ApiResult<Option<Answer>> {
        let Some(cached) = &self.cache else { return Ok(None) };
        let entry = match cached.read {
            true => response_cache::get(self.gw.store.as_ref(), &cached.key, self.gw.clock.now().timestamp()).await?,
            false => None,
        };
        if let Some(trace) = &self.trace {
            trace.cache(match (&entry, cached.read) {
                (Some(_), _) => "hit",
                (None, true) => "miss",
                (None, false) => "bypass",
            });
        }
        let Some(entry) = entry else { return Ok(None) };
        // The operator's share of the first answer's cost, never past what was reserved.
        let share = i128::from(entry.cost_micros.max(0)) * i128::from(self.gw.tuning.cache_hit_percent);
        let cost = i64::try_from((share + 99) / 100).unwrap_or(i64::MAX).min(self.reserved_cost().unwrap_or(i64::MAX));
        let actual = Charge { calls: 1, input_tokens: 0, output_tokens: 0, cost_micros: cost };
        let mut headers = standing(&self.reservations, Some(&actual), self.gw.clock.now());
        headers.push((super::headers::COST, super::headers::dollars(cost)));
        headers.push((super::headers::CACHE, reqwest::header::HeaderValue::from_static("hit")));
        let seen = Observed::default();
        if !self.req.stream {
            self.record(actual, &seen, Outcome::CacheHit, 200, false, None).await?;
            let bytes = Bytes::from(entry.answer.to_string());
            let (body, _) = self.door.answer(bytes, &crate::canonical::answer::Parsed::Json(entry.answer), false);
            return Ok(Some(Answer::Whole { body, headers }));
        }
        let mut writer = self.door.writer(self.req.client_wants_usage, false);
        let mut frames: Vec<Bytes> = response_cache::replay_chunks(&entry.answer).iter().flat_map(|chunk| writer.chunk(chunk, sse(chunk))).collect();
        self.record(actual, &seen, Outcome::CacheHit, 200, true, None).await?;
        frames.extend(writer.finish(None, &self.request_id));
        let (tx, rx) = tokio::sync::mpsc::channel(frames.len().max(1));
        for frame in frames {
            let _ = tx.try_send(frame);
        }
        Ok(Some(Answer::Stream { events: rx, headers }))
    }

    /// Keeps a whole answer for the requests that will ask the same, written with this
    /// request's settlement.
    pub(super) fn keep(&mut self, answer: &Value, cost_micros: i64) {
        let Some(cached) = &self.cache else { return };
        if response_cache::storable(answer) {
            let expires_at = self.gw.clock.now().timestamp().saturating_add(i64::from(cached.ttl));
            self.keep = Some(Box::new(response_cache::put(&cached.key, answer, cost_micros, expires_at)));
        }
    }

    /// `x-tollgate-cache` on an answer that did not come from the cache: `miss`, or `bypass`
    /// when the caller said `no-cache`.
    pub(super) fn cache_header(&self) -> Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)> {
        self.cache.as_ref().map(|c| (super::headers::CACHE, reqwest::header::HeaderValue::from_static(if c.read { "miss" } else { "bypass" })))
    }
}
