//! Budget events: a cost limit's threshold crossed (default 80%), its budget exhausted (a
//! request refused for it), its period reset (the first request of a new window after a window
//! that spent something). Each is delivered through the notification channels once per limit
//! and period: a marker item written with a not-exists condition decides, so concurrent
//! requests and several processes agree. All of it runs off the request's path.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::limits::{self, Charge, Level, Limit, Metric, Reservation};
use crate::money::format_dollars;
use crate::notify::{self, Message};
use crate::state::AppState;
use crate::store::{Attr, Cond, Item, Key, TTL};

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

/// Checks a fresh reservation for threshold and reset events.
pub fn after_reservation(state: &AppState, reservations: &[Reservation]) {
    let mut candidates = Vec::new();
    for reservation in reservations {
        for entry in reservation.entries.iter().filter(|e| e.limit.metric == Metric::Cost) {
            let new_window = reservation.stale.iter().any(|s| s.starts_with(&format!("u_{}_", entry.limit.id)));
            candidates.push((reservation.counters.clone(), entry.attr.clone(), entry.limit.clone(), entry.used, entry.window_end, new_window));
        }
    }
    // With the threshold known (it is cached), most requests are done here, off no path at all.
    let known = state.hot.alert_threshold.get(&());
    if let Some(threshold) = known {
        candidates.retain(|(_, _, limit, used, _, new_window)| *new_window || used.saturating_mul(100) >= limit.limit.saturating_mul(threshold));
    }
    if candidates.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let threshold = match known {
            Some(t) => t,
            None => {
                let t = crate::settings::get(state.store.as_ref()).await.map_or(80, |s| s.budget_alert_threshold);
                state.hot.alert_threshold.insert((), t);
                t
            }
        };
        for (counters, attr, limit, used, end, new_window) in candidates {
            if new_window {
                emit(&state, Kind::Reset, &counters, &attr, &limit, used, end).await;
            }
            if used.saturating_mul(100) >= limit.limit.saturating_mul(threshold) {
                emit(&state, Kind::Threshold, &counters, &attr, &limit, used, end).await;
            }
        }
    });
}

/// After a request was refused for a budget: an exhausted event for each cost limit the
/// request's worst case no longer fits in.
pub fn after_refusal(state: &AppState, levels: Vec<Level>, worst: Charge) {
    let state = state.clone();
    tokio::spawn(async move {
        let now = Utc::now();
        for level in levels {
            let Ok(item) = state.store.get(&level.counters).await else { continue };
            let item = item.unwrap_or_default();
            for limit in level.limits.iter().filter(|l| l.metric == Metric::Cost) {
                let (attr, end) = limits::current_counter(limit, now);
                let used = item.get(&attr).and_then(Attr::as_i64).unwrap_or(0);
                if used.saturating_add(worst.cost_micros) > limit.limit {
                    emit(&state, Kind::Exhausted, &level.counters, &attr, limit, used, end).await;
                }
            }
        }
    });
}

async fn emit(state: &AppState, kind: Kind, counters: &Key, attr: &str, limit: &Limit, used: i64, end: Option<DateTime<Utc>>) {
    let marker = Key::new(format!("EVENT#{}#{attr}", counters.pk), kind.name());
    let seen = format!("{}|{}", marker.pk, marker.sk);
    if state.hot.events.get(&seen).is_some() {
        return;
    }
    let mut item = Item::from([
        ("PK".into(), Attr::S(marker.pk.clone())),
        ("SK".into(), Attr::S(marker.sk.clone())),
        ("sent_at".into(), Attr::S(Utc::now().to_rfc3339())),
    ]);
    if let Some(end) = end {
        item.insert(TTL.into(), Attr::N((end + Duration::days(1)).timestamp()));
    }
    let first = state.store.put(item, Some(Cond::NotExists)).await.is_ok();
    state.hot.events.insert(seen, ());
    if !first {
        return;
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
    notify::broadcast(state, &message).await;
}
