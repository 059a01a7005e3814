//! The Temu Open API client: one HTTP client, limits, retries, breakers.
//!
//! Owns: the single `reqwest::Client` (keep-alive pool, timeouts, proxy), one rate limiter per
//! `app_key` (shared by every shop of that app), the `max_connections` slots, one circuit breaker
//! per router URL, the retry loop, and each shop's token state. Usable without actors: the Temu
//! actor wraps one of these; tests and the sync may use it directly.
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

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::{AppConfig, ShopConfig, TemuConfig};
use crate::health::{Check, Health, Status};
use crate::metrics::Metrics;

use super::circuit::{CircuitBreaker, CircuitSnapshot};
use super::envelope::{excerpt, ApiResponse, Envelope, ErrorClass, TemuError, TransportKind};
use super::model::*;
use super::router_url;
use super::sign::Params;
use super::token::{TokenReport, TokenState};

/// Health check names this client publishes.
pub const HEALTH_CIRCUIT: &str = "temu:circuit";
pub const HEALTH_TOKENS: &str = "temu:tokens";

/// Knobs that are not (yet) in the configuration file; the defaults suit production.
#[derive(Debug, Clone)]
pub struct ClientTuning {
    /// Consecutive transport failures that open a router's circuit.
    pub breaker_threshold: u32,
    /// How long an open circuit fails fast before one probe.
    pub breaker_cool_off: Duration,
    /// First backoff ceiling; doubles per retry (full jitter: the sleep is uniform in [0, ceiling]).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Largest `Retry-After` honoured (a bigger one is capped, and still bounded by the deadline).
    pub max_retry_after: Duration,
    /// Requests an app may send at once before the per-second spacing applies.
    pub rate_burst: u32,
}

impl ClientTuning {
    /// The tuning the configuration asks for (`temu.breaker_*`, `temu.retry_backoff_*`).
    pub fn from_config(cfg: &TemuConfig) -> Self {
        Self {
            breaker_threshold: cfg.breaker_threshold,
            breaker_cool_off: cfg.breaker_cool_off,
            backoff_base: cfg.retry_backoff_min,
            backoff_max: cfg.retry_backoff_max,
            ..Self::default()
        }
    }
}

impl Default for ClientTuning {
    fn default() -> Self {
        Self {
            breaker_threshold: 5,
            breaker_cool_off: Duration::from_secs(30),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            rate_burst: 1,
        }
    }
}

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

struct Shop {
    name: String,
    app_key: String,
    app_secret: crate::config::Secret,
    access_token: crate::config::Secret,
    url: String,
    limiter: Arc<DefaultDirectRateLimiter>,
    breaker: Arc<CircuitBreaker>,
}

struct Inner {
    http: reqwest::Client,
    cfg: TemuConfig,
    tuning: ClientTuning,
    shops: BTreeMap<String, Shop>,
    breakers: Vec<Arc<CircuitBreaker>>,
    slots: Semaphore,
    secrets: Vec<String>,
    tokens: Mutex<BTreeMap<String, TokenState>>,
    health: Option<Health>,
    counters: Counters,
    /// Where API metrics go, once [`TemuClient::set_metrics`] was called.
    metrics: OnceLock<Metrics>,
}

/// The client. Cheap to clone (one shared inner).
#[derive(Clone)]
pub struct TemuClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TemuClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemuClient")
            .field("shops", &self.inner.shops.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The router a shop calls: its `base_url`, else its region's router.
pub fn shop_url(shop: &ShopConfig) -> String {
    match &shop.base_url {
        Some(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => router_url(shop.region).to_string(),
    }
}

/// A URL fit for logs and health: scheme, host, port and path only (no userinfo, no query).
pub fn url_label(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{}{}",
                u.scheme(),
                u.host_str().unwrap_or("?"),
                port,
                u.path()
            )
        }
        Err(_) => "<invalid url>".to_string(),
    }
}

/// The whole-request bound of one attempt: `temu.timeout`, cut to what is left of the call's deadline.
pub fn attempt_timeout(cfg: &TemuConfig, remaining: Duration) -> Duration {
    cfg.timeout.min(remaining)
}

