//! The scheduler tests' world: a scripted stream body, the sync actor over the in-memory
//! ledger on paused time, and what the tests read off it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use ractor::{Actor, ActorRef};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::Instant;

use temu_sync::config::{
    AppConfig, DatabaseConfig, Region, ShopConfig, Stream, SyncConfig, SyncIntervals, TemuConfig,
};
use temu_sync::db::{Database, DbError};
use temu_sync::health::{Check, Health};
use temu_sync::metrics::Metrics;
use temu_sync::shutdown::Shutdown;
use temu_sync::sync::run::{RunBody, Work};
use temu_sync::sync::streams::WindowKind;
use temu_sync::sync::{
    StreamState, StreamView, SyncActor, SyncActorArgs, SyncBoard, SyncDeps, SyncError, SyncMsg,
    TriggerOutcome,
};
use temu_sync::temu::{TemuClient, TemuError};
use temu_sync::testkit::MemoryLedger;

pub(super) const SHOP: &str = "shop-a";
pub(super) const INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Longer than any wait a test expects to end; on paused time it costs nothing.
pub(super) const NEVER: Duration = Duration::from_secs(100 * 3600);

/// What the scripted body does on one run.
pub(super) enum Step {
    Succeed,
    /// A retryable failure (a record that could not be stored).
    FailRetryable,
    /// A fatal API error (a permission problem): the stream must park.
    FailFatal,
    /// A permanent database error (a missing privilege): parks, and is probed.
    FailDbPermanent,
    /// Wait until released.
    Block(Arc<Notify>),
    /// Panic inside the body (a bug in a stream's code).
    Panic,
}

/// A stream body that follows a script and reports when each run reached it.
pub(super) struct Scripted {
    pub(super) script: Mutex<VecDeque<Step>>,
    /// What it does once the script is used up.
    pub(super) then: fn() -> Step,
    pub(super) reached: mpsc::UnboundedSender<Instant>,
}

impl RunBody for Scripted {
    fn window_kind(&self) -> WindowKind {
        WindowKind::UpdateTime
    }

    fn interval(&self, config: &SyncConfig) -> Duration {
        config.intervals.orders
    }

    fn sync<'a>(&'a self, _work: Work<'a>) -> BoxFuture<'a, Result<(), SyncError>> {
        let _ = self.reached.send(Instant::now());
        let step = self.script.lock().pop_front().unwrap_or_else(self.then);
        Box::pin(async move {
            match step {
                Step::Succeed => Ok(()),
                Step::FailRetryable => Err(SyncError::Record("scripted failure".into())),
                Step::FailFatal => Err(SyncError::Temu(TemuError::Api {
                    api: "bg.order.list.v2.get".into(),
                    code: 3_000_024,
                    message: "scripted: no permission".into(),
                    request_id: None,
                })),
                Step::FailDbPermanent => Err(SyncError::Db(DbError::Rejected {
                    sqlstate: "42501".into(),
                    message: "permission denied for table orders".into(),
                })),
                Step::Block(release) => {
                    release.notified().await;
                    Ok(())
                }
                Step::Panic => panic!("scripted panic in the body"),
            }
        })
    }
}

pub(super) fn config() -> SyncConfig {
    SyncConfig {
        max_retries: 3,
        retry_backoff_min: Duration::from_secs(30),
        retry_backoff_max: Duration::from_secs(600),
        lease_ttl: Duration::from_secs(60),
        intervals: SyncIntervals {
            orders: INTERVAL,
            ..SyncIntervals::default()
        },
        ..SyncConfig::default()
    }
}

pub(super) struct Harness {
    pub(super) actor: ActorRef<SyncMsg>,
    pub(super) board: SyncBoard,
    pub(super) health: Health,
    pub(super) metrics: Metrics,
    pub(super) ledger: Arc<MemoryLedger>,
    pub(super) reached: mpsc::UnboundedReceiver<Instant>,
    pub(super) started: Instant,
}

