//! The schema: migrations embedded in the binary, applied at start and by `temu-sync migrate`.
//!
//! Owns: [`MIGRATIONS`] and [`run_pending`], on a connection of its own (not a pooled one) and
//! off the async workers (diesel's harness is blocking). Must not: run a migration outside its
//! own transaction.

use diesel_async::AsyncMigrationHarness;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::connect::Connector;
use super::DbError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Applies every pending migration on a dedicated connection; returns the versions applied.
///
/// Each statement is bounded by the session's `statement_timeout` and `lock_timeout`; diesel runs
/// each migration in its own transaction, so a failed one leaves the schema as it was.
pub async fn run_pending(connector: &Connector) -> Result<Vec<String>, DbError> {
    let conn = connector.connect().await?;
    let applied = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        harness
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>())
            .map_err(|e| DbError::Migration(e.to_string()))
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task failed: {e}")))??;
    Ok(applied)
}
