//! Budget events: a cost limit's threshold crossed (default 80%), its budget exhausted (a
//! request refused for it), its period reset (the first request of a new window after a window
//! that spent something). Decided from what the request's reservation (or refusal) saw, and
//! written as outbox items in the same transaction as that request's settlement and usage
//! record, so none is lost to a process that stops after answering; `outbox` delivers each
//! once per limit and period.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::cache::TtlCache;
use crate::limits::{self, Charge, Limit, Metric, Reservation};
use crate::money::format_dollars;
use crate::notify::Message;
use crate::outbox::{self, Event, Outbox};
use crate::store::{Key, Store, TxOp};

/// The alert threshold used until the settings have been read once.
const DEFAULT_THRESHOLD: i64 = 80;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Threshold,
    Exhausted,
    Reset,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Threshold => "threshold",
            Kind::Exhausted => "exhausted",
            Kind::Reset => "reset",
        }
    }
}

/// What decides and remembers budget events in a warm process.
pub struct Alerts {
    store: Arc<dyn Store>,
    outbox: Outbox,
    /// Events this process already saw written, so it does not write them again.
    seen: TtlCache<String, ()>,
    /// The settings' budget alert threshold (percent).
    threshold: Arc<TtlCache<(), i64>>,
}

impl Alerts {
    /// `ttl` bounds how long a changed alert threshold takes to reach this process.
    pub fn new(store: Arc<dyn Store>, outbox: Outbox, ttl: Duration) -> Self {
        Self { store, outbox, seen: TtlCache::new(Duration::from_secs(3600), 100_000), threshold: Arc::new(TtlCache::new(ttl, 1)) }
    }

    /// After the settings changed here: the next request reads the threshold again.
    pub fn forget_threshold(&self) {
        self.threshold.clear();
    }

    /// The settings' alert threshold, from the warm cache; on a miss, the default for this
    /// request while the cache is filled off the request's path (no store round trip is added).
    fn threshold(&self) -> i64 {
        if let Some(t) = self.threshold.get(&()) {
            return t;
        }
        let (store, cache) = (self.store.clone(), self.threshold.clone());
        tokio::spawn(async move {
            if let Ok(settings) = crate::settings::get(store.as_ref()).await {
                cache.insert((), settings.budget_alert_threshold);
            }
        });
        DEFAULT_THRESHOLD
    }
}

/// The outbox writes a request's settlement carries.
#[derive(Default)]
pub struct Events {
    pub ops: Vec<TxOp>,
    /// Their items, remembered once the settlement has written them (not before: a failed
    /// write must not pass for a sent event).
    seen: Vec<String>,
}

impl Events {
    fn push(&mut self, event: Option<(TxOp, String)>) {
        if let Some((op, seen)) = event {
            self.ops.push(op);
            self.seen.push(seen);
        }
    }

    /// After the settlement carrying them succeeded: this process need not write them again
    /// this period, and they are delivered now (without new events, the outbox still looks for
    /// pending ones once a minute).
    pub fn written(&self, alerts: &Alerts) {
        for seen in &self.seen {
            alerts.seen.insert(seen.clone(), ());
        }
        alerts.outbox.kick(!self.ops.is_empty());
    }
}

/// The outbox writes for the threshold and reset events a fresh reservation shows, to go in
/// the request's settlement.
pub fn after_reservation(alerts: &Alerts, reservations: &[Reservation], now: DateTime<Utc>) -> Events {
    let mut ops = Events::default();
    let threshold = alerts.threshold();
    for reservation in reservations {
        for entry in reservation.entries.iter().filter(|e| e.limit.metric == Metric::Cost) {
            let period = limits::period_attr(&entry.limit, &entry.attr, now);
            // A rolling budget never starts anew: its slices leave one by one.
            let new_window =
                entry.limit.window.slices().is_none() && reservation.stale.iter().any(|s| s.starts_with(&crate::limits::counter_prefix(&entry.limit)));
            if new_window {
                ops.push(event(alerts, Kind::Reset, &reservation.counters, &period, &entry.limit, entry.used, entry.window_end, now));
            }
            if entry.used.saturating_mul(100) >= entry.limit.limit.saturating_mul(threshold) {
                ops.push(event(alerts, Kind::Threshold, &reservation.counters, &period, &entry.limit, entry.used, entry.window_end, now));
            }
        }
    }
    ops
}

/// The outbox writes for a request refused for a budget: an exhausted event for each cost
/// limit its worst case no longer fits in, as `standing` (`limits::standing`) shows the counters.
pub fn after_refusal(alerts: &Alerts, standing: &[Reservation], worst: &Charge, now: DateTime<Utc>) -> Events {
    let mut ops = Events::default();
    for level in standing {
        for entry in level.entries.iter().filter(|e| e.limit.metric == Metric::Cost) {
            if entry.used.saturating_add(worst.cost_micros) > entry.limit.limit {
                let period = limits::period_attr(&entry.limit, &entry.attr, now);
                ops.push(event(alerts, Kind::Exhausted, &level.counters, &period, &entry.limit, entry.used, entry.window_end, now));
            }
        }
    }
    ops
}

/// The outbox write of one event (and the name it is remembered by), unless this process
/// already wrote it this period.
#[allow(clippy::too_many_arguments)]
fn event(
    alerts: &Alerts,
    kind: Kind,
    counters: &Key,
    attr: &str,
    limit: &Limit,
    used: i64,
    end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<(TxOp, String)> {
    let key = Key::new(format!("EVENT#{}#{attr}", counters.pk), kind.name());
    let seen = format!("{}|{}", key.pk, key.sk);
    if alerts.seen.get(&seen).is_some() {
        return None;
    }
    let level = counters.pk.trim_start_matches("LIMITS#").replacen('#', ":", 1);
    let window = limit.window.describe();
    let (subject, text) = match kind {
        Kind::Threshold => (
            format!("Budget alert: {level} has used ${} of its {window} ${}", format_dollars(used), format_dollars(limit.limit)),
            "The budget's alert threshold is crossed; requests still pass until the budget is spent.".to_string(),
        ),
        Kind::Exhausted => (
            format!("Budget exhausted: {level}'s {window} budget of ${}", format_dollars(limit.limit)),
            "Requests are refused with 402 budget_exceeded until the budget resets or is raised.".to_string(),
        ),
        Kind::Reset => {
            (format!("Budget reset: {level}'s {window} budget of ${} starts anew", format_dollars(limit.limit)), "A new budget period began.".to_string())
        }
    };
    let message = Message {
        event: match kind {
            Kind::Threshold => "budget.threshold",
            Kind::Exhausted => "budget.exhausted",
            Kind::Reset => "budget.reset",
        },
        subject,
        text,
        data: json!({"level": level, "limit_usd": format_dollars(limit.limit), "used_usd": format_dollars(used), "window": window, "window_end": end}),
        to: None,
    };
    Some((outbox::enqueue(&Event { key, message, period_end: end }, now), seen))
}
