//! The daemon's top level: wires configuration, the supervisor tree, the HTTP endpoint and
//! signals together, and turns how it all ended into an exit code.
//!
//! Owns: start order (logger, the shared handles — metrics, database handle, Temu client,
//! shutdown — in [`Shared`], the HTTP listener, the supervisor and its children, the HTTP server on
//! its own thread, then `READY=1` to systemd and the notifier task) and the one stop path,
//! [`stop`]: `STOPPING=1`, cancel the shutdown token (the endpoint stops accepting and drains, runs
//! cancel), stop the children in reverse, wait for the tracked tasks, close the pool. Must not:
//! contain domain logic — each concern lives in its own module.
//!
//! `READY=1` does not wait for the database: a down database is a failing health check, and must
//! not make systemd's start time out.

pub mod demo;
pub mod ops;
mod shared;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::db::{DbActor, DbActorArgs, DbMsg};
use crate::exit;
use crate::http::{self, HttpContext, ServerThread};
use crate::ops::{status_line, Notifier};
use crate::supervisor::{ActorChild, ChildSpec, Outcome, SupervisorArgs, SupervisorHandle};
use crate::sync::{actor_name, SyncActor, SyncActorArgs, SyncBoard, SyncControl, SyncMsg};
use crate::temu::actor::{TemuActor, TemuActorArgs, TemuMsg};
use crate::temu::budget::{self, coordinator::Coordinator};

pub use shared::{BuildError, Shared};

/// `check-config`'s last step: builds everything `run` builds (the shared handles, the sync
/// actors' dependencies, the supervisor's child specs) without connecting or starting anything.
pub fn check_buildable(config: &Config) -> Result<(), BuildError> {
    let shared = Shared::build(config.clone(), SyncBoard::default())?;
    let children = daemon_children(&shared);
    drop(children);
    Ok(())
}

/// Name of the database actor in the supervisor tree.
pub const DB_ACTOR: &str = "db";
/// Name of the Temu-client actor in the supervisor tree.
pub const TEMU_ACTOR: &str = "temu";

/// Runs the daemon until SIGTERM/SIGINT (exit 0) or a supervisor meltdown (exit 69).
pub async fn run(config: Config) -> i32 {
    run_with(config, SyncBoard::default(), shutdown_signal()).await
}

/// Why the daemon stops.
enum StopCause {
    /// A signal (or the caller's future): the supervisor still runs and is stopped in order.
    Asked(&'static str),
    /// The supervisor ended by itself.
    Supervisor(Outcome),
    /// Start-up failed after the shared handles were built; the exit code says how.
    StartFailed(i32),
}

/// Runs the daemon with a given sync board until `shutdown_when` completes (its value names the
/// reason in the log) or the supervisor melts down.
pub async fn run_with(
    config: Config,
    board: SyncBoard,
    shutdown_when: impl std::future::Future<Output = &'static str>,
) -> i32 {
    let shared = match Shared::build(config, board) {
        Ok(shared) => shared,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the daemon from this configuration");
            return exit::CONFIG;
        }
    };
    let notifier = Notifier::from_env();
    note_no_shops(&shared);
    spawn_metrics_upkeep(&shared);
    spawn_qps_budget(&shared);
    let cfg = &shared.config;
    let listener = match TcpListener::bind(cfg.http.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %cfg.http.listen, error = %e,
                "cannot listen on http.listen; is another instance running or the address wrong?");
            return stop(
                &shared,
                &notifier,
                None,
                None,
                StopCause::StartFailed(exit::CONFIG),
            )
            .await;
        }
    };
    let args = SupervisorArgs {
        config: cfg.supervisor.clone(),
        children: daemon_children(&shared),
        health: shared.health.clone(),
    };
    let name = format!("supervisor-{}", shared.instance.id);
    let mut supervisor = match SupervisorHandle::start(&name, args).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "could not start the supervisor");
            return stop(
                &shared,
                &notifier,
                None,
                None,
                StopCause::StartFailed(exit::SOFTWARE),
            )
            .await;
        }
    };
    let server = match start_endpoint(&shared, listener, &supervisor) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(error = %e, "could not start the HTTP endpoint's thread");
            let cause = StopCause::StartFailed(exit::SOFTWARE);
            return stop(&shared, &notifier, Some(supervisor), None, cause).await;
        }
    };
    tracing::info!(listen = %cfg.http.listen, instance = %shared.instance.id,
        version = env!("CARGO_PKG_VERSION"), "temu-sync started");
    let outputs = crate::audit::AuditOutputs {
        board: shared.audits.clone(),
        health: shared.health.clone(),
        metrics: shared.metrics.clone(),
    };
    crate::audit::spawn_scheduled_audit(shared.operator("audit"), outputs, &shared.shutdown);

    // The listener is bound and the supervisor runs: ready, whatever the database says.
    notifier.ready(&status_line(&shared.health.report()));
    let liveness = supervisor.liveness();
    notifier.spawn(
        &shared.shutdown,
        liveness,
        shared.health.clone(),
        http::LIVENESS_DEADLINE,
        &shared.metrics,
    );
    if let Some(every) = notifier.watchdog_interval() {
        tracing::info!(
            interval_ms = every.as_millis() as u64,
            "systemd watchdog: pinging while the supervisor answers"
        );
    }

    let cause = tokio::select! {
        signal = shutdown_when => StopCause::Asked(signal),
        outcome = supervisor.finished() => StopCause::Supervisor(outcome),
        refusal = shared.db.schema_guard().refused() => {
            tracing::error!(error = %refusal, "refusing to run on a newer database schema");
            StopCause::StartFailed(exit::CONFIG)
        }
    };
    stop(&shared, &notifier, Some(supervisor), Some(server), cause).await
}

