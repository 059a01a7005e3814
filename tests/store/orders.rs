//! Orders upserts: forward only by update time, items follow their parent, a second identical
//! batch changes nothing, natural keys unique per shop.
//!
//! Owns the orders tables' cases; raw JSON text cases are in `raw_json`.

use temu_sync::store::*;

use crate::fixtures::{aftersale, count, counts, database, order, order_row, product, ts};

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

/// 100 orders, each with 60 child orders, at `update_time`.
fn orders_with_many_items(update_time: i64, status: i64) -> Vec<OrderRecord> {
    (0..100)
        .map(|p| {
            let children: Vec<String> = (0..60).map(|c| format!("O-{p}-{c}")).collect();
            let children: Vec<&str> = children.iter().map(String::as_str).collect();
            order(&format!("PO-{p}"), update_time, status, &children)
        })
        .collect()
}

/// A batch of parents may carry any number of children: 100 orders × 60 child orders is 6 000
/// item rows, 84 000 bind parameters in one statement — more than PostgreSQL's 65 535. The items
/// go in statements of at most `MAX_BATCH_SIZE` rows, so the batch is stored whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_children_exceed_the_bind_parameter_limit_is_stored_whole() {
    let (_t, db) = database("store_many_items").await;
    let mut conn = db.checkout("test").await.unwrap();
    let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
    let got = upsert_orders(&mut conn, shop, &orders_with_many_items(1_000, 1))
        .await
        .expect("a batch with 6 000 items is stored");
    assert_eq!(got, counts(100, 0, 0));
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM order_items").await,
        6_000
    );
    // The same batch again, newer: every parent replaced, its items replaced too.
    let got = upsert_orders(&mut conn, shop, &orders_with_many_items(2_000, 2))
        .await
        .expect("replaced");
    assert_eq!(got, counts(0, 100, 0));
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM order_items").await,
        6_000
    );
}
