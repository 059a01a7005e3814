//! Products with their SKUs, and soft removal of products a full run no longer lists.
//!
//! Owns: the product upsert (one statement per table per batch) and [`mark_products_removed`].
//! Products carry no update time, so the listing is the truth: a product is replaced when its raw
//! body differs from the stored one (or it had been removed); every listed product is stamped
//! with the run that saw it, which is what removal is decided from. Removal is soft (`removed_at`)
//! and undone when the product is listed again. SKUs are replaced with their product.
//!
//! Must not: delete product rows, or open its own transaction.

use bigdecimal::BigDecimal;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::RawJson;

use super::records::{ProductRecord, SkuRecord};
use super::{
    children_of_changed, inserted_flag, newest_per_key, on_conflict_where, ChangedRow, Upserted,
};
use crate::config::MAX_BATCH_SIZE;
use crate::db::schema::{product_skus, products};
use crate::db::DbError;

#[derive(Insertable)]
#[diesel(table_name = products)]
struct NewProduct<'a> {
    shop_id: i64,
    goods_id: &'a str,
    name: Option<&'a str>,
    out_goods_sn: Option<&'a str>,
    quantity: Option<i64>,
    price: Option<&'a BigDecimal>,
    currency: Option<&'a str>,
    raw: &'a RawJson,
    last_seen_run_id: Option<i64>,
}

#[derive(Insertable)]
#[diesel(table_name = product_skus)]
struct NewSku<'a> {
    product_id: i64,
    shop_id: i64,
    sku_id: &'a str,
    sku_sn: Option<&'a str>,
    stock: Option<i64>,
    spec: Option<&'a Value>,
}

impl<'a> NewProduct<'a> {
    fn new(shop_id: i64, run_id: i64, r: &'a ProductRecord) -> Self {
        Self {
            shop_id,
            goods_id: &r.goods_id,
            name: r.name.as_deref(),
            out_goods_sn: r.out_goods_sn.as_deref(),
            quantity: r.quantity,
            price: r.price.as_ref(),
            currency: r.currency.as_deref(),
            raw: &r.raw,
            last_seen_run_id: Some(run_id),
        }
    }
}

impl<'a> NewSku<'a> {
    fn new(product_id: i64, shop_id: i64, s: &'a SkuRecord) -> Self {
        Self {
            product_id,
            shop_id,
            sku_id: &s.sku_id,
            sku_sn: s.sku_sn.as_deref(),
            stock: s.stock,
            spec: s.spec.as_ref(),
        }
    }
}

/// Upserts a batch of one shop's products as listed by run `run_id`.
///
/// `inserted`: new products. `updated`: products whose raw body changed, or that had been
/// removed and are listed again. `unchanged`: identical products (and repeats within the batch;
/// the last listing of a `goods_id` wins). Every listed product gets `last_seen_run_id = run_id`
/// and a fresh `last_synced_at`, changed or not. SKUs of inserted and updated products are
/// replaced. Four statements whatever the batch size.
pub async fn upsert_products(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    run_id: i64,
    records: &[ProductRecord],
) -> Result<Upserted, DbError> {
    if records.is_empty() {
        return Ok(Upserted::default());
    }
    let batch = newest_per_key(records, |r| r.goods_id.as_str(), |_, _| false);
    let changed = upsert_product_rows(conn, shop_id, run_id, &batch).await?;
    let counts = Upserted::from_returned(records.len(), changed.iter().map(|c| c.2));
    // The unchanged ones were skipped by the upsert; they were still seen by this run.
    if changed.len() < batch.len() {
        mark_seen(conn, shop_id, run_id, &batch).await?;
    }
    if !changed.is_empty() {
        replace_skus(conn, shop_id, &batch, &changed).await?;
    }
    Ok(counts)
}

/// The `products` statement: the rows it inserted or replaced (a different body, or listed
/// again after removal).
async fn upsert_product_rows(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    run_id: i64,
    batch: &[&ProductRecord],
) -> Result<Vec<ChangedRow>, DbError> {
    let rows: Vec<NewProduct<'_>> = batch
        .iter()
        .map(|r| NewProduct::new(shop_id, run_id, r))
        .collect();
    let changed = on_conflict_where(
        diesel::insert_into(products::table)
            .values(&rows)
            .on_conflict((products::shop_id, products::goods_id))
            .do_update()
            .set((
                incoming!(products: name, out_goods_sn, quantity, price, currency, raw),
                products::removed_at.eq(None::<chrono::DateTime<chrono::Utc>>),
                products::last_seen_run_id.eq(excluded(products::last_seen_run_id)),
                products::last_synced_at.eq(diesel::dsl::now),
            )),
        products::raw
            .is_distinct_from(excluded(products::raw))
            .or(products::removed_at.is_not_null()),
    )
    .returning((products::id, products::goods_id, inserted_flag()))
    .get_results(conn)
    .await?;
    Ok(changed)
}

/// Stamps every product of the batch as seen by `run_id` (those the upsert skipped too).
async fn mark_seen(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    run_id: i64,
    batch: &[&ProductRecord],
) -> Result<(), DbError> {
    let seen: Vec<&str> = batch.iter().map(|r| r.goods_id.as_str()).collect();
    diesel::update(products::table)
        .filter(products::shop_id.eq(shop_id))
        .filter(products::goods_id.eq_any(&seen))
        .filter(products::last_seen_run_id.is_distinct_from(run_id))
        .set((
            products::last_seen_run_id.eq(run_id),
            products::last_synced_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces the SKUs of the `changed` products with those they list now.
async fn replace_skus(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    batch: &[&ProductRecord],
    changed: &[ChangedRow],
) -> Result<(), DbError> {
    let changed_ids: Vec<i64> = changed.iter().map(|c| c.0).collect();
    diesel::delete(product_skus::table.filter(product_skus::product_id.eq_any(&changed_ids)))
        .execute(conn)
        .await?;
    let skus = children_of_changed(
        batch,
        changed,
        |r| r.goods_id.as_str(),
        |r| r.skus.as_slice(),
        |s| s.sku_id.as_str(),
    );
    if skus.is_empty() {
        return Ok(());
    }
    let sku_rows: Vec<NewSku<'_>> = skus
        .iter()
        .map(|(product_id, s)| NewSku::new(*product_id, shop_id, s))
        .collect();
    // A SKU that moved to another product is taken over by it; at most MAX_BATCH_SIZE rows a
    // statement (PostgreSQL's 65 535 bind parameters).
    for rows in sku_rows.chunks(MAX_BATCH_SIZE) {
        diesel::insert_into(product_skus::table)
            .values(rows)
            .on_conflict((product_skus::shop_id, product_skus::sku_id))
            .do_update()
            .set(incoming!(product_skus: product_id, sku_sn, stock, spec))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Soft-removes the shop's products that run `run_id` did not list: `removed_at = now()` where
/// `last_seen_run_id` is another run (or none) and the product is not already removed. Returns
/// how many were removed. Never deletes.
///
/// Call it only after `run_id` walked the *complete* listing: after a partial run it would remove
/// every product the run did not reach (harmless — they come back when listed — but wrong).
pub async fn mark_products_removed(
    conn: &mut AsyncPgConnection,
    shop_id: i64,
    run_id: i64,
) -> Result<u64, DbError> {
    let n = diesel::update(products::table)
        .filter(products::shop_id.eq(shop_id))
        .filter(products::removed_at.is_null())
        .filter(products::last_seen_run_id.is_distinct_from(run_id))
        .set(products::removed_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    Ok(n as u64)
}
