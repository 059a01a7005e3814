//! The systemd notify protocol against a unix datagram socket standing in for systemd's
//! `NOTIFY_SOCKET`: the real binary says READY=1 and STATUS= without a database, pings the
//! watchdog every WATCHDOG_USEC/2, says RELOADING=1 … READY=1 on SIGHUP and STOPPING=1 on SIGTERM; the notifier withholds the
//! watchdog ping while the supervisor does not answer, and a panic of the notifier is caught and
//! counted (never an unnoticed end of the watchdog).

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use temu_sync::health::Health;
use temu_sync::metrics::Metrics;
use temu_sync::ops::Notifier;
use temu_sync::shutdown::Shutdown;
use temu_sync::supervisor::PingFn;
use temu_sync::testkit::{free_port, DaemonLaunch};

const BIN: &str = env!("CARGO_BIN_EXE_temu-sync");

/// A bound datagram socket in a temp dir, like systemd's notify socket.
struct FakeSystemd {
    socket: UnixDatagram,
    dir: tempfile::TempDir,
}

impl FakeSystemd {
    fn bind() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = UnixDatagram::bind(dir.path().join("notify")).expect("bind notify socket");
        Self { socket, dir }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("notify")
    }

    /// The next datagram within `limit`, or None.
    fn recv(&self, limit: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .expect("read timeout");
        let mut buf = vec![0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// Every datagram until one satisfies `want` or `limit` passes; the messages seen, and
    /// whether `want` was met.
    fn until(&self, limit: Duration, want: impl Fn(&str) -> bool) -> (Vec<String>, bool) {
        let end = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some(msg) => {
                    let hit = want(&msg);
                    seen.push(msg);
                    if hit {
                        return (seen, true);
                    }
                }
                None => break,
            }
        }
        (seen, false)
    }

    /// Every datagram that arrives within `window`.
    fn collect(&self, window: Duration) -> Vec<String> {
        self.until(window, |_| false).0
    }
}

fn count(msgs: &[String], line: &str) -> usize {
    msgs.iter().filter(|m| m.lines().any(|l| l == line)).count()
}

#[test]
fn daemon_speaks_the_notify_protocol_without_a_database() {
    let systemd = FakeSystemd::bind();
    // No database listens on this port: READY must not wait for it.
    let db_port = free_port();
    let database_url = format!("postgres://postgres@127.0.0.1:{db_port}/none");
    let mut daemon = DaemonLaunch::database_only(BIN, &database_url)
        .env("NOTIFY_SOCKET", systemd.path())
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .spawn()
        .expect("daemon starts");

    let (first, ready) = systemd.until(Duration::from_secs(15), |m| m.contains("READY=1"));
    assert!(ready, "no READY=1 within 15 s; got {first:?}");
    let ready_msg = first.last().cloned().unwrap_or_default();
    assert!(
        ready_msg.lines().any(|l| l.starts_with("STATUS=")),
        "READY=1 comes with a STATUS=: {ready_msg:?}"
    );

    // The database is down: a STATUS= naming postgres arrives, and watchdog pings keep coming
    // every ~200 ms.
    let window = systemd.collect(Duration::from_millis(2500));
    let watchdogs = count(&window, "WATCHDOG=1");
    assert!(
        watchdogs >= 5,
        "expected about 12 WATCHDOG=1 in 2.5 s at a 200 ms interval, got {watchdogs}: {window:?}"
    );
    let statuses: Vec<&String> = first
        .iter()
        .chain(window.iter())
        .filter(|m| m.contains("STATUS="))
        .collect();
    assert!(
        statuses.iter().any(|m| m.contains("postgres")),
        "some STATUS= names the unreachable database: {statuses:?}"
    );

    // SIGHUP (systemd's ExecReload=): RELOADING=1 with the monotonic clock, then READY=1 again.
    daemon.signal(libc::SIGHUP);
    let (seen, reloading) = systemd.until(Duration::from_secs(10), |m| m.contains("RELOADING=1"));
    assert!(reloading, "no RELOADING=1 after SIGHUP; got {seen:?}");
    let usec = seen.last().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse::<u64>().ok())
    });
    assert!(
        usec.is_some_and(|u| u > 0),
        "RELOADING=1 carries MONOTONIC_USEC=: {seen:?}"
    );
    let (seen, ready) = systemd.until(Duration::from_secs(10), |m| m == "READY=1");
    assert!(ready, "READY=1 after the reload; got {seen:?}");

    // SIGTERM: STOPPING=1, then a clean exit.
    daemon.signal(libc::SIGTERM);
    let (after, stopping) = systemd.until(Duration::from_secs(10), |m| m.contains("STOPPING=1"));
    assert!(stopping, "no STOPPING=1 after SIGTERM; got {after:?}");
    let code = daemon
        .wait_exit(Duration::from_secs(20))
        .expect("daemon did not exit after SIGTERM");
    assert_eq!(code, Some(0));
}

