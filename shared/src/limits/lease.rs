//! Leases: a reservation is held only for as long as its request can still settle it. The
//! conditional update that reserves a request's worst case also writes, on the same counters
//! item, a lease attribute naming the request, when it lapses and what it holds. Settlement
//! removes it with the counters' correction, on the condition that it is still there. A lease
//! still there after it lapsed belongs to a request whose process died (a kill -9, a Lambda
//! killed at its timeout): the next request to reserve on that item sees it in the item its
//! update returns, and releases it in its own settlement transaction, with a usage record for
//! the lost request. No process has to survive, no sweeper has to run, and no extra round
//! trip is made: the release rides on a settlement that happens anyway. A request refused
//! because of lapsed leases releases them first and tries once more.
//!
//! A lease's name carries the minute it lapses (as first granted: a renewal moves only the
//! expiry in its value, never before the first, `limits::renew`), zero-padded, so the leases that may have
//! lapsed by now are one range of the item's sorted attributes: a settlement reads those,
//! not every lease in flight (at 256 in flight, reading them all was a tenth of a request's
//! instructions). Leases named before that (`lease_<id>`) are still found by the refused
//! request's release, which reads them all.

use crate::store::{Attr, Item};

const PREFIX: &str = "lease_";

/// What a reservation leases: the request's id (unique), when the lease lapses (epoch
/// seconds), and what to record about the request should it never settle (kept short: every
/// lease in flight on a counters item is rewritten with each of its updates).
#[derive(Clone, Debug, Default)]
pub struct LeaseSpec {
    pub id: String,
    pub expires_at: i64,
    pub record: String,
}

/// The first part of the names of leases that lapse in the minute of `at` (epoch seconds), and
/// what every lease name lapsing earlier sorts before: `lease_` and the minute in ten digits.
fn minute_prefix(at: i64) -> String {
    let mut name = String::with_capacity(PREFIX.len() + MINUTE_DIGITS);
    push_minute_prefix(&mut name, at);
    name
}

fn push_minute_prefix(name: &mut String, at: i64) {
    // Ten digits last until the year 21,000; clamped, so a name never outgrows its width.
    let mut digits = itoa::Buffer::new();
    let minute = digits.format((at.max(0) / 60).min(9_999_999_999));
    name.push_str(PREFIX);
    name.extend(std::iter::repeat_n('0', MINUTE_DIGITS.saturating_sub(minute.len())));
    name.push_str(minute);
}

const MINUTE_DIGITS: usize = 10;

impl LeaseSpec {
    /// `lease_<minute it lapses>_<request id>`.
    pub fn attr(&self) -> String {
        // Made once per request, in one allocation.
        let mut name = String::with_capacity(PREFIX.len() + MINUTE_DIGITS + 1 + self.id.len());
        push_minute_prefix(&mut name, self.expires_at);
        name.push('_');
        name.push_str(&self.id);
        name
    }

    /// The lease attribute's value, one short string: `<exp>;<counter>=<amount>,...;<rec>`.
    /// Only the lowest level of a request carries `rec`, so a lost request is recorded once
    /// however many levels release it. (A string rather than a map: every update of the item
    /// re-encodes all the leases on it, and nested maps cost several times the CPU.)
    pub fn value<'a>(&self, amounts: impl IntoIterator<Item = (&'a str, i64)>, with_record: bool) -> Attr {
        // Numbers through itoa, not `write!`: made on every request.
        let mut digits = itoa::Buffer::new();
        let amounts = amounts.into_iter();
        // Room for the usual counter (`u_budget_<10 digits>`) and amount, so it is not regrown.
        let mut value = String::with_capacity(24 + 40 * amounts.size_hint().0 + self.record.len());
        value.push_str(digits.format(self.expires_at));
        value.push(';');
        for (i, (attr, amount)) in amounts.enumerate() {
            if i > 0 {
                value.push(',');
            }
            value.push_str(attr);
            value.push('=');
            value.push_str(digits.format(amount));
        }
        value.push(';');
        if with_record {
            value.push_str(&self.record);
        }
        Attr::S(value)
    }
}

/// A lapsed lease found on a counters item: what it holds, and what its request is recorded by.
#[derive(Clone, Debug, PartialEq)]
pub struct Lapsed {
    pub attr: String,
    /// The lease as it was found lapsed: it is released only while it is still so. A request
    /// that renews its lease keeps the name and changes the expiry, and one that renewed after
    /// it was found lapsed is alive, holding what it reserved.
    pub value: String,
    pub amounts: Vec<(String, i64)>,
    pub record: Option<String>,
}

