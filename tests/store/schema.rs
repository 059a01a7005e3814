//! The schema: `src/db/schema.rs` matches the migrated database column for column, and every
//! migration's `down.sql` reverts and re-applies cleanly.
//!
//! Owns the schema and migration cases; must not test one table's behaviour.

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use temu_sync::db::migrate;
use temu_sync::store::*;

use crate::fixtures::{count, counts, database, order, product, TTL};

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
    let text = include_str!("../../src/db/schema.rs");
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
    assert_eq!(reverted, migrate::known_versions().len());

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
    assert_eq!(applied.len(), migrate::known_versions().len());
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
