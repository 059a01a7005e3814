//! The Temu Open API client: one HTTP client, limits, retries, breakers.
//!
//! Owns: the single `reqwest::Client` (keep-alive pool, timeouts, proxy), one rate limiter per
//! `app_key` (shared by every shop of that app), the `max_connections` slots, one circuit breaker
//! per router URL, the retry loop, and the shop table ([`TemuShop`], resolved once at
//! construction). Built once per process and handed out as clones (the Temu actor and every sync
//! actor share one), so there is never a second limiter for an app_key.
//!
//! The parts, one concern each: `build` (the HTTP client, shop table, limiters, breakers),
//! `attempt` (one signed request and how its answer is classified), `call` (the retry loop
//! under one deadline), `tokens` (token checks) and `observe` (metrics and health).
//!
//! Order of one attempt: breaker permit (fail fast when open) → connection slot (waiting at most
//! `pool_timeout`) → rate-limit token (so a request is sent when it is counted, never bunched after
//! a slot wait) → fresh `timestamp` + `sign` → send.
//!
//! Deadlines: every call has an overall deadline (`temu.call_deadline`, or the caller's, whichever
//! is sooner) that bounds all waits, attempts and backoff sleeps. Each attempt is bounded by
//! `temu.timeout` (whole request), `temu.connect_timeout`, and `temu.read_timeout`. reqwest has no
//! write timeout; `temu.write_timeout` is enforced by the kernel instead: every socket gets
//! `TCP_USER_TIMEOUT` = `write_timeout`, so bytes written but left unacknowledged that long (a peer
//! or path that stopped taking data) close the connection and fail the attempt as a retryable
//! transport error. Besides, reqwest's `read_timeout` clock starts when the request is dispatched,
//! so writing the body is also inside `min(read_timeout, timeout, call deadline)`.
//!
//! Must not: put secrets anywhere but the request body. Errors and logs are scrubbed of every
//! configured secret; reqwest errors are stripped of their URL.

mod attempt;
mod build;
mod call;
mod observe;
mod tokens;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::{AppConfig, ShopConfig, TemuConfig};

use super::budget::Budgets;
use super::circuit::{CircuitBreaker, CircuitSnapshot};
use super::envelope::{ApiResponse, TemuError};
use super::model::*;
use super::redact::Secrets;
use super::shop::TemuShop;

pub use attempt::{attempt_timeout, parse_retry_after};
pub use build::{shop_url, ClientTuning};
pub use observe::{
    error_code_label, Observers, ScopeSink, HEALTH_CIRCUIT, HEALTH_SCOPES, HEALTH_TOKENS,
};

/// Counters (for tests, metrics and `/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub calls: u64,
    pub attempts: u64,
    pub retries: u64,
    pub in_flight: u64,
    pub max_in_flight: u64,
    pub pool_timeouts: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    pool_timeouts: AtomicU64,
}

struct Inner {
    http: reqwest::Client,
    cfg: TemuConfig,
    tuning: ClientTuning,
    /// In configuration order.
    shops: Vec<TemuShop>,
    breakers: Vec<Arc<CircuitBreaker>>,
    slots: Semaphore,
    secrets: Secrets,
    budgets: Budgets,
    observers: Observers,
    counters: Counters,
    /// The rate limit of the unexpected-field-type log.
    drift: super::fields::DriftLog,
}

/// The client. Cheap to clone (one shared inner).
#[derive(Clone)]
pub struct TemuClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TemuClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.inner.shops.iter().map(|s| s.name()).collect();
        f.debug_struct("TemuClient")
            .field("shops", &names)
            .finish_non_exhaustive()
    }
}

impl TemuClient {
    /// The client for these apps and shops, tuned as the configuration says, observed by no one
    /// (the CLI and tests).
    pub fn new(
        cfg: &TemuConfig,
        apps: &[AppConfig],
        shops: &[ShopConfig],
    ) -> Result<Self, TemuError> {
        Self::build(
            cfg,
            apps,
            shops,
            ClientTuning::from_config(cfg),
            Observers::default(),
        )
    }