impl Lapsed {
    /// The id of the request that held it.
    pub fn request_id(&self) -> &str {
        let rest = self.attr.strip_prefix(PREFIX).unwrap_or(&self.attr);
        match rest.split_at_checked(MINUTE_DIGITS) {
            Some((minute, id)) if minute.bytes().all(|b| b.is_ascii_digit()) && id.starts_with('_') => &id[1..],
            // Named before leases carried their minute.
            _ => rest,
        }
    }
}

/// The leases on `item` that lapsed before `now`, other than `own`: of those named for this
/// minute or an earlier one, the ones whose expiry has passed.
pub fn lapsed(item: &Item, now: i64, own: Option<&str>) -> Vec<Lapsed> {
    let before = minute_prefix(now.saturating_add(60));
    let candidates = item.range::<str, _>((std::ops::Bound::Included(PREFIX), std::ops::Bound::Excluded(before.as_str())));
    found_lapsed(candidates, now, own)
}

/// Every lapsed lease on `item`, whatever its name: for a request refused while they hold room.
pub fn all_lapsed(item: &Item, now: i64) -> Vec<Lapsed> {
    found_lapsed(crate::store::prefixed(item, PREFIX), now, None)
}

/// Of `candidates` (lease attributes: every name starts with `lease_`), the lapsed ones.
fn found_lapsed<'a>(candidates: impl Iterator<Item = (&'a String, &'a Attr)>, now: i64, own: Option<&str>) -> Vec<Lapsed> {
    candidates
        .filter(|(name, _)| Some(name.as_str()) != own)
        .filter_map(|(name, value)| {
            let text = value.as_str()?;
            let mut parts = text.splitn(3, ';');
            let expires: i64 = parts.next()?.parse().ok()?;
            if expires > now {
                return None;
            }
            let amounts = parts
                .next()?
                .split(',')
                .filter(|a| !a.is_empty())
                .filter_map(|a| a.split_once('=').and_then(|(attr, n)| Some((attr.to_string(), n.parse().ok()?))))
                .collect();
            let record = parts.next().filter(|r| !r.is_empty()).map(str::to_string);
            Some(Lapsed { attr: name.clone(), value: text.to_string(), amounts, record })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lapsed_leases_of_others_are_found() {
        let spec = |id: &str, exp| LeaseSpec { id: id.into(), expires_at: exp, record: "user#1".into() };
        let mut item = Item::new();
        item.insert(spec("old", 100).attr(), spec("old", 100).value([("u_budget_1", 500)], true));
        item.insert(spec("live", 300).attr(), spec("live", 300).value([("u_budget_1", 7)], false));
        item.insert(spec("mine", 50).attr(), spec("mine", 50).value([], false));
        item.insert("u_budget_1".into(), Attr::N(507));
        let found = lapsed(&item, 200, Some(&spec("mine", 50).attr()));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].attr, spec("old", 100).attr());
        assert_eq!(found[0].amounts, vec![("u_budget_1".to_string(), 500)]);
        assert_eq!(found[0].record.as_deref(), Some("user#1"));
        assert_eq!(found[0].request_id(), "old");
    }

    #[test]
    fn a_lease_is_named_for_the_minute_it_lapses_and_only_earlier_minutes_are_read() {
        let spec = |id: &str, exp| LeaseSpec { id: id.into(), expires_at: exp, record: String::new() };
        assert_eq!(spec("r-1", 1_800_000_125).attr(), "lease_0030000002_r-1");
        let mut item = Item::new();
        // Lapsed a minute ago; lapsed this minute; lapses later this minute; renewed (named for
        // its first minute, lapsing later); an hour ahead; and one named the old way.
        let leases = [("gone", 1_000, 1_000), ("now", 1_090, 1_090), ("soon", 1_150, 1_150), ("renewed", 1_000, 9_000), ("later", 4_600, 4_600)];
        for (id, named, expires) in leases {
            item.insert(spec(id, named).attr(), spec(id, expires).value([("u_b_1", 1)], false));
        }
        item.insert("lease_0ld".into(), spec("0ld", 500).value([], false));
        item.insert("lease_old".into(), spec("old", 500).value([], false));
        let ids = |found: Vec<Lapsed>| found.iter().map(|l| l.request_id().to_string()).collect::<Vec<_>>();
        assert_eq!(ids(lapsed(&item, 1_100, None)), ["gone", "now"], "old-named leases sort after every minute: all_lapsed finds them");
        assert_eq!(ids(all_lapsed(&item, 1_100)), ["gone", "now", "0ld", "old"]);
        assert_eq!(ids(lapsed(&item, 9_500, Some(&spec("later", 4_600).attr()))), ["gone", "renewed", "now", "soon"]);
    }
}
