//! One attempt: wait for a breaker permit, a connection slot and the app's QPS budget, sign the
//! parameters with a fresh timestamp, send, and classify the answer into an envelope or a
//! [`TemuError`] (transport kind, HTTP status with `Retry-After`, decode, API error).
//!
//! Owns: settling the breaker permit with the attempt's verdict (a transport failure or a 5xx
//! counts against the router; anything the router answered properly counts for it).
//! Must not: retry or sleep — the loop in [`super::call`] decides what happens next.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::SemaphorePermit;
use tokio::time::Instant;

use crate::config::TemuConfig;

use super::super::circuit::Permit;
use super::super::envelope::{excerpt, Envelope, TemuError, TransportKind};
use super::super::redact::url_label;
use super::super::shop::TemuShop;
use super::super::sign::Params;
use super::{Counters, TemuClient};

/// The whole-request bound of one attempt: `temu.timeout`, cut to what is left of the call's deadline.
pub fn attempt_timeout(cfg: &TemuConfig, remaining: Duration) -> Duration {
    cfg.timeout.min(remaining)
}

/// Counts a request in flight while it lives.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(c: &'a Counters) -> Self {
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TemuClient {
    /// One signed request for `shop`. `sent_at` is set when the request leaves (for the
    /// duration metric); it stays `None` when the attempt was refused before sending.
    pub(super) async fn attempt(
        &self,
        shop: &TemuShop,
        api: &str,
        business: &Params,
        deadline: Instant,
        sent_at: &mut Option<Instant>,
    ) -> Result<Envelope, TemuError> {
        let breaker = shop.breaker();
        let permit = breaker
            .try_acquire()
            .map_err(|retry_in| TemuError::CircuitOpen {
                target: breaker.target().to_string(),
                retry_in,
            })?;
        let _slot = self.connection_slot().await?;
        self.wait_for_budget(shop).await;
        let _in_flight = InFlight::enter(&self.inner.counters);
        let body = signed_body(shop, api, business)?;
        *sent_at = Some(Instant::now());
        let answer = self.exchange(shop, api, body, deadline).await;
        self.settle(
            permit,
            answer
                .as_ref()
                .map_or_else(|e| !e.is_transport_failure(), |_| true),
        );
        self.decode(api, &answer?)
    }

    /// A connection slot, waiting at most `temu.pool_timeout`.
    async fn connection_slot(&self) -> Result<SemaphorePermit<'_>, TemuError> {
        let inner = &*self.inner;
        match tokio::time::timeout(inner.cfg.pool_timeout, inner.slots.acquire()).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_closed)) => Err(TemuError::Unavailable("client closed".into())),
            Err(_) => {
                inner.counters.pool_timeouts.fetch_add(1, Ordering::Relaxed);
                Err(TemuError::PoolTimeout {
                    waited: inner.cfg.pool_timeout,
                })
            }
        }
    }

    /// Waits for the shop's app to have QPS budget; a wait of a millisecond or more is recorded.
    async fn wait_for_budget(&self, shop: &TemuShop) {
        let started = Instant::now();
        shop.limiter().until_ready().await;
        let waited = started.elapsed();
        if waited >= Duration::from_millis(1) {
            self.record_rate_limit_wait(shop, waited);
        }
    }

    /// Sends `body` and reads the answer's bytes; a status other than 200 is an error.
    async fn exchange(
        &self,
        shop: &TemuShop,
        api: &str,
        body: Vec<u8>,
        deadline: Instant,
    ) -> Result<bytes::Bytes, TemuError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let response = self
            .inner
            .http
            .post(shop.url())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(attempt_timeout(&self.inner.cfg, remaining))
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(api, shop.url(), e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            return Err(TemuError::Http {
                api: api.to_string(),
                status: status.as_u16(),
                retry_after,
            });
        }
        response
            .bytes()
            .await
            .map_err(|e| self.transport_error(api, shop.url(), e))
    }

    /// The envelope of a 200 answer: a success, or the API error it carries.
    fn decode(&self, api: &str, bytes: &[u8]) -> Result<Envelope, TemuError> {
        let envelope = Envelope::parse(bytes).map_err(|detail| TemuError::Decode {
            api: api.to_string(),
            detail: self.scrub(&detail),
            excerpt: self.scrub(&excerpt(bytes, 120)),
            body_unreadable: true,
        })?;
        if envelope.success {
            Ok(envelope)
        } else {
            Err(TemuError::Api {
                api: api.to_string(),
                code: envelope.code,
                message: self.scrub(&excerpt(envelope.message.as_bytes(), 300)),
                request_id: envelope.request_id,
            })
        }
    }

    /// Settles the breaker permit; publishes the circuits when the state changed.
    fn settle(&self, permit: Permit<'_>, ok: bool) {
        let changed = if ok {
            permit.success()
        } else {
            permit.failure()
        };
        if changed {
            self.publish_circuits();
        }
    }

    /// A reqwest error as a scrubbed transport error, without its URL.
    fn transport_error(&self, api: &str, url: &str, e: reqwest::Error) -> TemuError {
        let kind = transport_kind(&e);
        let e = e.without_url();
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        TemuError::Transport {
            api: api.to_string(),
            kind,
            target: url_label(url),
            detail: self.scrub(&excerpt(detail.as_bytes(), 300)),
        }
    }
}

/// The request body: the business parameters, the common ones, a fresh timestamp, and the sign.
fn signed_body(shop: &TemuShop, api: &str, business: &Params) -> Result<Vec<u8>, TemuError> {
    let mut params = business.clone();
    let common = [
        ("type", api),
        ("app_key", shop.app_key()),
        ("access_token", shop.access_token().expose()),
        ("data_type", "JSON"),
    ];
    for (k, v) in common {
        params
            .insert(k, v)
            .map_err(|e| TemuError::Config(format!("cannot encode {k}: {e}")))?;
    }
    params
        .insert("timestamp", &Utc::now().timestamp())
        .map_err(|e| TemuError::Config(format!("cannot encode timestamp: {e}")))?;
    let sign = params.sign(shop.app_secret().expose());
    Ok(params.to_body(&sign))
}

fn transport_kind(e: &reqwest::Error) -> TransportKind {
    if e.is_timeout() {
        return TransportKind::Timeout;
    }
    if e.is_connect() {
        return TransportKind::Connect;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(kind) = source_kind(s) {
            return kind;
        }
        source = s.source();
    }
    if e.is_body() || e.is_decode() {
        TransportKind::Read
    } else {
        TransportKind::Other
    }
}

/// What one link of an error's source chain says about the failure, if anything.
fn source_kind(s: &(dyn std::error::Error + 'static)) -> Option<TransportKind> {
    if let Some(io) = s.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind::*;
        match io.kind() {
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                return Some(TransportKind::Reset)
            }
            TimedOut => return Some(TransportKind::Timeout),
            _ => {}
        }
    }
    if let Some(h) = s.downcast_ref::<hyper::Error>() {
        if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
            return Some(TransportKind::Reset);
        }
        if h.is_timeout() {
            return Some(TransportKind::Timeout);
        }
    }
    None
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.with_timezone(&Utc) - Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_date() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
