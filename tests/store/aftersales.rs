//! After-sales upserts move forward only by update time.
//!
//! Owns the aftersales table's cases.

use temu_sync::store::*;

use crate::fixtures::{aftersale, count, counts, database};

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
