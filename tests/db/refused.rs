//! A database that refuses connections is reported as such, at once: a checkout fails within
//! about `connect_timeout` (not `pool_timeout`) with the real cause and what to do, and the
//! database actor's `/health` check names it for as long as it lasts. A wrong password (SCRAM, on
//! a private cluster) is named at once by `/health` and the log, and never shown.

use std::time::{Duration, Instant};

use temu_sync::config::DatabaseConfig;
use temu_sync::db::{Database, DbError};
use temu_sync::pg_cluster::{ClusterOptions, PgCluster};
use temu_sync::testkit::{eventually, free_port, DaemonLaunch, DaemonProcess, TestDatabase};

/// A long `pool_timeout`, so waiting it out cannot pass for failing fast.
const POOL_TIMEOUT: Duration = Duration::from_secs(20);
/// Failing fast, generously on a loaded machine: well under `POOL_TIMEOUT`.
const FAST: Duration = Duration::from_secs(6);

fn config(url: String) -> DatabaseConfig {
    DatabaseConfig {
        url,
        pool_size: 2,
        max_overflow: 1,
        pool_timeout: POOL_TIMEOUT,
        connect_timeout: Duration::from_secs(2),
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(150),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
        create_database: false,
        ..DatabaseConfig::default()
    }
}

/// A loopback port nothing listens on.
fn closed_port_url() -> (String, String) {
    let port = free_port();
    (
        format!("postgres://postgres@127.0.0.1:{port}/temu_sync"),
        format!("127.0.0.1:{port}"),
    )
}

