//! The sync board: what every shop × stream is doing, in memory, for `/status` and `/health`.
//!
//! Owns: the live view of each stream (state, progress of the run in progress, cursor, lag, last
//! error, next run) kept by the sync actors, and its health check. Must not: wait on anything —
//! `/status` and `/health` read it without touching the database.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use serde::Serialize;

use super::progress::{Progress, ProgressSnapshot};
use super::streams::WindowKind;
use crate::config::Stream;
use crate::health::{Check, Status};

/// What a stream is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// Waiting for its next run.
    Idle,
    Running,
    /// The last run failed; the next try is scheduled with backoff.
    Retrying,
    /// Stopped by an error retrying cannot fix (token, signature, permission): see `parked_reason`.
    Parked,
    /// Another daemon holds this stream's lease.
    HeldElsewhere,
    /// The database is not ready yet.
    WaitingForDatabase,
}

/// The outcome of the last finished run.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub outcome: &'static str,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub pages: u64,
    pub inserted: u64,
    pub updated: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    state: StreamState,
    progress: Option<Arc<Progress>>,
    run_started_at: Option<DateTime<Utc>>,
    cursor: Option<DateTime<Utc>>,
    last_success_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_error_class: Option<String>,
    parked_reason: Option<String>,
    /// Set by the token check: the token's scopes leave this stream out, so its runs skip it.
    skipped_reason: Option<String>,
    /// Set at start from `sync_state`: the stream backfills `initial_window` once (an upgrade);
    /// cleared by its next successful run.
    backfill_reason: Option<String>,
    next_run_at: Option<DateTime<Utc>>,
    last_run: Option<LastRun>,
    since: DateTime<Utc>,
}

impl Default for Entry {
    fn default() -> Self {
        Self {
            state: StreamState::Idle,
            progress: None,
            run_started_at: None,
            cursor: None,
            last_success_at: None,
            last_error: None,
            last_error_class: None,
            parked_reason: None,
            skipped_reason: None,
            backfill_reason: None,
            next_run_at: None,
            last_run: None,
            since: Utc::now(),
        }
    }
}

/// One row of `GET /status`.
#[derive(Debug, Clone, Serialize)]
pub struct StreamView {
    pub shop: String,
    pub stream: Stream,
    pub state: StreamState,
    pub progress: Option<ProgressSnapshot>,
    pub run_started_at: Option<DateTime<Utc>>,
    /// Estimated seconds left of the run in progress (from chunks done so far).
    pub eta_seconds: Option<u64>,
    /// Data is complete up to here (orders, after-sales).
    pub cursor: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// How old the newest complete data is, in seconds.
    pub lag_seconds: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_class: Option<String>,
    pub parked_reason: Option<String>,
    /// Non-null: the access token's `apiScopeList` lacks this stream's API; runs skip it (warn).
    pub skipped_reason: Option<String>,
    /// Non-null: the stream backfills `initial_window` once more, for this reason (an upgrade);
    /// cleared by its next successful run.
    pub backfill_reason: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run: Option<LastRun>,
}

/// Shared handle on the board.
#[derive(Clone, Default, Debug)]
pub struct SyncBoard {
    inner: Arc<RwLock<BTreeMap<(String, Stream), EntryCell>>>,
}

#[derive(Debug, Clone, Default)]
struct EntryCell(Entry);

/// Changes one stream's entry; used only by that stream's actor.
pub struct EntryUpdate<'a> {
    entry: &'a mut Entry,
}

impl EntryUpdate<'_> {
    pub fn state(&mut self, state: StreamState) -> &mut Self {
        self.entry.state = state;
        self
    }
    pub fn running(&mut self, progress: Arc<Progress>) -> &mut Self {
        self.entry.state = StreamState::Running;
        self.entry.progress = Some(progress);
        self.entry.run_started_at = Some(Utc::now());
        self
    }
    pub fn finished(&mut self, last: LastRun) -> &mut Self {
        self.entry.progress = None;
        self.entry.run_started_at = None;
        self.entry.last_run = Some(last);
        self
    }
    pub fn cursor(&mut self, cursor: Option<DateTime<Utc>>) -> &mut Self {
        if cursor.is_some() {
            self.entry.cursor = cursor;
        }
        self
    }
    pub fn success(&mut self, at: DateTime<Utc>) -> &mut Self {
        self.entry.last_success_at = Some(at);
        self.entry.last_error = None;
        self.entry.last_error_class = None;
        self.entry.parked_reason = None;
        self.entry.backfill_reason = None;
        self
    }
    pub fn error(&mut self, class: &str, message: String) -> &mut Self {
        self.entry.last_error_class = Some(class.to_string());
        self.entry.last_error = Some(message);
        self
    }
    pub fn parked(&mut self, reason: Option<String>) -> &mut Self {
        self.entry.parked_reason = reason;
        self
    }
    pub fn next_run_at(&mut self, at: Option<DateTime<Utc>>) -> &mut Self {
        self.entry.next_run_at = at;
        self
    }
}

