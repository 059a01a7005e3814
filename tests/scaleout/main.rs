//! Scale-out (issue 15): three real daemons on one database, six shops on one app_key, against the
//! simulator enforcing the app's 20 QPS. They share the budget (`temu_sync_qps_share` is
//! 20 ÷ 3 on each), the simulator rejects nothing (`4000004` = 0), every shop's copy is exact, each
//! daemon runs some of the work, and when one is killed the other two re-divide the budget
//! (20 ÷ 2) and take over its leases within `lease_ttl`.

#[path = "../sync_common/mod.rs"]
mod sync_common;

use std::time::Duration;

use sync_common::*;
use temu_sync::sim::SimConfig;
use temu_sync::testkit::TestDatabase;

/// The simulator's errorCode for "over the app's QPS".
const RATE_LIMITED: i64 = 4_000_004;

/// This daemon's `temu_sync_qps_share{app="app0"}`, if it answers.
async fn qps_share(http: &reqwest::Client, daemon: &Daemon) -> Option<f64> {
    let text = http
        .get(daemon.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("temu_sync_qps_share{app=\"app0\"}"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// Waits until every daemon's share is `want` (± 0.01).
async fn shares_become(http: &reqwest::Client, daemons: &[&Daemon], want: f64) -> bool {
    eventually(Duration::from_secs(30), || async {
        for d in daemons {
            match qps_share(http, d).await {
                Some(s) if (s - want).abs() < 0.01 => {}
                _ => return false,
            }
        }
        true
    })
    .await
}

/// `/status` of this daemon (instance id and QPS shares among the fields).
async fn status(http: &reqwest::Client, daemon: &Daemon) -> Option<serde_json::Value> {
    http.get(daemon.url("/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Pairs whose lease `owner` still holds (taken, not released or taken over).
async fn leases_of(client: &tokio_postgres::Client, owner: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM sync_state WHERE lease_owner = $1",
            &[&owner],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

/// Distinct instances that finished a run since `since`.
async fn instances_with_runs(
    client: &tokio_postgres::Client,
    since: chrono::DateTime<chrono::Utc>,
) -> i64 {
    client
        .query_one(
            "SELECT count(DISTINCT instance_id) FROM sync_runs \
             WHERE status = 'succeeded' AND started_at >= $1",
            &[&since],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_one_budget_and_the_work() {
    let db = TestDatabase::reserve("scaleout").expect("test database");
    let sim = Sim::start(SimConfig::demo(fastrand::u64(..), 6, 300)).await;
    let opts = options(&db, &sim);
    let a = Daemon::start(&sim, &opts);
    let b = Daemon::start(&sim, &opts);
    let mut c = Daemon::start(&sim, &opts);
    let http = reqwest::Client::new();
    let client = wait_for_client(&db).await;

    assert!(
        shares_become(&http, &[&a, &b, &c], 20.0 / 3.0).await,
        "the budget is not divided by three\n{}",
        a.log_tail(30)
    );
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(
        wait_for_complete_round(&client, &sim, t0, Duration::from_secs(120)).await,
        "first round did not complete\n{}",
        a.log_tail(40)
    );
    eventually(Duration::from_secs(30), || async {
        compare(&client, &sim).await.is_clean()
    })
    .await;
    let diff = compare(&client, &sim).await;
    assert!(diff.is_clean(), "copy differs: {}", diff.summary());
    let runners = instances_with_runs(&client, t0).await;
    println!(
        "three daemons: {} requests, {} rejected (4000004), {runners} daemons ran work",
        sim.handle.stats().requests,
        sim.handle.outcome_count(RATE_LIMITED)
    );
    assert_eq!(sim.handle.outcome_count(RATE_LIMITED), 0, "steady state");
    assert_eq!(runners, 3, "every daemon runs some of the work");

    let doc = status(&http, &c).await.expect("/status answers");
    let c_id = doc["instance"]
        .as_str()
        .expect("instance in /status")
        .to_string();
    let share = doc["qps_shares"]["app0"].as_f64().unwrap_or(0.0);
    assert!((share - 20.0 / 3.0).abs() < 0.01, "/status share {share}");

    // One dies: the other two re-divide the budget and carry on with all the work.
    let killed_at = db_now(&client).await;
    let killed = std::time::Instant::now();
    c.signal(libc::SIGKILL);
    assert!(c.wait_exit(Duration::from_secs(10)).is_some());
    assert!(
        shares_become(&http, &[&a, &b], 10.0).await,
        "the budget is not re-divided after a kill\n{}",
        a.log_tail(30)
    );
    // Its leases move: expired after lease_ttl (3 s), taken at the survivors' next look (the
    // 2 s interval, or within one lease_ttl when held elsewhere).
    assert!(
        eventually(Duration::from_secs(15), || async {
            leases_of(&client, &c_id).await == 0
        })
        .await,
        "the killed daemon's leases did not move"
    );
    println!("killed daemon's leases moved within {:?}", killed.elapsed());
    let doc = status(&http, &a).await.expect("/status answers");
    assert!((doc["qps_shares"]["app0"].as_f64().unwrap_or(0.0) - 10.0).abs() < 0.01);
    assert!(
        wait_for_complete_round(&client, &sim, killed_at, Duration::from_secs(60)).await,
        "the survivors did not complete a round\n{}",
        a.log_tail(40)
    );
    let requests = sim.handle.stats().requests.max(1);
    let rejected = sim.handle.outcome_count(RATE_LIMITED);
    println!(
        "after the kill: {requests} requests, {rejected} rejected ({:.3} %)",
        100.0 * rejected as f64 / requests as f64
    );
    assert!(rejected * 100 < requests, "rejections under 1 %");
}
