//! Shared harness of the end-to-end sync tests: the simulator in-process, the real daemon binary
//! as a separate process (as systemd runs it), a throwaway database, and a comparison of the
//! database with the simulator's ground truth.
#![allow(dead_code)]

use std::collections::BTreeMap;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
pub use temu_sync::sim::verify::Diff;

use temu_sync::sim::{SimConfig, SimHandle, Simulator};
use temu_sync::testkit::TestDatabase;
use tokio_postgres::NoTls;

pub const BIN: &str = env!("CARGO_BIN_EXE_temu-sync");
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

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

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    _config: tempfile::NamedTempFile,
    log: tempfile::NamedTempFile,
}

impl Daemon {
    pub fn start(sim: &Sim, opts: &DaemonOptions) -> Self {
        Self::start_with_env(sim, opts, &[])
    }

    /// Like [`Daemon::start`], with extra environment variables for the child (e.g.
    /// `TEMU_SYNC__…` overrides of keys the generated file already sets).
    pub fn start_with_env(sim: &Sim, opts: &DaemonOptions, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut yaml = format!(
            "log: {{ format: json, level: \"info,temu_sync=debug\" }}\n\
             http: {{ listen: \"127.0.0.1:{port}\", admin_token: {{ env: TEST_ADMIN_TOKEN }} }}\n\
             database:\n  url: \"{db}\"\n  connect_timeout: 2s\n  ping_interval: 500ms\n  \
             ping_timeout: 400ms\n  retry_min: 100ms\n  retry_max: 1s\n  statement_timeout: 10s\n\
             temu:\n  timeout: 5s\n  read_timeout: 3s\n  connect_timeout: 2s\n  max_retries: 6\n  \
             call_deadline: 30s\n  retry_backoff_min: 20ms\n  retry_backoff_max: 300ms\n  \
             breaker_threshold: 1000\n{extra_temu}\
             apps:\n",
            db = opts.database_url,
            extra_temu = opts.extra_temu,
        );
        for (i, app) in sim.config.apps.iter().enumerate() {
            yaml.push_str(&format!(
                "  - {{ name: app{i}, app_key: \"{}\", app_secret: {{ env: TEST_APP_SECRET_{i} }}, qps: {} }}\n",
                app.app_key, app.qps
            ));
        }
        yaml.push_str("shops:\n");
        for (i, shop) in sim.config.shops.iter().enumerate() {
            let app = sim
                .config
                .apps
                .iter()
                .position(|a| a.app_key == shop.app_key)
                .unwrap_or(0);
            yaml.push_str(&format!(
                "  - {{ name: {}, region: us, app: app{app}, access_token: {{ env: TEST_TOKEN_{i} }}, base_url: \"{}\" }}\n",
                shop.name, opts.router_url
            ));
        }
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
        let mut config = tempfile::NamedTempFile::new().expect("temp config");
        config.write_all(yaml.as_bytes()).expect("write config");
        let log = tempfile::NamedTempFile::new().expect("temp log");
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(config.path())
            .arg("run")
            .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"));
        for (i, app) in sim.config.apps.iter().enumerate() {
            cmd.env(format!("TEST_APP_SECRET_{i}"), &app.app_secret);
        }
        for (i, shop) in sim.config.shops.iter().enumerate() {
            cmd.env(format!("TEST_TOKEN_{i}"), &shop.access_token);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("daemon starts");
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _config: config,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn still_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the process to exit, up to `limit`; its exit code (None: still running or killed).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Option<i32>> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// Polls `cond` every 200 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cond().await
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
