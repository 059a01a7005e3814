//! Section 2: the API-bound sync. Several shops on one app key, 150–400 ms per page, the app's QPS
//! enforced by the simulator; pages/s ÷ QPS while enough runs are in flight to saturate the limit,
//! and how many rate-limit rejections (4000004) the daemon caused.

use std::path::Path;
use std::time::{Duration, Instant};

use temu_sync::sim::{FaultConfig, Latency, SimConfig, SimHandle, Simulator};
use temu_sync::testkit::TestDatabase;

use crate::daemon::{self, DaemonSetup, STOP_LIMIT};
use crate::observe::{connect_pg, count, running_runs};
use crate::table::Table;
use crate::Args;

/// One sample of the sync: (seconds since start, simulator requests so far, runs in flight).
type Sample = (f64, u64, i64);

pub async fn bench_api(args: &Args, dir: &Path, table: &mut Table) {
    let shops = 5;
    let orders = if args.quick { 3_000 } else { 8_000 };
    let mut config = SimConfig::demo(11, shops, orders);
    config.faults = FaultConfig {
        latency: Latency::Uniform {
            min: Duration::from_millis(150),
            max: Duration::from_millis(400),
        },
        ..FaultConfig::none()
    };
    let qps = config.apps[0].qps;
    println!(
        "[api] {shops} shops × {orders} orders on one app key, {qps} QPS, 150–400 ms per page …"
    );
    let sim = Simulator::start(config.clone())
        .await
        .expect("simulator starts");
    let db = TestDatabase::reserve("bench_api").expect("database handle");
    let streams = shops * 3;
    let daemon = daemon::start(
        dir,
        &DaemonSetup::all_streams("api", db.url(), &config, sim.router_url(), qps, streams),
    );
    let client = connect_pg(&db.url(), Duration::from_secs(30)).await;
    let started = Instant::now();
    let samples = sample_until_done(&client, &sim, streams, started).await;
    let total_secs = started.elapsed().as_secs_f64();
    let stats = sim.stats();
    let rejections = stats.outcomes.get(&4_000_004).copied().unwrap_or(0);
    daemon.stop(STOP_LIMIT);
    sim.shutdown().await;
    // Saturated: enough runs in flight that, at ≤ 400 ms per page, they could ask for more than
    // the limit (runs × 1/0.275 s ≥ 1.5 × QPS at the mean latency).
    let need = ((f64::from(qps) * 0.275 * 1.5).ceil() as i64).max(1);
    let (sat_secs, sat_rate) = saturated_rate(&samples, need);
    let util = sat_rate / f64::from(qps);
    let whole = stats.requests as f64 / total_secs;
    table.add(
        "api",
        format!("pages/s while ≥ {need} runs in flight ({shops} shops × 3 streams, one app key)"),
        format!("{sat_rate:.2} pages/s"),
        "",
        None,
    );
    table.add(
        "api",
        format!("utilisation = pages/s ÷ {qps} QPS (over {sat_secs:.0} s saturated)"),
        format!("{util:.3}"),
        "≥ 0.95",
        Some(util >= 0.95),
    );
    table.add(
        "api",
        "rate-limit rejections (4000004) over the whole sync",
        rejections.to_string(),
        "0",
        Some(rejections == 0),
    );
    table.note(format!(
        "api: the whole sync took {total_secs:.1} s for {} requests ({whole:.2}/s average incl. the tail when few runs remain)",
        stats.requests
    ));
}

/// Samples (time, requests, runs in flight) every 500 ms until every one of `streams` streams
/// succeeded once, or 600 s passed.
async fn sample_until_done(
    client: &tokio_postgres::Client,
    sim: &SimHandle,
    streams: usize,
    started: Instant,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let limit = Duration::from_secs(600);
    loop {
        let running = running_runs(client).await;
        let done = count(
            client,
            "SELECT count(DISTINCT (shop_id, stream)) FROM sync_runs WHERE status = 'succeeded'",
        )
        .await;
        samples.push((
            started.elapsed().as_secs_f64(),
            sim.stats().requests,
            running,
        ));
        if done >= streams as i64 || started.elapsed() > limit {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Over the samples with at least `need` runs in flight: (seconds covered, requests per second;
/// NaN when fewer than two such samples).
fn saturated_rate(samples: &[Sample], need: i64) -> (f64, f64) {
    let sat: Vec<&Sample> = samples.iter().filter(|s| s.2 >= need).collect();
    let (sat_secs, sat_reqs) = match (sat.first(), sat.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.0 - a.0, b.1 - a.1),
        _ => (0.0, 0),
    };
    let sat_rate = if sat_secs > 0.0 {
        sat_reqs as f64 / sat_secs
    } else {
        f64::NAN
    };
    (sat_secs, sat_rate)
}
