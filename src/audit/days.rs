//! Which UTC days an audit checks, and how an operator's dates become a window.
//!
//! A day is the closed interval `[00:00:00, 23:59:59]` UTC in whole seconds (the API's unit). A
//! day is audited only when it lies wholly before both `now − settle` (records still moving are
//! not judged) and the stream's cursor (what the sync has not reached yet is not a gap).

use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, NaiveTime, Utc};

use crate::sync::window::Window;

/// The window of UTC day `day`.
pub fn day_window(day: NaiveDate) -> Window {
    let start = day.and_time(NaiveTime::MIN).and_utc();
    Window {
        start,
        end: start + ChronoDuration::days(1) - ChronoDuration::seconds(1),
    }
}

/// The UTC day a window starts on.
pub fn day_of(window: &Window) -> NaiveDate {
    window.start.date_naive()
}

/// The days to audit: from the UTC day of `now − since` to the last day that ends before both
/// `now − settle` and `cursor`; none without a cursor (the stream never completed a window).
pub fn audit_days(
    now: DateTime<Utc>,
    since: Duration,
    settle: Duration,
    cursor: Option<DateTime<Utc>>,
) -> Vec<NaiveDate> {
    let Some(cursor) = cursor else {
        return Vec::new();
    };
    let since = ChronoDuration::from_std(since).unwrap_or(ChronoDuration::days(3660));
    let settle = ChronoDuration::from_std(settle).unwrap_or(ChronoDuration::MAX);
    let bound = (now - settle).min(cursor);
    let mut day = (now - since).date_naive();
    let mut days = Vec::new();
    while day_window(day).end < bound {
        days.push(day);
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    days
}

/// Why an operator's date or range is refused (exit 78).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("{which} {text:?} is not a date: expected YYYY-MM-DD (UTC) or RFC 3339, e.g. 2026-11-30 or 2026-11-30T12:00:00Z")]
    NotADate { which: &'static str, text: String },
    #[error("--from {from} is after --to {to}: the range is reversed")]
    Reversed { from: String, to: String },
    #[error("{which} {at} is in the future (now is {now})")]
    Future {
        which: &'static str,
        at: String,
        now: String,
    },
}

/// `YYYY-MM-DD` (a UTC day: its first second, or with `end_of_day` its last) or RFC 3339.
pub fn parse_date(
    which: &'static str,
    text: &str,
    end_of_day: bool,
) -> Result<DateTime<Utc>, RangeError> {
    let text = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let w = day_window(day);
        return Ok(if end_of_day { w.end } else { w.start });
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| RangeError::NotADate {
            which,
            text: text.to_string(),
        })
}

/// The window `--from … --to …` names. `--to` may be today (a day's end past `now` is cut to
/// `now`); a start in the future, or a start after the end, is refused.
pub fn parse_range(from: &str, to: &str, now: DateTime<Utc>) -> Result<Window, RangeError> {
    let start = parse_date("--from", from, false)?;
    let end = parse_date("--to", to, true)?;
    if start > end {
        return Err(RangeError::Reversed {
            from: from.to_string(),
            to: to.to_string(),
        });
    }
    let today_end = day_window(now.date_naive()).end;
    for (which, at) in [("--from", start), ("--to", end)] {
        if at > today_end || (which == "--from" && at > now) {
            return Err(RangeError::Future {
                which,
                at: at.to_rfc3339(),
                now: now.to_rfc3339(),
            });
        }
    }
    let end = DateTime::from_timestamp(end.min(now).timestamp(), 0).unwrap_or(now);
    let start = DateTime::from_timestamp(start.timestamp(), 0).unwrap_or(start);
    Ok(Window { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn days_stop_before_settle_and_the_cursor() {
        let now = at("2026-12-05T10:00:00Z");
        let days = audit_days(
            now,
            Duration::from_secs(3 * 86_400),
            Duration::from_secs(120),
            Some(now),
        );
        let text: Vec<String> = days.iter().map(|d| d.to_string()).collect();
        assert_eq!(text, ["2026-12-02", "2026-12-03", "2026-12-04"]);
        let behind = audit_days(
            now,
            Duration::from_secs(3 * 86_400),
            Duration::ZERO,
            Some(at("2026-12-03T23:00:00Z")),
        );
        assert_eq!(
            behind.len(),
            1,
            "a day the cursor has not passed is not audited"
        );
        assert!(audit_days(now, Duration::from_secs(86_400), Duration::ZERO, None).is_empty());
    }

    #[test]
    fn settle_reaching_into_yesterday_skips_it() {
        let now = at("2026-12-05T00:01:00Z");
        let days = audit_days(
            now,
            Duration::from_secs(2 * 86_400),
            Duration::from_secs(120),
            Some(now),
        );
        assert_eq!(days.len(), 1, "{days:?}");
        assert_eq!(days[0].to_string(), "2026-12-03");
    }

    #[test]
    fn ranges_accept_days_and_rfc3339_and_refuse_the_rest() {
        let now = at("2026-12-05T10:00:00Z");
        let w = parse_range("2026-12-01", "2026-12-05", now).unwrap();
        assert_eq!(w.start, at("2026-12-01T00:00:00Z"));
        assert_eq!(w.end, now, "--to today ends now");
        let w = parse_range("2026-12-01T06:00:00+02:00", "2026-12-02", now).unwrap();
        assert_eq!(w.start, at("2026-12-01T04:00:00Z"));
        assert_eq!(w.end, at("2026-12-02T23:59:59Z"));
        assert!(matches!(
            parse_range("2026-12-03", "2026-12-01", now),
            Err(RangeError::Reversed { .. })
        ));
        assert!(matches!(
            parse_range("2026-12-01", "2026-12-06", now),
            Err(RangeError::Future { .. })
        ));
        assert!(matches!(
            parse_range("2026-12-05T11:00:00Z", "2026-12-05", now),
            Err(RangeError::Future { .. })
        ));
        assert!(matches!(
            parse_range("yesterday", "2026-12-01", now),
            Err(RangeError::NotADate { .. })
        ));
    }
}
