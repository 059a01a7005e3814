//! The real `temu-sync` binary as a separate process, as systemd runs it: database outages at boot
//! and at run time, `/health` latency while the database hangs, orderly SIGTERM, exit codes.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use temu_sync::testkit::{FaultMode, FaultProxy, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_temu-sync");

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
    _config: tempfile::NamedTempFile,
    log: tempfile::NamedTempFile,
}

impl Daemon {
    fn start(database_url: &str, extra_yaml: &str) -> Self {
        let port = free_port();
        let mut config = tempfile::NamedTempFile::new().expect("temp config");
        write!(
            config,
            "log: {{ format: json, level: info }}\n\
             http: {{ listen: \"127.0.0.1:{port}\" }}\n\
             database:\n  url: \"{database_url}\"\n  connect_timeout: 1s\n  ping_interval: 500ms\n  \
             ping_timeout: 400ms\n  retry_min: 100ms\n  retry_max: 1s\n\
             supervisor: {{ shutdown_timeout: 5s }}\n{extra_yaml}"
        )
        .expect("write config");
        let log = tempfile::NamedTempFile::new().expect("temp log");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(config.path())
            .arg("run")
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("daemon starts");
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _config: config,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The daemon's log so far (JSON lines), for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn still_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn terminate(&mut self) -> Option<i32> {
        // SAFETY: sending a signal to our own child process by pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
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

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

/// Polls `/health` until `want(status, body)` holds or `limit` passes.
async fn health_until(
    daemon: &Daemon,
    limit: Duration,
    want: impl Fn(u16, &serde_json::Value) -> bool,
) -> Option<(u16, serde_json::Value)> {
    let http = client();
    let end = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < end {
        if let Ok(resp) = http.get(daemon.url("/health")).send().await {
            let status = resp.status().as_u16();
            if let Ok(body) = resp.json::<serde_json::Value>().await {
                if want(status, &body) {
                    return Some((status, body));
                }
                last = Some((status, body));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "last /health seen: {last:?}\ndaemon log:\n{}",
        daemon.log_tail()
    );
    None
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
    let mut daemon = Daemon::start(&test_db.url_via(Some(proxy.addr())), "");

    let down = health_until(&daemon, Duration::from_secs(30), |status, body| {
        status == 503 && body["status"] == "fail" && postgres_output(body).contains("unreachable")
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
    let up = health_until(&daemon, Duration::from_secs(40), |status, body| {
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

    assert_eq!(daemon.terminate(), Some(0), "SIGTERM is a clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_fast_while_the_database_is_blackholed() {
    let test_db = TestDatabase::reserve("daemon_blackhole").unwrap();
    let proxy = FaultProxy::start(test_db.server_addr(), FaultMode::Pass)
        .await
        .unwrap();
    let mut daemon = Daemon::start(&test_db.url_via(Some(proxy.addr())), "");
    assert!(
        health_until(&daemon, Duration::from_secs(40), |s, b| s == 200
            && b["status"] == "pass")
        .await
        .is_some(),
        "daemon becomes healthy"
    );

    proxy.set_mode(FaultMode::Blackhole);
    let failed = health_until(&daemon, Duration::from_secs(30), |status, body| {
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
        health_until(&daemon, Duration::from_secs(40), |s, b| s == 200
            && b["status"] == "pass")
        .await
        .is_some(),
        "recovers when the database answers again"
    );
    assert!(daemon.still_running());
    assert_eq!(daemon.terminate(), Some(0));
}
