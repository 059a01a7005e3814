//! The self-audit and the operator commands against the simulator and a real database: gaps
//! planted in a synced copy (rows deleted, a row made stale, a whole day missing) are found by
//! `audit` day by day at one API call per day, and `--repair` fixes them without moving the
//! cursor; `backfill` and `reset` from the CLI and the admin routes, with their refusals (exit 78
//! / 4xx); the daemon's scheduled audit repairs what it can and shows what it cannot in
//! `/status`, `/health` and `/metrics`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::sync_common::*;
use crate::{setup, wait_for_client};

const ORDER_LIST: &str = "bg.order.list.v2.get";

/// A daemon (runs every hour, `extra_sync` added to `sync:`) that has synced one shop of
/// `orders` orders once, a client on its database and the CLI's configuration.
struct Synced {
    _db: temu_sync::testkit::TestDatabase,
    sim: Sim,
    daemon: Daemon,
    client: tokio_postgres::Client,
    cli: CliConfig,
    opts: DaemonOptions,
}

impl Synced {
    async fn start(prefix: &str, orders: usize, extra_sync: &str) -> Self {
        let (db, sim) = setup(prefix, orders).await;
        let mut opts = options(&db, &sim);
        opts.interval = "1h";
        opts.extra_sync = extra_sync.to_string();
        let daemon = Daemon::start(&sim, &opts);
        let client = wait_for_client(&db).await;
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let round = wait_for_complete_round(&client, &sim, t0, Duration::from_secs(90)).await;
        assert!(round, "first round\n{}", daemon.log_tail(30));
        let cli = CliConfig::new(&sim, &opts);
        Self {
            _db: db,
            sim,
            daemon,
            client,
            cli,
            opts,
        }
    }
}

async fn cursor(client: &tokio_postgres::Client, stream: &str) -> Option<DateTime<Utc>> {
    client
        .query_one(
            "SELECT cursor FROM sync_state WHERE stream = $1",
            &[&stream],
        )
        .await
        .expect("cursor")
        .get(0)
}

/// The UTC day (as text) of the `nth` oldest stored order updated more than 2 days ago.
async fn old_day(client: &tokio_postgres::Client, nth: i64) -> String {
    client
        .query_one(
            "SELECT d::text FROM (SELECT DISTINCT (updated_at AT TIME ZONE 'UTC')::date AS d \
             FROM orders WHERE updated_at < now() - interval '2 days' ORDER BY 1) days \
             OFFSET $1 LIMIT 1",
            &[&nth],
        )
        .await
        .expect("an old day")
        .get(0)
}

async fn exec(client: &tokio_postgres::Client, sql: &str, day: &str) -> u64 {
    client.execute(sql, &[&day]).await.expect(sql)
}

const ON_DAY: &str = "(updated_at AT TIME ZONE 'UTC')::date = $1::text::date";

/// `backfill --shop … --stream … --from … --to …`.
fn backfill<'a>(shop: &'a str, stream: &'a str, from: &'a str, to: &'a str) -> Vec<&'a str> {
    let flags = [
        "--shop", shop, "--stream", stream, "--from", from, "--to", to,
    ];
    std::iter::once("backfill").chain(flags).collect()
}

/// Stored orders whose update time falls on UTC day `day`.
async fn orders_on(client: &tokio_postgres::Client, day: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM orders WHERE {ON_DAY}");
    client.query_one(&sql, &[&day]).await.expect(&sql).get(0)
}

/// Plants three kinds of gap on three different old days; returns those days.
async fn plant_gaps(client: &tokio_postgres::Client) -> [String; 3] {
    let (deleted, stale, missing) = (
        old_day(client, 3).await,
        old_day(client, 10).await,
        old_day(client, 20).await,
    );
    let one = format!("id = (SELECT min(id) FROM orders WHERE {ON_DAY})");
    assert_eq!(
        exec(client, &format!("DELETE FROM orders WHERE {one}"), &deleted).await,
        1
    );
    // An older version of one order: it now counts on a day 5 days earlier.
    let stale_sql =
        format!("UPDATE orders SET updated_at = updated_at - interval '5 days' WHERE {one}");
    assert_eq!(exec(client, &stale_sql, &stale).await, 1);
    assert!(
        exec(
            client,
            &format!("DELETE FROM orders WHERE {ON_DAY}"),
            &missing
        )
        .await
            > 0
    );
    [deleted, stale, missing]
}

