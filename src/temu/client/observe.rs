//! What the client tells its observers: API metrics per attempt (duration by outcome, error
//! codes, retries, rate-limit waits) and the state of every router's circuit and every shop's
//! token — as `/health` checks and as typed gauges, set together whenever that state changes.
//!
//! Owns: the health check names [`HEALTH_CIRCUIT`] and [`HEALTH_TOKENS`], the `outcome` and
//! `code` label values of the API series. Must not: put a message, a request id or a secret in a
//! label, or make an observer's absence an error (no observers: nothing is recorded).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use crate::config::Stream;
use crate::health::{Check, Health, Status};
use crate::metrics::{CircuitGauge, Metrics};

use super::super::circuit::{CircuitSnapshot, CircuitState};
use super::super::envelope::{Envelope, TemuError, TransportKind};
use super::super::shop::TemuShop;
use super::super::token::TokenState;
use super::TemuClient;

/// Health check names this client publishes.
pub const HEALTH_CIRCUIT: &str = "temu:circuit";
pub const HEALTH_TOKENS: &str = "temu:tokens";

/// Health check of the streams a token's scopes leave out (warn, one entry per shop).
pub const HEALTH_SCOPES: &str = "temu:scopes";

/// Told, after each token check of a shop, which of its configured streams the token's
/// `apiScopeList` leaves out (each with the API it lacks; empty: none). The daemon shows them on
/// the sync board (`/status`, the stream's `/health` check).
pub type ScopeSink = Arc<dyn Fn(&str, &[(Stream, &'static str)]) + Send + Sync>;

/// Who watches the client: breaker and token state go to `health`, API metrics and the
/// circuit/token gauges to `metrics`, unscoped streams to `scopes`. Any may be absent (the CLI and
/// most tests have none).
#[derive(Clone, Default)]
pub struct Observers {
    pub health: Option<Health>,
    pub metrics: Option<Metrics>,
    pub scopes: Option<ScopeSink>,
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observers")
            .field("health", &self.health.is_some())
            .field("metrics", &self.metrics.is_some())
            .field("scopes", &self.scopes.is_some())
            .finish()
    }
}

impl TemuClient {
    fn metrics(&self) -> Option<&Metrics> {
        self.inner.observers.metrics.as_ref()
    }

    /// One record of `stream` for `shop` had `fields` (metric labels such as
    /// `orderList.fulfillmentType`) of an undocumented type: counted per field, and logged at
    /// warn at most once a minute per stream and field (with how many records since).
    pub fn note_unexpected_fields(&self, shop: &TemuShop, stream: &str, fields: &[String]) {
        let now = std::time::Instant::now();
        for field in fields {
            if let Some(m) = self.metrics() {
                m.record_unexpected_field_type(stream, field, 1);
            }
            if let Some(records) = self.inner.drift.note(stream, field, now) {
                tracing::warn!(
                    shop = shop.name(),
                    stream,
                    field = field.as_str(),
                    records,
                    "a Temu record carried a field of an undocumented type; its typed column \
                     stays NULL (the raw JSON keeps the value); see \
                     temu_sync_unexpected_field_types_total"
                );
            }
        }
    }

    /// Metrics for one attempt: its HTTP duration (from the send; zero when it was rejected before
    /// sending) by outcome, and the error code of a failure.
    pub(super) fn observe_attempt(
        &self,
        api: &str,
        sent_at: Option<Instant>,
        outcome: &Result<Result<Envelope, TemuError>, tokio::time::error::Elapsed>,
    ) {
        let Some(metrics) = self.metrics() else {
            return;
        };
        let took = sent_at.map(|t| t.elapsed()).unwrap_or(Duration::ZERO);
        let (label, code) = match outcome {
            Ok(Ok(_)) => ("ok", None),
            Err(_) => ("timeout", Some("deadline".to_string())),
            Ok(Err(err)) => (attempt_outcome(err), Some(error_code_label(err))),
        };
        metrics.record_api_attempt(api, label, took);
        if let Some(code) = code {
            metrics.record_api_error(api, &code);
        }
    }

    pub(super) fn record_retry(&self, api: &str) {
        if let Some(m) = self.metrics() {
            m.record_api_retry(api);
        }
    }

    pub(super) fn record_rate_limit_wait(&self, shop: &TemuShop, waited: Duration) {
        if let Some(m) = self.metrics() {
            m.record_rate_limit_wait(shop.name(), waited);
        }
    }

    /// Every router's circuit: a health check each, and its state gauge.
    pub(super) fn publish_circuits(&self) {
        let circuits = self.circuits();
        if let Some(metrics) = self.metrics() {
            for c in &circuits {
                metrics.set_circuit_state(&c.target, circuit_gauge(c.state));
            }
        }
        if let Some(health) = &self.inner.observers.health {
            let now = Utc::now();
            let checks = circuits.iter().map(|c| circuit_check(c, now)).collect();
            health.set_checks(HEALTH_CIRCUIT, checks);
        }
    }

    /// Every shop's token: a health check each, and the expiry gauge of those known to expire.
    /// After a token check of `shop`: a configured stream whose API the token's scopes leave out
    /// is skipped (not parked on 5000000/3000032 later). Logged once when the set changes, shown
    /// in `/health` (`temu:scopes`, warn) and handed to the scope sink (the sync board).
    pub(super) fn publish_scopes(&self, shop: &TemuShop) {
        let unscoped = shop.unscoped_streams();
        let before = shop.swap_unscoped(unscoped.iter().map(|(s, _)| *s).collect());
        for (stream, api) in &unscoped {
            if !before.contains(stream) {
                tracing::warn!(
                    shop = shop.name(),
                    stream = stream.as_str(),
                    api,
                    "the shop's access token is not authorized for {api} (not in apiScopeList): \
                     the {} stream is skipped; grant the permission in the Temu seller center and \
                     re-authorize, or remove it from shops[].streams",
                    stream.as_str()
                );
            }
        }
        for stream in before
            .iter()
            .filter(|s| !unscoped.iter().any(|(u, _)| u == *s))
        {
            tracing::info!(
                shop = shop.name(),
                stream = stream.as_str(),
                "the access token now covers the stream's API; it runs again"
            );
        }
        if let Some(sink) = &self.inner.observers.scopes {
            sink(shop.name(), &unscoped);
        }
        if let Some(health) = &self.inner.observers.health {
            let checks = self
                .shops_by_name()
                .iter()
                .map(|s| scope_check(s.name(), &s.unscoped_streams()))
                .collect();
            health.set_checks(HEALTH_SCOPES, checks);
        }
    }

    pub(super) fn publish_tokens(&self) {
        let tokens: Vec<(TemuShop, TokenState)> = self
            .shops_by_name()
            .into_iter()
            .map(|shop| {
                let state = shop.token_state();
                (shop, state)
            })
            .collect();
        if let Some(metrics) = self.metrics() {
            for (shop, state) in &tokens {
                if let TokenState::Valid {
                    expires_at: Some(at),
                    ..
                } = state
                {
                    metrics.set_token_expiry(shop.name(), *at);
                }
            }
        }
        if let Some(health) = &self.inner.observers.health {
            let now = Utc::now();
            let checks = tokens
                .iter()
                .map(|(shop, state)| state.check(shop.name(), now))
                .collect();
            health.set_checks(HEALTH_TOKENS, checks);
        }
    }
}

fn circuit_gauge(state: CircuitState) -> CircuitGauge {
    match state {
        CircuitState::Closed => CircuitGauge::Closed,
        CircuitState::HalfOpen => CircuitGauge::HalfOpen,
        CircuitState::Open => CircuitGauge::Open,
    }
}

/// The health check of one router's circuit: pass when closed, warn otherwise.
fn circuit_check(c: &CircuitSnapshot, now: chrono::DateTime<Utc>) -> Check {
    let (status, output) = match c.state {
        CircuitState::Closed => (Status::Pass, None),
        CircuitState::Open => (
            Status::Warn,
            Some(format!(
                "circuit open after {} consecutive transport failures; calls fail fast until the next probe",
                c.consecutive_failures
            )),
        ),
        CircuitState::HalfOpen => (Status::Warn, Some("circuit half-open: probing".to_string())),
    };
    Check {
        component_id: Some(c.target.clone()),
        component_type: Some("component"),
        status,
        observed_value: serde_json::to_value(c).ok(),
        observed_unit: None,
        time: now,
        output,
    }
}

/// The `outcome` label of a failed attempt.
fn attempt_outcome(err: &TemuError) -> &'static str {
    match err {
        TemuError::Api { .. } => "api_error",
        TemuError::Http { .. } => "http_error",
        TemuError::Transport { .. } => "transport",
        TemuError::Decode { .. } => "decode",
        TemuError::CircuitOpen { .. } | TemuError::PoolTimeout { .. } => "rejected",
        TemuError::Deadline { .. } => "timeout",
        TemuError::Config(_) | TemuError::Unavailable(_) => "error",
    }
}

/// The `code` label of `temu_sync_api_errors_total`: the Temu error code, or a short class for
/// errors without one. Never a message (unbounded, and may quote input).
pub fn error_code_label(err: &TemuError) -> String {
    match err {
        TemuError::Api { code, .. } => code.to_string(),
        TemuError::Http { status, .. } => format!("http_{status}"),
        TemuError::Transport { kind, .. } => {
            let kind = match kind {
                TransportKind::Connect => "connect",
                TransportKind::Timeout => "timeout",
                TransportKind::Reset => "reset",
                TransportKind::Read => "read",
                TransportKind::Other => "other",
            };
            format!("transport_{kind}")
        }
        TemuError::Decode { .. } => "decode".to_string(),
        TemuError::CircuitOpen { .. } => "circuit_open".to_string(),
        TemuError::PoolTimeout { .. } => "pool_timeout".to_string(),
        TemuError::Deadline { .. } => "deadline".to_string(),
        TemuError::Config(_) => "config".to_string(),
        TemuError::Unavailable(_) => "unavailable".to_string(),
    }
}

/// One shop's scope check: pass, or warn naming each skipped stream and the API it lacks.
fn scope_check(shop: &str, unscoped: &[(Stream, &'static str)]) -> Check {
    let (status, output) = if unscoped.is_empty() {
        (Status::Pass, None)
    } else {
        let list: Vec<String> = unscoped
            .iter()
            .map(|(s, api)| format!("{} (needs {api})", s.as_str()))
            .collect();
        (
            Status::Warn,
            Some(format!(
                "skipped: the access token's apiScopeList lacks the API of {}",
                list.join(", ")
            )),
        )
    };
    Check {
        component_id: Some(shop.to_string()),
        component_type: Some("component"),
        status,
        observed_value: None,
        observed_unit: None,
        time: Utc::now(),
        output,
    }
}
