//! Per-(shop, stream) sync state: the cursor, the lease and the parked flag (`sync_state`).
//!
//! Owns: lease acquisition, renewal and release (invariant 8: two daemons never sync the same
//! pair at once), cursor advancement (invariant 1: only by the lease holder, only forwards, in
//! the caller's transaction with the data it covers), and the last outcome / parked reason.
//!
//! Leases are decided on the database's clock (`clock_timestamp()`), never a daemon's, so
//! daemons with skewed clocks agree. A lease ends when its holder releases it or when another
//! owner takes it over after it expired: an expired lease that nobody has taken yet still belongs
//! to its holder (renewing it succeeds), because nobody else can have started on the pair.
//!
//! Must not: decide policy (when to park, retry or give up) or open a transaction of its own (it
//! uses a savepoint where one statement cannot do the work).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Timestamptz};
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{bounded_text, MAX_ERROR_CHARS};
use crate::db::schema::sync_state;
use crate::db::DbError;

/// A lease just taken (or renewed by taking it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Data of this (shop, stream) is complete up to here; `None` before the first success.
    pub cursor: Option<DateTime<Utc>>,
    /// Non-null: parked by a fatal error; the caller must not sync until it is unparked.
    pub parked_reason: Option<String>,
    /// The other owner whose expired lease this one replaced (its runs are to be abandoned).
    pub took_over_from: Option<String>,
}

/// `clock_timestamp() + ttl`: the database's current time, not the transaction's start.
fn expiry(ttl: Duration) -> diesel::expression::SqlLiteral<Nullable<Timestamptz>> {
    // An integer formatted into the SQL: nothing from outside reaches the statement text.
    let micros = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
    sql::<Nullable<Timestamptz>>(&format!(
        "(clock_timestamp() + interval '{micros} microseconds')"
    ))
}

