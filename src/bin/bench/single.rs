//! Section 6 (issue 14): one shop. Its orders backfill at its app's 20 QPS with the simulator
//! answering in 300 ms and in 800 ms ± 50 %: order-list calls/s and their ratio to the budget,
//! wall time against the ideal (calls ÷ QPS), peak RSS, rate-limit rejections and calls per record
//! against the minimum (records ÷ 100); then the same backfill at 300 ms while the simulator
//! changes orders (drift): calls per record and how soon the first rows were committed.
//! 10 000 orders by default; `BENCH_SINGLE_ORDERS=100000` for the big one (slow on 2 cores).

use std::path::Path;
use std::time::{Duration, Instant};

use temu_sync::sim::{FaultConfig, Latency, SimConfig, SimHandle, Simulator};
use temu_sync::temu::model::API_ORDER_LIST;
use temu_sync::testkit::TestDatabase;

use crate::daemon::{self, DaemonSetup, STOP_LIMIT};
use crate::observe::{connect_pg, count, mb, proc_kb};
use crate::table::Table;

/// Orders changed per second during the drift backfill (the range is 2–5).
const DRIFT_RATE: f64 = 3.0;
/// The backfilled window (`initial_window` of the bench's daemons) and its chunk.
const WINDOW_SECS: i64 = 91 * 86_400;
const CHUNK_SECS: i64 = 86_400;
const SETTLE_SECS: i64 = 30;

/// What one backfill measured.
struct Backfill {
    qps: u32,
    /// From the first orders run's start to the first success's end.
    secs: f64,
    /// Order-list calls the simulator answered.
    calls: u64,
    /// Orders runs it took (a run that failed on a listing that kept changing is retried).
    runs: i64,
    /// Peak RSS of the daemon (kB).
    hwm: u64,
    rejections: u64,
    /// From the first run's start to the first committed order row.
    first_row_secs: f64,
    changes: u64,
    /// Calls/s over the middle 80 % of the simulator's requests (start-up and drain left out).
    steady_rate: f64,
}

pub async fn bench_single(dir: &Path, table: &mut Table) {
    let orders = std::env::var("BENCH_SINGLE_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    for latency_ms in [300, 800] {
        if let Some(b) = backfill(dir, orders, latency_ms, 0.0).await {
            report_still(table, orders, latency_ms, &b);
        }
    }
    if let Some(b) = backfill(dir, orders, 300, DRIFT_RATE).await {
        report_drift(table, orders, &b);
    }
}

/// One shop, orders only, from an empty database; `changes_per_sec` orders changed meanwhile.
async fn backfill(
    dir: &Path,
    orders: usize,
    latency_ms: u64,
    changes_per_sec: f64,
) -> Option<Backfill> {
    let config = single_sim(orders, latency_ms);
    let qps = config.apps[0].qps;
    println!(
        "[single] 1 shop × {orders} orders, {qps} QPS, {latency_ms} ms ± 50 %, {changes_per_sec} changes/s …"
    );
    let sim = Simulator::start(config.clone())
        .await
        .expect("simulator starts");
    let db = TestDatabase::reserve("bench_single").expect("database handle");
    let name = format!("single-{latency_ms}-{changes_per_sec}");
    let setup = DaemonSetup::single_shop(&name, db.url(), &config, sim.router_url(), qps);
    let daemon = daemon::start(dir, &setup);
    let client = connect_pg(&db.url(), Duration::from_secs(30)).await;
    let (changes, samples) = change_until_done(&client, &sim, changes_per_sec).await;
    let hwm = proc_kb(daemon.pid(), "VmHWM").unwrap_or(0);
    let row = client.query_opt(RUN_FIGURES, &[]).await.ok().flatten();
    daemon.stop(STOP_LIMIT);
    let calls = order_list_calls(&sim);
    let rejections = sim.stats().outcomes.get(&4_000_004).copied().unwrap_or(0);
    sim.shutdown().await;
    let row = row?;
    Some(Backfill {
        qps,
        secs: row.get(0),
        calls,
        runs: row.get(1),
        hwm,
        rejections,
        first_row_secs: row.get::<_, Option<f64>>(2).unwrap_or(f64::NAN),
        changes,
        steady_rate: middle_rate(&samples),
    })
}

/// The orders runs up to the first success: wall time, how many, first committed row.
const RUN_FIGURES: &str = "\
    WITH done AS (SELECT id, finished_at FROM sync_runs \
                  WHERE stream = 'orders' AND status = 'succeeded' ORDER BY id LIMIT 1), \
         runs AS (SELECT started_at FROM sync_runs \
                  WHERE stream = 'orders' AND id <= (SELECT id FROM done)) \
    SELECT extract(epoch FROM (SELECT finished_at FROM done) - min(started_at))::float8, \
           count(*)::int8, \
           extract(epoch FROM (SELECT min(last_synced_at) FROM orders) - min(started_at))::float8 \
    FROM runs HAVING count(*) > 0";

/// One shop of `orders` orders on the demo app (20 QPS), `latency_ms` ± 50 % per call.
pub fn single_sim(orders: usize, latency_ms: u64) -> SimConfig {
    let mut config = SimConfig::demo(13, 1, orders);
    config.faults = FaultConfig {
        latency: Latency::Uniform {
            min: Duration::from_millis(latency_ms / 2),
            max: Duration::from_millis(latency_ms * 3 / 2),
        },
        ..FaultConfig::none()
    };
    config
}

