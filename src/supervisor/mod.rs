//! The supervisor: starts the daemon's actors, restarts them when they fail or hang, and stops
//! the process in order when restarts run away.
//!
//! Owns: the lifecycle of every child actor (start order, restart with exponential jittered
//! backoff under the same name, hang detection by ping, restart intensity, orderly stop) and the
//! `supervisor:children` part of the health snapshot. Must not: do a child's work, or wait on
//! anything outside the process in its own mailbox — pings run in tasks and report back.
//!
//! ractor has no restart strategy of its own and its default supervision handler stops the
//! supervisor when a child ends; [`Supervisor::handle_supervisor_evt`] replaces it.

mod backoff;
mod child;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ractor::concurrency::JoinHandle;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent};

pub use backoff::Backoff;
pub use child::{ActorChild, ChildSpec, PingFn, RunningChild};

use crate::config::SupervisorConfig;
use crate::health::{ChildState, Health};

/// Why the supervisor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Asked to stop (SIGTERM / SIGINT): exit 0.
    Shutdown,
    /// Too many restarts in the window, or a child that could not be stopped: exit 69 so that
    /// systemd starts a fresh process.
    Meltdown(String),
}

pub struct SupervisorArgs {
    pub config: SupervisorConfig,
    /// In start order; stopped in reverse.
    pub children: Vec<Arc<dyn ChildSpec>>,
    pub health: Health,
}

pub enum SupervisorMsg {
    /// Liveness: answered at once (used by `/livez` and the systemd watchdog).
    Alive(RpcReplyPort<()>),
    /// Stop every child in reverse start order, then the supervisor.
    Shutdown(RpcReplyPort<()>),
    /// Backoff elapsed: start child `index` again if it is still the same failure (`generation`).
    Restart {
        index: usize,
        generation: u64,
    },
    PingTick,
    PingResult {
        index: usize,
        generation: u64,
        ok: bool,
    },
}

struct Child {
    spec: Arc<dyn ChildSpec>,
    running: Option<RunningChild>,
    /// Bumped on every failure, so stale timers and ping answers are ignored.
    generation: u64,
    consecutive_failures: u32,
    missed_pings: u32,
    ping_in_flight: bool,
    started_at: Instant,
    /// Set when the supervisor itself kills the child, to report why.
    kill_reason: Option<String>,
}

pub struct SupervisorState {
    config: SupervisorConfig,
    children: Vec<Child>,
    restarts: VecDeque<Instant>,
    stopping: bool,
    health: Health,
    outcome: Arc<Mutex<Option<Outcome>>>,
}

pub struct Supervisor {
    outcome: Arc<Mutex<Option<Outcome>>>,
}

/// The running supervisor, as held by `main` and the HTTP endpoint.
pub struct SupervisorHandle {
    actor: ActorRef<SupervisorMsg>,
    join: Option<JoinHandle<()>>,
    outcome: Arc<Mutex<Option<Outcome>>>,
    shutdown_timeout: Duration,
}

impl SupervisorHandle {
    /// Starts the supervisor and, in order, its children.
    pub async fn start(name: &str, args: SupervisorArgs) -> Result<Self, SpawnErr> {
        let outcome = Arc::new(Mutex::new(None));
        let shutdown_timeout = args.config.shutdown_timeout;
        let (actor, join) = Actor::spawn(
            Some(name.to_string()),
            Supervisor {
                outcome: outcome.clone(),
            },
            args,
        )
        .await?;
        Ok(Self {
            actor,
            join: Some(join),
            outcome,
            shutdown_timeout,
        })
    }

    pub fn actor(&self) -> ActorRef<SupervisorMsg> {
        self.actor.clone()
    }

    /// A liveness probe usable from other tasks: true when the supervisor answers in time.
    pub fn liveness(&self) -> PingFn {
        let actor = self.actor.clone();
        Arc::new(move |deadline| {
            let actor = actor.clone();
            Box::pin(async move {
                matches!(
                    actor.call(SupervisorMsg::Alive, Some(deadline)).await,
                    Ok(CallResult::Success(()))
                )
            })
        })
    }

    /// Waits until the supervisor has ended by itself (meltdown) and says why.
    pub async fn finished(&mut self) -> Outcome {
        if let Some(join) = self.join.as_mut() {
            let _ = join.await;
            self.join = None;
        }
        self.outcome
            .lock()
            .clone()
            .unwrap_or_else(|| Outcome::Meltdown("supervisor ended unexpectedly".into()))
    }

