//! Login throttling: failed logins are counted per (account, source address) and per source
//! address, in fixed 15-minute windows (atomic ADD on a counter item that expires after the
//! window that follows its own). A limit applies to this window and the one before together, so
//! the end of a window never wipes a count: an attacker who fails right before it is still
//! refused right after it. Past a limit, logins from that address (for that account, or for any)
//! are refused with 429 and `retry-after` until enough failures have aged out (at most two
//! windows), even with the right password, so guessing gains nothing by waiting for a lucky hit.
//!
//! Nothing is counted per account alone: that would let anyone lock the real owner out by
//! failing five times (the owner, at their own address, still gets in). An attacker's failures
//! slow only the attacker's address.

use crate::error::{ApiError, ApiResult};
use crate::store::{Key, Store, TTL, Update};

pub const WINDOW_SECS: i64 = 15 * 60;
/// Failures one address may make on one account in this window and the one before.
pub const MAX_FAILURES_PER_ACCOUNT_AND_ADDRESS: i64 = 5;
/// Failures one address may make across every account in this window and the one before.
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

async fn failures(store: &dyn Store, kind: &str, subject: &str, window_start: i64) -> ApiResult<i64> {
    let item = store.get(&key(kind, subject, window_start)).await?;
    Ok(item.and_then(|i| i.get("failures").and_then(|a| a.as_i64())).unwrap_or(0))
}

/// Seconds until fewer than `max` failures remain counted, given this window's and the last's.
/// The last window's drop out when this one ends; this one's when the next one ends.
fn refused_for(previous: i64, current: i64, max: i64, now: i64) -> Option<i64> {
    let end = window(now).1;
    if current >= max {
        Some(end + WINDOW_SECS - now)
    } else if previous + current >= max {
        Some(end - now)
    } else {
        None
    }
}

/// Refuses the attempt when this address has failed too often, on this account or on all.
pub async fn check(store: &dyn Store, email: &str, ip: Option<&str>, now: i64) -> ApiResult<()> {
    let start = window(now).0;
    let subjects = subjects(email, ip);
    // The four counts at once: the last window's and this one's, of each subject.
    let reads = subjects.iter().flat_map(|(kind, subject, ..)| [start - WINDOW_SECS, start].map(|at| failures(store, kind, subject, at)));
    let counts = futures::future::try_join_all(reads).await?;
    for ((_, _, max, what), counts) in subjects.iter().zip(counts.chunks(2)) {
        if let Some(wait) = refused_for(counts[0], counts[1], *max, now) {
            return Err(ApiError::TooManyRequests {
                code: "too_many_login_attempts",
                message: format!("too many failed logins for this {what}; try again in {wait} seconds"),
                retry_after_secs: u64::try_from(wait).unwrap_or(1),
            });
        }
    }
    Ok(())
}

pub async fn record_failure(store: &dyn Store, email: &str, ip: Option<&str>, now: i64) -> ApiResult<()> {
    let (start, end) = window(now);
    for (kind, subject, _, _) in subjects(email, ip) {
        // Kept through the next window, which counts this one's failures too.
        store.update(&key(kind, &subject, start), Update::default().add("failures", 1).set(TTL, end + WINDOW_SECS + 60), None).await?;
    }
    Ok(())
}

/// A successful login clears this address's count on the account (not the address's own), in
/// both windows that count.
pub async fn record_success(store: &dyn Store, email: &str, ip: Option<&str>, now: i64) -> ApiResult<()> {
    let [(kind, subject, _, _), _] = subjects(email, ip);
    let start = window(now).0;
    let (previous, current) = (key(kind, &subject, start - WINDOW_SECS), key(kind, &subject, start));
    futures::try_join!(store.delete(&previous, None), store.delete(&current, None))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_outlives_the_end_of_its_window() {
        let start = 1_800_000_000 - 1_800_000_000 % WINDOW_SECS;
        // Under the limit in both windows together: let through.
        assert_eq!(refused_for(2, 2, 5, start + 10), None);
        // Five failures in the window before, the last a second before it ended: still refused
        // until that window drops out, when this one ends.
        assert_eq!(refused_for(5, 0, 5, start), Some(WINDOW_SECS));
        assert_eq!(refused_for(3, 2, 5, start + 100), Some(WINDOW_SECS - 100));
        // Five in this window: refused until the next one ends.
        assert_eq!(refused_for(0, 5, 5, start + 100), Some(2 * WINDOW_SECS - 100));
    }
}
