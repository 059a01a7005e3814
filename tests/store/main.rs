//! The storage layer of the sync engine against the real local PostgreSQL (each test in a
//! database of its own): record conversion, idempotent upserts that never move back in time,
//! soft removal, leases and cursors, the run log, the status view, the schema file and the
//! migrations' `down.sql`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use temu_sync::config::DatabaseConfig;
use temu_sync::db::{migrate, Database, DbError};
use temu_sync::store::{self, *};
use temu_sync::temu::model::{AfterSales, Goods, OrderItem};
use temu_sync::temu::WithRaw;
use temu_sync::testkit::TestDatabase;

// ---------------------------------------------------------------------------------------------
// Helpers

async fn database(prefix: &str) -> (TestDatabase, Database) {
    let test_db = TestDatabase::create(prefix).await.expect("test database");
    let cfg = DatabaseConfig {
        url: test_db.url(),
        pool_size: 2,
        max_overflow: 2,
        pool_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(10),
        ..DatabaseConfig::default()
    };
    let db = Database::new(cfg).expect("valid config");
    migrate::run_pending(db.connector())
        .await
        .expect("migrations apply");
    db.rebuild_pool();
    (test_db, db)
}

fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

fn parse<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> WithRaw<T> {
    serde_json::from_str(&value.to_string()).expect("decodes")
}

