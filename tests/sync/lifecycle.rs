//! The daemon's process lifecycle mid-sync: SIGTERM cancels cleanly and releases the lease, a run
//! past `task_timeout` is cancelled and the next resumes, SIGKILL and a restart lose nothing, of
//! two daemons one takes over when the other is killed, and SIGHUP never stops the daemon.

use std::time::Duration;

use temu_sync::sim::{FaultConfig, Latency};
use temu_sync::testkit::{DaemonLaunch, TestDatabase};

use crate::sync_common::*;
use crate::{assert_matches_truth, setup, wait_for_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_cancels_cleanly_and_releases_the_lease() {
    let (db, sim) = setup("e2e_sigterm", 2000).await;
    sim.handle.set_faults(FaultConfig {
        latency: Latency::Fixed(Duration::from_millis(150)),
        ..FaultConfig::default()
    });
    let mut opts = options(&db, &sim);
    // One page at a time: the backfill takes seconds, so the SIGTERM lands mid-run.
    opts.extra_sync = "  page_concurrency: 1\n".to_string();
    let mut daemon = Daemon::start(&sim, &opts);
    let client = wait_for_client(&db).await;
    let running = run_in_progress(&client, Duration::from_secs(30)).await;
    assert!(running, "a run is in progress\n{}", daemon.log_tail(30));
    daemon.signal(libc::SIGTERM);
    let code = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(Some(0)), "clean exit\n{}", daemon.log_tail(30));
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'running'), count(*) FILTER (WHERE status = 'cancelled') FROM sync_runs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "no run left running");
    assert!(
        row.get::<_, i64>(1) >= 1,
        "the interrupted run is recorded as cancelled"
    );
    let held = client
        .query_one(
            "SELECT count(*) FROM sync_state WHERE lease_owner IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(held, 0, "leases released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_exceeding_task_timeout_is_cancelled_and_the_next_resumes() {
    let (db, sim) = setup("e2e_timeout", 1500).await;
    sim.handle.set_faults(FaultConfig {
        latency: Latency::Fixed(Duration::from_millis(120)),
        ..FaultConfig::default()
    });
    let mut opts = options(&db, &sim);
    // One page at a time, so the backfill outlasts the 2 s task_timeout (concurrent pages
    // finish it sooner).
    opts.extra_sync = "  task_timeout: 2s\n  page_concurrency: 1\n".to_string();
    let daemon = Daemon::start(&sim, &opts);
    let client = wait_for_client(&db).await;
    let timed_out = eventually(Duration::from_secs(40), || async {
        client
            .query_one(
                "SELECT count(*) FROM sync_runs WHERE stream = 'orders' AND status = 'cancelled' AND error_class = 'task_timeout'",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0) >= 1)
            .unwrap_or(false)
    })
    .await;
    assert!(timed_out, "a run hit task_timeout\n{}", daemon.log_tail(30));
    // Committed chunks stay: the cursor moved, and later runs carry on from it until done.
    sim.handle.set_faults(FaultConfig::none());
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(
        wait_for_complete_round(&client, &sim, t0, Duration::from_secs(90)).await,
        "later runs resumed and completed\n{}",
        daemon.log_tail(30)
    );
    let open = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(open, 0, "no transaction left open");
    assert_matches_truth(&client, &sim, &daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_mid_run_and_restarted_loses_nothing() {
    let (db, sim) = setup("e2e_sigkill", 2000).await;
    sim.handle.set_faults(FaultConfig {
        latency: Latency::Fixed(Duration::from_millis(100)),
        ..FaultConfig::default()
    });
    let opts = options(&db, &sim);
    let mut first = Daemon::start(&sim, &opts);
    let client = wait_for_client(&db).await;
    let running = run_in_progress(&client, Duration::from_secs(30)).await;
    assert!(running, "a run is in progress");
    first.signal(libc::SIGKILL);
    assert!(first.wait_exit(Duration::from_secs(10)).is_some());
    sim.handle.set_faults(FaultConfig::none());

    let second = Daemon::start(&sim, &opts);
    let t_restart = db_now(&client).await;
    assert!(
        wait_for_complete_round(&client, &sim, t_restart, Duration::from_secs(90)).await,
        "the restarted daemon completed a round\n{}",
        second.log_tail(40)
    );
    let abandoned = client
        .query_one(
            "SELECT count(*) FROM sync_runs WHERE status = 'abandoned'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert!(
        abandoned >= 1,
        "the killed daemon's runs are marked abandoned"
    );
    assert_matches_truth(&client, &sim, &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_the_work_and_one_takes_over_from_the_other() {
    let (db, sim) = setup("e2e_two", 1500).await;
    let opts = options(&db, &sim);
    let mut a = Daemon::start(&sim, &opts);
    let b = Daemon::start(&sim, &opts);
    let client = wait_for_client(&db).await;
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    assert!(wait_for_complete_round(&client, &sim, t0, Duration::from_secs(90)).await);

    // Never two runs of the same stream at once: no overlapping run intervals across instances.
    let overlaps = client
        .query_one(
            "SELECT count(*) FROM sync_runs r1 JOIN sync_runs r2 \
             ON r1.shop_id = r2.shop_id AND r1.stream = r2.stream AND r1.id < r2.id \
             AND r1.instance_id <> r2.instance_id \
             AND r2.started_at < coalesce(r1.finished_at, now()) \
             AND r1.started_at < coalesce(r2.finished_at, now()) \
             WHERE r1.status <> 'abandoned' AND r2.status <> 'abandoned'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(overlaps, 0, "two daemons ran the same stream at once");

    // Kill one; the other keeps every stream going within a lease period or two.
    a.signal(libc::SIGKILL);
    assert!(a.wait_exit(Duration::from_secs(10)).is_some());
    let since = db_now(&client).await;
    assert!(
        wait_for_complete_round(&client, &sim, since, Duration::from_secs(60)).await,
        "the surviving daemon took over\n{}",
        b.log_tail(40)
    );
    let instances: i64 = client
        .query_one(
            "SELECT count(DISTINCT instance_id) FROM sync_runs WHERE started_at > $1 AND status = 'succeeded'",
            &[&since],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(instances, 1);
    assert_matches_truth(&client, &sim, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_logged_and_never_stops_the_daemon() {
    const LINE: &str = "reload is not supported yet; restart to apply";
    let db = TestDatabase::reserve("e2e_sighup").expect("test database");
    let mut daemon = DaemonLaunch::database_only(env!("CARGO_BIN_EXE_temu-sync"), &db.url())
        .spawn()
        .expect("start the daemon");
    let answers = |status: u16, _: &serde_json::Value| status == 200 || status == 503;
    let before = daemon.health_until(Duration::from_secs(30), answers).await;
    assert!(before.is_some(), "/health answers");
    for n in 1..=2 {
        daemon.signal(libc::SIGHUP);
        let logged = eventually(Duration::from_secs(10), || {
            let count = daemon.log().matches(LINE).count();
            async move { count >= n }
        })
        .await;
        assert!(logged, "SIGHUP #{n} is logged\n{}", daemon.log_tail(20));
    }
    assert!(daemon.still_running(), "SIGHUP must not stop the daemon");
    let warned = daemon
        .log()
        .lines()
        .filter(|l| l.contains(LINE))
        .all(|l| l.contains("\"WARN\"") || l.contains("\"warn\""));
    assert!(warned, "logged at warn\n{}", daemon.log_tail(20));
    let after = daemon.health_until(Duration::from_secs(10), answers).await;
    assert!(after.is_some(), "/health still answers after two SIGHUPs");
    assert_eq!(
        daemon.terminate(Duration::from_secs(20)),
        Some(Some(0)),
        "SIGTERM still stops it cleanly\n{}",
        daemon.log_tail(20)
    );
}
