//! Limits, one model for every kind of token: (metric, limit, window, mode). All counters of
//! one level (a token, a project, a workspace) live in one item, one attribute per limit and
//! window, so a request reserves its worst case against every limit of the level with a single
//! conditional atomic update (which also returns the counters for the rate-limit headers), and
//! settles with one unconditional ADD of (actual - reserved). No counter is ever
//! read-modify-written.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

pub mod lease;
pub mod sliding;

use std::collections::BTreeMap;

use crate::error::{ApiError, ApiResult};
use crate::store::{Attr, Cond, Item, Key, Store, StoreError, TxOp, Update};
pub use lease::{Lapsed, LeaseSpec};
use sliding::Slices;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Micro-dollars inside, dollars in the API.
    Cost,
    Calls,
    InputTokens,
    OutputTokens,
    TotalTokens,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Minute,
    Hour,
    Day,
}

/// Calendar windows are UTC; a rolling window of N units holds over every stretch of that
/// length (see `sliding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Never,
    Rolling(Rolling),
}

/// A rolling window: `every` units long, holding over every stretch of that length. A schema of
/// its own (not inline in `Window`), so generated clients give it one name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = RollingWindow)]
#[serde(deny_unknown_fields)]
pub struct Rolling {
    pub every: u32,
    pub unit: Unit,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Replace,
    Extend,
    Disable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// Stable within its level; names the counter.
    pub id: String,
    pub metric: Metric,
    /// Micro-dollars for `cost`, a count otherwise.
    pub limit: i64,
    pub window: Window,
    #[serde(default)]
    pub mode: Mode,
}

impl Window {
    /// The current window: a key naming it, and its end (`None` for `never`).
    pub fn span(self, now: DateTime<Utc>) -> (String, Option<DateTime<Utc>>) {
        let day = Utc.with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0).single().unwrap_or(now);
        let (start, end) = match self {
            Window::Never => return ("all".into(), None),
            Window::Hourly => {
                let start = day + Duration::hours(i64::from(now.hour()));
                (start, start + Duration::hours(1))
            }
            Window::Daily => (day, day + Duration::days(1)),
            Window::Weekly => {
                let start = day - Duration::days(i64::from(now.weekday().num_days_from_monday()));
                (start, start + Duration::days(7))
            }
            Window::Monthly => {
                let start = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().unwrap_or(day);
                let (y, m) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
                (start, Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(day))
            }
            Window::Yearly => {
                let start = Utc.with_ymd_and_hms(now.year(), 1, 1, 0, 0, 0).single().unwrap_or(day);
                (start, Utc.with_ymd_and_hms(now.year() + 1, 1, 1, 0, 0, 0).single().unwrap_or(day))
            }
            // The counter of the current slice; the window is empty again once it leaves.
            Window::Rolling(Rolling { every, unit }) => {
                let slices = Slices::new(i64::from(every.max(1)) * unit.seconds());
                return (slices.current(now).to_string(), Some(slices.reset_at(now)));
            }
        };
        (start.timestamp().to_string(), Some(end))
    }

    /// A rolling window's slices; `None` for calendar windows.
    pub fn slices(self) -> Option<Slices> {
        let Window::Rolling(Rolling { every, unit }) = self else { return None };
        Some(Slices::new(i64::from(every.max(1)) * unit.seconds()))
    }
}

impl Unit {
    fn seconds(self) -> i64 {
        match self {
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => 86_400,
        }
    }
}

impl Window {
    pub fn describe(self) -> String {
        match self {
            Window::Hourly => "hourly".into(),
            Window::Daily => "daily".into(),
            Window::Weekly => "weekly".into(),
            Window::Monthly => "monthly".into(),
            Window::Yearly => "yearly".into(),
            Window::Never => "lifetime".into(),
            Window::Rolling(Rolling { every: 1, unit }) => format!("per-{unit:?}").to_lowercase(),
            Window::Rolling(Rolling { every, unit }) => format!("{every}-{unit:?}").to_lowercase(),
        }
    }
}

