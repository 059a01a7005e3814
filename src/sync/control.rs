//! The HTTP face of the sync: `GET /status`, `POST /sync/{shop}/{stream}`, `POST /sync/{shop}`.
//!
//! Owns: admin-token checking for the control routes (Bearer, constant-time compare), turning a
//! trigger into a call to the stream's actor with a deadline, and the status document. Must not:
//! wait on the database (status comes from the in-memory board) or leak the admin token.

use std::time::Duration;

use http::{Method, StatusCode};
use ractor::rpc::CallResult;
use ractor::ActorRef;
use serde::Serialize;

use super::actor::{actor_name, SyncMsg, TriggerOutcome};
use super::board::{StreamView, SyncBoard};
use crate::audit::{AuditBoard, AuditView};
use crate::config::{Secret, Stream};
use crate::http::{json_response, ApiError, HandlerResult, Req, Router};
use crate::temu::budget::Budgets;

/// What the control routes need.
#[derive(Clone)]
pub struct SyncControl {
    pub board: SyncBoard,
    pub admin_token: Option<Secret>,
    /// Deadline of the call to a sync actor.
    pub call_timeout: Duration,
    /// The scheduled audit's last results, shown in `/status`.
    pub audits: AuditBoard,
    /// This daemon's instance id (the lease owner `temu-sync status` shows).
    pub instance: String,
    /// The QPS budget of each app_key, for this daemon's current shares.
    pub budgets: Budgets,
}

#[derive(Serialize)]
struct StatusDoc {
    generated_at: chrono::DateTime<chrono::Utc>,
    /// Which daemon answers: the lease owner of the streams it runs.
    instance: String,
    /// This daemon's share of each app's QPS budget (calls a second), by app name.
    qps_shares: std::collections::BTreeMap<String, f64>,
    streams: Vec<StreamView>,
    /// The last scheduled audit of each shop × stream (absent until one ran).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    audits: Vec<AuditView>,
}

#[derive(Serialize)]
struct TriggerDoc {
    shop: String,
    results: Vec<TriggerResult>,
}

#[derive(Serialize)]
struct TriggerResult {
    stream: Stream,
    outcome: &'static str,
}

/// Adds the sync routes to `router`.
pub fn routes(router: Router, control: SyncControl) -> Router {
    let (status, one, all) = (control.clone(), control.clone(), control);
    router
        .route(Method::GET, "/status", move |_req: Req| {
            let status = status.clone();
            async move { status_doc(&status) }
        })
        .route(Method::POST, "/sync/{shop}/{stream}", move |req: Req| {
            let control = one.clone();
            async move { control.trigger_stream(&req).await }
        })
        .route(Method::POST, "/sync/{shop}", move |req: Req| {
            let control = all.clone();
            async move { control.trigger_shop(&req).await }
        })
}

/// `GET /status`: every stream as the board sees it.
fn status_doc(control: &SyncControl) -> HandlerResult {
    let doc = StatusDoc {
        generated_at: chrono::Utc::now(),
        instance: control.instance.clone(),
        qps_shares: control
            .budgets
            .iter()
            .map(|(_, b)| (b.app.clone(), b.bucket.rate()))
            .collect(),
        streams: control.board.views(),
        audits: control.audits.views(),
    };
    json_response(StatusCode::OK, "application/json", &doc)
}

fn parse_stream(text: &str) -> Result<Stream, ApiError> {
    stream_named(text).map_err(ApiError::NotFound)
}

/// The stream named `text` (as in URLs and the CLI), or a message listing the known names.
pub fn stream_named(text: &str) -> Result<Stream, String> {
    Stream::ALL
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| {
            let known: Vec<&str> = Stream::ALL.iter().map(|s| s.as_str()).collect();
            format!(
                "unknown stream {text:?}; expected one of {}",
                known.join(", ")
            )
        })
}

impl SyncControl {
    /// `POST /sync/{shop}/{stream}`: 202 started, 409 already running.
    async fn trigger_stream(&self, req: &Req) -> HandlerResult {
        self.authorize(req)?;
        let shop = req.param("shop").unwrap_or_default().to_string();
        let stream = parse_stream(req.param("stream").unwrap_or_default())?;
        if !self.board.contains(&shop, stream) {
            return Err(ApiError::NotFound(format!(
                "no stream {} is configured for shop {shop:?}",
                stream.as_str()
            )));
        }
        if self.trigger(&shop, stream).await? == TriggerOutcome::AlreadyRunning {
            return Err(ApiError::Conflict(format!(
                "a {} run of {shop} is already in progress",
                stream.as_str()
            )));
        }
        let results = vec![TriggerResult {
            stream,
            outcome: "started",
        }];
        json_response(
            StatusCode::ACCEPTED,
            "application/json",
            &TriggerDoc { shop, results },
        )
    }

    /// `POST /sync/{shop}`: every stream of the shop; 409 only when all were already running.
    async fn trigger_shop(&self, req: &Req) -> HandlerResult {
        self.authorize(req)?;
        let shop = req.param("shop").unwrap_or_default().to_string();
        let streams = self.board.streams_of(&shop);
        if streams.is_empty() {
            return Err(ApiError::NotFound(format!(
                "no shop named {shop:?} is configured"
            )));
        }
        let mut results = Vec::new();
        for stream in streams {
            let outcome = match self.trigger(&shop, stream).await? {
                TriggerOutcome::Started => "started",
                TriggerOutcome::AlreadyRunning => "already_running",
            };
            results.push(TriggerResult { stream, outcome });
        }
        if results.iter().all(|r| r.outcome == "already_running") {
            return Err(ApiError::Conflict(format!(
                "every stream of {shop} is already running"
            )));
        }
        json_response(
            StatusCode::ACCEPTED,
            "application/json",
            &TriggerDoc { shop, results },
        )
    }

    fn authorize(&self, req: &Req) -> Result<(), ApiError> {
        authorize(self.admin_token.as_ref(), req)
    }
}

/// Checks `Authorization: Bearer <http.admin_token>` (constant-time); every control route
/// (these and the operator routes of `audit/`) calls it.
pub fn authorize(admin_token: Option<&Secret>, req: &Req) -> Result<(), ApiError> {
    let Some(expected) = admin_token else {
        return Err(ApiError::Forbidden(
            "control routes are disabled: set http.admin_token".to_string(),
        ));
    };
    let given = req
        .parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(token) if constant_time_eq(token.as_bytes(), expected.expose().as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized(
            "the bearer token is not valid".to_string(),
        )),
        None => Err(ApiError::Unauthorized(
            "send Authorization: Bearer <http.admin_token>".to_string(),
        )),
    }
}

impl SyncControl {
    async fn trigger(&self, shop: &str, stream: Stream) -> Result<TriggerOutcome, ApiError> {
        let name = actor_name(shop, stream);
        let actor = ActorRef::<SyncMsg>::where_is(name).ok_or_else(|| {
            ApiError::DatabaseUnavailable(format!(
                "the {} actor of {shop} is restarting; try again shortly",
                stream.as_str()
            ))
        })?;
        match actor.call(SyncMsg::Trigger, Some(self.call_timeout)).await {
            Ok(CallResult::Success(outcome)) => Ok(outcome),
            _ => Err(ApiError::Internal(format!(
                "the {} actor of {shop} did not answer within {:?}",
                stream.as_str(),
                self.call_timeout
            ))),
        }
    }
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
