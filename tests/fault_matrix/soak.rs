//! The soak (run by scripts/soak.sh, `#[ignore]`d otherwise): the daemon for `SOAK_SECS` with
//! short intervals, simulator mutations and faults on, a database outage every
//! `SOAK_OUTAGE_EVERY` seconds; samples RSS, open fds, PostgreSQL sessions, records synced and
//! errors every `SOAK_SAMPLE_SECS`, and polls `/health` every second (as an uptime monitor does),
//! counting every `fail` answer outside an outage (and its recovery) as a false alarm; prints a
//! summary and writes it to target/soak.md. `SOAK_OUTAGE_EVERY=0`: no outages, so any `fail` is
//! false (the "never flaps under full sync load" run).
//!
//! Owns the soak's knobs, samples and summary; must not change the fault matrix's scenarios.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::observe::{daemon_sessions, duplicates, fd_count, wait_client, FD_SLACK, POOL_MAX};
use crate::sync_common::*;
use temu_sync::sim::{FaultConfig, Latency, SimConfig};
use temu_sync::testkit::{FaultMode, FaultProxy, TestDatabase};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The soak's environment knobs.
struct Knobs {
    secs: u64,
    every: u64,
    outage_every: u64,
    lookback: String,
}

impl Knobs {
    fn from_env() -> Self {
        Self {
            secs: env_u64("SOAK_SECS", 120),
            every: env_u64("SOAK_SAMPLE_SECS", 5),
            outage_every: env_u64("SOAK_OUTAGE_EVERY", 120),
            lookback: std::env::var("SOAK_LOOKBACK").unwrap_or_else(|_| "1h".into()),
        }
    }
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `RssAnon`, …); 0 when unreadable.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Records seen by the latest successful orders run of each shop, summed.
async fn orders_window(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT coalesce(sum(records_seen), 0)::bigint FROM (
               SELECT DISTINCT ON (shop_id) records_seen FROM sync_runs
               WHERE stream = 'orders' AND status = 'succeeded'
               ORDER BY shop_id, finished_at DESC) latest",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

struct Sample {
    at: Duration,
    rss: u64,
    /// The anonymous part of RSS (heap, stacks): file-backed pages are mostly the binary's code,
    /// which grows as more code paths run (a debug build's text is tens of MB) and is reclaimable.
    anon: u64,
    fds: usize,
    pg: i64,
    records: f64,
    errors: f64,
    runs_failed: f64,
    /// Records the latest successful orders run of each shop saw, summed: the working set of an
    /// incremental round (everything updated within `lookback` of the cursor).
    window: i64,
}

/// The soak's world: two shops × 2000 orders, mutations and ~5.5 % API faults, the database
/// behind the fault proxy. Fields drop in order: the daemon before what it uses.
struct Soak {
    http: reqwest::Client,
    client: tokio_postgres::Client,
    daemon: Daemon,
    proxy: FaultProxy,
    sim: Sim,
    db: TestDatabase,
}

fn soak_faults() -> FaultConfig {
    FaultConfig {
        latency: Latency::Uniform {
            min: Duration::from_millis(2),
            max: Duration::from_millis(40),
        },
        system_error: 0.02,
        http_502: 0.01,
        http_429: 0.005,
        reset: 0.01,
        truncated: 0.005,
        malformed: 0.005,
        ..FaultConfig::default()
    }
}

impl Soak {
    async fn start(knobs: &Knobs) -> Self {
        let db = TestDatabase::reserve("soak").expect("test database");
        let mut config = SimConfig::demo(fastrand::u64(..), 2, 2000);
        config.apps[0].qps = 50;
        config.mutation_rate = 0.5;
        config.faults = soak_faults();
        let sim = Sim::start(config).await;
        let proxy = FaultProxy::start(db.server_addr(), FaultMode::Pass)
            .await
            .expect("proxy");
        let mut opts = options(&db, &sim);
        opts.interval = "2s";
        opts.lookback = knobs.lookback.clone();
        opts.database_url = db.url_via(Some(proxy.addr()));
        let daemon = Daemon::start(&sim, &opts);
        let client = wait_client(&db)
            .await
            .expect("daemon migrated the database");
        let http = reqwest::Client::new();
        Self {
            http,
            client,
            daemon,
            proxy,
            sim,
            db,
        }
    }

    /// A 2 s database outage: the proxy refuses, then passes again; `in_outage` is set from
    /// the start until [`OUTAGE_GRACE`] after the end (cleared by the caller's next sample).
    async fn outage(&self, in_outage: &AtomicBool) {
        in_outage.store(true, Ordering::Relaxed);
        self.proxy.set_mode(FaultMode::Refuse);
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.proxy.set_mode(FaultMode::Pass);
    }

    async fn sample(&self, at: Duration) -> Sample {
        let pid = self.daemon.pid();
        let metrics = match self
            .http
            .get(self.daemon.url("/metrics"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        Sample {
            at,
            rss: status_kib(pid, "VmRSS"),
            anon: status_kib(pid, "RssAnon"),
            fds: fd_count(pid),
            pg: daemon_sessions(&self.client, &self.db).await,
            records: metric_sum(&metrics, "temu_sync_sync_records_total{"),
            errors: metric_sum(&metrics, "temu_sync_api_errors_total{"),
            runs_failed: metrics
                .lines()
                .filter(|l| l.starts_with("temu_sync_sync_runs_total{") && !l.contains("success"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
            window: orders_window(&self.client).await,
        }
    }
}

fn print_sample(s: &Sample) {
    println!(
        "[{:>6.0}s] rss {:>7} KiB (anon {:>7})  fds {:>4}  pg {:>3}  records {:>8}  api errors {:>6}  runs not ok {:>5}  window {:>5}",
        s.at.as_secs_f64(),
        s.rss,
        s.anon,
        s.fds,
        s.pg,
        s.records,
        s.errors,
        s.runs_failed,
        s.window
    );
}

/// Samples every `knobs.every` seconds for `knobs.secs`, with an outage every
/// `knobs.outage_every`; the samples and the number of outages.
async fn sample_for(
    soak: &mut Soak,
    knobs: &Knobs,
    started: Instant,
    in_outage: &AtomicBool,
) -> (Vec<Sample>, u32) {
    let mut samples: Vec<Sample> = Vec::new();
    let mut outages = 0;
    let mut next_outage = Duration::from_secs(knobs.outage_every);
    let mut outage_ended: Option<Instant> = None;
    while started.elapsed() < Duration::from_secs(knobs.secs) {
        tokio::time::sleep(Duration::from_secs(knobs.every)).await;
        assert!(
            soak.daemon.still_running(),
            "daemon died\n{}",
            soak.daemon.log_tail(30)
        );
        if outage_ended.is_some_and(|at| at.elapsed() >= OUTAGE_GRACE) {
            in_outage.store(false, Ordering::Relaxed);
            outage_ended = None;
        }
        if knobs.outage_every > 0 && started.elapsed() >= next_outage {
            soak.outage(in_outage).await;
            outage_ended = Some(Instant::now());
            outages += 1;
            next_outage += Duration::from_secs(knobs.outage_every);
        }
        let s = soak.sample(started.elapsed()).await;
        print_sample(&s);
        samples.push(s);
    }
    (samples, outages)
}

/// How long after an outage a `fail` still counts as the outage's (detect + recover).
const OUTAGE_GRACE: Duration = Duration::from_secs(15);

/// What the `/health` poller saw.
#[derive(Default)]
struct HealthTally {
    polls: u64,
    pass: u64,
    warn: u64,
    /// `fail` during an outage or within [`OUTAGE_GRACE`] after it.
    fail_expected: u64,
    /// `fail` (or no answer) at any other time, with the first few answers.
    fail_false: u64,
    false_examples: Vec<String>,
}

/// Polls `/health` every second until `stop`; `in_outage` is set by the outage injector for the
/// outage and its grace period.
async fn poll_health(
    http: reqwest::Client,
    url: String,
    in_outage: Arc<AtomicBool>,
    stop: tokio_util::sync::CancellationToken,
) -> HealthTally {
    let mut tally = HealthTally::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return tally,
            _ = tick.tick() => {}
        }
        let answer = http.get(&url).timeout(Duration::from_secs(5)).send().await;
        tally.polls += 1;
        let (code, body) = match answer {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, format!("no answer: {e}")),
        };
        if code == 200 && body.contains("\"status\":\"pass\"") {
            tally.pass += 1;
        } else if code == 200 {
            tally.warn += 1;
        } else if in_outage.load(Ordering::Relaxed) {
            tally.fail_expected += 1;
        } else {
            tally.fail_false += 1;
            if tally.false_examples.len() < 5 {
                tally.false_examples.push(format!(
                    "{code}: {}",
                    body.chars().take(400).collect::<String>()
                ));
            }
        }
    }
}

/// After the faults and changes stop: one clean round, compared with the truth.
struct EndState {
    round: bool,
    diff: Diff,
    dups: i64,
    mutations: u64,
    panics: usize,
    exit: Option<Option<i32>>,
}

async fn end_state(soak: &mut Soak) -> EndState {
    soak.sim.handle.set_faults(FaultConfig::none());
    soak.sim.handle.set_mutation_rate(0.0);
    let since = db_now(&soak.client).await;
    let round =
        wait_for_complete_round(&soak.client, &soak.sim, since, Duration::from_secs(120)).await;
    let diff = compare(&soak.client, &soak.sim).await;
    let dups = duplicates(&soak.client).await;
    let truth = soak.sim.handle.ground_truth();
    let mutations: u64 = truth.shops.values().map(|s| s.mutations).sum();
    let log = soak.daemon.log();
    let panics = log.matches("panicked").count();
    soak.daemon.signal(libc::SIGTERM);
    let exit = soak.daemon.wait_exit(Duration::from_secs(20));
    EndState {
        round,
        diff,
        dups,
        mutations,
        panics,
        exit,
    }
}

/// The summary's measures: (name, after warm-up, end, max).
fn measures(
    first: &Sample,
    last: &Sample,
    samples: &[Sample],
) -> [(&'static str, f64, f64, f64); 8] {
    let max = |f: &dyn Fn(&Sample) -> f64| samples.iter().map(f).fold(f64::MIN, f64::max);
    let row = |name, f: &dyn Fn(&Sample) -> f64| (name, f(first), f(last), max(f));
    [
        row("RSS (KiB)", &|s| s.rss as f64),
        row("anonymous RSS (KiB)", &|s| s.anon as f64),
        row("open fds", &|s| s.fds as f64),
        row("PostgreSQL sessions", &|s| s.pg as f64),
        row("records written (total)", &|s| s.records),
        row("API errors (total)", &|s| s.errors),
        row("runs not succeeded (total)", &|s| s.runs_failed),
        row("records per incremental orders round (both shops)", &|s| {
            s.window as f64
        }),
    ]
}

fn summary(
    knobs: &Knobs,
    took: Duration,
    samples: &[Sample],
    warm: (&Sample, &Sample),
    outages: u32,
    end: &EndState,
    health: &HealthTally,
) -> String {
    let (first, last) = warm;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "soak: {:.0} s, {} samples every {} s, 2 shops × 2000 orders, mutation rate 0.5/order-list request, \
         API faults ~5.5 % of requests, {outages} database outage(s) of 2 s, lookback {}\n",
        took.as_secs_f64(),
        samples.len(),
        knobs.every,
        knobs.lookback
    );
    let _ = writeln!(
        out,
        "| measure | after warm-up ({:.0} s) | end | growth | max |",
        first.at.as_secs_f64()
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (name, a, b, m) in measures(first, last, samples) {
        let _ = writeln!(out, "| {name} | {a:.0} | {b:.0} | {:+.0} | {m:.0} |", b - a);
    }
    let _ = writeln!(
        out,
        "\nend state: final round {}, simulator mutations {}, compare: {}, duplicates {}, \
         panics {}, SIGTERM exit {:?}",
        if end.round {
            "completed"
        } else {
            "DID NOT complete"
        },
        end.mutations,
        end.diff.summary(),
        end.dups,
        end.panics,
        end.exit
    );
    let _ = writeln!(
        out,
        "\n/health polled every 1 s: {} answers — {} pass, {} warn, {} fail during an outage or \
         within {} s after it, **{} fail at any other time** (false alarms)",
        health.polls,
        health.pass,
        health.warn,
        health.fail_expected,
        OUTAGE_GRACE.as_secs(),
        health.fail_false
    );
    for example in &health.false_examples {
        let _ = writeln!(out, "  false alarm: {example}");
    }
    out
}

/// The whole soak: start, sample, stop the faults, compare, summarise, assert.
pub async fn run() {
    let knobs = Knobs::from_env();
    let mut soak = Soak::start(&knobs).await;
    let started = Instant::now();
    let in_outage = Arc::new(AtomicBool::new(false));
    let stop = tokio_util::sync::CancellationToken::new();
    let poller = tokio::spawn(poll_health(
        soak.http.clone(),
        soak.daemon.url("/health"),
        in_outage.clone(),
        stop.clone(),
    ));
    let (samples, outages) = sample_for(&mut soak, &knobs, started, &in_outage).await;
    stop.cancel();
    let health = poller.await.expect("the /health poller");
    let end = end_state(&mut soak).await;
    // Growth after warm-up: the first sample past 10 % of the run against the last.
    let warm = samples
        .iter()
        .position(|s| s.at >= Duration::from_secs(knobs.secs / 10))
        .unwrap_or(0);
    let (first, last) = (&samples[warm], &samples[samples.len() - 1]);
    let out = summary(
        &knobs,
        started.elapsed(),
        &samples,
        (first, last),
        outages,
        &end,
        &health,
    );
    println!("\n{out}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/soak.md");
    let _ = std::fs::write(&path, &out);
    assert!(end.round, "final round");
    assert!(end.diff.is_clean(), "{}", end.diff.summary());
    assert_eq!(end.dups, 0);
    assert_eq!(end.panics, 0);
    assert_eq!(end.exit, Some(Some(0)));
    assert!(
        last.fds <= first.fds + FD_SLACK,
        "fd growth {} -> {}",
        first.fds,
        last.fds
    );
    assert!((0..=POOL_MAX).contains(&last.pg));
    assert_eq!(
        health.fail_false, 0,
        "/health said fail outside an outage: {:?}",
        health.false_examples
    );
}
