//! The run log and status: stale runs of other instances are abandoned; the stream status view
//! joins state, shop and last run (parked streams included).
//!
//! Owns the `sync_runs` and status cases.

use std::collections::BTreeMap;

use chrono::Utc;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use temu_sync::store::*;

use crate::fixtures::{count, database, ts, TTL};

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
    let run = orders_history_and_a_parked_stream(&mut conn, us, eu).await;

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

/// us-main's orders: leased by daemon-a, cursor at 5 000, a failed run, then a running one with
/// progress, and failures around a success (the last one fatal); eu-main's products parked.
/// The running run's id.
async fn orders_history_and_a_parked_stream(conn: &mut AsyncPgConnection, us: i64, eu: i64) -> i64 {
    try_acquire_lease(conn, us, "orders", "daemon-a", TTL)
        .await
        .unwrap()
        .unwrap();
    advance_cursor(conn, us, "orders", "daemon-a", ts(5_000))
        .await
        .unwrap();
    let old = start_run(conn, us, "orders", "daemon-a", None)
        .await
        .unwrap();
    finish_run(
        conn,
        old,
        RunStatus::Failed,
        Some("retryable"),
        Some("boom"),
    )
    .await
    .unwrap();
    let run = start_run(conn, us, "orders", "daemon-a", Some((ts(4_000), ts(6_000))))
        .await
        .unwrap();
    update_run_progress(conn, run, 3, 250, 200, 50)
        .await
        .unwrap();
    record_failure(conn, us, "orders", "retryable", "HTTP 503")
        .await
        .unwrap();
    record_success(conn, us, "orders").await.unwrap();
    record_failure(conn, us, "orders", "fatal", "token expired\u{0}")
        .await
        .unwrap();
    park(conn, eu, "products", "re-authorize the shop")
        .await
        .unwrap();
    run
}
