//! What happens around every request, whatever its route.
//!
//! Owns: the request id, routing (404/405), the per-client rate limit, the request deadline
//! (`http.request_timeout` → 504), turning a handler panic into a 500, rendering [`ApiError`]s as
//! problem+json, `HEAD` bodies, the `X-Request-Id` / `X-Process-Time` / `Cache-Control` headers, and
//! the one log line per request.
//!
//! Must not: log headers, query strings or bodies (they can carry tokens): the log line has the
//! method, the path, the status, the duration, the request id and the client address only. Probe
//! routes (`/health`, `/livez`, `/readyz`) are logged at `debug` so a monitor polling every few
//! seconds does not flood the journal; every other request is logged at `info`. Internal errors and
//! panics are logged at `error` with their detail, which never goes to the client; database,
//! upstream and deadline failures at `warn`.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_LENGTH};
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};

use super::problem::ApiError;
use super::rate_limit::ClientRateLimiter;
use super::router::{Match, RateLimit, Req, Router};
use super::HttpContext;

/// `X-Request-Id`: echoed on every response and in the request's log line.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Process-Time`: seconds spent on the request inside the server, e.g. `0.000123`.
pub const X_PROCESS_TIME: HeaderName = HeaderName::from_static("x-process-time");

/// Everything a connection needs to answer requests.
pub(crate) struct Shared {
    pub ctx: Arc<HttpContext>,
    pub router: Router,
    pub limiter: Option<ClientRateLimiter>,
}

/// Answers one request. Never fails and never panics outward: every outcome is a response.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_string();

    let (outcome, policy) = dispatch(&shared, peer, request, &request_id).await;
    let mut response = match outcome {
        Ok(response) => response,
        Err(err) => {
            match &err {
                ApiError::Internal(detail) => tracing::error!(
                    %request_id,
                    %method,
                    %path,
                    error = %detail,
                    "request failed with an internal error"
                ),
                ApiError::DatabaseUnavailable(_)
                | ApiError::Upstream(_)
                | ApiError::DeadlineExceeded(_) => tracing::warn!(
                    %request_id,
                    %method,
                    %path,
                    error = %err,
                    "request failed"
                ),
                _ => {}
            }
            err.to_response(&path, &request_id)
        }
    };

    if method == Method::HEAD {
        strip_body(&mut response);
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID, value);
    }
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let elapsed = started.elapsed();
    if let Ok(value) = HeaderValue::from_str(&format!("{:.6}", elapsed.as_secs_f64())) {
        headers.insert(X_PROCESS_TIME, value);
    }

    let status = response.status().as_u16();
    let duration_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    let client = peer.ip();
    if policy == RateLimit::Exempt {
        tracing::debug!(%method, %path, status, duration_ms, %request_id, %client, "request");
    } else {
        tracing::info!(%method, %path, status, duration_ms, %request_id, %client, "request");
    }
    response
}

/// Routes, rate-limits and runs the handler under the deadline. Returns the outcome and the route's
/// rate-limit policy (which also decides the log level).
async fn dispatch(
    shared: &Shared,
    peer: SocketAddr,
    request: Request<Incoming>,
    request_id: &Arc<str>,
) -> (Result<Response<Full<Bytes>>, ApiError>, RateLimit) {
    let (parts, body) = request.into_parts();
    let found = shared.router.find(&parts.method, parts.uri.path());
    let policy = match &found {
        Match::Found { rate_limit, .. } | Match::MethodNotAllowed { rate_limit, .. } => *rate_limit,
        Match::NotFound => RateLimit::PerClient,
    };
    if policy == RateLimit::PerClient {
        if let Some(limiter) = &shared.limiter {
            if let Err(retry_after) = limiter.check(peer.ip()) {
                return (Err(ApiError::RateLimited { retry_after }), policy);
            }
        }
    }
    let (handler, params) = match found {
        Match::Found {
            handler, params, ..
        } => (handler, params),
        Match::MethodNotAllowed { allow, .. } => {
            return (Err(ApiError::MethodNotAllowed { allow }), policy)
        }
        Match::NotFound => {
            return (
                Err(ApiError::NotFound("no route for this path".to_string())),
                policy,
            )
        }
    };

    let timeout = shared.ctx.config.request_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let req = Req {
        parts,
        params,
        ctx: shared.ctx.clone(),
        request_id: request_id.clone(),
        peer,
        deadline,
        body: Some(body),
    };
    // The handler is called inside the future so that a panic while building it is caught too.
    let run = AssertUnwindSafe(async move { handler(req).await }).catch_unwind();
    let outcome = match tokio::time::timeout_at(deadline, run).await {
        Err(_elapsed) => Err(ApiError::DeadlineExceeded(timeout)),
        Ok(Err(panic)) => Err(ApiError::Internal(format!(
            "handler panicked: {}",
            panic_message(panic.as_ref())
        ))),
        Ok(Ok(result)) => result,
    };
    (outcome, policy)
}

/// The client's `X-Request-Id` when it is a sane token (a proxy in front may set one), else a new
/// random id of 16 hex digits.
fn request_id(headers: &HeaderMap) -> Arc<str> {
    let incoming = headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    match incoming {
        Some(id) => Arc::from(id),
        None => Arc::from(format!("{:016x}", fastrand::u64(..))),
    }
}

/// A `HEAD` answer: the `GET` status and headers, the `GET` body's length, no body.
fn strip_body(response: &mut Response<Full<Bytes>>) {
    if let Some(len) = response.body().size_hint().exact() {
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    *response.body_mut() = Full::new(Bytes::new());
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_generated_or_taken_when_sane() {
        let mut headers = HeaderMap::new();
        let generated = request_id(&headers);
        assert_eq!(generated.len(), 16);
        assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(generated, request_id(&headers));

        headers.insert(X_REQUEST_ID, HeaderValue::from_static("proxy-abc.123_x"));
        assert_eq!(&*request_id(&headers), "proxy-abc.123_x");

        headers.insert(X_REQUEST_ID, HeaderValue::from_static("bad id; injected"));
        assert_eq!(request_id(&headers).len(), 16);
        let long = "a".repeat(65);
        headers.insert(X_REQUEST_ID, HeaderValue::from_str(&long).expect("ascii"));
        assert_eq!(request_id(&headers).len(), 16);
    }
}
