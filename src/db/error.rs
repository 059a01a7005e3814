//! Database errors with a class the caller can act on.
//!
//! Owns: [`DbError`] and its classes (unavailable, saturated, deadline, lease lost, …) and the
//! mapping of diesel's errors onto them. Must not: carry the database password or a
//! connection string in a message (invariant 7).

use std::time::Duration;

/// What went wrong talking to PostgreSQL, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached (refused, DNS, auth, not connected yet). Retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Every connection stayed busy for `pool_timeout`.
    #[error("no database connection free within {0:?} (pool exhausted)")]
    PoolTimeout(Duration),
    /// The unit of work did not finish within its deadline; it was rolled back and cancelled.
    #[error("database work '{label}' exceeded its deadline of {deadline:?} and was rolled back")]
    Deadline {
        label: &'static str,
        deadline: Duration,
    },
    /// The server cancelled a statement (`statement_timeout`, `lock_timeout`).
    #[error("database statement cancelled by the server: {0}")]
    StatementTimeout(String),
    /// Any other error returned by a query.
    #[error("database query failed: {0}")]
    Query(diesel::result::Error),
    /// Applying the embedded migrations failed.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// `owner` no longer holds the sync lease of (shop, stream): another daemon took it over.
    /// Returned from inside a transaction so that the work it guards rolls back.
    #[error("sync lease of shop {shop_id} / {stream} is no longer held by {owner}")]
    LeaseLost {
        shop_id: i64,
        stream: String,
        owner: String,
    },
    /// The configuration cannot be turned into a connection.
    #[error("database configuration: {0}")]
    Config(String),
}

impl DbError {
    /// True when trying again later can succeed without an operator.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DbError::Unavailable(_)
                | DbError::PoolTimeout(_)
                | DbError::Deadline { .. }
                | DbError::StatementTimeout(_)
        ) || matches!(self, DbError::Query(e) if is_connection_error(e))
    }

    /// True when the database itself is unreachable (maps to HTTP 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_) | DbError::PoolTimeout(_))
            || matches!(self, DbError::Query(e) if is_connection_error(e))
    }
}

fn is_connection_error(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        e,
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
            | Error::BrokenTransactionManager
    )
}

impl From<diesel::result::Error> for DbError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &e {
            // 57014 query_canceled: statement_timeout or a cancel request; 55P03 lock_not_available.
            Error::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("canceling statement")
                    || info.message().contains("lock timeout") =>
            {
                DbError::StatementTimeout(info.message().to_string())
            }
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                DbError::Unavailable(info.message().to_string())
            }
            _ => DbError::Query(e),
        }
    }
}

impl From<diesel::ConnectionError> for DbError {
    fn from(e: diesel::ConnectionError) -> Self {
        DbError::Unavailable(e.to_string())
    }
}
