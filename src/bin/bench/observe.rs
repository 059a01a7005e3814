//! What the bench reads off a running daemon: its database (a connection, succeeded and running
//! sync runs), its HTTP status, and its `/proc` figures (RSS, peak RSS, threads, CPU time). Reads
//! only; starting and stopping processes is `daemon.rs`'s.

use std::time::Duration;

use temu_sync::testkit::{eventually, eventually_some, http_status};
use tokio_postgres::NoTls;

/// A connection to `url`, retried until `limit` (the daemon may still be creating the database).
pub async fn connect_pg(url: &str, limit: Duration) -> tokio_postgres::Client {
    let last_error = parking_lot::Mutex::new(String::new());
    let client = eventually_some(limit, || async {
        match tokio_postgres::connect(url, NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Some(client)
            }
            Err(e) => {
                *last_error.lock() = e.to_string();
                None
            }
        }
    })
    .await;
    client.unwrap_or_else(|| panic!("cannot connect to {url}: {}", last_error.lock()))
}

/// Waits until `count` runs of `stream` (or any stream for "") succeeded; false on timeout.
pub async fn wait_runs(
    client: &tokio_postgres::Client,
    stream: &str,
    count: i64,
    limit: Duration,
) -> bool {
    eventually(limit, || async {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM sync_runs WHERE status = 'succeeded' AND ($1 = '' OR stream = $1)",
                &[&stream],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        n >= count
    })
    .await
}

/// Sync runs in flight (0 when the query fails).
pub async fn running_runs(client: &tokio_postgres::Client) -> i64 {
    count(
        client,
        "SELECT count(*) FROM sync_runs WHERE status = 'running'",
    )
    .await
}

/// The one `bigint` a counting query returns (0 when the query fails).
pub async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// The status of one `GET url` within 500 ms (None when it did not answer).
pub async fn health_status(http: &reqwest::Client, url: &str) -> Option<u16> {
    http_status(http, url, Duration::from_millis(500))
        .await
        .ok()
}

/// Waits until `GET url` answers `want`; false on timeout.
pub async fn wait_health(http: &reqwest::Client, url: &str, want: u16, limit: Duration) -> bool {
    eventually(limit, || async {
        health_status(http, url).await == Some(want)
    })
    .await
}

/// A `/proc/<pid>/status` field in kB.
pub fn proc_kb(pid: u32, field: &str) -> Option<u64> {
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
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
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

/// kB as "12.3 MB".
pub fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}
