//! End to end: the real daemon binary syncs from the simulator into the real PostgreSQL, and the
//! database is compared with the simulator's ground truth — every record present, at its latest
//! version, no duplicates — after backfills, updates, drift, faults, crashes and outages.
//!
//! One test binary: `e2e` (what arrives in the database), `pages` (one shop's concurrent pages
//! within its app's budget), `lifecycle` (signals, kills, timeouts, two daemons), `routes` (the HTTP routes of a syncing daemon); and in process, `scheduler` (the
//! sync actor's state machine on paused time, over the in-memory ledger) and `ledger` (the same
//! lease contract in PostgreSQL, two daemons on one database). The shared world (simulator,
//! daemon, ground-truth comparison) is `tests/sync_common`, which the fault matrix uses too. Each
//! test has its own database, simulator and daemon on free ports, so they run in parallel.

#[path = "../sync_common/mod.rs"]
mod sync_common;

mod audit;
mod e2e;
mod ledger;
mod lifecycle;
mod pages;
mod routes;
mod scheduler;

use std::time::Duration;

use sync_common::*;
use temu_sync::sim::SimConfig;
use temu_sync::testkit::TestDatabase;

/// A test database (created by the daemon) and a simulator with one shop of `orders` orders.
async fn setup(prefix: &str, orders: usize) -> (TestDatabase, Sim) {
    let db = TestDatabase::reserve(prefix).expect("test database");
    let mut config = SimConfig::demo(fastrand::u64(..), 1, orders);
    config.apps[0].qps = 50;
    let sim = Sim::start(config).await;
    (db, sim)
}

/// Starts a daemon whose one chunk spans the whole history (a walk is many pages long) and waits
/// for its first complete round (`what` names it in the failure).
async fn backfill_in_one_chunk(
    db: &TestDatabase,
    sim: &Sim,
    what: &str,
) -> (Daemon, tokio_postgres::Client) {
    let mut opts = options(db, sim);
    opts.chunk = "91d";
    let daemon = Daemon::start(sim, &opts);
    let client = wait_for_client(db).await;
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(
        wait_for_complete_round(&client, sim, t0, Duration::from_secs(120)).await,
        "{what} did not complete\n{}",
        daemon.log_tail(40)
    );
    (daemon, client)
}

/// The database equals the simulator's ground truth, allowing a few more rounds: a change stamped
/// within the current second can fall after one round's window end (`settle` is 0 here, and the
/// simulator stamps a second change to one order `updated + 1`); the next round (2 s interval,
/// 1 h lookback) takes it. A record really lost stays different and fails after the bound.
async fn assert_matches_truth(client: &tokio_postgres::Client, sim: &Sim, daemon: &Daemon) {
    eventually(Duration::from_secs(30), || async {
        compare(client, sim).await.is_clean()
    })
    .await;
    let diff = compare(client, sim).await;
    assert!(
        diff.is_clean(),
        "database differs from the ground truth: {}\nlog:\n{}",
        diff.summary(),
        daemon.log_tail(40)
    );
    assert!(diff.checked > 0);
}
