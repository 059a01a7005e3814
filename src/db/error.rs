//! Database errors with a class the caller can act on.
//!
//! Owns: [`DbError`] and its classes (unavailable, saturated, deadline, lease lost, rejected by
//! the server, …), the mapping of diesel's errors onto them by SQLSTATE (`sqlstate.rs` says what
//! each code means; `wire.rs` recovers the codes diesel drops), and [`DbError::is_transient`],
//! which the scheduler's retry-or-park decision follows. Must not: decide anything by a server
//! message's text (it is localised), or carry the database password or a connection string in a
//! message (invariant 7).

use std::time::Duration;

use super::{sqlstate, wire};

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
    /// The server cancelled a statement (`statement_timeout`, `lock_timeout`: SQLSTATE 57014,
    /// 55P03).
    #[error("database statement cancelled by the server: {0}")]
    StatementTimeout(String),
    /// The server refused the work with `sqlstate`; `message` is its text (in the server's
    /// language). Permanent unless [`sqlstate::is_transient`] says otherwise; a permanent one says
    /// what to do.
    #[error("{}", describe_rejection(.sqlstate, .message))]
    Rejected { sqlstate: String, message: String },
    /// Any other error returned by a query.
    #[error("database query failed: {0}")]
    Query(diesel::result::Error),
    /// Applying the embedded migrations failed.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The database has a migration this binary does not know: a newer temu-sync migrated it.
    /// Never transient; the daemon and `migrate` exit 78.
    #[error(
        "the database schema is at version {database}, newer than this temu-sync knows \
         (its newest migration is {known}); refusing to start so that an older daemon never \
         writes into a newer schema: run the newer temu-sync, or restore the database"
    )]
    SchemaNewer { database: String, known: String },
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
    /// The error for a server answer with `sqlstate` and `message`, classified by the code alone:
    /// a cancelled statement, a lost session or server, or a rejection.
    pub fn from_sqlstate(sqlstate: &str, message: &str) -> Self {
        let text = format!("{message} (SQLSTATE {sqlstate})");
        if sqlstate::is_statement_cancel(sqlstate) {
            DbError::StatementTimeout(text)
        } else if sqlstate::is_connection_loss(sqlstate) {
            DbError::Unavailable(text)
        } else {
            DbError::Rejected {
                sqlstate: sqlstate.to_string(),
                message: message.to_string(),
            }
        }
    }

    /// True when trying again later can succeed without an operator: the database unreachable,
    /// busy or slow, a cancelled statement, a transient SQLSTATE (serialization failure,
    /// deadlock, …), and errors that are not the server's verdict on the work. False when the
    /// server refused the work itself (permission, missing table or column, read-only, disk
    /// full, constraint, …) or the configuration is unusable: a sync stream parks on these.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Rejected { sqlstate, .. } => sqlstate::is_transient(sqlstate),
            DbError::Config(_) | DbError::SchemaNewer { .. } => false,
            DbError::Unavailable(_)
            | DbError::PoolTimeout(_)
            | DbError::Deadline { .. }
            | DbError::StatementTimeout(_)
            | DbError::Query(_)
            | DbError::Migration(_)
            | DbError::LeaseLost { .. } => true,
        }
    }

    /// The server's SQLSTATE, for a rejection.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            DbError::Rejected { sqlstate, .. } => Some(sqlstate),
            _ => None,
        }
    }

    /// True when the database itself is unreachable (maps to HTTP 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_) | DbError::PoolTimeout(_))
            || matches!(self, DbError::Query(e) if is_connection_error(e))
    }
}

