//! What follows a reservation: its lease renewed while the request runs, taken back when a
//! rolling window refuses it after all, and its settlement once the real charge is known.

use std::collections::BTreeMap;

use super::{Charge, LeaseSpec, Reservation};
use crate::store::{Attr, Cond, Store, StoreError, TxOp, Update};

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
pub(super) async fn take_back(store: &dyn Store, reservations: &[Reservation], lease: &LeaseSpec) -> Result<(), StoreError> {
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
        // Only while it is as it was found lapsed: renewed since, its request is alive.
        conds.push(Cond::Eq(lapsed.attr.clone(), Attr::S(lapsed.value.clone())));
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
