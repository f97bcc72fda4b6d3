//! The standing headers every proxied answer carries: OpenAI's rate-limit headers and our
//! budget headers.

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderName, HeaderValue};

use crate::limits::{self, Charge, Metric, Reservation};
use crate::money::format_dollars;

// The names the proxy's answers carry, made at compile time: `HeaderName::from_static` checks
// its text every time it runs (~750 instructions a name, ten names an answer).
const BUDGET_LIMIT: HeaderName = HeaderName::from_static("x-budget-limit-usd");
const BUDGET_REMAINING: HeaderName = HeaderName::from_static("x-budget-remaining-usd");
const BUDGET_RESET: HeaderName = HeaderName::from_static("x-budget-reset-at");
const REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
const TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];
/// What the request cost, in dollars.
pub(super) const COST: HeaderName = HeaderName::from_static("x-tollgate-cost-usd");
/// `hit`, `miss` or `bypass`: what the response cache did.
pub(super) const CACHE: HeaderName = HeaderName::from_static("x-tollgate-cache");
/// The `max_tokens` a request was lowered to so that a budget could pay for it.
pub(super) const MAX_TOKENS_LOWERED: HeaderName = HeaderName::from_static("x-tollgate-max-tokens-lowered");

/// A header value made from text: copied once into a buffer of its exact size. (Taken over as a
/// `String` whose capacity is not its length, a value costs a second allocation.)
fn text(text: &str) -> HeaderValue {
    // Digits, dots, letters and dashes only: always a valid value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A whole number, as a header value.
pub(super) fn number(n: i64) -> HeaderValue {
    text(itoa::Buffer::new().format(n))
}

/// Micro-dollars as dollars with six decimals, as a header value: the text taken over, not
/// copied (`format_dollars` sizes it exactly).
pub(super) fn dollars(micros: i64) -> HeaderValue {
    HeaderValue::try_from(format_dollars(micros)).unwrap_or_else(|_| HeaderValue::from_static("0.000000"))
}

/// OpenAI's duration text for reset headers: "59s", "1m30s", "2h0m0s".
fn duration_text(secs: i64) -> HeaderValue {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    // Written into a buffer on the stack: `format!` cost several times this, on every request.
    let mut out = [0u8; 64];
    let mut len = 0;
    let mut push = |piece: &str| {
        out[len..len + piece.len()].copy_from_slice(piece.as_bytes());
        len += piece.len();
    };
    if h > 0 {
        push(itoa::Buffer::new().format(h));
        push("h");
    }
    if h > 0 || m > 0 {
        push(itoa::Buffer::new().format(m));
        push("m");
    }
    push(itoa::Buffer::new().format(s));
    push("s");
    HeaderValue::from_bytes(&out[..len]).unwrap_or_else(|_| HeaderValue::from_static("0s"))
}

/// The tightest limit of a kind the standing headers tell of.
#[derive(Clone, Copy)]
struct Tightest {
    remaining: i64,
    limit: i64,
    window_end: Option<DateTime<Utc>>,
}

/// The key's standing after this request: OpenAI's rate-limit headers and our budget headers.
/// With several levels, each header tells of the limit closest to refusing.
pub(super) fn standing(reservations: &[Reservation], actual: Option<&Charge>, now: DateTime<Utc>) -> super::Headers {
    // Requests, tokens, budget.
    let mut tightest: [Option<Tightest>; 3] = [None; 3];
    for entry in reservations.iter().flat_map(|r| &r.entries) {
        let returned = actual.map_or(0, |a| entry.amount.saturating_sub(a.amount(entry.limit.metric)));
        let remaining = entry.limit.limit.saturating_sub(entry.used.saturating_sub(returned)).max(0);
        let slot = match entry.limit.metric {
            Metric::Calls => &mut tightest[0],
            Metric::TotalTokens => &mut tightest[1],
            Metric::Cost => &mut tightest[2],
            _ => continue,
        };
        if slot.is_none_or(|t| remaining < t.remaining) {
            *slot = Some(Tightest { remaining, limit: entry.limit.limit, window_end: entry.window_end });
        }
    }
    // Three a kind, and room for the cost, cache and lowered-max_tokens headers the answer adds.
    let mut out: super::Headers = Vec::with_capacity(12);
    let [requests, tokens, budget] = tightest;
    for (names, tightest) in [(REQUESTS, requests), (TOKENS, tokens)] {
        let Some(Tightest { remaining, limit, window_end }) = tightest else { continue };
        let [limit_name, remaining_name, reset_name] = names;
        out.push((limit_name, number(limit)));
        out.push((remaining_name, number(remaining)));
        if let Some(end) = window_end {
            out.push((reset_name, duration_text(limits::seconds_until(end, now))));
        }
    }
    if let Some(Tightest { remaining, limit, window_end }) = budget {
        out.push((BUDGET_LIMIT, dollars(limit)));
        out.push((BUDGET_REMAINING, dollars(remaining)));
        if let Some(end) = window_end {
            out.push((BUDGET_RESET, text(&end.to_rfc3339())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::duration_text;

    #[test]
    fn durations_read_as_openai_writes_them() {
        for (secs, text) in [(-5, "0s"), (0, "0s"), (59, "59s"), (60, "1m0s"), (3_599, "59m59s"), (3_600, "1h0m0s"), (90_061, "25h1m1s")] {
            assert_eq!(duration_text(secs), text, "{secs} seconds");
        }
        // The longest there can be: i64::MAX seconds.
        assert_eq!(duration_text(i64::MAX), "2562047788015215h30m7s");
    }
}
