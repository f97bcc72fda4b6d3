//! A streamed answer: opened (retried and fallen back until then), then relayed to the client
//! as it comes, and settled before its last event.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::fit;
use super::headers::standing;
use super::observed::{Observed, outcome_of};
use super::upstream::{Event, Events, Failure};
use super::{Answer, Flight};
use crate::canonical::answer::frame_json;
use crate::error::ApiResult;
use crate::limits;
use crate::usage::Outcome;

impl Flight {
    /// Opens a stream from the current model.
    pub(super) async fn open_once(&self, id: &str, created: i64) -> ApiResult<Result<Events, Failure>> {
        self.call_upstream(id, created, async |call| call.stream().await).await
    }

    pub(super) async fn stream(mut self) -> ApiResult<Answer> {
        let id = self.response_id();
        let created = self.gw.clock.now().timestamp();
        // Retries and fallbacks happen while opening; once the first byte is sent, the stream
        // is this deployment's.
        // Boxed, as are the other paths most requests never take: inline, each would grow the
        // flight's future, which its task copies whole (callgrind: ~100k instructions a request).
        if self.cache.is_some()
            && let Some(answer) = Box::pin(self.answer_from_cache()).await?
        {
            return Ok(answer);
        }
        if let Err(answer) = self.first(true).await? {
            return Ok(answer);
        }
        let source = loop {
            let since = Instant::now();
            match self.open_once(&id, created).await? {
                Ok(source) => {
                    self.attempted(since, None);
                    break source;
                }
                Err(failure) => {
                    self.attempted(since, Some(&failure));
                    match self.next_after(&failure) {
                        Ok(next) => self.begin(next).await,
                        Err(_) => return Box::pin(self.fail(&failure, true)).await,
                    }
                }
            }
        };
        let mut headers = standing(&self.reservations, None, self.gw.clock.now());
        headers.extend(self.lowered_header());
        headers.extend(self.cache_header());
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        // Boxed, as the flight's own task is (`proxy::handle`): a large future moved by value.
        tokio::spawn(Box::pin(self.relay(source, tx)));
        Ok(Answer::Stream { events: rx, headers })
    }