/// `(checked, calls)` from the summary line of `stream`.
fn summary(stdout: &str, stream: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("shop-0 {stream}:")))
        .unwrap_or_else(|| panic!("no summary for {stream} in:\n{stdout}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[1], numbers[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_finds_planted_gaps_and_repair_fixes_them_without_moving_the_cursor() {
    let w = Synced::start("e2e_audit", 1500, "").await;
    let (sim, daemon, client, cli) = (&w.sim, &w.daemon, &w.client, &w.cli);

    let (code, out, err) = cli.run(&["audit", "--shop", "shop-0", "--since", "90d"]);
    assert_eq!(code, 0, "a fresh copy has no difference:\n{out}{err}");

    let days = plant_gaps(client).await;
    let before = cursor(client, "orders").await;
    sim.handle.reset_stats();
    let (code, out, err) = cli.run(&[
        "audit", "--shop", "shop-0", "--stream", "orders", "--since", "90d",
    ]);
    assert_eq!(code, 1, "differences exit 1:\n{out}{err}");
    for day in &days {
        assert!(out.contains(day.as_str()), "day {day} is listed:\n{out}");
    }
    // The API cost: one call per audited day, and 90 days are audited.
    let (checked, calls) = summary(&out, "orders");
    let made = sim
        .handle
        .requests()
        .iter()
        .filter(|r| r.api.as_deref() == Some(ORDER_LIST))
        .count();
    println!("audit of 90 days: {checked} days checked, {calls} API calls (simulator saw {made})");
    assert!((89..=91).contains(&checked), "{checked} days");
    assert_eq!(calls, checked);
    assert_eq!(made as u64, calls, "one call per day");

    // A product gone from our copy: the listing's total differs.
    let gone = client
        .execute(
            "DELETE FROM products WHERE id = (SELECT min(id) FROM products)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(gone, 1);
    let (code, out, _) = cli.run(&["audit", "--stream", "products"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("listing"), "{out}");

    let (code, out, err) = cli.run(&["audit", "--shop", "shop-0", "--since", "90d", "--repair"]);
    assert_eq!(code, 0, "everything repaired:\n{out}{err}");
    assert!(!out.contains("DIFF"), "no table left:\n{out}");
    // Four order days differed (the stale row counts on two), each re-checked with one call.
    assert!(
        out.contains("shop-0 orders: 90 checked, 94 API call(s), 0 differ, 4 repaired"),
        "{out}"
    );
    assert!(
        out.contains("shop-0 products: 1 checked, 2 API call(s), 0 differ, 1 repaired"),
        "{out}"
    );
    assert_eq!(
        cursor(client, "orders").await,
        before,
        "the cursor did not move"
    );
    let (code, out, _) = cli.run(&["audit", "--shop", "shop-0", "--since", "90d"]);
    assert_eq!(code, 0, "clean after the repair:\n{out}");
    let diff = compare(client, sim).await;
    assert!(
        diff.is_clean(),
        "{}\n{}",
        diff.summary(),
        daemon.log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_and_reset_from_the_cli_and_their_refusals() {
    let w = Synced::start("e2e_backfill", 400, "").await;
    let (client, cli) = (&w.client, &w.cli);
    let today = Utc::now().date_naive().to_string();
    let future = (Utc::now() + chrono::Duration::days(3))
        .date_naive()
        .to_string();
    let old = "2026-01-01";
    // (shop, stream, from, to): the message names the problem.
    let refusals = [
        (["nope", "orders", old, "2026-01-02"], "nope"),
        (["shop-0", "ordres", old, "2026-01-02"], "ordres"),
        (["shop-0", "orders", &today, "2026-01-02"], "reversed"),
        (["shop-0", "orders", old, &future], "future"),
        (["shop-0", "orders", "last week", &today], "not a date"),
        (["shop-0", "products", old, &today], "no time range"),
    ];
    for ([shop, stream, from, to], names) in refusals {
        let args = backfill(shop, stream, from, to);
        let (code, out, err) = cli.run(&args);
        assert_eq!(code, 78, "{args:?}: {out}{err}");
        assert!(err.contains(names), "{args:?}: {err}");
    }
    // Temu or the database unreachable: 69.
    let nobody = format!("127.0.0.1:{}", free_port());
    let mut dead_temu = w.opts.clone();
    dead_temu.router_url = format!("http://{nobody}/openapi/router");
    let audit = ["audit", "--stream", "orders", "--since", "3d"];
    let (code, _, err) = CliConfig::new(&w.sim, &dead_temu).run(&audit);
    assert_eq!(code, 69, "Temu unreachable: {err}");
    let mut dead_db = w.opts.clone();
    dead_db.database_url = format!("postgres://postgres@{nobody}/nothing");
    let (code, _, err) = CliConfig::new(&w.sim, &dead_db).run(&audit);
    assert_eq!(code, 69, "database unreachable: {err}");

    let (code, _, err) = cli.run(&["reset", "--shop", "shop-0", "--stream", "orders"]);
    assert_eq!(code, 78, "reset off a terminal needs --yes: {err}");
    assert!(err.contains("--yes"), "{err}");

    let day = old_day(client, 5).await;
    let deleted = exec(client, &format!("DELETE FROM orders WHERE {ON_DAY}"), &day).await;
    assert!(deleted > 0);
    let before = cursor(client, "orders").await;
    let (code, out, err) = cli.run(&backfill("shop-0", "orders", &day, &today));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        cursor(client, "orders").await,
        before,
        "backfill leaves the cursor"
    );
    let back = orders_on(client, &day).await;
    assert_eq!(back as u64, deleted, "the range is read again");

    // A lease another daemon holds is waited for, up to --lease-wait, then refused (69).
    let held = "UPDATE sync_state SET lease_owner = 'other-daemon', \
                lease_expires_at = now() + interval '1 hour' WHERE stream = 'orders'";
    client.execute(held, &[]).await.unwrap();
    let started = std::time::Instant::now();
    let mut args = backfill("shop-0", "orders", &today, &today);
    args.extend(["--lease-wait", "2s"]);
    let (code, out, err) = cli.run(&args);
    assert_eq!(code, 69, "{out}{err}");
    assert!(err.contains("held the lease"), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited");
    let free = "UPDATE sync_state SET lease_owner = NULL, lease_expires_at = NULL";
    client.execute(free, &[]).await.unwrap();

    let (code, out, err) = cli.run(&["reset", "--shop", "shop-0", "--stream", "orders", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("initial_window"), "{out}");
    let (_, status, _) = cli.run(&["status"]);
    assert!(
        status.contains("backfill pending"),
        "status shows the reset:\n{status}"
    );
    assert_eq!(
        cursor(client, "orders").await,
        None,
        "the next run backfills initial_window"
    );
}

/// The body of `GET url`.
async fn get(http: &reqwest::Client, url: &str) -> String {
    let resp = http.get(url).send().await.expect("GET answered");
    resp.text().await.expect("a body")
}

async fn post(http: &reqwest::Client, url: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut req = http.post(url).body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_and_reset_routes_and_the_scheduled_audit() {
    let audit_every = "  audit_interval: 4s\n  audit_window: 30d\n";
    let w = Synced::start("e2e_ops_routes", 600, audit_every).await;
    let (daemon, client) = (&w.daemon, &w.client);
    let http = reqwest::Client::new();

    // Routes: token, unknown names, bad ranges.
    let url = daemon.url("/sync/shop-0/orders/backfill");
    let today = Utc::now().date_naive().to_string();
    let good = format!(r#"{{"from": "2026-01-01", "to": "{today}"}}"#);
    assert_eq!(post(&http, &url, None, &good).await.0, 401);
    assert_eq!(
        post(
            &http,
            &daemon.url("/sync/nope/orders/backfill"),
            Some(ADMIN_TOKEN),
            &good
        )
        .await
        .0,
        404
    );
    let reversed = format!(r#"{{"from": "{today}", "to": "2026-01-01"}}"#);
    let (status, body) = post(&http, &url, Some(ADMIN_TOKEN), &reversed).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("reversed"), "{body}");
    let products = daemon.url("/sync/shop-0/products/backfill");
    assert_eq!(
        post(&http, &products, Some(ADMIN_TOKEN), &good).await.0,
        400
    );

    // A gap the repair can fix (a day deleted) and one it cannot (a row Temu does not have).
    let fixable = old_day(client, 70).await;
    let surplus_day = old_day(client, 75).await;
    exec(
        client,
        &format!("DELETE FROM orders WHERE {ON_DAY}"),
        &fixable,
    )
    .await;
    let cols: String = client
        .query_one(
            "SELECT string_agg(column_name, ',') FROM information_schema.columns \
             WHERE table_name = 'orders' AND column_name NOT IN ('id', 'parent_order_sn')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let ghost = format!(
        "INSERT INTO orders (parent_order_sn, {cols}) SELECT 'GHOST-1', {cols} FROM orders \
         WHERE id = (SELECT min(id) FROM orders WHERE {ON_DAY})"
    );
    assert_eq!(exec(client, &ghost, &surplus_day).await, 1);
    let shown = eventually(Duration::from_secs(60), || async {
        let Ok(resp) = http.get(daemon.url("/status")).send().await else {
            return false;
        };
        let doc: serde_json::Value = resp.json().await.unwrap_or_default();
        doc["audits"].as_array().is_some_and(|a| {
            a.iter().any(|v| {
                v["stream"] == "orders"
                    && v["repaired"].as_u64() >= Some(1)
                    && v["differences"].as_array().is_some_and(|d| d.len() == 1)
            })
        })
    })
    .await;
    assert!(
        shown,
        "the scheduled audit repaired the deleted day and reports the surplus\n{}",
        daemon.log_tail(30)
    );
    let restored = orders_on(client, &fixable).await;
    assert!(restored > 0, "the deleted day is back");
    let health: serde_json::Value =
        serde_json::from_str(&get(&http, &daemon.url("/health")).await).expect("health+json");
    assert_eq!(
        health["checks"]["audit:shop-0:orders"][0]["status"], "warn",
        "{health}"
    );
    let metrics = get(&http, &daemon.url("/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("temu_sync_audit_differences{")
                && l.contains("stream=\"orders\"")
                && l.ends_with(" 1")),
        "gauge:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("audit"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The backfill route re-reads a range in the background, leaving the cursor.
    let before = cursor(client, "orders").await;
    let since = db_now(client).await;
    let (status, body) = post(&http, &url, Some(ADMIN_TOKEN), &good).await;
    assert_eq!(status, 202, "{body}");
    let ran = eventually(Duration::from_secs(60), || async {
        succeeded_since(client, since)
            .await
            .contains_key(&("shop-0".to_string(), "orders".to_string()))
    })
    .await;
    assert!(ran, "the backfill run succeeded\n{}", daemon.log_tail(30));
    assert_eq!(cursor(client, "orders").await, before);

    let (status, body) = post(
        &http,
        &daemon.url("/sync/shop-0/aftersales/reset"),
        Some(ADMIN_TOKEN),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cursor(client, "aftersales").await, None);
    assert_eq!(
        post(
            &http,
            &daemon.url("/sync/shop-0/nope/reset"),
            Some(ADMIN_TOKEN),
            ""
        )
        .await
        .0,
        404
    );
}
