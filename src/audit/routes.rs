//! The operator routes: `POST /sync/{shop}/{stream}/backfill` (body `{"from": DATE, "to": DATE}`)
//! and `POST /sync/{shop}/{stream}/reset`, with the admin token like every control route.
//!
//! Owns: turning a request into the operator command (`app::ops`) and its answer. A backfill is
//! checked at once (404 unknown shop or stream, 400 bad, reversed or future range, or a stream
//! without a time range) and then runs in the background on the daemon's runtime as a tracked
//! task (202; its run appears in `sync_runs` and the log); a reset is done before the answer
//! (200, or 503 when the lease stayed held or the database is down). Must not: run work on the
//! endpoint's own thread (it answers `/health`), or wait without a deadline.

use std::time::Duration;

use chrono::Utc;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::operator::{OpError, Operator};
use super::parse_range;
use crate::app::ops;
use crate::config::Secret;
use crate::http::{json_response, ApiError, HandlerResult, Req, Router};
use crate::shutdown::Shutdown;
use crate::sync::control::authorize;

/// What the operator routes need.
#[derive(Clone)]
pub struct OpsControl {
    pub operator: Operator,
    pub admin_token: Option<Secret>,
    /// The daemon's runtime: a backfill runs there, not on the endpoint's thread.
    pub runtime: tokio::runtime::Handle,
    pub shutdown: Shutdown,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillBody {
    from: String,
    to: String,
}

#[derive(Serialize)]
struct Answer {
    shop: String,
    stream: String,
    outcome: &'static str,
    message: String,
}

impl Answer {
    fn new(shop: String, stream: String, outcome: &'static str, message: String) -> Self {
        Self {
            shop,
            stream,
            outcome,
            message,
        }
    }
}

/// Largest accepted request body.
const BODY_LIMIT: usize = 4096;

/// Adds the operator routes to `router`.
pub fn routes(router: Router, control: OpsControl) -> Router {
    let reset = control.clone();
    router
        .route(
            Method::POST,
            "/sync/{shop}/{stream}/backfill",
            move |req: Req| {
                let control = control.clone();
                async move { control.backfill(req).await }
            },
        )
        .route(
            Method::POST,
            "/sync/{shop}/{stream}/reset",
            move |req: Req| {
                let control = reset.clone();
                async move { control.reset(&req).await }
            },
        )
}

/// Refusals become 404 (not configured) or 400 (bad arguments); the rest 503 / 500.
fn api_error(e: OpError) -> ApiError {
    match e {
        OpError::NotConfigured(m) => ApiError::NotFound(m),
        OpError::Refused(m) => ApiError::BadRequest(m),
        OpError::Unavailable(m) => ApiError::DatabaseUnavailable(m),
        OpError::Failed(m) => ApiError::Internal(m),
    }
}

fn names(req: &Req) -> (String, String) {
    let shop = req.param("shop").unwrap_or_default().to_string();
    (shop, req.param("stream").unwrap_or_default().to_string())
}

impl OpsControl {
    async fn backfill(&self, mut req: Req) -> HandlerResult {
        authorize(self.admin_token.as_ref(), &req)?;
        let (shop, stream) = names(&req);
        ops::backfill_target(&self.operator, &shop, &stream).map_err(api_error)?;
        let bytes = req.body_bytes(BODY_LIMIT).await?;
        let body: BackfillBody = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::BadRequest(format!(
                "expected a JSON body {{\"from\": DATE, \"to\": DATE}}: {e}"
            ))
        })?;
        parse_range(&body.from, &body.to, Utc::now())
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let (op, s, st) = (self.operator.clone(), shop.clone(), stream.clone());
        let task = async move {
            match ops::backfill(&op, &s, &st, &body.from, &body.to).await {
                Ok(summary) => tracing::info!(shop = %s, stream = %st, "{summary}"),
                Err(e) => tracing::warn!(shop = %s, stream = %st, error = %e, "backfill failed"),
            }
        };
        self.shutdown.spawn_on(task, &self.runtime);
        let message = "backfill started; its run is recorded in sync_runs".to_string();
        let answer = Answer::new(shop, stream, "started", message);
        json_response(StatusCode::ACCEPTED, "application/json", &answer)
    }

    async fn reset(&self, req: &Req) -> HandlerResult {
        authorize(self.admin_token.as_ref(), req)?;
        let (shop, stream) = names(req);
        ops::target(&self.operator, &shop, &stream).map_err(api_error)?;
        let (op, s, st) = (self.operator.clone(), shop.clone(), stream.clone());
        // On the daemon's runtime, bounded: a lease held by a long run is not waited for here.
        let mut op = op;
        op.lease_wait = op.lease_wait.min(Duration::from_secs(10));
        let done = self
            .runtime
            .spawn(async move { ops::reset(&op, &s, &st).await })
            .await
            .map_err(|e| ApiError::Internal(format!("the reset task ended: {e}")))?;
        let message = done.map_err(api_error)?;
        let answer = Answer::new(shop, stream, "reset", message);
        json_response(StatusCode::OK, "application/json", &answer)
    }
}
