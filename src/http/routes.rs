//! The built-in routes: the health probes `/health`, `/livez` and `/readyz`, and `/metrics`.
//!
//! Owns: the handlers of the probe routes and [`Router::standard`], the table the daemon serves.
//! Routes of other components are added to that table by their owners (the sync's `/status` and
//! `POST /sync/…` by `crate::sync::control::routes`).
//!
//! Must not: wait on the database, the Temu API or an actor from `/health` or `/readyz` (invariant 6:
//! they read the in-memory snapshot and nothing else). `/livez` waits on the liveness probe, always
//! under its own deadline. Probe routes and `/metrics` are exempt from the rate limit so monitors and
//! Prometheus are never told 429. `/metrics` reads the health snapshot and the in-memory registry only.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::problem::ApiError;
use super::router::{HandlerResult, RateLimit, Req, Router};
use crate::health::Status;

/// Media type of health reports (draft-inadarei-api-health-check).
pub const HEALTH_JSON: &str = "application/health+json";

/// The longest `/livez` waits for the supervisor (also capped at half of `request_timeout`).
pub const LIVENESS_DEADLINE: Duration = Duration::from_secs(1);

impl Router {
    /// The routes the daemon serves: `GET`/`HEAD` `/health`, `/livez`, `/readyz`, `/metrics`.
    pub fn standard() -> Self {
        Router::new()
            .add(Method::GET, "/health", RateLimit::Exempt, health)
            .add(Method::GET, "/livez", RateLimit::Exempt, livez)
            .add(Method::GET, "/readyz", RateLimit::Exempt, readyz)
            .add(Method::GET, "/metrics", RateLimit::Exempt, metrics)
    }
}

/// Serializes `value` as the body of a response with the given status and content type, marked
/// `Cache-Control: no-store`.
pub fn json_response<T: Serialize>(
    status: StatusCode,
    content_type: &'static str,
    value: &T,
) -> HandlerResult {
    let body = serde_json::to_vec(value)
        .map_err(|err| ApiError::Internal(format!("could not serialize the response: {err}")))?;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The small body of `/livez` and `/readyz`.
#[derive(Serialize)]
struct ProbeBody<'a> {
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
}

fn probe(ok: bool, output: Option<&str>) -> HandlerResult {
    let (status, code) = if ok {
        (Status::Pass, StatusCode::OK)
    } else {
        (Status::Fail, StatusCode::SERVICE_UNAVAILABLE)
    };
    json_response(code, HEALTH_JSON, &ProbeBody { status, output })
}

/// `GET /health`: the full report; `pass`/`warn` → 200, `fail` → 503. Reads the snapshot only
/// (including, in the daemon, how long ago the supervisor answered the pinger: a frozen runtime
/// fails `supervisor:liveness`).
async fn health(req: Req) -> HandlerResult {
    let (status, body) = req.ctx.health.report_body().map_err(|err| {
        ApiError::Internal(format!("could not serialize the health report: {err}"))
    })?;
    let code = match status {
        Status::Pass | Status::Warn => StatusCode::OK,
        Status::Fail => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(HEALTH_JSON));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /livez`: 200 when the supervisor answers within the liveness deadline, else 503.
async fn livez(req: Req) -> HandlerResult {
    let deadline = LIVENESS_DEADLINE.min(req.ctx.config.request_timeout / 2);
    let answer = (req.ctx.liveness)(deadline);
    // The probe is trusted to honour its deadline, but a probe that never answers must not hang
    // the request either.
    match tokio::time::timeout(deadline, answer).await {
        Ok(true) => probe(true, None),
        Ok(false) => probe(false, Some("the supervisor is not responding")),
        Err(_) => {
            let output = format!(
                "the supervisor did not answer within {} ms",
                deadline.as_millis()
            );
            probe(false, Some(&output))
        }
    }
}

/// `GET /metrics`: the Prometheus text exposition (format 0.0.4), health-mirroring series
/// refreshed from the snapshot first. Never waits on anything.
async fn metrics(req: Req) -> HandlerResult {
    let body = req.ctx.metrics.render(&req.ctx.health);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /readyz`: 200 when the database is reachable and migrated, else 503 with the reason.
async fn readyz(req: Req) -> HandlerResult {
    match req.ctx.health.readiness() {
        Ok(()) => probe(true, None),
        Err(reason) => probe(false, Some(&reason)),
    }
}
