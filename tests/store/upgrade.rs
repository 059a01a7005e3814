//! Upgrades: a database synced by the version before 2026-12-05 migrates to typed columns that
//! match what the API sends (re-derived from each order's raw JSON) and marks its orders streams
//! for one re-backfill; a schema newer than this binary is refused before anything runs.
//!
//! Owns the upgrade and version-refusal cases; must not test one table's behaviour.

use diesel::pg::Pg;
use diesel::sql_types::{Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::MigrationHarness;
use temu_sync::db::{migrate, Database, DbError};
use temu_sync::store::*;
use temu_sync::testkit::TestDatabase;

use crate::fixtures::count;

/// The migrations of the release before the fulfilment fix.
const BEFORE_FIX: &str = "20261205000000";

/// A database at the schema of the previous release, with a handle on it.
async fn previous_release() -> (TestDatabase, Database) {
    let t = TestDatabase::create("store_upgrade")
        .await
        .expect("database");
    let cfg = temu_sync::config::DatabaseConfig {
        url: t.url(),
        pool_size: 1,
        max_overflow: 1,
        ..Default::default()
    };
    let db = Database::new(cfg).expect("handle");
    let conn = db.connector().connect().await.expect("connect");
    tokio::task::spawn_blocking(move || {
        let mut harness = diesel_async::AsyncMigrationHarness::new(conn);
        // Creates `__diesel_schema_migrations`, as run_pending does.
        harness.applied_migrations().expect("migrations table");
        let mut all = diesel::migration::MigrationSource::<Pg>::migrations(&migrate::MIGRATIONS)
            .expect("embedded");
        all.sort_by_key(|m| m.name().version().to_string());
        for m in all
            .iter()
            .filter(|m| m.name().version().to_string().as_str() < BEFORE_FIX)
        {
            harness.run_migration(m.as_ref()).expect("old migration");
        }
    })
    .await
    .expect("joined");
    db.rebuild_pool();
    (t, db)
}

async fn exec(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).await.expect(sql);
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Text1 {
    #[diesel(sql_type = Nullable<Text>)]
    v: Option<String>,
}

async fn text(conn: &mut AsyncPgConnection, sql: &str) -> Option<String> {
    diesel::sql_query(sql)
        .get_result::<Text1>(conn)
        .await
        .expect(sql)
        .v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_rederives_typed_columns_from_raw_and_marks_orders_for_one_rebackfill() {
    let (_t, db) = previous_release().await;
    {
        let mut conn = db.checkout("old").await.unwrap();
        exec(
            &mut conn,
            "INSERT INTO shops (id, name, region) VALUES (1, 's', 'us')",
        )
        .await;
        exec(
            &mut conn,
            r#"INSERT INTO orders (id, shop_id, parent_order_sn, updated_at, raw) VALUES (1, 1, 'PO-1', now(),
               '{"parentOrderMap":{"parentOrderSn":"PO-1","updateTime":1700000000,
                 "parentShippingTime":1700000100,"parentOrderLabel":[{"name":"past_due","value":1}],
                 "hasShippingFee":true},
                 "orderList":[{"orderSn":"O-1","fulfillmentType":"fulfillByCooperativeWarehouse",
                   "inventoryDeductionWarehouseId":"WH-9","inventoryDeductionWarehouseName":"Coop 9",
                   "orderPaymentType":"COD","orderLabel":[{"name":"customized_products","value":1}],
                   "orderShippingTime":1700000200},
                  {"orderSn":"O-2","fulfillmentType":0}]}')"#,
        )
        .await;
        exec(
            &mut conn,
            "INSERT INTO order_items (order_id, shop_id, order_sn, fulfillment_type) \
             VALUES (1, 1, 'O-1', NULL), (1, 1, 'O-2', 0)",
        )
        .await;
        exec(
            &mut conn,
            "INSERT INTO sync_state (shop_id, stream, cursor) VALUES \
             (1, 'orders', now()), (1, 'products', now()), (1, 'aftersales', now())",
        )
        .await;
    }
    db.close();
    let applied = migrate::run_pending(db.connector()).await.expect("upgrade");
    assert!(applied
        .iter()
        .any(|v| v == migrate::REBACKFILL_ORDERS_VERSION));
    db.rebuild_pool();
    let mut conn = db.checkout("new").await.unwrap();
    let item = |sn: &str, col: &str| {
        format!("SELECT {col}::text AS v FROM order_items WHERE order_sn = '{sn}'")
    };
    assert_eq!(
        text(&mut conn, &item("O-1", "fulfillment_type"))
            .await
            .as_deref(),
        Some("fulfillByCooperativeWarehouse")
    );
    assert_eq!(
        text(&mut conn, &item("O-1", "inventory_deduction_warehouse_id"))
            .await
            .as_deref(),
        Some("WH-9")
    );
    assert_eq!(
        text(&mut conn, &item("O-1", "order_payment_type"))
            .await
            .as_deref(),
        Some("COD")
    );
    assert_eq!(
        text(&mut conn, &item("O-1", "labels->0->>'name'"))
            .await
            .as_deref(),
        Some("customized_products")
    );
    assert_eq!(
        text(
            &mut conn,
            &item("O-1", "extract(epoch from shipping_time)::bigint")
        )
        .await
        .as_deref(),
        Some("1700000200")
    );
    // A number where the API sends a string is not turned into a made-up value.
    assert_eq!(
        text(&mut conn, &item("O-2", "fulfillment_type")).await,
        None
    );
    assert_eq!(
        text(
            &mut conn,
            "SELECT extract(epoch from parent_shipping_time)::bigint::text || ' ' || \
             has_shipping_fee::text || ' ' || (labels->0->>'name') AS v FROM orders"
        )
        .await
        .as_deref(),
        Some("1700000100 true past_due")
    );

    // Only the orders stream re-backfills: cursor cleared, reason visible in the status view.
    let status = stream_status(&mut conn).await.unwrap();
    let orders = status.iter().find(|s| s.stream == "orders").unwrap();
    assert!(orders.cursor.is_none());
    assert!(orders
        .backfill_reason
        .as_deref()
        .unwrap()
        .contains("cooperative-warehouse"));
    for other in status.iter().filter(|s| s.stream != "orders") {
        assert!(
            other.cursor.is_some() && other.backfill_reason.is_none(),
            "{other:?}"
        );
    }
    // The next successful run clears it: the re-backfill happens once.
    record_success(&mut conn, 1, "orders").await.unwrap();
    let left = count(
        &mut conn,
        "SELECT count(*) AS n FROM sync_state WHERE backfill_reason IS NOT NULL",
    )
    .await;
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_this_binary_is_refused_before_migrating() {
    let (_t, db) = crate::fixtures::database("store_newer").await;
    {
        let mut conn = db.checkout("t").await.unwrap();
        exec(
            &mut conn,
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000001')",
        )
        .await;
    }
    let err = migrate::run_pending(db.connector()).await.unwrap_err();
    match &err {
        DbError::SchemaNewer { database, known } => {
            assert_eq!(database, "29991231000001");
            assert_eq!(Some(known), migrate::known_versions().last());
        }
        other => panic!("expected SchemaNewer, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert!(err.to_string().contains("29991231000001"));
}
