//! Why a reservation was refused, at which level, and when the request could be served: read
//! back from the counters item on the refusal path only.

use chrono::{DateTime, Utc};

use super::{Level, Limit, Metric, Mode, Planned, Reservation, Reserved, counter_prefix, current_counter, seconds_until, used_in};
use crate::error::{ApiError, ApiResult};
use crate::store::{Item, Key, Store, StoreError};

/// When a request refused by `limit` could be served: the end of a calendar window, or for a
/// rolling one the moment enough of the window has passed for `amount` (less `own`, the
/// request's own reservation being taken back) to fit.
fn fits_at(limit: &Limit, item: &Item, amount: i64, own: i64, end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match limit.window.slices() {
        Some(slices) => Some(slices.fits_at(&counter_prefix(limit), item, now, limit.limit, amount, own)),
        None => end,
    }
}

/// A refused request: which limit, and when it could be served (`fits`: the end of a calendar
/// window, or when a rolling window has room again); `left` is what the limit has left.
fn limit_exceeded(limit: &Limit, level: Tier, fits: Option<DateTime<Utc>>, left: i64, now: DateTime<Utc>) -> Refusal {
    let retry_after_secs = fits.map_or(0, |e| u64::try_from(seconds_until(e, now).max(1)).unwrap_or(1));
    let when = match fits {
        None => "it never resets".to_string(),
        Some(e) if limit.window.slices().is_some() => format!("over the rolling window, the request fits again at {}", e.to_rfc3339()),
        Some(e) => format!("it resets at {}", e.to_rfc3339()),
    };
    match limit.metric {
        Metric::Cost => Refusal::Budget {
            message: format!(
                "the {} budget of ${} would be exceeded by this request's worst-case cost; {when}",
                limit.window.describe(),
                crate::money::format_dollars(limit.limit),
            ),
            left,
            level,
        },
        metric => Refusal::Rate {
            message: format!("the {} limit of {} {} is reached; {when}", limit.window.describe(), limit.limit, metric.describe()),
            retry_after_secs,
            level,
        },
    }
}

/// Why a reservation was refused: a domain outcome, which the HTTP layer turns into its
/// answer (402 `budget_exceeded`, 429 `rate_limit_exceeded` with `retry-after`).
#[derive(Debug)]
pub enum Refusal {
    /// A budget (a cost limit) has no room for the worst case; `left` is what it has left, in
    /// micro-dollars.
    Budget { message: String, left: i64, level: Tier },
    /// A rate or token limit is reached until `retry_after_secs` from now.
    Rate { message: String, retry_after_secs: u64, level: Tier },
    /// The reservation could not be made (the store failed).
    Failed(ApiError),
}

/// The level whose limit refused: what its counters item is named after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Workspace,
    Project,
    Token,
}

impl Tier {
    /// The level a counters item belongs to (`LIMITS#<level>#<id>`).
    pub fn of(counters: &Key) -> Self {
        match counters.pk.strip_prefix("LIMITS#").and_then(|rest| rest.split('#').next()) {
            Some("workspace") => Tier::Workspace,
            Some("project") => Tier::Project,
            _ => Tier::Token,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::Workspace => "workspace",
            Tier::Project => "project",
            Tier::Token => "token",
        }
    }
}

impl Refusal {
    /// What a refusing budget has left, micro-dollars.
    pub fn budget_left(&self) -> Option<i64> {
        match self {
            Refusal::Budget { left, .. } => Some(*left),
            _ => None,
        }
    }
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::Failed(error)
    }
}

impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Self {
        Refusal::Failed(error.into())
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Budget { message, .. } => ApiError::BudgetExceeded(message),
            Refusal::Rate { message, retry_after_secs, .. } => ApiError::TooManyRequests { code: "rate_limit_exceeded", message, retry_after_secs },
            Refusal::Failed(error) => error,
        }
    }
}

/// Names the limit that refused a reservation, and a budget's remainder (read on the refusal
/// path only).
pub(super) async fn read_refusal(store: &dyn Store, counters: &Key, plan: &[Planned], now: DateTime<Utc>) -> Refusal {
    let item = match store.get(counters).await {
        Ok(item) => item.unwrap_or_default(),
        Err(e) => return e.into(),
    };
    refusal_in(&item, Tier::of(counters), plan, false, now)
}

/// Names the limit in `plan` that `item` has no room for, and a budget's remainder.
/// With `own_counted`, `item` still counts the request's own reservation, being taken back.
pub(super) fn refusal_in(item: &Item, level: Tier, plan: &[Planned], own_counted: bool, now: DateTime<Utc>) -> Refusal {
    let own = |p: &Planned| if own_counted { p.amount } else { 0 };
    let refusing = |p: &Planned| {
        let used = used_in(&p.limit, &p.attr, item, now, &mut Vec::new()).saturating_sub(own(p)).max(0);
        limit_exceeded(&p.limit, level, fits_at(&p.limit, item, p.amount, own(p), p.end, now), p.limit.limit.saturating_sub(used).max(0), now)
    };
    for p in plan {
        let used = used_in(&p.limit, &p.attr, item, now, &mut Vec::new()).saturating_sub(own(p)).max(0);
        if used.saturating_add(p.amount) > p.limit.limit {
            return refusing(p);
        }
    }
    // Another request settled in between; the caller may simply retry.
    refusing(&plan[0])
}

/// Where each level stands now, as reservations of nothing: for the headers of a refused
/// request (read on the refusal path only).
pub async fn standing(store: &dyn Store, levels: &[Level], now: DateTime<Utc>) -> ApiResult<Vec<Reservation>> {
    let mut out = Vec::with_capacity(levels.len());
    for level in levels {
        let limits: Vec<&Limit> = level.limits.iter().filter(|l| l.mode != Mode::Disable).collect();
        if limits.is_empty() {
            continue;
        }
        let item = store.get(&level.counters).await?.unwrap_or_default();
        let entries = limits
            .into_iter()
            .map(|limit| {
                let (attr, window_end) = current_counter(limit, now);
                let used = used_in(limit, &attr, &item, now, &mut Vec::new());
                Reserved { limit: limit.clone(), attr, amount: 0, used, window_end }
            })
            .collect();
        out.push(Reservation { counters: level.counters.clone(), entries, stale: vec![], lease: None, lease_tail: None, lease_expires: 0, lapsed: vec![] });
    }
    Ok(out)
}
