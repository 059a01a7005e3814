//! Section 5a: panic → replacement running, at library level — the supervisor and a test actor
//! that panics on command (as `tests/supervisor.rs` does), timed from the panic to the
//! replacement's `pre_start`. No daemon, no database.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use temu_sync::config::SupervisorConfig;
use temu_sync::health::Health;
use temu_sync::supervisor::{ActorChild, ChildSpec, SupervisorArgs, SupervisorHandle};

use crate::table::Table;
use crate::Args;

enum WorkerMsg {
    Ping(RpcReplyPort<()>),
    Panic,
}

struct Worker;

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = Arc<Mutex<Option<Instant>>>;
    type Arguments = Arc<Mutex<Option<Instant>>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<WorkerMsg>,
        started: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        *started.lock() = Some(Instant::now());
        Ok(started)
    }

    async fn handle(
        &self,
        _myself: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Ping(reply) => {
                let _ = reply.send(());
            }
            WorkerMsg::Panic => panic!("bench: panic on purpose"),
        }
        Ok(())
    }
}

/// Panic → replacement's `pre_start` for `rounds` panics; (median, max) in ms.
async fn panic_to_replacement(backoff_min: Duration, rounds: usize) -> (f64, f64) {
    static TREE: AtomicU32 = AtomicU32::new(0);
    let n = TREE.fetch_add(1, Ordering::Relaxed);
    let name = format!("bench-worker-{n}");
    let started: Arc<Mutex<Option<Instant>>> = Arc::default();
    let s = started.clone();
    let child: Arc<dyn ChildSpec> = Arc::new(ActorChild::new(
        name.clone(),
        move || (Worker, s.clone()),
        WorkerMsg::Ping,
    ));
    let config = SupervisorConfig {
        max_restarts: 10_000,
        // A child that ran longer than this starts again from backoff_min: every panic below is
        // a first failure.
        restart_window: Duration::from_millis(50),
        backoff_min,
        backoff_max: backoff_min.max(Duration::from_millis(1)) * 4,
        ping_interval: Duration::from_secs(5),
        ping_timeout: Duration::from_secs(2),
        max_missed_pings: 3,
        call_timeout: Duration::from_secs(2),
        shutdown_timeout: Duration::from_secs(3),
    };
    let handle = SupervisorHandle::start(
        &format!("bench-supervisor-{n}"),
        SupervisorArgs {
            config,
            children: vec![child],
            health: Health::new("bench"),
        },
    )
    .await
    .expect("supervisor starts");
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(actor) = ActorRef::<WorkerMsg>::where_is(name.clone()) else {
            continue;
        };
        *started.lock() = None;
        let at = Instant::now();
        let _ = actor.send_message(WorkerMsg::Panic);
        let end = at + Duration::from_secs(5);
        while Instant::now() < end && started.lock().is_none() {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        if let Some(t) = *started.lock() {
            times.push(t.duration_since(at).as_secs_f64() * 1000.0);
        }
    }
    let _ = handle.shutdown().await;
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let max = times.last().copied().unwrap_or(f64::NAN);
    (median, max)
}

pub async fn bench_recovery(args: &Args, table: &mut Table) {
    let rounds = if args.quick { 10 } else { 30 };
    println!("[recovery] supervisor panic → replacement, {rounds} panics per setting …");
    let (med, max) = panic_to_replacement(Duration::from_millis(100), rounds).await;
    table.add(
        "recovery",
        "panic → replacement pre_start, backoff_min 100 ms (default; jitter [50, 100] ms): median / max",
        format!("{med:.1} / {max:.1} ms"),
        "≤ 100 ms + backoff (≤ 200)",
        Some(max <= 200.0),
    );
    let (med, max) = panic_to_replacement(Duration::from_millis(1), rounds).await;
    table.add(
        "recovery",
        "panic → replacement pre_start, backoff_min 1 ms (the supervisor's own cost): median / max",
        format!("{med:.2} / {max:.2} ms"),
        "≤ 100 ms + 1 ms",
        Some(max <= 101.0),
    );
}
