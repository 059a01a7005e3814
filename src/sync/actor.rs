//! The sync actor of one shop × stream: schedules runs, never overlaps them, retries with backoff,
//! parks on fatal errors, and answers triggers.
//!
//! Its mailbox only decides; the run itself is a spawned task ([`super::run::run`]) that reports
//! back with [`SyncMsg::RunFinished`], so pings and triggers are answered while a run works.
//! Runs across all streams share one semaphore (`sync.max_concurrent_runs`), so fifty shops
//! starting together cannot exhaust the pool or the API budget. On stop, the run in progress is
//! cancelled and given a bounded time to record itself as cancelled and release its lease.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::board::{LastRun, StreamState, SyncBoard};
use super::progress::Progress;
use super::run::{run, RunContext, RunOutcome};
use super::{FailureKind, SyncError};
use crate::config::{ShopConfig, Stream, SyncConfig};
use crate::db::Database;
use crate::health::Health;
use crate::metrics::{Metrics, RunResult as RunMetric};
use crate::supervisor::Backoff;
use crate::temu::TemuClient;

/// Name of the sync actor of `shop` × `stream` in the actor registry.
pub fn actor_name(shop: &str, stream: Stream) -> String {
    format!("sync:{shop}:{}", stream.as_str())
}

/// How often the health check of a stream is refreshed (lag grows without any event).
const HEALTH_REFRESH: Duration = Duration::from_secs(10);
/// Delay before re-checking when the database is not ready yet.
const WAIT_FOR_DATABASE: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct SyncActorArgs {
    pub shop: ShopConfig,
    pub stream: Stream,
    pub config: SyncConfig,
    pub db: Database,
    pub health: Health,
    pub board: SyncBoard,
    /// Shared by every sync actor: runs in progress at once.
    pub run_slots: Arc<Semaphore>,
    pub instance_id: String,
    /// The one Temu client of the process (the Temu actor restarting does not replace it).
    pub temu: TemuClient,
    /// Deadline of calls to other actors.
    pub call_timeout: Duration,
    /// How long a stopping actor waits for its run to record itself cancelled.
    pub stop_timeout: Duration,
    /// Delay before the first run after start (jittered by the caller, so shops spread out).
    pub first_run_after: Duration,
    pub metrics: Metrics,
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
    /// Start a run now (operator trigger); also un-parks.
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
    progress: Option<Arc<Progress>>,
}

impl SyncState {
    fn interval(&self) -> Duration {
        let i = &self.args.config.intervals;
        match self.args.stream {
            Stream::Orders => i.orders,
            Stream::Products => i.products,
            Stream::Aftersales => i.aftersales,
        }
    }

    fn health_name(&self) -> String {
        format!("sync:{}:{}", self.args.shop.name, self.args.stream.as_str())
    }

    fn publish_health(&self) {
        if let Some(view) = self.args.board.view(&self.args.shop.name, self.args.stream) {
            if let Some(lag) = view.lag_seconds {
                self.args.metrics.set_lag(
                    &self.args.shop.name,
                    self.args.stream.as_str(),
                    lag as f64,
                );
            }
        }
        if let Some(check) = self.args.board.check(
            &self.args.shop.name,
            self.args.stream,
            self.args.config.lag_warn,
        ) {
            self.args
                .health
                .set_checks(&self.health_name(), vec![check]);
        }
    }

    fn schedule(&mut self, myself: &ActorRef<SyncMsg>, delay: Duration) {
        self.timer_generation += 1;
        let generation = self.timer_generation;
        let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        self.args
            .board
            .update(&self.args.shop.name, self.args.stream, |u| {
                u.next_run_at(Some(at));
            });
        myself.send_after(delay, move || SyncMsg::Tick { generation });
    }
}

/// `interval` ± 10 %, so streams that started together drift apart.
fn jittered(interval: Duration) -> Duration {
    let tenth = interval / 10;
    interval - tenth + tenth.mul_f64(2.0 * fastrand::f64())
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
        args.board.update(&args.shop.name, args.stream, |u| {
            u.state(StreamState::Idle);
        });
        let first = args.first_run_after;
        let mut state = SyncState {
            args,
            running: None,
            timer_generation: 0,
            consecutive_failures: 0,
            parked: None,
            progress: None,
        };
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
                Some(join) => tokio::time::timeout(state.args.stop_timeout, join)
                    .await
                    .is_ok(),
                None => true,
            };
            if !finished {
                tracing::warn!(shop = %state.args.shop.name, stream = state.args.stream.as_str(),
                    "the run did not finish cancelling in time; its lease will expire");
            }
        }
        state.args.health.remove_checks(&state.health_name());
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
                if generation == state.timer_generation
                    && state.running.is_none()
                    && state.parked.is_none()
                {
                    start_run(&myself, state).await;
                }
            }
            SyncMsg::Trigger(reply) => {
                if state.running.is_some() {
                    let _ = reply.send(TriggerOutcome::AlreadyRunning);
                } else {
                    if let Some(reason) = state.parked.take() {
                        tracing::info!(shop = %state.args.shop.name, stream = state.args.stream.as_str(),
                            %reason, "un-parked by a trigger");
                    }
                    state.consecutive_failures = 0;
                    start_run(&myself, state).await;
                    let _ = reply.send(TriggerOutcome::Started);
                }
            }
            SyncMsg::RunFinished { outcome, took } => {
                state.running = None;
                let progress = state
                    .progress
                    .take()
                    .map(|p| p.snapshot())
                    .unwrap_or_default();
                finished(&myself, state, outcome, took, progress);
                state.publish_health();
            }
        }
        Ok(())
    }
}

