//! The daemon's top level: wires configuration, the supervisor tree, the HTTP endpoint and
//! signals together, and turns how it all ended into an exit code.
//!
//! Owns: start order (logger, metrics, database handle, HTTP listener, supervisor and its
//! children, HTTP server on its own thread, then `READY=1` to systemd and the notifier task) and shutdown order
//! (`STOPPING=1`, stop accepting, stop children in reverse, close the pool). Must not: contain
//! domain logic — each concern lives in its own module.
//!
//! `READY=1` does not wait for the database: a down database is a failing health check, and must
//! not make systemd's start time out.

pub mod demo;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::{Database, DbActor, DbActorArgs, DbMsg, Instance};
use crate::exit;
use crate::health::Health;
use crate::http::{self, HttpContext};
use crate::metrics::Metrics;
use crate::ops::{status_line, Notifier};
use crate::supervisor::{ActorChild, ChildSpec, Outcome, SupervisorArgs, SupervisorHandle};
use crate::sync::{actor_name, SyncActor, SyncActorArgs, SyncBoard, SyncControl, SyncMsg};
use crate::temu::actor::{TemuActor, TemuActorArgs, TemuMsg};
use crate::temu::{ClientTuning, Observers, TemuClient, TemuError};

/// Name of the database actor in the supervisor tree.
pub const DB_ACTOR: &str = "db";
/// Name of the Temu-client actor in the supervisor tree.
pub const TEMU_ACTOR: &str = "temu";

/// Runs the daemon until SIGTERM/SIGINT (exit 0) or a supervisor meltdown (exit 69).
pub async fn run(config: Config) -> i32 {
    run_with(config, SyncBoard::default(), shutdown_signal()).await
}

/// Runs the daemon with a given sync board until `shutdown` completes (its value names the
/// reason in the log) or the supervisor melts down.
pub async fn run_with(
    config: Config,
    board: SyncBoard,
    shutdown_when: impl std::future::Future<Output = &'static str>,
) -> i32 {
    let instance = Instance::current();
    let health = Health::new(instance.id.clone());
    let notifier = Notifier::from_env();
    let metrics = Metrics::new();
    for shop in &config.shops {
        for stream in &shop.streams {
            metrics.init_sync_series(&shop.name, stream.as_str());
        }
    }
    let db = match Database::new(config.database.clone()) {
        Ok(db) => db,
        Err(e) => {
            tracing::error!(error = %e, "invalid database configuration");
            return exit::CONFIG;
        }
    };
    db.set_metrics(metrics.clone());
    // Histogram samples are folded on a timer, so memory stays flat whether or not anyone scrapes.
    let upkeep = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::metrics::UPKEEP_EVERY);
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        })
    };

    let listener = match TcpListener::bind(config.http.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %config.http.listen, error = %e,
                "cannot listen on http.listen; is another instance running or the address wrong?");
            return exit::CONFIG;
        }
    };

    let children = match daemon_children(&config, &db, &health, &board, &instance, &metrics) {
        Ok(children) => children,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the Temu client");
            upkeep.abort();
            return exit::CONFIG;
        }
    };
    let args = SupervisorArgs {
        config: config.supervisor.clone(),
        children,
        health: health.clone(),
    };
    let mut supervisor =
        match SupervisorHandle::start(&format!("supervisor-{}", instance.id), args).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "could not start the supervisor");
                return exit::SOFTWARE;
            }
        };

    let shutdown = CancellationToken::new();
    let ctx = HttpContext {
        health: health.clone(),
        liveness: supervisor.liveness(),
        config: config.http.clone(),
        metrics: metrics.clone(),
    };
    let drain = config.supervisor.shutdown_timeout / 2;
    let router = crate::sync::control::routes(
        http::Router::standard(),
        SyncControl {
            board: board.clone(),
            admin_token: config.http.admin_token.clone(),
            call_timeout: config.supervisor.call_timeout,
        },
    );
    let server = match http::spawn_server_thread(listener, ctx, router, shutdown.clone(), drain) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(error = %e, "could not start the HTTP endpoint's thread");
            let stop = supervisor.shutdown();
            let _ = tokio::time::timeout(config.supervisor.shutdown_timeout, stop).await;
            db.close();
            upkeep.abort();
            return exit::SOFTWARE;
        }
    };
    tracing::info!(listen = %config.http.listen, instance = %instance.id, version = env!("CARGO_PKG_VERSION"), "temu-sync started");

    // The listener is bound and the supervisor runs: ready, whatever the database says.
    notifier.ready(&status_line(&health.report()));
    let notify_task = notifier.spawn(
        supervisor.liveness(),
        health.clone(),
        http::LIVENESS_DEADLINE,
    );
    if let Some(every) = notifier.watchdog_interval() {
        tracing::info!(
            interval_ms = every.as_millis() as u64,
            "systemd watchdog: pinging while the supervisor answers"
        );
    }

    let outcome = tokio::select! {
        signal = shutdown_when => {
            tracing::info!(%signal, "shutting down");
            notify_task.cancel();
            notifier.stopping(&format!("stopping ({signal})"));
            health.set_shutting_down();
            shutdown.cancel();
            let stop = supervisor.shutdown();
            match tokio::time::timeout(config.supervisor.shutdown_timeout + Duration::from_secs(2), stop).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::error!("shutdown did not finish within supervisor.shutdown_timeout");
                    Outcome::Shutdown
                }
            }
        }
        outcome = supervisor.finished() => {
            notify_task.cancel();
            notifier.stopping("stopping (supervisor gave up)");
            health.set_shutting_down();
            shutdown.cancel();
            outcome
        }
    };
    notify_task.stop().await;
    if let Err(why) = server.finished(drain + Duration::from_secs(1)).await {
        tracing::warn!(error = %why, "HTTP endpoint did not stop cleanly");
    }
    db.close();
    upkeep.abort();
    match outcome {
        Outcome::Shutdown => {
            tracing::info!("stopped");
            exit::OK
        }
        Outcome::Meltdown(why) => {
            tracing::error!(reason = %why, "stopped after a supervisor meltdown");
            exit::UNAVAILABLE
        }
    }
}

