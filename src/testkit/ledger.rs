//! An in-memory [`RunLedger`] for the scheduler's in-process tests: leases expire on tokio's
//! clock, so the run protocol and the sync actor run on paused time. Faults a test asks for: a
//! lease held by another daemon, a park persisted by an earlier process, a heartbeat that panics.
//! The real-database proof of leases stays in the store and sync integration tests.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::config::Stream;
use crate::store::{Lease, RunStatus};
use crate::sync::progress::ProgressSnapshot;
use crate::sync::run::{RunEnd, RunLedger};
use crate::sync::window::Window;
use crate::sync::SyncError;

/// One run as the ledger recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRun {
    pub id: i64,
    pub shop_id: i64,
    pub stream: Stream,
    pub owner: String,
    pub window: Option<Window>,
    /// `Running` until it finished.
    pub status: RunStatus,
    pub class: Option<&'static str>,
    pub message: Option<String>,
    pub progress: ProgressSnapshot,
}

struct LeaseRow {
    owner: Option<String>,
    expires: Instant,
    cursor: Option<chrono::DateTime<chrono::Utc>>,
    parked: Option<String>,
}

#[derive(Default)]
struct State {
    shops: Vec<String>,
    leases: HashMap<(i64, Stream), LeaseRow>,
    runs: Vec<RecordedRun>,
    /// `heartbeat` panics (a bug in the heartbeat's path, for the panic tests).
    panic_on_heartbeat: bool,
    /// `finish_run` fails as a read-only database would (SQLSTATE 25006).
    refuse_finish: bool,
}

/// Leases, runs and parking kept in memory for one daemon (`owner`).
pub struct MemoryLedger {
    owner: String,
    state: Mutex<State>,
}

impl MemoryLedger {
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            state: Mutex::default(),
        }
    }

    fn shop_id(state: &mut State, shop: &str) -> i64 {
        let index = match state.shops.iter().position(|s| s == shop) {
            Some(i) => i,
            None => {
                state.shops.push(shop.to_string());
                state.shops.len() - 1
            }
        };
        index as i64 + 1
    }

    /// The state row of (shop, stream), created free on first use.
    fn row_of(state: &mut State, shop_id: i64, stream: Stream) -> &mut LeaseRow {
        state.leases.entry((shop_id, stream)).or_insert(LeaseRow {
            owner: None,
            expires: Instant::now(),
            cursor: None,
            parked: None,
        })
    }

    fn row<'a>(state: &'a mut State, shop: &str, stream: Stream) -> &'a mut LeaseRow {
        let id = Self::shop_id(state, shop);
        Self::row_of(state, id, stream)
    }

    /// Another daemon (`other`) holds the lease of `shop` × `stream` for `ttl`.
    pub fn hold_elsewhere(&self, shop: &str, stream: Stream, other: &str, ttl: Duration) {
        let mut state = self.state.lock();
        let row = Self::row(&mut state, shop, stream);
        row.owner = Some(other.to_string());
        row.expires = Instant::now() + ttl;
    }

    /// `shop` × `stream` is parked with `reason`, as an earlier process left it.
    pub fn park(&self, shop: &str, stream: Stream, reason: &str) {
        let mut state = self.state.lock();
        Self::row(&mut state, shop, stream).parked = Some(reason.to_string());
    }

    /// While `refuse` holds, `finish_run` fails like a read-only database, recording nothing.
    pub fn refuse_finish(&self, refuse: bool) {
        self.state.lock().refuse_finish = refuse;
    }

    /// From now on every `heartbeat` call panics.
    pub fn panic_on_heartbeat(&self) {
        self.state.lock().panic_on_heartbeat = true;
    }

    /// Every run recorded so far, oldest first.
    pub fn runs(&self) -> Vec<RecordedRun> {
        self.state.lock().runs.clone()
    }

    /// Who holds the lease of `shop` × `stream` now (an expired lease still names its holder).
    pub fn lease_owner(&self, shop: &str, stream: Stream) -> Option<String> {
        let mut state = self.state.lock();
        let id = Self::shop_id(&mut state, shop);
        state
            .leases
            .get(&(id, stream))
            .and_then(|l| l.owner.clone())
    }

    /// Why `shop` × `stream` is parked, if it is.
    pub fn parked(&self, shop: &str, stream: Stream) -> Option<String> {
        let mut state = self.state.lock();
        let id = Self::shop_id(&mut state, shop);
        state
            .leases
            .get(&(id, stream))
            .and_then(|l| l.parked.clone())
    }
}

