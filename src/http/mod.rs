//! The HTTP endpoint: the health probes and `/metrics`, and the routes other components add to
//! its table (the sync's `/status` and `POST /sync/…`, in [`crate::sync::control`]).
//!
//! Owns: the hyper 1 HTTP/1.1 server the daemon runs on a thread and runtime of its own (not an
//! actor; see `thread.rs`). It reads the
//! [`Health`](crate::health::Health) snapshot and asks the supervisor whether it is alive through
//! the [`HttpContext::liveness`] callback; triggers reach the sync through the handlers that
//! `crate::sync::control` adds.
//!
//! Layout, one concern per file:
//! - `server.rs`: accept loop, connection cap, header read timeout, graceful drain;
//! - `thread.rs`: the endpoint's own thread and single-threaded runtime;
//! - `liveness.rs`: the pinger on that runtime that records the supervisor's answers for `/health`;
//! - `pipeline.rs`: per request — request id, routing, rate limit, deadline, panic → 500, logging,
//!   `X-Request-Id` / `X-Process-Time`;
//! - `router.rs`: the route table ([`Router`]) and what a handler gets ([`Req`]);
//! - `routes.rs`: the built-in routes (`/health`, `/livez`, `/readyz`, `/metrics`);
//! - `problem.rs`: [`ApiError`] classes and `application/problem+json`;
//! - `rate_limit.rs`: the per-client-IP limit.
//!
//! Must not: wait on the database or the Temu API while answering `/health` or `/readyz`
//! (invariant 6), put a secret or a request header in a log line or a response, or let one bad
//! request, panic or client take the server down.

mod liveness;
mod pipeline;
mod problem;
mod rate_limit;
mod router;
mod routes;
mod server;
mod thread;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use liveness::LIVENESS_PING_EVERY;
pub use pipeline::{X_PROCESS_TIME, X_REQUEST_ID};
pub use problem::{ApiError, PROBLEM_JSON};
pub use rate_limit::{client_key, ClientRateLimiter};
pub use router::{Handler, HandlerResult, RateLimit, Req, Router};
pub use routes::{json_response, HEALTH_JSON, LIVENESS_DEADLINE};
pub use thread::{spawn_server_thread, ServerThread};

/// Answers whether the supervisor responds within the given deadline (the supervisor's own
/// ping type: one declaration).
pub use crate::supervisor::PingFn as Liveness;

/// What the endpoint reads.
#[derive(Clone)]
pub struct HttpContext {
    pub health: crate::health::Health,
    /// Answers whether the supervisor responds within the given deadline (used by /livez, and by
    /// the liveness pinger of [`spawn_server_thread`]).
    pub liveness: Liveness,
    pub config: crate::config::HttpConfig,
    /// The Prometheus registry served at `/metrics`.
    pub metrics: crate::metrics::Metrics,
}

impl std::fmt::Debug for HttpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpContext")
            .field("health", &self.health)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Serves the standard routes ([`Router::standard`]) until `shutdown` is cancelled, then stops
/// accepting and lets in-flight requests finish (bounded by `drain_timeout`).
///
/// Returns an error only when the listener's address cannot be read; accept and connection errors
/// are logged and do not end the server.
pub async fn serve(
    listener: TcpListener,
    ctx: HttpContext,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    serve_with_router(listener, ctx, Router::standard(), shutdown, drain_timeout).await
}

/// [`serve`] with a caller-supplied route table (e.g. `Router::standard().route(..)`), for tests and
/// for wiring routes whose handlers need more than [`HttpContext`] (captured in their closures).
pub async fn serve_with_router(
    listener: TcpListener,
    ctx: HttpContext,
    router: Router,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    let limiter = ClientRateLimiter::new(
        ctx.config.rate_limit_per_second,
        ctx.config.rate_limit_burst,
    );
    let shared = Arc::new(pipeline::Shared {
        ctx: Arc::new(ctx),
        router,
        limiter,
    });
    server::run(listener, shared, shutdown, drain_timeout).await
}