/// Checks out from `db`, returning the error and how long it took.
async fn failed_checkout(db: &Database) -> (DbError, Duration) {
    let started = Instant::now();
    let err = match db.checkout("test").await {
        Ok(_) => panic!("a checkout succeeded against a database that is not there"),
        Err(e) => e,
    };
    (err, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_fails_a_checkout_fast_naming_the_cause() {
    let (url, target) = closed_port_url();
    let db = Database::new(config(url)).unwrap();
    db.rebuild_pool();
    for attempt in 1..=3 {
        let (err, took) = failed_checkout(&db).await;
        assert!(took < FAST, "attempt {attempt} took {took:?}: {err}");
        assert!(err.is_unavailable(), "{err:?}");
        let text = err.to_string();
        eprintln!("attempt {attempt} failed in {took:?}: {text}");
        assert!(
            text.contains("refused") && text.contains(&target),
            "names the refusal and where: {text}"
        );
        assert!(
            text.contains("is PostgreSQL running"),
            "says what to check: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_fails_a_checkout_fast_naming_it() {
    let test_db = TestDatabase::reserve("refused_missing").unwrap();
    let db = Database::new(config(test_db.url())).unwrap();
    db.rebuild_pool();
    let (err, took) = failed_checkout(&db).await;
    assert!(took < FAST, "took {took:?}: {err}");
    let text = err.to_string();
    eprintln!("failed in {took:?}: {text}");
    assert!(
        text.contains("does not exist") && text.contains(test_db.name()),
        "names the missing database: {text}"
    );
    assert!(
        text.contains("3D000") && text.contains("database.create_database"),
        "the SQLSTATE and what to do: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_a_refused_database_for_as_long_as_it_lasts() {
    let (url, target) = closed_port_url();
    let db = Database::new(config(url)).unwrap();
    let (health, actor, join) = super::pool::start_db_actor(&db).await;

    let output = || {
        let report = health.report();
        report.checks["postgres:connections"][0]
            .output
            .clone()
            .unwrap_or_default()
    };
    let names_it = |text: &str| text.contains("refused") && text.contains(&target);
    let reported = eventually(Duration::from_secs(10), || {
        let text = output();
        async move { names_it(&text) }
    })
    .await;
    assert!(reported, "/health names the cause: {}", output());
    eprintln!("/health postgres output: {}", output());
    // Every ping meanwhile (one each 200 ms) keeps naming it: none waits out pool_timeout and
    // none turns it into "no answer".
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let text = output();
        assert!(names_it(&text), "still names the cause: {text}");
        assert!(text.starts_with("unreachable: "), "{text}");
    }
    assert!(!health.db().reachable);

    actor.stop(None);
    let _ = tokio::time::timeout(Duration::from_secs(5), join).await;
}

/// The daemon (database only) on `url`, its password from `TEMU_SYNC_TEST_DB_PASSWORD`.
fn daemon_with_password(url: &str, password: &str) -> DaemonProcess {
    let port = free_port();
    let config = format!(
        "log: {{ format: json, level: info }}\n\
         http: {{ listen: \"127.0.0.1:{port}\" }}\n\
         database:\n  url: \"{url}\"\n  password: {{ env: TEMU_SYNC_TEST_DB_PASSWORD }}\n  \
         create_database: false\n  connect_timeout: 2s\n  ping_interval: 500ms\n  \
         ping_timeout: 400ms\n  retry_min: 100ms\n  retry_max: 1s\n\
         supervisor: {{ shutdown_timeout: 5s }}\n"
    );
    DaemonLaunch::new(env!("CARGO_BIN_EXE_temu-sync"), port, config)
        .env("TEMU_SYNC_TEST_DB_PASSWORD", password)
        .spawn()
        .expect("daemon starts")
}

async fn everything_it_says(daemon: &DaemonProcess) -> String {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let mut all = daemon.log();
    for path in ["/health", "/status", "/metrics", "/readyz"] {
        if let Ok(r) = http.get(daemon.url(path)).send().await {
            all.push_str(&r.text().await.unwrap_or_default());
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_named_at_once_with_what_to_do_and_never_shown() {
    let cluster = tokio::task::spawn_blocking(|| PgCluster::start(ClusterOptions::default()))
        .await
        .expect("join")
        .expect("a private cluster (needs the PostgreSQL server binaries)");
    let right = format!("right-{:08x}", fastrand::u32(..));
    let wrong = format!("wrong-{:08x}", fastrand::u32(..));
    cluster
        .create_password_role("app", &right)
        .await
        .expect("role");
    cluster
        .execute("postgres", "CREATE DATABASE app_db OWNER app")
        .await
        .expect("database");
    let url = cluster.url("app", "app_db");

    let mut daemon = daemon_with_password(&url, &wrong);
    let started = Instant::now();
    let said = daemon
        .health_until(Duration::from_secs(20), |status, body| {
            status == 503
                && body["checks"]["postgres:connections"][0]["output"]
                    .as_str()
                    .is_some_and(|o| o.contains("password authentication failed"))
        })
        .await;
    let took = started.elapsed();
    let (_, body) = said.unwrap_or_else(|| panic!("/health names it\n{}", daemon.log_tail(20)));
    let output = body["checks"]["postgres:connections"][0]["output"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    eprintln!("/health said after {took:?} (process start included): {output}");
    assert!(
        took < FAST,
        "named at once, not after pool_timeout: {took:?}"
    );
    assert!(
        output.contains("database.password") && output.contains("\"app\""),
        "says which role and what to fix: {output}"
    );
    let log = daemon.log();
    assert!(
        log.contains("password authentication failed"),
        "the log says it too:\n{}",
        daemon.log_tail(20)
    );
    let all = everything_it_says(&daemon).await;
    assert!(!all.contains(&wrong), "the wrong password leaked");
    assert!(!all.contains(&right), "the right password leaked");
    daemon.terminate(Duration::from_secs(20));

    // The same setup with the right password passes: it was the password and nothing else.
    let daemon = daemon_with_password(&url, &right);
    let ok = daemon
        .health_until(Duration::from_secs(30), |status, _| status == 200)
        .await;
    assert!(
        ok.is_some(),
        "the right password connects\n{}",
        daemon.log_tail(20)
    );
    let all = everything_it_says(&daemon).await;
    assert!(!all.contains(&right), "the password leaked");
}
