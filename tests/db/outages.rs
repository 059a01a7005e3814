//! The real `temu-sync` binary as a separate process, as systemd runs it: database outages at boot
//! and at run time, `/health` latency while the database hangs, orderly SIGTERM, exit codes.

use std::time::{Duration, Instant};

use temu_sync::testkit::{DaemonLaunch, DaemonProcess, FaultMode, FaultProxy, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_temu-sync");

/// How long SIGTERM may take to end the daemon.
const EXIT_LIMIT: Duration = Duration::from_secs(20);

/// The daemon with only a database configured (no shops).
fn start_daemon(database_url: &str) -> DaemonProcess {
    DaemonLaunch::database_only(BIN, database_url)
        .spawn()
        .expect("daemon starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

fn postgres_output(body: &serde_json::Value) -> String {
    body["checks"]["postgres:connections"][0]["output"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_at_boot_then_back_without_a_restart() {
    let test_db = TestDatabase::reserve("daemon_boot").unwrap();
    let proxy = FaultProxy::start(test_db.server_addr(), FaultMode::Refuse)
        .await
        .unwrap();
    let mut daemon = start_daemon(&test_db.url_via(Some(proxy.addr())));

    let down = daemon
        .health_until(Duration::from_secs(30), |status, body| {
            status == 503
                && body["status"] == "fail"
                && postgres_output(body).contains("unreachable")
        })
        .await;
    let (_, body) = down.expect("/health reports the database down with 503");
    assert!(
        postgres_output(&body).to_lowercase().contains("refused")
            || postgres_output(&body).contains("connect"),
        "the reason is given: {body}"
    );
    let ready = client().get(daemon.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let live = client().get(daemon.url("/livez")).send().await.unwrap();
    assert_eq!(live.status().as_u16(), 200, "the process itself is alive");

    proxy.set_mode(FaultMode::Pass);
    let up = daemon
        .health_until(Duration::from_secs(40), |status, body| {
            status == 200 && body["status"] == "pass"
        })
        .await;
    assert!(up.is_some(), "/health passes once the database is back");
    assert!(
        daemon.still_running(),
        "recovered without a process restart"
    );
    let ready = client().get(daemon.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    assert_eq!(
        daemon.terminate(EXIT_LIMIT),
        Some(Some(0)),
        "SIGTERM is a clean exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_fast_while_the_database_is_blackholed() {
    let test_db = TestDatabase::reserve("daemon_blackhole").unwrap();
    let proxy = FaultProxy::start(test_db.server_addr(), FaultMode::Pass)
        .await
        .unwrap();
    let mut daemon = start_daemon(&test_db.url_via(Some(proxy.addr())));
    assert!(
        daemon
            .health_until(Duration::from_secs(40), |s, b| s == 200
                && b["status"] == "pass")
            .await
            .is_some(),
        "daemon becomes healthy"
    );

    proxy.set_mode(FaultMode::Blackhole);
    let failed = daemon
        .health_until(Duration::from_secs(30), |status, body| {
            status == 503 && postgres_output(body).contains("unreachable")
        })
        .await;
    assert!(
        failed.is_some(),
        "a hanging database is reported as failing"
    );

    // Every probe answers promptly although each database ping hangs until its deadline.
    let http = client();
    let mut latencies = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let resp = http
            .get(daemon.url("/health"))
            .send()
            .await
            .expect("answers");
        assert_eq!(resp.status().as_u16(), 503);
        let _ = resp.bytes().await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    println!("/health with the database blackholed: p50 {p50:?}, max {max:?} over 50 requests");
    // Generous bound for a loaded 2-core machine: far below the 500 ms ping deadline.
    assert!(
        max < Duration::from_millis(400),
        "slow /health: max {max:?}"
    );

    proxy.set_mode(FaultMode::Pass);
    assert!(
        daemon
            .health_until(Duration::from_secs(40), |s, b| s == 200
                && b["status"] == "pass")
            .await
            .is_some(),
        "recovers when the database answers again"
    );
    assert!(daemon.still_running());
    assert_eq!(daemon.terminate(EXIT_LIMIT), Some(Some(0)));
}
