//! A park the database refused to store (read-only, full, unreachable at that moment) is
//! retried until it is stored, so a restart still finds the stream parked.
//!
//! [`ParkRetry`] is one slot per stream (the actor hands a clone to each run): the run that
//! could not record its parked end starts the retry task; the next run of the stream first
//! cancels it and waits for it to end ([`ParkRetry::supersede`]), so a stale park is never
//! written over a newer run's outcome. The task is bounded by the daemon's shutdown, each
//! attempt by the ledger's transaction deadline, the pauses by `retry_backoff_min..max`.
//!
//! Must not: decide whether to park (`policy.rs`, `error.rs`).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{RunEnd, RunLedger};
use crate::config::Stream;
use crate::metrics::catch_panic;
use crate::supervisor::Backoff;

/// How long a new run waits for a superseded retry to end (one attempt in flight at most).
const SUPERSEDE_WAIT: Duration = Duration::from_secs(60);

/// A retry in flight: its own cancel token and its task.
type Pending = Option<(CancellationToken, JoinHandle<()>)>;

/// The pending park-store retry of one stream, if any.
#[derive(Clone)]
pub struct ParkRetry {
    slot: Arc<Mutex<Pending>>,
    /// Cancelled when the daemon stops.
    stop: CancellationToken,
}

/// What to store again, and where.
pub struct UnstoredPark {
    pub shop: String,
    pub shop_id: i64,
    pub stream: Stream,
    pub run_id: i64,
    pub end: RunEnd,
}

impl ParkRetry {
    pub fn new(stop: CancellationToken) -> Self {
        Self {
            slot: Arc::default(),
            stop,
        }
    }

    /// Is a retry pending (for tests and the log)?
    pub fn pending(&self) -> bool {
        self.slot
            .lock()
            .as_ref()
            .is_some_and(|(_, join)| !join.is_finished())
    }

    /// Ends a pending retry (a new run of the stream supersedes it) and waits until it is over.
    pub async fn supersede(&self) {
        let pending = self.slot.lock().take();
        if let Some((cancel, join)) = pending {
            cancel.cancel();
            let _ = tokio::time::timeout(SUPERSEDE_WAIT, join).await;
        }
    }

    /// Records `park.end` again after `backoff.delay(1)`, `delay(2)`, … until the ledger takes
    /// it, the stream runs again, or the daemon stops.
    pub fn start(&self, ledger: Arc<dyn RunLedger>, park: UnstoredPark, backoff: Backoff) {
        let cancel = self.stop.child_token();
        let token = cancel.clone();
        let join = tokio::spawn(async move {
            let work = retry(ledger, &park, backoff, &token);
            if let Err(panic) = catch_panic(work).await {
                tracing::error!(shop = %park.shop, stream = park.stream.as_str(), %panic,
                    "the park-store retry panicked (a bug: please report it); the park lives in memory only");
            }
        });
        if let Some((old, _)) = self.slot.lock().replace((cancel, join)) {
            old.cancel();
        }
    }
}

async fn retry(
    ledger: Arc<dyn RunLedger>,
    park: &UnstoredPark,
    backoff: Backoff,
    cancel: &CancellationToken,
) {
    let (shop, stream) = (park.shop.as_str(), park.stream.as_str());
    for attempt in 1u32.. {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff.delay(attempt)) => {}
        }
        let stored = ledger
            .finish_run(park.shop_id, park.stream, park.run_id, park.end.clone())
            .await;
        match stored {
            Ok(()) => {
                tracing::info!(
                    shop,
                    stream,
                    attempt,
                    "the park is stored in sync_state now"
                );
                return;
            }
            Err(e) => tracing::warn!(shop, stream, attempt, error = %e,
                "the database still refuses to store the park; trying again"),
        }
    }
}
