//! Running the endpoint on a thread of its own.
//!
//! Owns: [`spawn_server_thread`] — an OS thread named `http` with a single-threaded tokio runtime
//! that serves the routes and runs the liveness pinger (`liveness.rs`) — and the [`ServerThread`]
//! handle the daemon waits on at shutdown.
//!
//! Why a thread: the daemon's main runtime runs the sync (JSON decoding, record conversion,
//! database I/O) on a few worker threads. Served from those workers, a `/health` request queues
//! behind sync work, and a task that wrongly blocks a worker would silence the endpoint as well.
//! On its own thread the endpoint keeps answering — and `/livez` reports a supervisor that does not
//! answer as a clear 503 instead of a connection that times out. Answering is not enough: the
//! snapshot `/health` serves stops changing when the main runtime is stuck, so this thread also
//! pings the supervisor every second and records the answers in the snapshot, and arms its
//! freshness checks (`supervisor:liveness`, `health:snapshot`): a frozen daemon turns `/health` to
//! 503 within 10 s of its last answer. Everything the routes touch is shared state (the health
//! snapshot, the metrics registry) or a message to an actor, which work from any runtime.
//!
//! Must not: run daemon work on this runtime (it is the endpoint's alone).

use std::io;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::liveness::watch_supervisor;
use super::{serve_with_router, HttpContext, Router};
use crate::health::FreshnessBounds;

/// The endpoint's thread; [`ServerThread::finished`] resolves when it has drained and stopped.
#[derive(Debug)]
pub struct ServerThread {
    done: oneshot::Receiver<io::Result<()>>,
}

impl ServerThread {
    /// Waits until the server has stopped (after `shutdown` was cancelled), at most `deadline`.
    /// `Err` names why it did not end cleanly.
    pub async fn finished(self, deadline: Duration) -> Result<(), String> {
        match tokio::time::timeout(deadline, self.done).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("HTTP server ended with an error: {e}")),
            Ok(Err(_)) => Err("the HTTP server thread ended without reporting (a panic?)".into()),
            Err(_) => Err("HTTP server did not drain in time".into()),
        }
    }
}

/// Starts serving `listener` on a new thread until `shutdown` is cancelled, then drains (bounded
/// by `drain_timeout`). On the same thread, the liveness pinger asks `ctx.liveness` every second
/// and the health snapshot judges its freshness by `freshness` from then on. Fails only if the
/// thread, its runtime or the listener hand-over fails.
pub fn spawn_server_thread(
    listener: tokio::net::TcpListener,
    ctx: HttpContext,
    router: Router,
    shutdown: CancellationToken,
    drain_timeout: Duration,
    freshness: FreshnessBounds,
) -> io::Result<ServerThread> {
    // The listener is registered with the caller's runtime; hand it over as a plain socket and
    // register it again with the endpoint's own runtime.
    let listener = listener.into_std()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("http")
        .build()?;
    let (tx, done) = oneshot::channel();
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let result = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                // Armed together with the pinger that keeps it fed, never one without the other.
                ctx.health.watch_freshness(freshness);
                let pinger = tokio::spawn(watch_supervisor(
                    ctx.liveness.clone(),
                    ctx.health.clone(),
                    freshness.liveness_fail_after,
                    shutdown.clone(),
                ));
                let served =
                    serve_with_router(listener, ctx, router, shutdown, drain_timeout).await;
                pinger.abort();
                served
            });
            // Connections still open after the drain are dropped with the runtime, promptly.
            runtime.shutdown_timeout(Duration::from_millis(100));
            let _ = tx.send(result);
        })?;
    Ok(ServerThread { done })
}
