//! The HTTP endpoint runs on a thread and runtime of its own (`src/http/thread.rs`): when the
//! daemon's main runtime is blocked — the failure mode that froze the Python service — `/health`
//! still answers and `/livez` reports the unresponsive supervisor as a 503, instead of the
//! connection hanging. In-process, so the test can block the daemon's only worker thread.

use std::time::{Duration, Instant};

use temu_sync::app;
use temu_sync::config::Config;
use temu_sync::sync::SyncBoard;
use temu_sync::testkit::{eventually, free_port, http_status};

/// Waits until `GET url` answers `want` (each request within 2 s); panics with the last answer.
async fn until_status(client: &reqwest::Client, url: &str, want: u16, within: Duration) {
    let last = parking_lot::Mutex::new(Err(String::from("not asked yet")));
    let reached = eventually(within, || async {
        let status = http_status(client, url, Duration::from_secs(2)).await;
        let hit = status == Ok(want);
        *last.lock() = status;
        hit
    })
    .await;
    assert!(
        reached,
        "{url}: wanted {want} within {within:?}, last {:?}",
        last.lock()
    );
}

#[test]
fn endpoint_answers_while_the_daemon_runtime_is_blocked() {
    let port = free_port();
    // The database is unreachable on purpose: the endpoint must not need it.
    let yaml = format!(
        "http: {{ listen: \"127.0.0.1:{port}\" }}\n\
         database: {{ url: \"postgres://postgres@127.0.0.1:1/none\", connect_timeout: 500ms }}\n"
    );
    let config = Config::from_yaml_str(&yaml, "test.yaml", &|_| None, Vec::new())
        .expect("valid config")
        .config;

    // The daemon's runtime has one worker, so one blocking task stops all of its async work.
    let daemon_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("daemon runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = daemon_rt.spawn(app::run_with(config, SyncBoard::default(), async move {
        let _ = stopped.await;
        "test"
    }));

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let client = reqwest::Client::new();
    let livez = format!("http://127.0.0.1:{port}/livez");
    let health = format!("http://127.0.0.1:{port}/health");
    client_rt.block_on(until_status(&client, &livez, 200, Duration::from_secs(20)));

    // Block the daemon's only worker for a while (a task calling blocking code by mistake).
    let (blocking, blocked) = std::sync::mpsc::channel();
    daemon_rt.spawn(async move {
        let _ = blocking.send(());
        std::thread::sleep(Duration::from_secs(6));
    });
    blocked
        .recv_timeout(Duration::from_secs(10))
        .expect("the blocking task ran");

    client_rt.block_on(async {
        let asked = Instant::now();
        let live = http_status(&client, &livez, Duration::from_secs(4)).await;
        assert_eq!(
            live,
            Ok(503),
            "/livez must answer 'supervisor not responding' while the runtime is blocked"
        );
        // The liveness deadline is 1 s; the answer comes soon after it, not after the block.
        assert!(
            asked.elapsed() < Duration::from_secs(4),
            "/livez took {:?}",
            asked.elapsed()
        );
        let h = http_status(&client, &health, Duration::from_secs(2)).await;
        assert!(
            matches!(h, Ok(200) | Ok(503)),
            "/health must answer from its snapshot while the runtime is blocked: {h:?}"
        );
        // Once the worker is free again, the supervisor answers again.
        until_status(&client, &livez, 200, Duration::from_secs(20)).await;
    });

    let _ = stop.send(());
    let code = daemon_rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), daemon).await })
        .expect("the daemon stops within 30 s")
        .expect("the daemon task did not panic");
    assert_eq!(code, 0, "orderly stop");
    daemon_rt.shutdown_timeout(Duration::from_secs(2));
}
