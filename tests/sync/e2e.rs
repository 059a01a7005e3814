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

/// Missing parents and children of a comparison: (parents missing, parents with a wrong child
/// set, children missing or mistyped).
fn fulfilment_losses(diff: &temu_sync::sim::verify::Diff, sim: &Sim) -> (usize, usize, usize) {
    let truth = sim.handle.ground_truth();
    let children_of = |sn: &str| -> usize {
        truth.shops["shop-0"].orders[sn]["orderList"]
            .as_array()
            .map_or(0, |c| c.len())
    };
    let missing_children: usize = diff
        .missing
        .iter()
        .filter_map(|k| k.strip_prefix("shop-0/order/"))
        .map(children_of)
        .sum();
    // A mismatch reads `shop/order/sn: db {...} truth {...}`: count truth children not in db.
    let mismatched_children: usize = diff
        .item_mismatch
        .iter()
        .map(|m| {
            let (db, truth) = m.split_once(" truth ").unwrap_or((m, ""));
            truth
                .split('"')
                .skip(1)
                .step_by(2)
                .filter(|c| !db.contains(&format!("\"{c}\"")))
                .count()
        })
        .sum();
    let parents_missing = diff
        .missing
        .iter()
        .filter(|k| k.starts_with("shop-0/order/"))
        .count();
    (
        parents_missing,
        diff.item_mismatch.len(),
        missing_children + mismatched_children,
    )
}

/// Cooperative-warehouse orders (30 % of the simulator's parents: half entirely, half mixed):
/// asking only for seller-fulfilled children — what every version before `sync.fulfillment_types`
/// did, since the API's default is seller-only — loses whole parents and children of mixed ones.
/// The upgrade's re-backfill (cursor cleared, as the 2026-12-05 migration does; pending in
/// `/status` while it cannot finish) and the default types then bring the database to the ground
/// truth, each parent with exactly its children, while orders change during the walk and the API
/// fails at a high rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_warehouse_orders_arrive_with_their_exact_children() {
    let (db, sim) = setup("e2e_coop", 1200).await;
    let client = seller_only_sync_loses_cooperative_orders(&db, &sim).await;
    client
        .execute(
            "UPDATE sync_state SET cursor = NULL, backfill_reason = 'upgrade' WHERE stream = 'orders'",
            &[],
        )
        .await
        .unwrap();
    upgrade_rebackfill_completes_every_parent(&db, &sim, &client).await;
}

/// The old request (seller-fulfilled only): prints and checks what it misses; the daemon stopped.
async fn seller_only_sync_loses_cooperative_orders(
    db: &temu_sync::testkit::TestDatabase,
    sim: &Sim,
) -> tokio_postgres::Client {
    let truth = sim.handle.ground_truth();
    let orders = &truth.shops["shop-0"].orders;
    let with_coop = orders
        .values()
        .filter(|o| {
            o["orderList"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["fulfillmentType"] == "fulfillByCooperativeWarehouse")
            })
        })
        .count();
    let children: usize = orders
        .values()
        .map(|o| o["orderList"].as_array().map_or(0, |c| c.len()))
        .sum();
    assert!(
        with_coop * 5 > orders.len(),
        "about 30 % use a cooperative warehouse"
    );
    let mut old = options(db, sim);
    old.extra_sync = "  fulfillment_types: [fulfillBySeller]\n".to_string();
    let mut daemon = Daemon::start(sim, &old);
    let client = wait_for_client(db).await;
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(
        wait_for_complete_round(&client, sim, t0, Duration::from_secs(90)).await,
        "seller-only sync did not complete\n{}",
        daemon.log_tail(40)
    );
    let before = compare(&client, sim).await;
    let (lost_parents, wrong_sets, lost_children) = fulfilment_losses(&before, sim);
    println!(
        "seller-only (no fulfillmentTypeList): {} parents, {with_coop} with cooperative children, \
         {children} children; missing {lost_parents} parents ({:.1} %), {wrong_sets} parents with \
         a wrong child set, {lost_children} children missing ({:.1} %)",
        orders.len(),
        100.0 * lost_parents as f64 / orders.len() as f64,
        100.0 * lost_children as f64 / children as f64,
    );
    assert!(lost_parents > 0 && wrong_sets > 0, "{}", before.summary());
    assert_eq!(daemon.terminate(Duration::from_secs(20)), Some(Some(0)));
    client
}

