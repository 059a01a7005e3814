//! The sync actor of one shop × stream: schedules runs, never overlaps them, retries with backoff,
//! parks on fatal errors, and answers triggers.
//!
//! Its mailbox only decides and never awaits another actor: everything it needs (the Temu client,
//! the database, the ledger) was handed to it at construction in [`SyncDeps`]. The run itself is a
//! task tracked by the daemon's [`Shutdown`](crate::shutdown::Shutdown) ([`super::run::run`]) that
//! reports back with [`SyncMsg::RunFinished`], so pings and triggers are answered while a run
//! works. Runs across all streams share one semaphore (`sync.max_concurrent_runs`), so fifty shops
//! starting together cannot exhaust the pool or the API budget. On stop, the run in progress is
//! cancelled and given a bounded time to record itself as cancelled and release its lease.
//!
//! The run task always reports: a panic anywhere in it (the body's is caught inside the run, which
//! records it failed and releases the lease; one outside the body is caught here) comes back as a
//! failed run (`SyncError::Panicked`, retried with backoff, counted in
//! `temu_sync_task_panics_total`), and a task dropped before it reported (aborted) reports as it is
//! dropped — so a stream is never left "running" forever.
//!
//! What happens after a run is decided by [`next_step`] (`policy.rs`), a pure function of the outcome.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::board::{LastRun, StreamState};
use super::deps::SyncDeps;
use super::policy::next_step;
use super::progress::{Progress, ProgressSnapshot};
use super::run::{config_digest, run, ParkRetry, RunBody, RunContext, RunMode, RunOutcome};
use super::streams;
use super::{FailureKind, SyncError};
use crate::config::Stream;
use crate::metrics::{catch_panic, RunResult as RunMetric, TASK_SYNC_RUN};
use crate::temu::TemuShop;

/// Name of the sync actor of `shop` × `stream` in the actor registry.
pub fn actor_name(shop: &str, stream: Stream) -> String {
    format!("sync:{shop}:{}", stream.as_str())
}

/// How often the health check of a stream is refreshed (lag grows without any event).
const HEALTH_REFRESH: Duration = Duration::from_secs(10);
/// Delay before re-checking when the database is not ready yet.
pub const WAIT_FOR_DATABASE: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct SyncActorArgs {
    pub deps: Arc<SyncDeps>,
    /// The shop, resolved once by the Temu client.
    pub shop: TemuShop,
    pub stream: Stream,
    /// The stream's entry of the table (`streams::body`); tests hand in their own.
    pub body: Arc<dyn RunBody>,
    /// Delay before the first run after start (jittered by the caller, so shops spread out).
    pub first_run_after: Duration,
}

impl SyncActorArgs {
    /// The actor of `shop` × `stream` with the stream's entry of the table.
    pub fn new(deps: Arc<SyncDeps>, shop: TemuShop, stream: Stream) -> Self {
        Self {
            deps,
            shop,
            stream,
            body: streams::body(stream),
            // Spread the first runs over a few seconds instead of starting all at once.
            first_run_after: Duration::from_millis(fastrand::u64(200..3000)),
        }
    }
}

/// The answer to a trigger (`POST /sync/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerOutcome {
    Started,
    AlreadyRunning,
}

pub enum SyncMsg {
    Ping(RpcReplyPort<()>),
    /// A scheduled run is due (ignored unless `generation` is the latest timer).
    Tick {
        generation: u64,
    },
    /// Start a run now (operator trigger); also un-parks (in memory and in `sync_state`).
    Trigger(RpcReplyPort<TriggerOutcome>),
    RunFinished {
        outcome: RunOutcome,
        took: Duration,
    },
    RefreshHealth,
}

pub struct SyncActor;

/// The run in progress. Dropping it cancels the run — also when the actor dies by a panic or is
/// killed as hung (ractor skips `post_stop` then), so an orphaned run never races its successor.
struct RunningRun {
    cancel: CancellationToken,
    join: Option<JoinHandle<()>>,
    progress: Arc<Progress>,
}

