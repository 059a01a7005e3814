//! Products: absent from a full run they are soft-removed, and they come back when seen again.
//!
//! Owns the products and SKUs tables' cases.

use diesel_async::AsyncPgConnection;
use temu_sync::store::*;

use crate::fixtures::{count, counts, database, product};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_absent_from_a_run_are_soft_removed_and_come_back() {
    let (_t, db) = database("store_products").await;
    let mut conn = db.checkout("test").await.unwrap();
    let shop = ensure_shop(&mut conn, "us-main", "us").await.unwrap();
    let other = ensure_shop(&mut conn, "eu-main", "eu").await.unwrap();
    upsert_products(&mut conn, other, 1, &[product("X", "x", &[])])
        .await
        .unwrap();

    first_run_lists_a_b_c(&mut conn, shop).await;
    second_run_drops_c_and_changes_b(&mut conn, shop).await;
    third_run_lists_c_again(&mut conn, shop).await;
}

/// Run 1 lists A, B and C: all inserted, nothing removed.
async fn first_run_lists_a_b_c(conn: &mut AsyncPgConnection, shop: i64) {
    let run1 = 1;
    let got = upsert_products(
        conn,
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
    assert_eq!(mark_products_removed(conn, shop, run1).await.unwrap(), 0);
}

/// Run 2: C is soft-removed (never deleted), B's SKUs replaced, the other shop untouched.
async fn second_run_drops_c_and_changes_b(conn: &mut AsyncPgConnection, shop: i64) {
    // Run 2 lists A unchanged and B changed (one SKU less); C is gone.
    let run2 = 2;
    let got = upsert_products(
        conn,
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
    assert_eq!(mark_products_removed(conn, shop, run2).await.unwrap(), 1);
    let removed = count(
        conn,
        "SELECT count(*) AS n FROM products WHERE removed_at IS NOT NULL",
    )
    .await;
    assert_eq!(removed, 1);
    assert_eq!(
        count(
            conn,
            "SELECT count(*) AS n FROM products WHERE goods_id = 'C' AND removed_at IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(conn, "SELECT count(*) AS n FROM products").await,
        4,
        "never deleted"
    );
    assert_eq!(
        count(
            conn,
            "SELECT count(*) AS n FROM product_skus WHERE sku_id LIKE 'B%'"
        )
        .await,
        0,
        "SKUs replaced with their product"
    );
    assert_eq!(
        count(
            conn,
            "SELECT count(*) AS n FROM product_skus WHERE sku_id LIKE 'A%'"
        )
        .await,
        2
    );
    assert_eq!(
        count(conn, "SELECT count(*) AS n FROM products WHERE shop_id = (SELECT id FROM shops WHERE name = 'eu-main') AND removed_at IS NULL").await,
        1,
        "another shop's products are not touched"
    );
    // Removing again is a no-op.
    assert_eq!(mark_products_removed(conn, shop, run2).await.unwrap(), 0);
}

/// Run 3: C comes back and counts as updated; every product seen is stamped with run 3.
async fn third_run_lists_c_again(conn: &mut AsyncPgConnection, shop: i64) {
    // Run 3 lists C again, identical: it comes back and counts as updated.
    let run3 = 3;
    let got = upsert_products(
        conn,
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
    assert_eq!(mark_products_removed(conn, shop, run3).await.unwrap(), 0);
    assert_eq!(
        count(
            conn,
            "SELECT count(*) AS n FROM products WHERE removed_at IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            conn,
            "SELECT count(*) AS n FROM products WHERE last_seen_run_id = 3"
        )
        .await,
        3,
        "unchanged products are stamped with the run that saw them"
    );
    let price = count(
        conn,
        "SELECT count(*) AS n FROM products WHERE price = 12.30 AND currency = 'USD'",
    )
    .await;
    assert_eq!(price, 4);
}
