//! Section 7 (issue 14): freshness at the default configuration. One shop (all three streams,
//! 2 000 orders, 300 ms ± 50 %, 20 QPS) with the daemon's default `intervals`, `settle`, `lookback`
//! and `chunk`. After the first round: the calls an idle shop makes (per second, against 1 % of the
//! budget, and per orders round); then the simulator changes one order a second and the bench
//! polls the database every second for each change: p50 / p95 / max lag from the change to its
//! row (the poll adds up to 1 s).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use temu_sync::sim::{SimHandle, Simulator};
use temu_sync::testkit::TestDatabase;

use crate::daemon::{self, DaemonSetup, STOP_LIMIT};
use crate::observe::{connect_pg, count};
use crate::single::order_list_calls;
use crate::table::Table;
use crate::Args;

/// One change waiting to show up: its order, the update time it got, when it was made.
struct Change {
    sn: String,
    at_secs: i64,
    made: Instant,
}

pub async fn bench_freshness(args: &Args, dir: &Path, table: &mut Table) {
    let (idle_secs, change_secs) = if args.quick { (65, 120) } else { (125, 240) };
    let config = crate::single::single_sim(2_000, 300);
    let qps = config.apps[0].qps;
    println!("[freshness] 1 shop, default intervals/settle, {idle_secs} s idle, {change_secs} s of 1 change/s …");
    let sim = Simulator::start(config.clone())
        .await
        .expect("simulator starts");
    let db = TestDatabase::reserve("bench_fresh").expect("database handle");
    let setup = DaemonSetup::all_streams("freshness", db.url(), &config, sim.router_url(), qps, 4)
        .with_sync_defaults();
    let daemon = daemon::start(dir, &setup);
    let client = connect_pg(&db.url(), Duration::from_secs(30)).await;
    if !first_round(&client).await {
        table.note(format!(
            "freshness: the first round did not finish\n{}",
            daemon.log_tail(5)
        ));
        daemon.stop(STOP_LIMIT);
        return;
    }
    idle_cost(table, &client, &sim, qps, idle_secs).await;
    let lags = change_and_watch(&client, &sim, change_secs).await;
    daemon.stop(STOP_LIMIT);
    sim.shutdown().await;
    report_lags(table, lags);
}

/// Every stream succeeded once (10 min at most).
async fn first_round(client: &tokio_postgres::Client) -> bool {
    temu_sync::testkit::eventually(Duration::from_secs(600), || async {
        count(
            client,
            "SELECT count(DISTINCT stream) FROM sync_runs WHERE status = 'succeeded'",
        )
        .await
            >= 3
    })
    .await
}

const ORDERS_RUNS: &str =
    "SELECT count(*) FROM sync_runs WHERE stream = 'orders' AND status = 'succeeded'";

/// Calls while nothing changes, per second and per orders round.
async fn idle_cost(
    table: &mut Table,
    client: &tokio_postgres::Client,
    sim: &SimHandle,
    qps: u32,
    secs: u64,
) {
    let (calls0, lists0, runs0) = (
        sim.stats().requests,
        order_list_calls(sim),
        count(client, ORDERS_RUNS).await,
    );
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (calls1, lists1, runs1) = (
        sim.stats().requests,
        order_list_calls(sim),
        count(client, ORDERS_RUNS).await,
    );
    let per_sec = (calls1 - calls0) as f64 / secs as f64;
    let share = per_sec / f64::from(qps);
    table.add(
        "fresh",
        format!(
            "idle shop (3 streams, default intervals): calls/s over {secs} s (share of {qps} QPS)"
        ),
        format!("{per_sec:.3}/s ({:.2} %)", share * 100.0),
        "< 1 % of the budget",
        Some(share < 0.01),
    );
    let rounds = (runs1 - runs0).max(1);
    table.add(
        "fresh",
        format!("idle shop: order-list calls per orders round ({rounds} rounds)"),
        format!("{:.1}", (lists1 - lists0) as f64 / rounds as f64),
        "1 (one chunk: lookback 1 h < chunk 1 d)",
        Some(lists1 - lists0 <= rounds as u64),
    );
}

/// Changes one order a second for `secs`, and watches every change arrive (5 min after the last
/// at most); returns each change's lag in seconds (None: never seen).
async fn change_and_watch(
    client: &tokio_postgres::Client,
    sim: &SimHandle,
    secs: u64,
) -> Vec<Option<f64>> {
    let mut pending: Vec<Change> = Vec::new();
    let mut lags = Vec::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if started.elapsed() < Duration::from_secs(secs) {
            let at_secs = chrono::Utc::now().timestamp();
            for sn in sim.mutate("shop-0", 1) {
                pending.push(Change {
                    sn,
                    at_secs,
                    made: Instant::now(),
                });
            }
        }
        let seen = seen_versions(client, &pending).await;
        pending.retain(|c| match seen.get(&c.sn) {
            Some(updated) if *updated >= c.at_secs => {
                lags.push(Some(c.made.elapsed().as_secs_f64()));
                false
            }
            _ => true,
        });
        let over = started.elapsed() > Duration::from_secs(secs + 300);
        if (started.elapsed() >= Duration::from_secs(secs) && pending.is_empty()) || over {
            lags.extend(pending.iter().map(|_| None));
            return lags;
        }
    }
}

/// The stored update time (seconds) of each pending change's order.
async fn seen_versions(
    client: &tokio_postgres::Client,
    pending: &[Change],
) -> BTreeMap<String, i64> {
    let sns: Vec<&str> = pending.iter().map(|c| c.sn.as_str()).collect();
    client
        .query(
            "SELECT parent_order_sn, extract(epoch FROM updated_at)::int8 FROM orders \
             WHERE parent_order_sn = ANY($1)",
            &[&sns],
        )
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default()
}

fn report_lags(table: &mut Table, lags: Vec<Option<f64>>) {
    let lost = lags.iter().filter(|l| l.is_none()).count();
    let mut seen: Vec<f64> = lags.into_iter().flatten().collect();
    seen.sort_by(f64::total_cmp);
    let at = |q: f64| {
        seen.get(((seen.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let (p50, p95, max) = (at(0.5), at(0.95), at(1.0));
    table.add(
        "fresh",
        format!(
            "orders: lag change → row, p50 / p95 / max over {} changes (1/s)",
            seen.len()
        ),
        format!("{p50:.0} / {p95:.0} / {max:.0} s"),
        "p95 < 180 s",
        Some(p95 < 180.0),
    );
    table.add(
        "fresh",
        "orders: changes never seen (5 min after the last change)",
        lost.to_string(),
        "0",
        Some(lost == 0),
    );
}
