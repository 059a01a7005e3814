//! The database pool, the transaction helper and the database actor, against the real local
//! PostgreSQL (each test in a database of its own).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use temu_sync::config::DatabaseConfig;
use temu_sync::db::{migrate, Database, DbActor, DbActorArgs, DbError, Instance};
use temu_sync::health::Health;
use temu_sync::testkit::{eventually, FaultMode, FaultProxy, TestDatabase};

fn config(url: String) -> DatabaseConfig {
    DatabaseConfig {
        url,
        pool_size: 2,
        max_overflow: 1,
        pool_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(1000),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
        ..DatabaseConfig::default()
    }
}

async fn pool_for(test_db: &TestDatabase, tweak: impl FnOnce(&mut DatabaseConfig)) -> Database {
    let mut cfg = config(test_db.url());
    tweak(&mut cfg);
    let db = Database::new(cfg).expect("valid config");
    migrate::run_pending(db.connector())
        .await
        .expect("migrations apply");
    db.rebuild_pool();
    db
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(db: &Database, sql: &str) -> i64 {
    let mut conn = db.checkout("test-count").await.expect("checkout");
    diesel::sql_query(sql)
        .get_result::<Count>(&mut *conn)
        .await
        .expect("count query")
        .n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_exhaustion_returns_pool_timeout_after_pool_timeout() {
    let test_db = TestDatabase::create("pool_exhaustion").await.unwrap();
    let db = pool_for(&test_db, |c| {
        c.pool_size = 1;
        c.max_overflow = 1;
        c.pool_timeout = Duration::from_millis(400);
    })
    .await;
    let a = db.checkout("holder-a").await.expect("first checkout");
    let b = db.checkout("holder-b").await.expect("second checkout");

    let started = Instant::now();
    let third = db.checkout("third").await;
    let waited = started.elapsed();
    assert!(
        matches!(third, Err(DbError::PoolTimeout(d)) if d == Duration::from_millis(400)),
        "expected a pool timeout, got {:?}",
        third.err()
    );
    assert!(
        waited >= Duration::from_millis(400),
        "gave up early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "waited far too long: {waited:?}"
    );
    let stats = db.stats();
    assert_eq!(stats.checkout_timeouts, 1);
    assert_eq!(stats.max_size, 2);
    assert_eq!(stats.in_use, 2);

    drop(a);
    drop(b);
    let again = db.checkout("after-release").await;
    assert!(again.is_ok(), "pool must recover once connections return");
    drop(again);
    let stats = db.stats();
    assert_eq!(stats.checkouts, 3);
    assert_eq!(stats.returns, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_cancels_pg_sleep() {
    let test_db = TestDatabase::create("stmt_timeout").await.unwrap();
    let db = pool_for(&test_db, |c| {
        c.statement_timeout = Duration::from_millis(300)
    })
    .await;
    let started = Instant::now();
    let result = db
        .transaction::<_, DbError, _>("sleepy", Duration::from_secs(20), |conn| {
            Box::pin(async move {
                diesel::sql_query("SELECT pg_sleep(10)")
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(DbError::StatementTimeout(_))),
        "expected the server to cancel the statement, got {result:?}"
    );
    assert!(
        took < Duration::from_secs(8),
        "pg_sleep was not cancelled: {took:?}"
    );
    // The pool is still usable afterwards.
    assert_eq!(count(&db, "SELECT 1::bigint AS n").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_commits_on_ok_and_rolls_back_on_err() {
    let test_db = TestDatabase::create("tx_commit").await.unwrap();
    let db = pool_for(&test_db, |_| {}).await;
    db.transaction::<_, DbError, _>("create", Duration::from_secs(10), |conn| {
        Box::pin(async move {
            diesel::sql_query("CREATE TABLE t (x int)")
                .execute(conn)
                .await?;
            diesel::sql_query("INSERT INTO t VALUES (1)")
                .execute(conn)
                .await?;
            Ok(())
        })
    })
    .await
    .expect("commit");
    let failed = db
        .transaction::<(), DbError, _>("fails", Duration::from_secs(10), |conn| {
            Box::pin(async move {
                diesel::sql_query("INSERT INTO t VALUES (2)")
                    .execute(conn)
                    .await?;
                Err(DbError::Query(diesel::result::Error::RollbackTransaction))
            })
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(count(&db, "SELECT count(*) AS n FROM t").await, 1);
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM t WHERE x = 2").await,
        0
    );
}

/// `sql` in a transaction of its own, within 10 s.
async fn execute_in_transaction(
    db: &Database,
    label: &'static str,
    sql: &'static str,
) -> Result<(), DbError> {
    db.transaction::<_, DbError, _>(label, Duration::from_secs(10), |conn| {
        Box::pin(async move {
            diesel::sql_query(sql).execute(conn).await?;
            Ok(())
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_transaction_leaves_nothing_visible_and_pool_healthy() {
    let test_db = TestDatabase::create("tx_cancel").await.unwrap();
    let db = pool_for(&test_db, |c| {
        c.pool_size = 1;
        c.max_overflow = 0;
        c.statement_timeout = Duration::from_secs(30);
    })
    .await;
    execute_in_transaction(&db, "create", "CREATE TABLE t (x int)")
        .await
        .expect("create table");

    let started = Instant::now();
    let result = db
        .transaction::<_, DbError, _>("slow-insert", Duration::from_millis(500), |conn| {
            Box::pin(async move {
                diesel::sql_query("INSERT INTO t VALUES (42)")
                    .execute(conn)
                    .await?;
                diesel::sql_query("SELECT pg_sleep(20)")
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await;
    assert!(
        matches!(
            result,
            Err(DbError::Deadline {
                label: "slow-insert",
                ..
            })
        ),
        "got {result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // With a single-connection pool, the next unit of work must get a clean connection at once:
    // the interrupted one was discarded, not handed back inside its transaction.
    assert_eq!(count(&db, "SELECT count(*) AS n FROM t").await, 0);
    execute_in_transaction(&db, "after", "INSERT INTO t VALUES (7)")
        .await
        .expect("pool healthy after a cancelled transaction");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM t").await, 1);
    assert!(
        db.stats().broken_closed >= 1,
        "the interrupted connection is closed"
    );

    // The server ends the abandoned session: nothing stays idle in transaction or sleeping.
    let name = test_db.name().to_string();
    let cleaned = eventually(Duration::from_secs(10), || {
        let db = db.clone();
        let name = name.clone();
        async move {
            count(
                &db,
                &format!(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{name}' \
                     AND (state = 'idle in transaction' OR query LIKE '%pg_sleep(20)%') \
                     AND pid <> pg_backend_pid()"
                ),
            )
            .await
                == 0
        }
    })
    .await;
    assert!(
        cleaned,
        "the cancelled statement or its transaction is still on the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_held_past_leak_threshold_is_reported() {
    let test_db = TestDatabase::create("leak").await.unwrap();
    let db = pool_for(&test_db, |c| c.leak_threshold = Duration::from_millis(100)).await;
    let held = db.checkout("forgotten").await.unwrap();
    assert_eq!(db.stats().leaked_now, 0);
    // Holding the connection past the threshold is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(db.stats().leaked_now, 1);
    drop(held);
    assert_eq!(db.stats().leaked_now, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_database_is_created_once() {
    let test_db = TestDatabase::reserve("create").unwrap();
    let db = Database::new(config(test_db.url())).unwrap();
    assert!(db.connector().ensure_database().await.unwrap(), "created");
    assert!(
        !db.connector().ensure_database().await.unwrap(),
        "already there"
    );
    let applied = migrate::run_pending(db.connector()).await.unwrap();
    assert!(!applied.is_empty());
    assert!(migrate::run_pending(db.connector())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_fails_fast_when_refused_and_within_deadline_when_blackholed() {
    let test_db = TestDatabase::create("ping").await.unwrap();
    let proxy = FaultProxy::start(test_db.server_addr(), FaultMode::Pass)
        .await
        .unwrap();
    let db = Database::new(config(test_db.url_via(Some(proxy.addr())))).unwrap();
    db.rebuild_pool();
    db.check_database_connection(Duration::from_secs(5))
        .await
        .expect("reachable through the proxy");

    proxy.set_mode(FaultMode::Blackhole);
    let started = Instant::now();
    let r = db
        .check_database_connection(Duration::from_millis(800))
        .await;
    assert!(r.is_err(), "a blackholed database must not pass a ping");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    proxy.set_mode(FaultMode::Refuse);
    let r = db.check_database_connection(Duration::from_secs(5)).await;
    assert!(matches!(r, Err(ref e) if e.is_unavailable()), "got {r:?}");

    proxy.set_mode(FaultMode::Pass);
    let recovered = eventually(Duration::from_secs(15), || {
        let db = db.clone();
        async move {
            db.check_database_connection(Duration::from_secs(2))
                .await
                .is_ok()
        }
    })
    .await;
    assert!(recovered, "the pool reconnects once the database is back");
}

/// A database actor on `db`, publishing into a fresh health snapshot.
pub(crate) async fn start_db_actor(
    db: &Database,
) -> (
    Health,
    ractor::ActorRef<temu_sync::db::DbMsg>,
    ractor::concurrency::JoinHandle<()>,
) {
    let health = Health::new("test");
    let args = DbActorArgs {
        db: db.clone(),
        health: health.clone(),
        instance: Instance::current(),
    };
    let (actor, join) = ractor::Actor::spawn(None, DbActor, args)
        .await
        .expect("the database actor starts");
    (health, actor, join)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_actor_reports_down_at_boot_then_recovers_by_itself() {
    let test_db = TestDatabase::reserve("actor").unwrap();
    let proxy = FaultProxy::start(test_db.server_addr(), FaultMode::Refuse)
        .await
        .unwrap();
    let db = Database::new(config(test_db.url_via(Some(proxy.addr())))).unwrap();
    let (health, actor, join) = start_db_actor(&db).await;

    let reported_down = eventually(Duration::from_secs(10), || {
        let h = health.db();
        async move { !h.reachable && h.last_error.as_deref().is_some_and(|e| e != "connecting") }
    })
    .await;
    assert!(reported_down, "down database reported: {:?}", health.db());
    assert!(health.readiness().is_err());

    proxy.set_mode(FaultMode::Pass);
    let up = eventually(Duration::from_secs(20), || {
        let h = health.db();
        async move { h.reachable && h.migrations_applied }
    })
    .await;
    assert!(up, "actor recovers without a restart: {:?}", health.db());
    assert!(health.readiness().is_ok());
    // It created the database and registered itself.
    let db_direct = Database::new(config(test_db.url())).unwrap();
    db_direct.rebuild_pool();
    assert_eq!(
        count(&db_direct, "SELECT count(*) AS n FROM daemon_instances").await,
        1
    );

    actor.stop(None);
    let _ = tokio::time::timeout(Duration::from_secs(5), join).await;
}

/// Sessions of `test_db` on the server, counted on a session of its own outside the pool.
async fn server_sessions(test_db: &TestDatabase) -> i64 {
    let (client, conn) = tokio_postgres::connect(&test_db.url(), tokio_postgres::NoTls)
        .await
        .expect("admin session");
    tokio::spawn(conn);
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'temu-sync'",
            &[],
        )
        .await
        .expect("count sessions")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_connections_close_after_idle_timeout_while_pings_continue() {
    let test_db = TestDatabase::create("idle_timeout").await.unwrap();
    let db = pool_for(&test_db, |c| {
        c.pool_size = 1;
        c.max_overflow = 3;
        c.idle_timeout = Duration::from_secs(1);
    })
    .await;

    // A burst: every connection the pool may open, at once.
    let mut burst = Vec::new();
    for _ in 0..4 {
        burst.push(db.checkout("burst").await.expect("burst checkout"));
    }
    assert_eq!(db.stats().size, 4);
    assert_eq!(server_sessions(&test_db).await, 4);
    drop(burst);

    // The daemon's pings go on meanwhile (the database actor's, every 100 ms here).
    let pings_ok = Arc::new(AtomicU32::new(0));
    let pinger = {
        let (db, pings_ok) = (db.clone(), pings_ok.clone());
        tokio::spawn(async move {
            loop {
                if db
                    .check_database_connection(Duration::from_secs(2))
                    .await
                    .is_ok()
                {
                    pings_ok.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // idle_timeout (1 s) + one reaper period (250 ms), generously on a loaded machine.
    let shrunk = eventually(Duration::from_secs(15), || {
        let size = db.stats().size;
        async move { size <= 1 }
    })
    .await;
    assert!(
        shrunk,
        "the pool is back to pool_size after the burst: {:?}",
        db.stats()
    );
    let on_server = eventually(Duration::from_secs(5), || async {
        server_sessions(&test_db).await <= 1
    })
    .await;
    assert!(
        on_server,
        "the server agrees: {} sessions",
        server_sessions(&test_db).await
    );
    pinger.abort();
    assert!(
        AtomicU32::load(&pings_ok, Ordering::Relaxed) >= 5,
        "pings kept going and passing"
    );
    assert!(
        db.check_database_connection(Duration::from_secs(2))
            .await
            .is_ok(),
        "and the pool still answers"
    );
}

#[test]
fn idle_timeout_outside_one_second_to_one_day_is_refused_naming_the_range() {
    let problems = |idle: Duration| {
        let mut cfg = temu_sync::config::Config::default();
        cfg.database.idle_timeout = idle;
        cfg.validation_problems()
            .into_iter()
            .filter(|(key, _)| key == "database.idle_timeout")
            .map(|(_, message)| message)
            .collect::<Vec<_>>()
    };
    assert!(
        problems(Duration::from_secs(600)).is_empty(),
        "the default is valid"
    );
    assert!(problems(Duration::from_secs(1)).is_empty());
    assert!(problems(Duration::from_secs(86_400)).is_empty());
    for bad in [
        Duration::ZERO,
        Duration::from_millis(999),
        Duration::from_secs(86_401),
    ] {
        let found = problems(bad);
        assert!(
            found.len() == 1 && found[0].contains("expected 1s to 1d"),
            "{bad:?}: {found:?}"
        );
    }
    assert_eq!(
        temu_sync::db::reaper_period(Duration::from_secs(600)),
        Duration::from_secs(30)
    );
    assert_eq!(
        temu_sync::db::reaper_period(Duration::from_secs(1)),
        Duration::from_millis(250)
    );
}
