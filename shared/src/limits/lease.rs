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

impl LeaseSpec {
    pub fn attr(&self) -> String {
        [PREFIX, &self.id].concat()
    }

    /// The lease attribute's value, one short string: `<exp>;<counter>=<amount>,...;<rec>`.
    /// Only the lowest level of a request carries `rec`, so a lost request is recorded once
    /// however many levels release it. (A string rather than a map: every update of the item
    /// re-encodes all the leases on it, and nested maps cost several times the CPU.)
    pub fn value(&self, amounts: &[(String, i64)], with_record: bool) -> Attr {
        use std::fmt::Write;
        let mut value = String::with_capacity(64 + self.record.len());
        let _ = write!(value, "{};", self.expires_at);
        for (i, (attr, amount)) in amounts.iter().enumerate() {
            if i > 0 {
                value.push(',');
            }
            let _ = write!(value, "{attr}={amount}");
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
    pub amounts: Vec<(String, i64)>,
    pub record: Option<String>,
}

impl Lapsed {
    /// The id of the request that held it.
    pub fn request_id(&self) -> &str {
        self.attr.trim_start_matches(PREFIX)
    }
}

/// The leases on `item` that lapsed before `now`, other than `own`.
pub fn lapsed(item: &Item, now: i64, own: Option<&str>) -> Vec<Lapsed> {
    crate::store::prefixed(item, PREFIX)
        .filter(|(name, _)| Some(name.as_str()) != own)
        .filter_map(|(name, value)| {
            let mut parts = value.as_str()?.splitn(3, ';');
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
            Some(Lapsed { attr: name.clone(), amounts, record })
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
        item.insert(spec("old", 100).attr(), spec("old", 100).value(&[("u_budget_1".into(), 500)], true));
        item.insert(spec("live", 300).attr(), spec("live", 300).value(&[("u_budget_1".into(), 7)], false));
        item.insert(spec("mine", 50).attr(), spec("mine", 50).value(&[], false));
        item.insert("u_budget_1".into(), Attr::N(507));
        let found = lapsed(&item, 200, Some("lease_mine"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].attr, "lease_old");
        assert_eq!(found[0].amounts, vec![("u_budget_1".to_string(), 500)]);
        assert_eq!(found[0].record.as_deref(), Some("user#1"));
        assert_eq!(found[0].request_id(), "old");
    }
}