impl Drop for RunningRun {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub struct SyncState {
    args: SyncActorArgs,
    running: Option<RunningRun>,
    timer_generation: u64,
    consecutive_failures: u32,
    parked: Option<String>,
    /// The stream's pending park-store retry (see `run/park_retry.rs`).
    park_retry: ParkRetry,
}

impl SyncState {
    fn deps(&self) -> &SyncDeps {
        &self.args.deps
    }

    fn shop(&self) -> &str {
        self.args.shop.name()
    }

    fn interval(&self) -> Duration {
        self.args.body.interval(&self.deps().config)
    }

    fn health_name(&self) -> String {
        actor_name(self.shop(), self.args.stream)
    }

    fn update_board(&self, f: impl FnOnce(&mut super::board::EntryUpdate<'_>)) {
        self.deps().board.update(self.shop(), self.args.stream, f);
    }

    fn publish_health(&self) {
        let (d, shop, stream) = (self.deps(), self.shop(), self.args.stream);
        if let Some(lag) = d.board.view(shop, stream).and_then(|v| v.lag_seconds) {
            d.metrics.set_lag(shop, stream.as_str(), lag as f64);
        }
        if let Some(check) = d.board.check(shop, stream, d.config.lag_warn) {
            d.health.set_checks(&self.health_name(), vec![check]);
        }
    }

    fn schedule(&mut self, myself: &ActorRef<SyncMsg>, delay: Duration) {
        self.timer_generation += 1;
        let generation = self.timer_generation;
        let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        self.update_board(|u| {
            u.next_run_at(Some(at));
        });
        myself.send_after(delay, move || SyncMsg::Tick { generation });
    }
}

impl Actor for SyncActor {
    type Msg = SyncMsg;
    type State = SyncState;
    type Arguments = SyncActorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SyncMsg>,
        args: SyncActorArgs,
    ) -> Result<SyncState, ActorProcessingErr> {
        let first = args.first_run_after;
        let park_retry = ParkRetry::new(args.deps.shutdown.child());
        let mut state = SyncState {
            args,
            running: None,
            timer_generation: 0,
            consecutive_failures: 0,
            parked: None,
            park_retry,
        };
        state.update_board(|u| {
            u.state(StreamState::Idle);
        });
        state.schedule(&myself, first);
        myself.send_interval(HEALTH_REFRESH, || SyncMsg::RefreshHealth);
        state.publish_health();
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SyncMsg>,
        state: &mut SyncState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(mut run) = state.running.take() {
            run.cancel.cancel();
            let finished = match run.join.take() {
                Some(join) => tokio::time::timeout(state.deps().stop_timeout, join)
                    .await
                    .is_ok(),
                None => true,
            };
            if !finished {
                tracing::warn!(shop = %state.shop(), stream = state.args.stream.as_str(),
                    "the run did not finish cancelling in time; its lease will expire");
            }
        }
        state.deps().health.remove_checks(&state.health_name());
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SyncMsg>,
        msg: SyncMsg,
        state: &mut SyncState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SyncMsg::Ping(reply) => {
                let _ = reply.send(());
            }
            SyncMsg::RefreshHealth => state.publish_health(),
            SyncMsg::Tick { generation } => {
                if generation == state.timer_generation && state.running.is_none() {
                    // A parked stream's timer is only set for a probed park: the tick is its probe.
                    let mode = match state.parked {
                        None => RunMode::Scheduled,
                        Some(_) => RunMode::Probe,
                    };
                    start_run(&myself, state, mode);
                }
            }
            SyncMsg::Trigger(reply) => {
                if state.running.is_some() {
                    let _ = reply.send(TriggerOutcome::AlreadyRunning);
                } else {
                    if let Some(reason) = state.parked.take() {
                        tracing::info!(shop = %state.shop(), stream = state.args.stream.as_str(),
                            %reason, "un-parked by a trigger");
                        state.update_board(|u| {
                            u.parked(None);
                        });
                    }
                    state.consecutive_failures = 0;
                    start_run(&myself, state, RunMode::Trigger);
                    let _ = reply.send(TriggerOutcome::Started);
                }
            }
            SyncMsg::RunFinished { outcome, took } => {
                let progress = state
                    .running
                    .take()
                    .map(|r| r.progress.snapshot())
                    .unwrap_or_default();
                finished(&myself, state, outcome, took, progress);
                state.publish_health();
            }
        }
        Ok(())
    }
}

