//! Limits, one model for every kind of token: (metric, limit, window, mode). All counters of
//! one level (a token, a project, a workspace) live in one item, one attribute per limit and
//! window, so a request reserves its worst case against every limit of the level with a single
//! conditional atomic update (which also returns the counters for the rate-limit headers), and
//! settles with one unconditional ADD of (actual - reserved). No counter is ever
//! read-modify-written.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub mod lease;
mod refusal;
mod settle;
pub mod sliding;
mod spec;
mod window;

use crate::error::ApiResult;
use crate::store::{Attr, Cond, Item, Key, Store, StoreError, TxOp, Update};
pub use lease::{Lapsed, LeaseSpec};
pub use refusal::{Refusal, Tier, standing};
use refusal::{read_refusal, refusal_in};
use settle::take_back;
pub use settle::{renew, settlement, settlement_alone};
pub use spec::{LimitSpec, MAX_COST_MICROS, MAX_COUNT, from_specs, validate};
pub use window::{Rolling, Unit, Window, seconds_until};

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
    /// Stable within its level; names the counter. Borrowed for the limits a key's own
    /// settings make on every request ("budget", "rpm", "tpm"), so that making and copying them
    /// allocates nothing; owned where a limit spec names it.
    pub id: Cow<'static, str>,
    pub metric: Metric,
    /// Micro-dollars for `cost`, a count otherwise.
    pub limit: i64,
    pub window: Window,
    #[serde(default)]
    pub mode: Mode,
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

/// A limit's counter for the window named `window` (`Window::span`'s key; `all` for `never`):
/// `u_<id>_<window>`, made in one allocation, as it is for every limit of every request.
fn attr_name(limit: &Limit, window: Option<i64>) -> String {
    let mut digits = itoa::Buffer::new();
    let window = window.map_or("all", |at| digits.format(at));
    let mut name = String::with_capacity(3 + limit.id.len() + window.len());
    name.push_str("u_");
    name.push_str(&limit.id);
    name.push('_');
    name.push_str(window);
    name
}

/// What every counter attribute of a limit starts with.
pub fn counter_prefix(limit: &Limit) -> String {
    ["u_", &limit.id, "_"].concat()
}

/// `counter_prefix`, borrowed from one of the limit's counters (`attr_name`'s), made only for
/// a name that does not start with it.
fn prefix_in<'a>(limit: &Limit, attr: &'a str) -> Cow<'a, str> {
    let id = limit.id.as_ref();
    match attr.strip_prefix("u_").and_then(|rest| rest.strip_prefix(id)).map(|rest| rest.starts_with('_')) {
        Some(true) => Cow::Borrowed(&attr[..id.len() + 3]),
        _ => Cow::Owned(counter_prefix(limit)),
    }
}

/// What a limit has used at `now`, as `item` says: its current counter, or for a rolling
/// window the slices inside it. Counters of windows that are over are pushed onto `stale`.
fn used_in(limit: &Limit, attr: &str, item: &Item, now: DateTime<Utc>, stale: &mut Vec<String>) -> i64 {
    let prefix = prefix_in(limit, attr);
    match limit.window.slices() {
        Some(slices) => slices.tally(&prefix, item, now, stale),
        None => {
            stale.extend(crate::store::prefixed(item, &prefix).map(|(name, _)| name).filter(|name| **name != attr).cloned());
            item.get(attr).and_then(Attr::as_i64).unwrap_or(0)
        }
    }
}

/// The name under which a limit's window is one period (for budget events): its counter for a
/// calendar window; for a rolling one, its length aligned to the epoch.
pub fn period_attr(limit: &Limit, attr: &str, now: DateTime<Utc>) -> String {
    match limit.window.slices() {
        Some(slices) => attr_name(limit, Some(slices.period(now))),
        None => attr.to_string(),
    }
}

