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
//! 6. single: one shop's orders at 20 QPS, 300 / 800 ms ± 50 % per call (issue 14): calls/s against
//!    the budget, wall time against the ideal, peak RSS, rejections, calls per record (still and
//!    while orders change), first committed rows.
//! 7. freshness: the default intervals and settle — lag from a change to its row, idle calls.
//!
//! One module per section (`ingest`, `api`, `health`, `memory`, `recovery`, `single`, `freshness`), plus the daemon it
//! measures (`daemon`, on the test kit's process harness), what it reads off it (`observe`), the
//! load generator (`wrk`), the bare baseline server (`bare`), the machine description (`machine`)
//! and the table (`table`). Waits go through the test kit's `eventually`; measurements poll on
//! their own, finer.
//!
//! `cargo build --release --features testkit --bin temu-sync --bin bench && target/release/bench`
//! (or `scripts/bench.sh`); `--quick` for a short run, `--markdown FILE` to write the table for
//! docs/PERFORMANCE.md.

mod api;
mod bare;
mod daemon;
mod freshness;
mod health;
mod ingest;
mod machine;
mod memory;
mod observe;
mod recovery;
mod single;
mod table;
mod wrk;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

use table::Table;

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
    /// Only these sections (ingest, api, health, memory, recovery, single, freshness); default all.
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

fn main() {
    let args = Args::parse();
    if let Some(port) = args.serve_bare {
        bare::serve_bare(port);
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
    let dir = daemon::work_dir();
    let mut table = Table::default();
    let machine = machine::machine_notes();
    println!(
        "temu-sync bench ({}): {machine}",
        if args.quick { "quick" } else { "full" }
    );
    let started = Instant::now();
    if args.wants("recovery") {
        recovery::bench_recovery(&args, &mut table).await;
    }
    if args.wants("memory") {
        memory::bench_idle(&args, &dir, &mut table).await;
    }
    if args.wants("api") {
        api::bench_api(&args, &dir, &mut table).await;
    }
    if args.wants("health") {
        health::bench_health(&args, &dir, &mut table).await;
    }
    if args.wants("ingest") {
        ingest::bench_ingest(&args, &dir, &mut table).await;
    }
    if args.wants("single") {
        single::bench_single(&dir, &mut table).await;
    }
    if args.wants("freshness") {
        freshness::bench_freshness(&args, &dir, &mut table).await;
    }
    table.note(format!("machine: {machine}"));
    let command: Vec<String> = std::env::args().skip(1).collect();
    let daemon = std::env::var("BENCH_DAEMON")
        .map(|d| format!("BENCH_DAEMON={d} "))
        .unwrap_or_default();
    table.note(format!(
        "bench took {:.0} s; command: {daemon}target/release/bench {}",
        started.elapsed().as_secs_f64(),
        command.join(" ")
    ));
    table.print_sorted();
    if let Some(path) = &args.markdown {
        if let Err(e) = std::fs::write(path, table.markdown()) {
            eprintln!("bench: cannot write {}: {e}", path.display());
            return 1;
        }
        println!("\nwrote {}", path.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    let missed = table.missed();
    if missed > 0 {
        println!("{missed} target(s) missed");
    }
    0
}
