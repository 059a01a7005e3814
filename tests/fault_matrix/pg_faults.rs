//! Database faults: a PostgreSQL restart (emulated), terminated sessions, a blackholed link,
//! cut connections, a held table lock and a full connection limit.
//!
//! Each touches only its own test database (and, for the connection limit, a role of its own);
//! the shared server itself is never restarted. Owns injecting the fault and what the row says
//! about it; must not repeat the recovery, data and leak checks (`World::finish` makes them).

use std::time::{Duration, Instant};

use crate::observe::{connect_admin, db_failing, degraded, fd_count, wait_client};
use crate::report::Row;
use crate::sync_common::*;
use crate::world::{Setup, World};
use temu_sync::sim::{Latency, SimConfig};
use temu_sync::testkit::{FaultMode, TestDatabase};
use tokio_postgres::NoTls;

/// The harness's `database.ping_interval` + `ping_timeout` (500 ms + 400 ms) and scheduling slack.
const DB_DETECT_LIMIT: Duration = Duration::from_millis(1_500);

pub async fn pg_restart(row: &mut Row) {
    let setup = Setup {
        db_proxy: true,
        ..Setup::default()
    };
    let Some(mut w) = World::start("fm_pgrestart", setup, row).await else {
        return;
    };
    let proxy = w.proxy.as_ref().expect("proxy");
    proxy.set_mode(FaultMode::Refuse);
    // A restart also kills the server side of every session.
    terminate_daemon_sessions(&w.client, &w.db).await;
    let t = w.detect(row, Duration::from_secs(5), db_failing).await;
    row.check(
        t.is_some_and(|t| t <= DB_DETECT_LIMIT),
        format!("postgres check failed after {t:?}, limit {DB_DETECT_LIMIT:?}"),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    row.check(w.daemon.still_running(), "exited while PostgreSQL was down");
    let proxy = w.proxy.as_ref().expect("proxy");
    proxy.set_mode(FaultMode::Pass);
    let cleared = Instant::now();
    row.did.push_str("; kept running, reconnected by itself");
    w.finish(row, cleared).await;
}

async fn terminate_daemon_sessions(client: &tokio_postgres::Client, db: &TestDatabase) -> u64 {
    client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'temu-sync'",
            &[&db.name()],
        )
        .await
        .map(|r| r.len() as u64)
        .unwrap_or(0)
}

pub async fn pg_terminate(row: &mut Row) {
    let setup = Setup {
        orders: 800,
        sim: |c| c.faults.latency = Latency::Fixed(Duration::from_millis(20)),
        ..Setup::default()
    };
    let Some(w) = World::start("fm_pgterm", setup, row).await else {
        return;
    };
    // Kill every daemon session five times, 300 ms apart, while runs write.
    w.sim.handle.mutate("shop-0", 100);
    let injected = Instant::now();
    let mut killed = 0;
    for _ in 0..5 {
        killed += terminate_daemon_sessions(&w.client, &w.db).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    row.check(killed > 0, "no session to terminate");
    let pre = injected.elapsed();
    if let Some(t) = w.detect(row, Duration::from_millis(500), degraded).await {
        row.detect = Some(pre + t);
    }
    row.did = format!(
        "{killed} sessions terminated, broken connections discarded, runs retried; {}",
        if row.did.is_empty() {
            "no health change"
        } else {
            row.did.as_str()
        }
    );
    let cleared = Instant::now();
    w.finish(row, cleared).await;
}

pub async fn pg_blackhole(row: &mut Row) {
    let setup = Setup {
        db_proxy: true,
        ..Setup::default()
    };
    let Some(w) = World::start("fm_pgblackhole", setup, row).await else {
        return;
    };
    let started = Instant::now();
    w.proxy
        .as_ref()
        .expect("proxy")
        .set_mode(FaultMode::Blackhole);
    let t = w.detect(row, Duration::from_secs(5), db_failing).await;
    row.check(
        t.is_some_and(|t| t <= DB_DETECT_LIMIT),
        format!("postgres check failed after {t:?}, limit {DB_DETECT_LIMIT:?}"),
    );
    // /health answers from memory while the database hangs.
    let t0 = Instant::now();
    let answered = w.health().await.is_some();
    row.check(
        answered && t0.elapsed() < Duration::from_millis(300),
        format!("/health slow while blackholed: {:?}", t0.elapsed()),
    );
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(started.elapsed())).await;
    w.proxy.as_ref().expect("proxy").set_mode(FaultMode::Pass);
    let cleared = Instant::now();
    row.did.push_str("; /health still answered at once");
    w.finish(row, cleared).await;
}

