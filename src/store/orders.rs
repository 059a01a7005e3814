//! Shops, and orders with their items.
//!
//! Owns: `shops` rows ([`ensure_shop`], [`set_shop_mall_id`]) and the order upsert: one
//! statement per table per batch; a stored order is replaced only by a strictly newer version
//! (Temu's `updateTime`), or by a different body with the same `updateTime`; an order's items are
//! replaced only when the order itself was inserted or replaced (invariant 2).
//!
//! Must not: open its own transaction or touch the sync cursor — the caller commits the rows and
//! the cursor together.

use super::RawJson;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::records::{OrderItemRecord, OrderRecord};
use super::{
    children_of_changed, inserted_flag, newest_per_key, on_conflict_where, ChangedRow, Upserted,
};
use crate::config::MAX_BATCH_SIZE;
use crate::db::schema::{order_items, orders, shops};
use crate::db::DbError;

/// The id of the shop named `name` (our configuration name), creating it if needed; `region` is
/// brought up to date.
pub async fn ensure_shop(
    conn: &mut AsyncPgConnection,
    name: &str,
    region: &str,
) -> Result<i64, DbError> {
    let id = diesel::insert_into(shops::table)
        .values((shops::name.eq(name), shops::region.eq(region)))
        .on_conflict(shops::name)
        .do_update()
        .set((
            shops::region.eq(excluded(shops::region)),
            shops::updated_at.eq(diesel::dsl::now),
        ))
        .returning(shops::id)
        .get_result(conn)
        .await?;
    Ok(id)
}

/// Records the shop's Temu `mallId` (learned from the token info).
pub async fn set_shop_mall_id(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    mall_id: &str,
) -> Result<(), DbError> {
    diesel::update(shops::table.find(shop_id))
        .filter(shops::mall_id.is_distinct_from(mall_id))
        .set((
            shops::mall_id.eq(mall_id),
            shops::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Insertable)]
#[diesel(table_name = orders)]
struct NewOrder<'a> {
    shop_id: i64,
    parent_order_sn: &'a str,
    status: Option<i32>,
    order_time: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    expect_ship_latest_time: Option<DateTime<Utc>>,
    region_id: Option<i64>,
    site_id: Option<i64>,
    parent_shipping_time: Option<DateTime<Utc>>,
    latest_delivery_time: Option<DateTime<Utc>>,
    labels: Option<&'a Value>,
    has_shipping_fee: Option<bool>,
    raw: &'a RawJson,
}

#[derive(Insertable)]
#[diesel(table_name = order_items)]
struct NewOrderItem<'a> {
    order_id: i64,
    shop_id: i64,
    order_sn: &'a str,
    goods_id: Option<&'a str>,
    sku_id: Option<&'a str>,
    status: Option<i32>,
    quantity: Option<i64>,
    original_quantity: Option<i64>,
    canceled_quantity_before_shipment: Option<i64>,
    fulfillment_type: Option<&'a str>,
    product_sku_id: Option<&'a str>,
    product_id: Option<&'a str>,
    ext_code: Option<&'a str>,
    inventory_deduction_warehouse_id: Option<&'a str>,
    inventory_deduction_warehouse_name: Option<&'a str>,
    order_payment_type: Option<&'a str>,
    labels: Option<&'a Value>,
    shipping_time: Option<DateTime<Utc>>,
}

impl<'a> NewOrderItem<'a> {
    fn new(order_id: i64, shop_id: i64, item: &'a OrderItemRecord) -> Self {
        Self {
            order_id,
            shop_id,
            order_sn: &item.order_sn,
            goods_id: item.goods_id.as_deref(),
            sku_id: item.sku_id.as_deref(),
            status: item.status,
            quantity: item.quantity,
            original_quantity: item.original_quantity,
            canceled_quantity_before_shipment: item.canceled_quantity_before_shipment,
            fulfillment_type: item.fulfillment_type.as_deref(),
            product_sku_id: item.product_sku_id.as_deref(),
            product_id: item.product_id.as_deref(),
            ext_code: item.ext_code.as_deref(),
            inventory_deduction_warehouse_id: item.inventory_deduction_warehouse_id.as_deref(),
            inventory_deduction_warehouse_name: item.inventory_deduction_warehouse_name.as_deref(),
            order_payment_type: item.order_payment_type.as_deref(),
            labels: item.labels.as_ref(),
            shipping_time: item.shipping_time,
        }
    }
}