/// Creates the state row of (shop, stream) if it does not exist yet.
async fn ensure_row(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
) -> Result<(), DbError> {
    diesel::insert_into(sync_state::table)
        .values((
            sync_state::shop_id.eq(shop_id),
            sync_state::stream.eq(stream),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes the lease on (shop, stream) for `ttl` if it is free, expired, or already `owner`'s;
/// `None` when another owner holds a live lease. Creates the state row if missing.
///
/// Atomic: the row is locked (`SELECT … FOR UPDATE`, in a savepoint) before it is decided, so of
/// two contenders exactly one wins; the other waits for the lock and then sees the winner.
pub async fn try_acquire_lease(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
    owner: &str,
    ttl: Duration,
) -> Result<Option<Lease>, DbError> {
    conn.transaction(async |conn| {
        ensure_row(conn, shop_id, stream).await?;
        let (holder, expired, cursor, parked_reason): (
            Option<String>,
            bool,
            Option<DateTime<Utc>>,
            Option<String>,
        ) = sync_state::table
            .find((shop_id, stream))
            .select((
                sync_state::lease_owner,
                sql::<Bool>("(lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp())"),
                sync_state::cursor,
                sync_state::parked_reason,
            ))
            .for_update()
            .get_result(conn)
            .await?;
        let took_over_from = match &holder {
            None => None,
            Some(h) if h == owner => None,
            Some(_) if !expired => return Ok(None),
            Some(h) => Some(h.clone()),
        };
        // Compare-and-set on the holder just read: belt and braces with the row lock.
        let taken = diesel::update(sync_state::table.find((shop_id, stream)))
            .filter(sync_state::lease_owner.is_not_distinct_from(holder))
            .set((
                sync_state::lease_owner.eq(owner),
                sync_state::lease_expires_at.eq(expiry(ttl)),
                sync_state::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        if taken == 0 {
            return Ok(None);
        }
        Ok(Some(Lease {
            cursor,
            parked_reason,
            took_over_from,
        }))
    })
    .await
}

/// Extends `owner`'s lease to `ttl` from now. `false`: the lease is lost (released, or taken over
/// by another owner) and the caller must stop working on the pair.
pub async fn renew_lease(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
    owner: &str,
    ttl: Duration,
) -> Result<bool, DbError> {
    let n = diesel::update(sync_state::table.find((shop_id, stream)))
        .filter(sync_state::lease_owner.eq(owner))
        .set((
            sync_state::lease_expires_at.eq(expiry(ttl)),
            sync_state::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Gives the lease up if `owner` holds it (a no-op otherwise).
pub async fn release_lease(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
    owner: &str,
) -> Result<(), DbError> {
    diesel::update(sync_state::table.find((shop_id, stream)))
        .filter(sync_state::lease_owner.eq(owner))
        .set((
            sync_state::lease_owner.eq(None::<String>),
            sync_state::lease_expires_at.eq(None::<DateTime<Utc>>),
            sync_state::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves the cursor of (shop, stream) to `cursor`, or leaves it where it is if it is already
/// later: it never moves backwards.
///
/// Only while `owner` holds the lease; otherwise [`DbError::LeaseLost`], so the caller's
/// transaction — the data this cursor covers — rolls back with it. The row stays locked until
/// the caller commits, so a take-over cannot slip in between this check and the commit.
pub async fn advance_cursor(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
    owner: &str,
    cursor: DateTime<Utc>,
) -> Result<(), DbError> {
    let n = diesel::update(sync_state::table.find((shop_id, stream)))
        .filter(sync_state::lease_owner.eq(owner))
        .set((
            sync_state::cursor.eq(sql::<Nullable<Timestamptz>>("GREATEST(cursor, ")
                .bind::<Timestamptz, _>(cursor)
                .sql(")")),
            sync_state::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(DbError::LeaseLost {
            shop_id,
            stream: stream.to_string(),
            owner: owner.to_string(),
        })
    }
}

/// Records a successful run: `last_success_at = now()`, the last error and a pending
/// re-backfill's reason (`backfill_reason`, set by an upgrade) cleared.
pub async fn record_success(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
) -> Result<(), DbError> {
    diesel::insert_into(sync_state::table)
        .values((
            sync_state::shop_id.eq(shop_id),
            sync_state::stream.eq(stream),
            sync_state::last_success_at.eq(diesel::dsl::now),
        ))
        .on_conflict((sync_state::shop_id, sync_state::stream))
        .do_update()
        .set((
            sync_state::last_success_at.eq(diesel::dsl::now),
            sync_state::last_error.eq(None::<String>),
            sync_state::last_error_class.eq(None::<String>),
            sync_state::backfill_reason.eq(None::<String>),
            sync_state::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a failed run: its error class (e.g. `retryable`, `fatal`) and message (cut to 4000
/// characters). `last_success_at` is kept.
pub async fn record_failure(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
    class: &str,
    message: &str,
) -> Result<(), DbError> {
    let message = bounded_text(message, MAX_ERROR_CHARS);
    let class = bounded_text(class, MAX_ERROR_CHARS);
    diesel::insert_into(sync_state::table)
        .values((
            sync_state::shop_id.eq(shop_id),
            sync_state::stream.eq(stream),
            sync_state::last_error.eq(&message),
            sync_state::last_error_class.eq(&class),
        ))
        .on_conflict((sync_state::shop_id, sync_state::stream))
        .do_update()
        .set((
            incoming!(sync_state: last_error, last_error_class),
            sync_state::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Parks (shop, stream): syncing stops until [`unpark`]. `reason` says what the operator must fix.
pub async fn park(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
    reason: &str,
) -> Result<(), DbError> {
    let reason = bounded_text(reason, MAX_ERROR_CHARS);
    diesel::insert_into(sync_state::table)
        .values((
            sync_state::shop_id.eq(shop_id),
            sync_state::stream.eq(stream),
            sync_state::parked_reason.eq(&reason),
        ))
        .on_conflict((sync_state::shop_id, sync_state::stream))
        .do_update()
        .set((
            sync_state::parked_reason.eq(excluded(sync_state::parked_reason)),
            sync_state::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Clears the parked reason of (shop, stream), if any.
pub async fn unpark(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    stream: &str,
) -> Result<(), DbError> {
    diesel::update(sync_state::table.find((shop_id, stream)))
        .filter(sync_state::parked_reason.is_not_null())
        .set((
            sync_state::parked_reason.eq(None::<String>),
            sync_state::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