/// The note in `/health` and `STATUS=` when the configuration lists no shop: the daemon runs (the
/// package's config.yaml has none) and syncs nothing until shops are added.
pub const NO_SHOPS: &str = "no shops configured";

fn note_no_shops(shared: &Shared) {
    if shared.config.shops.is_empty() {
        tracing::warn!(
            "{NO_SHOPS}: nothing to sync; add apps and shops to the configuration and restart"
        );
        shared.health.add_note(NO_SHOPS);
    }
}

/// Histogram samples are folded on a timer, so memory stays flat whether or not anyone scrapes.
/// A panic of the task is logged and counted (`temu_sync_task_panics_total{task="metrics_upkeep"}`).
fn spawn_metrics_upkeep(shared: &Shared) {
    let (metrics, shutdown) = (shared.metrics.clone(), shared.shutdown.clone());
    shared.shutdown.spawn(async move {
        let upkeep = async {
            let mut every = tokio::time::interval(crate::metrics::UPKEEP_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.stopping() => return,
                    _ = every.tick() => metrics.run_upkeep(),
                }
            }
        };
        metrics
            .watched(crate::metrics::TASK_METRICS_UPKEEP, upkeep)
            .await;
    });
}

/// One QPS budget per app_key across the live daemons (`temu::budget::coordinator`): the buckets
/// are held at 0 here, before anything can call Temu, until this daemon has joined.
fn spawn_qps_budget(shared: &Shared) {
    let coordinator = Coordinator::new(
        shared.db.clone(),
        shared.instance.id.clone(),
        shared.temu.budgets().clone(),
        shared.metrics.clone(),
    );
    let (metrics, shutdown) = (shared.metrics.clone(), shared.shutdown.clone());
    shared.shutdown.spawn(async move {
        metrics
            .watched(crate::metrics::TASK_QPS_BUDGET, coordinator.run(shutdown))
            .await;
    });
}

/// The HTTP endpoint on its own thread, serving until the shutdown token is cancelled.
fn start_endpoint(
    shared: &Shared,
    listener: TcpListener,
    supervisor: &SupervisorHandle,
) -> std::io::Result<ServerThread> {
    let cfg = &shared.config;
    let ctx = HttpContext {
        health: shared.health.clone(),
        liveness: supervisor.liveness(),
        config: cfg.http.clone(),
        metrics: shared.metrics.clone(),
    };
    let control = SyncControl {
        board: shared.board.clone(),
        admin_token: cfg.http.admin_token.clone(),
        call_timeout: cfg.supervisor.call_timeout,
        audits: shared.audits.clone(),
        instance: shared.instance.id.clone(),
        budgets: shared.temu.budgets().clone(),
    };
    let router = crate::sync::control::routes(http::Router::standard(), control);
    let ops = crate::audit::routes::OpsControl {
        operator: shared.operator("ops"),
        admin_token: cfg.http.admin_token.clone(),
        runtime: tokio::runtime::Handle::current(),
        shutdown: shared.shutdown.clone(),
    };
    let router = crate::audit::routes::routes(router, ops);
    let sup = &cfg.supervisor;
    // How long the supervisor may take to notice a hung child and restart it.
    let child_recovery = sup
        .ping_interval
        .saturating_mul(sup.max_missed_pings)
        .saturating_add(sup.backoff_max);
    let freshness =
        crate::health::FreshnessBounds::for_daemon(cfg.database.ping_interval, child_recovery);
    let token = shared.shutdown.token();
    http::spawn_server_thread(listener, ctx, router, token, drain(cfg), freshness)
}

/// How long open HTTP connections may drain on stop.
fn drain(config: &Config) -> Duration {
    config.supervisor.shutdown_timeout / 2
}