impl Metric {
    pub fn describe(self) -> &'static str {
        match self {
            Metric::Cost => "micro-dollars",
            Metric::Calls => "requests",
            Metric::InputTokens => "input tokens",
            Metric::OutputTokens => "output tokens",
            Metric::TotalTokens => "tokens",
        }
    }
}

/// What a request counts against each metric.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Charge {
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
}

impl Charge {
    pub fn amount(&self, metric: Metric) -> i64 {
        match metric {
            Metric::Cost => self.cost_micros,
            Metric::Calls => self.calls,
            Metric::InputTokens => self.input_tokens,
            Metric::OutputTokens => self.output_tokens,
            Metric::TotalTokens => self.input_tokens.saturating_add(self.output_tokens),
        }
    }
}

/// One limit's share of a reservation.
#[derive(Clone, Debug)]
pub struct Reserved {
    pub limit: Limit,
    /// The counter attribute: limit id and window.
    pub attr: String,
    pub amount: i64,
    /// The counter right after this reservation (so the worst case is already counted).
    pub used: i64,
    pub window_end: Option<DateTime<Utc>>,
}

/// A reservation against one level's counters, to be settled once the real charge is known.
#[derive(Clone, Debug)]
pub struct Reservation {
    pub counters: Key,
    pub entries: Vec<Reserved>,
    /// Counter attributes of past windows, removed at settlement.
    pub stale: Vec<String>,
    /// This reservation's lease attribute (none when nothing was reserved).
    pub lease: Option<String>,
    /// The lease's value after its expiry (`;<counter>=<amount>,...;<rec>`), to renew it with.
    pub lease_tail: Option<String>,
    /// When the lease first lapses (epoch seconds): a renewal never sets it earlier, since the
    /// lease's name says this minute and lapsed leases are found by name (`lease`).
    pub lease_expires: i64,
    /// Leases of other requests on this item that lapsed: released at settlement.
    pub lapsed: Vec<Lapsed>,
}

fn attr_name(limit: &Limit, window_key: &str) -> String {
    counter_prefix(limit) + window_key
}

/// What every counter attribute of a limit starts with.
pub fn counter_prefix(limit: &Limit) -> String {
    ["u_", &limit.id, "_"].concat()
}

/// What a limit has used at `now`, as `item` says: its current counter, or for a rolling
/// window the slices inside it.
fn used_in(limit: &Limit, attr: &str, item: &Item, now: DateTime<Utc>) -> i64 {
    match limit.window.slices() {
        Some(slices) => slices.used(&counter_prefix(limit), item, now),
        None => item.get(attr).and_then(Attr::as_i64).unwrap_or(0),
    }
}

/// When a request refused by `limit` could be served: the end of a calendar window, or for a
/// rolling one the moment enough of the window has passed for `amount` (less `own`, the
/// request's own reservation being taken back) to fit.
fn fits_at(limit: &Limit, item: &Item, amount: i64, own: i64, end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match limit.window.slices() {
        Some(slices) => Some(slices.fits_at(&counter_prefix(limit), item, now, limit.limit, amount, own)),
        None => end,
    }
}

/// The name under which a limit's window is one period (for budget events): its counter for a
/// calendar window; for a rolling one, its length aligned to the epoch.
pub fn period_attr(limit: &Limit, attr: &str, now: DateTime<Utc>) -> String {
    match limit.window.slices() {
        Some(slices) => attr_name(limit, &slices.period(now).to_string()),
        None => attr.to_string(),
    }
}

/// The counter attribute of a limit's current window, and when that window ends.
pub fn current_counter(limit: &Limit, now: DateTime<Utc>) -> (String, Option<DateTime<Utc>>) {
    let (window_key, end) = limit.window.span(now);
    (attr_name(limit, &window_key), end)
}

