//! After-sales cases.
//!
//! Owns: the after-sales upsert, one statement per batch. A stored case is replaced only by a
//! strictly newer version (Temu's `updateAt`), or by a different body with the same `updateAt`
//! (invariant 2).
//!
//! Must not: open its own transaction or touch the sync cursor.

use super::RawJson;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::records::AfterSalesRecord;
use super::{inserted_flag, newest_per_key, on_conflict_where, Upserted};
use crate::db::schema::aftersales;
use crate::db::DbError;

#[derive(Insertable)]
#[diesel(table_name = aftersales)]
struct NewAfterSales<'a> {
    shop_id: i64,
    parent_after_sales_sn: &'a str,
    parent_order_sn: Option<&'a str>,
    status_group: Option<i32>,
    type_: Option<i32>,
    created_at_temu: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    raw: &'a RawJson,
}

impl<'a> NewAfterSales<'a> {
    fn new(shop_id: i64, r: &'a AfterSalesRecord) -> Self {
        Self {
            shop_id,
            parent_after_sales_sn: &r.parent_after_sales_sn,
            parent_order_sn: r.parent_order_sn.as_deref(),
            status_group: r.status_group,
            type_: r.kind,
            created_at_temu: r.created_at_temu,
            updated_at: r.updated_at,
            raw: &r.raw,
        }
    }
}

/// Upserts a batch of one shop's after-sales cases; older or identical records change nothing
/// (`unchanged`), and within the batch the newest record per `parent_after_sales_sn` wins.
pub async fn upsert_aftersales(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    records: &[AfterSalesRecord],
) -> Result<Upserted, DbError> {
    if records.is_empty() {
        return Ok(Upserted::default());
    }
    let batch = newest_per_key(
        records,
        |r| r.parent_after_sales_sn.as_str(),
        |later, earlier| later.updated_at < earlier.updated_at,
    );
    let rows: Vec<NewAfterSales<'_>> = batch
        .iter()
        .map(|r| NewAfterSales::new(shop_id, r))
        .collect();
    let flags: Vec<bool> = on_conflict_where(
        diesel::insert_into(aftersales::table)
            .values(&rows)
            .on_conflict((aftersales::shop_id, aftersales::parent_after_sales_sn))
            .do_update()
            .set((
                incoming!(aftersales:
                    parent_order_sn, status_group, type_, created_at_temu, updated_at, raw,
                ),
                aftersales::last_synced_at.eq(diesel::dsl::now),
            )),
        newer_or_changed_version!(aftersales),
    )
    .returning(inserted_flag())
    .get_results(conn)
    .await?;
    Ok(Upserted::from_returned(records.len(), flags))
}
