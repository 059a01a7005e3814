//! The call loop: attempts under one deadline, with retries, backoff and one re-sign.
//!
//! Owns: what happens after a failed attempt — re-sign once at once on a timestamp error,
//! retry a retryable error after a full-jitter backoff (at least the server's `Retry-After`) up
//! to `temu.max_retries`, and stop with [`TemuError::Deadline`] (carrying the last cause) when the
//! deadline comes first; decoding the successful envelope's result into the caller's type.
//! Must not: sleep past the deadline, or build a request itself (that is [`super::attempt`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use super::super::envelope::{excerpt, ApiResponse, Envelope, ErrorClass, TemuError};
use super::super::shop::TemuShop;
use super::super::sign::Params;
use super::TemuClient;

/// What the loop does after a failed attempt.
enum Next {
    /// Try again now (re-signed with a fresh timestamp).
    Resign,
    /// Try again after this backoff.
    RetryAfter(Duration),
    /// Give up with this error.
    Stop(TemuError),
}

/// Where one call stands.
struct Tries {
    /// The call's budget and the instant it runs out.
    budget: Duration,
    deadline: Instant,
    attempts: u32,
    retries: u32,
    resigned: bool,
    /// The last failure (the cause a deadline error carries).
    last: Option<TemuError>,
}

impl Tries {
    fn deadline_error(&mut self, api: &str) -> TemuError {
        TemuError::Deadline {
            api: api.to_string(),
            deadline: self.budget,
            attempts: self.attempts,
            last: self.last.take().map(Box::new),
        }
    }
}

impl TemuClient {
    /// One API call with typed request and result, retried within the configured bounds.
    /// `deadline` (if given) shortens `temu.call_deadline`, never extends it.
    pub async fn call<Req: Serialize, Res: DeserializeOwned>(
        &self,
        shop: &TemuShop,
        api: &str,
        request: &Req,
        deadline: Option<Duration>,
    ) -> Result<ApiResponse<Res>, TemuError> {
        let business = Params::from_business(request)
            .map_err(|e| TemuError::Config(format!("{api}: request cannot be serialized: {e}")))?;
        let envelope = self.call_params(shop, api, business, deadline).await?;
        let result = match &envelope.result {
            None => None,
            Some(raw) => {
                Some(
                    serde_json::from_str::<Res>(raw.get()).map_err(|e| TemuError::Decode {
                        api: api.to_string(),
                        detail: format!("result does not match the expected shape: {e}"),
                        excerpt: self.scrub(&excerpt(raw.get().as_bytes(), 160)),
                        body_unreadable: false,
                    })?,
                )
            }
        };
        Ok(ApiResponse {
            result,
            raw: envelope.result,
            request_id: envelope.request_id,
        })
    }

    /// One API call with pre-built business parameters; returns the successful envelope.
    async fn call_params(
        &self,
        shop: &TemuShop,
        api: &str,
        business: Params,
        deadline: Option<Duration>,
    ) -> Result<Envelope, TemuError> {
        let budget = deadline
            .map(|d| d.min(self.inner.cfg.call_deadline))
            .unwrap_or(self.inner.cfg.call_deadline);
        let mut tries = Tries {
            budget,
            deadline: Instant::now() + budget,
            attempts: 0,
            retries: 0,
            resigned: false,
            last: None,
        };
        self.inner.counters.calls.fetch_add(1, Ordering::Relaxed);
        loop {
            tries.attempts += 1;
            self.inner.counters.attempts.fetch_add(1, Ordering::Relaxed);
            let mut sent_at: Option<Instant> = None;
            let outcome = tokio::time::timeout_at(
                tries.deadline,
                self.attempt(shop, api, &business, tries.deadline, &mut sent_at),
            )
            .await;
            self.observe_attempt(api, sent_at, &outcome);
            let err = match outcome {
                Err(_elapsed) => return Err(tries.deadline_error(api)),
                Ok(Ok(envelope)) => return Ok(envelope),
                Ok(Err(err)) => err,
            };
            self.attempt_failed(shop, api, tries.attempts, &err);
            match self.next(shop, api, &mut tries, err) {
                Next::Resign => {}
                Next::RetryAfter(delay) => tokio::time::sleep(delay).await,
                Next::Stop(err) => return Err(err),
            }
        }
    }

    /// Notes a failed attempt: a refused token marks the shop's token state; the failure is logged.
    fn attempt_failed(&self, shop: &TemuShop, api: &str, attempts: u32, err: &TemuError) {
        if err.is_token_problem() {
            self.token_refused(shop, err);
        }
        tracing::debug!(shop = %shop.name(), temu_type = api, attempts, error_class = err.class().as_str(), code = ?err.code(), error = %err, "temu attempt failed");
    }

    /// Decides what follows the failure `err` (and records a retry).
    fn next(&self, shop: &TemuShop, api: &str, tries: &mut Tries, err: TemuError) -> Next {
        let class = err.class();
        if class == ErrorClass::Resign && !tries.resigned {
            // Clock skew: sign again with a fresh timestamp, once, right away.
            tries.resigned = true;
            tries.last = Some(err);
            return Next::Resign;
        }
        if !err.worth_retrying() || tries.retries >= self.inner.cfg.max_retries {
            if err.worth_retrying() {
                tracing::warn!(shop = %shop.name(), temu_type = api, attempts = tries.attempts, error_class = class.as_str(), error = %err, "temu call failed after its retries");
            }
            return Next::Stop(err);
        }
        let delay = self.backoff(tries.retries, err.retry_after());
        tries.last = Some(err);
        if Instant::now() + delay >= tries.deadline {
            return Next::Stop(tries.deadline_error(api));
        }
        tries.retries += 1;
        self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
        self.record_retry(api);
        Next::RetryAfter(delay)
    }

    /// Full jitter: uniform in [0, min(max, base·2^retry)], but at least what the server asked for.
    fn backoff(&self, retry: u32, hint: Option<Duration>) -> Duration {
        let t = &self.inner.tuning;
        let ceiling = t
            .backoff_base
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX))
            .min(t.backoff_max);
        let jitter = ceiling.mul_f64(fastrand::f64());
        match hint {
            Some(h) => jitter.max(h.min(t.max_retry_after)),
            None => jitter,
        }
    }
}