/// Starts a run task, or reschedules when the database is not ready. `mode`: why (a trigger
/// clears a persisted park before the run; a probe runs over a probed one).
fn start_run(myself: &ActorRef<SyncMsg>, state: &mut SyncState, mode: RunMode) {
    let deps = state.args.deps.clone();
    if deps.health.readiness().is_err() {
        state.update_board(|u| {
            u.state(StreamState::WaitingForDatabase);
        });
        state.schedule(myself, WAIT_FOR_DATABASE);
        return;
    }
    let ctx = RunContext {
        shop: state.args.shop.clone(),
        stream: state.args.stream,
        config: deps.config.clone(),
        db: deps.db.clone(),
        client: deps.temu.clone(),
        ledger: deps.ledger.clone(),
        body: state.args.body.clone(),
        db_deadline: deps.db.config().statement_timeout * 2,
        mode,
        config_digest: config_digest(
            &state.args.shop,
            state.args.stream,
            &deps.config,
            deps.db.config(),
        ),
        park_retry: state.park_retry.clone(),
    };
    let progress = Arc::new(Progress::default());
    state.update_board(|u| {
        u.running(progress.clone()).next_run_at(None);
    });
    let cancel = deps.shutdown.child();
    let (me, task_cancel, task_progress) = (myself.clone(), cancel.clone(), progress.clone());
    let shutdown = deps.shutdown.clone();
    let join = shutdown.spawn(async move {
        let report = Report::new(me);
        let attempt = catch_panic(async move {
            // Wait for a run slot; a stop while waiting ends the wait.
            let permit = tokio::select! {
                p = deps.run_slots.clone().acquire_owned() => p.ok(),
                _ = task_cancel.cancelled() => None,
            };
            match permit {
                Some(_permit) => run(&ctx, task_cancel, task_progress).await,
                None => RunOutcome::Failed {
                    error: SyncError::Cancelled("stopped before a run slot was free"),
                    cursor: None,
                },
            }
        });
        // A panic outside the body (the body's own is recorded by the run): the lease, if taken,
        // is this daemon's and is taken again by the retry, or expires within `lease_ttl`.
        let outcome = attempt.await.unwrap_or_else(|message| RunOutcome::Failed {
            error: SyncError::Panicked {
                task: TASK_SYNC_RUN,
                message,
            },
            cursor: None,
        });
        report.send(outcome);
    });
    state.running = Some(RunningRun {
        cancel,
        join: Some(join),
        progress,
    });
}

/// Sends the run task's one `RunFinished`: with its outcome, or — when the task is dropped before
/// it reported (aborted) — as a failure, so the actor never waits for a report that cannot come.
struct Report {
    actor: Option<ActorRef<SyncMsg>>,
    started: std::time::Instant,
}

impl Report {
    fn new(actor: ActorRef<SyncMsg>) -> Self {
        Self {
            actor: Some(actor),
            started: std::time::Instant::now(),
        }
    }

    fn send(mut self, outcome: RunOutcome) {
        self.deliver(outcome);
    }

