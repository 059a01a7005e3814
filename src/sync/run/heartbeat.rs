//! The heartbeat of a run: renews the lease and writes the run's progress every `lease_ttl / 3`;
//! a lease lost to another daemon cancels the run.
//!
//! Must not: outlive its run — it stops when the run asks, or with the run's own cancellation.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::RunContext;
use crate::sync::progress::Progress;

/// How long a stopping heartbeat may take to finish its last renewal.
const STOP_WAIT: Duration = Duration::from_secs(5);

pub(super) struct Heartbeat {
    stop: CancellationToken,
    lease_lost: CancellationToken,
    join: JoinHandle<()>,
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
        let lease_lost = CancellationToken::new();
        let join = tokio::spawn(beat(
            ctx.clone(),
            shop_id,
            run_id,
            progress.clone(),
            stop.clone(),
            lease_lost.clone(),
        ));
        Self {
            stop,
            lease_lost,
            join,
        }
    }

    /// Resolves when the lease was lost.
    pub(super) async fn lease_lost(&self) {
        self.lease_lost.cancelled().await
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
    lease_lost: CancellationToken,
) {
    let every = (ctx.config.lease_ttl / 3).max(Duration::from_millis(100));
    let stream = ctx.stream;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
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
                lease_lost.cancel();
                return;
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