/// Whole seconds from `now` to `then`, rounded up: a client told to wait that long is never
/// early.
pub fn seconds_until(then: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let ms = (then - now).num_milliseconds();
    ms.saturating_add(999).div_euclid(1000)
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

/// One level of limits (a workspace, a project, a token) and the item holding its counters.
#[derive(Clone, Debug)]
pub struct Level {
    pub counters: Key,
    pub limits: Vec<Limit>,
}

const METRICS: [Metric; 5] = [Metric::Cost, Metric::Calls, Metric::InputTokens, Metric::OutputTokens, Metric::TotalTokens];

/// Which limits apply, given levels from the top (workspace) down to the token. Per metric, a
/// lower level's limits combine with those above by their mode: `replace` (the default) puts
/// them in place of the limits above on that metric, `extend` adds them (all must pass), and
/// `disable` switches that limit off (the limits above still apply). A level with no limits
/// on a metric leaves the limits above on it as they are. Levels left with nothing to enforce
/// are dropped.
pub fn effective(levels: Vec<Level>) -> Vec<Level> {
    let mut active: Vec<(usize, Limit)> = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        for metric in METRICS {
            let own: Vec<&Limit> = level.limits.iter().filter(|l| l.metric == metric && l.mode != Mode::Disable).collect();
            if own.is_empty() {
                continue;
            }
            if own.iter().any(|l| l.mode == Mode::Replace) {
                active.retain(|(_, l)| l.metric != metric);
            }
            active.extend(own.into_iter().map(|l| (i, l.clone())));
        }
    }
    levels
        .into_iter()
        .enumerate()
        .map(|(i, level)| Level { counters: level.counters, limits: active.iter().filter(|(j, _)| *j == i).map(|(_, l)| l.clone()).collect() })
        .filter(|level| !level.limits.is_empty())
        .collect()
}

/// One limit's planned share, before the store has answered.
struct Planned {
    limit: Limit,
    attr: String,
    amount: i64,
    end: Option<DateTime<Utc>>,
}

/// The conditional update reserving `charge` against one level, with its lease; or, for a
/// request whose worst case alone exceeds a limit, that limit's share (refused without a write).
fn plan(level: &Level, charge: &Charge, now: DateTime<Utc>, lease: &LeaseSpec, record: bool) -> Result<(Update, Cond, Vec<Planned>), Planned> {
    let mut update = Update::default();
    let mut conds = Vec::new();
    let mut plan = Vec::new();
    for limit in &level.limits {
        let (window_key, end) = limit.window.span(now);
        let amount = charge.amount(limit.metric);
        let attr = attr_name(limit, &window_key);
        if amount > limit.limit {
            return Err(Planned { limit: limit.clone(), attr, amount, end });
        }
        conds.push(Cond::Or(vec![Cond::AttrNotExists(attr.clone()), Cond::Le(attr.clone(), limit.limit.saturating_sub(amount))]));
        update = update.add(&attr, amount);
        plan.push(Planned { limit: limit.clone(), attr, amount, end });
    }
    let amounts: Vec<(String, i64)> = plan.iter().map(|p| (p.attr.clone(), p.amount)).collect();
    update = update.set(&lease.attr(), lease.value(&amounts, record));
    Ok((update, Cond::And(conds), plan))
}

/// The reservation a level's counters item shows once `plan` is applied.
fn reserved(counters: Key, item: &Item, plan: Vec<Planned>, lease: &LeaseSpec, now: DateTime<Utc>) -> Reservation {
    let entries: Vec<Reserved> = plan
        .into_iter()
        .map(|p| {
            let used = used_in(&p.limit, &p.attr, item, now).max(p.amount);
            Reserved { limit: p.limit, attr: p.attr, amount: p.amount, used, window_end: p.end }
        })
        .collect();
    let stale = stale_attrs(item, &entries, now);
    let own = lease.attr();
    let lapsed = lease::lapsed(item, now.timestamp(), Some(&own));
    let lease_tail = item.get(&own).and_then(Attr::as_str).and_then(|v| v.find(';').map(|i| v[i..].to_string()));
    Reservation { counters, entries, stale, lease: Some(own), lease_tail, lease_expires: lease.expires_at, lapsed }
}

