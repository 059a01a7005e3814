//! The accept loop: connection limits, HTTP/1 settings, and graceful shutdown.
//!
//! Owns: accepting connections (at most `http.max_connections` open at once: a slot is taken
//! *before* `accept`, so a connection beyond the cap waits in the kernel backlog), the hyper HTTP/1
//! builder (`header_read_timeout`, which in hyper 1.x also bounds how long an idle keep-alive
//! connection may sit before its next request; a read-buffer cap), the task of each connection,
//! the pruning of the rate limiter's key store, and the drain on shutdown (stop accepting, let
//! in-flight requests finish, bounded by `drain_timeout`, then drop what is left).
//!
//! Must not: look inside requests (that is `pipeline.rs`), or end because one connection failed:
//! accept errors are logged and retried, connection errors are logged at debug.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::pipeline::{self, Shared};
use super::rate_limit::PRUNE_INTERVAL;

/// Cap on a connection's read buffer (request line + headers must fit). hyper's minimum is 8 KiB.
const MAX_BUF_SIZE: usize = 64 * 1024;

/// Pause after an accept error that is not about one connection (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Aborts a background task when dropped, so nothing outlives [`run`] even if it is cancelled.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves until `shutdown` is cancelled, then drains.
pub(crate) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let config = &shared.ctx.config;
    let max_connections = config.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max_connections));
    let builder = http1_builder(config.header_read_timeout);
    let _pruner = spawn_pruner(&shared, &shutdown);

    tracing::info!(
        address = %local,
        max_connections,
        request_timeout_ms = config.request_timeout.as_millis() as u64,
        header_read_timeout_ms = config.header_read_timeout.as_millis() as u64,
        "HTTP endpoint listening"
    );

    let graceful = GracefulShutdown::new();
    let mut connections: JoinSet<()> = JoinSet::new();
    while let Some((permit, stream, peer)) = accept_next(&listener, &slots, &shutdown).await {
        while let Some(finished) = connections.try_join_next() {
            log_connection_end(finished);
        }
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, %peer, "could not set TCP_NODELAY");
        }
        let service_state = shared.clone();
        let service = service_fn(move |request| {
            let shared = service_state.clone();
            async move { Ok::<_, Infallible>(pipeline::handle(shared, peer, request).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            let _slot = permit;
            if let Err(err) = connection.await {
                // Header read timeouts, resets, malformed requests: the client's problem, not ours.
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        });
    }
    drain(listener, graceful, connections, drain_timeout).await;
    Ok(())
}

/// HTTP/1 with keep-alive, `header_read_timeout` (which also bounds an idle keep-alive
/// connection) and the read-buffer cap.
fn http1_builder(header_read_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_BUF_SIZE);
    builder
}

/// The task that prunes the rate limiter's key store every [`PRUNE_INTERVAL`] until
/// `shutdown`; `None` without a rate limiter.
fn spawn_pruner(shared: &Arc<Shared>, shutdown: &CancellationToken) -> Option<AbortOnDrop> {
    shared.limiter.is_some().then(|| {
        let shared = shared.clone();
        let stop = shutdown.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        if let Some(limiter) = &shared.limiter {
                            limiter.prune();
                        }
                    }
                }
            }
        }))
    })
}

/// The next connection with the slot it holds; `None` once `shutdown` is cancelled. A free slot
/// is taken first, so beyond the cap connections wait in the kernel backlog. Accept errors are
/// logged and retried (after [`ACCEPT_ERROR_BACKOFF`] unless they concern one connection only).
async fn accept_next(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    loop {
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            permit = slots.clone().acquire_owned() => permit.ok()?,
        };
        let err = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => return Some((permit, stream, peer)),
                Err(err) => err,
            },
        };
        if is_connection_error(&err) {
            tracing::debug!(error = %err, "accept: connection failed before it was accepted");
        } else {
            tracing::warn!(error = %err, "accept failed; retrying shortly");
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
            }
        }
    }
}

/// Stops accepting (connections still in the backlog are refused by the kernel), lets in-flight
/// requests finish within `drain_timeout`, then drops what is left.
async fn drain(
    listener: TcpListener,
    graceful: GracefulShutdown,
    mut connections: JoinSet<()>,
    drain_timeout: Duration,
) {
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        open_connections = open,
        drain_timeout_ms = drain_timeout.as_millis() as u64,
        "HTTP endpoint draining"
    );
    match tokio::time::timeout(drain_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("HTTP endpoint drained"),
        Err(_) => tracing::warn!(
            still_open = connections.len(),
            "HTTP drain timed out; closing the remaining connections"
        ),
    }
    connections.shutdown().await;
}

/// Accept errors that concern only the connection being accepted.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn log_connection_end(finished: Result<(), JoinError>) {
    if let Err(err) = finished {
        if err.is_panic() {
            tracing::error!(error = %err, "an HTTP connection task panicked");
        }
    }
}
