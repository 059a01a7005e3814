//! Which update-time window a run covers, and how it is cut into chunks.
//!
//! A run of an update-time stream (orders, after-sales) covers `[cursor − lookback, now − settle]`,
//! or `[now − initial_window, now − settle]` on the first run. The overlap (`lookback`) re-reads
//! records whose late updates landed behind the cursor; `settle` keeps the window's end away from
//! the present, where records are still moving. The window is walked in chunks, oldest first, and
//! the cursor advances to a chunk's end only when that chunk is complete — so a crash or a timeout
//! loses at most the chunk in progress, which the next run re-reads.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::time::Duration;

/// What a run of a stream covers (each stream's entry in `streams/` says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `[cursor − lookback, now − settle]` by update time, cut into chunks; the cursor advances
    /// with each complete chunk (orders, after-sales).
    UpdateTime,
    /// Every page of the whole listing; a complete sweep marks what it did not see (products).
    FullSweep,
}

/// A closed interval of update times, in whole seconds (the API's unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn start_secs(&self) -> i64 {
        self.start.timestamp()
    }

    pub fn end_secs(&self) -> i64 {
        self.end.timestamp()
    }

    pub fn len(&self) -> ChronoDuration {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The two halves, for narrowing a chunk that keeps drifting.
    pub fn halves(&self) -> (Window, Window) {
        let mid = self.start + (self.end - self.start) / 2;
        (
            Window {
                start: self.start,
                end: mid,
            },
            Window {
                start: mid + ChronoDuration::seconds(1),
                end: self.end,
            },
        )
    }
}

fn chrono(d: Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

/// The window of the next run, or `None` when there is nothing new to read yet.
pub fn plan_window(
    cursor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    lookback: Duration,
    settle: Duration,
    initial_window: Duration,
) -> Option<Window> {
    let end = truncate_secs(now - chrono(settle));
    let start = match cursor {
        Some(c) => c - chrono(lookback),
        None => now - chrono(initial_window),
    };
    let window = Window {
        start: truncate_secs(start),
        end,
    };
    (!window.is_empty()).then_some(window)
}

/// Cuts `window` into consecutive chunks of at most `chunk`, oldest first, with no gaps or
/// overlaps at second resolution (closed intervals: `[a, b]`, `[b+1, c]`, …).
pub fn chunks(window: Window, chunk: Duration) -> Vec<Window> {
    let step = chrono(chunk).max(ChronoDuration::seconds(1));
    let mut out = Vec::new();
    let mut start = window.start;
    while start <= window.end {
        let end = (start + step - ChronoDuration::seconds(1)).min(window.end);
        out.push(Window { start, end });
        start = end + ChronoDuration::seconds(1);
    }
    out
}

fn truncate_secs(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn first_run_backfills_the_initial_window_minus_settle() {
        let now = at(1_000_000);
        let w = plan_window(
            None,
            now,
            Duration::from_secs(3600),
            Duration::from_secs(60),
            Duration::from_secs(86_400),
        )
        .unwrap();
        assert_eq!(w.start, at(1_000_000 - 86_400));
        assert_eq!(w.end, at(1_000_000 - 60));
    }

    #[test]
    fn later_runs_overlap_the_cursor_by_lookback() {
        let w = plan_window(
            Some(at(500_000)),
            at(600_000),
            Duration::from_secs(3600),
            Duration::from_secs(60),
            Duration::from_secs(86_400),
        )
        .unwrap();
        assert_eq!(w.start, at(500_000 - 3600));
        assert_eq!(w.end, at(600_000 - 60));
    }

    #[test]
    fn nothing_to_do_when_the_window_is_empty() {
        let w = plan_window(
            Some(at(600_000)),
            at(600_010),
            Duration::ZERO,
            Duration::from_secs(60),
            Duration::from_secs(86_400),
        );
        assert!(w.is_none());
    }

    #[test]
    fn chunks_cover_the_window_without_gaps_or_overlaps() {
        let window = Window {
            start: at(0),
            end: at(250),
        };
        let parts = chunks(window, Duration::from_secs(100));
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[0],
            Window {
                start: at(0),
                end: at(99)
            }
        );
        assert_eq!(
            parts[1],
            Window {
                start: at(100),
                end: at(199)
            }
        );
        assert_eq!(
            parts[2],
            Window {
                start: at(200),
                end: at(250)
            }
        );
        let (a, b) = parts[0].halves();
        assert_eq!(a.start, at(0));
        assert_eq!(b.end, at(99));
        assert_eq!(a.end + ChronoDuration::seconds(1), b.start);
    }
}
