//! Settling a request: one transaction writes its usage record, corrects every level's
//! counters from the worst case to the real charge, drops its leases, releases the lapsed
//! leases of dead requests found beside them (with their records), writes its budget events
//! to the outbox, and stamps the key's last use. When a lease it counted on is gone (its own lapsed and was released by another request,
//! or another request released a lapsed one first), it settles again on what the counters
//! items say now.

use std::sync::Arc;

use crate::error::{ApiError, ApiResult};
use crate::limits::{self, Charge, Reservation};
use crate::store::{Store, StoreError, TxOp};
use crate::usage::{self, UsageRecord};

/// How often a settlement is tried again on what the counters say after a conflict.
const RETRIES: usize = 3;

pub(super) async fn settle(
    store: &dyn Store,
    record: &Arc<UsageRecord>,
    reservations: &[Reservation],
    actual: &Charge,
    touch: Vec<TxOp>,
    events: &[TxOp],
    relaxed: bool,
) -> ApiResult<()> {
    let mut ops: Vec<TxOp> = reservations.iter().filter_map(|r| limits::settlement(r, actual)).collect();
    ops.extend(touch);
    ops.extend(events.iter().cloned());
    for lapsed in reservations.iter().flat_map(|r| &r.lapsed) {
        if let Some(lost) = lapsed.record.as_deref().and_then(|fields| usage::lost(lapsed.request_id(), fields, record.recorded_at)) {
            ops.extend(usage::record_ops(&Arc::new(lost))?);
        }
    }
    match usage::transact_record(store, record, ops, relaxed).await {
        Ok(_) => return Ok(()),
        Err(StoreError::TransactionCancelled { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    for _ in 0..RETRIES {
        let mut ops = Vec::with_capacity(reservations.len());
        for reservation in reservations {
            let held = match &reservation.lease {
                Some(lease) => store.get(&reservation.counters).await?.is_some_and(|item| item.contains_key(lease)),
                None => false,
            };
            ops.extend(limits::settlement_alone(reservation, actual, held));
        }
        ops.extend(events.iter().cloned());
        match usage::transact_record(store, record, ops, relaxed).await {
            Ok(_) => return Ok(()),
            Err(StoreError::TransactionCancelled { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(format!("the settlement of request {} kept conflicting with releases of its leases", record.request_id)))
}
