//! Section 3 (and the database row of 5): `/health` under load. `wrk` against the daemon's
//! `/health` during a sync, idle, and with its database blackholed (through the test kit's fault
//! proxy), each condition alternately with the bare-hyper baseline; then the database comes back
//! and the time to `/health` 200 is measured.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use temu_sync::sim::{SimHandle, Simulator};
use temu_sync::testkit::{
    eventually, free_port, DaemonProcess, FaultMode, FaultProxy, TestDatabase,
};

use crate::daemon::{self, DaemonSetup, STOP_LIMIT};
use crate::ingest::ingest_sim;
use crate::observe::{connect_pg, health_status, running_runs, wait_health, wait_runs};
use crate::table::Table;
use crate::wrk::{alternate, Load};
use crate::Args;

/// The bare-hyper baseline in its own process (`bench --serve-bare`); killed when dropped.
struct BareServer {
    child: Child,
    url: String,
}

impl BareServer {
    async fn start(http: &reqwest::Client) -> Self {
        let port = free_port();
        let child = Command::new(std::env::current_exe().expect("own path"))
            .args(["--serve-bare", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the bare server");
        let url = format!("http://127.0.0.1:{port}/health");
        wait_health(http, &url, 200, Duration::from_secs(10)).await;
        Self { child, url }
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon syncing one shop of many orders, its database reached through a fault proxy.
struct SyncingDaemon {
    sim: SimHandle,
    db: TestDatabase,
    proxy: FaultProxy,
    daemon: DaemonProcess,
}

impl SyncingDaemon {
    async fn start(args: &Args, dir: &Path, orders: usize) -> Self {
        let config = ingest_sim(orders);
        let sim = Simulator::start(config.clone())
            .await
            .expect("simulator starts");
        let db = TestDatabase::reserve("bench_health").expect("database handle");
        let proxy = FaultProxy::start(db.server_addr(), FaultMode::Pass)
            .await
            .expect("fault proxy");
        let daemon = daemon::start(
            dir,
            &DaemonSetup::orders_only(
                "health",
                db.url_via(Some(proxy.addr())),
                &config,
                sim.router_url(),
                args,
            ),
        );
        Self {
            sim,
            db,
            proxy,
            daemon,
        }
    }
}

/// The loads measured, each (daemon, bare alongside), and the recovery.
struct HealthFigures {
    during: (Load, Load),
    idle: (Load, Load),
    blackholed: (Load, Load),
    /// From the blackhole to `/health` 503.
    to_fail: Duration,
    /// From the database's return to `/health` 200; None when not within 60 s.
    recovered: Option<Duration>,
}

pub async fn bench_health(args: &Args, dir: &Path, table: &mut Table) {
    let secs = args.wrk_secs();
    let slice = (secs / 2).max(2);
    let conns = args.connections;
    // The baseline, in its own process, stays up for the whole section: every condition is
    // measured alternately with it, so each ratio compares the two under the same load.
    let http = reqwest::Client::new();
    let bare = BareServer::start(&http).await;

    // Long enough for the alternating loads during the sync (4 × slice) at ~10 000 orders/s.
    let orders = if args.quick { 40_000 } else { 150_000 };
    let SyncingDaemon {
        sim,
        db,
        proxy,
        daemon,
    } = SyncingDaemon::start(args, dir, orders).await;
    let url = daemon.url("/health");
    let client = connect_pg(&db.url(), Duration::from_secs(30)).await;
    let load = |target: &str| alternate(target, &bare.url, slice, conns);

    // During a sync: as soon as the orders run is in flight.
    eventually(Duration::from_secs(60), || async {
        running_runs(&client).await > 0
    })
    .await;
    println!("[health] during a {orders}-order sync: daemon and bare hyper alternately, wrk -t1 -c{conns}, 2 × {slice} s each …");
    let during = load(&url);
    if running_runs(&client).await == 0 {
        table.note(
            "health: the sync finished before the 'during a sync' load ended (use more orders)",
        );
    }
    wait_runs(&client, "orders", 1, Duration::from_secs(900)).await;
    wait_health(&http, &url, 200, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("[health] idle …");
    let idle = load(&url);

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
    let blackholed = load(&url);
    drop(bare);

    proxy.set_mode(FaultMode::Pass);
    let recovered = time_to_health(&http, &url).await;
    daemon.stop(STOP_LIMIT);
    sim.shutdown().await;
    let figures = HealthFigures {
        during,
        idle,
        blackholed,
        to_fail,
        recovered,
    };
    report(&figures, slice, conns, table);
}

/// Recovery: the database has come back; polls `/health` every 10 ms until it passes (a
/// measurement, so finer than the test kit's waits), up to 60 s.
async fn time_to_health(http: &reqwest::Client, url: &str) -> Option<Duration> {
    let back = Instant::now();
    while back.elapsed() < Duration::from_secs(60) {
        if health_status(http, url).await == Some(200) {
            return Some(back.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn report(f: &HealthFigures, slice: u64, conns: u32, table: &mut Table) {
    let (during, bare_during) = &f.during;
    let (alone, base) = &f.idle;
    let (dark, bare_dark) = &f.blackholed;
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
    load_rows(table, "idle", alone, base);
    load_rows(table, "during a sync", during, bare_during);
    table.add(
        "health",
        "/health during a sync ÷ bare hyper on the idle machine",
        format!("{:.2}", during.rps / base.rps),
        "informational: the sync's CPU is not the server's",
        None,
    );
    load_rows(table, "with the database blackholed", dark, bare_dark);
    table.note(format!(
        "health: wrk -t1 -c{conns}, daemon and bare server alternately 2 × {slice} s each per condition; blackholed answers were {} of them 503 (fail, as they should be); /health turned 503 {:.2} s after the blackhole",
        dark.non_2xx,
        f.to_fail.as_secs_f64()
    ));
    match f.recovered {
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

/// The rate and latency rows of one condition, against the bare server measured alongside.
fn load_rows(table: &mut Table, label: &str, l: &Load, control: &Load) {
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
}
