//! `bench`: the performance harness of issue 7. Prints one table of figures, each measured side by
//! side with its baseline in the same run (the ratios are what matters on a shared, noisy machine).
//!
//! What it runs (needs the release binaries, a local PostgreSQL as for the tests, `psql`,
//! `pg_dump` and `wrk` on the PATH):
//!
//! 1. ingest: the simulator (in this process, no latency, no rate limit) with one shop of N orders;
//!    the real daemon (`temu-sync`, a child process) syncs the orders stream from an empty database.
//!    Baseline: `psql` loads the very same rows (exported from the daemon's database) into a fresh
//!    copy of the schema: `COPY` into staging tables, then one `INSERT … ON CONFLICT` per table.
//! 2. api: several shops on one app key, 150–400 ms per page, 20 QPS enforced by the simulator;
//!    pages/s ÷ 20 while enough runs are in flight to saturate the limit, and the 4000004 count.
//! 3. health: `wrk` against `/health` of a daemon during a sync, idle, and with its database
//!    blackholed (through the test kit's fault proxy); baseline: a bare hyper server (this binary,
//!    `--serve-bare`, a separate process) answering a fixed body, measured with the same `wrk` run.
//! 4. memory: RSS/CPU of an idle daemon with 10 shops × 3 streams; peak RSS (VmHWM) of the ingest.
//! 5. recovery: panic → replacement running, measured at library level with the supervisor and a
//!    test actor (as `tests/supervisor.rs` does); database back → `/health` 200 on the real daemon.
//!
//! `cargo build --release && target/release/bench` (or `scripts/bench.sh`); `--quick` for a short
//! run, `--markdown FILE` to write the table for docs/PERFORMANCE.md.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use temu_sync::config::SupervisorConfig;
use temu_sync::health::Health;
use temu_sync::sim::{FaultConfig, Latency, SimConfig, Simulator};
use temu_sync::supervisor::{ActorChild, ChildSpec, SupervisorArgs, SupervisorHandle};
use temu_sync::testkit::{FaultMode, FaultProxy, TestDatabase};
use tokio_postgres::NoTls;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "bench",
    about = "temu-sync benchmarks (issue 7): prints the table of figures"
)]
struct Args {
    /// Short run for iteration: 10 000 orders, shorter load phases.
    #[arg(long)]
    quick: bool,
    /// Orders of the ingest (default 100 000, 10 000 with --quick).
    #[arg(long)]
    orders: Option<usize>,
    /// `sync.batch_size` of the ingest.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// `sync.chunk` of the ingest (pages are full when a chunk holds ≥ 100 orders).
    #[arg(long, default_value = "1d")]
    chunk: String,
    /// Only these sections (ingest, api, health, memory, recovery); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also write the table as Markdown to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// wrk connections.
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// Internal: serve the bare-hyper baseline on this port until killed.
    #[arg(long, hide = true)]
    serve_bare: Option<u16>,
}

impl Args {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
    fn ingest_orders(&self) -> usize {
        self.orders
            .unwrap_or(if self.quick { 10_000 } else { 100_000 })
    }
    fn wrk_secs(&self) -> u64 {
        if self.quick {
            3
        } else {
            8
        }
    }
}

/// One line of the table.
struct Row {
    section: &'static str,
    metric: String,
    value: String,
    target: String,
    met: Option<bool>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Table {
    fn add(
        &mut self,
        section: &'static str,
        metric: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) {
        let row = Row {
            section,
            metric: metric.into(),
            value: value.into(),
            target: target.into(),
            met,
        };
        println!(
            "  {:<9} {:<58} {:>18}  {}",
            row.section,
            row.metric,
            row.value,
            verdict(&row)
        );
        self.rows.push(row);
    }
    fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  note: {note}");
        self.notes.push(note);
    }
    fn markdown(&self) -> String {
        let mut s =
            String::from("| section | metric | value | target | met |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                r.section,
                r.metric,
                r.value,
                r.target,
                match r.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                }
            );
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

fn verdict(r: &Row) -> String {
    match r.met {
        Some(true) => format!("ok   (target {})", r.target),
        Some(false) => format!("MISS (target {})", r.target),
        None if r.target.is_empty() => String::new(),
        None => format!("(target {})", r.target),
    }
}

// ---------------------------------------------------------------------------------------------
// processes

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

fn work_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("temu-sync-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the bench work directory");
    dir
}

