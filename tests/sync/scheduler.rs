//! The sync actor's state machine, in process on paused tokio time: retry with backoff, park and
//! un-park, reschedule at the interval, lease held elsewhere, triggers. The run protocol is the
//! real one (`sync::run`), over the test kit's in-memory ledger; the stream body is scripted.
//! Each test fails when its behaviour is broken; none waits in real time.

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
use temu_sync::db::Database;
use temu_sync::health::Health;
use temu_sync::metrics::Metrics;
use temu_sync::shutdown::Shutdown;
use temu_sync::store::RunStatus;
use temu_sync::sync::run::{RunBody, Work};
use temu_sync::sync::streams::WindowKind;
use temu_sync::sync::{
    StreamState, SyncActor, SyncActorArgs, SyncBoard, SyncDeps, SyncError, SyncMsg, TriggerOutcome,
};
use temu_sync::temu::{TemuClient, TemuError};
use temu_sync::testkit::MemoryLedger;

const SHOP: &str = "shop-a";
const INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Longer than any wait a test expects to end; on paused time it costs nothing.
const NEVER: Duration = Duration::from_secs(100 * 3600);

/// What the scripted body does on one run.
enum Step {
    Succeed,
    /// A retryable failure (a record that could not be stored).
    FailRetryable,
    /// A fatal API error (a permission problem): the stream must park.
    FailFatal,
    /// Wait until released.
    Block(Arc<Notify>),
}

/// A stream body that follows a script and reports when each run reached it.
struct Scripted {
    script: Mutex<VecDeque<Step>>,
    /// What it does once the script is used up.
    then: fn() -> Step,
    reached: mpsc::UnboundedSender<Instant>,
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
                Step::Block(release) => {
                    release.notified().await;
                    Ok(())
                }
            }
        })
    }
}