    /// Orderly stop: children in reverse start order, each bounded by the shutdown timeout.
    pub async fn shutdown(mut self) -> Outcome {
        let deadline = self.shutdown_timeout + Duration::from_secs(1);
        match self
            .actor
            .call(SupervisorMsg::Shutdown, Some(deadline))
            .await
        {
            Ok(CallResult::Success(())) => {}
            other => {
                tracing::error!(
                    answer = ?other.map(|r| matches!(r, CallResult::Success(_))).ok(),
                    "supervisor did not stop in time; killing it"
                );
                self.actor.kill();
            }
        }
        if let Some(join) = self.join.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), join).await;
        }
        let outcome = self.outcome.lock().clone();
        outcome.unwrap_or(Outcome::Shutdown)
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let now = Instant::now();
        let mut state = SupervisorState {
            children: args
                .children
                .into_iter()
                .map(|spec| Child {
                    spec,
                    running: None,
                    generation: 0,
                    consecutive_failures: 0,
                    missed_pings: 0,
                    ping_in_flight: false,
                    started_at: now,
                    kill_reason: None,
                })
                .collect(),
            config: args.config,
            restarts: VecDeque::new(),
            stopping: false,
            health: args.health,
            outcome: self.outcome.clone(),
        };
        for index in 0..state.children.len() {
            state
                .health
                .update_child(state.children[index].spec.name(), |c| {
                    c.state = ChildState::Starting;
                });
            start_child(&myself, &mut state, index).await;
        }
        myself.send_interval(state.config.ping_interval, || SupervisorMsg::PingTick);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Alive(reply) => {
                let _ = reply.send(());
            }
            SupervisorMsg::Shutdown(reply) => {
                state.outcome.lock().get_or_insert(Outcome::Shutdown);
                stop_all(state).await;
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
            SupervisorMsg::Restart { index, generation } => {
                let current = state.children.get(index).map(|c| c.generation);
                let already_running = state.children.get(index).map(|c| c.running.is_some());
                if !state.stopping && current == Some(generation) && already_running == Some(false)
                {
                    start_child(&myself, state, index).await;
                }
            }
            SupervisorMsg::PingTick => {
                if state.stopping {
                    return Ok(());
                }
                let deadline = state.config.ping_timeout;
                for (index, child) in state.children.iter_mut().enumerate() {
                    let Some(running) = child.running.as_ref() else {
                        continue;
                    };
                    if child.ping_in_flight {
                        continue;
                    }
                    child.ping_in_flight = true;
                    let ping = running.ping.clone();
                    let generation = child.generation;
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let ok = ping(deadline).await;
                        let _ = me.send_message(SupervisorMsg::PingResult {
                            index,
                            generation,
                            ok,
                        });
                    });
                }
            }
            SupervisorMsg::PingResult {
                index,
                generation,
                ok,
            } => on_ping_result(&myself, state, index, generation, ok).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let reason = format!("panicked or failed: {err}");
                (cell, reason)
            }
            SupervisionEvent::ActorTerminated(cell, _state, reason) => {
                let reason = reason.unwrap_or_else(|| "stopped".into());
                (cell, format!("terminated: {reason}"))
            }
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let Some(index) = state
            .children
            .iter()
            .position(|c| c.running.as_ref().map(|r| r.cell.get_id()) == Some(id))
        else {
            return Ok(()); // an earlier incarnation we already handled
        };
        let reason = state.children[index].kill_reason.take().unwrap_or(reason);
        state.children[index].running = None;
        on_child_failed(&myself, state, index, reason).await;
        Ok(())
    }
}

/// Spawns child `index`, bounded; a failed or slow spawn is handled like a crash.
async fn start_child(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, index: usize) {
    let name = state.children[index].spec.name().to_string();
    let deadline = state.config.call_timeout.max(state.config.ping_timeout);
    let spawned = tokio::time::timeout(
        deadline,
        state.children[index].spec.spawn(myself.get_cell()),
    )
    .await;
    match spawned {
        Ok(Ok(running)) => {
            let child = &mut state.children[index];
            child.running = Some(running);
            child.started_at = Instant::now();
            child.missed_pings = 0;
            child.ping_in_flight = false;
            state.health.update_child(&name, |c| {
                c.state = ChildState::Running;
                c.since = chrono::Utc::now();
            });
            tracing::info!(child = %name, "child started");
        }
        Ok(Err(e)) => {
            on_child_failed(myself, state, index, format!("failed to start: {e}")).await;
        }
        Err(_) => {
            // A half-started actor may still register under the name; make sure it goes away.
            if let Some(cell) = ractor::registry::where_is(name.clone()) {
                cell.kill();
            }
            on_child_failed(
                myself,
                state,
                index,
                format!("did not start within {deadline:?}"),
            )
            .await;
        }
    }
}

