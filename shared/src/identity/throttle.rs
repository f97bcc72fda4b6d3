//! Login throttling: failed logins are counted per (account, source address) and per source
//! address, in fixed 15-minute windows (atomic ADD on a counter item that expires with its
//! window). Past a limit, logins from that address (for that account, or for any) are refused
//! with 429 and `retry-after` until the window ends, even with the right password, so guessing
//! gains nothing by waiting for a lucky hit.
//!
//! Nothing is counted per account alone: that would let anyone lock the real owner out by
//! failing five times (the owner, at their own address, still gets in). An attacker's failures
//! slow only the attacker's address.

use crate::error::{ApiError, ApiResult};
use crate::store::{Key, Store, TTL, Update};

pub const WINDOW_SECS: i64 = 15 * 60;
/// Failures one address may make on one account per window.
pub const MAX_FAILURES_PER_ACCOUNT_AND_ADDRESS: i64 = 5;
/// Failures one address may make across every account per window.
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;

fn key(kind: &str, subject: &str, window_start: i64) -> Key {
    Key::new(format!("THROTTLE#{kind}#{subject}"), window_start.to_string())
}

fn window(now: i64) -> (i64, i64) {
    let start = now - now.rem_euclid(WINDOW_SECS);
    (start, start + WINDOW_SECS)
}

/// A request whose address is unknown (no peer address reached us) counts as one address.
const UNKNOWN: &str = "unknown";

/// (counter kind, subject, limit, what the refusal names).
fn subjects(email: &str, ip: Option<&str>) -> [(&'static str, String, i64, &'static str); 2] {
    let ip = ip.unwrap_or(UNKNOWN);
    [
        ("pair", format!("{email}|{ip}"), MAX_FAILURES_PER_ACCOUNT_AND_ADDRESS, "account from your address"),
        ("address", ip.to_string(), MAX_FAILURES_PER_ADDRESS, "address"),
    ]
}

/// Refuses the attempt when this address has failed too often, on this account or on all.
pub async fn check(store: &dyn Store, email: &str, ip: Option<&str>, now: i64) -> ApiResult<()> {
    let (start, end) = window(now);
    for (kind, subject, max, what) in subjects(email, ip) {
        let failures = store.get(&key(kind, &subject, start)).await?.and_then(|i| i.get("failures").and_then(|a| a.as_i64())).unwrap_or(0);
        if failures >= max {
            return Err(ApiError::TooManyRequests {
                code: "too_many_login_attempts",
                message: format!("too many failed logins for this {what}; try again in {} seconds", end - now),
                retry_after_secs: u64::try_from(end - now).unwrap_or(1),
            });
        }
    }
    Ok(())
}

pub async fn record_failure(store: &dyn Store, email: &str, ip: Option<&str>, now: i64) -> ApiResult<()> {
    let (start, end) = window(now);
    for (kind, subject, _, _) in subjects(email, ip) {
        store.update(&key(kind, &subject, start), Update::default().add("failures", 1).set(TTL, end + 60), None).await?;
    }
    Ok(())
}

/// A successful login clears this address's count on the account (not the address's own).
pub async fn record_success(store: &dyn Store, email: &str, ip: Option<&str>, now: i64) -> ApiResult<()> {
    let [(kind, subject, _, _), _] = subjects(email, ip);
    store.delete(&key(kind, &subject, window(now).0), None).await?;
    Ok(())
}
