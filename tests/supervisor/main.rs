//! The supervisor's restart, hang-detection, meltdown and shutdown behaviour, with test actors
//! that panic or hang on command.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use temu_sync::config::SupervisorConfig;
use temu_sync::health::{ChildState, Health};
use temu_sync::supervisor::{ActorChild, ChildSpec, Outcome, SupervisorArgs, SupervisorHandle};
use temu_sync::testkit::eventually;

enum WorkerMsg {
    Ping(RpcReplyPort<()>),
    Panic,
    Hang,
}

#[derive(Clone)]
struct Probe {
    starts: Arc<AtomicU32>,
    last_start: Arc<Mutex<Option<Instant>>>,
    stops: Arc<Mutex<Vec<String>>>,
}

impl Probe {
    fn new(stops: Arc<Mutex<Vec<String>>>) -> Self {
        Self {
            starts: Arc::default(),
            last_start: Arc::default(),
            stops,
        }
    }
}

struct Worker {
    name: String,
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = Probe;
    type Arguments = Probe;

    async fn pre_start(
        &self,
        _myself: ActorRef<WorkerMsg>,
        probe: Probe,
    ) -> Result<Probe, ActorProcessingErr> {
        probe.starts.fetch_add(1, Ordering::SeqCst);
        *probe.last_start.lock() = Some(Instant::now());
        Ok(probe)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<WorkerMsg>,
        probe: &mut Probe,
    ) -> Result<(), ActorProcessingErr> {
        probe.stops.lock().push(self.name.clone());
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        _probe: &mut Probe,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Ping(reply) => {
                let _ = reply.send(());
            }
            WorkerMsg::Panic => panic!("worker exploded on purpose"),
            WorkerMsg::Hang => std::future::pending::<()>().await,
        }
        Ok(())
    }
}

/// Restart tests: pings slow enough that a loaded machine never mistakes a busy child for a hung
/// one (which would add restarts and overwrite the last error the tests check).
fn restart_config() -> SupervisorConfig {
    SupervisorConfig {
        ping_interval: Duration::from_secs(2),
        ping_timeout: Duration::from_millis(1500),
        max_missed_pings: 3,
        ..fast_config()
    }
}

/// Hang-detection tests: fast pings, so a hung child is found in well under a second.
fn fast_config() -> SupervisorConfig {
    SupervisorConfig {
        max_restarts: 3,
        restart_window: Duration::from_secs(30),
        backoff_min: Duration::from_millis(60),
        backoff_max: Duration::from_millis(400),
        ping_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_millis(80),
        max_missed_pings: 2,
        call_timeout: Duration::from_secs(2),
        shutdown_timeout: Duration::from_secs(3),
    }
}

struct Tree {
    handle: SupervisorHandle,
    health: Health,
    probes: Vec<(String, Probe)>,
    stops: Arc<Mutex<Vec<String>>>,
}

async fn start_tree(test: &str, names: &[&str], config: SupervisorConfig) -> Tree {
    let health = Health::new(test);
    let stops = Arc::new(Mutex::new(Vec::new()));
    let mut probes = Vec::new();
    let mut children: Vec<Arc<dyn ChildSpec>> = Vec::new();
    for short in names {
        let name = format!("{test}-{short}");
        let probe = Probe::new(stops.clone());
        probes.push((name.clone(), probe.clone()));
        let actor_name = name.clone();
        children.push(Arc::new(ActorChild::new(
            name.clone(),
            move || {
                (
                    Worker {
                        name: actor_name.clone(),
                    },
                    probe.clone(),
                )
            },
            WorkerMsg::Ping,
        )));
    }
    let handle = SupervisorHandle::start(
        &format!("{test}-supervisor"),
        SupervisorArgs {
            config,
            children,
            health: health.clone(),
        },
    )
    .await
    .expect("supervisor starts");
    Tree {
        handle,
        health,
        probes,
        stops,
    }
}

fn send(name: &str, msg: WorkerMsg) {
    let actor = ActorRef::<WorkerMsg>::where_is(name).expect("child is registered");
    actor.send_message(msg).expect("child accepts messages");
}