    /// The client with everything it needs: `observers` receive breaker and token state (health)
    /// and API metrics from the first call on. Fails with [`TemuError::Config`] when the
    /// configuration cannot work: an unusable proxy, a shop naming an unknown app or given twice,
    /// a bad router URL, an app with qps 0.
    pub fn build(
        cfg: &TemuConfig,
        apps: &[AppConfig],
        shops: &[ShopConfig],
        tuning: ClientTuning,
        observers: Observers,
    ) -> Result<Self, TemuError> {
        let parts = build::parts(cfg, apps, shops, &tuning)?;
        let client = TemuClient {
            inner: Arc::new(Inner {
                http: parts.http,
                slots: Semaphore::new(cfg.max_connections.max(1)),
                cfg: cfg.clone(),
                tuning,
                shops: parts.shops,
                breakers: parts.breakers,
                secrets: parts.secrets,
                budgets: parts.budgets,
                observers,
                counters: Counters::default(),
                drift: Default::default(),
            }),
        };
        client.publish_circuits();
        client.publish_tokens();
        Ok(client)
    }

    /// The QPS budget of each app_key (one bucket per key, shared by its shops).
    pub fn budgets(&self) -> &Budgets {
        &self.inner.budgets
    }

    /// Every configured shop, in configuration order.
    pub fn shops(&self) -> &[TemuShop] {
        &self.inner.shops
    }

    /// The shop named `name`. A lookup by name — for the CLI, wiring and tests; callers on the
    /// call path keep the [`TemuShop`] they were handed instead of looking it up again.
    pub fn shop(&self, name: &str) -> Option<TemuShop> {
        self.inner.shops.iter().find(|s| s.name() == name).cloned()
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        ClientStats {
            calls: c.calls.load(Ordering::SeqCst),
            attempts: c.attempts.load(Ordering::SeqCst),
            retries: c.retries.load(Ordering::SeqCst),
            in_flight: c.in_flight.load(Ordering::SeqCst),
            max_in_flight: c.max_in_flight.load(Ordering::SeqCst),
            pool_timeouts: c.pool_timeouts.load(Ordering::SeqCst),
        }
    }

    /// Every router's breaker, sorted by router label.
    pub fn circuits(&self) -> Vec<CircuitSnapshot> {
        let mut v: Vec<_> = self.inner.breakers.iter().map(|b| b.snapshot()).collect();
        v.sort_by(|a, b| a.target.cmp(&b.target));
        v
    }

    /// Replaces every configured secret in `text` with `***`.
    pub fn scrub(&self, text: &str) -> String {
        self.inner.secrets.scrub(text)
    }

    // -----------------------------------------------------------------------------------------
    // The typed calls

    pub async fn list_orders(
        &self,
        shop: &TemuShop,
        req: &OrderListRequest,
    ) -> Result<ApiResponse<OrderListResult>, TemuError> {
        self.call(shop, API_ORDER_LIST, req, None).await
    }

    pub async fn order_detail(
        &self,
        shop: &TemuShop,
        req: &OrderDetailRequest,
    ) -> Result<ApiResponse<OrderDetail>, TemuError> {
        self.call(shop, API_ORDER_DETAIL, req, None).await
    }

    pub async fn list_goods(
        &self,
        shop: &TemuShop,
        req: &GoodsListRequest,
    ) -> Result<ApiResponse<GoodsListResult>, TemuError> {
        self.call(shop, API_GOODS_LIST, req, None).await
    }

    pub async fn list_aftersales(
        &self,
        shop: &TemuShop,
        req: &AfterSalesListRequest,
    ) -> Result<ApiResponse<AfterSalesListResult>, TemuError> {
        self.call(shop, API_AFTERSALES_LIST, req, None).await
    }
}
