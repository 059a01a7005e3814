//! One shop's walk fetches its pages concurrently (`sync.page_concurrency`): the simulator sees
//! several requests in flight at once, refuses none for the rate limit at its app's 20 QPS, and
//! the database ends equal to the ground truth.

use std::time::Duration;

use temu_sync::sim::{Latency, SimConfig};
use temu_sync::testkit::TestDatabase;

use crate::sync_common::*;
use crate::{assert_matches_truth, backfill_in_one_chunk};

/// The simulator's answer to a call over the app's QPS budget.
const RATE_LIMITED: i64 = 4_000_004;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shop_fetches_pages_concurrently_within_its_apps_budget() {
    let db = TestDatabase::reserve("pages_concurrent").expect("test database");
    // 20 QPS (the demo app's budget, which the daemon's config copies), 300 ms ± 50 %.
    let mut config = SimConfig::demo(fastrand::u64(..), 1, 3000);
    config.faults.latency = Latency::Uniform {
        min: Duration::from_millis(150),
        max: Duration::from_millis(450),
    };
    let sim = Sim::start(config).await;
    // One chunk spans the whole history: the orders walk is 30 pages long.
    let (daemon, client) = backfill_in_one_chunk(&db, &sim, "the backfill").await;
    assert_matches_truth(&client, &sim, &daemon).await;
    let stats = sim.handle.stats();
    assert_eq!(
        sim.handle.outcome_count(RATE_LIMITED),
        0,
        "calls refused for the rate limit: {:?}",
        stats.outcomes
    );
    assert!(
        stats.max_in_flight > 3,
        "pages were not fetched concurrently (at most {} in flight)",
        stats.max_in_flight
    );
}
