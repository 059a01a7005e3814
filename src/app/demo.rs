//! `temu-sync demo`: the quick start. Starts the Temu simulator in-process, points the real
//! daemon at it and at the configured PostgreSQL (database name + `_demo`), shows progress while
//! the first round of every stream runs, then compares the database with the simulator's ground
//! truth and prints the verdict.
//!
//! Owns: the demo's steps — `point_at_simulator`, `fresh_database`, `watch_rounds` (the
//! progress lines and when the demo is done) and `print_verdict`. Must not: drop any database
//! whose name does not end in `_demo`, or wait on anything without a deadline (invariant 4).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::NoTls;

use crate::config::{AppConfig, Config, Region, Secret, ShopConfig, Stream};
use crate::sim::{verify, GroundTruth, SimConfig, SimHandle, Simulator};
use crate::sync::{StreamState, StreamView, SyncBoard};

/// What the demo syncs.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    pub shops: usize,
    pub orders: usize,
    pub seed: u64,
}

/// How long the comparison with the ground truth may take.
const VERDICT_DEADLINE: Duration = Duration::from_secs(60);

/// The demo's database: the configured one with `_demo` appended to its name.
fn demo_database_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let with = match base.rsplit_once('/') {
        Some((prefix, name)) if !name.is_empty() && prefix.contains("://") => {
            format!("{prefix}/{name}_demo")
        }
        _ => format!("{base}/temu_sync_demo"),
    };
    match query {
        Some(q) => format!("{with}?{q}"),
        None => with,
    }
}

/// Drops the demo database, so every demo starts from empty (the daemon creates it again).
async fn fresh_database(config: &Config) -> Result<(), String> {
    let mut pg = config.database.pg_config().map_err(|e| e.to_string())?;
    let name = pg.get_dbname().unwrap_or("temu_sync_demo").to_string();
    if !name.ends_with("_demo") {
        return Err(format!("refusing to drop {name:?}: not a demo database"));
    }
    pg.dbname("postgres");
    pg.connect_timeout(config.database.connect_timeout);
    let work = async {
        let (client, conn) = pg.connect(NoTls).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                name.replace('"', "\"\"")
            ))
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .map_err(|_| "PostgreSQL did not answer within 30 s".to_string())?
}

/// Runs the demo; the exit code is 0 when the database matches the ground truth.
pub async fn run(mut config: Config, opts: DemoOptions) -> i32 {
    let mut sim_config = SimConfig::demo(opts.seed, opts.shops, opts.orders);
    sim_config.mutation_rate = 0.05;
    let sim = match Simulator::start(sim_config.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("temu-sync demo: cannot start the simulator: {e}");
            return crate::exit::SOFTWARE;
        }
    };
    point_at_simulator(&mut config, &sim_config, &sim);
    let db_url = config.database.url.clone();
    if let Err(e) = fresh_database(&config).await {
        eprintln!("temu-sync demo: cannot reset the demo database: {e}");
        sim.shutdown().await;
        return crate::exit::UNAVAILABLE;
    }
    println!(
        "demo: simulator at {} with {} shop(s) x {} orders; database {}; health at http://{}/health",
        sim.router_url(),
        opts.shops,
        opts.orders,
        db_url,
        config.http.listen
    );

    let board = SyncBoard::default();
    let started = Instant::now();
    let done = watch_rounds(board.clone(), &sim, opts.shops * Stream::ALL.len(), started);
    let code = super::run_with(config, board, async {
        tokio::select! {
            reason = done => reason,
            signal = super::shutdown_signal() => signal,
        }
    })
    .await;
    if code != crate::exit::OK {
        sim.shutdown().await;
        return code;
    }
    let took = started.elapsed();
    let truth = sim.ground_truth();
    sim.shutdown().await;
    print_verdict(&db_url, &truth, took).await
}

/// Replaces the configured apps and shops with the simulator's, and the database with its
/// `_demo` twin; a 91-day backfill in weekly chunks, then 5 s intervals so that one incremental
/// round after the backfill shows updates being picked up.
fn point_at_simulator(config: &mut Config, sim_config: &SimConfig, sim: &SimHandle) {
    let app = &sim_config.apps[0];
    config.apps = vec![AppConfig {
        name: "demo".into(),
        app_key: app.app_key.clone(),
        app_secret: Secret::inline(app.app_secret.clone()),
        qps: app.qps,
    }];
    config.shops = sim_config
        .shops
        .iter()
        .map(|s| ShopConfig {
            name: s.name.clone(),
            region: Region::Us,
            app: "demo".into(),
            access_token: Secret::inline(s.access_token.clone()),
            base_url: Some(sim.router_url()),
            streams: Stream::ALL.to_vec(),
        })
        .collect();
    config.database.url = demo_database_url(&config.database.url);
    config.sync.initial_window = Duration::from_secs(91 * 86_400);
    config.sync.chunk = Duration::from_secs(7 * 86_400);
    config.sync.settle = Duration::ZERO;
    config.sync.intervals.orders = Duration::from_secs(5);
    config.sync.intervals.products = Duration::from_secs(5);
    config.sync.intervals.aftersales = Duration::from_secs(5);
}