/// Changes `per_sec` orders a second until the first orders run succeeded (30 min at most);
/// returns how many changes were made and (seconds, simulator requests) every 100 ms.
async fn change_until_done(
    client: &tokio_postgres::Client,
    sim: &SimHandle,
    per_sec: f64,
) -> (u64, Vec<(f64, u64)>) {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let (mut owed, mut changes, mut ticks) = (0.0f64, 0u64, 0u64);
    loop {
        tick.tick().await;
        ticks += 1;
        samples.push((started.elapsed().as_secs_f64(), sim.stats().requests));
        owed += per_sec / 10.0;
        let now = owed.floor();
        owed -= now;
        changes += sim.mutate("shop-0", now as usize).len() as u64;
        if ticks % 5 != 0 {
            continue;
        }
        let done = count(
            client,
            "SELECT count(*) FROM sync_runs WHERE stream = 'orders' AND status = 'succeeded'",
        )
        .await;
        if done > 0 || started.elapsed() > Duration::from_secs(1800) {
            return (changes, samples);
        }
    }
}

/// Requests/s between the samples where 10 % and 90 % of the requests had been made.
fn middle_rate(samples: &[(f64, u64)]) -> f64 {
    let total = samples.last().map_or(0, |s| s.1) as f64;
    let reached = |share: f64| samples.iter().find(|s| s.1 as f64 >= share * total);
    match (reached(0.1), reached(0.9)) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / (b.0 - a.0),
        _ => f64::NAN,
    }
}

/// Order-list calls the simulator answered (its request log keeps the last 20 000).
pub fn order_list_calls(sim: &SimHandle) -> u64 {
    sim.requests()
        .iter()
        .filter(|r| r.api.as_deref() == Some(API_ORDER_LIST))
        .count() as u64
}

/// The fewest calls `orders` records need (full pages), and the chunks of the window.
fn minimum_calls(orders: usize) -> (f64, f64) {
    let chunks = (WINDOW_SECS - SETTLE_SECS + CHUNK_SECS - 1) / CHUNK_SECS;
    ((orders as f64 / 100.0).ceil(), chunks as f64)
}

fn report_still(table: &mut Table, orders: usize, latency_ms: u64, b: &Backfill) {
    let label = format!("1 shop × {orders} orders, {latency_ms} ms ± 50 %");
    let rate = b.calls as f64 / b.secs;
    let ratio = rate / f64::from(b.qps);
    let ideal = b.calls as f64 / f64::from(b.qps);
    let steady = b.steady_rate / f64::from(b.qps);
    table.add(
        "single",
        format!(
            "{label}: calls/s over the middle 80 % of the calls (ratio to {} QPS)",
            b.qps
        ),
        format!("{:.2}/s ({steady:.2})", b.steady_rate),
        "≥ 0.9 of the budget",
        Some(steady >= 0.9),
    );
    table.add(
        "single",
        format!(
            "{label}: order-list calls/s over the whole run (ratio to {} QPS)",
            b.qps
        ),
        format!("{rate:.2}/s ({ratio:.2})"),
        "informational: includes start-up and drain",
        None,
    );
    // Start-up (page 1, then page 2 of the first chunks) and drain (the last chunks' pages 1
    // and 2) are about 3 round trips at the slowest latency the simulator draws.
    let slack = 3.0 * 1.5 * latency_ms as f64 / 1000.0;
    table.add(
        "single",
        format!(
            "{label}: wall time (ideal = {} calls ÷ {} QPS)",
            b.calls, b.qps
        ),
        format!("{:.1} s (ideal {ideal:.1} s)", b.secs),
        format!("≤ ideal + 3 round trips = {:.1} s", ideal + slack),
        Some(b.secs <= ideal + slack),
    );
    table.add(
        "single",
        format!("{label}: peak RSS (VmHWM) / rate-limit rejections"),
        format!("{} / {}", mb(b.hwm), b.rejections),
        "≤ 100 MB / 0",
        Some(b.hwm <= 100 * 1024 && b.rejections == 0),
    );
    let (min, chunks) = minimum_calls(orders);
    let bound = 1.1 * min + chunks;
    table.add(
        "single",
        format!("{label}, still: calls ÷ minimum ({min:.0} = records ÷ 100; {chunks:.0} chunks)"),
        format!("{:.2} ({} calls)", b.calls as f64 / min, b.calls),
        format!("≤ 1.1 × min + 1 per chunk = {bound:.0} calls"),
        Some(b.calls as f64 <= bound),
    );
}

fn report_drift(table: &mut Table, orders: usize, b: &Backfill) {
    let label = format!("1 shop × {orders} orders, 300 ms, {DRIFT_RATE} orders/s changing");
    let (min, chunks) = minimum_calls(orders);
    let bound = 1.5 * min + chunks;
    table.add(
        "single",
        format!("{label}: calls ÷ minimum ({min:.0}; {chunks:.0} chunks)"),
        format!(
            "{:.2} ({} calls, {} runs)",
            b.calls as f64 / min,
            b.calls,
            b.runs
        ),
        format!("≤ 1.5 × min + 1 per chunk = {bound:.0} calls"),
        Some(b.calls as f64 <= bound),
    );
    table.add(
        "single",
        format!("{label}: first rows committed after / backfill took"),
        format!("{:.1} s / {:.1} s", b.first_row_secs, b.secs),
        "first rows ≤ 60 s",
        Some(b.first_row_secs <= 60.0),
    );
    table.note(format!(
        "single: the drift backfill ran while {} orders were changed ({DRIFT_RATE}/s); peak RSS {}, {} rejections",
        b.changes,
        mb(b.hwm),
        b.rejections
    ));
}