    /// Relays a stream to the client, then settles and records it before the final `[DONE]`, so
    /// the record is durable before the request is over.
    ///
    /// While it runs, its lease is renewed halfway through each lease period (one conditional
    /// write per level and period), so a stream longer than the upstream timeout plus
    /// `TOLLGATE_LEASE_MARGIN_SECS` keeps its reservation; should the lease be gone all the same
    /// (released as lapsed, say after the store was unreachable for a whole period), the stream
    /// ends with an error event, since nothing is reserved for it any more.
    ///
    /// A client that goes away is recorded as cancelled, and the upstream is read on without
    /// relaying, for at most the upstream timeout, until it ends: its usage (reasoning tokens
    /// no chunk showed included) is what the provider bills, and what is charged. When no usage
    /// comes, the request's whole worst case is charged, its documented upper bound.
    pub(super) async fn relay(mut self, mut source: Events, tx: tokio::sync::mpsc::Sender<Bytes>) {
        // With the response cache on, the answer is put together to be kept.
        let mut assembled = self.cache.as_ref().map(|_| crate::response_cache::Assembler::default());
        let mut seen = Observed::default();
        let mut cancelled = false;
        let mut failure = None;
        let mut writer = self.door.writer(self.req.client_wants_usage, self.native());
        let lease_span = self.timeout + self.gw.tuning.lease_margin;
        let renew_every = renew_every(self.timeout, self.gw.tuning.lease_margin);
        let leased = self.reservations.iter().any(|r| r.lease_tail.is_some());
        // Three timers made once (not one per chunk): the next renewal; once the client is gone,
        // the end of the wait for the upstream's usage; and the upstream's silence, which ends a
        // stream that stalled (it would hold its slot, reservation and client for ever). Each
        // event only notes its time: the silence timer, when it fires early, is set again from it.
        let idle_limit = self.gw.tuning.stream_idle_timeout;
        let mut last_event = tokio::time::Instant::now();
        let renew = tokio::time::sleep(renew_every);
        let drain = tokio::time::sleep(Duration::ZERO);
        let idle = tokio::time::sleep(idle_limit);
        tokio::pin!(renew, drain, idle);
        loop {
            let next = tokio::select! {
                biased;
                _ = &mut idle => {
                    if last_event.elapsed() < idle_limit {
                        idle.as_mut().reset(last_event + idle_limit);
                        continue;
                    }
                    failure = Some(Failure::Timeout);
                    break;
                }
                _ = tx.closed(), if !cancelled => {
                    cancelled = true;
                    drain.as_mut().reset(tokio::time::Instant::now() + self.timeout);
                    continue;
                }
                _ = &mut drain, if cancelled => break,
                _ = &mut renew, if leased => {
                    renew.as_mut().reset(tokio::time::Instant::now() + renew_every);
                    let expires_at = self.gw.clock.now().timestamp().saturating_add(lease_span.as_secs() as i64).saturating_add(1);
                    match limits::renew(self.gw.store.as_ref(), &self.reservations, expires_at).await {
                        Ok(true) => continue,
                        Ok(false) => {
                            failure = Some(Failure::Transport(
                                "the stream outlived its reservation's lease, which was released; it was ended so no budget is overspent".into(),
                            ));
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(request_id = %self.request_id, error = %e, "renewing a stream's lease failed; trying again at the next period");
                            continue;
                        }
                    }
                }
                next = futures::StreamExt::next(&mut source) => next,
            };
            last_event = tokio::time::Instant::now();
            match next {
                None | Some(Ok(Event::Done)) => break,
                Some(Ok(Event::Data(chunk, frame))) => {
                    seen.absorb_parsed(&chunk, self.started);
                    if let Some(assembler) = &mut assembled {
                        assembler.push(&chunk.json(frame_json(&frame)));
                    }
                    if cancelled {
                        continue;
                    }
                    for frame in writer.chunk_read(&chunk, frame) {
                        if !self.deliver(&tx, frame).await {
                            cancelled = true;
                            drain.as_mut().reset(tokio::time::Instant::now() + self.timeout);
                            break;
                        }
                    }
                }
                Some(Err(f)) => {
                    failure = Some(f);
                    break;
                }
            }
        }
        let actual = if cancelled && seen.output.is_none() { fit::worst_case(&self.req, std::slice::from_ref(&self.model)) } else { self.charge(&seen) };
        let (outcome, status, error) = match &failure {
            None => (Outcome::Success, 200, None),
            // Mid-stream the status is already sent; the record says what it would have been.
            Some(f) => (outcome_of(f), if matches!(f, Failure::Timeout) { 504 } else { 502 }, Some(f.describe())),
        };
        if let Some(answer) = assembled.filter(|_| failure.is_none() && !cancelled).and_then(crate::response_cache::Assembler::answer) {
            self.keep(&answer, actual.cost_micros);
        }
        let stored = if failure.is_none() && !cancelled { writer.response() } else { None };
        if let Err(e) = self.record_full(actual, &seen, outcome, status, true, cancelled, error, stored).await {
            tracing::error!(request_id = %self.request_id, error = %e, "could not record a streamed request");
        }
        if !cancelled {
            let described = failure.as_ref().map(Failure::describe);
            for frame in writer.finish(described.as_deref().map(|m| ("upstream_error", m)), &self.request_id) {
                if !self.deliver(&tx, frame).await {
                    break;
                }
            }
        }
    }

    /// Hands a frame to the client's connection; false once the client is gone, or has read
    /// nothing for a whole upstream timeout: waiting on it longer would hold the request's
    /// admission slot, its reservation and its upstream for as long as it pleases.
    async fn deliver(&self, tx: &tokio::sync::mpsc::Sender<Bytes>, frame: Bytes) -> bool {
        matches!(tokio::time::timeout(self.timeout, tx.send(frame)).await, Ok(Ok(())))
    }
}

/// How often a stream renews its lease: halfway through each lease period (the upstream
/// timeout plus the margin), and more often than the margin. Between two renewals the relay may
/// also wait a whole upstream timeout on a client that reads nothing (`deliver`), so a lease
/// renewed only halfway through its period lapsed whenever the timeout passed the margin (a
/// project's long timeout, a short margin): the next request on its counters released it, and
/// the stream went on with nothing reserved.
fn renew_every(timeout: Duration, margin: Duration) -> Duration {
    ((timeout + margin) / 2).min(margin / 2).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_renewed_before_a_renewal_period_and_a_stalled_client_together_outlast_it() {
        let s = Duration::from_secs;
        for timeout in [s(1), s(30), s(120), s(600), s(3600)] {
            for margin in [s(3), s(60), s(600), s(7200)] {
                let every = renew_every(timeout, margin);
                // The longest the lease goes unrenewed: a period, then a send that waited a
                // whole timeout; it lasts the timeout plus the margin from its last renewal.
                assert!(every + timeout < timeout + margin, "timeout {timeout:?}, margin {margin:?}: every {every:?}");
                assert!(every <= (timeout + margin) / 2, "never later than halfway");
            }
        }
    }
}
