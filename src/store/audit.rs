//! What the self-audit and the operator commands ask of the database: rows per UTC day of
//! update time (orders, after-sales), products not removed, the shop's id and cursor, and the
//! cursor reset of `temu-sync reset`.
//!
//! Owns these statements only. Must not: open a transaction of its own (the caller's
//! `Database::transaction` bounds it) or decide what a difference means (that is `audit/`).

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{products, shops, sync_state};
use crate::db::DbError;

/// The table holding one row per record of an update-time stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatedTable {
    Orders,
    Aftersales,
}

impl DatedTable {
    fn name(self) -> &'static str {
        match self {
            DatedTable::Orders => "orders",
            DatedTable::Aftersales => "aftersales",
        }
    }
}

#[derive(QueryableByName)]
struct DayRow {
    #[diesel(sql_type = Date)]
    day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    rows: i64,
}

/// Rows of `table` for `shop_id` per UTC day of `updated_at`, for `from <= updated_at < to`.
/// Days without rows are absent.
pub async fn rows_per_day(
    conn: &mut AsyncPgConnection,
    table: DatedTable,
    shop_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(NaiveDate, i64)>, DbError> {
    // The table name is one of two constants; every value is a bind parameter.
    let sql = format!(
        "SELECT (updated_at AT TIME ZONE 'UTC')::date AS day, count(*) AS rows FROM {} \
         WHERE shop_id = $1 AND updated_at >= $2 AND updated_at < $3 GROUP BY 1 ORDER BY 1",
        table.name()
    );
    let rows: Vec<DayRow> = diesel::sql_query(sql)
        .bind::<BigInt, _>(shop_id)
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(to)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| (r.day, r.rows)).collect())
}

/// The shop's products that are not marked removed.
pub async fn products_not_removed(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
) -> Result<i64, DbError> {
    Ok(products::table
        .filter(products::shop_id.eq(shop_id))
        .filter(products::removed_at.is_null())
        .count()
        .get_result(conn)
        .await?)
}

/// The id of the shop named `name`, if it was ever synced.
pub async fn shop_id(conn: &mut AsyncPgConnection, name: &str) -> Result<Option<i64>, DbError> {
    Ok(shops::table
        .filter(shops::name.eq(name))
        .select(shops::id)
        .first(conn)
        .await
        .optional()?)
}

/// The cursor of (shop, stream): data is complete up to here (`None` before the first success).
pub async fn cursor(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
) -> Result<Option<DateTime<Utc>>, DbError> {
    Ok(sync_state::table
        .find((shop_id, stream))
        .select(sync_state::cursor)
        .first::<Option<DateTime<Utc>>>(conn)
        .await
        .optional()?
        .flatten())
}

/// Clears the cursor of (shop, stream), so that the next run backfills `initial_window` again,
/// recording `reason` as its pending re-backfill (`backfill_reason`, shown by `status` until a
/// run succeeds). Only while `owner` holds the lease; otherwise [`DbError::LeaseLost`].
pub async fn reset_cursor(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
    owner: &str,
    reason: &str,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let before = cursor(conn, shop_id, stream).await?;
    let n = diesel::sql_query(
        "UPDATE sync_state SET cursor = NULL, backfill_reason = $4, updated_at = now() \
         WHERE shop_id = $1 AND stream = $2 AND lease_owner = $3",
    )
    .bind::<BigInt, _>(shop_id)
    .bind::<Text, _>(stream)
    .bind::<Text, _>(owner)
    .bind::<Text, _>(reason)
    .execute(conn)
    .await?;
    if n == 1 {
        Ok(before)
    } else {
        Err(DbError::LeaseLost {
            shop_id,
            stream: stream.to_string(),
            owner: owner.to_string(),
        })
    }
}
