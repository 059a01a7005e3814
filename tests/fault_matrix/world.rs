//! One scenario's world: a throwaway database, the simulator, optionally the fault proxy in
//! front of PostgreSQL, and the daemon binary; and the checks every scenario ends with
//! (recovery, data equal to the simulator's ground truth, no leaks, no panic, clean SIGTERM).
//!
//! Owns starting and judging a world; must not inject a fault (the scenario modules do).

use std::time::{Duration, Instant};

use crate::observe::{
    daemon_sessions, duplicates, fd_count, health, time_until, wait_client, what_health_said,
    FD_SLACK, POOL_MAX,
};
use crate::report::Row;
use crate::sync_common::*;
use temu_sync::sim::SimConfig;
use temu_sync::testkit::{FaultMode, FaultProxy, TestDatabase};

pub struct World {
    pub db: TestDatabase,
    pub sim: Sim,
    pub client: tokio_postgres::Client,
    pub http: reqwest::Client,
    pub daemon: Daemon,
    pub opts: DaemonOptions,
    pub fd_base: usize,
    pub proxy: Option<FaultProxy>,
}

/// How a scenario's world differs from the default (1 shop, 300 orders, interval 1 s).
pub struct Setup {
    pub orders: usize,
    pub db_proxy: bool,
    pub env: Vec<(&'static str, &'static str)>,
    pub sim: fn(&mut SimConfig),
    /// Wait for a first complete round before the fault (false: the fault is there from boot).
    pub settle: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            orders: 300,
            db_proxy: false,
            env: Vec::new(),
            sim: |_| {},
            settle: true,
        }
    }
}

impl World {
    pub async fn start(prefix: &str, setup: Setup, row: &mut Row) -> Option<Self> {
        let db = TestDatabase::reserve(prefix).expect("test database name");
        let mut config = SimConfig::demo(fastrand::u64(..), 1, setup.orders);
        config.apps[0].qps = 50;
        (setup.sim)(&mut config);
        let sim = Sim::start(config).await;
        let proxy = if setup.db_proxy {
            Some(
                FaultProxy::start(db.server_addr(), FaultMode::Pass)
                    .await
                    .expect("proxy"),
            )
        } else {
            None
        };
        let mut opts = options(&db, &sim);
        opts.interval = "1s";
        if let Some(p) = &proxy {
            opts.database_url = db.url_via(Some(p.addr()));
        }
        let daemon = Daemon::start_with_env(&sim, &opts, &setup.env);
        let Some(client) = wait_client(&db).await else {
            row.check(false, "daemon did not create/migrate the database");
            return None;
        };
        let http = reqwest::Client::new();
        let mut world = Self {
            db,
            sim,
            client,
            http,
            daemon,
            opts,
            fd_base: 0,
            proxy,
        };
        if setup.settle {
            let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
            if !wait_for_complete_round(&world.client, &world.sim, t0, Duration::from_secs(60))
                .await
            {
                row.check(false, "no first complete round before the fault");
                return None;
            }
        }
        world.fd_base = fd_count(world.daemon.pid());
        Some(world)
    }

    pub async fn health(&self) -> Option<serde_json::Value> {
        health(&self.http, &self.daemon).await
    }

    /// Time until `/health` satisfies `pred`; records what it said.
    pub async fn detect(
        &self,
        row: &mut Row,
        limit: Duration,
        pred: fn(&serde_json::Value) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        let mut said = None;
        let mut t = None;
        while start.elapsed() < limit {
            if let Some(h) = self.health().await {
                if pred(&h) {
                    t = Some(start.elapsed());
                    said = Some(what_health_said(&h));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        row.detect = t;
        if let Some(s) = said {
            row.did = s;
        }
        t
    }

    /// After the fault is removed at `cleared`: wait for recovery, then prove the data, the
    /// absence of leaks and panics, and a clean SIGTERM exit.
    pub async fn finish(mut self, row: &mut Row, cleared: Instant) {
        let alive = self.daemon.still_running();
        row.check(alive, "process exited during the fault");
        let since = db_now(&self.client).await;
        let round =
            wait_for_complete_round(&self.client, &self.sim, since, Duration::from_secs(90)).await;
        let healthy = time_until(Duration::from_secs(30), || async {
            self.health().await.is_some_and(|h| h["status"] == "pass")
        })
        .await;
        row.recover = healthy.map(|_| cleared.elapsed());
        row.check(round, "no complete round after the fault");
        row.check(healthy.is_some(), "/health did not pass again");
        // Changes made after the fault are picked up too.
        self.sim.handle.mutate("shop-0", 25);
        let since = db_now(&self.client).await;
        let round2 =
            wait_for_complete_round(&self.client, &self.sim, since, Duration::from_secs(60)).await;
        row.check(round2, "no complete round after the post-fault mutations");
        self.verify(row).await;
        self.leaks_and_exit(row).await;
    }

    /// The database equals the simulator's ground truth (within 20 s, faults off).
    pub async fn verify(&self, row: &mut Row) {
        // A change made in the same second a run's window closed is picked up by the next run
        // (the window reaches back `lookback`): the database must *become* equal, within a few
        // runs, with the faults off.
        let end = Instant::now() + Duration::from_secs(20);
        let mut diff = compare(&self.client, &self.sim).await;
        while !diff.is_clean() && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(500)).await;
            diff = compare(&self.client, &self.sim).await;
        }
        row.lost = Some(diff.missing.len() + diff.stale.len() + diff.item_mismatch.len());
        let dups = duplicates(&self.client).await + diff.extra.len() as i64;
        row.dups = Some(dups);
        row.check(diff.is_clean(), format!("data differs: {}", diff.summary()));
        row.check(diff.checked > 0, "nothing compared");
    }

    /// No descriptor or session growth, no panic in the log, and SIGTERM exits 0.
    pub async fn leaks_and_exit(&mut self, row: &mut Row) {
        let fds = fd_count(self.daemon.pid());
        row.check(
            fds <= self.fd_base + FD_SLACK,
            format!("fds grew {} -> {fds}", self.fd_base),
        );
        let sessions = daemon_sessions(&self.client, &self.db).await;
        row.check(
            (0..=POOL_MAX).contains(&sessions),
            format!("{sessions} PostgreSQL sessions (pool max {POOL_MAX})"),
        );
        let log = self.daemon.log();
        row.check(!log.contains("panicked"), "a panic in the log");
        self.daemon.signal(libc::SIGTERM);
        let code = self.daemon.wait_exit(Duration::from_secs(20));
        row.check(
            code == Some(Some(0)),
            format!("SIGTERM exit {code:?}, want 0"),
        );
        if !row.failures.is_empty() {
            eprintln!(
                "--- {} failed; daemon log tail:\n{}",
                row.fault,
                self.daemon.log_tail(25)
            );
        }
    }
}