impl RunLedger for MemoryLedger {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn ensure_shop<'a>(
        &'a self,
        shop: &'a str,
        _region: &'static str,
        _mall_id: Option<String>,
    ) -> BoxFuture<'a, Result<i64, SyncError>> {
        let id = Self::shop_id(&mut self.state.lock(), shop);
        Box::pin(async move { Ok(id) })
    }

    fn take_lease(
        &self,
        shop_id: i64,
        stream: Stream,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Option<Lease>, SyncError>> {
        let mut state = self.state.lock();
        let now = Instant::now();
        let row = Self::row_of(&mut state, shop_id, stream);
        let held_by_other = row.owner.as_ref().is_some_and(|o| o != &self.owner);
        let lease = if held_by_other && row.expires > now {
            None
        } else {
            let took_over_from = row.owner.clone().filter(|o| o != &self.owner);
            row.owner = Some(self.owner.clone());
            row.expires = now + ttl;
            Some(Lease {
                cursor: row.cursor,
                parked_reason: row.parked.clone(),
                took_over_from,
            })
        };
        // As in PostgreSQL: the dead owner's unfinished runs of the pair are abandoned.
        if let Some(dead) = lease.as_ref().and_then(|l| l.took_over_from.clone()) {
            for run in state.runs.iter_mut() {
                let of_pair = run.shop_id == shop_id && run.stream == stream;
                if of_pair && run.owner == dead && run.status == RunStatus::Running {
                    run.status = RunStatus::Abandoned;
                }
            }
        }
        Box::pin(async move { Ok(lease) })
    }

    fn start_run(
        &self,
        shop_id: i64,
        stream: Stream,
        window: Option<Window>,
    ) -> BoxFuture<'_, Result<i64, SyncError>> {
        let mut state = self.state.lock();
        let id = state.runs.len() as i64 + 1;
        state.runs.push(RecordedRun {
            id,
            shop_id,
            stream,
            owner: self.owner.clone(),
            window,
            status: RunStatus::Running,
            class: None,
            message: None,
            progress: ProgressSnapshot::default(),
        });
        Box::pin(async move { Ok(id) })
    }

    fn heartbeat(
        &self,
        shop_id: i64,
        stream: Stream,
        run_id: i64,
        ttl: Duration,
        progress: ProgressSnapshot,
    ) -> BoxFuture<'_, Result<bool, SyncError>> {
        let mut state = self.state.lock();
        if state.panic_on_heartbeat {
            drop(state);
            panic!("scripted: the heartbeat's ledger call panicked");
        }
        let held = match state.leases.get_mut(&(shop_id, stream)) {
            Some(row) if row.owner.as_deref() == Some(self.owner.as_str()) => {
                row.expires = Instant::now() + ttl;
                true
            }
            _ => false,
        };
        if held {
            if let Some(run) = state.runs.iter_mut().find(|r| r.id == run_id) {
                run.progress = progress;
            }
        }
        Box::pin(async move { Ok(held) })
    }

    fn finish_run(
        &self,
        shop_id: i64,
        stream: Stream,
        run_id: i64,
        end: RunEnd,
    ) -> BoxFuture<'_, Result<(), SyncError>> {
        let mut state = self.state.lock();
        if state.refuse_finish {
            return Box::pin(async {
                Err(SyncError::Db(crate::db::DbError::Rejected {
                    sqlstate: "25006".into(),
                    message: "cannot execute UPDATE in a read-only transaction".into(),
                }))
            });
        }
        // A run finishes once: an abandoned run keeps its outcome.
        let running = |r: &&mut RecordedRun| r.id == run_id && r.status == RunStatus::Running;
        if let Some(run) = state.runs.iter_mut().find(running) {
            run.status = end.status;
            run.class = end.class;
            run.message = end.message.clone();
            run.progress = end.progress;
        }
        if let Some(row) = state.leases.get_mut(&(shop_id, stream)) {
            match (end.class, end.park) {
                (None, _) => row.parked = None,
                (Some(_), Some(park)) => row.parked = Some(park),
                (Some(_), None) => {}
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn release(&self, shop_id: i64, stream: Stream) -> BoxFuture<'_, Result<(), SyncError>> {
        let mut state = self.state.lock();
        if let Some(row) = state.leases.get_mut(&(shop_id, stream)) {
            if row.owner.as_deref() == Some(self.owner.as_str()) {
                row.owner = None;
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn unpark(&self, shop_id: i64, stream: Stream) -> BoxFuture<'_, Result<(), SyncError>> {
        let mut state = self.state.lock();
        if let Some(row) = state.leases.get_mut(&(shop_id, stream)) {
            row.parked = None;
        }
        Box::pin(async { Ok(()) })
    }
}