fn config() -> SyncConfig {
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

struct Harness {
    actor: ActorRef<SyncMsg>,
    board: SyncBoard,
    ledger: Arc<MemoryLedger>,
    reached: mpsc::UnboundedReceiver<Instant>,
    started: Instant,
}

impl Harness {
    async fn start(script: Vec<Step>, then: fn() -> Step, ledger: MemoryLedger) -> Self {
        let ledger = Arc::new(ledger);
        let health = Health::new("test");
        health.update_db(|db| {
            db.reachable = true;
            db.migrations_applied = true;
        });
        let board = SyncBoard::default();
        // Never called: the scripted body does not touch the API.
        let temu = TemuClient::new(&TemuConfig::default(), &[app()], &[shop()]).expect("client");
        let deps = Arc::new(SyncDeps {
            config: config(),
            // Never connected: the scripted body and the in-memory ledger do not use it.
            db: Database::new(DatabaseConfig::default()).expect("default database config"),
            health,
            board: board.clone(),
            metrics: Metrics::new(),
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
            ledger,
            reached,
            started,
        }
    }

    /// When the next run reached the body (`None`: no run within `limit`).
    async fn next_run(&mut self, limit: Duration) -> Option<Instant> {
        tokio::time::timeout(limit, self.reached.recv())
            .await
            .ok()
            .flatten()
    }

    /// The gaps between the next `n` runs and the run before each.
    async fn gaps(&mut self, mut last: Instant, n: usize) -> Vec<Duration> {
        let mut gaps = Vec::new();
        for _ in 0..n {
            let at = self.next_run(NEVER).await.expect("another run");
            gaps.push(at - last);
            last = at;
        }
        gaps
    }

    /// Lets the actor handle what is already in its mailbox (the run's report).
    async fn settle(&self) {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    fn state(&self) -> StreamState {
        self.board
            .view(SHOP, Stream::Orders)
            .expect("the stream is on the board")
            .state
    }

    async fn trigger(&self) -> TriggerOutcome {
        match ractor::call!(self.actor, SyncMsg::Trigger) {
            Ok(outcome) => outcome,
            Err(e) => panic!("trigger not answered: {e}"),
        }
    }
}

fn app() -> AppConfig {
    AppConfig {
        name: "app".into(),
        app_key: "app-key-for-tests".into(),
        app_secret: "app-secret-for-tests".into(),
        qps: 20,
    }
}

fn shop() -> ShopConfig {
    ShopConfig {
        name: SHOP.into(),
        region: Region::Us,
        app: "app".into(),
        access_token: "token-for-tests".into(),
        base_url: None,
        streams: vec![Stream::Orders],
    }
}

fn within(d: Duration, low: Duration, high: Duration) -> bool {
    d >= low && d <= high
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_back_off_exponentially_then_fall_back_to_the_interval() {
    let mut h = Harness::start(vec![], || Step::FailRetryable, MemoryLedger::new("me")).await;
    let first = h.next_run(NEVER).await.expect("first run");
    assert!(within(
        first - h.started,
        Duration::from_secs(1),
        Duration::from_secs(2)
    ));
    h.settle().await;
    assert_eq!(h.state(), StreamState::Retrying);
    // Backoff 30 s · 2^(n-1), jittered into [d/2, d], for the 3 retries; then the interval ± 10 %.
    let gaps = h.gaps(first, 4).await;
    let s = Duration::from_secs;
    assert!(within(gaps[0], s(15), s(30)), "{gaps:?}");
    assert!(within(gaps[1], s(30), s(60)), "{gaps:?}");
    assert!(within(gaps[2], s(60), s(120)), "{gaps:?}");
    assert!(
        within(gaps[3], INTERVAL * 9 / 10, INTERVAL * 11 / 10),
        "{gaps:?}"
    );
    h.settle().await;
    // The fifth failure starts a new streak: backoff again.
    assert_eq!(h.state(), StreamState::Retrying);
    let runs = h.ledger.runs();
    assert_eq!(runs.len(), 5);
    assert!(runs
        .iter()
        .all(|r| r.status == RunStatus::Failed && r.class == Some("record")));
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_parks_the_stream_until_a_trigger() {
    let script = vec![Step::FailFatal];
    let mut h = Harness::start(script, || Step::Succeed, MemoryLedger::new("me")).await;
    h.next_run(NEVER).await.expect("first run");
    h.settle().await;
    assert_eq!(h.state(), StreamState::Parked);
    let reason = h
        .ledger
        .parked(SHOP, Stream::Orders)
        .expect("parked in the ledger");
    assert!(reason.contains("3000024"), "{reason}");
    let view = h.board.view(SHOP, Stream::Orders).expect("on the board");
    assert!(
        view.next_run_at.is_none(),
        "a parked stream has no next run"
    );
    // Ten intervals later: still no run.
    assert_eq!(
        h.next_run(INTERVAL * 10).await,
        None,
        "a parked stream must not run"
    );

    assert_eq!(h.trigger().await, TriggerOutcome::Started);
    h.next_run(Duration::from_secs(1))
        .await
        .expect("the trigger starts a run at once");
    h.settle().await;
    assert_eq!(h.state(), StreamState::Idle);
    assert_eq!(
        h.ledger.parked(SHOP, Stream::Orders),
        None,
        "un-parked by success"
    );
}

#[tokio::test(start_paused = true)]
async fn success_reschedules_at_the_interval_with_jitter() {
    let mut h = Harness::start(vec![], || Step::Succeed, MemoryLedger::new("me")).await;
    let first = h.next_run(NEVER).await.expect("first run");
    h.settle().await;
    assert_eq!(h.state(), StreamState::Idle);
    let gaps = h.gaps(first, 3).await;
    for gap in &gaps {
        assert!(
            within(*gap, INTERVAL * 9 / 10, INTERVAL * 11 / 10),
            "{gaps:?}"
        );
    }
    let runs = h.ledger.runs();
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
    assert_eq!(
        h.ledger.lease_owner(SHOP, Stream::Orders),
        None,
        "released after each run"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_held_elsewhere_is_checked_within_a_lease_period_and_taken_over_once_expired() {
    let ledger = MemoryLedger::new("me");
    let held_for = Duration::from_secs(150);
    ledger.hold_elsewhere(SHOP, Stream::Orders, "other-daemon", held_for);
    let mut h = Harness::start(vec![], || Step::Succeed, ledger).await;
    // The first ticks find the lease held: nothing runs, nothing is recorded.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.state(), StreamState::HeldElsewhere);
    assert!(h.ledger.runs().is_empty());
    // Checked again every lease_ttl (60 s), so taken over at most one lease period after expiry.
    let ran = h.next_run(NEVER).await.expect("taken over");
    let after = ran - h.started;
    assert!(
        within(after, held_for, held_for + Duration::from_secs(62)),
        "taken over after {after:?}"
    );
    h.settle().await;
    let runs = h.ledger.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].owner, "me");
    assert_eq!(runs[0].status, RunStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_trigger_while_a_run_works_answers_already_running() {
    let release = Arc::new(Notify::new());
    let script = vec![Step::Block(release.clone())];
    let mut h = Harness::start(script, || Step::Succeed, MemoryLedger::new("me")).await;
    h.next_run(NEVER).await.expect("first run");
    assert_eq!(h.state(), StreamState::Running);
    assert_eq!(h.trigger().await, TriggerOutcome::AlreadyRunning);
    release.notify_one();
    h.settle().await;
    assert_eq!(h.state(), StreamState::Idle);
    assert_eq!(h.trigger().await, TriggerOutcome::Started);
    h.next_run(Duration::from_secs(1))
        .await
        .expect("a run right after the trigger");
    h.settle().await;
    assert_eq!(h.ledger.runs().len(), 2);
}