/// The supervised actors of the daemon, in start order (stopped in reverse): the database, the
/// Temu actor, then one sync actor per configured shop × stream. The Temu client is built here,
/// once: the Temu actor and every sync actor get a clone, and keep it across their restarts.
pub fn daemon_children(
    config: &Config,
    db: &Database,
    health: &Health,
    board: &SyncBoard,
    instance: &Instance,
    metrics: &Metrics,
) -> Result<Vec<Arc<dyn ChildSpec>>, TemuError> {
    let db_args = DbActorArgs {
        db: db.clone(),
        health: health.clone(),
        instance: instance.clone(),
    };
    let temu = TemuClient::build(
        &config.temu,
        &config.apps,
        &config.shops,
        ClientTuning::from_config(&config.temu),
        Observers {
            health: Some(health.clone()),
            metrics: Some(metrics.clone()),
        },
    )?;
    let temu_args = TemuActorArgs {
        client: temu.clone(),
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
    let run_slots = Arc::new(tokio::sync::Semaphore::new(
        config.sync.max_concurrent_runs.max(1),
    ));
    for shop in &config.shops {
        for &stream in &shop.streams {
            let args = SyncActorArgs {
                shop: shop.clone(),
                stream,
                config: config.sync.clone(),
                db: db.clone(),
                health: health.clone(),
                board: board.clone(),
                run_slots: run_slots.clone(),
                instance_id: instance.id.clone(),
                temu: temu.clone(),
                call_timeout: config.supervisor.call_timeout,
                stop_timeout: config.supervisor.shutdown_timeout / 2,
                // Spread the first runs over a few seconds instead of starting all at once.
                first_run_after: Duration::from_millis(fastrand::u64(200..3000)),
                metrics: metrics.clone(),
            };
            children.push(Arc::new(ActorChild::new(
                actor_name(&shop.name, stream),
                move || (SyncActor, args.clone()),
                SyncMsg::Ping,
            )));
        }
    }
    Ok(children)
}

/// Applies pending migrations (creating the database first when allowed) and returns what ran.
pub async fn migrate(config: &Config) -> Result<Vec<String>, crate::db::DbError> {
    let db = Database::new(config.database.clone())?;
    if config.database.create_database && db.connector().ensure_database().await? {
        tracing::info!(database = db.connector().dbname(), "created the database");
    }
    crate::db::migrate::run_pending(db.connector()).await
}

pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            // Without signal handlers we can only wait for Ctrl-C through tokio's fallback.
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
