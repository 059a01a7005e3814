//! Process faults: SIGTERM mid-run, repeated SIGKILL at random points, and two daemons on one
//! database with one of them killed mid-run.
//!
//! Each touches only its own daemons and database. Owns killing and restarting the daemon and
//! what the row says about it; the data and leak checks are `World`'s.

use std::time::{Duration, Instant};

use crate::observe::fd_count;
use crate::report::Row;
use crate::sync_common::*;
use crate::world::{Setup, World};
use temu_sync::sim::{FaultConfig, Latency};

pub async fn sigterm(row: &mut Row) {
    let setup = Setup {
        orders: 1500,
        settle: false,
        sim: |c| c.faults.latency = Latency::Fixed(Duration::from_millis(60)),
        // One page at a time: a backfill of seconds, so the SIGTERM lands mid-run (with
        // concurrent pages it can end before a run in flight is seen).
        env: vec![("TEMU_SYNC__SYNC__PAGE_CONCURRENCY", "1")],
        ..Setup::default()
    };
    let Some(mut w) = World::start("fm_sigterm", setup, row).await else {
        return;
    };
    row.check(
        run_in_progress(&w.client, Duration::from_secs(30)).await,
        "no run in progress",
    );
    w.daemon.signal(libc::SIGTERM);
    let t0 = Instant::now();
    let code = w.daemon.wait_exit(Duration::from_secs(20));
    row.detect = Some(t0.elapsed());
    row.check(code == Some(Some(0)), format!("exit {code:?}, want 0"));
    w.sim.handle.set_faults(FaultConfig::none());
    let restarted = Instant::now();
    w.daemon = Daemon::start(&w.sim, &w.opts);
    w.fd_base = 0;
    row.did = format!("exit {code:?} after {:?}; restart resumed", t0.elapsed());
    finish_after_restart(w, row, restarted).await;
}

/// After a restart at `restarted`: a complete round, no run of a dead process left `running`,
/// data equal to the truth, no leaks, clean SIGTERM.
async fn finish_after_restart(mut w: World, row: &mut Row, restarted: Instant) {
    let since = db_now(&w.client).await;
    let round = wait_for_complete_round(&w.client, &w.sim, since, Duration::from_secs(120)).await;
    row.recover = Some(restarted.elapsed());
    row.check(round, "no complete round after the restart");
    w.fd_base = fd_count(w.daemon.pid());
    let abandoned_running = w
        .client
        .query_one("SELECT count(*) FROM sync_runs WHERE status = 'running' AND finished_at IS NULL AND instance_id NOT IN (SELECT instance_id FROM daemon_instances WHERE pid = $1)", &[&(w.daemon.pid() as i32)])
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0);
    row.check(
        abandoned_running == 0,
        format!("{abandoned_running} run(s) of the dead process still 'running'"),
    );
    w.verify(row).await;
    w.leaks_and_exit(row).await;
}

/// `FAULT_MATRIX_SIGKILLS` (default 3, as in CI) SIGKILLs.
pub async fn sigkill(row: &mut Row) {
    let times: usize = std::env::var("FAULT_MATRIX_SIGKILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    sigkill_repeated(row, times).await;
}

async fn sigkill_repeated(row: &mut Row, times: usize) {
    let setup = Setup {
        orders: 1500,
        settle: false,
        sim: |c| {
            c.faults.latency = Latency::Fixed(Duration::from_millis(30));
            c.mutation_rate = 0.2;
        },
        ..Setup::default()
    };
    let Some(mut w) = World::start("fm_sigkill", setup, row).await else {
        return;
    };
    let mut exits = Vec::new();
    for i in 0..times {
        // A random point: from boot (migrations, lease taking) to deep inside a walk.
        let wait = Duration::from_millis(fastrand::u64(200..4_000));
        tokio::time::sleep(wait).await;
        w.daemon.signal(libc::SIGKILL);
        let code = w.daemon.wait_exit(Duration::from_secs(10));
        exits.push(code.is_some());
        if i + 1 < times {
            w.daemon = Daemon::start(&w.sim, &w.opts);
        }
    }
    row.check(exits.iter().all(|e| *e), "a SIGKILLed process did not die");
    w.sim.handle.set_mutation_rate(0.0);
    w.sim.handle.set_faults(FaultConfig::none());
    let restarted = Instant::now();
    w.daemon = Daemon::start(&w.sim, &w.opts);
    row.did = format!(
        "{times}× SIGKILL at 0.2–4 s, restarted each time; runs marked abandoned, cursor resumed"
    );
    finish_after_restart(w, row, restarted).await;
}

/// Pairs of runs of one shop × stream by different instances whose times overlap (abandoned
/// runs aside); -1 when the query fails.
async fn overlapping_runs(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM sync_runs r1 JOIN sync_runs r2 \
             ON r1.shop_id = r2.shop_id AND r1.stream = r2.stream AND r1.id < r2.id \
             AND r1.instance_id <> r2.instance_id \
             AND r2.started_at < coalesce(r1.finished_at, now()) \
             AND r1.started_at < coalesce(r2.finished_at, now()) \
             WHERE r1.status <> 'abandoned' AND r2.status <> 'abandoned'",
            &[],
        )
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(-1)
}

pub async fn two_daemons(row: &mut Row) {
    // A backfill of several seconds, so the kill below lands mid-run (with 1 500 orders at 30 ms
    // the backfill could end before a run in flight was seen).
    let setup = Setup {
        orders: 4000,
        settle: false,
        sim: |c| c.faults.latency = Latency::Fixed(Duration::from_millis(50)),
        env: vec![("TEMU_SYNC__SYNC__PAGE_CONCURRENCY", "1")],
        ..Setup::default()
    };
    let Some(mut w) = World::start("fm_two", setup, row).await else {
        return;
    };
    let mut other = Daemon::start(&w.sim, &w.opts);
    row.check(
        run_in_progress(&w.client, Duration::from_secs(30)).await,
        "no run in progress",
    );
    tokio::time::sleep(Duration::from_millis(fastrand::u64(500..2_000))).await;
    // Kill whichever one holds a lease now — the first, the survivor must take over.
    w.daemon.signal(libc::SIGKILL);
    let _ = w.daemon.wait_exit(Duration::from_secs(10));
    std::mem::swap(&mut w.daemon, &mut other);
    w.sim.handle.set_faults(FaultConfig::none());
    let killed = Instant::now();
    let since = db_now(&w.client).await;
    let took_over =
        wait_for_complete_round(&w.client, &w.sim, since, Duration::from_secs(90)).await;
    row.recover = Some(killed.elapsed());
    row.check(took_over, "the survivor did not complete every stream");
    let overlaps = overlapping_runs(&w.client).await;
    row.check(overlaps == 0, format!("{overlaps} overlapping runs"));
    row.did =
        "killed one mid-run; the other took over after the lease TTL (3 s), no overlapping runs"
            .to_string();
    w.fd_base = fd_count(w.daemon.pid());
    w.verify(row).await;
    w.leaks_and_exit(row).await;
}