/// The counter attribute of a limit's current window, and when that window ends.
pub fn current_counter(limit: &Limit, now: DateTime<Utc>) -> (String, Option<DateTime<Utc>>) {
    let (window, end) = limit.window.span(now);
    (attr_name(limit, window), end)
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
    // Runs on every request: the limits in force are borrowed while they are chosen and each
    // is copied once, into its level.
    let mut active: Vec<(usize, &Limit)> = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        for metric in METRICS {
            let on = |l: &&Limit| l.metric == metric && l.mode != Mode::Disable;
            if !level.limits.iter().any(|l| on(&l)) {
                continue;
            }
            if level.limits.iter().any(|l| on(&l) && l.mode == Mode::Replace) {
                active.retain(|(_, l)| l.metric != metric);
            }
            active.extend(level.limits.iter().filter(on).map(|l| (i, l)));
        }
    }
    let chosen: Vec<Vec<Limit>> = (0..levels.len()).map(|i| active.iter().filter(|(j, _)| *j == i).map(|(_, l)| (*l).clone()).collect()).collect();
    levels.into_iter().zip(chosen).map(|(level, limits)| Level { counters: level.counters, limits }).filter(|level| !level.limits.is_empty()).collect()
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
/// `lease_attr`: `lease.attr()`, made once for all of the request's levels.
fn plan(
    level: &Level,
    charge: &Charge,
    now: DateTime<Utc>,
    lease: &LeaseSpec,
    lease_attr: &str,
    record: bool,
) -> Result<(Update, Cond, Vec<Planned>), Planned> {
    let mut update = Update::default();
    let mut conds = Vec::new();
    let mut plan = Vec::new();
    for limit in &level.limits {
        let (window, end) = limit.window.span(now);
        let amount = charge.amount(limit.metric);
        let attr = attr_name(limit, window);
        if amount > limit.limit {
            return Err(Planned { limit: limit.clone(), attr, amount, end });
        }
        conds.push(Cond::AbsentOrAtMost(attr.clone(), limit.limit.saturating_sub(amount)));
        update = update.add(&attr, amount);
        plan.push(Planned { limit: limit.clone(), attr, amount, end });
    }
    update = update.set(lease_attr, lease.value(plan.iter().map(|p| (p.attr.as_str(), p.amount)), record));
    Ok((update, Cond::And(conds), plan))
}