/// Starts a run task, or reschedules when the database or the Temu client is not ready.
async fn start_run(myself: &ActorRef<SyncMsg>, state: &mut SyncState) {
    let (shop, stream) = (state.args.shop.name.clone(), state.args.stream);
    if state.args.health.readiness().is_err() {
        state.args.board.update(&shop, stream, |u| {
            u.state(StreamState::WaitingForDatabase);
        });
        state.schedule(myself, WAIT_FOR_DATABASE);
        return;
    }
    let Some(temu_shop) = state.args.temu.shop(&shop) else {
        let e = SyncError::ClientUnavailable(format!("shop {shop:?} is not in the Temu client"));
        tracing::warn!(shop = %shop, stream = stream.as_str(), error = %e, "cannot start a run yet");
        state.schedule(myself, WAIT_FOR_DATABASE);
        return;
    };
    let ctx = RunContext {
        shop: shop.clone(),
        region: temu_shop.region_name(),
        stream,
        config: state.args.config.clone(),
        db: state.args.db.clone(),
        client: state.args.temu.clone(),
        temu_shop,
        owner: state.args.instance_id.clone(),
        db_deadline: state.args.db.config().statement_timeout * 2,
    };
    let progress = Arc::new(Progress::default());
    state.progress = Some(progress.clone());
    state.args.board.update(&shop, stream, |u| {
        u.running(progress.clone()).next_run_at(None);
    });
    let cancel = CancellationToken::new();
    let slots = state.args.run_slots.clone();
    let me = myself.clone();
    let task_cancel = cancel.clone();
    let join = tokio::spawn(async move {
        let started = std::time::Instant::now();
        // Wait for a run slot; a stop while waiting ends the wait.
        let permit = tokio::select! {
            p = slots.acquire_owned() => p.ok(),
            _ = task_cancel.cancelled() => None,
        };
        let outcome = match permit {
            Some(_permit) => run(&ctx, task_cancel, progress).await,
            None => RunOutcome::Failed {
                error: SyncError::Cancelled("stopped before a run slot was free"),
                cursor: None,
            },
        };
        let _ = me.send_message(SyncMsg::RunFinished {
            outcome,
            took: started.elapsed(),
        });
    });
    state.running = Some(RunningRun {
        cancel,
        join: Some(join),
    });
}

fn finished(
    myself: &ActorRef<SyncMsg>,
    state: &mut SyncState,
    outcome: RunOutcome,
    took: Duration,
    progress: super::progress::ProgressSnapshot,
) {
    let (shop, stream) = (state.args.shop.name.clone(), state.args.stream);
    let metric = match &outcome {
        RunOutcome::Succeeded { .. } => Some(RunMetric::Success),
        RunOutcome::HeldElsewhere => None,
        RunOutcome::Failed { error, .. } => Some(match error {
            SyncError::TaskTimeout(_) => RunMetric::Timeout,
            e if e.kind() == FailureKind::Cancelled => RunMetric::Cancelled,
            _ => RunMetric::Failure,
        }),
    };
    if let Some(metric) = metric {
        state.args.metrics.record_run(
            &shop,
            stream.as_str(),
            metric,
            took,
            progress.pages,
            progress.inserted,
            progress.updated,
        );
    }
    let last = |outcome: &'static str| LastRun {
        outcome,
        finished_at: Utc::now(),
        duration_ms: took.as_millis() as u64,
        pages: progress.pages,
        inserted: progress.inserted,
        updated: progress.updated,
    };
    match outcome {
        RunOutcome::Succeeded { cursor } => {
            state.consecutive_failures = 0;
            state.args.board.update(&shop, stream, |u| {
                u.finished(last("succeeded"))
                    .cursor(cursor)
                    .success(Utc::now())
                    .state(StreamState::Idle);
            });
            let next = jittered(state.interval());
            state.schedule(myself, next);
        }
        RunOutcome::HeldElsewhere => {
            // Check again within one lease period, so a dead owner's stream is taken over in time.
            state.args.board.update(&shop, stream, |u| {
                u.state(StreamState::HeldElsewhere);
            });
            let next = state.args.config.lease_ttl.min(state.interval());
            state.schedule(myself, next);
        }
        RunOutcome::Failed { error, cursor } => {
            let class = error.class();
            let message = error.to_string();
            match error.kind() {
                FailureKind::Park => {
                    tracing::error!(shop = %shop, stream = stream.as_str(), error_class = class, error = %message,
                        "stream parked: this needs the operator (fix the configuration, then restart or POST /sync)");
                    state.parked = Some(message.clone());
                    state.args.board.update(&shop, stream, |u| {
                        u.finished(last("failed"))
                            .cursor(cursor)
                            .error(class, message.clone())
                            .parked(Some(message))
                            .state(StreamState::Parked)
                            .next_run_at(None);
                    });
                }
                FailureKind::Cancelled => {
                    state.args.board.update(&shop, stream, |u| {
                        u.finished(last("cancelled"))
                            .cursor(cursor)
                            .error(class, message)
                            .state(StreamState::Idle);
                    });
                    let next = jittered(state.interval());
                    state.schedule(myself, next);
                }
                FailureKind::Retry => {
                    state.consecutive_failures += 1;
                    let retries = state.consecutive_failures;
                    let cfg = &state.args.config;
                    let (next, outcome_state) = if retries <= cfg.max_retries {
                        let delay = Backoff::new(cfg.retry_backoff_min, cfg.retry_backoff_max)
                            .delay(retries);
                        (delay, StreamState::Retrying)
                    } else {
                        state.consecutive_failures = 0;
                        (jittered(state.interval()), StreamState::Idle)
                    };
                    state.args.board.update(&shop, stream, |u| {
                        u.finished(last("failed"))
                            .cursor(cursor)
                            .error(class, message)
                            .state(outcome_state);
                    });
                    state.schedule(myself, next);
                }
            }
        }
    }
}
