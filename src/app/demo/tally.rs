//! What the demo has done so far, per shop × stream, from the sync board's views.
//!
//! Owns: [`Tally`] — records written and pages fetched over every run of the demo (finished
//! runs counted once each, plus the run in progress), never decreasing, so the "~N records"
//! the demo shows cannot run backwards between phases. Must not: read anything but the views
//! it is given.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Stream;
use crate::sync::StreamView;

/// One shop × stream over the whole demo.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamTally {
    /// Records written (inserted + updated) by the finished runs seen so far.
    finished_records: u64,
    finished_pages: u64,
    /// Identifies the last finished run already counted.
    counted_run: Option<DateTime<Utc>>,
    /// What was last shown: the total never goes below it.
    records: u64,
    pages: u64,
    /// Finished runs counted.
    pub runs: u32,
    /// Time from the start of the demo to the first successful run (the backfill).
    pub backfill: Option<Duration>,
}

impl StreamTally {
    /// Records written so far (monotonic).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Pages fetched so far (monotonic).
    pub fn pages(&self) -> u64 {
        self.pages
    }

    fn observe(&mut self, view: &StreamView, elapsed: Duration) {
        if let Some(run) = &view.last_run {
            if self.counted_run != Some(run.finished_at) {
                self.counted_run = Some(run.finished_at);
                self.finished_records += run.inserted + run.updated;
                self.finished_pages += run.pages;
                self.runs += 1;
            }
        }
        if self.backfill.is_none() && view.last_success_at.is_some() {
            self.backfill = Some(elapsed);
        }
        let live = view.progress.unwrap_or_default();
        // A finished run's counts are its progress's last counts, so finished + live is
        // continuous; `max` keeps the figure still if a sample ever comes out lower.
        self.records = self
            .records
            .max(self.finished_records + live.inserted + live.updated);
        self.pages = self.pages.max(self.finished_pages + live.pages);
    }
}

/// Every shop × stream of the demo, in board order (shop, then stream).
#[derive(Debug, Default)]
pub struct Tally {
    streams: BTreeMap<(String, Stream), StreamTally>,
}

impl Tally {
    /// Takes in one sample of the board, `elapsed` after the demo started.
    pub fn observe(&mut self, views: &[StreamView], elapsed: Duration) {
        for view in views {
            self.streams
                .entry((view.shop.clone(), view.stream))
                .or_default()
                .observe(view, elapsed);
        }
    }

    /// Records written by every stream so far; never decreases.
    pub fn records(&self) -> u64 {
        self.streams.values().map(StreamTally::records).sum()
    }

    pub fn get(&self, shop: &str, stream: Stream) -> Option<&StreamTally> {
        self.streams.get(&(shop.to_string(), stream))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(String, Stream), &StreamTally)> {
        self.streams.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::board::LastRun;
    use crate::sync::progress::ProgressSnapshot;
    use crate::sync::StreamState;

    fn view(progress: Option<(u64, u64)>, last: Option<(i64, u64)>) -> StreamView {
        StreamView {
            shop: "shop-1".into(),
            stream: Stream::Orders,
            state: StreamState::Running,
            progress: progress.map(|(seen, stored)| ProgressSnapshot {
                pages: seen / 100,
                records_seen: seen,
                inserted: stored,
                ..Default::default()
            }),
            run_started_at: None,
            eta_seconds: None,
            cursor: None,
            last_success_at: last.map(|(at, _)| DateTime::from_timestamp(at, 0).unwrap()),
            lag_seconds: None,
            last_error: None,
            last_error_class: None,
            parked_reason: None,
            backfill_reason: None,
            skipped_reason: None,
            next_run_at: None,
            last_run: last.map(|(at, stored)| LastRun {
                outcome: "succeeded",
                finished_at: DateTime::from_timestamp(at, 0).unwrap(),
                duration_ms: 1000,
                pages: stored / 100,
                inserted: stored,
                updated: 0,
            }),
        }
    }

    /// The samples a demo sees: the backfill in progress (more records seen than stored: a
    /// re-walk), the backfill finished, the incremental round starting and running, then
    /// finished with a handful of records of its own.
    #[test]
    fn the_record_count_never_runs_backwards_between_phases() {
        let samples = [
            view(Some((500, 300)), None),
            view(Some((3400, 2900)), None),
            view(None, Some((100, 3000))),
            view(Some((0, 0)), Some((100, 3000))),
            view(Some((100, 12)), Some((100, 3000))),
            view(None, Some((105, 12))),
            view(None, Some((105, 12))),
        ];
        let mut tally = Tally::default();
        let mut shown = Vec::new();
        for (i, sample) in samples.iter().enumerate() {
            tally.observe(std::slice::from_ref(sample), Duration::from_secs(i as u64));
            shown.push(tally.records());
        }
        assert_eq!(shown, [300, 2900, 3000, 3000, 3012, 3012, 3012]);
        let orders = tally.get("shop-1", Stream::Orders).unwrap();
        assert_eq!(orders.runs, 2, "each finished run counted once");
        assert_eq!(orders.backfill, Some(Duration::from_secs(2)));
        // The backfill showed 34 pages live (a re-walk) and its run reported 30: pages never
        // run backwards either.
        assert_eq!(orders.pages(), 34);
    }

    #[test]
    fn a_lower_sample_leaves_the_count_where_it_was() {
        let mut tally = Tally::default();
        tally.observe(&[view(Some((900, 800)), None)], Duration::ZERO);
        // A run that ends having written fewer than its progress showed (a rolled-back batch).
        tally.observe(&[view(None, Some((10, 700)))], Duration::ZERO);
        assert_eq!(tally.records(), 800);
        tally.observe(&[view(Some((100, 150)), Some((10, 700)))], Duration::ZERO);
        assert_eq!(tally.records(), 850);
    }
}
