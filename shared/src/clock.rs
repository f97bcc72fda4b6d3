//! The time every rule is decided by: rate and budget windows, key expiry and rotation grace,
//! sessions, invites, leases, the outbox's retry pauses. It is passed in rather than read from
//! the system, so tests move it instead of sleeping. (Caches and timeouts keep the process's
//! own monotonic time: they bound how stale something may be, not what a rule decides.)

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The shared handle every service holds.
pub type SharedClock = Arc<dyn Clock>;

/// The system's time: what every deployment runs on.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// The system's time plus an offset a test moves: time still passes (so timeouts and the
/// store's own clock stay sane), and a test jumps over a window, a grace period or a lease
/// instead of waiting for it. Never built by the servers.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    /// In nanoseconds: a clock set to an instant must never read a moment before it (in
    /// milliseconds, the truncated remainder made it read up to 1 ms early).
    offset_ns: AtomicI64,
}

impl ShiftedClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        self.offset_ns.fetch_add(by.num_nanoseconds().unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// What the clock reads (without the `Clock` trait in scope).
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::nanoseconds(self.offset_ns.load(Ordering::SeqCst))
    }

    /// Sets the clock so that it reads `at` now.
    pub fn set(&self, at: DateTime<Utc>) {
        self.offset_ns.store((at - Utc::now()).num_nanoseconds().unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        ShiftedClock::now(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_moves_only_when_told() {
        let clock = ShiftedClock::new();
        let before = Utc::now();
        assert!((clock.now() - before).num_seconds().abs() <= 1);
        clock.advance(Duration::hours(2));
        assert!((clock.now() - before - Duration::hours(2)).num_seconds().abs() <= 1);
        let at = "2030-01-01T00:00:30Z".parse::<DateTime<Utc>>().unwrap();
        clock.set(at);
        assert!((clock.now() - at).num_seconds().abs() <= 1);
    }
}