/// `GET /status`'s view of the orders stream of `daemon`.
async fn orders_view(http: &reqwest::Client, daemon: &Daemon) -> Option<serde_json::Value> {
    let status: serde_json::Value = http
        .get(daemon.url("/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    status["streams"]
        .as_array()?
        .iter()
        .find(|s| s["stream"] == "orders")
        .cloned()
}

/// The upgraded daemon (default types): the pending re-backfill shows in `/status` while every
/// call fails, then completes under drift and faults; the database equals the truth.
async fn upgrade_rebackfill_completes_every_parent(
    db: &temu_sync::testkit::TestDatabase,
    sim: &Sim,
    client: &tokio_postgres::Client,
) {
    sim.handle.set_faults(FaultConfig {
        system_error: 1.0,
        ..FaultConfig::default()
    });
    let since = db_now(client).await;
    let daemon = Daemon::start(sim, &options(db, sim));
    let http = reqwest::Client::new();
    let shown = eventually(Duration::from_secs(30), || async {
        orders_view(&http, &daemon)
            .await
            .is_some_and(|v| v["backfill_reason"].as_str() == Some("upgrade"))
    })
    .await;
    assert!(
        shown,
        "/status shows the pending re-backfill\n{}",
        daemon.log_tail(30)
    );
    assert!(daemon.log().contains("backfills sync.initial_window once"));
    sim.handle.set_mutation_rate(0.3);
    sim.handle.set_faults(FaultConfig {
        system_error: 0.05,
        http_503: 0.05,
        reset: 0.03,
        ..FaultConfig::default()
    });
    assert!(
        wait_for_complete_round(client, sim, since, Duration::from_secs(150)).await,
        "sync after the upgrade did not complete\n{}",
        daemon.log_tail(40)
    );
    sim.handle.set_mutation_rate(0.0);
    sim.handle.set_faults(FaultConfig::none());
    assert_matches_truth(client, sim, &daemon).await;
    let after = compare(client, sim).await;
    println!(
        "both types (default): missing {} parents, {} wrong child sets, checked {}",
        after.missing.len(),
        after.item_mismatch.len(),
        after.checked
    );
    let count = |sql: &'static str| async move {
        client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0)
    };
    let pending = count("SELECT count(*) FROM sync_state WHERE backfill_reason IS NOT NULL").await;
    assert_eq!(pending, 0, "the re-backfill's success cleared its reason");
    let view = orders_view(&http, &daemon)
        .await
        .expect("orders on /status");
    assert!(view["backfill_reason"].is_null(), "{view}");
    let warehouses = count(
        "SELECT count(DISTINCT inventory_deduction_warehouse_id) FROM order_items \
         WHERE fulfillment_type = 'fulfillByCooperativeWarehouse'",
    )
    .await;
    assert!(
        warehouses >= 1,
        "the cooperative warehouses are typed columns"
    );
}

/// A database migrated by a newer temu-sync: the daemon refuses to run on it (exit 78, naming
/// both versions) and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_refuses_a_schema_newer_than_it_knows() {
    let (db, _handle) = temu_sync::testkit::TestDatabase::migrated("e2e_newer")
        .await
        .expect("database");
    let sim = Sim::start(temu_sync::sim::SimConfig::demo(7, 1, 50)).await;
    let client = pg(&db).await;
    client
        .execute(
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000001')",
            &[],
        )
        .await
        .unwrap();
    let mut daemon = Daemon::start(&sim, &options(&db, &sim));
    let exit = daemon.wait_exit(Duration::from_secs(30));
    assert_eq!(exit, Some(Some(78)), "{}", daemon.log_tail(30));
    let log = daemon.log();
    assert!(log.contains("29991231000001"), "{}", daemon.log_tail(30));
    let known = temu_sync::db::migrate::known_versions();
    assert!(
        log.contains(known.last().unwrap()),
        "{}",
        daemon.log_tail(30)
    );
    let shops: i64 = client
        .query_one("SELECT count(*) FROM shops", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shops, 0, "nothing was written");
}

/// A token without the products scope: the products stream is skipped — one warning in the log,
/// `skipped_reason` in `/status`, a warning (not a failure) in `/health` — and never calls the
/// API nor parks; the other streams sync to the ground truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_outside_the_tokens_scopes_is_skipped_with_a_warning() {
    let db = temu_sync::testkit::TestDatabase::reserve("e2e_scopes").expect("test database");
    let mut config = temu_sync::sim::SimConfig::demo(fastrand::u64(..), 1, 300);
    config.apps[0].qps = 50;
    config.shops[0]
        .scopes
        .retain(|s| s != "bg.local.goods.list.query");
    let sim = Sim::start(config).await;
    let daemon = Daemon::start(&sim, &options(&db, &sim));
    let client = wait_for_client(&db).await;
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(
        wait_for_complete_round(&client, &sim, t0, Duration::from_secs(90)).await,
        "first round did not complete\n{}",
        daemon.log_tail(40)
    );
    let http = reqwest::Client::new();
    let status: serde_json::Value = http
        .get(daemon.url("/status"))
        .send()
        .await
        .expect("/status answers")
        .json()
        .await
        .expect("/status is JSON");
    let products = status["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "products")
        .expect("products on the board")
        .clone();
    let reason = products["skipped_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("bg.local.goods.list.query"), "{products}");
    assert!(
        products["parked_reason"].is_null(),
        "not parked: {products}"
    );
    let health: serde_json::Value = http
        .get(daemon.url("/health"))
        .send()
        .await
        .expect("/health answers")
        .json()
        .await
        .expect("/health is JSON");
    let text = health.to_string();
    assert!(
        text.contains("temu:scopes") && text.contains("skipped"),
        "{text}"
    );
    assert_ne!(
        health["status"], "fail",
        "a missing scope warns, it does not fail: {text}"
    );
    let calls = sim
        .handle
        .requests()
        .iter()
        .filter(|r| r.api.as_deref() == Some("bg.local.goods.list.query"))
        .count();
    assert_eq!(calls, 0, "the skipped stream never called its API");
    let warnings = daemon
        .log()
        .lines()
        .filter(|l| l.contains("not authorized for bg.local.goods.list.query"))
        .count();
    assert_eq!(
        warnings,
        1,
        "one warning, not one per run\n{}",
        daemon.log_tail(30)
    );
    let diff = compare(&client, &sim).await;
    assert!(
        diff.missing.iter().all(|m| m.contains("/product/")),
        "{}",
        diff.summary()
    );
    assert!(
        diff.stale.is_empty() && diff.item_mismatch.is_empty(),
        "{}",
        diff.summary()
    );
}
