//! `temu-sync demo`: the quick start. Starts the Temu simulator in-process, points the real
//! daemon at it and at a database of its own ([`demo_database`]), shows progress while the first
//! round of every stream runs and then one incremental round, prints a summary table, compares
//! the database with the simulator's ground truth and prints the verdict.
//!
//! Owns: the demo's steps — `demo_database` (`database.rs`: where the data goes, the advice when
//! there is no PostgreSQL), `point_at_simulator`, [`Watch`] (when the demo is done),
//! the screen (`screen.rs`: live bars on a terminal, plain lines otherwise, the quiet log),
//! the tally (`tally.rs`: the counts it shows, never running backwards), the summary table
//! (`summary.rs`) and `print_verdict`. Must not: wait on anything without a deadline
//! (invariant 4).

mod database;
mod screen;
mod summary;
mod tally;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::NoTls;

pub use database::{demo_database, DemoDb, DemoDbError};
pub use screen::Screen;
pub use tally::{StreamTally, Tally};

use crate::config::{AppConfig, Config, Region, Secret, ShopConfig, Stream};
use crate::sim::{verify, GroundTruth, SimConfig, SimHandle, Simulator};
use crate::sync::{StreamState, StreamView, SyncBoard};

/// What the demo syncs.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    pub shops: usize,
    pub orders: usize,
    pub seed: u64,
    /// Start a throwaway cluster when no PostgreSQL answers (`--no-own-cluster` turns it off).
    pub own_cluster: bool,
}

/// How long the comparison with the ground truth may take.
const VERDICT_DEADLINE: Duration = Duration::from_secs(60);

/// Runs the demo; the exit code is 0 when the database matches the ground truth, 69 when there
/// is no database to use (the advice is printed).
pub async fn run(mut config: Config, opts: DemoOptions, mut screen: Screen) -> i32 {
    let db = match demo_database(&config, opts.own_cluster).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("temu-sync demo: {e}");
            eprintln!("(exit {})", crate::exit::UNAVAILABLE);
            return crate::exit::UNAVAILABLE;
        }
    };
    let mut sim_config = SimConfig::demo(opts.seed, opts.shops, opts.orders);
    sim_config.mutation_rate = 0.05;
    let sim = match Simulator::start(sim_config.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("temu-sync demo: cannot start the simulator: {e}");
            return crate::exit::SOFTWARE;
        }
    };
    point_at_simulator(&mut config, &sim_config, &sim, &db);
    println!(
        "demo: simulator at {} with {} shop(s) x {} orders; {}; health at http://{}/health",
        sim.router_url(),
        opts.shops,
        opts.orders,
        db.described,
        config.http.listen
    );

    let board = SyncBoard::default();
    let mut watch = Watch::new(opts.shops * Stream::ALL.len());
    let code = super::run_with(config, board.clone(), async {
        tokio::select! {
            reason = watch.until_done(&board, &sim, &mut screen) => reason,
            signal = super::shutdown_signal() => signal,
        }
    })
    .await;
    screen.finish();
    if code != crate::exit::OK {
        sim.shutdown().await;
        return code;
    }
    print!("{}", summary::render(&watch.tally));
    let took = watch.started.elapsed();
    let truth = sim.ground_truth();
    sim.shutdown().await;
    print_verdict(&db.url, &truth, took).await
}

/// Replaces the configured apps and shops with the simulator's, and the database with the
/// demo's; a 91-day backfill in weekly chunks, then 5 s intervals so that one incremental
/// round after the backfill shows updates being picked up.
fn point_at_simulator(config: &mut Config, sim_config: &SimConfig, sim: &SimHandle, db: &DemoDb) {
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
    config.database.url = db.url.clone();
    config.sync.initial_window = Duration::from_secs(91 * 86_400);
    config.sync.chunk = Duration::from_secs(7 * 86_400);
    config.sync.settle = Duration::ZERO;
    config.sync.intervals.orders = Duration::from_secs(5);
    config.sync.intervals.products = Duration::from_secs(5);
    config.sync.intervals.aftersales = Duration::from_secs(5);
}

/// The demo's two phases: every stream finishes the backfill (while the simulator keeps
/// changing orders under the walk), then one more round with the simulator holding still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    Backfill,
    /// The incremental round began at this time.
    Incremental(DateTime<Utc>),
}

/// Follows the board until the demo is over, keeping the tally and the screen current.
struct Watch {
    streams: usize,
    round: Round,
    tally: Tally,
    started: Instant,
}

impl Watch {
    fn new(streams: usize) -> Self {
        Self {
            streams,
            round: Round::Backfill,
            tally: Tally::default(),
            started: Instant::now(),
        }
    }

    /// Resolves when the demo is over, with the reason: both rounds done, or a stream parked.
    async fn until_done(
        &mut self,
        board: &SyncBoard,
        sim: &SimHandle,
        screen: &mut Screen,
    ) -> &'static str {
        loop {
            tokio::time::sleep(screen.refresh()).await;
            let views = board.views();
            if views.iter().any(|v| v.state == StreamState::Parked) {
                return "a stream was parked";
            }
            self.tally.observe(&views, self.started.elapsed());
            let done: Vec<bool> = views.iter().map(|v| done_with(v, self.round)).collect();
            let finished = done.iter().filter(|&&d| d).count();
            screen.show(&screen::Frame {
                phase: match self.round {
                    Round::Backfill => "backfill",
                    Round::Incremental(_) => "incremental round",
                },
                finished,
                streams: self.streams,
                views: &views,
                done: &done,
                tally: &self.tally,
                elapsed: self.started.elapsed(),
            });
            if views.len() < self.streams || finished < self.streams {
                continue;
            }
            if let Round::Incremental(_) = self.round {
                return "demo complete";
            }
            screen.note(&format!(
                "demo: backfill done in {:.1} s while {} orders changed under it; the simulator now holds still for one incremental round",
                self.started.elapsed().as_secs_f64(),
                total_mutations(&sim.ground_truth())
            ));
            sim.set_mutation_rate(0.0);
            self.round = Round::Incremental(Utc::now());
        }
    }
}

/// Whether a stream is done with `round`: during the backfill, it succeeded once; in the
/// incremental round, its last successful run started after the round began.
fn done_with(view: &StreamView, round: Round) -> bool {
    match round {
        Round::Backfill => view.last_success_at.is_some(),
        Round::Incremental(t) => view.last_run.as_ref().is_some_and(|r| {
            r.outcome == "succeeded"
                && r.finished_at - chrono::Duration::milliseconds(r.duration_ms as i64) > t
        }),
    }
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
