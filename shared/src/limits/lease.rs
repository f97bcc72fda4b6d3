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

use std::collections::BTreeMap;

use crate::store::{Attr, Item};

const PREFIX: &str = "lease_";

/// What a reservation leases: the request's id (unique), when the lease lapses (epoch
/// seconds), and what to record about the request should it never settle.
#[derive(Clone, Debug, Default)]
pub struct LeaseSpec {
    pub id: String,
    pub expires_at: i64,
    pub record: BTreeMap<String, Attr>,
}

impl LeaseSpec {
    pub fn attr(&self) -> String {
        format!("{PREFIX}{}", self.id)
    }

    /// The lease attribute's value: `{exp, n: {counter: amount}, rec?}`. Only the lowest level
    /// of a request carries `rec`, so a lost request is recorded once however many levels
    /// release it.
    pub fn value(&self, amounts: &[(String, i64)], with_record: bool) -> Attr {
        let mut value = BTreeMap::from([
            ("exp".to_string(), Attr::N(self.expires_at)),
            ("n".to_string(), Attr::M(amounts.iter().map(|(a, n)| (a.clone(), Attr::N(*n))).collect())),
        ]);
        if with_record {
            value.insert("rec".into(), Attr::M(self.record.clone()));
        }
        Attr::M(value)
    }
}

/// A lapsed lease found on a counters item: what it holds, and its request's record fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Lapsed {
    pub attr: String,
    pub amounts: Vec<(String, i64)>,
    pub record: Option<BTreeMap<String, Attr>>,
}

/// The leases on `item` that lapsed before `now`, other than `own`.
pub fn lapsed(item: &Item, now: i64, own: Option<&str>) -> Vec<Lapsed> {
    item.iter()
        .filter(|(name, _)| name.starts_with(PREFIX) && Some(name.as_str()) != own)
        .filter_map(|(name, value)| {
            let Attr::M(lease) = value else { return None };
            let expires = lease.get("exp").and_then(Attr::as_i64)?;
            if expires > now {
                return None;
            }
            let amounts = match lease.get("n") {
                Some(Attr::M(n)) => n.iter().filter_map(|(a, v)| Some((a.clone(), v.as_i64()?))).collect(),
                _ => vec![],
            };
            let record = match lease.get("rec") {
                Some(Attr::M(rec)) => Some(rec.clone()),
                _ => None,
            };
            Some(Lapsed { attr: name.clone(), amounts, record })
        })
        .collect()
}

/// A string field of a lapsed lease's record.
pub fn field<'a>(record: &'a BTreeMap<String, Attr>, name: &str) -> Option<&'a str> {
    record.get(name).and_then(Attr::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lapsed_leases_of_others_are_found() {
        let spec = |id: &str, exp| LeaseSpec { id: id.into(), expires_at: exp, record: BTreeMap::from([("owner".into(), Attr::S("user#1".into()))]) };
        let mut item = Item::new();
        item.insert(spec("old", 100).attr(), spec("old", 100).value(&[("u_budget_1".into(), 500)], true));
        item.insert(spec("live", 300).attr(), spec("live", 300).value(&[("u_budget_1".into(), 7)], false));
        item.insert(spec("mine", 50).attr(), spec("mine", 50).value(&[], false));
        item.insert("u_budget_1".into(), Attr::N(507));
        let found = lapsed(&item, 200, Some("lease_mine"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].attr, "lease_old");
        assert_eq!(found[0].amounts, vec![("u_budget_1".to_string(), 500)]);
        assert_eq!(found[0].record.as_ref().and_then(|r| field(r, "owner")), Some("user#1"));
    }
}
