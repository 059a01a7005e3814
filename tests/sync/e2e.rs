//! End to end: the real daemon binary syncs from the simulator into the real PostgreSQL, and the
//! database is compared with the simulator's ground truth — every record present, at its latest
//! version, no duplicates — after backfills, updates, drift, faults, crashes and outages.

mod sync_common;

use std::time::{Duration, Instant};

use sync_common::*;
use temu_sync::sim::{FaultConfig, Latency, SimConfig};
use temu_sync::testkit::{FaultMode, FaultProxy, TestDatabase};

async fn setup(prefix: &str, orders: usize) -> (TestDatabase, Sim) {
    let db = TestDatabase::reserve(prefix).expect("test database");
    let mut config = SimConfig::demo(fastrand::u64(..), 1, orders);
    config.apps[0].qps = 50;
    let sim = Sim::start(config).await;
    (db, sim)
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
    let mut opts = options(&db, &sim);
    opts.chunk = "91d";
    let daemon = Daemon::start(&sim, &opts);
    let client = wait_for_client(&db).await;
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(
        wait_for_complete_round(&client, &sim, t0, Duration::from_secs(120)).await,
        "sync under drift did not complete\n{}",
        daemon.log_tail(40)
    );
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
async fn expired_token_parks_the_streams_without_a_crash_loop() {
    let db = TestDatabase::reserve("e2e_token").expect("test database");
    let mut config = SimConfig::demo(7, 1, 100);
    config.shops[0].token_expires_at = chrono::Utc::now().timestamp() - 86_400;
    let sim = Sim::start(config).await;
    let mut daemon = Daemon::start(&sim, &options(&db, &sim));
    let http = reqwest::Client::new();
    let parked = eventually(Duration::from_secs(60), || async {
        let Ok(resp) = http.get(daemon.url("/status")).send().await else {
            return false;
        };
        let Ok(body) = resp.json::<serde_json::Value>().await else {
            return false;
        };
        body["streams"]
            .as_array()
            .is_some_and(|s| s.len() == 3 && s.iter().all(|v| v["state"] == "parked"))
    })
    .await;
    assert!(parked, "streams parked\n{}", daemon.log_tail(40));
    let status: serde_json::Value = http
        .get(daemon.url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reason = status["streams"][0]["parked_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("3000034"),
        "the reason names the error: {reason}"
    );
    let health = http.get(daemon.url("/health")).send().await.unwrap();
    assert_eq!(
        health.status().as_u16(),
        503,
        "a parked stream fails /health"
    );

    // No hammering: the parked streams make no further calls.
    let before = sim.handle.stats().requests;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = sim.handle.stats().requests;
    assert!(
        after - before <= 1,
        "parked streams kept calling: {before} -> {after}"
    );
    assert!(daemon.still_running(), "no crash loop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_cancels_cleanly_and_releases_the_lease() {
    let (db, sim) = setup("e2e_sigterm", 2000).await;
    sim.handle.set_faults(FaultConfig {
        latency: Latency::Fixed(Duration::from_millis(150)),
        ..FaultConfig::default()
    });
    let mut daemon = Daemon::start(&sim, &options(&db, &sim));
    let client = wait_for_client(&db).await;
    let running = run_in_progress(&client, Duration::from_secs(30)).await;
    assert!(running, "a run is in progress\n{}", daemon.log_tail(30));
    daemon.signal(libc::SIGTERM);
    let code = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(Some(0)), "clean exit\n{}", daemon.log_tail(30));
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'running'), count(*) FILTER (WHERE status = 'cancelled') FROM sync_runs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "no run left running");
    assert!(
        row.get::<_, i64>(1) >= 1,
        "the interrupted run is recorded as cancelled"
    );
    let held = client
        .query_one(
            "SELECT count(*) FROM sync_state WHERE lease_owner IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(held, 0, "leases released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_exceeding_task_timeout_is_cancelled_and_the_next_resumes() {
    let (db, sim) = setup("e2e_timeout", 1500).await;
    sim.handle.set_faults(FaultConfig {
        latency: Latency::Fixed(Duration::from_millis(120)),
        ..FaultConfig::default()
    });
    let mut opts = options(&db, &sim);
    opts.extra_sync = "  task_timeout: 2s\n".to_string();
    let daemon = Daemon::start(&sim, &opts);
    let client = wait_for_client(&db).await;
    let timed_out = eventually(Duration::from_secs(40), || async {
        client
            .query_one(
                "SELECT count(*) FROM sync_runs WHERE stream = 'orders' AND status = 'cancelled' AND error_class = 'task_timeout'",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0) >= 1)
            .unwrap_or(false)
    })
    .await;
    assert!(timed_out, "a run hit task_timeout\n{}", daemon.log_tail(30));
    // Committed chunks stay: the cursor moved, and later runs carry on from it until done.
    sim.handle.set_faults(FaultConfig::none());
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(
        wait_for_complete_round(&client, &sim, t0, Duration::from_secs(90)).await,
        "later runs resumed and completed\n{}",
        daemon.log_tail(30)
    );
    let open = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(open, 0, "no transaction left open");
    assert_matches_truth(&client, &sim, &daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_mid_run_and_restarted_loses_nothing() {
    let (db, sim) = setup("e2e_sigkill", 2000).await;
    sim.handle.set_faults(FaultConfig {
        latency: Latency::Fixed(Duration::from_millis(100)),
        ..FaultConfig::default()
    });
    let opts = options(&db, &sim);
    let mut first = Daemon::start(&sim, &opts);
    let client = wait_for_client(&db).await;
    let running = run_in_progress(&client, Duration::from_secs(30)).await;
    assert!(running, "a run is in progress");
    first.signal(libc::SIGKILL);
    assert!(first.wait_exit(Duration::from_secs(10)).is_some());
    sim.handle.set_faults(FaultConfig::none());

    let second = Daemon::start(&sim, &opts);
    let t_restart = db_now(&client).await;
    assert!(
        wait_for_complete_round(&client, &sim, t_restart, Duration::from_secs(90)).await,
        "the restarted daemon completed a round\n{}",
        second.log_tail(40)
    );
    let abandoned = client
        .query_one(
            "SELECT count(*) FROM sync_runs WHERE status = 'abandoned'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert!(
        abandoned >= 1,
        "the killed daemon's runs are marked abandoned"
    );
    assert_matches_truth(&client, &sim, &second).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_the_work_and_one_takes_over_from_the_other() {
    let (db, sim) = setup("e2e_two", 1500).await;
    let opts = options(&db, &sim);
    let mut a = Daemon::start(&sim, &opts);
    let b = Daemon::start(&sim, &opts);
    let client = wait_for_client(&db).await;
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(wait_for_complete_round(&client, &sim, t0, Duration::from_secs(90)).await);

    // Never two runs of the same stream at once: no overlapping run intervals across instances.
    let overlaps = client
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
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(overlaps, 0, "two daemons ran the same stream at once");

    // Kill one; the other keeps every stream going within a lease period or two.
    a.signal(libc::SIGKILL);
    assert!(a.wait_exit(Duration::from_secs(10)).is_some());
    let since = db_now(&client).await;
    assert!(
        wait_for_complete_round(&client, &sim, since, Duration::from_secs(60)).await,
        "the surviving daemon took over\n{}",
        b.log_tail(40)
    );
    let instances: i64 = client
        .query_one(
            "SELECT count(DISTINCT instance_id) FROM sync_runs WHERE started_at > $1 AND status = 'succeeded'",
            &[&since],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(instances, 1);
    assert_matches_truth(&client, &sim, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_and_status_routes() {
    let (db, sim) = setup("e2e_trigger", 200).await;
    let mut opts = options(&db, &sim);
    opts.interval = "1h";
    let daemon = Daemon::start(&sim, &opts);
    let client = wait_for_client(&db).await;
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(wait_for_complete_round(&client, &sim, t0, Duration::from_secs(60)).await);
    let http = reqwest::Client::new();
    let url = daemon.url("/sync/shop-0/orders");
    assert_eq!(http.post(&url).send().await.unwrap().status().as_u16(), 401);
    assert_eq!(
        http.post(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let since = db_now(&client).await;
    let resp = http
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let again = http
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(
        again.status().as_u16() == 409 || again.status().as_u16() == 202,
        "second trigger: {}",
        again.status()
    );
    let unknown = http
        .post(daemon.url("/sync/nope/orders"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let triggered = eventually(Duration::from_secs(30), || async {
        succeeded_since(&client, since)
            .await
            .contains_key(&("shop-0".to_string(), "orders".to_string()))
    })
    .await;
    assert!(
        triggered,
        "the triggered run ran although the interval is 1h"
    );
    let status: serde_json::Value = http
        .get(daemon.url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let streams = status["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 3);
    for s in streams {
        assert!(s["last_success_at"].is_string(), "{s}");
        assert!(s["lag_seconds"].is_number(), "{s}");
    }
    // After a sync, /metrics carries the sync series with real values.
    let metrics = http
        .get(daemon.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        value("temu_sync_sync_runs_total{") >= 3.0,
        "runs counted:\n{metrics}"
    );
    assert!(
        value("temu_sync_sync_records_total{") >= 200.0,
        "records counted"
    );
    assert!(value("temu_sync_sync_pages_total{") >= 3.0, "pages counted");
    assert!(value("temu_sync_sync_run_duration_seconds_count{") >= 3.0);
    assert!(
        metrics.contains("temu_sync_sync_lag_seconds{"),
        "lag exported"
    );
    assert!(value("temu_sync_api_request_duration_seconds_count{") >= 3.0);
    assert!(!metrics.contains(ADMIN_TOKEN) && !metrics.contains(&sim.config.shops[0].access_token));

    // The log never shows secrets.
    let log = daemon.log();
    assert!(!log.contains(ADMIN_TOKEN));
    assert!(!log.contains(&sim.config.apps[0].app_secret));
    assert!(!log.contains(&sim.config.shops[0].access_token));
}

async fn wait_for_client(db: &TestDatabase) -> tokio_postgres::Client {
    // The daemon creates the database; wait until it exists and is migrated.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((client, conn)) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls).await
        {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            if client
                .query_one("SELECT count(*) FROM sync_runs", &[])
                .await
                .is_ok()
            {
                return client;
            }
        }
        assert!(
            Instant::now() < end,
            "the daemon did not create and migrate the database"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
