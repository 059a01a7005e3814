//! Section 1 (and the peak-RSS row of 4): ingest. The simulator (no latency, no rate limit) with
//! one shop of N orders; the real daemon syncs the orders stream from an empty database. Baseline:
//! `psql` loads the very same rows (exported from the daemon's database) into a fresh copy of the
//! schema — `COPY` into staging tables, then one `INSERT … ON CONFLICT` per table.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use temu_sync::sim::{SimConfig, Simulator};
use temu_sync::testkit::TestDatabase;

use crate::daemon::{self, DaemonSetup, STOP_LIMIT};
use crate::observe::{connect_pg, count, mb, proc_cpu_secs, proc_kb, wait_runs};
use crate::table::Table;
use crate::Args;

/// One shop of `orders` orders on an app without a rate limit (also the health section's sync).
pub fn ingest_sim(orders: usize) -> SimConfig {
    let mut sim = SimConfig::demo(7, 1, orders);
    for app in &mut sim.apps {
        app.qps = 100_000;
    }
    sim
}

/// What the daemon's ingest measured.
struct DaemonIngest {
    secs: f64,
    pages: i32,
    orders: i64,
    items: i64,
    /// Peak RSS of the daemon (VmHWM, kB).
    hwm: u64,
    /// CPU seconds from the daemon's start to the end of the run: the daemon, this process (the
    /// simulator), the daemon's PostgreSQL backends.
    cpu: f64,
    sim_cpu: f64,
    pg_cpu: f64,
}

/// The psql baseline: rows loaded and how long it took.
struct Baseline {
    rows: i64,
    secs: f64,
}

pub async fn bench_ingest(args: &Args, dir: &Path, table: &mut Table) {
    let orders = args.ingest_orders();
    println!("[ingest] generating {orders} orders in the simulator …");
    let db = TestDatabase::reserve("bench_ingest").expect("database handle");
    let Some(ingest) = daemon_ingest(args, dir, &db, orders, table).await else {
        return;
    };
    let DaemonIngest {
        secs,
        pages,
        orders: n_orders,
        items: n_items,
        cpu,
        ..
    } = ingest;
    println!(
        "[ingest] daemon: {n_orders} orders + {n_items} items in {secs:.2} s ({pages} pages), daemon CPU {cpu:.1} s"
    );
    let baseline = psql_baseline(&db, dir).await;
    report(args, &ingest, &baseline, table);
}

/// The daemon syncs `orders` orders into `db` from empty; None (with a note) when it did not
/// finish within 30 minutes.
async fn daemon_ingest(
    args: &Args,
    dir: &Path,
    db: &TestDatabase,
    orders: usize,
    table: &mut Table,
) -> Option<DaemonIngest> {
    let config = ingest_sim(orders);
    let sim = Simulator::start(config.clone())
        .await
        .expect("simulator starts");
    let bench_cpu0 = proc_cpu_secs(std::process::id()).unwrap_or(0.0);
    let daemon = daemon::start(
        dir,
        &DaemonSetup::orders_only("ingest", db.url(), &config, sim.router_url(), args),
    );
    let pid = daemon.pid();
    let client = connect_pg(&db.url(), Duration::from_secs(30)).await;
    // Peak RSS: VmHWM at the end covers the whole run; sample VmRSS too in case of exit.
    if !wait_runs(&client, "orders", 1, Duration::from_secs(1800)).await {
        table.note(format!(
            "ingest did not finish; daemon log tail:\n{}",
            daemon.log_tail(5)
        ));
        daemon.stop(STOP_LIMIT);
        return None;
    }
    let hwm = proc_kb(pid, "VmHWM").unwrap_or(0);
    let cpu = proc_cpu_secs(pid).unwrap_or(0.0);
    let sim_cpu = proc_cpu_secs(std::process::id()).unwrap_or(0.0) - bench_cpu0;
    let pg_cpu = backend_cpu(&client).await;
    let row = client
        .query_one(
            "SELECT extract(epoch FROM finished_at - started_at)::float8, pages, \
             (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items) \
             FROM sync_runs WHERE stream = 'orders' AND status = 'succeeded' ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .expect("run figures");
    daemon.stop(STOP_LIMIT);
    sim.shutdown().await;
    Some(DaemonIngest {
        secs: row.get(0),
        pages: row.get(1),
        orders: row.get(2),
        items: row.get(3),
        hwm,
        cpu,
        sim_cpu,
        pg_cpu,
    })
}

/// CPU seconds of the daemon's PostgreSQL backends (0 when the query fails).
async fn backend_cpu(client: &tokio_postgres::Client) -> f64 {
    client
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
        .unwrap_or(0.0)
}

/// The same rows as in `source`, exported, loaded by psql into a fresh copy of the schema.
async fn psql_baseline(source: &TestDatabase, dir: &Path) -> Baseline {
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
    psql(&source.url(), &export, dir, "export");
    let schema = Command::new("pg_dump")
        .args(["--schema-only", "--no-owner", &source.url()])
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
         CREATE TEMP TABLE s_items (shop_id bigint, parent_order_sn text, order_sn text, goods_id text, sku_id text, status int, quantity bigint, original_quantity bigint, canceled_quantity_before_shipment bigint, fulfillment_type text, product_sku_id text, product_id text, ext_code text);\n\
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
    let base_rows = count(
        &check,
        "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_items)",
    )
    .await;
    Baseline {
        rows: base_rows,
        secs: base_secs,
    }
}

fn report(args: &Args, ingest: &DaemonIngest, baseline: &Baseline, table: &mut Table) {
    let DaemonIngest {
        secs,
        pages,
        orders: n_orders,
        items: n_items,
        hwm,
        cpu,
        sim_cpu,
        pg_cpu,
    } = *ingest;
    let (base_rows, base_secs) = (baseline.rows, baseline.secs);
    let daemon_rate = (n_orders + n_items) as f64 / secs;
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