pub async fn pg_resets(row: &mut Row) {
    let setup = Setup {
        db_proxy: true,
        orders: 800,
        sim: |c| c.faults.latency = Latency::Fixed(Duration::from_millis(20)),
        ..Setup::default()
    };
    let Some(w) = World::start("fm_pgreset", setup, row).await else {
        return;
    };
    w.sim.handle.mutate("shop-0", 100);
    let proxy = w.proxy.as_ref().expect("proxy");
    let injected = Instant::now();
    // Every open connection cut, 8 times in ~3 s.
    for _ in 0..8 {
        proxy.set_mode(FaultMode::Refuse);
        tokio::time::sleep(Duration::from_millis(80)).await;
        proxy.set_mode(FaultMode::Pass);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let cleared = Instant::now();
    let pre = injected.elapsed();
    if let Some(t) = w.detect(row, Duration::from_millis(300), degraded).await {
        row.detect = Some(pre + t);
    }
    row.did = format!(
        "connections cut 8×, broken ones discarded, runs retried; {}",
        row.did
    );
    w.finish(row, cleared).await;
}

pub async fn pg_lock(row: &mut Row) {
    let setup = Setup {
        env: vec![("TEMU_SYNC__DATABASE__LOCK_TIMEOUT", "1s")],
        ..Setup::default()
    };
    let Some(w) = World::start("fm_pglock", setup, row).await else {
        return;
    };
    // Another session holds an exclusive lock on `orders` while changed orders wait to be written.
    let Some(locker) = connect_admin(&w.db).await else {
        row.check(false, "locker connects");
        return;
    };
    locker
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    w.sim.handle.mutate("shop-0", 40);
    let t = w.detect(row, Duration::from_secs(15), degraded).await;
    row.check(t.is_some(), "/health never showed the lock timeout");
    let failed = w
        .client
        .query_one(
            "SELECT count(*) FROM sync_runs WHERE status = 'failed' AND error_message ILIKE '%lock%'",
            &[],
        )
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0);
    row.check(failed > 0, "no run failed on lock_timeout");
    locker.batch_execute("COMMIT").await.expect("unlock");
    let cleared = Instant::now();
    row.did = format!(
        "{failed} run(s) failed on lock_timeout (1 s) and retried; {}",
        row.did
    );
    w.finish(row, cleared).await;
}

pub async fn pg_conn_limit(row: &mut Row) {
    // The daemon connects as a non-superuser role (superusers ignore connection limits).
    let role = format!(
        "fm_role_{}_{:06x}",
        std::process::id(),
        fastrand::u32(..0xff_ffff)
    );
    let db = match TestDatabase::create("fm_connlimit").await {
        Ok(db) => db,
        Err(e) => {
            row.check(false, format!("create database: {e}"));
            return;
        }
    };
    let admin = connect_admin(&db).await.expect("admin");
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN; ALTER DATABASE \"{}\" OWNER TO \"{role}\"; \
             ALTER SCHEMA public OWNER TO \"{role}\"",
            db.name()
        ))
        .await
        .expect("role");
    let role_url = db.url().replacen("postgres@", &format!("{role}@"), 1);
    run_conn_limit(row, db, &admin, &role, &role_url).await;
    let _ = admin
        .batch_execute(&format!("DROP OWNED BY \"{role}\""))
        .await;
    drop(admin);
    // The database is dropped with its `TestDatabase`; then the role can go.
    let cleanup = tokio_postgres::connect("postgres://postgres@127.0.0.1:5432/postgres", NoTls)
        .await
        .ok();
    if let Some((c, conn)) = cleanup {
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let _ = c
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
            .await;
    }
}

async fn run_conn_limit(
    row: &mut Row,
    db: TestDatabase,
    admin: &tokio_postgres::Client,
    role: &str,
    role_url: &str,
) {
    let mut config = SimConfig::demo(fastrand::u64(..), 1, 300);
    config.apps[0].qps = 50;
    let sim = Sim::start(config).await;
    let mut opts = options(&db, &sim);
    opts.interval = "1s";
    opts.database_url = role_url.to_string();
    let daemon = Daemon::start(&sim, &opts);
    let Some(client) = wait_client(&db).await else {
        row.check(false, "daemon did not migrate");
        return;
    };
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    if !wait_for_complete_round(&client, &sim, t0, Duration::from_secs(60)).await {
        row.check(false, "no first round");
        return;
    }
    let mut w = World {
        fd_base: fd_count(daemon.pid()),
        db,
        sim,
        client,
        http: reqwest::Client::new(),
        daemon,
        opts,
        proxy: None,
    };
    // Other clients take every slot of the role: limit 4, four fillers, daemon sessions killed.
    const SLOTS: usize = 4;
    admin
        .batch_execute(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT {SLOTS}"))
        .await
        .expect("limit");
    let fillers = take_every_slot(admin, role, role_url, SLOTS).await;
    row.check(fillers.len() == SLOTS, "could not take every slot");
    let t = w.detect(row, Duration::from_secs(5), db_failing).await;
    row.check(
        t.is_some_and(|t| t <= DB_DETECT_LIMIT + Duration::from_millis(500)),
        format!("postgres check failed after {t:?}"),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    row.check(w.daemon.still_running(), "exited at the connection limit");
    drop(fillers);
    admin
        .batch_execute(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT -1"))
        .await
        .expect("unlimit");
    let cleared = Instant::now();
    row.did
        .push_str("; kept running, reconnected when slots freed");
    w.finish(row, cleared).await;
}

/// Terminates the daemon's sessions of `role` and connects as `role` until `slots` other
/// clients hold every slot (up to 10 s); the clients that got in.
async fn take_every_slot(
    admin: &tokio_postgres::Client,
    role: &str,
    role_url: &str,
    slots: usize,
) -> Vec<tokio_postgres::Client> {
    let mut fillers = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while fillers.len() < slots && Instant::now() < end {
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND application_name = 'temu-sync'",
                &[&role],
            )
            .await
            .ok();
        while fillers.len() < slots {
            match tokio_postgres::connect(role_url, NoTls).await {
                Ok((c, conn)) => {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    fillers.push(c);
                }
                Err(_) => break,
            }
        }
    }
    fillers
}
