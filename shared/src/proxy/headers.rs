//! The standing headers every proxied answer carries: OpenAI's rate-limit headers and our
//! budget headers.

use chrono::{DateTime, Utc};
use reqwest::header::HeaderName;

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

/// OpenAI's duration text for reset headers: "59s", "1m30s", "2h0m0s".
fn duration_text(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    // Pushed piece by piece: `format!` cost several times this, on every request.
    let mut out = String::with_capacity(16);
    let mut number = itoa::Buffer::new();
    if h > 0 {
        out.push_str(number.format(h));
        out.push('h');
    }
    if h > 0 || m > 0 {
        out.push_str(number.format(m));
        out.push('m');
    }
    out.push_str(number.format(s));
    out.push('s');
    out
}

/// The key's standing after this request: OpenAI's rate-limit headers and our budget headers.
/// With several levels, each header tells of the limit closest to refusing.
pub(super) fn standing(reservations: &[Reservation], actual: Option<&Charge>, now: DateTime<Utc>) -> super::Headers {
    // kind -> (remaining, limit, window end)
    let mut tightest: Vec<(&'static str, i64, i64, Option<DateTime<Utc>>)> = Vec::new();
    for entry in reservations.iter().flat_map(|r| &r.entries) {
        let returned = actual.map_or(0, |a| entry.amount.saturating_sub(a.amount(entry.limit.metric)));
        let remaining = entry.limit.limit.saturating_sub(entry.used.saturating_sub(returned)).max(0);
        let kind = match entry.limit.metric {
            Metric::Calls => "requests",
            Metric::TotalTokens => "tokens",
            Metric::Cost => "budget",
            _ => continue,
        };
        match tightest.iter_mut().find(|t| t.0 == kind) {
            Some(t) if t.1 <= remaining => {}
            Some(t) => *t = (kind, remaining, entry.limit.limit, entry.window_end),
            None => tightest.push((kind, remaining, entry.limit.limit, entry.window_end)),
        }
    }
    let mut out: super::Headers = Vec::new();
    for (kind, remaining, limit, window_end) in tightest {
        if kind == "budget" {
            out.push((BUDGET_LIMIT, format_dollars(limit)));
            out.push((BUDGET_REMAINING, format_dollars(remaining)));
            if let Some(end) = window_end {
                out.push((BUDGET_RESET, end.to_rfc3339()));
            }
        } else {
            let [limit_name, remaining_name, reset_name] = if kind == "requests" { REQUESTS } else { TOKENS };
            out.push((limit_name, limit.to_string()));
            out.push((remaining_name, remaining.to_string()));
            if let Some(end) = window_end {
                out.push((reset_name, duration_text(limits::seconds_until(end, now))));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::duration_text;

    #[test]
    fn durations_read_as_openai_writes_them() {
        assert_eq!(duration_text(-5), "0s");
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(59), "59s");
        assert_eq!(duration_text(60), "1m0s");
        assert_eq!(duration_text(3_599), "59m59s");
        assert_eq!(duration_text(3_600), "1h0m0s");
        assert_eq!(duration_text(90_061), "25h1m1s");
    }
}
