//! Login throttling: failed logins are counted per account and per source address in
//! fixed 15-minute windows (atomic ADD on a counter item that expires with its window). Past
//! the limit, logins are refused with 429 and `retry-after` until the window ends, even with
//! the right password, so guessing gains nothing by waiting for a lucky hit.

use crate::error::{ApiError, ApiResult};
use crate::store::{Key, Store, TTL, Update};

pub const WINDOW_SECS: i64 = 15 * 60;
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;

fn key(kind: &str, subject: &str, window_start: i64) -> Key {
    Key::new(format!("THROTTLE#{kind}#{subject}"), window_start.to_string())
}

fn window(now: i64) -> (i64, i64) {
    let start = now - now.rem_euclid(WINDOW_SECS);
    (start, start + WINDOW_SECS)
}

fn subjects<'a>(email: &'a str, ip: Option<&'a str>) -> Vec<(&'static str, &'a str, i64)> {
    let mut out = vec![("account", email, MAX_FAILURES_PER_ACCOUNT)];
    if let Some(ip) = ip {
        out.push(("address", ip, MAX_FAILURES_PER_ADDRESS));
    }
    out
}

/// Refuses the attempt when the account or the address has failed too often in this window.
pub async fn check(store: &dyn Store, email: &str, ip: Option<&str>, now: i64) -> ApiResult<()> {
    let (start, end) = window(now);
    for (kind, subject, max) in subjects(email, ip) {
        let failures = store.get(&key(kind, subject, start)).await?.and_then(|i| i.get("failures").and_then(|a| a.as_i64())).unwrap_or(0);
        if failures >= max {
            return Err(ApiError::TooManyRequests {
                code: "too_many_login_attempts",
                message: format!("too many failed logins for this {kind}; try again in {} seconds", end - now),
                retry_after_secs: u64::try_from(end - now).unwrap_or(1),
            });
        }
    }
    Ok(())
}

pub async fn record_failure(store: &dyn Store, email: &str, ip: Option<&str>, now: i64) -> ApiResult<()> {
    let (start, end) = window(now);
    for (kind, subject, _) in subjects(email, ip) {
        store.update(&key(kind, subject, start), Update::default().add("failures", 1).set(TTL, end + 60), None).await?;
    }
    Ok(())
}

/// A successful login clears the account's count (not the address's).
pub async fn record_success(store: &dyn Store, email: &str, now: i64) -> ApiResult<()> {
    store.delete(&key("account", email, window(now).0), None).await?;
    Ok(())
}
