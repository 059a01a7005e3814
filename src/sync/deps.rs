//! What every sync actor shares, built once by the daemon and handed to each actor at
//! construction: no setters afterwards, no lookups by name at run time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::board::SyncBoard;
use super::run::RunLedger;
use crate::config::SyncConfig;
use crate::db::Database;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::temu::TemuClient;

#[derive(Clone)]
pub struct SyncDeps {
    pub config: SyncConfig,
    pub db: Database,
    pub health: Health,
    pub board: SyncBoard,
    pub metrics: Metrics,
    /// Runs in progress at once, across every stream (`sync.max_concurrent_runs`).
    pub run_slots: Arc<Semaphore>,
    /// The process's one Temu client (one limiter per app_key), shared with the Temu actor.
    pub temu: TemuClient,
    /// Leases and run records (PostgreSQL in the daemon).
    pub ledger: Arc<dyn RunLedger>,
    /// How long a stopping actor waits for its run to record itself cancelled.
    pub stop_timeout: Duration,
    /// Runs are tracked tasks of the daemon's shutdown and stop with it.
    pub shutdown: Shutdown,
}
