//! The heartbeat of a run: renews the lease and writes the run's progress every `lease_ttl / 3`;
//! a lease lost to another daemon ends the run (`LeaseLost`), and so does a panic of the heartbeat
//! itself (`Panicked`: without renewals the lease would expire under a running run), so a dead
//! heartbeat is never silent.
//!
//! Must not: outlive its run — it stops when the run asks, or with the run's own cancellation.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::RunContext;
use crate::metrics::{catch_panic, TASK_HEARTBEAT};
use crate::sync::progress::Progress;
use crate::sync::SyncError;

/// How long a stopping heartbeat may take to finish its last renewal.
const STOP_WAIT: Duration = Duration::from_secs(5);

pub(super) struct Heartbeat {
    stop: CancellationToken,
    /// Cancelled when the heartbeat can no longer keep the lease; `why` then says why.
    failed: CancellationToken,
    why: Arc<Mutex<Option<SyncError>>>,
    join: JoinHandle<()>,
}

/// How [`beat`] ended.
enum Beat {
    /// Asked to stop (or the run was cancelled).
    Stopped,
    LeaseLost,
}

impl Heartbeat {
    /// Starts beating for run `run_id`; it also stops when `run_cancel` is cancelled.
    pub(super) fn start(
        ctx: &RunContext,
        shop_id: i64,
        run_id: i64,
        progress: &Arc<Progress>,
        run_cancel: &CancellationToken,
    ) -> Self {
        let stop = run_cancel.child_token();
        let (failed, why) = (CancellationToken::new(), Arc::new(Mutex::new(None)));
        let beating = beat(ctx.clone(), shop_id, run_id, progress.clone(), stop.clone());
        let (task_failed, task_why) = (failed.clone(), why.clone());
        let (shop, stream) = (ctx.shop.name().to_string(), ctx.stream.as_str());
        let join = tokio::spawn(async move {
            let error = match catch_panic(beating).await {
                Ok(Beat::Stopped) => return,
                Ok(Beat::LeaseLost) => SyncError::LeaseLost,
                Err(message) => {
                    tracing::error!(%shop, stream, run_id, panic = %message,
                        "the lease heartbeat panicked; ending the run (it is retried with backoff)");
                    SyncError::Panicked {
                        task: TASK_HEARTBEAT,
                        message,
                    }
                }
            };
            *task_why.lock() = Some(error);
            task_failed.cancel();
        });
        Self {
            stop,
            failed,
            why,
            join,
        }
    }

    /// Resolves when the heartbeat can no longer keep the lease: `LeaseLost`, or `Panicked`.
    pub(super) async fn failed(&self) -> SyncError {
        self.failed.cancelled().await;
        self.why.lock().take().unwrap_or(SyncError::LeaseLost)
    }

    /// Stops the heartbeat and waits (bounded) for it to end.
    pub(super) async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(STOP_WAIT, self.join).await;
    }
}

async fn beat(
    ctx: RunContext,
    shop_id: i64,
    run_id: i64,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> Beat {
    let every = (ctx.config.lease_ttl / 3).max(Duration::from_millis(100));
    let stream = ctx.stream;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Beat::Stopped,
            _ = tokio::time::sleep(every) => {}
        }
        let snap = progress.snapshot();
        let renewed = ctx
            .ledger
            .heartbeat(shop_id, stream, run_id, ctx.config.lease_ttl, snap)
            .await;
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(shop = %ctx.shop.name(), stream = stream.as_str(), run_id,
                    "lease lost to another daemon; cancelling the run");
                return Beat::LeaseLost;
            }
            // The database is away: keep working; if it stays away past the TTL another daemon
            // may take over, and our next renew (or cursor advance) notices.
            Err(e) => {
                tracing::warn!(shop = %ctx.shop.name(), stream = stream.as_str(), run_id, error = %e,
                    "lease heartbeat failed")
            }
        }
    }
}
