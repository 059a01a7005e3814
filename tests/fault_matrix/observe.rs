//! What the scenarios look at: the daemon's `/health`, its open descriptors, its PostgreSQL
//! sessions, duplicates in the data, and an admin connection to the test database.
//!
//! Owns reading and judging observations; must not inject faults or start processes.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::sync_common::Daemon;
use temu_sync::testkit::TestDatabase;
use tokio_postgres::NoTls;

/// Open descriptors the daemon may gain over a scenario (pool growth to its max is counted
/// separately through pg_stat_activity; this is the slack for HTTP keep-alive sockets).
pub const FD_SLACK: usize = 12;
/// `database.pool_size + max_overflow` (defaults 10 + 20).
pub const POOL_MAX: i64 = 30;

pub async fn health(http: &reqwest::Client, daemon: &Daemon) -> Option<serde_json::Value> {
    let resp = http
        .get(daemon.url("/health"))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

pub fn db_failing(h: &serde_json::Value) -> bool {
    h["checks"]["postgres:connections"][0]["status"] == "fail"
}

/// Anything short of a clean bill: a non-pass status or a check that names an error.
pub fn degraded(h: &serde_json::Value) -> bool {
    if h["status"] != "pass" {
        return true;
    }
    h["checks"].as_object().is_some_and(|checks| {
        checks
            .values()
            .flat_map(|v| v.as_array().cloned())
            .flatten()
            .any(|c| {
                c["status"] != "pass"
                    || c["output"]
                        .as_str()
                        .is_some_and(|o| o.contains("error") || o.contains("unreachable"))
            })
    })
}

/// The first non-passing (or error-naming) check's output, shortened.
pub fn what_health_said(h: &serde_json::Value) -> String {
    let mut said = format!("/health {}", h["status"].as_str().unwrap_or("?"));
    if let Some(checks) = h["checks"].as_object() {
        for (name, list) in checks {
            for c in list.as_array().into_iter().flatten() {
                let out = c["output"].as_str().unwrap_or("");
                if c["status"] != "pass" || out.contains("error") {
                    let short: String = out.chars().take(70).collect();
                    let _ = write!(said, ": {name} {} \"{short}\"", c["status"]);
                    return said;
                }
            }
        }
    }
    said
}

pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

pub async fn daemon_sessions(client: &tokio_postgres::Client, db: &TestDatabase) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'temu-sync'",
            &[&db.name()],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

/// Rows stored more than once under one business key (the keys are unique by constraint; this
/// proves it from the data).
pub async fn duplicates(client: &tokio_postgres::Client) -> i64 {
    let mut n = 0;
    for (table, key) in [
        ("orders", "parent_order_sn"),
        ("products", "goods_id"),
        ("aftersales", "parent_after_sales_sn"),
    ] {
        let sql = format!("SELECT count(*) - count(DISTINCT (shop_id, {key})) FROM {table}");
        n += client
            .query_one(&sql, &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0);
    }
    n
}

pub async fn connect_admin(db: &TestDatabase) -> Option<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(&db.url(), NoTls).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(client)
}

/// An admin connection once the daemon has created and migrated the database (up to 30 s).
pub async fn wait_client(db: &TestDatabase) -> Option<tokio_postgres::Client> {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if let Some(c) = connect_admin(db).await {
            if c.query_one("SELECT count(*) FROM sync_runs", &[])
                .await
                .is_ok()
            {
                return Some(c);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Polls `cond` every 50 ms; how long it took, or None after `limit`.
pub async fn time_until<F, Fut>(limit: Duration, mut cond: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
