//! Section 4: an idle daemon with 10 shops × 3 streams configured — RSS and CPU once its first
//! round is done, peak RSS of that round, threads. (The ingest's peak RSS is `ingest.rs`'s.)

use std::path::Path;
use std::time::{Duration, Instant};

use temu_sync::sim::{SimConfig, Simulator};
use temu_sync::testkit::TestDatabase;

use crate::daemon::{self, DaemonSetup, STOP_LIMIT};
use crate::observe::{connect_pg, mb, proc_cpu_secs, proc_kb, wait_runs};
use crate::table::Table;
use crate::Args;

pub async fn bench_idle(args: &Args, dir: &Path, table: &mut Table) {
    let mut config = SimConfig::demo(13, 10, 200);
    for app in &mut config.apps {
        app.qps = 100_000;
    }
    println!("[memory] idle daemon with 10 shops × 3 streams …");
    let sim = Simulator::start(config.clone())
        .await
        .expect("simulator starts");
    let db = TestDatabase::reserve("bench_idle").expect("database handle");
    let daemon = daemon::start(
        dir,
        &DaemonSetup::all_streams("idle", db.url(), &config, sim.router_url(), 100_000, 4),
    );
    let pid = daemon.pid();
    let client = connect_pg(&db.url(), Duration::from_secs(30)).await;
    if !wait_runs(&client, "", 30, Duration::from_secs(300)).await {
        table.note(format!(
            "idle: the first round did not finish; log tail:\n{}",
            daemon.log_tail(5)
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
    daemon.stop(STOP_LIMIT);
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