/// Resolves when the demo is over, with the reason: every stream finished the backfill (while
/// the simulator keeps changing orders under the walk) and then one more round with the
/// simulator holding still — or a stream was parked. Prints a progress line when it changes.
async fn watch_rounds(
    board: SyncBoard,
    sim: &SimHandle,
    streams: usize,
    started: Instant,
) -> &'static str {
    let mut last_line = String::new();
    // `None` during the backfill; then when the incremental round began.
    let mut second_round_after: Option<DateTime<Utc>> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let views = board.views();
        if views.iter().any(|v| v.state == StreamState::Parked) {
            return "a stream was parked";
        }
        let finished = finished_streams(&views, second_round_after);
        let phase = if second_round_after.is_none() {
            "backfill"
        } else {
            "incremental round"
        };
        let line = format!(
            "demo: {phase}: {finished}/{streams} streams done, ~{} records, {:.1} s",
            records_so_far(&views),
            started.elapsed().as_secs_f64()
        );
        if line != last_line {
            println!("{line}");
            last_line = line;
        }
        if views.len() == streams && finished == streams {
            if second_round_after.is_some() {
                return "demo complete";
            }
            println!(
                "demo: backfill done in {:.1} s while {} orders changed under it; the simulator now holds still for one incremental round",
                started.elapsed().as_secs_f64(),
                total_mutations(&sim.ground_truth())
            );
            sim.set_mutation_rate(0.0);
            second_round_after = Some(Utc::now());
        }
    }
}

/// Streams done with the current round: during the backfill, those that succeeded once; in the
/// incremental round, those whose last successful run started after `second_round_after`.
fn finished_streams(views: &[StreamView], second_round_after: Option<DateTime<Utc>>) -> usize {
    match second_round_after {
        None => views.iter().filter(|v| v.last_success_at.is_some()).count(),
        Some(t) => views
            .iter()
            .filter(|v| {
                v.last_run.as_ref().is_some_and(|r| {
                    r.outcome == "succeeded"
                        && r.finished_at - chrono::Duration::milliseconds(r.duration_ms as i64) > t
                })
            })
            .count(),
    }
}

/// Records seen by the runs in progress plus those written by the last finished runs.
fn records_so_far(views: &[StreamView]) -> u64 {
    views
        .iter()
        .map(|v| {
            v.progress.map(|p| p.records_seen).unwrap_or(0)
                + v.last_run
                    .as_ref()
                    .map(|r| r.inserted + r.updated)
                    .unwrap_or(0)
        })
        .sum()
}

fn total_mutations(truth: &GroundTruth) -> u64 {
    truth.shops.values().map(|s| s.mutations).sum()
}

/// Compares the demo database with the ground truth and prints the verdict; the exit code.
async fn print_verdict(db_url: &str, truth: &GroundTruth, took: Duration) -> i32 {
    let verdict = async {
        let (client, conn) = tokio_postgres::connect(db_url, NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        verify::compare(&client, truth).await
    };
    let diff = match tokio::time::timeout(VERDICT_DEADLINE, verdict).await {
        Ok(Ok(diff)) => diff,
        Ok(Err(e)) => {
            eprintln!("temu-sync demo: cannot read the demo database: {e}");
            return crate::exit::UNAVAILABLE;
        }
        Err(_) => {
            eprintln!("temu-sync demo: the comparison did not finish within 60 s");
            return crate::exit::UNAVAILABLE;
        }
    };
    println!(
        "demo: synced in {:.1} s; compared {} records with the simulator: {} missing, {} stale, {} extra, {} with wrong items ({} orders changed while syncing)",
        took.as_secs_f64(),
        diff.checked,
        diff.missing.len(),
        diff.stale.len(),
        diff.extra.len(),
        diff.item_mismatch.len(),
        total_mutations(truth)
    );
    if diff.is_clean() {
        println!("demo: OK: PostgreSQL holds exactly what the simulated Temu holds");
        crate::exit::OK
    } else {
        println!("demo: MISMATCH: {}", diff.summary());
        1
    }
}

#[cfg(test)]
mod tests {
    use super::demo_database_url;

    #[test]
    fn demo_database_gets_its_own_name() {
        assert_eq!(
            demo_database_url("postgres://postgres@127.0.0.1:5432/temu_sync"),
            "postgres://postgres@127.0.0.1:5432/temu_sync_demo"
        );
        assert_eq!(
            demo_database_url("postgres://u@h/db?sslmode=disable"),
            "postgres://u@h/db_demo?sslmode=disable"
        );
    }
}
