//! Admission: past its capacity the gateway turns requests away at once instead of taking in
//! every one it is offered.
//!
//! Without a bound, an open-loop load above capacity kept every request in flight at once: each
//! held its body, its task and a lease on its key's, project's and workspace's counters items,
//! and since every update of such an item carries all the leases on it, the work per request
//! grew with the requests in flight. Fewer requests were served than at a lower rate (offered
//! 6,000/s on the 2-core development machine: 212/s served, the rest timing out) and memory
//! reached gigabytes. A bound only on the gateway's own work before the upstream (parsing,
//! authorising, reserving) was tried first and changed nothing: that work never queued, the
//! requests in flight did. So a request holds its slot from the moment its body is read (a
//! client slow to send one holds none) until it is over: refused, or answered and settled (a
//! stream after its last event, or once its client has read nothing for an upstream timeout).
//! Slots are per process (`TOLLGATE_MAX_IN_FLIGHT`, default 1,024, the bound Envoy's circuit
//! breakers start from), so they bound long LLM calls too: set it to the streams a process
//! should hold at once. A request that finds no slot free within `wait` is answered 503
//! `overloaded` with `retry-after`, which the OpenAI and Anthropic SDKs retry on
//! their own. Figures in README, "Overload".

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::error::ApiError;

/// What an overloaded gateway tells the caller to wait before trying again.
const RETRY_AFTER_SECS: u64 = 1;

pub struct Admission {
    /// `None`: no limit (`TOLLGATE_MAX_IN_FLIGHT=0`).
    slots: Option<Arc<Semaphore>>,
    wait: Duration,
}

/// A request's place among those in flight; given back when dropped.
#[must_use]
pub struct Slot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Admission {
    /// `slots` requests in flight at once (0: no limit), each other waiting at most `wait` for
    /// one to come free.
    pub fn new(slots: usize, wait: Duration) -> Self {
        Admission { slots: (slots > 0).then(|| Arc::new(Semaphore::new(slots.min(Semaphore::MAX_PERMITS)))), wait }
    }

    /// A slot, at once when one is free, else the first to come free within the wait; or
    /// `overloaded`.
    pub async fn enter(&self) -> Result<Slot, ApiError> {
        let Some(slots) = &self.slots else { return Ok(Slot(None)) };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => return Ok(Slot(Some(permit))),
            Err(TryAcquireError::NoPermits) => {}
            Err(TryAcquireError::Closed) => return Err(ApiError::internal("the admission gate is closed")),
        }
        match tokio::time::timeout(self.wait, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot(Some(permit))),
            Ok(Err(_closed)) => Err(ApiError::internal("the admission gate is closed")),
            Err(_elapsed) => Err(ApiError::Overloaded {
                message: format!(
                    "the gateway is at capacity and none of its requests in flight ended within {} ms; retry after {RETRY_AFTER_SECS} s (your SDK does so by itself)",
                    self.wait.as_millis()
                ),
                retry_after_secs: RETRY_AFTER_SECS,
            }),
        }
    }

    /// Slots free now (all of them when idle); `None` without a limit.
    pub fn free(&self) -> Option<usize> {
        self.slots.as_ref().map(|s| s.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_gate_sheds_after_the_wait_and_admits_once_a_slot_is_back() {
        let gate = Admission::new(2, Duration::from_millis(20));
        let (a, _b) = (gate.enter().await.expect("first"), gate.enter().await.expect("second"));
        assert_eq!(gate.free(), Some(0));
        let started = std::time::Instant::now();
        let shed = gate.enter().await.err().expect("a third finds none free");
        assert_eq!((shed.status_code(), shed.code()), (503, "overloaded"));
        assert!(started.elapsed() >= Duration::from_millis(20), "it waited for a slot first");
        // A slot given back goes to the one waiting (given a wait long enough to see it).
        let gate = Arc::new(Admission { wait: Duration::from_secs(5), ..gate });
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(a);
        let admitted = waiting.await.expect("task").expect("the waiter is admitted");
        assert_eq!(gate.free(), Some(0), "the waiter holds the slot given back");
        drop(admitted);
        assert_eq!(gate.free(), Some(1));
    }

    #[tokio::test]
    async fn zero_slots_means_no_limit() {
        let gate = Admission::new(0, Duration::ZERO);
        let held: Vec<_> = futures::future::join_all((0..1000).map(|_| gate.enter())).await;
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(gate.free(), None);
    }
}