fn order_json(sn: &str, update_time: i64, status: i64, children: &[&str]) -> serde_json::Value {
    let children: Vec<_> = children
        .iter()
        .map(|c| {
            json!({
                "orderSn": c, "goodsId": 601, "skuId": "17", "orderStatus": status,
                "quantity": 2, "originalOrderQuantity": 2, "canceledQuantityBeforeShipment": 0,
                "fulfillmentType": 0,
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

fn order(sn: &str, update_time: i64, status: i64, children: &[&str]) -> OrderRecord {
    OrderRecord::from_api(&parse::<OrderItem>(order_json(
        sn,
        update_time,
        status,
        children,
    )))
    .expect("converts")
}

fn product(goods_id: &str, name: &str, skus: &[&str]) -> ProductRecord {
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

fn aftersale(sn: &str, update_at: i64, status_group: i64) -> AfterSalesRecord {
    AfterSalesRecord::from_api(&parse::<AfterSales>(json!({
        "parentAfterSalesSn": sn, "parentOrderSn": "PO-1", "afterSalesStatusGroup": status_group,
        "afterSalesType": 1, "createAt": 1_700_000_000, "updateAt": update_at
    })))
    .expect("converts")
}

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<N>(conn)
        .await
        .expect("count")
        .n
}

#[derive(diesel::QueryableByName, Debug)]
struct OrderRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<diesel::sql_types::Integer>)]
    status: Option<i32>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    items: String,
}

async fn order_row(conn: &mut AsyncPgConnection, shop_id: i64, sn: &str) -> OrderRow {
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

fn counts(inserted: u64, updated: u64, unchanged: u64) -> Upserted {
    Upserted {
        inserted,
        updated,
        unchanged,
    }
}

// ---------------------------------------------------------------------------------------------
// Conversion

#[test]
fn order_conversion_handles_nulls_string_ids_and_keeps_unknown_fields() {
    let raw = json!({
        "parentOrderMap": {"parentOrderSn": "PO-211-1", "parentOrderStatus": "2",
                           "parentOrderTime": null, "updateTime": "1700000500",
                           "expectShipLatestTime": 1_700_100_000_000_i64, "regionId": 211,
                           "siteId": null, "brandNewField": {"nested": [1, 2]}},
        "orderList": [
            {"orderSn": "O-1", "goodsId": "601", "skuId": 17, "orderStatus": 2, "quantity": "3",
             "productList": [{"productSkuId": 17, "productId": 601, "extCode": null},
                             {"productSkuId": 99}],
             "mysteryChildField": true},
            {"orderSn": "O-2", "goodsId": null, "productList": null}
        ],
        "itemLevelExtra": "kept"
    });
    let record = OrderRecord::from_api(&parse::<OrderItem>(raw.clone())).unwrap();
    assert_eq!(record.parent_order_sn, "PO-211-1");
    assert_eq!(record.status, Some(2));
    assert_eq!(record.order_time, None);
    assert_eq!(record.updated_at, ts(1_700_000_500));
    // Milliseconds recognised.
    assert_eq!(record.expect_ship_latest_time, Some(ts(1_700_100_000)));
    assert_eq!(record.region_id, Some(211));
    assert_eq!(record.site_id, None);
    assert_eq!(
        record.raw.to_value(),
        raw,
        "raw is the whole record, unknown fields included"
    );
    assert_eq!(record.items.len(), 2);
    let first = &record.items[0];
    assert_eq!(first.goods_id.as_deref(), Some("601"));
    assert_eq!(first.sku_id.as_deref(), Some("17"));
    assert_eq!(first.quantity, Some(3));
    assert_eq!(
        first.product_sku_id.as_deref(),
        Some("17"),
        "productList[0]"
    );
    assert_eq!(first.product_id.as_deref(), Some("601"));
    assert_eq!(first.ext_code, None);
    let second = &record.items[1];
    assert_eq!(second.goods_id, None);
    assert_eq!(second.product_sku_id, None);
}

#[test]
fn conversion_without_a_usable_update_time_is_a_typed_error() {
    let mut raw = order_json("PO-1", 0, 1, &[]);
    raw["parentOrderMap"]["updateTime"] = json!(null);
    assert!(matches!(
        OrderRecord::from_api(&parse::<OrderItem>(raw.clone())),
        Err(RecordError::MissingUpdateTime { field: "updateTime", ref key, .. }) if key == "PO-1"
    ));
    raw["parentOrderMap"]["updateTime"] = json!(-5);
    assert!(matches!(
        OrderRecord::from_api(&parse::<OrderItem>(raw.clone())),
        Err(RecordError::InvalidTime { value: -5, .. })
    ));
    raw["parentOrderMap"]["updateTime"] = json!(i64::MAX);
    assert!(matches!(
        OrderRecord::from_api(&parse::<OrderItem>(raw.clone())),
        Err(RecordError::InvalidTime { .. })
    ));
    raw["parentOrderMap"]["updateTime"] = json!(1_700_000_000);
    raw["parentOrderMap"]["parentOrderStatus"] = json!(1_i64 << 40);
    assert!(matches!(
        OrderRecord::from_api(&parse::<OrderItem>(raw.clone())),
        Err(RecordError::OutOfRange {
            field: "parentOrderStatus",
            ..
        })
    ));
    raw["parentOrderMap"]["parentOrderStatus"] = json!(1);
    raw["parentOrderMap"]["parentOrderSn"] = json!("  ");
    assert!(matches!(
        OrderRecord::from_api(&parse::<OrderItem>(raw)),
        Err(RecordError::MissingKey { .. })
    ));
    let no_update = parse::<AfterSales>(json!({"parentAfterSalesSn": "AS-1", "createAt": 5}));
    assert!(matches!(
        AfterSalesRecord::from_api(&no_update),
        Err(RecordError::MissingUpdateTime {
            field: "updateAt",
            ..
        })
    ));
}

#[test]
fn product_and_aftersales_conversion() {
    let goods = parse::<Goods>(json!({
        "goodsId": 601, "goodsName": "Mug\u{0}", "price": 12.5, "currency": "USD",
        "skuInfoList": [{"skuId": 17, "stock": "4", "specList": null},
                        {"skuId": "18", "specList": [{"specName": "red"}]}],
        "futureField": [1]
    }));
    let p = ProductRecord::from_api(&goods).unwrap();
    assert_eq!(p.goods_id, "601");
    assert_eq!(
        p.name.as_deref(),
        Some("Mug\u{FFFD}"),
        "NUL cannot be stored"
    );
    assert_eq!(p.price, Some("12.5".parse().unwrap()));
    assert_eq!(p.raw.to_value()["futureField"], json!([1]));
    assert_eq!(p.raw.to_value()["goodsName"], json!("Mug\u{FFFD}"));
    assert_eq!(p.skus.len(), 2);
    assert_eq!(p.skus[0].stock, Some(4));
    assert_eq!(p.skus[0].spec, None);
    assert_eq!(p.skus[1].spec, Some(json!([{"specName": "red"}])));
    for (price, expected) in [
        (json!("12.30"), Some("12.30")),
        (json!(" 7 "), Some("7")),
        (json!({"amount": 1}), None),
        (json!("n/a"), None),
        (json!(null), None),
    ] {
        let g = parse::<Goods>(json!({"goodsId": "1", "price": price}));
        let p = ProductRecord::from_api(&g).unwrap();
        assert_eq!(p.price, expected.map(|e| e.parse().unwrap()), "{price}");
    }

    let a = AfterSalesRecord::from_api(&parse::<AfterSales>(json!({
        "parentAfterSalesSn": "AS-1", "parentOrderSn": null, "afterSalesStatusGroup": "3",
        "afterSalesType": 2, "createAt": 1_700_000_000_000_i64, "updateAt": 1_700_000_100,
        "extraThing": "x"
    })))
    .unwrap();
    assert_eq!(a.parent_order_sn, None);
    assert_eq!(a.status_group, Some(3));
    assert_eq!(a.kind, Some(2));
    assert_eq!(a.created_at_temu, Some(ts(1_700_000_000)));
    assert_eq!(a.updated_at, ts(1_700_000_100));
    assert_eq!(a.raw.to_value()["extraThing"], json!("x"));
}

// ---------------------------------------------------------------------------------------------
// Orders

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_update_forward_only_and_items_follow_their_parent() {
    let (_t, db) = database("store_orders").await;
    let mut conn = db.checkout("test").await.unwrap();
    let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();

    let v1 = order("PO-1", 1_000, 1, &["O-1", "O-2"]);
    let got = upsert_orders(&mut conn, shop, std::slice::from_ref(&v1))
        .await
        .unwrap();
    assert_eq!(got, counts(1, 0, 0));
    let row1 = order_row(&mut conn, shop, "PO-1").await;
    assert_eq!(row1.items, "O-1:1,O-2:1");

    // Newer: row and items replaced (O-2 dropped, O-3 added).
    let v2 = order("PO-1", 2_000, 2, &["O-1", "O-3"]);
    let got = upsert_orders(&mut conn, shop, std::slice::from_ref(&v2))
        .await
        .unwrap();
    assert_eq!(got, counts(0, 1, 0));
    let row2 = order_row(&mut conn, shop, "PO-1").await;
    assert_eq!(row2.id, row1.id, "same row, updated in place");
    assert_eq!(row2.status, Some(2));
    assert_eq!(row2.updated_at, ts(2_000));
    assert_eq!(row2.items, "O-1:2,O-3:2");

    // Older: nothing moves back, items untouched.
    let stale = order("PO-1", 1_500, 1, &["O-9"]);
    let got = upsert_orders(&mut conn, shop, std::slice::from_ref(&stale))
        .await
        .unwrap();
    assert_eq!(got, counts(0, 0, 1));
    let row3 = order_row(&mut conn, shop, "PO-1").await;
    assert_eq!(row3.status, Some(2));
    assert_eq!(row3.updated_at, ts(2_000));
    assert_eq!(row3.items, "O-1:2,O-3:2");
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM order_items").await,
        2
    );
    let raw_status = count(
        &mut conn,
        "SELECT (raw->'parentOrderMap'->>'parentOrderStatus')::bigint AS n FROM orders",
    )
    .await;
    assert_eq!(raw_status, 2, "raw not moved back either");

    // Same time, different body: taken (the latest fetch of an unordered pair wins).
    let same_time = order("PO-1", 2_000, 4, &["O-1", "O-3"]);
    let got = upsert_orders(&mut conn, shop, std::slice::from_ref(&same_time))
        .await
        .unwrap();
    assert_eq!(got, counts(0, 1, 0));
    assert_eq!(
        order_row(&mut conn, shop, "PO-1").await.items,
        "O-1:4,O-3:4"
    );

    // Within one batch the newest version wins, whatever its position.
    let got = upsert_orders(
        &mut conn,
        shop,
        &[
            order("PO-2", 3_000, 5, &["O-21"]),
            order("PO-2", 2_500, 1, &["O-20"]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(got, counts(1, 0, 1));
    let po2 = order_row(&mut conn, shop, "PO-2").await;
    assert_eq!((po2.status, po2.items.as_str()), (Some(5), "O-21:5"));
    let got = upsert_orders(
        &mut conn,
        shop,
        &[
            order("PO-3", 1_000, 1, &["O-30"]),
            order("PO-3", 2_000, 3, &["O-31"]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(got, counts(1, 0, 1));
    let po3 = order_row(&mut conn, shop, "PO-3").await;
    assert_eq!((po3.status, po3.items.as_str()), (Some(3), "O-31:3"));
}

/// `jsonb` refuses the escape `\u0000`; the raw text is bound as sent, so it must be rewritten or
/// one odd field would fail the whole batch. (Unpaired surrogates never get this far: the client's
/// decoding rejects them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_json_with_escapes_postgres_refuses_is_stored_with_replacements() {
    let (_t, db) = database("store_raw_escapes").await;
    let mut conn = db.checkout("test").await.unwrap();
    let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
    let text = r#"{"parentOrderMap": {"parentOrderSn": "PO-E", "updateTime": 1000,
        "note\u0000": "a\u0000b", "pair": "\ud83d\ude00", "path": "C:\\u0000"},
        "orderList": []}"#;
    let item: WithRaw<OrderItem> = serde_json::from_str(text).expect("decodes");
    let record = OrderRecord::from_api(&item).expect("converts");
    let got = upsert_orders(&mut conn, shop, std::slice::from_ref(&record))
        .await
        .expect("stored, not refused by jsonb");
    assert_eq!(got, counts(1, 0, 0));

    #[derive(diesel::QueryableByName)]
    struct Raw {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        raw: serde_json::Value,
    }
    let row: Raw = diesel::sql_query("SELECT raw->'parentOrderMap' AS raw FROM orders")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        row.raw,
        json!({"parentOrderSn": "PO-E", "updateTime": 1000, "note\u{FFFD}": "a\u{FFFD}b",
               "pair": "\u{1F600}", "path": "C:\\u0000"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_batch_twice_changes_nothing_the_second_time() {
    let (_t, db) = database("store_idem").await;
    let mut conn = db.checkout("test").await.unwrap();
    let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
    let batch: Vec<OrderRecord> = (0..100)
        .map(|i| {
            let children = [format!("O-{i}-a"), format!("O-{i}-b"), format!("O-{i}-c")];
            let refs: Vec<&str> = children.iter().map(String::as_str).collect();
            order(&format!("PO-{i}"), 1_000 + i, 1, &refs)
        })
        .collect();
    let first = upsert_orders(&mut conn, shop, &batch).await.unwrap();
    assert_eq!(first, counts(100, 0, 0));
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM order_items").await,
        300
    );
    let ids_before = count(&mut conn, "SELECT sum(id)::bigint AS n FROM order_items").await;

    let second = upsert_orders(&mut conn, shop, &batch).await.unwrap();
    assert_eq!(second, counts(0, 0, 100));
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM order_items").await,
        300
    );
    let ids_after = count(&mut conn, "SELECT sum(id)::bigint AS n FROM order_items").await;
    assert_eq!(
        ids_before, ids_after,
        "items of unchanged orders are not rewritten"
    );

    let asales: Vec<_> = (0..10)
        .map(|i| aftersale(&format!("AS-{i}"), 50, 1))
        .collect();
    assert_eq!(
        upsert_aftersales(&mut conn, shop, &asales).await.unwrap(),
        counts(10, 0, 0)
    );
    assert_eq!(
        upsert_aftersales(&mut conn, shop, &asales).await.unwrap(),
        counts(0, 0, 10)
    );
    let products: Vec<_> = (0..10)
        .map(|i| product(&format!("G-{i}"), "mug", &[&format!("S-{i}")]))
        .collect();
    assert_eq!(
        upsert_products(&mut conn, shop, 1, &products)
            .await
            .unwrap(),
        counts(10, 0, 0)
    );
    assert_eq!(
        upsert_products(&mut conn, shop, 1, &products)
            .await
            .unwrap(),
        counts(0, 0, 10)
    );
    assert_eq!(
        upsert_orders(&mut conn, shop, &[]).await.unwrap(),
        counts(0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_keys_are_unique_per_shop() {
    let (_t, db) = database("store_keys").await;
    let mut conn = db.checkout("test").await.unwrap();
    let us = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
    let eu = ensure_shop(&mut conn, "eu-main", "eu").await.unwrap();
    assert_ne!(us, eu);
    assert_eq!(
        ensure_shop(&mut conn, "us-main", "us2").await.unwrap(),
        us,
        "ensure_shop finds the shop by name"
    );
    set_shop_mall_id(&mut conn, us, "634418212345")
        .await
        .unwrap();

    for shop in [us, eu] {
        let o = upsert_orders(&mut conn, shop, &[order("PO-1", 10, 1, &["O-1"])]).await;
        assert_eq!(o.unwrap(), counts(1, 0, 0));
        let p = upsert_products(&mut conn, shop, 1, &[product("601", "mug", &["17"])]).await;
        assert_eq!(p.unwrap(), counts(1, 0, 0));
        let a = upsert_aftersales(&mut conn, shop, &[aftersale("AS-1", 10, 1)]).await;
        assert_eq!(a.unwrap(), counts(1, 0, 0));
    }
    for table in [
        "orders",
        "order_items",
        "products",
        "product_skus",
        "aftersales",
    ] {
        let n = count(&mut conn, &format!("SELECT count(*) AS n FROM {table}")).await;
        assert_eq!(n, 2, "{table}: one row per shop");
    }
    let region = count(
        &mut conn,
        "SELECT count(*) AS n FROM shops WHERE region = 'us2' AND mall_id = '634418212345'",
    )
    .await;
    assert_eq!(region, 1);
}

// ---------------------------------------------------------------------------------------------
// Products

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_absent_from_a_run_are_soft_removed_and_come_back() {
    let (_t, db) = database("store_products").await;
    let mut conn = db.checkout("test").await.unwrap();
    let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
    let other = ensure_shop(&mut conn, "eu-main", "eu").await.unwrap();
    upsert_products(&mut conn, other, 1, &[product("X", "x", &[])])
        .await
        .unwrap();

    let run1 = 1;
    let got = upsert_products(
        &mut conn,
        shop,
        run1,
        &[
            product("A", "a", &["A1", "A2"]),
            product("B", "b", &["B1"]),
            product("C", "c", &[]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(got, counts(3, 0, 0));
    assert_eq!(
        mark_products_removed(&mut conn, shop, run1).await.unwrap(),
        0
    );

    // Run 2 lists A unchanged and B changed (one SKU less); C is gone.
    let run2 = 2;
    let got = upsert_products(
        &mut conn,
        shop,
        run2,
        &[product("A", "a", &["A1", "A2"]), product("B", "b2", &[])],
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        counts(0, 1, 1),
        "only a changed body counts as updated"
    );
    assert_eq!(
        mark_products_removed(&mut conn, shop, run2).await.unwrap(),
        1
    );
    let removed = count(
        &mut conn,
        "SELECT count(*) AS n FROM products WHERE removed_at IS NOT NULL",
    )
    .await;
    assert_eq!(removed, 1);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM products WHERE goods_id = 'C' AND removed_at IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM products").await,
        4,
        "never deleted"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM product_skus WHERE sku_id LIKE 'B%'"
        )
        .await,
        0,
        "SKUs replaced with their product"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM product_skus WHERE sku_id LIKE 'A%'"
        )
        .await,
        2
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM products WHERE shop_id = (SELECT id FROM shops WHERE name = 'eu-main') AND removed_at IS NULL").await,
        1,
        "another shop's products are not touched"
    );
    // Removing again is a no-op.
    assert_eq!(
        mark_products_removed(&mut conn, shop, run2).await.unwrap(),
        0
    );

    // Run 3 lists C again, identical: it comes back and counts as updated.
    let run3 = 3;
    let got = upsert_products(
        &mut conn,
        shop,
        run3,
        &[
            product("A", "a", &["A1", "A2"]),
            product("B", "b2", &[]),
            product("C", "c", &[]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(got, counts(0, 1, 2));
    assert_eq!(
        mark_products_removed(&mut conn, shop, run3).await.unwrap(),
        0
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM products WHERE removed_at IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM products WHERE last_seen_run_id = 3"
        )
        .await,
        3,
        "unchanged products are stamped with the run that saw them"
    );
    let price = count(
        &mut conn,
        "SELECT count(*) AS n FROM products WHERE price = 12.30 AND currency = 'USD'",
    )
    .await;
    assert_eq!(price, 4);
}

// ---------------------------------------------------------------------------------------------
// After-sales

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aftersales_move_forward_only() {
    let (_t, db) = database("store_as").await;
    let mut conn = db.checkout("test").await.unwrap();
    let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
    assert_eq!(
        upsert_aftersales(&mut conn, shop, &[aftersale("AS-1", 100, 1)])
            .await
            .unwrap(),
        counts(1, 0, 0)
    );
    assert_eq!(
        upsert_aftersales(&mut conn, shop, &[aftersale("AS-1", 200, 3)])
            .await
            .unwrap(),
        counts(0, 1, 0)
    );
    assert_eq!(
        upsert_aftersales(&mut conn, shop, &[aftersale("AS-1", 150, 2)])
            .await
            .unwrap(),
        counts(0, 0, 1)
    );
    let n = count(
        &mut conn,
        "SELECT status_group::bigint AS n FROM aftersales WHERE parent_after_sales_sn = 'AS-1'",
    )
    .await;
    assert_eq!(n, 3);
    let t = count(
        &mut conn,
        "SELECT extract(epoch FROM updated_at)::bigint AS n FROM aftersales",
    )
    .await;
    assert_eq!(t, 200);
}

// ---------------------------------------------------------------------------------------------
// Leases and cursor

const TTL: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_contending_owners_gets_the_lease() {
    let (_t, db) = database("store_lease").await;
    let shop = {
        let mut conn = db.checkout("test").await.unwrap();
        ensure_shop(&mut conn, "us-main", "us").await.unwrap()
    };
    // Both at once, each on its own connection, many times over fresh streams.
    for stream in store::STREAMS {
        let (a, b) = tokio::join!(
            async {
                let mut c = db.checkout("a").await.unwrap();
                try_acquire_lease(&mut c, shop, stream, "daemon-a", TTL).await
            },
            async {
                let mut c = db.checkout("b").await.unwrap();
                try_acquire_lease(&mut c, shop, stream, "daemon-b", TTL).await
            },
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            a.is_some() != b.is_some(),
            "{stream}: exactly one wins: {a:?} / {b:?}"
        );
        let winner = a.or(b).unwrap();
        assert_eq!(winner.took_over_from, None);
        assert_eq!(winner.cursor, None);
    }

    let mut conn = db.checkout("test").await.unwrap();
    let holder = |s: &[StreamStatus]| s[0].lease_owner.clone().unwrap();
    let status = stream_status(&mut conn).await.unwrap();
    let owner = holder(&status);
    let other = if owner == "daemon-a" {
        "daemon-b"
    } else {
        "daemon-a"
    };
    let stream = status[0].stream.clone();
    // The holder may take it again; the other may not; after release the other may.
    assert!(try_acquire_lease(&mut conn, shop, &stream, &owner, TTL)
        .await
        .unwrap()
        .is_some());
    assert!(try_acquire_lease(&mut conn, shop, &stream, other, TTL)
        .await
        .unwrap()
        .is_none());
    release_lease(&mut conn, shop, &stream, other)
        .await
        .unwrap();
    assert!(
        try_acquire_lease(&mut conn, shop, &stream, other, TTL)
            .await
            .unwrap()
            .is_none(),
        "release by a non-holder does nothing"
    );
    release_lease(&mut conn, shop, &stream, &owner)
        .await
        .unwrap();
    let lease = try_acquire_lease(&mut conn, shop, &stream, other, TTL)
        .await
        .unwrap()
        .expect("free after release");
    assert_eq!(
        lease.took_over_from, None,
        "a released lease is not a take-over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contender_waits_for_an_uncommitted_holder_and_then_loses() {
    let (_t, db) = database("store_lease_wait").await;
    let shop = {
        let mut conn = db.checkout("test").await.unwrap();
        let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
        // The state row exists and the lease is free.
        record_success(&mut conn, shop, "orders").await.unwrap();
        shop
    };
    let (taken_tx, taken_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let db = db.clone();
        tokio::spawn(async move {
            db.transaction("holder", Duration::from_secs(10), |conn| {
                Box::pin(async move {
                    let lease = try_acquire_lease(conn, shop, "orders", "daemon-a", TTL).await?;
                    assert!(lease.is_some());
                    let _ = taken_tx.send(());
                    // Hold the transaction open while the contender tries.
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Ok::<_, DbError>(())
                })
            })
            .await
        })
    };
    taken_rx.await.unwrap();
    let mut conn = db.checkout("contender").await.unwrap();
    let started = std::time::Instant::now();
    let lease = try_acquire_lease(&mut conn, shop, "orders", "daemon-b", TTL)
        .await
        .unwrap();
    assert!(
        lease.is_none(),
        "the contender must see the committed holder, not the free lease it first saw"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "it waited for the lock"
    );
    holder.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_and_the_old_owner_loses_it() {
    let (_t, db) = database("store_takeover").await;
    let mut conn = db.checkout("test").await.unwrap();
    let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
    let short = Duration::from_millis(300);

    let a = try_acquire_lease(&mut conn, shop, "orders", "daemon-a", short)
        .await
        .unwrap()
        .expect("free");
    assert_eq!(a.took_over_from, None);
    advance_cursor(&mut conn, shop, "orders", "daemon-a", ts(1_000))
        .await
        .unwrap();
    assert!(renew_lease(&mut conn, shop, "orders", "daemon-a", short)
        .await
        .unwrap());
    assert!(
        try_acquire_lease(&mut conn, shop, "orders", "daemon-b", TTL)
            .await
            .unwrap()
            .is_none()
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    // Expired but not taken: still a's, so renewing works.
    assert!(renew_lease(&mut conn, shop, "orders", "daemon-a", short)
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let b = try_acquire_lease(&mut conn, shop, "orders", "daemon-b", TTL)
        .await
        .unwrap()
        .expect("expired lease can be taken over");
    assert_eq!(b.took_over_from.as_deref(), Some("daemon-a"));
    assert_eq!(
        b.cursor,
        Some(ts(1_000)),
        "the new owner resumes from the cursor"
    );
    assert!(
        !renew_lease(&mut conn, shop, "orders", "daemon-a", TTL)
            .await
            .unwrap(),
        "renew fails after a take-over"
    );
    let err = advance_cursor(&mut conn, shop, "orders", "daemon-a", ts(5_000)).await;
    assert!(
        matches!(err, Err(DbError::LeaseLost { shop_id, ref stream, ref owner })
            if shop_id == shop && stream == "orders" && owner == "daemon-a"),
        "{err:?}"
    );
    let again = try_acquire_lease(&mut conn, shop, "orders", "daemon-b", TTL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.cursor, Some(ts(1_000)), "a non-owner left the cursor");
    assert_eq!(again.took_over_from, None, "re-taking our own lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_never_moves_backwards_and_rolls_back_with_its_data() {
    let (_t, db) = database("store_cursor").await;
    let shop = {
        let mut conn = db.checkout("test").await.unwrap();
        let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
        try_acquire_lease(&mut conn, shop, "orders", "daemon-a", TTL)
            .await
            .unwrap()
            .unwrap();
        shop
    };
    let cursor_of = |db: Database| async move {
        let mut conn = db.checkout("test").await.unwrap();
        stream_status(&mut conn).await.unwrap()[0].cursor
    };

    // Rows and cursor commit together.
    db.transaction("batch", Duration::from_secs(10), |conn| {
        Box::pin(async move {
            upsert_orders(conn, shop, &[order("PO-1", 10, 1, &["O-1"])]).await?;
            advance_cursor(conn, shop, "orders", "daemon-a", ts(2_000)).await
        })
    })
    .await
    .unwrap();
    assert_eq!(cursor_of(db.clone()).await, Some(ts(2_000)));

    // Backwards is ignored, forwards moves.
    {
        let mut conn = db.checkout("test").await.unwrap();
        advance_cursor(&mut conn, shop, "orders", "daemon-a", ts(1_000))
            .await
            .unwrap();
    }
    assert_eq!(cursor_of(db.clone()).await, Some(ts(2_000)));

    // A non-owner's transaction rolls back whole: neither its rows nor its cursor land.
    let result: Result<(), DbError> = db
        .transaction("batch", Duration::from_secs(10), |conn| {
            Box::pin(async move {
                upsert_orders(conn, shop, &[order("PO-2", 20, 1, &["O-2"])]).await?;
                advance_cursor(conn, shop, "orders", "daemon-b", ts(3_000)).await
            })
        })
        .await;
    assert!(matches!(result, Err(DbError::LeaseLost { .. })));
    assert_eq!(cursor_of(db.clone()).await, Some(ts(2_000)));
    let mut conn = db.checkout("test").await.unwrap();
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM orders WHERE parent_order_sn = 'PO-2'"
        )
        .await,
        0
    );
    advance_cursor(&mut conn, shop, "orders", "daemon-a", ts(3_000))
        .await
        .unwrap();
    drop(conn);
    assert_eq!(cursor_of(db.clone()).await, Some(ts(3_000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_inside_a_caller_transaction_rolls_back_with_it() {
    let (_t, db) = database("store_lease_tx").await;
    let shop = {
        let mut conn = db.checkout("test").await.unwrap();
        ensure_shop(&mut conn, "us-main", "us").await.unwrap()
    };
    let r: Result<(), DbError> = db
        .transaction("lease", Duration::from_secs(10), |conn| {
            Box::pin(async move {
                let lease = try_acquire_lease(conn, shop, "orders", "daemon-a", TTL).await?;
                assert!(lease.is_some());
                Err(DbError::Config("abort".into()))
            })
        })
        .await;
    assert!(r.is_err());
    let mut conn = db.checkout("test").await.unwrap();
    assert!(
        try_acquire_lease(&mut conn, shop, "orders", "daemon-b", TTL)
            .await
            .unwrap()
            .is_some(),
        "the savepoint joined the caller's transaction and rolled back with it"
    );
}

// ---------------------------------------------------------------------------------------------
// Runs and status

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_runs_of_other_instances_are_abandoned() {
    let (_t, db) = database("store_runs").await;
    let mut conn = db.checkout("test").await.unwrap();
    let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
    let dead = start_run(&mut conn, shop, "orders", "dead-1", None)
        .await
        .unwrap();
    let done = start_run(&mut conn, shop, "orders", "dead-1", None)
        .await
        .unwrap();
    finish_run(&mut conn, done, RunStatus::Succeeded, None, None)
        .await
        .unwrap();
    let other_stream = start_run(&mut conn, shop, "products", "dead-1", None)
        .await
        .unwrap();
    let mine = start_run(&mut conn, shop, "orders", "alive-2", None)
        .await
        .unwrap();

    assert_eq!(
        abandon_stale_runs(&mut conn, shop, "orders", "alive-2")
            .await
            .unwrap(),
        1
    );
    #[derive(diesel::QueryableByName)]
    struct S {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        status: String,
    }
    let rows: Vec<S> = diesel::sql_query("SELECT id, status FROM sync_runs ORDER BY id")
        .load(&mut *conn)
        .await
        .unwrap();
    let by_id: BTreeMap<i64, String> = rows.into_iter().map(|r| (r.id, r.status)).collect();
    assert_eq!(by_id[&dead], "abandoned");
    assert_eq!(by_id[&done], "succeeded");
    assert_eq!(by_id[&other_stream], "running");
    assert_eq!(by_id[&mine], "running");

    // The abandoned run's late finish does not overwrite its outcome.
    finish_run(&mut conn, dead, RunStatus::Succeeded, None, None)
        .await
        .unwrap();
    let n = count(
        &mut conn,
        &format!("SELECT count(*) AS n FROM sync_runs WHERE id = {dead} AND status = 'abandoned' AND finished_at IS NOT NULL"),
    )
    .await;
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_status_joins_state_shop_and_last_run() {
    let (_t, db) = database("store_status").await;
    let mut conn = db.checkout("test").await.unwrap();
    let us = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
    let eu = ensure_shop(&mut conn, "eu-main", "eu").await.unwrap();

    try_acquire_lease(&mut conn, us, "orders", "daemon-a", TTL)
        .await
        .unwrap()
        .unwrap();
    advance_cursor(&mut conn, us, "orders", "daemon-a", ts(5_000))
        .await
        .unwrap();
    let old = start_run(&mut conn, us, "orders", "daemon-a", None)
        .await
        .unwrap();
    finish_run(
        &mut conn,
        old,
        RunStatus::Failed,
        Some("retryable"),
        Some("boom"),
    )
    .await
    .unwrap();
    let run = start_run(
        &mut conn,
        us,
        "orders",
        "daemon-a",
        Some((ts(4_000), ts(6_000))),
    )
    .await
    .unwrap();
    update_run_progress(&mut conn, run, 3, 250, 200, 50)
        .await
        .unwrap();
    record_failure(&mut conn, us, "orders", "retryable", "HTTP 503")
        .await
        .unwrap();
    record_success(&mut conn, us, "orders").await.unwrap();
    record_failure(&mut conn, us, "orders", "fatal", "token expired\u{0}")
        .await
        .unwrap();
    park(&mut conn, eu, "products", "re-authorize the shop")
        .await
        .unwrap();

    let status = stream_status(&mut conn).await.unwrap();
    assert_eq!(status.len(), 2);
    let (eu_row, us_row) = (&status[0], &status[1]);
    assert_eq!(
        (eu_row.shop.as_str(), eu_row.stream.as_str()),
        ("eu-main", "products")
    );
    assert_eq!(
        eu_row.parked_reason.as_deref(),
        Some("re-authorize the shop")
    );
    assert_eq!(eu_row.last_run, None);
    assert_eq!(eu_row.lease_owner, None);

    assert_eq!((us_row.shop.as_str(), us_row.shop_id), ("us-main", us));
    assert_eq!(us_row.cursor, Some(ts(5_000)));
    assert_eq!(us_row.lease_owner.as_deref(), Some("daemon-a"));
    assert!(us_row.lease_expires_at.unwrap() > Utc::now());
    assert!(us_row.last_success_at.is_some(), "kept by a later failure");
    assert_eq!(us_row.last_error.as_deref(), Some("token expired\u{FFFD}"));
    assert_eq!(us_row.last_error_class.as_deref(), Some("fatal"));
    let last = us_row.last_run.as_ref().expect("last run");
    assert_eq!(last.id, run, "the most recent run, not the failed one");
    assert_eq!(last.status, RunStatus::Running);
    assert_eq!(
        (last.window_start, last.window_end),
        (Some(ts(4_000)), Some(ts(6_000)))
    );
    assert_eq!(
        (last.pages, last.records_seen, last.inserted, last.updated),
        (3, 250, 200, 50)
    );

    record_success(&mut conn, us, "orders").await.unwrap();
    unpark(&mut conn, eu, "products").await.unwrap();
    finish_run(&mut conn, run, RunStatus::Succeeded, None, None)
        .await
        .unwrap();
    let status = stream_status(&mut conn).await.unwrap();
    assert_eq!(status[0].parked_reason, None);
    assert_eq!(status[1].last_error, None);
    assert_eq!(status[1].last_error_class, None);
    let last = status[1].last_run.as_ref().unwrap();
    assert_eq!(last.status, RunStatus::Succeeded);
    assert!(last.finished_at.is_some());
}

// ---------------------------------------------------------------------------------------------
// Schema

#[derive(diesel::QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DbColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    udt_name: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

/// `(table, column, pg type, nullable)` in column order, as declared by `src/db/schema.rs`.
fn declared_columns() -> Vec<(String, String, String, bool)> {
    let text = include_str!("../src/db/schema.rs");
    let mut out = Vec::new();
    let mut table: Option<String> = None;
    let mut sql_name: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_suffix('{').map(str::trim) {
            if let Some((name, _pk)) = rest.split_once('(') {
                table = Some(name.trim().to_string());
            }
            continue;
        }
        if line == "}" {
            table = None;
            continue;
        }
        if let Some(name) = line
            .strip_prefix("#[sql_name = \"")
            .and_then(|r| r.strip_suffix("\"]"))
        {
            sql_name = Some(name.to_string());
            continue;
        }
        let (Some(t), Some((col, ty))) = (&table, line.split_once("->")) else {
            continue;
        };
        let ty = ty.trim().trim_end_matches(',');
        let (nullable, inner) = match ty.strip_prefix("Nullable<") {
            Some(inner) => (true, inner.trim_end_matches('>')),
            None => (false, ty),
        };
        let pg = match inner {
            "Int4" => "int4",
            "Int8" => "int8",
            "Text" => "text",
            "Timestamptz" => "timestamptz",
            "Jsonb" => "jsonb",
            "Numeric" => "numeric",
            "Bool" => "bool",
            other => panic!("schema.rs type {other} not mapped in this test"),
        };
        let col = sql_name.take().unwrap_or_else(|| col.trim().to_string());
        out.push((t.clone(), col, pg.to_string(), nullable));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_rs_matches_the_migrated_database() {
    let (_t, db) = database("store_schema").await;
    let mut conn = db.checkout("test").await.unwrap();
    let actual: Vec<DbColumn> = diesel::sql_query(
        "SELECT table_name::text, column_name::text, udt_name::text, is_nullable::text
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'
         ORDER BY table_name, ordinal_position",
    )
    .load(&mut *conn)
    .await
    .unwrap();
    let actual: Vec<(String, String, String, bool)> = actual
        .into_iter()
        .map(|c| {
            (
                c.table_name,
                c.column_name,
                c.udt_name,
                c.is_nullable == "YES",
            )
        })
        .collect();
    let mut declared = declared_columns();
    // schema.rs lists tables alphabetically and columns in table order, as print-schema does.
    declared.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(declared.len() > 80, "parsed schema.rs: {}", declared.len());
    assert_eq!(
        declared, actual,
        "src/db/schema.rs differs from the migrations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_migration_reverts_and_reapplies_cleanly() {
    use diesel_async::AsyncMigrationHarness;
    use diesel_migrations::MigrationHarness;

    let (_t, db) = database("store_down").await;
    {
        // Some data, so that down.sql meets foreign keys and dependent rows.
        let mut conn = db.checkout("test").await.unwrap();
        let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
        upsert_orders(&mut conn, shop, &[order("PO-1", 10, 1, &["O-1"])])
            .await
            .unwrap();
        upsert_products(&mut conn, shop, 1, &[product("A", "a", &["A1"])])
            .await
            .unwrap();
        try_acquire_lease(&mut conn, shop, "orders", "d", TTL)
            .await
            .unwrap();
        start_run(&mut conn, shop, "orders", "d", None)
            .await
            .unwrap();
    }
    db.close();
    let conn = db.connector().connect().await.unwrap();
    let reverted = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        harness
            .revert_all_migrations(migrate::MIGRATIONS)
            .map(|v| v.len())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap()
    .expect("every down.sql runs");
    assert_eq!(reverted, 3);

    let mut conn = db.connector().connect().await.unwrap();
    let left = count(
        &mut conn,
        "SELECT count(*) AS n FROM information_schema.tables
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    )
    .await;
    assert_eq!(left, 0, "down.sql leaves no table behind");
    drop(conn);

    let applied = migrate::run_pending(db.connector())
        .await
        .expect("up again");
    assert_eq!(applied.len(), 3);
    db.rebuild_pool();
    let mut conn = db.checkout("test").await.unwrap();
    let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
    assert_eq!(
        upsert_orders(&mut conn, shop, &[order("PO-1", 10, 1, &["O-1"])])
            .await
            .unwrap(),
        counts(1, 0, 0)
    );
}
