//! The windows a limit counts over: calendar windows (UTC) and rolling ones, the key naming the
//! current one and when it ends.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::sliding::Slices;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Minute,
    Hour,
    Day,
}

/// Calendar windows are UTC; a rolling window of N units holds over every stretch of that
/// length (see `sliding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Never,
    Rolling(Rolling),
}

/// A rolling window: `every` units long, holding over every stretch of that length. A schema of
/// its own (not inline in `Window`), so generated clients give it one name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = RollingWindow)]
#[serde(deny_unknown_fields)]
pub struct Rolling {
    pub every: u32,
    pub unit: Unit,
}

impl Window {
    /// The current window: the epoch second naming it (its start, or its slice's for a rolling
    /// window; `None` for `never`, whose counter is named `all`), and its end (`None` for
    /// `never`).
    pub fn span(self, now: DateTime<Utc>) -> (Option<i64>, Option<DateTime<Utc>>) {
        let day = || Utc.with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0).single().unwrap_or(now);
        let (start, end) = match self {
            Window::Never => return (None, None),
            Window::Hourly => {
                let start = day() + Duration::hours(i64::from(now.hour()));
                (start, start + Duration::hours(1))
            }
            Window::Daily => {
                let start = day();
                (start, start + Duration::days(1))
            }
            Window::Weekly => {
                let start = day() - Duration::days(i64::from(now.weekday().num_days_from_monday()));
                (start, start + Duration::days(7))
            }
            Window::Monthly => {
                let start = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().unwrap_or_else(day);
                let (y, m) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
                (start, Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or_else(day))
            }
            Window::Yearly => {
                let start = Utc.with_ymd_and_hms(now.year(), 1, 1, 0, 0, 0).single().unwrap_or_else(day);
                (start, Utc.with_ymd_and_hms(now.year() + 1, 1, 1, 0, 0, 0).single().unwrap_or_else(day))
            }
            // The counter of the current slice; the window is empty again once it leaves. (A key's
            // rpm and tpm are rolling: no calendar day is worked out for them.)
            Window::Rolling(Rolling { every, unit }) => {
                let slices = Slices::new(i64::from(every.max(1)) * unit.seconds());
                return (Some(slices.current(now)), Some(slices.reset_at(now)));
            }
        };
        (Some(start.timestamp()), Some(end))
    }

    /// A rolling window's slices; `None` for calendar windows.
    pub fn slices(self) -> Option<Slices> {
        let Window::Rolling(Rolling { every, unit }) = self else { return None };
        Some(Slices::new(i64::from(every.max(1)) * unit.seconds()))
    }
}

impl Unit {
    fn seconds(self) -> i64 {
        match self {
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => 86_400,
        }
    }
}

impl Window {
    pub fn describe(self) -> String {
        match self {
            Window::Hourly => "hourly".into(),
            Window::Daily => "daily".into(),
            Window::Weekly => "weekly".into(),
            Window::Monthly => "monthly".into(),
            Window::Yearly => "yearly".into(),
            Window::Never => "lifetime".into(),
            Window::Rolling(Rolling { every: 1, unit }) => format!("per-{unit:?}").to_lowercase(),
            Window::Rolling(Rolling { every, unit }) => format!("{every}-{unit:?}").to_lowercase(),
        }
    }
}

/// Whole seconds from `now` to `then`, rounded up: a client told to wait that long is never
/// early.
pub fn seconds_until(then: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let ms = (then - now).num_milliseconds();
    ms.saturating_add(999).div_euclid(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn calendar_windows_are_utc() {
        let now = at("2026-11-25T13:45:10Z"); // a Wednesday
        let end = |w: Window| w.span(now).1.unwrap().to_rfc3339();
        assert_eq!(end(Window::Hourly), "2026-11-25T14:00:00+00:00");
        assert_eq!(end(Window::Daily), "2026-11-26T00:00:00+00:00");
        assert_eq!(end(Window::Weekly), "2026-11-30T00:00:00+00:00");
        assert_eq!(end(Window::Monthly), "2026-12-01T00:00:00+00:00");
        assert_eq!(end(Window::Yearly), "2027-01-01T00:00:00+00:00");
        assert_eq!(Window::Monthly.span(at("2026-12-31T23:59:59Z")).1.unwrap().to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(Window::Never.span(now), (None, None));
        assert_eq!(Window::Daily.span(now).0, Some(at("2026-11-25T00:00:00Z").timestamp()));
        let rolling = Window::Rolling(Rolling { every: 5, unit: Unit::Minute });
        // Counted in 25-second slices; the current one leaves five minutes after it ends.
        assert_eq!(rolling.span(now).1.unwrap().to_rfc3339(), "2026-11-25T13:50:25+00:00");
        assert_ne!(rolling.span(now).0, rolling.span(at("2026-11-25T13:50:00Z")).0);
    }

    #[test]
    fn windows_parse_from_the_api_shapes() {
        let w: Window = serde_json::from_str(r#""monthly""#).unwrap();
        assert_eq!(w, Window::Monthly);
        let r: Window = serde_json::from_str(r#"{"rolling": {"every": 10, "unit": "minute"}}"#).unwrap();
        assert_eq!(r, Window::Rolling(Rolling { every: 10, unit: Unit::Minute }));
    }
}