/// A condition read from memory, as a wait of the test kit asks for it.
fn holds(value: bool) -> std::future::Ready<bool> {
    std::future::ready(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_child_is_restarted_after_backoff_and_counted() {
    let tree = start_tree("panic", &["a", "b"], restart_config()).await;
    let (name, probe) = tree.probes[0].clone();
    assert_eq!(probe.starts.load(Ordering::SeqCst), 1);

    let panicked_at = Instant::now();
    send(&name, WorkerMsg::Panic);
    assert!(
        eventually(Duration::from_secs(10), || holds(
            probe.starts.load(Ordering::SeqCst) == 2
        ))
        .await,
        "child was not restarted"
    );
    let restarted_after = probe
        .last_start
        .lock()
        .expect("started")
        .duration_since(panicked_at);
    // First backoff is backoff_min jittered into [min/2, min].
    assert!(
        restarted_after >= Duration::from_millis(30),
        "restarted without backoff: {restarted_after:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            holds(
                tree.health
                    .child(&name)
                    .is_some_and(|c| c.state == ChildState::Running),
            )
        })
        .await
    );
    let record = tree.health.child(&name).expect("child in health");
    assert_eq!(record.restarts, 1);
    let last_error = record.last_error.unwrap_or_default();
    assert!(
        last_error.contains("worker exploded on purpose"),
        "{last_error}"
    );
    // The sibling was not touched, and the restarted child answers under the same name.
    assert_eq!(tree.probes[1].1.starts.load(Ordering::SeqCst), 1);
    assert!(ActorRef::<WorkerMsg>::where_is(name.clone()).is_some());
    assert_eq!(tree.handle.shutdown().await, Outcome::Shutdown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_child_is_killed_and_restarted() {
    let tree = start_tree("hang", &["a"], fast_config()).await;
    let (name, probe) = tree.probes[0].clone();
    send(&name, WorkerMsg::Hang);
    assert!(
        eventually(Duration::from_secs(10), || holds(
            probe.starts.load(Ordering::SeqCst) >= 2
        ))
        .await,
        "hung child was not replaced"
    );
    let record = tree.health.child(&name).expect("child in health");
    assert!(record.restarts >= 1);
    let last_error = record.last_error.unwrap_or_default();
    assert!(last_error.contains("hung: missed 2 pings"), "{last_error}");
    // The replacement is a working actor: it answers a call under the same name.
    let replacement =
        ActorRef::<WorkerMsg>::where_is(name.clone()).expect("replacement registered");
    let answered = replacement
        .call(WorkerMsg::Ping, Some(Duration::from_secs(5)))
        .await;
    assert!(matches!(answered, Ok(ractor::rpc::CallResult::Success(()))));
    assert_eq!(tree.handle.shutdown().await, Outcome::Shutdown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_restarts_stop_everything_in_order_with_meltdown() {
    let mut tree = start_tree("meltdown", &["a", "b", "c"], restart_config()).await;
    let (name, probe) = tree.probes[0].clone();
    // max_restarts = 3: the fourth failure inside the window is one too many.
    for round in 1..=3u32 {
        send(&name, WorkerMsg::Panic);
        assert!(
            eventually(Duration::from_secs(10), || {
                holds(probe.starts.load(Ordering::SeqCst) == round + 1)
            })
            .await,
            "restart {round} did not happen"
        );
    }
    send(&name, WorkerMsg::Panic);
    let outcome = tokio::time::timeout(Duration::from_secs(10), tree.handle.finished())
        .await
        .expect("supervisor ends after too many restarts");
    match outcome {
        Outcome::Meltdown(why) => assert!(why.contains("4 restarts"), "{why}"),
        other => panic!("expected a meltdown, got {other:?}"),
    }
    // The survivors were stopped in reverse start order; the failed child was not restarted.
    assert_eq!(
        *tree.stops.lock(),
        vec!["meltdown-c".to_string(), "meltdown-b".to_string()]
    );
    assert_eq!(probe.starts.load(Ordering::SeqCst), 4);
    let report = tree.health.report();
    assert_eq!(report.status, temu_sync::health::Status::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_children_in_reverse_start_order() {
    let tree = start_tree("shutdown", &["a", "b", "c"], restart_config()).await;
    let liveness = tree.handle.liveness();
    assert!(liveness(Duration::from_secs(1)).await, "supervisor answers");
    let stops = tree.stops.clone();
    let health = tree.health.clone();
    assert_eq!(tree.handle.shutdown().await, Outcome::Shutdown);
    assert_eq!(
        *stops.lock(),
        vec![
            "shutdown-c".to_string(),
            "shutdown-b".to_string(),
            "shutdown-a".to_string()
        ]
    );
    assert!(
        !liveness(Duration::from_millis(200)).await,
        "stopped supervisor is not alive"
    );
    for child in health.children().values() {
        assert_eq!(child.state, ChildState::Stopped);
    }
}