/// Releases the lapsed leases on a counters item (each only if still there, with its lost
/// request's record in the same transaction): what the dead requests reserved goes back.
/// Returns whether anything was released.
async fn release_lapsed(store: &dyn Store, counters: &Key, now: DateTime<Utc>) -> ApiResult<bool> {
    let Some(item) = store.get(counters).await? else { return Ok(false) };
    let mut released = false;
    for lease in lease::all_lapsed(&item, now.timestamp()) {
        let mut update = Update::default().remove(&lease.attr);
        for (attr, amount) in &lease.amounts {
            if item.contains_key(attr) {
                update = update.add(attr, amount.saturating_neg());
            }
        }
        let mut ops = vec![TxOp::Update { key: counters.clone(), update, cond: Some(Cond::AttrExists(lease.attr.clone())) }];
        if let Some(lost) = lease.record.as_deref().and_then(|record| crate::usage::lost(lease.request_id(), record, now)) {
            ops.extend(crate::usage::record_ops(&lost)?);
        }
        match store.transact(ops).await {
            Ok(()) => released = true,
            // Another request released it (or recorded it) first.
            Err(StoreError::TransactionCancelled { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(released)
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
async fn read_refusal(store: &dyn Store, counters: &Key, plan: &[Planned], now: DateTime<Utc>) -> Refusal {
    let item = match store.get(counters).await {
        Ok(item) => item.unwrap_or_default(),
        Err(e) => return e.into(),
    };
    refusal_in(&item, Tier::of(counters), plan, false, now)
}

/// Names the limit in `plan` that `item` has no room for, and a budget's remainder.
/// With `own_counted`, `item` still counts the request's own reservation, being taken back.
fn refusal_in(item: &Item, level: Tier, plan: &[Planned], own_counted: bool, now: DateTime<Utc>) -> Refusal {
    let own = |p: &Planned| if own_counted { p.amount } else { 0 };
    let refusing = |p: &Planned| {
        let used = used_in(&p.limit, &p.attr, item, now).saturating_sub(own(p)).max(0);
        limit_exceeded(&p.limit, level, fits_at(&p.limit, item, p.amount, own(p), p.end, now), p.limit.limit.saturating_sub(used).max(0), now)
    };
    for p in plan {
        let used = used_in(&p.limit, &p.attr, item, now).saturating_sub(own(p)).max(0);
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
                let used = used_in(limit, &attr, &item, now);
                Reserved { limit: limit.clone(), attr, amount: 0, used, window_end }
            })
            .collect();
        out.push(Reservation { counters: level.counters.clone(), entries, stale: vec![], lease: None, lease_tail: None, lease_expires: 0, lapsed: vec![] });
    }
    Ok(out)
}

/// Reserves `charge` against every level at once, under `lease`: one conditional update per
/// level (a single update for one level, a transaction for several), so either every level
/// counts the request or none does; with several, the counters are read back afterwards for
/// the rate-limit headers. A request refused while lapsed leases hold part of a limit has
/// them released and is tried once more.
pub async fn reserve_levels(store: &dyn Store, levels: &[Level], charge: &Charge, now: DateTime<Utc>, lease: &LeaseSpec) -> Result<Vec<Reservation>, Refusal> {
    let levels: Vec<Level> =
        levels.iter().map(|l| Level { counters: l.counters.clone(), limits: l.limits.iter().filter(|l| l.mode != Mode::Disable).cloned().collect() }).collect();
    let levels: Vec<&Level> = levels.iter().filter(|l| !l.limits.is_empty()).collect();
    let mut retried = false;
    loop {
        let (refusal, blocked) = match try_reserve(store, &levels, charge, now, lease).await {
            Ok(reservations) => return Ok(reservations),
            Err(refused) => refused,
        };
        match blocked {
            Some(counters) if !retried && release_lapsed(store, &counters, now).await.map_err(Refusal::from)? => retried = true,
            _ => return Err(refusal),
        }
    }
}

/// One attempt of `reserve_levels`; a refusal names the counters item that refused.
async fn try_reserve(
    store: &dyn Store,
    levels: &[&Level],
    charge: &Charge,
    now: DateTime<Utc>,
    lease: &LeaseSpec,
) -> Result<Vec<Reservation>, (Refusal, Option<Key>)> {
    let mut plans = Vec::with_capacity(levels.len());
    let mut ops = Vec::with_capacity(levels.len());
    for (i, level) in levels.iter().enumerate() {
        // The lowest level carries the lost request's record.
        let (update, cond, plan) = match plan(level, charge, now, lease, i + 1 == levels.len()) {
            Ok(planned) => planned,
            // Too big for the limit whatever it has used: no lapsed lease can make room.
            Err(over) => return Err((read_refusal(store, &level.counters, &[over], now).await, None)),
        };
        ops.push(TxOp::Update { key: level.counters.clone(), update, cond: Some(cond) });
        plans.push(plan);
    }
    let mut items = Vec::with_capacity(levels.len());
    if let [TxOp::Update { key, update, cond }] = &mut ops[..] {
        match store.update_buffered(key, std::mem::take(update), cond.take()).await {
            Ok(item) => items.push(item),
            Err(StoreError::ConditionFailed) => return Err((read_refusal(store, key, &plans[0], now).await, Some(key.clone()))),
            Err(e) => return Err((e.into(), None)),
        }
    } else if !ops.is_empty() {
        match store.transact_buffered(ops).await {
            Ok(()) => {}
            Err(StoreError::TransactionCancelled { index }) if index < levels.len() => {
                let counters = levels[index].counters.clone();
                return Err((read_refusal(store, &counters, &plans[index], now).await, Some(counters)));
            }
            Err(e) => return Err((e.into(), None)),
        }
        for level in levels {
            items.push(std::sync::Arc::new(store.get(&level.counters).await.map_err(|e| (e.into(), None))?.unwrap_or_default()));
        }
    }
    let reservations: Vec<Reservation> =
        levels.iter().zip(&items).zip(plans).map(|((level, item), plan)| reserved(level.counters.clone(), item, plan, lease, now)).collect();
    // Rolling windows are summed now that the store has answered (see `sliding`): a reservation
    // that took one past its limit is taken back and refused.
    for (reservation, item) in reservations.iter().zip(&items) {
        if reservation.entries.iter().any(|e| e.limit.window.slices().is_some() && e.used > e.limit.limit) {
            take_back(store, &reservations, lease).await.map_err(|e| (e.into(), None))?;
            let plan: Vec<Planned> =
                reservation.entries.iter().map(|e| Planned { limit: e.limit.clone(), attr: e.attr.clone(), amount: e.amount, end: e.window_end }).collect();
            return Err((refusal_in(item, Tier::of(&reservation.counters), &plan, true, now), Some(reservation.counters.clone())));
        }
    }
    Ok(reservations)
}

/// Extends a live request's lease on every level to `expires_at` (epoch seconds; never before
/// its first expiry, which a request that may retry or fall back set further out), each only
/// while it is still there: one conditional write per level (a transaction for several).
/// `Ok(false)` when a lease was gone already (it lapsed, and another request released what it
/// held): the request must stop spending, since nothing is reserved for it any more.
pub async fn renew(store: &dyn Store, reservations: &[Reservation], expires_at: i64) -> Result<bool, StoreError> {
    let mut ops: Vec<TxOp> = reservations
        .iter()
        .filter_map(|r| {
            let (attr, tail) = (r.lease.as_ref()?, r.lease_tail.as_ref()?);
            let update = Update::default().set(attr, Attr::S(format!("{}{tail}", expires_at.max(r.lease_expires))));
            Some(TxOp::Update { key: r.counters.clone(), update, cond: Some(Cond::AttrExists(attr.clone())) })
        })
        .collect();
    let outcome = match ops.len() {
        0 => return Ok(true),
        1 => match ops.pop() {
            Some(TxOp::Update { key, update, cond }) => store.update(&key, update, cond).await.map(|_| ()),
            _ => Ok(()),
        },
        _ => store.transact(ops).await,
    };
    match outcome {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed | StoreError::TransactionCancelled { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes back a reservation just made on every level (while its lease is there: a lease gone
/// was released, with what it held, by another request).
async fn take_back(store: &dyn Store, reservations: &[Reservation], lease: &LeaseSpec) -> Result<(), StoreError> {
    let ops: Vec<TxOp> = reservations
        .iter()
        .map(|r| {
            let update = r.entries.iter().fold(Update::default().remove(&lease.attr()), |u, e| u.add(&e.attr, e.amount.saturating_neg()));
            TxOp::Update { key: r.counters.clone(), update, cond: Some(Cond::AttrExists(lease.attr())) }
        })
        .collect();
    let outcome = match <[TxOp; 1]>::try_from(ops) {
        Ok([TxOp::Update { key, update, cond }]) => store.update(&key, update, cond).await.map(|_| ()),
        Ok(_) => Ok(()),
        Err(ops) => store.transact(ops).await,
    };
    match outcome {
        Err(StoreError::ConditionFailed | StoreError::TransactionCancelled { .. }) => Ok(()),
        other => other,
    }
}

/// Counters of windows that are over: past calendar windows, and slices that left a rolling
/// window.
fn stale_attrs(item: &Item, entries: &[Reserved], now: DateTime<Utc>) -> Vec<String> {
    let mut stale = Vec::new();
    for entry in entries {
        let prefix = counter_prefix(&entry.limit);
        match entry.limit.window.slices() {
            Some(slices) => stale.extend(slices.stale(&prefix, item, now)),
            None => stale.extend(crate::store::prefixed(item, &prefix).map(|(name, _)| name).filter(|name| **name != entry.attr).cloned()),
        }
    }
    stale.sort_unstable();
    stale.dedup();
    stale
}

/// The settlement of a reservation: give back what the worst case over-counted (or add what
/// the real charge exceeded it by), drop counters of past windows and the lease, and release
/// the lapsed leases found beside it. It holds only while the lease (and each lapsed one) is
/// still there; when that fails, `settlement_alone` is the fallback.
pub fn settlement(reservation: &Reservation, actual: &Charge) -> Option<TxOp> {
    let lease = reservation.lease.as_ref()?;
    let mut deltas: BTreeMap<&str, i64> = BTreeMap::new();
    for entry in &reservation.entries {
        let delta = deltas.entry(&entry.attr).or_default();
        *delta = delta.saturating_add(actual.amount(entry.limit.metric).saturating_sub(entry.amount));
    }
    let mut conds = vec![Cond::AttrExists(lease.clone())];
    for lapsed in &reservation.lapsed {
        for (attr, amount) in &lapsed.amounts {
            // Counters of past windows are dropped whole below.
            if !reservation.stale.contains(attr) {
                let delta = deltas.entry(attr).or_default();
                *delta = delta.saturating_sub(*amount);
            }
        }
        conds.push(Cond::AttrExists(lapsed.attr.clone()));
    }
    let mut update = Update::default().remove(lease);
    for (attr, delta) in deltas {
        update = update.add(attr, delta);
    }
    for name in reservation.stale.iter().chain(reservation.lapsed.iter().map(|l| &l.attr)) {
        update = update.remove(name);
    }
    Some(TxOp::Update { key: reservation.counters.clone(), update, cond: Some(Cond::And(conds)) })
}

/// The settlement of a reservation alone, for when `settlement`'s conditions failed: with
/// `lease_held` (read back from the item), the correction as usual; without (the lease lapsed
/// and another request released it), the whole real charge, since nothing is reserved any
/// more. Lapsed leases of others are left to whoever finds them next.
pub fn settlement_alone(reservation: &Reservation, actual: &Charge, lease_held: bool) -> Option<TxOp> {
    let lease = reservation.lease.as_ref()?;
    let mut update = Update::default();
    let mut deltas: BTreeMap<&str, i64> = BTreeMap::new();
    for entry in &reservation.entries {
        let real = actual.amount(entry.limit.metric);
        let delta = deltas.entry(&entry.attr).or_default();
        *delta = delta.saturating_add(if lease_held { real.saturating_sub(entry.amount) } else { real });
    }
    for (attr, delta) in deltas {
        update = update.add(attr, delta);
    }
    let cond = if lease_held {
        update = update.remove(lease);
        Some(Cond::AttrExists(lease.clone()))
    } else {
        Some(Cond::AttrNotExists(lease.clone()))
    };
    Some(TxOp::Update { key: reservation.counters.clone(), update, cond })
}

/// A limit as the API writes it: `{metric, limit, window, mode}`, the limit in dollars for
/// `cost` and a count otherwise.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub metric: Metric,
    pub limit: f64,
    pub window: Window,
    #[serde(default)]
    pub mode: Mode,
}

impl LimitSpec {
    /// The stored limit; `id` names its counter within its level.
    pub fn to_limit(&self, id: String) -> ApiResult<Limit> {
        let limit = match self.metric {
            Metric::Cost => crate::money::dollars_to_micros(self.limit, "limits.limit")?,
            _ if self.limit.fract() != 0.0 || !(0.0..=MAX_COUNT as f64).contains(&self.limit) => {
                return Err(ApiError::invalid_param("limits.limit", format!("a count limit must be a whole number from 0 to {MAX_COUNT}")));
            }
            _ => self.limit as i64,
        };
        let limit = Limit { id, metric: self.metric, limit, window: self.window, mode: self.mode };
        validate(&limit)?;
        Ok(limit)
    }

    pub fn of(limit: &Limit) -> Self {
        let amount = match limit.metric {
            Metric::Cost => crate::money::micros_to_dollars(limit.limit),
            _ => limit.limit as f64,
        };
        LimitSpec { metric: limit.metric, limit: amount, window: limit.window, mode: limit.mode }
    }
}

/// The stored form of a level's limits. A limit's counter is named by its metric and window,
/// so changing a level's other settings (or the amount of a limit) keeps what it has used;
/// two limits of one metric and window at one level are refused as ambiguous.
pub fn from_specs(specs: &[LimitSpec]) -> ApiResult<Vec<Limit>> {
    let mut out: Vec<Limit> = Vec::with_capacity(specs.len());
    for spec in specs {
        let id =
            format!("{}-{}", serde_json::to_value(spec.metric).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(), spec.window.describe());
        if out.iter().any(|l| l.id == id) {
            return Err(ApiError::invalid_param("limits", format!("two limits on {id}: give each metric and window one limit")));
        }
        out.push(spec.to_limit(id)?);
    }
    Ok(out)
}

/// The largest cost limit: $1,000,000,000, in micro-dollars.
pub const MAX_COST_MICROS: i64 = 1_000_000_000 * crate::money::MICROS_PER_DOLLAR;
/// The largest count limit (requests or tokens).
pub const MAX_COUNT: i64 = 1_000_000_000_000_000;

/// Refuses limits the proxy could not enforce: negative or absurd amounts, empty rolling
/// windows.
pub fn validate(limit: &Limit) -> ApiResult<()> {
    if limit.limit < 0 {
        return Err(ApiError::invalid_param("limit", "a limit cannot be negative"));
    }
    let max = if limit.metric == Metric::Cost { MAX_COST_MICROS } else { MAX_COUNT };
    if limit.limit > max {
        let shown = if limit.metric == Metric::Cost { format!("${}", crate::money::format_dollars(max)) } else { max.to_string() };
        return Err(ApiError::invalid_param("limit", format!("a {} limit can be at most {shown}", limit.metric.describe())));
    }
    if let Window::Rolling(Rolling { every, .. }) = limit.window
        && every == 0
    {
        return Err(ApiError::invalid_param("window", "a rolling window needs every >= 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn calendar_windows_are_utc() {
        let now = at("2026-11-25T13:45:10Z"); // a Wednesday
        let end = |w: Window| w.span(now).1.unwrap().to_rfc3339();
        assert_eq!(end(Window::Hourly), "2026-11-25T14:00:00+00:00");
        assert_eq!(end(Window::Daily), "2026-11-26T00:00:00+00:00");
        assert_eq!(end(Window::Weekly), "2026-11-30T00:00:00+00:00");
        assert_eq!(end(Window::Monthly), "2026-12-01T00:00:00+00:00");
        assert_eq!(end(Window::Yearly), "2027-01-01T00:00:00+00:00");
        assert_eq!(Window::Monthly.span(at("2026-12-31T23:59:59Z")).1.unwrap().to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(Window::Never.span(now), ("all".to_string(), None));
        let rolling = Window::Rolling(Rolling { every: 5, unit: Unit::Minute });
        // Counted in 25-second slices; the current one leaves five minutes after it ends.
        assert_eq!(rolling.span(now).1.unwrap().to_rfc3339(), "2026-11-25T13:50:25+00:00");
        assert_ne!(rolling.span(now).0, rolling.span(at("2026-11-25T13:50:00Z")).0);
    }

    fn reservation_attr(level: &Level) -> String {
        current_counter(&level.limits[0], at("2026-11-25T13:45:10Z")).0
    }

    /// Run with the release profile's arithmetic too (see request.rs).
    #[test]
    fn reservations_and_settlements_saturate() {
        let limit = Limit { id: "budget".into(), metric: Metric::Cost, limit: MAX_COST_MICROS, window: Window::Monthly, mode: Mode::Replace };
        let level = Level { counters: Key::new("LIMITS#t", "COUNTERS"), limits: vec![limit.clone()] };
        let huge = Charge { calls: 1, input_tokens: i64::MAX, output_tokens: i64::MAX, cost_micros: i64::MAX };
        let now = at("2026-11-25T13:45:10Z");
        let refused = plan(&level, &huge, now, &LeaseSpec::default(), true).err().expect("a worst case past the limit is refused");
        assert_eq!((refused.limit.metric, refused.amount), (Metric::Cost, i64::MAX), "refused for the budget, at the whole worst case");
        let (attr, end) = current_counter(&limit, now);
        let reservation = Reservation {
            counters: level.counters.clone(),
            entries: vec![Reserved { limit, attr, amount: i64::MAX, used: i64::MAX, window_end: end }],
            stale: vec![],
            lease: Some("lease_r".into()),
            lease_tail: None,
            lease_expires: 0,
            lapsed: vec![Lapsed { attr: "lease_dead".into(), amounts: vec![(reservation_attr(&level), i64::MAX)], record: None }],
        };
        let Some(TxOp::Update { update, .. }) = settlement(&reservation, &Charge { cost_micros: i64::MIN, ..Charge::default() }) else {
            panic!("no settlement")
        };
        assert!(update.add.iter().all(|(_, delta)| *delta == i64::MIN), "saturated, not wrapped to a positive number");
        assert_eq!(update.add.len(), 1, "one ADD per counter: the correction and the lapsed lease's release merged");
        assert!(validate(&Limit { id: "x".into(), metric: Metric::Calls, limit: i64::MAX, window: Window::Daily, mode: Mode::Replace }).is_err());
    }

    #[test]
    fn windows_parse_from_the_api_shapes() {
        let w: Window = serde_json::from_str(r#""monthly""#).unwrap();
        assert_eq!(w, Window::Monthly);
        let r: Window = serde_json::from_str(r#"{"rolling": {"every": 10, "unit": "minute"}}"#).unwrap();
        assert_eq!(r, Window::Rolling(Rolling { every: 10, unit: Unit::Minute }));
    }
}
