//! Leases and the cursor: one of two contending owners wins, a contender waits for an
//! uncommitted holder, an expired lease is taken over, the cursor never moves back and rolls back
//! with its data, a lease taken inside a caller's transaction rolls back with it.
//!
//! Owns the lease and cursor cases; the run log is `runs`.

use std::time::Duration;

use temu_sync::config::Stream;
use temu_sync::db::{Database, DbError};
use temu_sync::store::*;

use crate::fixtures::{count, database, order, ts, TTL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_contending_owners_gets_the_lease() {
    let (_t, db) = database("store_lease").await;
    let shop = {
        let mut conn = db.checkout("test").await.unwrap();
        ensure_shop(&mut conn, "us-main", "us").await.unwrap()
    };
    // Both at once, each on its own connection, many times over fresh streams.
    for stream in Stream::ALL.map(Stream::as_str) {
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