impl SyncBoard {
    pub fn update(&self, shop: &str, stream: Stream, f: impl FnOnce(&mut EntryUpdate<'_>)) {
        let mut map = self.inner.write();
        let cell = map.entry((shop.to_string(), stream)).or_default();
        f(&mut EntryUpdate { entry: &mut cell.0 });
    }

    /// The token check of `shop` found `unscoped` (stream, API it lacks) left out by the token's
    /// scopes: those streams show as skipped, the shop's others not.
    pub fn set_unscoped(&self, shop: &str, unscoped: &[(Stream, &'static str)]) {
        let mut map = self.inner.write();
        for (stream, _) in unscoped {
            map.entry((shop.to_string(), *stream)).or_default();
        }
        for ((_, stream), cell) in map.iter_mut().filter(|((s, _), _)| s == shop) {
            cell.0.skipped_reason = unscoped.iter().find(|(u, _)| u == stream).map(|(_, api)| {
                format!("the access token's apiScopeList lacks {api}; grant it and re-authorize")
            });
        }
    }

    /// The pending one-time backfills read at start: `(shop, stream, reason)`; unknown streams
    /// are ignored.
    pub fn set_backfills<'a>(
        &self,
        pending: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) {
        let mut map = self.inner.write();
        for (shop, stream, reason) in pending {
            if let Some(stream) = Stream::ALL.into_iter().find(|s| s.as_str() == stream) {
                let cell = map.entry((shop.to_string(), stream)).or_default();
                cell.0.backfill_reason = Some(reason.to_string());
            }
        }
    }

    pub fn contains(&self, shop: &str, stream: Stream) -> bool {
        self.inner.read().contains_key(&(shop.to_string(), stream))
    }

    pub fn streams_of(&self, shop: &str) -> Vec<Stream> {
        self.inner
            .read()
            .keys()
            .filter(|(s, _)| s == shop)
            .map(|(_, stream)| *stream)
            .collect()
    }

    pub fn view(&self, shop: &str, stream: Stream) -> Option<StreamView> {
        let map = self.inner.read();
        map.get(&(shop.to_string(), stream))
            .map(|cell| render(shop, stream, &cell.0, Utc::now()))
    }

    pub fn views(&self) -> Vec<StreamView> {
        let now = Utc::now();
        self.inner
            .read()
            .iter()
            .map(|((shop, stream), cell)| render(shop, *stream, &cell.0, now))
            .collect()
    }

    /// The health check of one stream: lag beyond `lag_warn` → warn; the last run panicked → warn;
    /// parked → fail.
    pub fn check(&self, shop: &str, stream: Stream, lag_warn: Duration) -> Option<Check> {
        let view = self.view(shop, stream)?;
        let since = self
            .inner
            .read()
            .get(&(shop.to_string(), stream))
            .map(|c| c.0.since)
            .unwrap_or_else(Utc::now);
        Some(health_check(&view, lag_warn, since))
    }
}

fn render(shop: &str, stream: Stream, e: &Entry, now: DateTime<Utc>) -> StreamView {
    let progress = e.progress.as_ref().map(|p| p.snapshot());
    let eta_seconds = match (progress.and_then(|p| p.fraction()), e.run_started_at) {
        (Some(f), Some(started)) if f > 0.0 => {
            let elapsed = (now - started).num_milliseconds().max(0) as f64 / 1000.0;
            Some((elapsed / f - elapsed).max(0.0).round() as u64)
        }
        _ => None,
    };
    // Orders and after-sales are complete up to the cursor; products up to the last full walk.
    let fresh_to = match super::streams::window_kind(stream) {
        WindowKind::FullSweep => e.last_success_at,
        WindowKind::UpdateTime => e.cursor.or(e.last_success_at),
    };
    StreamView {
        shop: shop.to_string(),
        stream,
        state: e.state,
        progress,
        run_started_at: e.run_started_at,
        eta_seconds,
        cursor: e.cursor,
        last_success_at: e.last_success_at,
        lag_seconds: fresh_to.map(|t| (now - t).num_seconds().max(0)),
        last_error: e.last_error.clone(),
        last_error_class: e.last_error_class.clone(),
        parked_reason: e.parked_reason.clone(),
        skipped_reason: e.skipped_reason.clone(),
        backfill_reason: e.backfill_reason.clone(),
        next_run_at: e.next_run_at,
        last_run: e.last_run.clone(),
    }
}

fn health_check(view: &StreamView, lag_warn: Duration, since: DateTime<Utc>) -> Check {
    let lag_warn_secs = lag_warn.as_secs() as i64;
    let (status, output) = if let Some(reason) = &view.parked_reason {
        (Status::Fail, Some(format!("parked: {reason}")))
    } else if let Some(reason) = &view.skipped_reason {
        (Status::Warn, Some(format!("skipped: {reason}")))
    } else if view.last_error_class.as_deref() == Some("panic") {
        // A bug, not an outside fault: say so at once; the run is retried with backoff and the
        // next successful run clears it.
        (
            Status::Warn,
            Some(format!(
                "the last run panicked: {}",
                view.last_error.as_deref().unwrap_or("")
            )),
        )
    } else if view.last_error_class.as_deref() == Some("temu_resign") {
        // Temu refused the signature/timestamp even after re-signing: the host clock is off
        // (3000011/3000012). Every run fails until it is fixed, so say so now rather than after
        // `lag_warn`; the next successful run clears it.
        (
            Status::Warn,
            Some(format!(
                "Temu refuses the request timestamp/signature (host clock skew?): {}",
                view.last_error.as_deref().unwrap_or("")
            )),
        )
    } else {
        match view.lag_seconds {
            Some(lag) if lag > lag_warn_secs => (
                Status::Warn,
                Some(format!(
                    "data is {lag} s old (lag_warn {lag_warn_secs} s){}",
                    view.last_error
                        .as_ref()
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default()
                )),
            ),
            None if (Utc::now() - since).num_seconds() > lag_warn_secs => {
                (Status::Warn, Some("no complete sync yet".to_string()))
            }
            _ => (
                Status::Pass,
                view.last_error.as_ref().map(|e| format!("last error: {e}")),
            ),
        }
    };
    Check {
        component_id: Some(format!("{}:{}", view.shop, view.stream.as_str())),
        component_type: Some("component"),
        status,
        observed_value: view.lag_seconds.map(serde_json::Value::from),
        observed_unit: Some("s"),
        time: Utc::now(),
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_fails_and_lag_warns() {
        let board = SyncBoard::default();
        board.update("s", Stream::Orders, |u| {
            u.cursor(Some(Utc::now() - chrono::Duration::hours(5)));
        });
        let check = board
            .check("s", Stream::Orders, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(check.status, Status::Warn);
        board.update("s", Stream::Orders, |u| {
            u.parked(Some("token expired".into()));
        });
        let check = board
            .check("s", Stream::Orders, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(check.status, Status::Fail);
        assert!(check.output.unwrap().contains("token expired"));
        board.update("s", Stream::Orders, |u| {
            u.success(Utc::now()).cursor(Some(Utc::now()));
        });
        let check = board
            .check("s", Stream::Orders, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(check.status, Status::Pass);
    }

    #[test]
    fn clock_skew_warns_at_once_and_clears_on_success() {
        let board = SyncBoard::default();
        board.update("s", Stream::Orders, |u| {
            u.cursor(Some(Utc::now()))
                .error("temu_resign", "Temu error 3000011".into());
        });
        let check = board
            .check("s", Stream::Orders, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(check.status, Status::Warn);
        assert!(check.output.unwrap().contains("clock"));
        board.update("s", Stream::Orders, |u| {
            u.success(Utc::now());
        });
        let check = board
            .check("s", Stream::Orders, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(check.status, Status::Pass);
    }
}
