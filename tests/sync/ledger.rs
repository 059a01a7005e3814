//! The run ledger in PostgreSQL (`PgLedger`), two daemons on one real database: the lease
//! contract the scheduler's in-memory ledger stands in for — held elsewhere, released, taken over
//! after expiry (the dead owner's run abandoned, its heartbeat refused), parked and un-parked, and
//! a park that outlives the process until a trigger's `unpark` clears it.

use std::time::Duration;

use temu_sync::config::Stream;
use temu_sync::db::Database;
use temu_sync::store::RunStatus;
use temu_sync::sync::progress::ProgressSnapshot;
use temu_sync::sync::run::{PgLedger, RunEnd, RunLedger};
use temu_sync::testkit::TestDatabase;

const TTL: Duration = Duration::from_secs(60);

async fn database(prefix: &str) -> (TestDatabase, Database) {
    TestDatabase::migrated(prefix)
        .await
        .expect("a migrated test database")
}

fn ledgers(db: &Database) -> (PgLedger, PgLedger) {
    let deadline = Duration::from_secs(10);
    (
        PgLedger::new(db.clone(), "daemon-a", deadline),
        PgLedger::new(db.clone(), "daemon-b", deadline),
    )
}

fn end(status: RunStatus, class: Option<&'static str>, parked: bool) -> RunEnd {
    RunEnd {
        status,
        class,
        message: class.map(|c| format!("scripted {c}")),
        park: class.filter(|_| parked).map(|c| format!("scripted {c}")),
        progress: ProgressSnapshot {
            pages: 3,
            records_seen: 250,
            inserted: 200,
            updated: 50,
            ..ProgressSnapshot::default()
        },
    }
}

async fn run_status(test_db: &TestDatabase, run_id: i64) -> (String, i32) {
    let (client, conn) = tokio_postgres::connect(&test_db.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT status, pages FROM sync_runs WHERE id = $1",
            &[&run_id],
        )
        .await
        .expect("the run row");
    (row.get(0), row.get(1))
}

/// Takes the orders lease of `shop` (it must be free) and starts a run; the run's id.
async fn lease_and_start(ledger: &PgLedger, shop: i64) -> i64 {
    assert!(ledger
        .take_lease(shop, Stream::Orders, TTL)
        .await
        .expect("take")
        .is_some());
    ledger
        .start_run(shop, Stream::Orders, None)
        .await
        .expect("start")
}

/// Records how `run` ended, then releases the lease.
async fn finish_and_release(ledger: &PgLedger, shop: i64, run: i64, how: RunEnd) {
    ledger
        .finish_run(shop, Stream::Orders, run, how)
        .await
        .expect("finish");
    ledger.release(shop, Stream::Orders).await.expect("release");
}