/// What a daemon's configuration needs beyond the simulator's apps and shops.
struct DaemonSetup<'a> {
    name: &'a str,
    database_url: String,
    sim: &'a SimConfig,
    router_url: String,
    app_qps: u32,
    streams: &'a str,
    batch_size: usize,
    chunk: &'a str,
    max_concurrent_runs: usize,
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, s: &DaemonSetup<'_>) -> Self {
        let port = free_port();
        let mut yaml = format!(
            "log: {{ format: json, level: warn }}\n\
             http: {{ listen: \"127.0.0.1:{port}\" }}\n\
             database:\n  url: \"{db}\"\n  connect_timeout: 2s\n  ping_interval: 250ms\n  \
             ping_timeout: 200ms\n  retry_min: 100ms\n  retry_max: 500ms\n  statement_timeout: 60s\n\
             temu:\n  timeout: 10s\n  read_timeout: 10s\n  connect_timeout: 2s\n  max_retries: 6\n  \
             call_deadline: 60s\n  retry_backoff_min: 20ms\n  retry_backoff_max: 300ms\n  \
             breaker_threshold: 1000\n\
             apps:\n",
            db = s.database_url,
        );
        for (i, app) in s.sim.apps.iter().enumerate() {
            let _ = writeln!(
                yaml,
                "  - {{ name: app{i}, app_key: \"{}\", app_secret: {{ env: BENCH_APP_SECRET_{i} }}, qps: {} }}",
                app.app_key, s.app_qps
            );
        }
        yaml.push_str("shops:\n");
        for (i, shop) in s.sim.shops.iter().enumerate() {
            let app = s
                .sim
                .apps
                .iter()
                .position(|a| a.app_key == shop.app_key)
                .unwrap_or(0);
            let _ = writeln!(
                yaml,
                "  - {{ name: {}, region: us, app: app{app}, access_token: {{ env: BENCH_TOKEN_{i} }}, base_url: \"{}\", streams: [{}] }}",
                shop.name, s.router_url, s.streams
            );
        }
        let _ = write!(
            yaml,
            "sync:\n  initial_window: 91d\n  chunk: {chunk}\n  settle: 0s\n  lookback: 1h\n  \
             batch_size: {batch}\n  max_concurrent_runs: {runs}\n  task_timeout: 1h\n  \
             retry_backoff_min: 1s\n  retry_backoff_max: 5s\n  \
             intervals: {{ orders: 1h, products: 1h, aftersales: 1h }}\n\
             supervisor: {{ shutdown_timeout: 10s }}\n",
            chunk = s.chunk,
            batch = s.batch_size,
            runs = s.max_concurrent_runs,
        );
        let config = dir.join(format!("{}.yaml", s.name));
        std::fs::write(&config, yaml).expect("write the daemon config");
        let log = dir.join(format!("{}.log", s.name));
        // BENCH_DAEMON: another build of the daemon (for A/B runs); default the sibling binary.
        let bin = std::env::var_os("BENCH_DAEMON")
            .map(PathBuf::from)
            .unwrap_or_else(|| bin_dir().join("temu-sync"));
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(&config)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("daemon log file"));
        for (i, app) in s.sim.apps.iter().enumerate() {
            cmd.env(format!("BENCH_APP_SECRET_{i}"), &app.app_secret);
        }
        for (i, shop) in s.sim.shops.iter().enumerate() {
            cmd.env(format!("BENCH_TOKEN_{i}"), &shop.access_token);
        }
        let child = cmd
            .spawn()
            .expect("start target/release/temu-sync (build with cargo build --release)");
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn stop(mut self) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

/// A `/proc/<pid>/status` field in kB.
fn proc_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// utime + stime of a process, in seconds.
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the comm field: state is index 0, utime is field 14 overall (index 11 here).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / tick.max(1.0))
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

