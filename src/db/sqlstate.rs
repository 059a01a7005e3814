//! What a server error's SQLSTATE means for the daemon: retry, or stop and tell the operator.
//!
//! Owns: the classification of SQLSTATEs (<https://www.postgresql.org/docs/current/errcodes-appendix.html>)
//! into transient and permanent, which ones mean the session or server is gone, which mean the
//! server cancelled the statement, and the advice shown with a permanent one. Must not: look at
//! the message text (it is localised by the server's `lc_messages`).

/// The server cancelled the statement: `statement_timeout` or a cancel request (57014), or
/// `lock_timeout` (55P03).
pub fn is_statement_cancel(code: &str) -> bool {
    matches!(code, "57014" | "55P03")
}

/// The session or the server is going away, or will not take another session: connection
/// exceptions (class 08), administrator / crash shutdown (57P01, 57P02), the server starting or
/// stopping (57P03), no connection slot left (53300).
pub fn is_connection_loss(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// True when the same work can succeed later without an operator: connection exceptions
/// (class 08); transaction rollbacks — serialization failure 40001, deadlock 40P01, … (class 40,
/// but not 40002, a constraint checked at commit); insufficient resources — too many
/// connections 53300, out of memory 53200, … (class 53, but not disk full 53100); operator
/// intervention — query canceled / statement timeout 57014, admin shutdown 57P01, crash shutdown
/// 57P02, cannot connect now 57P03, idle session timeout 57P05 (class 57, but not 57P04, the
/// database dropped); lock not available 55P03 (lock_timeout); object in use 55006; system and
/// I/O errors 58000 / 58030; internal error XX000; snapshot too old 72000.
///
/// Every other SQLSTATE is the server refusing the statement itself (privilege 42501, undefined
/// table 42P01 / column 42703, read-only transaction 25006, disk full 53100, check violation
/// 23514, data exceptions, …): sending it again gets the same answer until someone acts.
pub fn is_transient(code: &str) -> bool {
    match code.get(..2) {
        Some("08") => true,
        Some("40") => code != "40002",
        Some("53") => code != "53100",
        Some("57") => code != "57P04",
        _ => matches!(
            code,
            "55P03" | "55006" | "58000" | "58030" | "XX000" | "72000"
        ),
    }
}

/// What the operator should do about a permanent error, by its SQLSTATE.
pub fn advice(code: &str) -> &'static str {
    match code {
        "42501" => {
            "grant the daemon's database role the privilege it lacks (e.g. GRANT SELECT, \
             INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO <role>)"
        }
        "42P01" | "42703" | "42883" | "42704" | "3F000" => {
            "the schema is not what this version expects: run `temu-sync migrate` (or restore \
             what was dropped)"
        }
        "25006" => {
            "the database takes no writes (a standby, or default_transaction_read_only is on): \
             point database.url at the primary or turn read-only off"
        }
        "53100" => "the database server's disk is full: free space on it",
        "57P04" => "the database was dropped: recreate it (`temu-sync migrate`)",
        _ => match code.get(..2) {
            Some("23") => {
                "a record broke a constraint of the schema: see the constraint the server names"
            }
            Some("22") => {
                "a value from the API does not fit its column: report it with this message"
            }
            Some("28") => "check database.url (the role) and database.password",
            Some("42") => {
                "the statement was refused (syntax or access rule): check the role's privileges \
                 and run `temu-sync migrate`"
            }
            Some("54") => "a statement exceeded a PostgreSQL limit: lower sync.batch_size",
            _ => "retrying will not help: fix the cause the server names",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_and_permanent_sqlstates() {
        let transient = [
            "08000", "08001", "08003", "08006", "08P01", "40001", "40P01", "40003", "57P01",
            "57P02", "57P03", "57P05", "53300", "53200", "53000", "57014", "55P03", "55006",
            "58030", "XX000",
        ];
        let permanent = [
            "42501", "42P01", "42703", "42883", "42601", "25006", "53100", "23514", "23505",
            "23502", "22001", "22003", "28P01", "28000", "3D000", "57P04", "40002", "0A000",
            "54000", "XX001",
        ];
        let cases = transient.iter().map(|c| (c, true));
        for (code, retried) in cases.chain(permanent.iter().map(|c| (c, false))) {
            assert_eq!(is_transient(code), retried, "{code}: retried = {retried}");
        }
    }

    #[test]
    fn cancels_and_connection_losses() {
        assert!(is_statement_cancel("57014") && is_statement_cancel("55P03"));
        assert!(!is_statement_cancel("57P01"));
        for code in ["08006", "08003", "57P01", "57P02", "57P03", "53300"] {
            assert!(is_connection_loss(code), "{code}");
        }
        for code in ["57014", "40001", "42501", "53100"] {
            assert!(!is_connection_loss(code), "{code}");
        }
    }

    #[test]
    fn each_permanent_error_says_what_to_do() {
        assert!(advice("42501").contains("GRANT"));
        assert!(advice("42P01").contains("migrate"));
        assert!(advice("42703").contains("migrate"));
        assert!(advice("25006").contains("read-only"));
        assert!(advice("53100").contains("disk is full"));
        assert!(advice("23514").contains("constraint"));
    }
}