#[tokio::test]
async fn a_lease_is_exclusive_until_released() {
    let (_test_db, db) = database("ledger_exclusive").await;
    let (a, b) = ledgers(&db);
    let shop = a.ensure_shop("shop-a", "us", None).await.expect("shop");
    assert_eq!(
        b.ensure_shop("shop-a", "us", None).await.expect("shop"),
        shop
    );

    let lease = a.take_lease(shop, Stream::Orders, TTL).await.expect("take");
    assert!(lease.is_some_and(|l| l.took_over_from.is_none() && l.cursor.is_none()));
    assert!(
        b.take_lease(shop, Stream::Orders, TTL)
            .await
            .expect("take")
            .is_none(),
        "held by daemon-a"
    );
    assert!(
        b.take_lease(shop, Stream::Products, TTL)
            .await
            .expect("take")
            .is_some(),
        "another stream of the same shop is free"
    );
    a.release(shop, Stream::Orders).await.expect("release");
    let lease = b.take_lease(shop, Stream::Orders, TTL).await.expect("take");
    assert!(
        lease.is_some_and(|l| l.took_over_from.is_none()),
        "released, not taken over"
    );
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_the_dead_owners_run_abandoned() {
    let (test_db, db) = database("ledger_takeover").await;
    let (a, b) = ledgers(&db);
    let shop = a.ensure_shop("shop-a", "us", None).await.expect("shop");
    let short = Duration::from_millis(300);
    assert!(a
        .take_lease(shop, Stream::Orders, short)
        .await
        .expect("take")
        .is_some());
    let dead_run = a
        .start_run(shop, Stream::Orders, None)
        .await
        .expect("start");

    // The lease is judged on the database's clock: wait until it has expired there.
    let mut taken = None;
    for _ in 0..100 {
        taken = b.take_lease(shop, Stream::Orders, TTL).await.expect("take");
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lease = taken.expect("taken over within 10 s of a 300 ms lease");
    assert_eq!(lease.took_over_from.as_deref(), Some("daemon-a"));
    assert_eq!(run_status(&test_db, dead_run).await.0, "abandoned");
    let p = ProgressSnapshot::default();
    assert!(
        !a.heartbeat(shop, Stream::Orders, dead_run, TTL, p)
            .await
            .expect("heartbeat"),
        "the old owner's heartbeat learns that its lease is gone"
    );
    // Finishing the abandoned run later does not overwrite its outcome.
    let late = end(RunStatus::Succeeded, None, false);
    a.finish_run(shop, Stream::Orders, dead_run, late)
        .await
        .expect("finish");
    assert_eq!(run_status(&test_db, dead_run).await.0, "abandoned");
}

#[tokio::test]
async fn a_fatal_end_parks_the_stream_and_a_success_unparks_it() {
    let (test_db, db) = database("ledger_park").await;
    let (a, _) = ledgers(&db);
    let shop = a.ensure_shop("shop-a", "us", None).await.expect("shop");
    let run = lease_and_start(&a, shop).await;
    assert!(a
        .heartbeat(
            shop,
            Stream::Orders,
            run,
            TTL,
            end(RunStatus::Running, None, false).progress
        )
        .await
        .expect("heartbeat"));
    assert_eq!(run_status(&test_db, run).await, ("running".to_string(), 3));
    let fatal = end(RunStatus::Failed, Some("temu_fatal"), true);
    finish_and_release(&a, shop, run, fatal).await;

    let lease = a.take_lease(shop, Stream::Orders, TTL).await.expect("take");
    let parked = lease.and_then(|l| l.parked_reason);
    assert_eq!(parked.as_deref(), Some("scripted temu_fatal"));
    let run = a
        .start_run(shop, Stream::Orders, None)
        .await
        .expect("start");
    finish_and_release(&a, shop, run, end(RunStatus::Succeeded, None, false)).await;
    let lease = a.take_lease(shop, Stream::Orders, TTL).await.expect("take");
    assert_eq!(
        lease.and_then(|l| l.parked_reason),
        None,
        "un-parked by success"
    );
    assert_eq!(run_status(&test_db, run).await.0, "succeeded");
}

#[tokio::test]
async fn a_park_survives_a_restart_until_unpark_clears_it() {
    let (_test_db, db) = database("ledger_park_restart").await;
    let (a, _) = ledgers(&db);
    let shop = a.ensure_shop("shop-a", "us", None).await.expect("shop");
    let run = lease_and_start(&a, shop).await;
    let fatal = end(RunStatus::Failed, Some("temu_fatal"), true);
    finish_and_release(&a, shop, run, fatal).await;
    drop(a);
    db.close();

    // The restarted process: a new pool and a new instance id on the same database.
    let db = Database::new(db.config().clone()).expect("the same database config");
    db.rebuild_pool();
    let restarted = PgLedger::new(db.clone(), "daemon-a-restarted", Duration::from_secs(10));
    let shop = restarted
        .ensure_shop("shop-a", "us", None)
        .await
        .expect("shop");
    let lease = restarted
        .take_lease(shop, Stream::Orders, TTL)
        .await
        .expect("take")
        .expect("the lease is free");
    assert_eq!(
        lease.parked_reason.as_deref(),
        Some("scripted temu_fatal"),
        "the park outlives the process"
    );
    restarted
        .unpark(shop, Stream::Orders)
        .await
        .expect("unpark");
    restarted
        .release(shop, Stream::Orders)
        .await
        .expect("release");
    let lease = restarted
        .take_lease(shop, Stream::Orders, TTL)
        .await
        .expect("take")
        .expect("the lease is free");
    assert_eq!(lease.parked_reason, None, "unpark cleared it");
    // Unparking a stream that is not parked is harmless.
    restarted
        .unpark(shop, Stream::Orders)
        .await
        .expect("unpark again");
}