async fn connect_pg(url: &str, limit: Duration) -> tokio_postgres::Client {
    let end = Instant::now() + limit;
    loop {
        match tokio_postgres::connect(url, NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                return client;
            }
            Err(e) if Instant::now() > end => panic!("cannot connect to {url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits until `count` runs of `stream` (or any stream for "") succeeded; false on timeout.
async fn wait_runs(
    client: &tokio_postgres::Client,
    stream: &str,
    count: i64,
    limit: Duration,
) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM sync_runs WHERE status = 'succeeded' AND ($1 = '' OR stream = $1)",
                &[&stream],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if n >= count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn health_status(http: &reqwest::Client, url: &str) -> Option<u16> {
    http.get(url)
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn wait_health(http: &reqwest::Client, url: &str, want: u16, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if health_status(http, url).await == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// wrk

#[derive(Debug, Clone, Copy, Default)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    errors: u64,
}

impl Load {
    /// Equal-length runs combined: mean rate and median, worst p99, summed counts.
    fn mean(runs: &[Load]) -> Load {
        let n = runs.len().max(1) as f64;
        Load {
            rps: runs.iter().map(|l| l.rps).sum::<f64>() / n,
            p50_ms: runs.iter().map(|l| l.p50_ms).sum::<f64>() / n,
            p99_ms: runs.iter().map(|l| l.p99_ms).fold(0.0, f64::max),
            non_2xx: runs.iter().map(|l| l.non_2xx).sum(),
            errors: runs.iter().map(|l| l.errors).sum(),
        }
    }
}

fn parse_latency_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * factor)
}

fn wrk(url: &str, secs: u64, connections: u32) -> Load {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut load = Load::default();
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            load.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("50%") {
            load.p50_ms = parse_latency_ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("99%") {
            load.p99_ms = parse_latency_ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            load.non_2xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            load.errors = v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    load
}

// ---------------------------------------------------------------------------------------------
// the bare hyper baseline

fn serve_bare(port: u16) {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the bare server");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/health+json")
                            .body(Full::new(bytes::Bytes::from_static(
                                br#"{"status":"pass"}"#,
                            )))
                            .expect("static response"),
                    )
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// 1 + 4b: ingest

fn ingest_sim(orders: usize) -> SimConfig {
    let mut sim = SimConfig::demo(7, 1, orders);
    for app in &mut sim.apps {
        app.qps = 100_000;
    }
    sim
}

async fn bench_ingest(args: &Args, dir: &Path, table: &mut Table) {
    let orders = args.ingest_orders();
    println!("[ingest] generating {orders} orders in the simulator …");
    let config = ingest_sim(orders);
    let sim = Simulator::start(config.clone())
        .await
        .expect("simulator starts");
    let db = TestDatabase::reserve("bench_ingest").expect("database handle");
    let bench_cpu0 = proc_cpu_secs(std::process::id()).unwrap_or(0.0);
    let daemon = Daemon::start(
        dir,
        &DaemonSetup {
            name: "ingest",
            database_url: db.url(),
            sim: &config,
            router_url: sim.router_url(),
            app_qps: 100_000,
            streams: "orders",
            batch_size: args.batch_size,
            chunk: &args.chunk,
            max_concurrent_runs: 4,
        },
    );
    let pid = daemon.pid();
    let client = connect_pg(&db.url(), Duration::from_secs(30)).await;
    // Peak RSS: VmHWM at the end covers the whole run; sample VmRSS too in case of exit.
    if !wait_runs(&client, "orders", 1, Duration::from_secs(1800)).await {
        table.note(format!(
            "ingest did not finish; daemon log tail:\n{}",
            daemon.log_tail()
        ));
        daemon.stop();
        return;
    }
    let hwm = proc_kb(pid, "VmHWM").unwrap_or(0);
    let cpu = proc_cpu_secs(pid).unwrap_or(0.0);
    let sim_cpu = proc_cpu_secs(std::process::id()).unwrap_or(0.0) - bench_cpu0;
    let pg_cpu: f64 = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'temu-sync'",
            &[],
        )
        .await
        .map(|rows| {
            rows.iter()
                .filter_map(|r| proc_cpu_secs(r.get::<_, i32>(0) as u32))
                .sum()
        })
        .unwrap_or(0.0);
    let row = client
        .query_one(
            "SELECT extract(epoch FROM finished_at - started_at)::float8, pages, \
             (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items) \
             FROM sync_runs WHERE stream = 'orders' AND status = 'succeeded' ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .expect("run figures");
    let secs: f64 = row.get(0);
    let pages: i32 = row.get(1);
    let n_orders: i64 = row.get(2);
    let n_items: i64 = row.get(3);
    daemon.stop();
    sim.shutdown().await;
    let rows = (n_orders + n_items) as f64;
    let daemon_rate = rows / secs;
    println!(
        "[ingest] daemon: {n_orders} orders + {n_items} items in {secs:.2} s ({pages} pages), daemon CPU {cpu:.1} s"
    );

    // Baseline: the same rows, exported, loaded by psql into a fresh copy of the schema.
    let base = TestDatabase::create("bench_base")
        .await
        .expect("baseline database");
    let orders_file = dir.join("orders.tsv");
    let items_file = dir.join("items.tsv");
    let shops_file = dir.join("shops.tsv");
    let export = format!(
        "\\copy shops (id, name, region, mall_id) TO '{shops}'\n\
         \\copy (SELECT shop_id, parent_order_sn, status, order_time, updated_at, expect_ship_latest_time, region_id, site_id, raw FROM orders) TO '{orders}'\n\
         \\copy (SELECT i.shop_id, o.parent_order_sn, i.order_sn, i.goods_id, i.sku_id, i.status, i.quantity, i.original_quantity, i.canceled_quantity_before_shipment, i.fulfillment_type, i.product_sku_id, i.product_id, i.ext_code FROM order_items i JOIN orders o ON o.id = i.order_id) TO '{items}'\n",
        shops = shops_file.display(),
        orders = orders_file.display(),
        items = items_file.display(),
    );
    psql(&db.url(), &export, dir, "export");
    let schema = Command::new("pg_dump")
        .args(["--schema-only", "--no-owner", &db.url()])
        .output()
        .expect("pg_dump");
    let schema_file = dir.join("schema.sql");
    std::fs::write(&schema_file, &schema.stdout).expect("write schema");
    psql_file(&base.url(), &schema_file);
    psql(
        &base.url(),
        &format!(
            "\\copy shops (id, name, region, mall_id) FROM '{}'\n",
            shops_file.display()
        ),
        dir,
        "shops",
    );
    let load = format!(
        "\\set ON_ERROR_STOP 1\n\
         BEGIN;\n\
         CREATE TEMP TABLE s_orders (shop_id bigint, parent_order_sn text, status int, order_time timestamptz, updated_at timestamptz, expect_ship_latest_time timestamptz, region_id bigint, site_id bigint, raw jsonb);\n\
         \\copy s_orders FROM '{orders}'\n\
         INSERT INTO orders (shop_id, parent_order_sn, status, order_time, updated_at, expect_ship_latest_time, region_id, site_id, raw)\n\
           SELECT * FROM s_orders\n\
           ON CONFLICT (shop_id, parent_order_sn) DO UPDATE SET status = excluded.status, order_time = excluded.order_time, updated_at = excluded.updated_at, expect_ship_latest_time = excluded.expect_ship_latest_time, region_id = excluded.region_id, site_id = excluded.site_id, raw = excluded.raw, last_synced_at = now()\n\
           WHERE orders.updated_at < excluded.updated_at OR (orders.updated_at = excluded.updated_at AND orders.raw IS DISTINCT FROM excluded.raw);\n\
         CREATE TEMP TABLE s_items (shop_id bigint, parent_order_sn text, order_sn text, goods_id text, sku_id text, status int, quantity bigint, original_quantity bigint, canceled_quantity_before_shipment bigint, fulfillment_type int, product_sku_id text, product_id text, ext_code text);\n\
         \\copy s_items FROM '{items}'\n\
         INSERT INTO order_items (order_id, shop_id, order_sn, goods_id, sku_id, status, quantity, original_quantity, canceled_quantity_before_shipment, fulfillment_type, product_sku_id, product_id, ext_code)\n\
           SELECT o.id, s.shop_id, s.order_sn, s.goods_id, s.sku_id, s.status, s.quantity, s.original_quantity, s.canceled_quantity_before_shipment, s.fulfillment_type, s.product_sku_id, s.product_id, s.ext_code\n\
           FROM s_items s JOIN orders o ON o.shop_id = s.shop_id AND o.parent_order_sn = s.parent_order_sn\n\
           ON CONFLICT (shop_id, order_sn) DO UPDATE SET order_id = excluded.order_id, goods_id = excluded.goods_id, sku_id = excluded.sku_id, status = excluded.status, quantity = excluded.quantity, original_quantity = excluded.original_quantity, canceled_quantity_before_shipment = excluded.canceled_quantity_before_shipment, fulfillment_type = excluded.fulfillment_type, product_sku_id = excluded.product_sku_id, product_id = excluded.product_id, ext_code = excluded.ext_code;\n\
         COMMIT;\n",
        orders = orders_file.display(),
        items = items_file.display(),
    );
    let started = Instant::now();
    psql(&base.url(), &load, dir, "baseline");
    let base_secs = started.elapsed().as_secs_f64();
    let check = connect_pg(&base.url(), Duration::from_secs(10)).await;
    let base_rows: i64 = check
        .query_one(
            "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_items)",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0);
    let base_rate = base_rows as f64 / base_secs;
    let ratio = daemon_rate / base_rate;
    table.add(
        "ingest",
        format!(
            "daemon: {n_orders} orders + {n_items} items from empty (batch {}, chunk {})",
            args.batch_size, args.chunk
        ),
        format!("{daemon_rate:.0} rows/s"),
        "",
        None,
    );
    table.add(
        "ingest",
        "daemon: orders/s (API fetch + JSON + upsert, end to end)",
        format!("{:.0} orders/s", n_orders as f64 / secs),
        "",
        None,
    );
    table.add(
        "ingest",
        format!("psql baseline: COPY + INSERT … ON CONFLICT of the same {base_rows} rows"),
        format!("{base_rate:.0} rows/s"),
        "",
        None,
    );
    table.add(
        "ingest",
        "ratio daemon / psql baseline",
        format!("{ratio:.2}"),
        "≥ 0.5",
        Some(ratio >= 0.5),
    );
    table.add(
        "memory",
        format!("peak RSS (VmHWM) of the daemon over the {n_orders}-order sync"),
        mb(hwm),
        "≤ 100 MB",
        Some(hwm <= 100 * 1024),
    );
    table.note(format!(
        "ingest: {secs:.2} s wall for {pages} pages; CPU from daemon start to the end of the run: daemon {cpu:.1} s, simulator (bench process) {sim_cpu:.1} s, the daemon's PostgreSQL backends {pg_cpu:.1} s; psql baseline {base_secs:.2} s"
    ));
}

fn psql(url: &str, script: &str, dir: &Path, name: &str) {
    let file = dir.join(format!("{name}.sql"));
    std::fs::write(&file, script).expect("write psql script");
    psql_file(url, &file);
}

fn psql_file(url: &str, file: &Path) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f"])
        .arg(file)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// 2: API-bound sync

async fn bench_api(args: &Args, dir: &Path, table: &mut Table) {
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
    let daemon = Daemon::start(
        dir,
        &DaemonSetup {
            name: "api",
            database_url: db.url(),
            sim: &config,
            router_url: sim.router_url(),
            app_qps: qps,
            streams: "orders, products, aftersales",
            batch_size: 100,
            chunk: "7d",
            max_concurrent_runs: streams,
        },
    );
    let client = connect_pg(&db.url(), Duration::from_secs(30)).await;
    // Sample (time, requests, runs in flight) every 500 ms until every stream succeeded once.
    let started = Instant::now();
    let mut samples: Vec<(f64, u64, i64)> = Vec::new();
    let limit = Duration::from_secs(600);
    loop {
        let running: i64 = client
            .query_one(
                "SELECT count(*) FROM sync_runs WHERE status = 'running'",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        let done: i64 = client
            .query_one(
                "SELECT count(DISTINCT (shop_id, stream)) FROM sync_runs WHERE status = 'succeeded'",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        samples.push((
            started.elapsed().as_secs_f64(),
            sim.stats().requests,
            running,
        ));
        if done >= streams as i64 || started.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let total_secs = started.elapsed().as_secs_f64();
    let stats = sim.stats();
    let rejections = stats.outcomes.get(&4_000_004).copied().unwrap_or(0);
    daemon.stop();
    sim.shutdown().await;
    // Saturated: enough runs in flight that, at ≤ 400 ms per page, they could ask for more than
    // the limit (runs × 1/0.275 s ≥ 1.5 × QPS at the mean latency).
    let need = ((f64::from(qps) * 0.275 * 1.5).ceil() as i64).max(1);
    let sat: Vec<&(f64, u64, i64)> = samples.iter().filter(|s| s.2 >= need).collect();
    let (sat_secs, sat_reqs) = match (sat.first(), sat.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.0 - a.0, b.1 - a.1),
        _ => (0.0, 0),
    };
    let sat_rate = if sat_secs > 0.0 {
        sat_reqs as f64 / sat_secs
    } else {
        f64::NAN
    };
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

// ---------------------------------------------------------------------------------------------
// 3 + 5b: health under load, database recovery

/// wrk against the daemon and the bare server alternately, `rounds` × `slice` s each, so both see
/// the same machine (other work, the phase of a sync). Returns (daemon, bare).
fn alternate(daemon_url: &str, bare_url: &str, slice: u64, conns: u32) -> (Load, Load) {
    let (mut daemon, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        daemon.push(wrk(daemon_url, slice, conns));
        bare.push(wrk(bare_url, slice, conns));
    }
    (Load::mean(&daemon), Load::mean(&bare))
}

async fn bench_health(args: &Args, dir: &Path, table: &mut Table) {
    let secs = args.wrk_secs();
    let slice = (secs / 2).max(2);
    let conns = args.connections;
    // The baseline, in its own process, stays up for the whole section: every condition is
    // measured alternately with it, so each ratio compares the two under the same load.
    let bare_port = free_port();
    let mut bare = Command::new(std::env::current_exe().expect("own path"))
        .args(["--serve-bare", &bare_port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the bare server");
    let bare_url = format!("http://127.0.0.1:{bare_port}/health");
    let http = reqwest::Client::new();
    wait_health(&http, &bare_url, 200, Duration::from_secs(10)).await;

    // Long enough for the alternating loads during the sync (4 × slice) at ~10 000 orders/s.
    let orders = if args.quick { 40_000 } else { 150_000 };
    let config = ingest_sim(orders);
    let sim = Simulator::start(config.clone())
        .await
        .expect("simulator starts");
    let db = TestDatabase::reserve("bench_health").expect("database handle");
    let proxy = FaultProxy::start(db.server_addr(), FaultMode::Pass)
        .await
        .expect("fault proxy");
    let daemon = Daemon::start(
        dir,
        &DaemonSetup {
            name: "health",
            database_url: db.url_via(Some(proxy.addr())),
            sim: &config,
            router_url: sim.router_url(),
            app_qps: 100_000,
            streams: "orders",
            batch_size: args.batch_size,
            chunk: &args.chunk,
            max_concurrent_runs: 4,
        },
    );
    let url = daemon.url("/health");
    let client = connect_pg(&db.url(), Duration::from_secs(30)).await;
    // During a sync: as soon as the orders run is in flight.
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        if running_runs(&client).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("[health] during a {orders}-order sync: daemon and bare hyper alternately, wrk -t1 -c{conns}, 2 × {slice} s each …");
    let (during, bare_during) = alternate(&url, &bare_url, slice, conns);
    if running_runs(&client).await == 0 {
        table.note(
            "health: the sync finished before the 'during a sync' load ended (use more orders)",
        );
    }
    wait_runs(&client, "orders", 1, Duration::from_secs(900)).await;
    wait_health(&http, &url, 200, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("[health] idle …");
    let (alone, base) = alternate(&url, &bare_url, slice, conns);

    let body_len = match http.get(&url).send().await {
        Ok(r) => r.bytes().await.map(|b| b.len()).unwrap_or(0),
        Err(_) => 0,
    };
    table.note(format!(
        "health: the daemon's /health body is {body_len} bytes (served from a cached rendering of the snapshot), the bare server's 17 bytes"
    ));
    proxy.set_mode(FaultMode::Blackhole);
    let blackholed_at = Instant::now();
    let failed = wait_health(&http, &url, 503, Duration::from_secs(30)).await;
    let to_fail = blackholed_at.elapsed();
    println!(
        "[health] database blackholed (health {} after {:.2} s) …",
        if failed { "503" } else { "not yet 503" },
        to_fail.as_secs_f64()
    );
    let (dark, bare_dark) = alternate(&url, &bare_url, slice, conns);
    let _ = bare.kill();
    let _ = bare.wait();

    // Recovery: the database comes back; poll /health every 10 ms until it passes.
    proxy.set_mode(FaultMode::Pass);
    let back = Instant::now();
    let mut recovered = None;
    while back.elapsed() < Duration::from_secs(60) {
        if health_status(&http, &url).await == Some(200) {
            recovered = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.stop();
    sim.shutdown().await;

    let row = |table: &mut Table, label: &str, l: &Load, control: &Load| {
        let ratio = l.rps / control.rps;
        table.add(
            "health",
            format!("/health {label}: requests/s (ratio to bare hyper alongside)"),
            format!("{:.0} ({ratio:.2}; bare {:.0})", l.rps, control.rps),
            "≥ 0.8 × bare",
            Some(ratio >= 0.8),
        );
        table.add(
            "health",
            format!("/health {label}: p50 / p99 latency"),
            format!("{:.2} / {:.2} ms", l.p50_ms, l.p99_ms),
            "p99 ≤ 5 ms",
            Some(l.p99_ms <= 5.0),
        );
        if l.errors > 0 {
            table.note(format!("health {label}: {} socket errors", l.errors));
        }
    };
    table.add(
        "health",
        "bare hyper baseline, idle machine: requests/s, p50 / p99",
        format!(
            "{:.0}, {:.2} / {:.2} ms",
            base.rps, base.p50_ms, base.p99_ms
        ),
        "",
        None,
    );
    row(table, "idle", &alone, &base);
    row(table, "during a sync", &during, &bare_during);
    table.add(
        "health",
        "/health during a sync ÷ bare hyper on the idle machine",
        format!("{:.2}", during.rps / base.rps),
        "informational: the sync's CPU is not the server's",
        None,
    );
    row(table, "with the database blackholed", &dark, &bare_dark);
    table.note(format!(
        "health: wrk -t1 -c{conns}, daemon and bare server alternately 2 × {slice} s each per condition; blackholed answers were {} of them 503 (fail, as they should be); /health turned 503 {:.2} s after the blackhole",
        dark.non_2xx,
        to_fail.as_secs_f64()
    ));
    match recovered {
        Some(d) => table.add(
            "recovery",
            "database back → /health 200 (ping_interval 250 ms, retry_max 500 ms)",
            format!("{:.0} ms", d.as_secs_f64() * 1000.0),
            "",
            None,
        ),
        None => table.add(
            "recovery",
            "database back → /health 200",
            "not within 60 s",
            "",
            Some(false),
        ),
    }
}

/// Sync runs in flight (0 when the query fails).
async fn running_runs(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM sync_runs WHERE status = 'running'",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// 4: idle daemon

async fn bench_idle(args: &Args, dir: &Path, table: &mut Table) {
    let mut config = SimConfig::demo(13, 10, 200);
    for app in &mut config.apps {
        app.qps = 100_000;
    }
    println!("[memory] idle daemon with 10 shops × 3 streams …");
    let sim = Simulator::start(config.clone())
        .await
        .expect("simulator starts");
    let db = TestDatabase::reserve("bench_idle").expect("database handle");
    let daemon = Daemon::start(
        dir,
        &DaemonSetup {
            name: "idle",
            database_url: db.url(),
            sim: &config,
            router_url: sim.router_url(),
            app_qps: 100_000,
            streams: "orders, products, aftersales",
            batch_size: 100,
            chunk: "7d",
            max_concurrent_runs: 4,
        },
    );
    let pid = daemon.pid();
    let client = connect_pg(&db.url(), Duration::from_secs(30)).await;
    if !wait_runs(&client, "", 30, Duration::from_secs(300)).await {
        table.note(format!(
            "idle: the first round did not finish; log tail:\n{}",
            daemon.log_tail()
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window = if args.quick { 5.0 } else { 15.0 };
    let cpu0 = proc_cpu_secs(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(window)).await;
    let cpu = (proc_cpu_secs(pid).unwrap_or(0.0) - cpu0) / t0.elapsed().as_secs_f64();
    let rss = proc_kb(pid, "VmRSS").unwrap_or(0);
    let hwm = proc_kb(pid, "VmHWM").unwrap_or(0);
    let threads = proc_kb(pid, "Threads").unwrap_or(0);
    daemon.stop();
    sim.shutdown().await;
    table.add(
        "memory",
        "idle RSS, 10 shops × 3 streams configured (after the first round)",
        mb(rss),
        "≤ 25 MB",
        Some(rss <= 25 * 1024),
    );
    table.add(
        "memory",
        format!("idle CPU over {window:.0} s (share of one core)"),
        format!("{:.2} %", cpu * 100.0),
        "",
        None,
    );
    table.note(format!(
        "idle: peak RSS of that daemon during its first round {}, {threads} threads",
        mb(hwm)
    ));
}

// ---------------------------------------------------------------------------------------------
// 5a: panic → replacement, library level

enum WorkerMsg {
    Ping(RpcReplyPort<()>),
    Panic,
}

struct Worker;

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = Arc<Mutex<Option<Instant>>>;
    type Arguments = Arc<Mutex<Option<Instant>>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<WorkerMsg>,
        started: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        *started.lock() = Some(Instant::now());
        Ok(started)
    }

    async fn handle(
        &self,
        _myself: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Ping(reply) => {
                let _ = reply.send(());
            }
            WorkerMsg::Panic => panic!("bench: panic on purpose"),
        }
        Ok(())
    }
}

/// Panic → replacement's `pre_start` for `rounds` panics; (median, max) in ms.
async fn panic_to_replacement(backoff_min: Duration, rounds: usize) -> (f64, f64) {
    static TREE: AtomicU32 = AtomicU32::new(0);
    let n = TREE.fetch_add(1, Ordering::Relaxed);
    let name = format!("bench-worker-{n}");
    let started: Arc<Mutex<Option<Instant>>> = Arc::default();
    let s = started.clone();
    let child: Arc<dyn ChildSpec> = Arc::new(ActorChild::new(
        name.clone(),
        move || (Worker, s.clone()),
        WorkerMsg::Ping,
    ));
    let config = SupervisorConfig {
        max_restarts: 10_000,
        // A child that ran longer than this starts again from backoff_min: every panic below is
        // a first failure.
        restart_window: Duration::from_millis(50),
        backoff_min,
        backoff_max: backoff_min.max(Duration::from_millis(1)) * 4,
        ping_interval: Duration::from_secs(5),
        ping_timeout: Duration::from_secs(2),
        max_missed_pings: 3,
        call_timeout: Duration::from_secs(2),
        shutdown_timeout: Duration::from_secs(3),
    };
    let handle = SupervisorHandle::start(
        &format!("bench-supervisor-{n}"),
        SupervisorArgs {
            config,
            children: vec![child],
            health: Health::new("bench"),
        },
    )
    .await
    .expect("supervisor starts");
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(actor) = ActorRef::<WorkerMsg>::where_is(name.clone()) else {
            continue;
        };
        *started.lock() = None;
        let at = Instant::now();
        let _ = actor.send_message(WorkerMsg::Panic);
        let end = at + Duration::from_secs(5);
        while Instant::now() < end && started.lock().is_none() {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        if let Some(t) = *started.lock() {
            times.push(t.duration_since(at).as_secs_f64() * 1000.0);
        }
    }
    let _ = handle.shutdown().await;
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let max = times.last().copied().unwrap_or(f64::NAN);
    (median, max)
}

async fn bench_recovery(args: &Args, table: &mut Table) {
    let rounds = if args.quick { 10 } else { 30 };
    println!("[recovery] supervisor panic → replacement, {rounds} panics per setting …");
    let (med, max) = panic_to_replacement(Duration::from_millis(100), rounds).await;
    table.add(
        "recovery",
        "panic → replacement pre_start, backoff_min 100 ms (default; jitter [50, 100] ms): median / max",
        format!("{med:.1} / {max:.1} ms"),
        "≤ 100 ms + backoff (≤ 200)",
        Some(max <= 200.0),
    );
    let (med, max) = panic_to_replacement(Duration::from_millis(1), rounds).await;
    table.add(
        "recovery",
        "panic → replacement pre_start, backoff_min 1 ms (the supervisor's own cost): median / max",
        format!("{med:.2} / {max:.2} ms"),
        "≤ 100 ms + 1 ms",
        Some(max <= 101.0),
    );
}

// ---------------------------------------------------------------------------------------------

fn machine_notes() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = proc_kb(std::process::id(), "VmRSS").map(|_| ());
    let _ = mem;
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GB RAM", kb as f64 / 1048576.0))
        .unwrap_or_default();
    let pg = Command::new("psql")
        .args([
            "-X",
            "-tA",
            "-d",
            "postgres://postgres@127.0.0.1:5432/postgres",
            "-c",
            "SHOW server_version",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {total}, PostgreSQL {pg} on the same machine; the simulator runs inside the bench process")
}

fn main() {
    let args = Args::parse();
    if let Some(port) = args.serve_bare {
        serve_bare(port);
        return;
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("on purpose") {
            default_hook(info);
        }
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let code = rt.block_on(run(args));
    std::process::exit(code);
}

async fn run(args: Args) -> i32 {
    let dir = work_dir();
    let mut table = Table::default();
    let machine = machine_notes();
    println!(
        "temu-sync bench ({}): {machine}",
        if args.quick { "quick" } else { "full" }
    );
    let started = Instant::now();
    if args.wants("recovery") {
        bench_recovery(&args, &mut table).await;
    }
    if args.wants("memory") {
        bench_idle(&args, &dir, &mut table).await;
    }
    if args.wants("api") {
        bench_api(&args, &dir, &mut table).await;
    }
    if args.wants("health") {
        bench_health(&args, &dir, &mut table).await;
    }
    if args.wants("ingest") {
        bench_ingest(&args, &dir, &mut table).await;
    }
    table.note(format!("machine: {machine}"));
    table.note(format!(
        "bench took {:.0} s; command: target/release/bench{}",
        started.elapsed().as_secs_f64(),
        if args.quick { " --quick" } else { "" }
    ));
    // Sections in a fixed order for the table.
    let order = ["ingest", "api", "health", "memory", "recovery"];
    table
        .rows
        .sort_by_key(|r| order.iter().position(|s| *s == r.section).unwrap_or(9));
    println!();
    println!("{:<9} {:<80} {:>22}  verdict", "section", "metric", "value");
    for r in &table.rows {
        println!(
            "{:<9} {:<80} {:>22}  {}",
            r.section,
            r.metric,
            r.value,
            verdict(r)
        );
    }
    if let Some(path) = &args.markdown {
        if let Err(e) = std::fs::write(path, table.markdown()) {
            eprintln!("bench: cannot write {}: {e}", path.display());
            return 1;
        }
        println!("\nwrote {}", path.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    let missed = table.rows.iter().filter(|r| r.met == Some(false)).count();
    if missed > 0 {
        println!("{missed} target(s) missed");
    }
    0
}
