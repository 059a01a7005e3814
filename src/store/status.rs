//! The joined view behind `GET /status` and `temu-sync status`: every (shop, stream) that has
//! sync state, with its cursor, lease, last outcome and last run.
//!
//! Owns: [`stream_status`] and its row types. Read-only.
//!
//! Must not: write anything, or compute presentation (lag, ETA) — callers do that with their clock.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::runs::RunStatus;
use crate::db::DbError;

/// One (shop, stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    /// The shop's configuration name.
    pub shop: String,
    pub shop_id: i64,
    pub stream: String,
    pub cursor: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_class: Option<String>,
    pub parked_reason: Option<String>,
    /// Non-null: the stream backfills `initial_window` once more, for this reason (an upgrade);
    /// cleared by its next successful run.
    pub backfill_reason: Option<String>,
    /// The most recently started run.
    pub last_run: Option<RunSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub id: i64,
    pub instance_id: String,
    pub status: RunStatus,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    pub pages: i32,
    pub records_seen: i32,
    pub inserted: i32,
    pub updated: i32,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub heartbeat_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    shop: String,
    #[diesel(sql_type = BigInt)]
    shop_id: i64,
    #[diesel(sql_type = Text)]
    stream: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    cursor: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    lease_owner: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    lease_expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_success_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    last_error_class: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    parked_reason: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    backfill_reason: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    run_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    run_instance_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    run_status: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    run_window_start: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    run_window_end: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Integer>)]
    run_pages: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    run_records_seen: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    run_inserted: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    run_updated: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    run_error_class: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    run_error_message: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    run_started_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    run_finished_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    run_heartbeat_at: Option<DateTime<Utc>>,
}

const STATUS_SQL: &str = "
SELECT sh.name AS shop, s.shop_id, s.stream, s.cursor, s.lease_owner, s.lease_expires_at,
       s.last_success_at, s.last_error, s.last_error_class, s.parked_reason, s.backfill_reason,
       r.id AS run_id, r.instance_id AS run_instance_id, r.status AS run_status,
       r.window_start AS run_window_start, r.window_end AS run_window_end,
       r.pages AS run_pages, r.records_seen AS run_records_seen, r.inserted AS run_inserted,
       r.updated AS run_updated, r.error_class AS run_error_class,
       r.error_message AS run_error_message, r.started_at AS run_started_at,
       r.finished_at AS run_finished_at, r.heartbeat_at AS run_heartbeat_at
FROM sync_state s
JOIN shops sh ON sh.id = s.shop_id
LEFT JOIN LATERAL (
    SELECT * FROM sync_runs
    WHERE sync_runs.shop_id = s.shop_id AND sync_runs.stream = s.stream
    ORDER BY sync_runs.started_at DESC, sync_runs.id DESC
    LIMIT 1
) r ON true
ORDER BY sh.name, s.stream";

/// Every (shop, stream) with sync state, ordered by shop name then stream.
pub async fn stream_status(conn: &mut AsyncPgConnection) -> Result<Vec<StreamStatus>, DbError> {
    let rows: Vec<Row> = diesel::sql_query(STATUS_SQL).load(conn).await?;
    rows.into_iter().map(StreamStatus::try_from).collect()
}

impl TryFrom<Row> for StreamStatus {
    type Error = DbError;

    fn try_from(r: Row) -> Result<Self, DbError> {
        let last_run = match (r.run_id, r.run_status, r.run_instance_id, r.run_started_at) {
            (Some(id), Some(status), Some(instance_id), Some(started_at)) => Some(RunSummary {
                id,
                status: RunStatus::parse(&status).ok_or_else(|| {
                    DbError::Query(diesel::result::Error::DeserializationError(
                        format!("unknown sync run status {status:?}").into(),
                    ))
                })?,
                instance_id,
                window_start: r.run_window_start,
                window_end: r.run_window_end,
                pages: r.run_pages.unwrap_or(0),
                records_seen: r.run_records_seen.unwrap_or(0),
                inserted: r.run_inserted.unwrap_or(0),
                updated: r.run_updated.unwrap_or(0),
                error_class: r.run_error_class,
                error_message: r.run_error_message,
                started_at,
                finished_at: r.run_finished_at,
                heartbeat_at: r.run_heartbeat_at.unwrap_or(started_at),
            }),
            _ => None,
        };
        Ok(StreamStatus {
            shop: r.shop,
            shop_id: r.shop_id,
            stream: r.stream,
            cursor: r.cursor,
            lease_owner: r.lease_owner,
            lease_expires_at: r.lease_expires_at,
            last_success_at: r.last_success_at,
            last_error: r.last_error,
            last_error_class: r.last_error_class,
            parked_reason: r.parked_reason,
            backfill_reason: r.backfill_reason,
            last_run,
        })
    }
}