/// The one stop path, in one order: tell systemd and the health report, cancel the shutdown
/// token (the endpoint stops accepting, runs and tasks end), stop the supervisor's children in
/// reverse start order, let the endpoint drain, wait for the tracked tasks, close the pool.
async fn stop(
    shared: &Shared,
    notifier: &Notifier,
    supervisor: Option<SupervisorHandle>,
    server: Option<ServerThread>,
    cause: StopCause,
) -> i32 {
    let timeout = shared.config.supervisor.shutdown_timeout;
    match &cause {
        StopCause::Asked(signal) => {
            tracing::info!(%signal, "shutting down");
            notifier.stopping(&format!("stopping ({signal})"));
        }
        StopCause::Supervisor(_) => notifier.stopping("stopping (supervisor gave up)"),
        StopCause::StartFailed(_) => notifier.stopping("stopping (start-up failed)"),
    }
    shared.health.set_shutting_down();
    shared.shutdown.cancel();
    let outcome = match (cause, supervisor) {
        (StopCause::Supervisor(outcome), _) => Ok(outcome),
        (cause, Some(supervisor)) => {
            let stopped =
                tokio::time::timeout(timeout + Duration::from_secs(2), supervisor.shutdown());
            match (stopped.await, cause) {
                (_, StopCause::StartFailed(code)) => Err(code),
                (Ok(outcome), _) => Ok(outcome),
                (Err(_), _) => {
                    tracing::error!("shutdown did not finish within supervisor.shutdown_timeout");
                    Ok(Outcome::Shutdown)
                }
            }
        }
        (StopCause::StartFailed(code), None) => Err(code),
        (StopCause::Asked(_), None) => Ok(Outcome::Shutdown),
    };
    if let Some(server) = server {
        if let Err(why) = server
            .finished(drain(&shared.config) + Duration::from_secs(1))
            .await
        {
            tracing::warn!(error = %why, "HTTP endpoint did not stop cleanly");
        }
    }
    if let Err(running) = shared.shutdown.stop(timeout).await {
        tracing::warn!(
            running,
            "tasks still running after supervisor.shutdown_timeout; leaving them"
        );
    }
    // Every run has stopped calling: only now give up this daemon's QPS shares.
    budget::coordinator::leave(&shared.db, &shared.instance.id, Duration::from_secs(2)).await;
    shared.db.close();
    match outcome {
        Err(code) => code,
        Ok(Outcome::Shutdown) => {
            tracing::info!("stopped");
            exit::OK
        }
        Ok(Outcome::Meltdown(why)) => {
            tracing::error!(reason = %why, "stopped after a supervisor meltdown");
            exit::UNAVAILABLE
        }
    }
}

/// The supervised actors of the daemon, in start order (stopped in reverse): the database, the
/// Temu client, then one sync actor per configured shop × stream. Each gets what it uses of
/// `shared` at construction.
pub fn daemon_children(shared: &Shared) -> Vec<Arc<dyn ChildSpec>> {
    let config = &shared.config;
    let db_args = DbActorArgs {
        db: shared.db.clone(),
        health: shared.health.clone(),
        instance: shared.instance.clone(),
    };
    // The actor gets the process's one client: a restart of the actor keeps it (and its limiters).
    let temu_args = TemuActorArgs {
        client: shared.temu.clone(),
        token_check_interval: config.temu.token_check_interval,
    };
    let mut children: Vec<Arc<dyn ChildSpec>> = vec![
        Arc::new(ActorChild::new(
            DB_ACTOR,
            move || (DbActor, db_args.clone()),
            DbMsg::Ping,
        )),
        Arc::new(ActorChild::new(
            TEMU_ACTOR,
            move || (TemuActor, temu_args.clone()),
            TemuMsg::Ping,
        )),
    ];
    let deps = shared.sync_deps();
    for shop in shared.temu.shops() {
        for &stream in shop.streams() {
            let args = SyncActorArgs::new(deps.clone(), shop.clone(), stream);
            children.push(Arc::new(ActorChild::new(
                actor_name(shop.name(), stream),
                move || (SyncActor, args.clone()),
                SyncMsg::Ping,
            )));
        }
    }
    children
}

/// Applies pending migrations (creating the database first when allowed) and returns what ran.
pub async fn migrate(config: &Config) -> Result<Vec<String>, crate::db::DbError> {
    let db = crate::db::Database::new(config.database.clone())?;
    if config.database.create_database && db.connector().ensure_database().await? {
        tracing::info!(database = db.connector().dbname(), "created the database");
    }
    crate::db::migrate::run_pending(db.connector()).await
}

/// What an operator sees on SIGHUP until live reload exists.
pub const SIGHUP_MESSAGE: &str = "reload is not supported yet; restart to apply";

/// Resolves on SIGTERM or SIGINT with the signal's name. SIGHUP never stops the daemon (its
/// default action would kill it): each one is logged at warn ([`SIGHUP_MESSAGE`]) between
/// `RELOADING=1` and `READY=1` to systemd (`ExecReload=` sends it), and the wait goes on. The handlers are installed when this is called, not when the future is first polled,
/// so a signal during start-up is already handled. Needs a tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    let hup = signal(SignalKind::hangup());
    let notifier = Notifier::from_env();
    async move {
        let (Ok(mut term), Ok(mut int)) = (term, int) else {
            // Without signal handlers we can only wait for Ctrl-C through tokio's fallback.
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        };
        let mut hup = match hup {
            Ok(hup) => Some(hup),
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGHUP; a SIGHUP will stop the daemon");
                None
            }
        };
        loop {
            tokio::select! {
                _ = term.recv() => return "SIGTERM",
                _ = int.recv() => return "SIGINT",
                Some(()) = async { hup.as_mut()?.recv().await } => {
                    notifier.reloading();
                    tracing::warn!(signal = "SIGHUP", "{SIGHUP_MESSAGE}");
                    notifier.reloaded();
                }
            }
        }
    }
}