impl Harness {
    pub(super) async fn start(script: Vec<Step>, then: fn() -> Step, ledger: MemoryLedger) -> Self {
        let ledger = Arc::new(ledger);
        let health = Health::new("test");
        health.update_db(|db| {
            db.reachable = true;
            db.migrations_applied = true;
        });
        let board = SyncBoard::default();
        let metrics = Metrics::new();
        // Never called: the scripted body does not touch the API.
        let temu = TemuClient::new(&TemuConfig::default(), &[app()], &[shop()]).expect("client");
        let deps = Arc::new(SyncDeps {
            config: config(),
            // Never connected: the scripted body and the in-memory ledger do not use it.
            db: Database::new(DatabaseConfig::default()).expect("default database config"),
            health: health.clone(),
            board: board.clone(),
            metrics: metrics.clone(),
            run_slots: Arc::new(Semaphore::new(1)),
            temu: temu.clone(),
            ledger: ledger.clone(),
            stop_timeout: Duration::from_secs(5),
            shutdown: Shutdown::new(),
        });
        let (tx, reached) = mpsc::unbounded_channel();
        let body = Arc::new(Scripted {
            script: Mutex::new(script.into()),
            then,
            reached: tx,
        });
        let mut args = SyncActorArgs::new(deps, temu.shops()[0].clone(), Stream::Orders);
        args.body = body;
        args.first_run_after = Duration::from_secs(1);
        let started = Instant::now();
        let (actor, _join) = Actor::spawn(None, SyncActor, args)
            .await
            .expect("spawn the sync actor");
        Self {
            actor,
            board,
            health,
            metrics,
            ledger,
            reached,
            started,
        }
    }

    /// When the next run reached the body (`None`: no run within `limit`).
    pub(super) async fn next_run(&mut self, limit: Duration) -> Option<Instant> {
        tokio::time::timeout(limit, self.reached.recv())
            .await
            .ok()
            .flatten()
    }

    /// The gaps between the next `n` runs and the run before each.
    pub(super) async fn gaps(&mut self, mut last: Instant, n: usize) -> Vec<Duration> {
        let mut gaps = Vec::new();
        for _ in 0..n {
            let at = self.next_run(NEVER).await.expect("another run");
            gaps.push(at - last);
            last = at;
        }
        gaps
    }

    /// Lets the actor handle what is already in its mailbox (the run's report).
    pub(super) async fn settle(&self) {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    pub(super) fn state(&self) -> StreamState {
        self.board
            .view(SHOP, Stream::Orders)
            .expect("the stream is on the board")
            .state
    }

    pub(super) fn view(&self) -> StreamView {
        self.board
            .view(SHOP, Stream::Orders)
            .expect("the stream is on the board")
    }

    /// The stream's `/health` check.
    pub(super) fn check(&self) -> Check {
        let report = self.health.report();
        let checks = report
            .checks
            .get(&format!("sync:{SHOP}:orders"))
            .expect("the stream has a health check");
        checks[0].clone()
    }

    /// `temu_sync_task_panics_total{task}` as `/metrics` shows it.
    pub(super) fn panics_of(&self, task: &str) -> Option<f64> {
        let text = self.metrics.render(&self.health);
        let prefix = format!("temu_sync_task_panics_total{{task=\"{task}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    pub(super) async fn trigger(&self) -> TriggerOutcome {
        match ractor::call!(self.actor, SyncMsg::Trigger) {
            Ok(outcome) => outcome,
            Err(e) => panic!("trigger not answered: {e}"),
        }
    }
}

pub(super) fn app() -> AppConfig {
    AppConfig {
        name: "app".into(),
        app_key: "app-key-for-tests".into(),
        app_secret: "app-secret-for-tests".into(),
        qps: 20,
    }
}

pub(super) fn shop() -> ShopConfig {
    ShopConfig {
        name: SHOP.into(),
        region: Region::Us,
        app: "app".into(),
        access_token: "token-for-tests".into(),
        base_url: None,
        streams: vec![Stream::Orders],
    }
}

pub(super) fn within(d: Duration, low: Duration, high: Duration) -> bool {
    d >= low && d <= high
}
