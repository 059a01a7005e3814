//! Shared world of the end-to-end sync tests (`tests/sync/`) and the fault matrix: the simulator
//! in-process, the real daemon binary as a separate process (the test kit's harness) with the
//! config these tests share, a throwaway database, queries of its `sync_runs`, and a comparison
//! of the database with the simulator's ground truth. Generic pieces (processes, ports, waits)
//! live in `temu_sync::testkit`; `free_port` and `eventually` are re-exported from there.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

pub use temu_sync::sim::verify::Diff;
pub use temu_sync::testkit::{eventually, free_port};

use temu_sync::sim::{SimConfig, SimHandle, Simulator};
use temu_sync::testkit::{DaemonLaunch, DaemonProcess, SimShops, TestDatabase};
use tokio_postgres::NoTls;

pub const BIN: &str = env!("CARGO_BIN_EXE_temu-sync");
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A simulator plus what a daemon config needs to reach it.
pub struct Sim {
    pub handle: SimHandle,
    pub config: SimConfig,
}

impl Sim {
    pub async fn start(config: SimConfig) -> Self {
        let handle = Simulator::start(config.clone())
            .await
            .expect("simulator starts");
        Self { handle, config }
    }
}

/// Knobs of one daemon's configuration.
#[derive(Clone)]
pub struct DaemonOptions {
    pub database_url: String,
    pub router_url: String,
    pub extra_sync: String,
    pub extra_temu: String,
    pub interval: &'static str,
    /// `sync.chunk`: how much of the window one walk covers.
    pub chunk: &'static str,
    /// `sync.lookback`: how far each incremental window reaches back before the cursor.
    pub lookback: String,
}

/// The daemon of one test: the test kit's [`DaemonProcess`] (log, signals, exit, kill on drop;
/// its methods through `Deref`) started with [`DaemonOptions`] against a [`Sim`].
pub struct Daemon {
    /// Where its HTTP endpoint listens (a field, as the fuzz tests read it).
    pub addr: SocketAddr,
    process: DaemonProcess,
}

impl Daemon {
    pub fn start(sim: &Sim, opts: &DaemonOptions) -> Self {
        Self::start_with_env(sim, opts, &[])
    }

    /// Like [`Daemon::start`], with extra environment variables for the child (e.g.
    /// `TEMU_SYNC__…` overrides of keys the generated file already sets).
    pub fn start_with_env(sim: &Sim, opts: &DaemonOptions, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let shops = SimShops::new(&sim.config, &opts.router_url);
        let yaml = config_yaml(port, opts, &shops);
        let process = DaemonLaunch::new(BIN, port, yaml)
            .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(shops.env())
            .envs(env.iter().copied())
            .spawn()
            .expect("daemon starts");
        Self {
            addr: process.addr(),
            process,
        }
    }
}

impl std::ops::Deref for Daemon {
    type Target = DaemonProcess;

