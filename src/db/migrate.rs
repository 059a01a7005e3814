//! The schema: migrations embedded in the binary, applied at start and by `temu-sync migrate`.
//!
//! Owns: [`MIGRATIONS`], [`run_pending`] (on a connection of its own, not a pooled one, and off
//! the async workers: diesel's harness is blocking), the refusal of a schema newer than this
//! binary ([`DbError::SchemaNewer`]: an applied migration this binary does not embed means a newer
//! temu-sync migrated the database, and an old daemon must never write into it), and
//! [`SchemaGuard`], through which the database actor reports that refusal so the daemon stops
//! with exit 78. Must not: run a migration outside its own transaction.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use diesel::pg::Pg;
use diesel_async::AsyncMigrationHarness;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use tokio::sync::Notify;

use super::connect::Connector;
use super::DbError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The migration that makes every orders stream backfill `initial_window` once (cooperative-
/// warehouse orders were not fetched before it).
pub const REBACKFILL_ORDERS_VERSION: &str = "20261205000001";

/// Applies every pending migration on a dedicated connection; returns the versions applied.
///
/// Refuses ([`DbError::SchemaNewer`]) before applying anything when the database has a migration
/// this binary does not know. Each statement is bounded by the session's `statement_timeout` and
/// `lock_timeout`; diesel runs each migration in its own transaction, so a failed one leaves the
/// schema as it was.
pub async fn run_pending(connector: &Connector) -> Result<Vec<String>, DbError> {
    let conn = connector.connect().await?;
    let applied = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        refuse_newer_schema(&mut harness)?;
        harness
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>())
            .map_err(|e| DbError::Migration(e.to_string()))
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task failed: {e}")))??;
    if applied.iter().any(|v| v == REBACKFILL_ORDERS_VERSION) {
        tracing::warn!(
            "upgrade: every orders stream that had synced backfills sync.initial_window once, \
             to fetch the cooperative-warehouse orders older versions missed (fulfillmentTypeList); \
             `temu-sync status` shows it until that run succeeds"
        );
    }
    Ok(applied)
}

/// The versions embedded in this binary, oldest first.
pub fn known_versions() -> Vec<String> {
    let migrations =
        diesel::migration::MigrationSource::<Pg>::migrations(&MIGRATIONS).unwrap_or_default();
    let mut versions: Vec<String> = migrations
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    versions.sort();
    versions
}

/// `Err(SchemaNewer)` when `applied` (the database's versions) holds one that `known` does not.
pub fn check_versions(applied: &[String], known: &[String]) -> Result<(), DbError> {
    let known_set: BTreeSet<&String> = known.iter().collect();
    let unknown = applied.iter().filter(|v| !known_set.contains(v)).max();
    match unknown {
        None => Ok(()),
        Some(newest) => Err(DbError::SchemaNewer {
            database: newest.clone(),
            known: known.last().cloned().unwrap_or_else(|| "none".to_string()),
        }),
    }
}

fn refuse_newer_schema<H: MigrationHarness<Pg>>(harness: &mut H) -> Result<(), DbError> {
    let applied: Vec<String> = harness
        .applied_migrations()
        .map_err(|e| DbError::Migration(e.to_string()))?
        .iter()
        .map(|v| v.to_string())
        .collect();
    check_versions(&applied, &known_versions())
}

/// A (shop, stream) that backfills `initial_window` once more (`sync_state.backfill_reason`, set
/// by an upgrade's migration; cleared by the stream's next successful run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBackfill {
    /// The shop's configuration name.
    pub shop: String,
    pub stream: String,
    pub reason: String,
}

/// Told by the database actor, once the schema is ready, which streams have a pending backfill
/// (the daemon shows them on the sync board, so `/status` says so).
pub type BackfillSink = Arc<dyn Fn(&[PendingBackfill]) + Send + Sync>;

#[derive(diesel::QueryableByName)]
struct BackfillRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    shop: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    stream: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    reason: String,
}

/// Every (shop, stream) with a pending one-time backfill.
pub async fn pending_backfills(
    conn: &mut diesel_async::AsyncPgConnection,
) -> Result<Vec<PendingBackfill>, DbError> {
    use diesel_async::RunQueryDsl;
    let rows: Vec<BackfillRow> = diesel::sql_query(
        "SELECT sh.name AS shop, s.stream, s.backfill_reason AS reason FROM sync_state s \
         JOIN shops sh ON sh.id = s.shop_id WHERE s.backfill_reason IS NOT NULL \
         ORDER BY sh.name, s.stream",
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| PendingBackfill {
            shop: r.shop,
            stream: r.stream,
            reason: r.reason,
        })
        .collect())
}

/// How the database actor tells the daemon that the schema is newer than this binary: the first
/// refusal is kept, and the daemon's main loop, waiting on [`SchemaGuard::refused`], stops with
/// exit 78. Cheap to clone; clones share the refusal.
#[derive(Debug, Clone, Default)]
pub struct SchemaGuard {
    inner: Arc<(OnceLock<String>, Notify)>,
}

impl SchemaGuard {
    /// Records the refusal (`message` names both versions) and wakes the waiter.
    pub fn refuse(&self, message: String) {
        let _ = self.inner.0.set(message);
        self.inner.1.notify_waiters();
        self.inner.1.notify_one();
    }

    /// The refusal, once there is one.
    pub async fn refused(&self) -> String {
        loop {
            let notified = self.inner.1.notified();
            if let Some(message) = self.inner.0.get() {
                return message.clone();
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_applied_version_is_a_newer_schema() {
        let known = vec!["20261128000001".to_string(), "20261205000002".to_string()];
        assert!(check_versions(&known[..1], &known).is_ok());
        let applied = vec!["20261128000001".to_string(), "20270101000001".to_string()];
        let e = check_versions(&applied, &known).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("20270101000001") && text.contains("20261205000002"),
            "{text}"
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn the_embedded_versions_include_the_rebackfill() {
        assert!(known_versions()
            .iter()
            .any(|v| v == REBACKFILL_ORDERS_VERSION));
    }

    #[tokio::test]
    async fn the_guard_wakes_a_waiter() {
        let guard = SchemaGuard::default();
        let waiter = tokio::spawn({
            let g = guard.clone();
            async move { g.refused().await }
        });
        tokio::task::yield_now().await;
        guard.refuse("newer".into());
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert_eq!(got.expect("woken").expect("joined"), "newer");
    }
}
