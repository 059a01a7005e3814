//! Shared by the store tests: a migrated throwaway database with a small pool, records built
//! from API-shaped JSON, and queries that read rows back.
//!
//! Owns test data and read-backs; must not assert anything itself.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use temu_sync::db::Database;
use temu_sync::store::*;
use temu_sync::temu::model::{AfterSales, Goods, OrderItem};
use temu_sync::temu::WithRaw;
use temu_sync::testkit::TestDatabase;

/// The lease TTL the tests use (long enough never to expire by itself during a test).
pub const TTL: Duration = Duration::from_secs(60);

pub async fn database(prefix: &str) -> (TestDatabase, Database) {
    TestDatabase::migrated(prefix)
        .await
        .expect("a migrated test database")
}

pub fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

pub fn parse<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> WithRaw<T> {
    serde_json::from_str(&value.to_string()).expect("decodes")
}

pub fn order_json(sn: &str, update_time: i64, status: i64, children: &[&str]) -> serde_json::Value {
    let children: Vec<_> = children
        .iter()
        .map(|c| {
            json!({
                "orderSn": c, "goodsId": 601, "skuId": "17", "orderStatus": status,
                "quantity": 2, "originalOrderQuantity": 2, "canceledQuantityBeforeShipment": 0,
                "fulfillmentType": "fulfillBySeller",
                "productList": [{"productSkuId": 17, "productId": "601", "extCode": "EXT-1",
                                 "soldFactor": 1}, {"productSkuId": 18}]
            })
        })
        .collect();
    json!({
        "parentOrderMap": {"parentOrderSn": sn, "parentOrderStatus": status,
                           "parentOrderTime": 1_700_000_000, "updateTime": update_time,
                           "expectShipLatestTime": 0, "regionId": 211, "siteId": "100"},
        "orderList": children
    })
}

pub fn order(sn: &str, update_time: i64, status: i64, children: &[&str]) -> OrderRecord {
    OrderRecord::from_api(&parse::<OrderItem>(order_json(
        sn,
        update_time,
        status,
        children,
    )))
    .expect("converts")
}

pub fn product(goods_id: &str, name: &str, skus: &[&str]) -> ProductRecord {
    let skus: Vec<_> = skus
        .iter()
        .map(|s| {
            json!({"skuId": s, "skuSn": format!("SN-{s}"), "stock": 5,
                         "specList": [{"parentSpecName": "Color", "specName": "red"}]})
        })
        .collect();
    ProductRecord::from_api(&parse::<Goods>(json!({
        "goodsId": goods_id, "goodsName": name, "outGoodsSn": "OUT", "quantity": 5,
        "price": "12.30", "currency": "USD", "skuInfoList": skus
    })))
    .expect("converts")
}

pub fn aftersale(sn: &str, update_at: i64, status_group: i64) -> AfterSalesRecord {
    AfterSalesRecord::from_api(&parse::<AfterSales>(json!({
        "parentAfterSalesSn": sn, "parentOrderSn": "PO-1", "afterSalesStatusGroup": status_group,
        "afterSalesType": 1, "createAt": 1_700_000_000, "updateAt": update_at
    })))
    .expect("converts")
}

#[derive(diesel::QueryableByName)]
pub struct N {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

pub async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<N>(conn)
        .await
        .expect("count")
        .n
}

#[derive(diesel::QueryableByName, Debug)]
pub struct OrderRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Nullable<diesel::sql_types::Integer>)]
    pub status: Option<i32>,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub items: String,
}

pub async fn order_row(conn: &mut AsyncPgConnection, shop_id: i64, sn: &str) -> OrderRow {
    diesel::sql_query(
        "SELECT o.id, o.status, o.updated_at,
                coalesce(string_agg(i.order_sn || ':' || coalesce(i.status::text, '-'), ','
                         ORDER BY i.order_sn), '') AS items
         FROM orders o LEFT JOIN order_items i ON i.order_id = o.id
         WHERE o.shop_id = $1 AND o.parent_order_sn = $2 GROUP BY o.id",
    )
    .bind::<BigInt, _>(shop_id)
    .bind::<Text, _>(sn)
    .get_result(conn)
    .await
    .expect("order row")
}

pub fn counts(inserted: u64, updated: u64, unchanged: u64) -> Upserted {
    Upserted {
        inserted,
        updated,
        unchanged,
    }
}