/// The reservation a level's counters item shows once `plan` is applied.
fn reserved(counters: Key, item: &Item, plan: Vec<Planned>, lease: &LeaseSpec, own: &str, now: DateTime<Utc>) -> Reservation {
    // Counters of windows that are over (past calendar windows, slices that left a rolling
    // window), found in the same pass that sums what each limit has used.
    let mut stale = Vec::new();
    let entries: Vec<Reserved> = plan
        .into_iter()
        .map(|p| {
            let used = used_in(&p.limit, &p.attr, item, now, &mut stale).max(p.amount);
            Reserved { limit: p.limit, attr: p.attr, amount: p.amount, used, window_end: p.end }
        })
        .collect();
    stale.sort_unstable();
    stale.dedup();
    let lapsed = lease::lapsed(item, now.timestamp(), Some(own));
    let lease_tail = item.get(own).and_then(Attr::as_str).and_then(|v| v.find(';').map(|i| v[i..].to_string()));
    Reservation { counters, entries, stale, lease: Some(own.to_string()), lease_tail, lease_expires: lease.expires_at, lapsed }
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
        // Only while it is as it was found: renewed since, its request is alive.
        let mut ops = vec![TxOp::Update { key: counters.clone(), update, cond: Some(Cond::Eq(lease.attr.clone(), Attr::S(lease.value.clone()))) }];
        if let Some(lost) = lease.record.as_deref().and_then(|record| crate::usage::lost(lease.request_id(), record, now)) {
            ops.extend(crate::usage::record_ops(&std::sync::Arc::new(lost))?);
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

/// Reserves `charge` against every level at once, under `lease`: one conditional update per
/// level (a single update for one level, a transaction for several), so either every level
/// counts the request or none does; with several, the counters are read back afterwards for
/// the rate-limit headers. A request refused while lapsed leases hold part of a limit has
/// them released and is tried once more.
pub async fn reserve_levels(store: &dyn Store, levels: &[Level], charge: &Charge, now: DateTime<Utc>, lease: &LeaseSpec) -> Result<Vec<Reservation>, Refusal> {
    // A level is copied only to leave out its disabled limits (most have none).
    let levels: Vec<Cow<Level>> = levels
        .iter()
        .map(|l| match l.limits.iter().any(|l| l.mode == Mode::Disable) {
            true => Cow::Owned(Level { counters: l.counters.clone(), limits: l.limits.iter().filter(|l| l.mode != Mode::Disable).cloned().collect() }),
            false => Cow::Borrowed(l),
        })
        .collect();
    let levels: Vec<&Level> = levels.iter().map(|l| l.as_ref()).filter(|l| !l.limits.is_empty()).collect();
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
    let own = lease.attr();
    for (i, level) in levels.iter().enumerate() {
        // The lowest level carries the lost request's record.
        let (update, cond, plan) = match plan(level, charge, now, lease, &own, i + 1 == levels.len()) {
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
        levels.iter().zip(&items).zip(plans).map(|((level, item), plan)| reserved(level.counters.clone(), item, plan, lease, &own, now)).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
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
        let refused = plan(&level, &huge, now, &LeaseSpec::default(), "lease", true).err().expect("a worst case past the limit is refused");
        assert_eq!((refused.limit.metric, refused.amount), (Metric::Cost, i64::MAX), "refused for the budget, at the whole worst case");
        let (attr, end) = current_counter(&limit, now);
        let reservation = Reservation {
            counters: level.counters.clone(),
            entries: vec![Reserved { limit, attr, amount: i64::MAX, used: i64::MAX, window_end: end }],
            stale: vec![],
            lease: Some("lease_r".into()),
            lease_tail: None,
            lease_expires: 0,
            lapsed: vec![Lapsed { attr: "lease_dead".into(), value: String::new(), amounts: vec![(reservation_attr(&level), i64::MAX)], record: None }],
        };
        let Some(TxOp::Update { update, .. }) = settlement(&reservation, &Charge { cost_micros: i64::MIN, ..Charge::default() }) else {
            panic!("no settlement")
        };
        assert!(update.add.iter().all(|(_, delta)| *delta == i64::MIN), "saturated, not wrapped to a positive number");
        assert_eq!(update.add.len(), 1, "one ADD per counter: the correction and the lapsed lease's release merged");
        assert!(validate(&Limit { id: "x".into(), metric: Metric::Calls, limit: i64::MAX, window: Window::Daily, mode: Mode::Replace }).is_err());
    }

    /// A lease found lapsed, then renewed before the request that found it settles, belongs to
    /// a live request: that settlement does not release it (nor give back what it holds), and
    /// a pass over the item's lapsed leases now finds none.
    #[tokio::test]
    async fn a_lapsed_lease_renewed_before_its_release_is_not_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::EmbeddedStore::open(&dir.path().join("db")).unwrap();
        let counters = Key::new("LIMITS#t", "COUNTERS");
        let dead = LeaseSpec { id: "a".into(), expires_at: 100, record: String::new() };
        let mut item = Item::from([("PK".into(), Attr::S(counters.pk.clone())), ("SK".into(), Attr::S(counters.sk.clone()))]);
        item.insert(dead.attr(), dead.value([("u_budget_all", 500)], false));
        item.insert("u_budget_all".into(), Attr::N(507));
        item.insert("lease_b".into(), Attr::S("300;u_budget_all=7;".into()));
        store.put(item, None).await.unwrap();
        let found = lease::all_lapsed(&store.get(&counters).await.unwrap().unwrap(), 200);
        assert_eq!(found.iter().map(|l| l.attr.as_str()).collect::<Vec<_>>(), [dead.attr()]);
        // Its request renews it: the same name, a later expiry.
        let renewed = LeaseSpec { expires_at: 400, ..dead.clone() };
        store.update(&counters, Update::default().set(&dead.attr(), renewed.value([("u_budget_all", 500)], false)), None).await.unwrap();
        let reservation = Reservation {
            counters: counters.clone(),
            entries: vec![],
            stale: vec![],
            lease: Some("lease_b".into()),
            lease_tail: None,
            lease_expires: 0,
            lapsed: found,
        };
        let settled = store.transact(vec![settlement(&reservation, &Charge::default()).expect("a settlement")]).await;
        assert!(matches!(settled, Err(StoreError::TransactionCancelled { .. })), "{settled:?}");
        let item = store.get(&counters).await.unwrap().unwrap();
        assert_eq!(item.get("u_budget_all"), Some(&Attr::N(507)), "what it holds is still held");
        assert!(item.contains_key(&dead.attr()));
        assert!(lease::all_lapsed(&item, 200).is_empty());
    }

    #[test]
    fn counters_are_named_by_limit_and_window_and_their_prefix_is_borrowed_from_them() {
        let now = at("2026-11-25T13:45:10Z");
        let limit = |id: &'static str, window| Limit { id: id.into(), metric: Metric::Calls, limit: 10, window, mode: Mode::Replace };
        let rolling = Window::Rolling(Rolling { every: 1, unit: Unit::Minute });
        assert_eq!(current_counter(&limit("rpm", rolling), now).0, "u_rpm_1795614310");
        assert_eq!(current_counter(&limit("budget", Window::Daily), now).0, format!("u_budget_{}", at("2026-11-25T00:00:00Z").timestamp()));
        assert_eq!(current_counter(&limit("budget", Window::Never), now).0, "u_budget_all");
        let rpm = limit("rpm", rolling);
        assert!(matches!(prefix_in(&rpm, "u_rpm_1795614310"), Cow::Borrowed("u_rpm_")));
        // A name not made for the limit still gives its prefix, never a slice of the name.
        for other in ["u_rpmx_1", "u_rp", "x", ""] {
            assert_eq!(prefix_in(&rpm, other), "u_rpm_", "{other:?}");
        }
    }
}