    fn deref(&self) -> &DaemonProcess {
        &self.process
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut DaemonProcess {
        &mut self.process
    }
}

/// The whole config file: fast timeouts and retries so faults resolve within a test's patience.
fn config_yaml(port: u16, opts: &DaemonOptions, shops: &SimShops<'_>) -> String {
    let mut yaml = format!(
        "log: {{ format: json, level: \"info,temu_sync=debug\" }}\n\
         http: {{ listen: \"127.0.0.1:{port}\", admin_token: {{ env: TEST_ADMIN_TOKEN }} }}\n\
         database:\n  url: \"{db}\"\n  connect_timeout: 2s\n  ping_interval: 500ms\n  \
         ping_timeout: 400ms\n  retry_min: 100ms\n  retry_max: 1s\n  statement_timeout: 10s\n\
         temu:\n  timeout: 5s\n  read_timeout: 3s\n  connect_timeout: 2s\n  max_retries: 6\n  \
         call_deadline: 30s\n  retry_backoff_min: 20ms\n  retry_backoff_max: 300ms\n  \
         breaker_threshold: 1000\n{extra_temu}",
        db = opts.database_url,
        extra_temu = opts.extra_temu,
    );
    yaml.push_str(&shops.yaml());
    yaml.push_str(&format!(
        "sync:\n  initial_window: 91d\n  chunk: {chunk}\n  settle: 0s\n  lookback: {lookback}\n  lease_ttl: 3s\n  \
         retry_backoff_min: 200ms\n  retry_backoff_max: 1s\n  max_retries: 5\n{}  \
         intervals: {{ orders: {i}, products: {i}, aftersales: {i} }}\n\
         supervisor: {{ shutdown_timeout: 8s }}\n",
        opts.extra_sync,
        i = opts.interval,
        chunk = opts.chunk,
        lookback = opts.lookback
    ));
    yaml
}

pub fn options(db: &TestDatabase, sim: &Sim) -> DaemonOptions {
    DaemonOptions {
        database_url: db.url(),
        router_url: sim.handle.router_url(),
        extra_sync: String::new(),
        extra_temu: String::new(),
        interval: "2s",
        chunk: "7d",
        lookback: "1h".into(),
    }
}

/// A plain client connection to the test database, for assertions.
pub async fn pg(db: &TestDatabase) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&db.url(), NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Succeeded runs per stream that started after `since` (database clock).
pub async fn succeeded_since(
    client: &tokio_postgres::Client,
    since: chrono::DateTime<chrono::Utc>,
) -> BTreeMap<(String, String), i64> {
    let rows = client
        .query(
            "SELECT s.name, r.stream, count(*) FROM sync_runs r JOIN shops s ON s.id = r.shop_id \
             WHERE r.status = 'succeeded' AND r.started_at > $1 GROUP BY 1, 2",
            &[&since],
        )
        .await
        .unwrap_or_default();
    rows.iter()
        .map(|r| {
            (
                (r.get::<_, String>(0), r.get::<_, String>(1)),
                r.get::<_, i64>(2),
            )
        })
        .collect()
}

/// Waits (up to `limit`) until some run has fetched pages and is still running.
pub async fn run_in_progress(client: &tokio_postgres::Client, limit: Duration) -> bool {
    eventually(limit, || async {
        client
            .query_one(
                "SELECT count(*) FROM sync_runs WHERE status = 'running' AND pages > 0",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0) > 0)
            .unwrap_or(false)
    })
    .await
}

/// Waits until every shop × stream has a succeeded run that started after `since`.
pub async fn wait_for_complete_round(
    client: &tokio_postgres::Client,
    sim: &Sim,
    since: chrono::DateTime<chrono::Utc>,
    limit: Duration,
) -> bool {
    let want = sim.config.shops.len() * 3;
    eventually(limit, || async {
        succeeded_since(client, since).await.len() >= want
    })
    .await
}

pub async fn db_now(client: &tokio_postgres::Client) -> chrono::DateTime<chrono::Utc> {
    client
        .query_one("SELECT now()", &[])
        .await
        .expect("now()")
        .get(0)
}

/// Compares the database with the simulator's ground truth (see `temu_sync::sim::verify`).
pub async fn compare(client: &tokio_postgres::Client, sim: &Sim) -> Diff {
    temu_sync::sim::verify::compare(client, &sim.handle.ground_truth())
        .await
        .expect("comparison queries")
}

/// A daemon's configuration in a file, with the environment its secrets come from, for running
/// an operator command (`audit`, `backfill`, `reset`) against the same database and simulator.
pub struct CliConfig {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    env: Vec<(String, String)>,
}

impl CliConfig {
    pub fn new(sim: &Sim, opts: &DaemonOptions) -> Self {
        let shops = SimShops::new(&sim.config, &opts.router_url);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cli.yaml");
        std::fs::write(&path, config_yaml(free_port(), opts, &shops)).expect("write config");
        Self {
            _dir: dir,
            path,
            env: shops.env(),
        }
    }

    /// Runs `temu-sync --config <file> <args…>` with stdin closed; (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = std::process::Command::new(BIN)
            .arg("--config")
            .arg(&self.path)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the CLI");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    }
}

/// A connection to the test database once the daemon has created and migrated it.
pub async fn wait_for_client(db: &TestDatabase) -> tokio_postgres::Client {
    let url = db.url();
    let client = temu_sync::testkit::eventually_some(Duration::from_secs(30), || async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
            .query_one("SELECT count(*) FROM sync_runs", &[])
            .await
            .ok()
            .map(|_| client)
    })
    .await;
    client.expect("the daemon did not create and migrate the database")
}
