//! Why a sync run stopped, by what the scheduler should do next.

use crate::db::DbError;
use crate::temu::{ErrorClass, TemuError};

/// What the scheduler does after a failed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Try again after a backoff (up to `sync.max_retries`), then at the next interval.
    Retry,
    /// Park the stream until the configuration changes or an operator triggers it: retrying
    /// cannot help (bad token, signature, permission, IP whitelist).
    Park,
    /// The run was cancelled (shutdown, `task_timeout`, lease lost): committed chunks stay.
    Cancelled,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("Temu API: {0}")]
    Temu(#[from] TemuError),
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("a record from the API could not be stored: {0}")]
    Record(String),
    #[error("the lease on this shop/stream was lost to another daemon")]
    LeaseLost,
    #[error("the run exceeded sync.task_timeout ({0:?}) and was cancelled")]
    TaskTimeout(std::time::Duration),
    #[error("the run was cancelled: {0}")]
    Cancelled(&'static str),
    /// A panic in the run's task (`task`: one of [`crate::metrics::TASKS`]) — a bug. The run is
    /// recorded failed with the message and retried with backoff; the panic is counted.
    #[error("the {task} task panicked (a bug; please report it): {message}")]
    Panicked { task: &'static str, message: String },
}

impl SyncError {
    pub fn kind(&self) -> FailureKind {
        match self {
            SyncError::Temu(e) => match e.class() {
                ErrorClass::Fatal => FailureKind::Park,
                ErrorClass::Retryable | ErrorClass::Resign | ErrorClass::Decode => {
                    FailureKind::Retry
                }
            },
            // By SQLSTATE: the server refusing the work itself (privilege, missing table, read-only,
            // disk full, constraint) parks; outages, timeouts, deadlocks, … retry.
            SyncError::Db(e) if !e.is_transient() => FailureKind::Park,
            SyncError::Db(_) | SyncError::Record(_) | SyncError::Panicked { .. } => {
                FailureKind::Retry
            }
            SyncError::LeaseLost | SyncError::TaskTimeout(_) | SyncError::Cancelled(_) => {
                FailureKind::Cancelled
            }
        }
    }

    /// A park for this error is re-probed by the daemon itself (every `sync.retry_backoff_max`):
    /// a permanent database error, whose cause can clear without a configuration change (a
    /// privilege granted again, the database writable again, space freed).
    pub fn probed(&self) -> bool {
        matches!(self, SyncError::Db(_)) && self.kind() == FailureKind::Park
    }

    /// A short class name for `sync_runs.error_class`, logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            SyncError::Temu(e) => match e.class() {
                ErrorClass::Retryable => "temu_retryable",
                ErrorClass::Resign => "temu_resign",
                ErrorClass::Fatal => "temu_fatal",
                ErrorClass::Decode => "temu_decode",
            },
            SyncError::Db(e) if !e.is_transient() => "database_fatal",
            SyncError::Db(_) => "database",
            SyncError::Record(_) => "record",
            SyncError::LeaseLost => "lease_lost",
            SyncError::TaskTimeout(_) => "task_timeout",
            SyncError::Cancelled(_) => "cancelled",
            SyncError::Panicked { .. } => "panic",
        }
    }
}

impl From<diesel::result::Error> for SyncError {
    fn from(e: diesel::result::Error) -> Self {
        SyncError::Db(DbError::from(e))
    }
}