async fn on_child_failed(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    index: usize,
    reason: String,
) {
    let name = state.children[index].spec.name().to_string();
    let child = &mut state.children[index];
    child.generation += 1;
    child.missed_pings = 0;
    child.ping_in_flight = false;
    if state.stopping {
        state
            .health
            .update_child(&name, |c| c.state = ChildState::Stopped);
        return;
    }
    // A child that ran steadily for a whole window starts its backoff from the bottom again.
    if child.started_at.elapsed() > state.config.restart_window {
        child.consecutive_failures = 0;
    }
    child.consecutive_failures += 1;
    let attempt = child.consecutive_failures;
    let generation = child.generation;

    let now = Instant::now();
    state.restarts.push_back(now);
    while let Some(first) = state.restarts.front() {
        if now.duration_since(*first) > state.config.restart_window {
            state.restarts.pop_front();
        } else {
            break;
        }
    }
    state.health.update_child(&name, |c| {
        c.restarts += 1;
        c.last_error = Some(reason.clone());
    });
    if state.restarts.len() > state.config.max_restarts as usize {
        let why = format!(
            "{} restarts within {:?} (max_restarts {}); last: {name} {reason}",
            state.restarts.len(),
            state.config.restart_window,
            state.config.max_restarts
        );
        meltdown(myself, state, why).await;
        return;
    }
    let delay = Backoff::new(state.config.backoff_min, state.config.backoff_max).delay(attempt);
    tracing::warn!(child = %name, %reason, restart_in = ?delay, attempt, "child failed; restarting after backoff");
    state.health.update_child(&name, |c| {
        c.state = ChildState::Restarting { at: now + delay };
    });
    myself.send_after(delay, move || SupervisorMsg::Restart { index, generation });
}

async fn on_ping_result(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    index: usize,
    generation: u64,
    ok: bool,
) {
    let max_missed = state.config.max_missed_pings.max(1);
    let Some(child) = state.children.get_mut(index) else {
        return;
    };
    if child.generation != generation || state.stopping {
        return;
    }
    child.ping_in_flight = false;
    if ok {
        child.missed_pings = 0;
        return;
    }
    child.missed_pings += 1;
    let name = child.spec.name().to_string();
    tracing::warn!(child = %name, missed = child.missed_pings, "child did not answer a ping in time");
    if child.missed_pings == max_missed {
        let reason = format!(
            "hung: missed {} pings of {:?}; killed",
            child.missed_pings, state.config.ping_timeout
        );
        tracing::error!(child = %name, %reason, "killing hung child");
        child.kill_reason = Some(reason);
        if let Some(running) = child.running.as_ref() {
            running.cell.kill();
        }
    } else if child.missed_pings >= max_missed * 2 {
        // Kill did not take (a handler spinning without ever yielding): only a new process helps.
        let why = format!("child {name} stayed hung after being killed");
        meltdown(myself, state, why).await;
    }
}

async fn meltdown(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, why: String) {
    tracing::error!(reason = %why, "too many failures; stopping the daemon (exit 69)");
    *state.outcome.lock() = Some(Outcome::Meltdown(why.clone()));
    stop_all(state).await;
    for child in &state.children {
        let name = child.spec.name().to_string();
        state.health.update_child(&name, |c| {
            c.state = ChildState::Failed {
                reason: why.clone(),
            };
        });
    }
    myself.stop(Some(why));
}

/// Stops running children in reverse start order within the shutdown timeout overall.
async fn stop_all(state: &mut SupervisorState) {
    state.stopping = true;
    let deadline = Instant::now() + state.config.shutdown_timeout;
    for child in state.children.iter_mut().rev() {
        let Some(running) = child.running.take() else {
            continue;
        };
        let name = child.spec.name().to_string();
        let left = deadline.saturating_duration_since(Instant::now());
        match running
            .cell
            .stop_and_wait(
                Some("shutdown".into()),
                Some(left.max(Duration::from_millis(10))),
            )
            .await
        {
            Ok(()) => tracing::info!(child = %name, "child stopped"),
            Err(e) => {
                tracing::warn!(child = %name, error = %e, "child did not stop in time; killing it");
                running.cell.kill();
            }
        }
        state
            .health
            .update_child(&name, |c| c.state = ChildState::Stopped);
    }
}
