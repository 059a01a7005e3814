//! The daemon under measurement: its config for each section (fast database pings, one-hour
//! intervals so a measured sync runs once, `warn` logs) and the binary to start — the release
//! build beside the bench, or `BENCH_DAEMON` for A/B runs. The process itself is the test kit's
//! [`DaemonProcess`]; this module only fills in what the bench's daemons have in common.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use temu_sync::sim::SimConfig;
use temu_sync::testkit::{free_port, DaemonLaunch, DaemonProcess, SimShops};

use crate::Args;

/// What a daemon's configuration needs beyond the simulator's apps and shops.
pub struct DaemonSetup<'a> {
    /// Names its config and log files in the work directory.
    name: &'a str,
    database_url: String,
    sim: &'a SimConfig,
    router_url: String,
    app_qps: u32,
    streams: &'a str,
    batch_size: usize,
    chunk: &'a str,
    max_concurrent_runs: usize,
    /// `sync.settle`.
    settle: &'a str,
    /// Leave `intervals`, `settle`, `lookback` and `chunk` at the daemon's defaults (freshness).
    sync_defaults: bool,
}

impl<'a> DaemonSetup<'a> {
    /// All three streams, batches of 100, 7-day chunks, no rate limit, 4 runs at once.
    fn new(name: &'a str, database_url: String, sim: &'a SimConfig, router_url: String) -> Self {
        Self {
            name,
            database_url,
            sim,
            router_url,
            app_qps: 100_000,
            streams: "orders, products, aftersales",
            batch_size: 100,
            chunk: "7d",
            max_concurrent_runs: 4,
            settle: "0s",
            sync_defaults: false,
        }
    }

    /// One shop's orders stream at `app_qps`, 1-day chunks (the default), `settle` 30 s (the
    /// default: changes at the present stay out of the window being walked); the single-shop
    /// section.
    pub fn single_shop(
        name: &'a str,
        database_url: String,
        sim: &'a SimConfig,
        router_url: String,
        app_qps: u32,
    ) -> Self {
        Self {
            app_qps,
            streams: "orders",
            chunk: "1d",
            settle: "30s",
            ..Self::new(name, database_url, sim, router_url)
        }
    }

    /// The same daemon with the default intervals, settle, lookback and chunk (the freshness
    /// section).
    pub fn with_sync_defaults(self) -> Self {
        Self {
            sync_defaults: true,
            ..self
        }
    }

    /// The orders stream only, without a rate limit, at the ingest's `--batch-size` and `--chunk`
    /// (the ingest and the health section).
    pub fn orders_only(
        name: &'a str,
        database_url: String,
        sim: &'a SimConfig,
        router_url: String,
        args: &'a Args,
    ) -> Self {
        Self {
            streams: "orders",
            batch_size: args.batch_size,
            chunk: &args.chunk,
            ..Self::new(name, database_url, sim, router_url)
        }
    }

    /// All three streams, batches of 100, 7-day chunks, at `app_qps` with up to
    /// `max_concurrent_runs` runs at once (the idle daemon and the API-bound sync).
    pub fn all_streams(
        name: &'a str,
        database_url: String,
        sim: &'a SimConfig,
        router_url: String,
        app_qps: u32,
        max_concurrent_runs: usize,
    ) -> Self {
        Self {
            app_qps,
            max_concurrent_runs,
            ..Self::new(name, database_url, sim, router_url)
        }
    }
}

/// How long a measured daemon gets to exit after SIGTERM before it is killed.
pub const STOP_LIMIT: Duration = Duration::from_secs(15);

/// Starts the daemon of `setup`, its config and log in `dir`.
pub fn start(dir: &Path, setup: &DaemonSetup<'_>) -> DaemonProcess {
    let port = free_port();
    let shops = SimShops::new(setup.sim, &setup.router_url)
        .app_qps(setup.app_qps)
        .streams(setup.streams);
    DaemonLaunch::new(daemon_binary(), port, config_yaml(port, setup, &shops))
        .envs(shops.env())
        .files_in(dir, setup.name)
        .spawn()
        .expect("start target/release/temu-sync (build with cargo build --release)")
}

fn config_yaml(port: u16, s: &DaemonSetup<'_>, shops: &SimShops<'_>) -> String {
    let mut yaml = format!(
        "log: {{ format: json, level: warn }}\n\
         http: {{ listen: \"127.0.0.1:{port}\" }}\n\
         database:\n  url: \"{db}\"\n  connect_timeout: 2s\n  ping_interval: 250ms\n  \
         ping_timeout: 200ms\n  retry_min: 100ms\n  retry_max: 500ms\n  statement_timeout: 60s\n\
         temu:\n  timeout: 10s\n  read_timeout: 10s\n  connect_timeout: 2s\n  max_retries: 6\n  \
         call_deadline: 60s\n  retry_backoff_min: 20ms\n  retry_backoff_max: 300ms\n  \
         breaker_threshold: 1000\n",
        db = s.database_url,
    );
    yaml.push_str(&shops.yaml());
    let _ = write!(
        yaml,
        "sync:\n  initial_window: 91d\n  batch_size: {batch}\n  max_concurrent_runs: {runs}\n  \
         task_timeout: 1h\n  retry_backoff_min: 1s\n  retry_backoff_max: 5s\n",
        batch = s.batch_size,
        runs = s.max_concurrent_runs,
    );
    if !s.sync_defaults {
        let _ = write!(
            yaml,
            "  chunk: {chunk}\n  settle: {settle}\n  lookback: 1h\n  \
             intervals: {{ orders: 1h, products: 1h, aftersales: 1h }}\n",
            chunk = s.chunk,
            settle = s.settle,
        );
    }
    yaml.push_str("supervisor: { shutdown_timeout: 10s }\n");
    yaml
}

/// `BENCH_DAEMON` (another build of the daemon, for A/B runs), else `temu-sync` beside the bench.
fn daemon_binary() -> PathBuf {
    std::env::var_os("BENCH_DAEMON")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin_dir().join("temu-sync"))
}

fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

/// A fresh work directory for configs, logs and the ingest's exported rows.
pub fn work_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("temu-sync-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the bench work directory");
    dir
}