impl<'a> NewOrder<'a> {
    fn new(shop_id: i64, r: &'a OrderRecord) -> Self {
        Self {
            shop_id,
            parent_order_sn: &r.parent_order_sn,
            status: r.status,
            order_time: r.order_time,
            updated_at: r.updated_at,
            expect_ship_latest_time: r.expect_ship_latest_time,
            region_id: r.region_id,
            site_id: r.site_id,
            parent_shipping_time: r.parent_shipping_time,
            latest_delivery_time: r.latest_delivery_time,
            labels: r.labels.as_ref(),
            has_shipping_fee: r.has_shipping_fee,
            raw: &r.raw,
        }
    }
}

/// Upserts a batch of orders of one shop and replaces the items of those that changed.
///
/// A stored order is replaced when the incoming `updated_at` is later, or equal with a different
/// raw body; an older or identical record leaves the row and its items untouched (`unchanged`).
/// Within the batch the newest record per `parent_order_sn` wins (the others count as
/// `unchanged`). Three statements whatever the batch size: upsert orders, delete the changed
/// orders' items, insert their items.
pub async fn upsert_orders(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    records: &[OrderRecord],
) -> Result<Upserted, DbError> {
    if records.is_empty() {
        return Ok(Upserted::default());
    }
    let batch = newest_per_key(
        records,
        |r| r.parent_order_sn.as_str(),
        |later, earlier| later.updated_at < earlier.updated_at,
    );
    let changed = upsert_order_rows(conn, shop_id, &batch).await?;
    let counts = Upserted::from_returned(records.len(), changed.iter().map(|c| c.2));
    if !changed.is_empty() {
        replace_order_items(conn, shop_id, &batch, &changed).await?;
    }
    Ok(counts)
}

/// The `orders` statement: the rows it inserted or replaced.
async fn upsert_order_rows(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    batch: &[&OrderRecord],
) -> Result<Vec<ChangedRow>, DbError> {
    let rows: Vec<NewOrder<'_>> = batch.iter().map(|r| NewOrder::new(shop_id, r)).collect();
    let changed = on_conflict_where(
        diesel::insert_into(orders::table)
            .values(&rows)
            .on_conflict((orders::shop_id, orders::parent_order_sn))
            .do_update()
            .set((
                incoming!(orders:
                    status, order_time, updated_at, expect_ship_latest_time, region_id, site_id,
                    parent_shipping_time, latest_delivery_time, labels, has_shipping_fee, raw,
                ),
                orders::last_synced_at.eq(diesel::dsl::now),
            )),
        newer_or_changed_version!(orders),
    )
    .returning((orders::id, orders::parent_order_sn, inserted_flag()))
    .get_results(conn)
    .await?;
    Ok(changed)
}

/// Replaces the items of the `changed` orders with those they list now.
async fn replace_order_items(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    batch: &[&OrderRecord],
    changed: &[ChangedRow],
) -> Result<(), DbError> {
    // Only a replaced order can have items; a just-inserted one has a new id (saves a statement
    // per batch on a backfill).
    let replaced_ids: Vec<i64> = changed.iter().filter(|c| !c.2).map(|c| c.0).collect();
    if !replaced_ids.is_empty() {
        diesel::delete(order_items::table.filter(order_items::order_id.eq_any(&replaced_ids)))
            .execute(conn)
            .await?;
    }
    let items = children_of_changed(
        batch,
        changed,
        |r| r.parent_order_sn.as_str(),
        |r| r.items.as_slice(),
        |item| item.order_sn.as_str(),
    );
    if items.is_empty() {
        return Ok(());
    }
    let item_rows: Vec<NewOrderItem<'_>> = items
        .iter()
        .map(|(order_id, item)| NewOrderItem::new(*order_id, shop_id, item))
        .collect();
    // A child order that moved to another parent is taken over by its new parent. A batch of
    // parents can carry any number of children: a statement takes at most MAX_BATCH_SIZE rows,
    // so the bind parameters stay under PostgreSQL's 65 535.
    for rows in item_rows.chunks(MAX_BATCH_SIZE) {
        diesel::insert_into(order_items::table)
            .values(rows)
            .on_conflict((order_items::shop_id, order_items::order_sn))
            .do_update()
            .set(incoming!(order_items:
                order_id, goods_id, sku_id, status, quantity, original_quantity,
                canceled_quantity_before_shipment, fulfillment_type, product_sku_id, product_id,
                ext_code, inventory_deduction_warehouse_id, inventory_deduction_warehouse_name,
                order_payment_type, labels, shipping_time,
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}
