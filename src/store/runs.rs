//! The run log (`sync_runs`): one row per sync run, with its window, progress and outcome.
//!
//! Owns: starting, heartbeating, finishing and abandoning runs. A run finishes once: a run that
//! is no longer `running` (finished, or abandoned by whoever took its lease over) keeps its
//! outcome.
//!
//! Must not: decide when runs start or what their outcome is.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{bounded_text, MAX_ERROR_CHARS};
use crate::db::schema::sync_runs;
use crate::db::DbError;

/// The state of a sync run, stored as text in `sync_runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Stopped on purpose (shutdown, task timeout).
    Cancelled,
    /// Its daemon lost the lease (died, hung); marked by the daemon that took the lease over.
    Abandoned,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            "abandoned" => RunStatus::Abandoned,
            _ => return None,
        })
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Records the start of a run of (shop, stream) by `instance_id` over `window`; returns its id.
pub async fn start_run(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
    instance_id: &str,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> Result<i64, DbError> {
    let id = diesel::insert_into(sync_runs::table)
        .values((
            sync_runs::shop_id.eq(shop_id),
            sync_runs::stream.eq(stream),
            sync_runs::instance_id.eq(instance_id),
            sync_runs::status.eq(RunStatus::Running.as_str()),
            sync_runs::window_start.eq(window.map(|w| w.0)),
            sync_runs::window_end.eq(window.map(|w| w.1)),
        ))
        .returning(sync_runs::id)
        .get_result(conn)
        .await?;
    Ok(id)
}

/// Sets the run's progress counters (totals so far, not increments) and its heartbeat.
/// A run that is no longer running is left as it is.
pub async fn update_run_progress(
    conn: &mut AsyncPgConnection,
    run_id: i64,
    pages: i32,
    seen: i32,
    inserted: i32,
    updated: i32,
) -> Result<(), DbError> {
    diesel::update(sync_runs::table.find(run_id))
        .filter(sync_runs::status.eq(RunStatus::Running.as_str()))
        .set((
            sync_runs::pages.eq(pages),
            sync_runs::records_seen.eq(seen),
            sync_runs::inserted.eq(inserted),
            sync_runs::updated.eq(updated),
            sync_runs::heartbeat_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the run's outcome and `finished_at`. Only a `running` run is finished: a run already
/// finished or abandoned keeps its outcome.
pub async fn finish_run(
    conn: &mut AsyncPgConnection,
    run_id: i64,
    status: RunStatus,
    error_class: Option<&str>,
    error_message: Option<&str>,
) -> Result<(), DbError> {
    let error_message = error_message.map(|m| bounded_text(m, MAX_ERROR_CHARS));
    diesel::update(sync_runs::table.find(run_id))
        .filter(sync_runs::status.eq(RunStatus::Running.as_str()))
        .set((
            sync_runs::status.eq(status.as_str()),
            sync_runs::error_class.eq(error_class),
            sync_runs::error_message.eq(error_message),
            sync_runs::finished_at.eq(diesel::dsl::now),
            sync_runs::heartbeat_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks the `running` runs of (shop, stream) by instances other than `except_instance` as
/// abandoned; returns how many. Called by the daemon that took the lease over from them.
pub async fn abandon_stale_runs(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
    except_instance: &str,
) -> Result<u64, DbError> {
    let n = diesel::update(sync_runs::table)
        .filter(sync_runs::shop_id.eq(shop_id))
        .filter(sync_runs::stream.eq(stream))
        .filter(sync_runs::status.eq(RunStatus::Running.as_str()))
        .filter(sync_runs::instance_id.ne(except_instance))
        .set((
            sync_runs::status.eq(RunStatus::Abandoned.as_str()),
            sync_runs::error_class.eq("abandoned"),
            sync_runs::error_message.eq(format!("lease taken over by {except_instance}")),
            sync_runs::finished_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(n as u64)
}