/// A liveness probe that answers at once, or — once `hang` is set — never.
fn switchable_liveness(hang: Arc<AtomicBool>) -> PingFn {
    Arc::new(move |_deadline| {
        let hang = hang.clone();
        Box::pin(async move {
            if hang.load(Ordering::SeqCst) {
                futures_util::future::pending::<()>().await;
            }
            true
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_stops_while_the_supervisor_hangs_and_resumes_after() {
    let systemd = Arc::new(FakeSystemd::bind());
    let notifier = Notifier::new(
        Some(systemd.path().into_os_string()),
        Some(Duration::from_millis(400)),
    );
    assert_eq!(
        notifier.watchdog_interval(),
        Some(Duration::from_millis(200))
    );
    let hang = Arc::new(AtomicBool::new(false));
    let shutdown = Shutdown::new();
    notifier.spawn(
        &shutdown,
        switchable_liveness(hang.clone()),
        Health::new("test"),
        Duration::from_millis(100),
        &Metrics::new(),
    );
    let collect = |window: Duration| {
        let systemd = systemd.clone();
        tokio::task::spawn_blocking(move || systemd.collect(window))
    };

    let answering = collect(Duration::from_millis(1500)).await.unwrap();
    let pings = count(&answering, "WATCHDOG=1");
    assert!(
        pings >= 4,
        "about 7 pings in 1.5 s expected, got {pings}: {answering:?}"
    );
    assert!(
        answering.iter().any(|m| m.starts_with("STATUS=")),
        "the first health summary is sent: {answering:?}"
    );

    hang.store(true, Ordering::SeqCst);
    // A ping already under way when the switch flips may still land: skip one interval.
    let _ = collect(Duration::from_millis(300)).await.unwrap();
    let hung = collect(Duration::from_millis(1500)).await.unwrap();
    assert_eq!(
        count(&hung, "WATCHDOG=1"),
        0,
        "no watchdog ping while the supervisor does not answer: {hung:?}"
    );

    hang.store(false, Ordering::SeqCst);
    let back = collect(Duration::from_millis(1500)).await.unwrap();
    assert!(
        count(&back, "WATCHDOG=1") >= 3,
        "pings resume once the supervisor answers: {back:?}"
    );
    assert_eq!(shutdown.stop(Duration::from_secs(1)).await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_health_changes() {
    let systemd = Arc::new(FakeSystemd::bind());
    let notifier = Notifier::new(Some(systemd.path().into_os_string()), None);
    let health = Health::new("test");
    health.update_db(|db| {
        db.reachable = true;
        db.migrations_applied = true;
        db.last_error = None;
    });
    let alive: PingFn = Arc::new(|_| Box::pin(async { true }));
    let shutdown = Shutdown::new();
    notifier.spawn(
        &shutdown,
        alive,
        health.clone(),
        Duration::from_millis(100),
        &Metrics::new(),
    );
    let s = systemd.clone();
    let (seen, ok) = tokio::task::spawn_blocking(move || {
        s.until(Duration::from_secs(5), |m| m.starts_with("STATUS=pass"))
    })
    .await
    .unwrap();
    assert!(ok, "STATUS=pass… first: {seen:?}");

    health.update_db(|db| {
        db.reachable = false;
        db.last_error = Some("connection refused".into());
    });
    let s = systemd.clone();
    let (seen, ok) = tokio::task::spawn_blocking(move || {
        s.until(Duration::from_secs(5), |m| {
            m.starts_with("STATUS=fail") && m.contains("connection refused")
        })
    })
    .await
    .unwrap();
    assert!(ok, "a new STATUS= when the database goes away: {seen:?}");
    // Unchanged health: no repeated STATUS=.
    let s = systemd.clone();
    let quiet = tokio::task::spawn_blocking(move || s.collect(Duration::from_millis(2500)))
        .await
        .unwrap();
    assert!(
        quiet.is_empty(),
        "STATUS= is sent on change only: {quiet:?}"
    );
    assert_eq!(shutdown.stop(Duration::from_secs(1)).await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_notifier_is_caught_and_counted() {
    let systemd = Arc::new(FakeSystemd::bind());
    let notifier = Notifier::new(
        Some(systemd.path().into_os_string()),
        Some(Duration::from_millis(400)),
    );
    fn scripted_panic() -> bool {
        panic!("scripted liveness panic")
    }
    let panicking: PingFn = Arc::new(|_| Box::pin(async { scripted_panic() }));
    let (shutdown, metrics, health) = (Shutdown::new(), Metrics::new(), Health::new("test"));
    let task = notifier.spawn(
        &shutdown,
        panicking,
        health.clone(),
        Duration::from_millis(100),
        &metrics,
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(
        matches!(ended, Ok(Ok(()))),
        "the task ends by itself, its panic caught: {ended:?}"
    );
    let text = metrics.render(&health);
    assert!(
        text.lines()
            .any(|l| l == "temu_sync_task_panics_total{task=\"notifier\"} 1"),
        "{text}"
    );
    assert_eq!(shutdown.stop(Duration::from_secs(1)).await, Ok(()));
}