/// `message (SQLSTATE code)`, and for a permanent code what to do about it.
fn describe_rejection(code: &str, message: &str) -> String {
    if sqlstate::is_transient(code) {
        format!("{message} (SQLSTATE {code})")
    } else {
        format!(
            "{message} (SQLSTATE {code}): {}; then trigger the stream (POST /sync/<shop>/<stream>)",
            sqlstate::advice(code)
        )
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

/// The SQLSTATE behind the few kinds diesel names itself.
fn kind_sqlstate(kind: diesel::result::DatabaseErrorKind) -> Option<&'static str> {
    use diesel::result::DatabaseErrorKind as K;
    match kind {
        K::UniqueViolation => Some("23505"),
        K::ForeignKeyViolation => Some("23503"),
        K::RestrictViolation => Some("23001"),
        K::ExclusionViolation => Some("23P01"),
        K::NotNullViolation => Some("23502"),
        K::CheckViolation => Some("23514"),
        K::SerializationFailure => Some("40001"),
        K::ReadOnlyTransaction => Some("25006"),
        _ => None,
    }
}

impl From<diesel::result::Error> for DbError {
    /// By SQLSTATE: the one the server sent with this message on one of our sessions
    /// (`wire.rs`), else the one diesel's kind stands for.
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &e {
            Error::DatabaseError(kind, info) => {
                let code = wire::sqlstate_for(info.message())
                    .or_else(|| kind_sqlstate(*kind).map(str::to_string));
                match (code, kind) {
                    (Some(code), _) => DbError::from_sqlstate(&code, info.message()),
                    (None, DatabaseErrorKind::ClosedConnection) => {
                        DbError::Unavailable(info.message().to_string())
                    }
                    (None, _) => DbError::Query(e),
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error};

    /// A diesel error as diesel-async hands it over: the kind, and the server's message only.
    fn diesel_error(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_string()))
    }

    /// The server sent `code` with `message` on a session (what the wire tap notes), then diesel
    /// reports it with `DatabaseErrorKind::Unknown`.
    fn from_server(code: &str, message: &str) -> DbError {
        wire::record(message, code);
        DbError::from(diesel_error(DatabaseErrorKind::Unknown, message))
    }

    #[test]
    fn transient_sqlstates_are_retried() {
        for (code, expect) in [
            ("08006", "unavailable"),
            ("08001", "unavailable"),
            ("08P01", "unavailable"),
            ("40001", "rejected"),
            ("40P01", "rejected"),
            ("57P01", "unavailable"),
            ("57P02", "unavailable"),
            ("57P03", "unavailable"),
            ("53300", "unavailable"),
            ("57014", "cancelled"),
            ("55P03", "cancelled"),
        ] {
            let e = from_server(code, &format!("Meldung des Servers für {code}"));
            assert!(e.is_transient(), "{code}: {e}");
            let got = match &e {
                DbError::Unavailable(_) => "unavailable",
                DbError::Rejected { .. } => "rejected",
                DbError::StatementTimeout(_) => "cancelled",
                _ => "other",
            };
            assert_eq!(got, expect, "{code}: {e:?}");
            assert!(e.to_string().contains(code), "{code}: {e}");
        }
    }

    #[test]
    fn permanent_sqlstates_park_with_the_servers_message_and_what_to_do() {
        for (code, advice) in [
            ("42501", "GRANT"),
            ("42P01", "migrate"),
            ("42703", "migrate"),
            ("25006", "read-only"),
            ("53100", "disk is full"),
            ("23514", "constraint"),
        ] {
            let message = format!("der Server lehnt ab ({code})");
            let e = from_server(code, &message);
            assert!(!e.is_transient(), "{code} must park: {e}");
            assert_eq!(e.sqlstate(), Some(code));
            let text = e.to_string();
            assert!(text.contains(&message), "the server's message: {text}");
            assert!(text.contains(advice), "what to do: {text}");
            assert!(text.contains("POST /sync/"), "how to resume: {text}");
        }
    }

    #[test]
    fn classification_follows_the_code_not_the_english_text() {
        // English text of a statement timeout, sent with the code of a permission error.
        let e = from_server("42501", "canceling statement due to statement timeout");
        assert!(!e.is_transient(), "{e}");
        assert!(matches!(e, DbError::Rejected { .. }));
        // A statement timeout in German.
        let e = from_server(
            "57014",
            "storniere Anfrage wegen Zeitüberschreitung der Anweisung",
        );
        assert!(matches!(e, DbError::StatementTimeout(_)), "{e:?}");
        // The English text without a code is nothing special.
        let e = DbError::from(diesel_error(
            DatabaseErrorKind::Unknown,
            "canceling statement due to lock timeout (never sent by a server)",
        ));
        assert!(matches!(e, DbError::Query(_)), "{e:?}");
    }

    #[test]
    fn diesels_own_kinds_carry_their_sqlstate() {
        let e = DbError::from(diesel_error(
            DatabaseErrorKind::ReadOnlyTransaction,
            "nur lesen",
        ));
        assert_eq!(e.sqlstate(), Some("25006"));
        assert!(!e.is_transient());
        let e = DbError::from(diesel_error(DatabaseErrorKind::CheckViolation, "Prüfung"));
        assert_eq!(e.sqlstate(), Some("23514"));
        assert!(!e.is_transient());
        let e = DbError::from(diesel_error(DatabaseErrorKind::SerializationFailure, "s"));
        assert_eq!(e.sqlstate(), Some("40001"));
        assert!(e.is_transient());
        let e = DbError::from(diesel_error(DatabaseErrorKind::ClosedConnection, "closed"));
        assert!(e.is_transient() && e.is_unavailable());
    }

    #[test]
    fn waits_and_outages_are_transient_and_config_is_not() {
        assert!(DbError::PoolTimeout(Duration::from_secs(1)).is_transient());
        assert!(DbError::Unavailable("refused".into()).is_transient());
        assert!(DbError::Deadline {
            label: "x",
            deadline: Duration::from_secs(1)
        }
        .is_transient());
        assert!(!DbError::Config("bad".into()).is_transient());
    }
}
