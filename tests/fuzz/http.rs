//! Bad input on the HTTP request path, raw TCP against the real daemon binary (a separate
//! process): random and malformed request lines, unknown methods, huge headers, bodies on GET,
//! slow clients. Properties: every answer is a well-formed HTTP/1.x status line (or a closed
//! connection), none takes longer than the header read timeout, the process survives with no
//! panic, `/health` still answers, and memory and descriptors stay bounded.
//!
//! `FUZZ_CASES` (default 3000) sets the number of random requests.

use crate::common::{alone, cases};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::sync_common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use temu_sync::sim::SimConfig;
use temu_sync::testkit::TestDatabase;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Sends `bytes`, half-closes, and reads the answer (bounded). Returns the status line, if any.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Result<Option<String>, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(HEADER_READ_TIMEOUT + Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    // The server may answer (and close) before reading everything: a write error is fine.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let started = Instant::now();
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 1 << 20 {
                    return Err("answer larger than 1 MiB".into());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => {
                return Err(format!(
                    "no answer and no close after {:?}: {e}",
                    started.elapsed()
                ))
            }
        }
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("").to_string();
    Ok(Some(line))
}

fn valid_status_line(line: &str) -> bool {
    let mut parts = line.splitn(3, ' ');
    matches!(parts.next(), Some("HTTP/1.1" | "HTTP/1.0"))
        && parts
            .next()
            .and_then(|c| c.parse::<u16>().ok())
            .is_some_and(|c| (100..600).contains(&c))
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("HEAD".to_string()),
        Just("POST".to_string()),
        Just("DELETE".to_string()),
        Just("OPTIONS".to_string()),
        Just("TRACE".to_string()),
        Just("CONNECT".to_string()),
        Just("BREW".to_string()),
        Just("".to_string()),
        "[A-Za-z\\x00-\\x20]{1,12}",
    ];
    let path = prop_oneof![
        Just("/health".to_string()),
        Just("/livez".to_string()),
        Just("/readyz".to_string()),
        Just("/metrics".to_string()),
        Just("/status".to_string()),
        Just("/sync/shop-0/orders".to_string()),
        Just("*".to_string()),
        Just("http://evil.example/health".to_string()),
        Just("/%00%ff/../..".to_string()),
        "/[ -~]{0,64}",
        "[^\r\n]{0,64}",
    ];
    let version = prop_oneof![
        Just("HTTP/1.1".to_string()),
        Just("HTTP/1.0".to_string()),
        Just("HTTP/2.0".to_string()),
        Just("HTTP/9".to_string()),
        Just("".to_string()),
        "[ -~]{0,10}",
    ];
    let header = prop_oneof![
        Just("Host: x".to_string()),
        Just("Content-Length: 5".to_string()),
        Just("Content-Length: -1".to_string()),
        Just("Content-Length: 99999999999999999999".to_string()),
        Just("Transfer-Encoding: chunked".to_string()),
        Just("Transfer-Encoding: chunked, identity".to_string()),
        Just("Authorization: Bearer x".to_string()),
        Just("Expect: 100-continue".to_string()),
        Just("Connection: upgrade".to_string()),
        Just(format!("X-Big: {}", "a".repeat(70_000))),
        Just(" folded".to_string()),
        Just(":".to_string()),
        "[ -~]{0,80}",
    ];
    let body = prop_oneof![
        Just(Vec::new()),
        Just(b"hello".to_vec()),
        Just(b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
        Just(b"zz\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..256),
    ];
    let eol = prop_oneof![Just("\r\n"), Just("\n"), Just("\r")];
    let structured = (
        method,
        path,
        version,
        prop::collection::vec(header, 0..6),
        body,
        eol,
    )
        .prop_map(|(m, p, v, headers, body, eol)| {
            let mut out = format!("{m} {p} {v}{eol}").into_bytes();
            for h in headers {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(eol.as_bytes());
            }
            out.extend_from_slice(eol.as_bytes());
            out.extend_from_slice(&body);
            out
        });
    prop_oneof![
        8 => structured,
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// The daemon under test in its steady state (pool filled, first sync done, warmed up), with
/// the database and simulator it needs (fields drop in order: the daemon before what it uses).
struct Steady {
    daemon: Daemon,
    http: reqwest::Client,
    _sim: Sim,
    _db: TestDatabase,
}

impl Steady {
    async fn start() -> Self {
        let db = TestDatabase::reserve("fuzz_http").expect("test database");
        let sim = Sim::start(SimConfig::demo(3, 1, 20)).await;
        let mut opts = options(&db, &sim);
        opts.interval = "1h";
        let mut daemon = Daemon::start_with_env(
            &sim,
            &opts,
            &[
                ("TEMU_SYNC__HTTP__HEADER_READ_TIMEOUT", "2s"),
                ("TEMU_SYNC__HTTP__REQUEST_TIMEOUT", "5s"),
                ("TEMU_SYNC__HTTP__RATE_LIMIT_PER_SECOND", "100000"),
                ("TEMU_SYNC__HTTP__RATE_LIMIT_BURST", "100000"),
            ],
        );
        let http = reqwest::Client::new();
        let up = eventually(Duration::from_secs(30), || async {
            http.get(daemon.url("/livez")).send().await.is_ok()
        })
        .await;
        assert!(up, "daemon up\n{}", daemon.log_tail(20));
        // Baseline once the daemon is in its steady state: database pool filled, first sync done.
        let client = loop {
            if let Ok((c, conn)) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls).await {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                if c.query_one("SELECT count(*) FROM sync_runs", &[])
                    .await
                    .is_ok()
                {
                    break c;
                }
            }
            assert!(
                daemon.still_running(),
                "daemon died\n{}",
                daemon.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        assert!(wait_for_complete_round(&client, &sim, t0, Duration::from_secs(60)).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Warm up so the baseline includes the lazily allocated parts.
        for _ in 0..50 {
            let _ = exchange(daemon.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        }
        Self {
            daemon,
            http,
            _sim: sim,
            _db: db,
        }
    }
}

/// `n` random requests, each answered with a valid status line (or a close) in time.
async fn fuzz_requests(
    addr: SocketAddr,
    n: u32,
) -> Result<(), proptest::test_runner::TestError<Vec<u8>>> {
    tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config {
            cases: n,
            failure_persistence: None,
            ..Config::default()
        });
        runner.run(&request(), |bytes| {
            let t = Instant::now();
            match exchange(addr, &bytes) {
                Ok(Some(line)) => {
                    prop_assert!(valid_status_line(&line), "bad status line {line:?}")
                }
                Ok(None) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
            prop_assert!(
                t.elapsed() < HEADER_READ_TIMEOUT + Duration::from_secs(3),
                "answer took {:?}",
                t.elapsed()
            );
            Ok(())
        })
    })
    .await
    .expect("fuzz thread")
}

/// What 40 slow clients met: `/health` meanwhile and its latency, and the longest a slow client
/// was held.
struct SlowClients {
    health: reqwest::Result<reqwest::Response>,
    health_latency: Duration,
    slowest: Duration,
}

/// Slow clients: 40 connections dribbling a header one byte per 300 ms are cut after the
/// header read timeout, and /health answers meanwhile.
async fn slow_clients(steady: &Steady) -> SlowClients {
    let addr = steady.daemon.addr;
    let slow = std::thread::spawn(move || {
        let mut handles = Vec::new();
        for _ in 0..40 {
            handles.push(std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(addr) else {
                    return Duration::ZERO;
                };
                let t = Instant::now();
                for b in b"GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                    if s.write_all(&[*b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                t.elapsed()
            }));
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Duration::MAX))
            .max()
            .unwrap_or_default()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let health = steady
        .http
        .get(steady.daemon.url("/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    let health_latency = t.elapsed();
    let slowest = tokio::task::spawn_blocking(move || slow.join().unwrap_or(Duration::MAX))
        .await
        .expect("slow clients");
    SlowClients {
        health,
        health_latency,
        slowest,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_requests_against_the_real_daemon() {
    let _alone = alone().await;
    let mut steady = Steady::start().await;
    let pid = steady.daemon.pid();
    let addr = steady.daemon.addr;
    let rss0 = rss_kib(pid);
    let fds0 = fds(pid);

    let n = cases();
    let started = Instant::now();
    let result = fuzz_requests(addr, n).await;
    let fuzz_time = started.elapsed();
    let slow = slow_clients(&steady).await;

    // Settle, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = rss_kib(pid);
    let fds1 = fds(pid);
    let daemon = &mut steady.daemon;
    println!(
        "fuzz http/raw-requests: {n} executions in {:.1} s; RSS {rss0} -> {rss1} KiB, fds {fds0} -> {fds1}; \
         /health under 40 slow clients: {:?}; slowest slow client cut after {:?}",
        fuzz_time.as_secs_f64(),
        slow.health_latency,
        slow.slowest
    );
    if let Err(e) = result {
        panic!("raw request fuzzing: {e}\n{}", daemon.log_tail(20));
    }
    assert!(
        slow.health.is_ok_and(|r| r.status().as_u16() < 600),
        "/health answered during the slow clients"
    );
    assert!(
        slow.slowest < HEADER_READ_TIMEOUT + Duration::from_secs(2),
        "a slow client was held for {:?}",
        slow.slowest
    );
    assert!(daemon.still_running(), "the daemon survived");
    assert!(!daemon.log().contains("panicked"), "no panic");
    assert!(
        rss1 < rss0 + 64 * 1024,
        "memory bounded: {rss0} -> {rss1} KiB"
    );
    assert!(fds1 <= fds0 + 8, "descriptors released: {fds0} -> {fds1}");
}