    fn deliver(&mut self, outcome: RunOutcome) {
        if let Some(actor) = self.actor.take() {
            let took = self.started.elapsed();
            let _ = actor.send_message(SyncMsg::RunFinished { outcome, took });
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.deliver(RunOutcome::Failed {
            error: SyncError::Panicked {
                task: TASK_SYNC_RUN,
                message: "the run task ended without reporting (aborted)".to_string(),
            },
            cursor: None,
        });
    }
}

/// Applies a finished run: metrics, the board, the next timer (or parking).
fn finished(
    myself: &ActorRef<SyncMsg>,
    state: &mut SyncState,
    outcome: RunOutcome,
    took: Duration,
    progress: ProgressSnapshot,
) {
    record_metric(state, &outcome, took, progress);
    let step = next_step(
        &outcome,
        &state.deps().config,
        state.interval(),
        state.consecutive_failures,
    );
    state.consecutive_failures = step.consecutive_failures;
    let last = |outcome: &'static str| LastRun {
        outcome,
        finished_at: Utc::now(),
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        pages: progress.pages,
        inserted: progress.inserted,
        updated: progress.updated,
    };
    let next_state = step.state;
    match outcome {
        RunOutcome::Succeeded { cursor } => {
            if let Some(reason) = state.parked.take() {
                tracing::info!(shop = %state.shop(), stream = state.args.stream.as_str(), %reason,
                    "un-parked: the probe run succeeded (the cause has cleared)");
                state.update_board(|u| {
                    u.parked(None);
                });
            }
            state.update_board(|u| {
                u.finished(last("succeeded"))
                    .cursor(cursor)
                    .success(Utc::now())
                    .state(next_state);
            });
        }
        RunOutcome::HeldElsewhere => state.update_board(|u| {
            u.state(next_state);
        }),
        RunOutcome::Parked(park) => {
            let reason = park.reason;
            if park.probe {
                tracing::warn!(shop = %state.shop(), stream = state.args.stream.as_str(), %reason,
                    "stream parked by a permanent database error (recorded in sync_state): probed again every sync.retry_backoff_max, or POST /sync");
            } else {
                tracing::warn!(shop = %state.shop(), stream = state.args.stream.as_str(), %reason,
                    "stream parked (recorded in sync_state, perhaps before a restart): no run until POST /sync un-parks it or its configuration changes");
            }
            state.parked = Some(reason.clone());
            state.update_board(|u| {
                u.state(next_state).parked(Some(reason)).next_run_at(None);
            });
        }
        RunOutcome::Failed { error, cursor } => {
            if let SyncError::Panicked { task, message } = &error {
                tracing::error!(shop = %state.shop(), stream = state.args.stream.as_str(), task = *task, panic = %message,
                    "a sync run panicked (a bug: please report it with this log); recorded failed, retrying with backoff");
                state.deps().metrics.record_task_panic(task);
            }
            let (class, message) = (error.class(), error.to_string());
            let label = match error.kind() {
                FailureKind::Cancelled => "cancelled",
                _ => "failed",
            };
            if next_state == StreamState::Parked {
                let probe = if step.run_in.is_some() {
                    "; probed again every sync.retry_backoff_max, un-parked when a run succeeds"
                } else {
                    ""
                };
                tracing::error!(shop = %state.shop(), stream = state.args.stream.as_str(), error_class = class, error = %message,
                    "stream parked: this needs the operator (fix the cause, then POST /sync to un-park; the park is kept across restarts; a configuration change of the stream clears it{probe})");
                state.parked = Some(message.clone());
            }
            let parked = state.parked.clone();
            state.update_board(|u| {
                u.finished(last(label))
                    .cursor(cursor)
                    .error(class, message)
                    .state(next_state);
                if parked.is_some() {
                    u.parked(parked).next_run_at(None);
                }
            });
        }
    }
    if let Some(delay) = step.run_in {
        state.schedule(myself, delay);
    }
}

fn record_metric(
    state: &SyncState,
    outcome: &RunOutcome,
    took: Duration,
    progress: ProgressSnapshot,
) {
    let metric = match outcome {
        RunOutcome::Succeeded { .. } => RunMetric::Success,
        RunOutcome::HeldElsewhere | RunOutcome::Parked(_) => return,
        RunOutcome::Failed { error, .. } => match error {
            SyncError::TaskTimeout(_) => RunMetric::Timeout,
            e if e.kind() == FailureKind::Cancelled => RunMetric::Cancelled,
            _ => RunMetric::Failure,
        },
    };
    let stream = state.args.stream.as_str();
    state.deps().metrics.record_run(
        state.shop(),
        stream,
        metric,
        took,
        progress.pages,
        progress.inserted,
        progress.updated,
    );
}
