//! One sync run of one shop × stream, from taking the lease to recording the outcome.
//!
//! Owns the run's protocol, in named steps:
//! 1. [`begin`]: the shop's row, the lease in `sync_state` (or "held elsewhere"; a taken-over lease
//!    marks the dead owner's unfinished run `abandoned`; a stream parked in `sync_state` — also by
//!    an earlier process — stays parked unless an operator's trigger asked for this run, which
//!    clears the park first), the window, the run record;
//! 2. [`work`]: the stream's body ([`RunBody`], an entry of the table in `streams/`) under a heartbeat
//!    that renews the lease and writes progress (a lost lease cancels the run), bounded by
//!    `sync.task_timeout` and cancellable at every await; a panic of the body or the heartbeat
//!    ends the run as `SyncError::Panicked`, recorded and released like any failure;
//! 3. [`finish`]: record how it ended (and park on a fatal error), release the lease.
//!
//! The bodies live with the stream table (`streams/`): this module knows only the [`RunBody`]
//! interface, so the protocol does not depend on any stream. Every database step is its own short
//! transaction with a deadline, so cancelling the run at any await leaves the committed chunks and
//! nothing half-written.
//!
//! Must not: decide what happens after the run (retry, park, reschedule: `actor.rs`).

mod fair_share;
mod heartbeat;
pub mod ledger;
pub mod park;
mod park_retry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::progress::{Progress, ProgressSnapshot};
use super::window::{plan_window, Window, WindowKind};
use super::{FailureKind, SyncError};
use crate::config::{Stream, SyncConfig};
use crate::db::Database;
use crate::metrics::{catch_panic, TASK_SYNC_RUN};
use crate::store::RunStatus;
use crate::supervisor::Backoff;
use crate::temu::{TemuClient, TemuShop};

pub use ledger::{PgLedger, RunEnd, RunLedger};
pub use park::{config_digest, Park};
pub use park_retry::ParkRetry;
use park_retry::UnstoredPark;

/// Everything one run needs.
#[derive(Clone)]
pub struct RunContext {
    /// The shop as the Temu client resolved it (credentials, router, its app's limiter).
    pub shop: TemuShop,
    pub stream: Stream,
    pub config: SyncConfig,
    pub db: Database,
    pub client: TemuClient,
    pub ledger: Arc<dyn RunLedger>,
    pub body: Arc<dyn RunBody>,
    /// Deadline of one database transaction of the body.
    pub db_deadline: Duration,
    /// Why this run was started (a trigger clears a persisted park first; a probe runs despite
    /// a probed park and clears it only by succeeding).
    pub mode: RunMode,
    /// The digest of the stream's configuration ([`config_digest`]); a park recorded under
    /// another one is cleared (the operator changed the configuration).
    pub config_digest: String,
    /// The stream's pending park-store retry (superseded by this run; started by it when the
    /// database refuses to store its park).
    pub park_retry: ParkRetry,
}

/// Why a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// The stream's timer.
    Scheduled,
    /// An operator's trigger (`POST /sync/…`): a persisted park is cleared first.
    Trigger,
    /// The re-probe of a stream parked by a permanent database error (every
    /// `sync.retry_backoff_max`): the park stays until the run succeeds.
    Probe,
}

/// How a run ended.
#[derive(Debug)]
pub enum RunOutcome {
    Succeeded {
        cursor: Option<DateTime<Utc>>,
    },
    /// Another daemon holds the lease: nothing was done.
    HeldElsewhere,
    /// The stream is parked in `sync_state` and no trigger (or probe, for a probed park) asked
    /// to run it: nothing was done, no API call made.
    Parked(Park),
    Failed {
        error: SyncError,
        cursor: Option<DateTime<Utc>>,
    },
}

/// What a run of one stream does once it holds the lease (an entry of the stream table).
pub trait RunBody: Send + Sync + 'static {
    fn window_kind(&self) -> WindowKind;
    /// The stream's interval in `sync.intervals`.
    fn interval(&self, config: &SyncConfig) -> Duration;
    /// Copies the stream's data; advances `work.cursor` as chunks complete.
    fn sync<'a>(&'a self, work: Work<'a>) -> BoxFuture<'a, Result<(), SyncError>>;
}

/// The state a body works with.
pub struct Work<'a> {
    pub ctx: &'a RunContext,
    pub shop_id: i64,
    pub run_id: i64,
    /// The update-time window of this run (`None` for a sweep, or when nothing is new yet).
    pub window: Option<Window>,
    /// Data is complete up to here; moved forward by the body as chunks are stored.
    pub cursor: &'a mut Option<DateTime<Utc>>,
    pub cancel: &'a CancellationToken,
    pub progress: &'a Progress,
}