impl TemuClient {
    /// Builds the client for these apps and shops with default tuning.
    pub fn new(
        cfg: &TemuConfig,
        apps: &[AppConfig],
        shops: &[ShopConfig],
    ) -> Result<Self, TemuError> {
        Self::with_tuning(cfg, apps, shops, ClientTuning::from_config(cfg), None)
    }

    /// Builds the client; when `health` is given, breaker and token state are published there.
    pub fn with_tuning(
        cfg: &TemuConfig,
        apps: &[AppConfig],
        shops: &[ShopConfig],
        tuning: ClientTuning,
        health: Option<Health>,
    ) -> Result<Self, TemuError> {
        let mut secrets: Vec<String> = Vec::new();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("temu-sync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .timeout(cfg.timeout)
            .pool_max_idle_per_host(cfg.max_keepalive_connections)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            // The write timeout: data written to a socket that stays unacknowledged this long
            // makes the kernel close the connection (TCP_USER_TIMEOUT), so a stalled write fails
            // after `write_timeout` even though reqwest has no write timeout of its own.
            .tcp_user_timeout(cfg.write_timeout)
            .retry(reqwest::retry::never());
        match &cfg.proxy {
            Some(p) => {
                let mut proxy = reqwest::Proxy::all(p.url.as_str()).map_err(|e| {
                    TemuError::Config(format!(
                        "temu.proxy.url is not a usable proxy URL ({}); expected http://, https:// or socks5://host:port",
                        e.without_url()
                    ))
                })?;
                if let Some(user) = &p.username {
                    let pass = p.password.as_ref().map(|s| s.expose()).unwrap_or("");
                    if !pass.is_empty() {
                        secrets.push(pass.to_string());
                    }
                    proxy = proxy.basic_auth(user, pass);
                }
                builder = builder.proxy(proxy);
            }
            // The proxy comes from the configuration only, never from the environment.
            None => builder = builder.no_proxy(),
        }
        let http = builder.build().map_err(|e| {
            TemuError::Config(format!("cannot build the HTTP client: {}", e.without_url()))
        })?;

        let burst = NonZeroU32::new(tuning.rate_burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let mut limiters: HashMap<String, Arc<DefaultDirectRateLimiter>> = HashMap::new();
        let mut apps_by_name: HashMap<&str, &AppConfig> = HashMap::new();
        for app in apps {
            secrets.push(app.app_secret.expose().to_string());
            apps_by_name.insert(app.name.as_str(), app);
            let qps = NonZeroU32::new(app.qps).ok_or_else(|| {
                TemuError::Config(format!("apps[{}].qps must be at least 1", app.name))
            })?;
            // One budget per app_key, even if two app entries share a key.
            let quota = Quota::per_second(qps).allow_burst(burst.min(qps));
            let entry = limiters
                .entry(app.app_key.clone())
                .or_insert_with(|| Arc::new(RateLimiter::direct(quota)));
            let _ = entry;
        }
        let mut breakers: HashMap<String, Arc<CircuitBreaker>> = HashMap::new();
        let mut by_name = BTreeMap::new();
        let mut tokens = BTreeMap::new();
        for shop in shops {
            let app = apps_by_name.get(shop.app.as_str()).ok_or_else(|| {
                TemuError::Config(format!(
                    "shop {:?} names app {:?}, which is not in `apps`",
                    shop.name, shop.app
                ))
            })?;
            secrets.push(shop.access_token.expose().to_string());
            let url = shop_url(shop);
            reqwest::Url::parse(&url).map_err(|_| {
                TemuError::Config(format!("shop {:?}: base_url is not a valid URL", shop.name))
            })?;
            let breaker = breakers
                .entry(url.clone())
                .or_insert_with(|| {
                    Arc::new(CircuitBreaker::new(
                        url_label(&url),
                        tuning.breaker_threshold,
                        tuning.breaker_cool_off,
                    ))
                })
                .clone();
            let limiter = limiters
                .get(&app.app_key)
                .cloned()
                .ok_or_else(|| TemuError::Config("app limiter missing".into()))?;
            tokens.insert(shop.name.clone(), TokenState::NotChecked);
            by_name.insert(
                shop.name.clone(),
                Shop {
                    name: shop.name.clone(),
                    app_key: app.app_key.clone(),
                    app_secret: app.app_secret.clone(),
                    access_token: shop.access_token.clone(),
                    url,
                    limiter,
                    breaker,
                },
            );
        }
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let client = TemuClient {
            inner: Arc::new(Inner {
                http,
                slots: Semaphore::new(cfg.max_connections.max(1)),
                cfg: cfg.clone(),
                tuning,
                shops: by_name,
                breakers: breakers.into_values().collect(),
                secrets,
                tokens: Mutex::new(tokens),
                health,
                counters: Counters::default(),
                metrics: OnceLock::new(),
            }),
        };
        client.publish_circuits();
        client.publish_tokens();
        Ok(client)
    }

    /// Records API metrics (attempt durations, error codes, retries, rate-limit waits) into
    /// `metrics` from now on. The first call wins; later calls are ignored.
    pub fn set_metrics(&self, metrics: Metrics) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// [`set_metrics`](Self::set_metrics), builder style.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        self.set_metrics(metrics);
        self
    }

    pub fn shop_names(&self) -> Vec<String> {
        self.inner.shops.keys().cloned().collect()
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

    pub fn circuits(&self) -> Vec<CircuitSnapshot> {
        let mut v: Vec<_> = self.inner.breakers.iter().map(|b| b.snapshot()).collect();
        v.sort_by(|a, b| a.target.cmp(&b.target));
        v
    }

    pub fn token_states(&self) -> BTreeMap<String, TokenState> {
        self.inner.tokens.lock().clone()
    }

    /// Replaces every configured secret in `text` with `***`.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.inner.secrets)
    }

    // -----------------------------------------------------------------------------------------
    // The calls

    pub async fn list_orders(
        &self,
        shop: &str,
        req: &OrderListRequest,
    ) -> Result<ApiResponse<OrderListResult>, TemuError> {
        self.call(shop, API_ORDER_LIST, req, None).await
    }

    pub async fn order_detail(
        &self,
        shop: &str,
        req: &OrderDetailRequest,
    ) -> Result<ApiResponse<OrderDetail>, TemuError> {
        self.call(shop, API_ORDER_DETAIL, req, None).await
    }

    pub async fn list_goods(
        &self,
        shop: &str,
        req: &GoodsListRequest,
    ) -> Result<ApiResponse<GoodsListResult>, TemuError> {
        self.call(shop, API_GOODS_LIST, req, None).await
    }

    pub async fn list_aftersales(
        &self,
        shop: &str,
        req: &AfterSalesListRequest,
    ) -> Result<ApiResponse<AfterSalesListResult>, TemuError> {
        self.call(shop, API_AFTERSALES_LIST, req, None).await
    }

    /// `bg.open.accesstoken.info.get`; also updates the shop's token state and health check.
    pub async fn token_info(&self, shop: &str) -> Result<ApiResponse<TokenInfo>, TemuError> {
        let res = self
            .call::<_, TokenInfo>(shop, API_TOKEN_INFO, &TokenInfoRequest {}, None)
            .await;
        let now = Utc::now();
        let state = match &res {
            Ok(ApiResponse {
                result: Some(info), ..
            }) => Some(TokenState::from_info(info, now)),
            Ok(_) => Some(TokenState::Refused {
                code: None,
                reason: "the token check returned no result".into(),
                checked_at: now,
            }),
            Err(e) if e.class() == ErrorClass::Fatal => Some(TokenState::Refused {
                code: e.code(),
                reason: e.to_string(),
                checked_at: now,
            }),
            // A transient failure says nothing about the token: keep what we knew.
            Err(_) => None,
        };
        if let Some(state) = state {
            self.inner.tokens.lock().insert(shop.to_string(), state);
            self.publish_tokens();
        }
        res
    }

    /// Checks every shop's token (concurrently) and reports mall id, expiry and scopes.
    pub async fn check_tokens(&self) -> Vec<TokenReport> {
        let names = self.shop_names();
        let results =
            futures_util::future::join_all(names.iter().map(|name| self.token_info(name))).await;
        let now = Utc::now();
        names
            .into_iter()
            .zip(results)
            .map(|(shop, res)| {
                let state = match res {
                    Ok(_) => self
                        .inner
                        .tokens
                        .lock()
                        .get(&shop)
                        .cloned()
                        .unwrap_or(TokenState::NotChecked),
                    Err(e) => TokenState::Refused {
                        code: e.code(),
                        reason: e.to_string(),
                        checked_at: now,
                    },
                };
                let (status, message) = state.assess(now);
                TokenReport {
                    shop,
                    state,
                    status,
                    message,
                }
            })
            .collect()
    }

    /// One API call with typed request and result, retried within the configured bounds.
    /// `deadline` (if given) shortens `temu.call_deadline`, never extends it.
    pub async fn call<Req: Serialize, Res: DeserializeOwned>(
        &self,
        shop: &str,
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
    pub async fn call_params(
        &self,
        shop_name: &str,
        api: &str,
        business: Params,
        deadline: Option<Duration>,
    ) -> Result<Envelope, TemuError> {
        let shop = self.inner.shops.get(shop_name).ok_or_else(|| {
            TemuError::Config(format!("unknown shop {shop_name:?} (not in `shops`)"))
        })?;
        let budget = deadline
            .map(|d| d.min(self.inner.cfg.call_deadline))
            .unwrap_or(self.inner.cfg.call_deadline);
        let deadline = Instant::now() + budget;
        self.inner.counters.calls.fetch_add(1, Ordering::Relaxed);
        let mut attempts = 0u32;
        let mut retries = 0u32;
        let mut resigned = false;
        let mut last: Option<TemuError> = None;
        let deadline_error = |attempts: u32, last: Option<TemuError>| TemuError::Deadline {
            api: api.to_string(),
            deadline: budget,
            attempts,
            last: last.map(Box::new),
        };
        loop {
            attempts += 1;
            self.inner.counters.attempts.fetch_add(1, Ordering::Relaxed);
            let mut sent_at: Option<Instant> = None;
            let outcome = tokio::time::timeout_at(
                deadline,
                self.attempt(shop, api, &business, deadline, &mut sent_at),
            )
            .await;
            self.observe_attempt(api, sent_at, &outcome);
            let err = match outcome {
                Err(_elapsed) => return Err(deadline_error(attempts, last)),
                Ok(Ok(envelope)) => return Ok(envelope),
                Ok(Err(err)) => err,
            };
            if err.is_token_problem() {
                self.inner.tokens.lock().insert(
                    shop.name.clone(),
                    TokenState::Refused {
                        code: err.code(),
                        reason: err.to_string(),
                        checked_at: Utc::now(),
                    },
                );
                self.publish_tokens();
            }
            let class = err.class();
            tracing::debug!(shop = %shop.name, temu_type = api, attempts, error_class = class.as_str(), code = ?err.code(), error = %err, "temu attempt failed");
            if class == ErrorClass::Resign && !resigned {
                // Clock skew: sign again with a fresh timestamp, once, right away.
                resigned = true;
                last = Some(err);
                continue;
            }
            if !err.worth_retrying() || retries >= self.inner.cfg.max_retries {
                if err.worth_retrying() {
                    tracing::warn!(shop = %shop.name, temu_type = api, attempts, error_class = class.as_str(), error = %err, "temu call failed after its retries");
                }
                return Err(err);
            }
            let delay = self.backoff(retries, err.retry_after());
            if Instant::now() + delay >= deadline {
                return Err(deadline_error(attempts, Some(err)));
            }
            retries += 1;
            self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = self.inner.metrics.get() {
                m.record_api_retry(api);
            }
            last = Some(err);
            tokio::time::sleep(delay).await;
        }
    }

    /// Metrics for one attempt: its HTTP duration (from the send; zero when it was rejected before
    /// sending) by outcome, and the error code of a failure.
    fn observe_attempt(
        &self,
        api: &str,
        sent_at: Option<Instant>,
        outcome: &Result<Result<Envelope, TemuError>, tokio::time::error::Elapsed>,
    ) {
        let Some(metrics) = self.inner.metrics.get() else {
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

    async fn attempt(
        &self,
        shop: &Shop,
        api: &str,
        business: &Params,
        deadline: Instant,
        sent_at: &mut Option<Instant>,
    ) -> Result<Envelope, TemuError> {
        let inner = &*self.inner;
        let permit = shop
            .breaker
            .try_acquire()
            .map_err(|retry_in| TemuError::CircuitOpen {
                target: shop.breaker.target().to_string(),
                retry_in,
            })?;
        let _slot = match tokio::time::timeout(inner.cfg.pool_timeout, inner.slots.acquire()).await
        {
            Ok(Ok(slot)) => slot,
            Ok(Err(_closed)) => return Err(TemuError::Unavailable("client closed".into())),
            Err(_) => {
                inner.counters.pool_timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(TemuError::PoolTimeout {
                    waited: inner.cfg.pool_timeout,
                });
            }
        };
        let limit_wait = Instant::now();
        shop.limiter.until_ready().await;
        let waited = limit_wait.elapsed();
        if waited >= Duration::from_millis(1) {
            if let Some(m) = inner.metrics.get() {
                m.record_rate_limit_wait(&shop.name, waited);
            }
        }
        let _in_flight = InFlight::enter(&inner.counters);

        let mut params = business.clone();
        let common = [
            ("type", api),
            ("app_key", shop.app_key.as_str()),
            ("access_token", shop.access_token.expose()),
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
        let sign = params.sign(shop.app_secret.expose());
        let body = params.to_body(&sign);

        let remaining = deadline.saturating_duration_since(Instant::now());
        *sent_at = Some(Instant::now());
        let sent = inner
            .http
            .post(&shop.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(attempt_timeout(&inner.cfg, remaining))
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let err = self.transport_error(api, &shop.url, e);
                self.settle(permit, false);
                return Err(err);
            }
        };
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let err = TemuError::Http {
                api: api.to_string(),
                status: status.as_u16(),
                retry_after,
            };
            self.settle(permit, !err.is_transport_failure());
            return Err(err);
        }
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let err = self.transport_error(api, &shop.url, e);
                self.settle(permit, false);
                return Err(err);
            }
        };
        self.settle(permit, true);
        let envelope = Envelope::parse(&bytes).map_err(|detail| TemuError::Decode {
            api: api.to_string(),
            detail: self.scrub(&detail),
            excerpt: self.scrub(&excerpt(&bytes, 120)),
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

    fn settle(&self, permit: super::circuit::Permit<'_>, ok: bool) {
        let changed = if ok {
            permit.success()
        } else {
            permit.failure()
        };
        if changed {
            self.publish_circuits();
        }
    }

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

    // -----------------------------------------------------------------------------------------
    // Health

    fn publish_circuits(&self) {
        let Some(health) = &self.inner.health else {
            return;
        };
        let now = Utc::now();
        let checks = self
            .circuits()
            .into_iter()
            .map(|c| {
                let status = if c.state == "closed" {
                    Status::Pass
                } else {
                    Status::Warn
                };
                let output = match c.state {
                    "closed" => None,
                    "open" => Some(format!(
                        "circuit open after {} consecutive transport failures; calls fail fast until the next probe",
                        c.consecutive_failures
                    )),
                    _ => Some("circuit half-open: probing".to_string()),
                };
                Check {
                    component_id: Some(c.target.clone()),
                    component_type: Some("component"),
                    status,
                    observed_value: serde_json::to_value(&c).ok(),
                    observed_unit: None,
                    time: now,
                    output,
                }
            })
            .collect();
        health.set_checks(HEALTH_CIRCUIT, checks);
    }

    fn publish_tokens(&self) {
        let Some(health) = &self.inner.health else {
            return;
        };
        let now = Utc::now();
        let checks = self
            .inner
            .tokens
            .lock()
            .iter()
            .map(|(shop, state)| state.check(shop, now))
            .collect();
        health.set_checks(HEALTH_TOKENS, checks);
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

fn transport_kind(e: &reqwest::Error) -> TransportKind {
    if e.is_timeout() {
        return TransportKind::Timeout;
    }
    if e.is_connect() {
        return TransportKind::Connect;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                    return TransportKind::Reset
                }
                TimedOut => return TransportKind::Timeout,
                _ => {}
            }
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return TransportKind::Reset;
            }
            if h.is_timeout() {
                return TransportKind::Timeout;
            }
        }
        source = s.source();
    }
    if e.is_body() || e.is_decode() {
        TransportKind::Read
    } else {
        TransportKind::Other
    }
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

/// Replaces each secret in `text` with `***` (longest first, so no partial leaks).
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
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

    #[test]
    fn labels_drop_credentials() {
        assert_eq!(
            url_label("http://u:pw@relay.example:8080/openapi/router?t=secret"),
            "http://relay.example:8080/openapi/router"
        );
        assert_eq!(scrub("a tok123 b", &["tok123".into()]), "a *** b");
    }
}
