//! What arrives in the database: a backfill and the updates after it, data changing during the
//! walk, API faults at a high rate, and the database going away mid-run — each ends with the
//! database equal to the simulator's ground truth.

use std::time::{Duration, Instant};

use temu_sync::sim::{FaultConfig, Latency};
use temu_sync::testkit::{FaultMode, FaultProxy};

use crate::sync_common::*;
use crate::{assert_matches_truth, backfill_in_one_chunk, setup, wait_for_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backfill_then_incremental_updates() {
    let (db, sim) = setup("e2e_backfill", 1500).await;
    let started = Instant::now();
    let daemon = Daemon::start(&sim, &options(&db, &sim));
    let client = wait_for_client(&db).await;
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(
        wait_for_complete_round(&client, &sim, t0, Duration::from_secs(90)).await,
        "first sync did not complete\n{}",
        daemon.log_tail(40)
    );
    println!(
        "backfill of 1500 orders (+products, after-sales) took {:?}",
        started.elapsed()
    );
    assert_matches_truth(&client, &sim, &daemon).await;

    // Updates after the backfill are picked up by the next runs.
    let changed = sim.handle.mutate("shop-0", 40);
    assert_eq!(changed.len(), 40);
    let since = db_now(&client).await;
    assert!(
        wait_for_complete_round(&client, &sim, since, Duration::from_secs(60)).await,
        "no run after the updates\n{}",
        daemon.log_tail(40)
    );
    assert_matches_truth(&client, &sim, &daemon).await;

    // The cursor sits at the end of the last complete chunk, and runs are recorded.
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'succeeded') FROM sync_runs",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i64>(0) >= 6);
    // Runs record their window; the shop row learned its mall id from the token check.
    let windows: i64 = client
        .query_one(
            "SELECT count(*) FROM sync_runs WHERE stream IN ('orders', 'aftersales') AND window_start IS NOT NULL AND window_end > window_start",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(windows >= 4, "windows recorded");
    let mall_id: Option<String> = client
        .query_one("SELECT mall_id FROM shops WHERE name = 'shop-0'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(mall_id, Some(sim.config.shops[0].mall_id.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_changing_during_the_walk_is_not_skipped() {
    let (db, sim) = setup("e2e_drift", 1200).await;
    // Orders change status (and jump to the top of the listing) while pages are served; one
    // chunk spans the whole history, so a walk is many pages long and a naive one skips records.
    sim.handle.set_mutation_rate(0.5);
    let (daemon, client) = backfill_in_one_chunk(&db, &sim, "sync under drift").await;
    // Stop the changes; after one more full round the database must equal the truth.
    sim.handle.set_mutation_rate(0.0);
    let truth_mutations = sim.handle.ground_truth().shops["shop-0"].mutations;
    assert!(truth_mutations > 0, "the simulator did mutate data");
    let since = db_now(&client).await;
    assert!(wait_for_complete_round(&client, &sim, since, Duration::from_secs(60)).await);
    assert_matches_truth(&client, &sim, &daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_at_a_high_rate_lose_nothing() {
    let (db, sim) = setup("e2e_faults", 1000).await;
    sim.handle.set_faults(FaultConfig {
        system_error: 0.08,
        http_502: 0.05,
        http_503: 0.05,
        http_429: 0.03,
        retry_after_secs: 1,
        reset: 0.05,
        truncated: 0.03,
        malformed: 0.03,
        ..FaultConfig::default()
    });
    // One-day chunks: about a hundred page requests, so ~30 % faults means dozens of them.
    let mut opts = options(&db, &sim);
    opts.chunk = "1d";
    let daemon = Daemon::start(&sim, &opts);
    let client = wait_for_client(&db).await;
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(
        wait_for_complete_round(&client, &sim, t0, Duration::from_secs(150)).await,
        "sync under faults did not complete\n{}",
        daemon.log_tail(40)
    );
    let stats = sim.handle.stats();
    let injected: u64 = stats
        .outcomes
        .iter()
        .filter(|(code, _)| **code != 1_000_000)
        .map(|(_, n)| *n)
        .sum();
    assert!(injected > 10, "faults were injected: {:?}", stats.outcomes);
    sim.handle.set_faults(FaultConfig::none());
    assert_matches_truth(&client, &sim, &daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_going_away_mid_run_and_back_loses_nothing() {
    let (db, sim) = setup("e2e_dbaway", 2000).await;
    sim.handle.set_faults(FaultConfig {
        latency: Latency::Fixed(Duration::from_millis(60)),
        ..FaultConfig::default()
    });
    let proxy = FaultProxy::start(db.server_addr(), FaultMode::Pass)
        .await
        .expect("proxy");
    let mut opts = options(&db, &sim);
    opts.database_url = db.url_via(Some(proxy.addr()));
    let mut daemon = Daemon::start(&sim, &opts);
    let client = wait_for_client(&db).await;
    let running = run_in_progress(&client, Duration::from_secs(30)).await;
    assert!(running, "a run is in progress");
    proxy.set_mode(FaultMode::Refuse);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(daemon.still_running(), "a database outage is not a crash");
    proxy.set_mode(FaultMode::Pass);
    sim.handle.set_faults(FaultConfig::none());
    let since = db_now(&client).await;
    assert!(
        wait_for_complete_round(&client, &sim, since, Duration::from_secs(120)).await,
        "sync completed after the database came back\n{}",
        daemon.log_tail(40)
    );
    assert_matches_truth(&client, &sim, &daemon).await;
}