/// What [`begin`] found.
enum Began {
    Begun(Begun),
    HeldElsewhere,
    Parked(Park),
}

/// A run that holds its lease and has its record.
struct Begun {
    shop_id: i64,
    run_id: i64,
    cursor: Option<DateTime<Utc>>,
    window: Option<Window>,
}

/// Runs one sync of `ctx.stream` for `ctx.shop`. Never panics on outside input; every failure
/// comes back as [`RunOutcome::Failed`] with the cursor where the data is complete.
pub async fn run(
    ctx: &RunContext,
    cancel: CancellationToken,
    progress: Arc<Progress>,
) -> RunOutcome {
    let begun = match begin(ctx).await {
        Ok(Began::Begun(begun)) => begun,
        Ok(Began::HeldElsewhere) => return RunOutcome::HeldElsewhere,
        Ok(Began::Parked(reason)) => return RunOutcome::Parked(reason),
        Err((error, cursor)) => return RunOutcome::Failed { error, cursor },
    };
    let started = Instant::now();
    let mut cursor = begun.cursor;
    let result = work(ctx, &begun, &mut cursor, &cancel, &progress).await;
    let snap = progress.snapshot();
    finish(ctx, &begun, &result, snap).await;
    let (stream, run_id, took_ms) = (ctx.stream.as_str(), begun.run_id, millis(started));
    match result {
        Ok(()) => {
            tracing::info!(shop = %ctx.shop.name(), stream, run_id, pages = snap.pages,
                inserted = snap.inserted, updated = snap.updated, took_ms, "sync run succeeded");
            RunOutcome::Succeeded { cursor }
        }
        Err(error) => {
            tracing::warn!(shop = %ctx.shop.name(), stream, run_id, error_class = error.class(),
                error = %error, pages = snap.pages, took_ms, "sync run did not complete");
            RunOutcome::Failed { error, cursor }
        }
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Step 1: the shop's row, the lease, the park, the window and the run record. On an error, the
/// cursor known so far comes back with it.
async fn begin(ctx: &RunContext) -> Result<Began, (SyncError, Option<DateTime<Utc>>)> {
    let ledger = &ctx.ledger;
    let stream = ctx.stream;
    // This run's outcome replaces a park that an earlier run could not store yet.
    ctx.park_retry.supersede().await;
    // The mall id, once the token check has learned it.
    let mall_id = ctx.shop.mall_id();
    let shop_id = ledger
        .ensure_shop(ctx.shop.name(), ctx.shop.region_name(), mall_id)
        .await
        .map_err(|e| (e, None))?;
    let Some(lease) = ledger
        .take_lease(shop_id, stream, ctx.config.lease_ttl)
        .await
        .map_err(|e| (e, None))?
    else {
        return Ok(Began::HeldElsewhere);
    };
    if let Some(stored) = lease.parked_reason {
        if let Err(parked) = clear_park(ctx, shop_id, Park::parse(&stored)).await {
            release(ctx, shop_id).await;
            return match parked {
                ParkKept::Parked(park) => Ok(Began::Parked(park)),
                ParkKept::Error(error) => Err((error, lease.cursor)),
            };
        }
    }
    if let Some(previous) = &lease.took_over_from {
        tracing::warn!(shop = %ctx.shop.name(), stream = stream.as_str(), previous_owner = %previous,
            "took over an expired lease; the previous owner's unfinished run is marked abandoned");
    }
    let window = match ctx.body.window_kind() {
        WindowKind::FullSweep => None,
        WindowKind::UpdateTime => {
            let c = &ctx.config;
            plan_window(
                lease.cursor,
                Utc::now(),
                c.lookback,
                c.settle,
                c.initial_window,
            )
        }
    };
    let run_id = match ledger.start_run(shop_id, stream, window).await {
        Ok(id) => id,
        Err(error) => {
            release(ctx, shop_id).await;
            return Err((error, lease.cursor));
        }
    };
    tracing::info!(shop = %ctx.shop.name(), stream = stream.as_str(), run_id, cursor = ?lease.cursor,
        "sync run started");
    Ok(Began::Begun(Begun {
        shop_id,
        run_id,
        cursor: lease.cursor,
        window,
    }))
}

/// Why a persisted park stays.
enum ParkKept {
    Parked(Park),
    Error(SyncError),
}

/// Decides what a persisted park means for this run: cleared by a trigger or a changed
/// configuration, run over (and kept until success) by a probe of a probed park, else kept.
async fn clear_park(ctx: &RunContext, shop_id: i64, park: Park) -> Result<(), ParkKept> {
    let (shop, stream) = (ctx.shop.name(), ctx.stream.as_str());
    let changed = park
        .config
        .as_ref()
        .is_some_and(|digest| *digest != ctx.config_digest);
    if ctx.mode == RunMode::Probe && park.probe && !changed {
        tracing::info!(shop = %shop, stream, reason = %park.reason,
            "probing the parked stream (a permanent database error may have cleared)");
        return Ok(());
    }
    let why = match (ctx.mode, changed) {
        (RunMode::Trigger, _) => "an operator's trigger",
        (_, true) => "a configuration change of the stream",
        _ => return Err(ParkKept::Parked(park)),
    };
    ctx.ledger
        .unpark(shop_id, ctx.stream)
        .await
        .map_err(ParkKept::Error)?;
    tracing::info!(shop = %shop, stream, reason = %park.reason, "the persisted park is cleared by {why}");
    Ok(())
}

/// Step 2: the body under the heartbeat, bounded by `task_timeout`, cancelled by a stop or a
/// lost lease; a panic of the body (or the heartbeat) is the run's failure, not the task's end.
async fn work(
    ctx: &RunContext,
    begun: &Begun,
    cursor: &mut Option<DateTime<Utc>>,
    cancel: &CancellationToken,
    progress: &Arc<Progress>,
) -> Result<(), SyncError> {
    let heartbeat = heartbeat::Heartbeat::start(ctx, begun.shop_id, begun.run_id, progress, cancel);
    let work = Work {
        ctx,
        shop_id: begun.shop_id,
        run_id: begun.run_id,
        window: begun.window,
        cursor,
        cancel,
        progress,
    };
    // Built inside the caught future, so a panic while making the body's future is caught too.
    let body = catch_panic(async move { ctx.body.sync(work).await });
    let timeout = ctx.config.task_timeout;
    let result = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(SyncError::Cancelled("the daemon is stopping")),
        error = heartbeat.failed() => Err(error),
        r = tokio::time::timeout(timeout, body) => match r {
            Err(_) => Err(SyncError::TaskTimeout(timeout)),
            Ok(Ok(result)) => result,
            Ok(Err(message)) => Err(SyncError::Panicked { task: TASK_SYNC_RUN, message }),
        },
    };
    heartbeat.stop().await;
    result
}

/// Step 3: record the outcome, then release the lease (unless it was lost).
async fn finish(
    ctx: &RunContext,
    begun: &Begun,
    result: &Result<(), SyncError>,
    progress: ProgressSnapshot,
) {
    let end = match result {
        Ok(()) => RunEnd {
            status: RunStatus::Succeeded,
            class: None,
            message: None,
            park: None,
            progress,
        },
        Err(e) => RunEnd {
            status: match e.kind() {
                FailureKind::Cancelled => RunStatus::Cancelled,
                _ => RunStatus::Failed,
            },
            class: Some(e.class()),
            message: Some(e.to_string()),
            park: (e.kind() == FailureKind::Park).then(|| {
                Park {
                    reason: e.to_string(),
                    config: Some(ctx.config_digest.clone()),
                    probe: e.probed(),
                }
                .to_stored()
            }),
            progress,
        },
    };
    let (stream, run_id) = (ctx.stream, begun.run_id);
    if let Err(e) = ctx
        .ledger
        .finish_run(begun.shop_id, stream, run_id, end.clone())
        .await
    {
        let parked = end.park.is_some();
        tracing::warn!(shop = %ctx.shop.name(), stream = stream.as_str(), run_id, error = %e,
            "could not record the end of the run; the lease expires by itself{}",
            if parked { "; storing the park is retried until the database takes it" } else { "" });
        if parked {
            let unstored = UnstoredPark {
                shop: ctx.shop.name().to_string(),
                shop_id: begun.shop_id,
                stream,
                run_id,
                end,
            };
            let c = &ctx.config;
            let backoff = Backoff::new(c.retry_backoff_min, c.retry_backoff_max);
            ctx.park_retry.start(ctx.ledger.clone(), unstored, backoff);
        }
    }
    if !matches!(result, Err(SyncError::LeaseLost)) {
        release(ctx, begun.shop_id).await;
    }
}

async fn release(ctx: &RunContext, shop_id: i64) {
    if let Err(e) = ctx.ledger.release(shop_id, ctx.stream).await {
        tracing::warn!(shop = %ctx.shop.name(), stream = ctx.stream.as_str(), error = %e,
            "could not release the lease; it expires by itself");
    }
}
