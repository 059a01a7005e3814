//! Building the client's parts from the configuration: the HTTP client, one rate limiter per
//! app_key, one circuit breaker per router, the shop table, and the list of secrets to scrub.
//!
//! Owns: the [`ClientTuning`] knobs and every check that can refuse a configuration at build
//! time (an unusable proxy, a shop naming an unknown app, a bad router URL, qps 0, a shop name
//! given twice). Must not: send anything, or keep a secret outside [`TemuShop`] and [`Secrets`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{AppConfig, ShopConfig, TemuConfig};

use super::super::budget::Budgets;
use super::super::circuit::CircuitBreaker;
use super::super::envelope::TemuError;
use super::super::redact::{url_label, Secrets};
use super::super::router_url;
use super::super::shop::TemuShop;

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

/// Everything the client is made of, built and checked.
pub(super) struct Parts {
    pub http: reqwest::Client,
    /// In configuration order.
    pub shops: Vec<TemuShop>,
    pub breakers: Vec<Arc<CircuitBreaker>>,
    pub secrets: Secrets,
    pub budgets: Budgets,
}

/// The router a shop calls: its `base_url`, else its region's router.
pub fn shop_url(shop: &ShopConfig) -> String {
    match &shop.base_url {
        Some(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => router_url(shop.region).to_string(),
    }
}

/// Builds and checks every part for these apps and shops.
pub(super) fn parts(
    cfg: &TemuConfig,
    apps: &[AppConfig],
    shops: &[ShopConfig],
    tuning: &ClientTuning,
) -> Result<Parts, TemuError> {
    let mut secrets = Vec::new();
    let http = http_client(cfg, &mut secrets)?;
    secrets.extend(apps.iter().map(|a| a.app_secret.expose().to_string()));
    secrets.extend(shops.iter().map(|s| s.access_token.expose().to_string()));
    let budgets = app_budgets(apps, tuning)?;
    let (shops, breakers) = shop_table(apps, shops, &budgets, tuning)?;
    Ok(Parts {
        http,
        shops,
        breakers,
        secrets: Secrets::new(secrets),
        budgets,
    })
}

/// The one `reqwest::Client`: timeouts, keep-alive pool, and the proxy (whose password joins
/// `secrets`).
fn http_client(cfg: &TemuConfig, secrets: &mut Vec<String>) -> Result<reqwest::Client, TemuError> {
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
    builder.build().map_err(|e| {
        TemuError::Config(format!("cannot build the HTTP client: {}", e.without_url()))
    })
}

/// One budget (bucket) per app_key, even if two app entries share a key: one QPS budget per key.
/// It starts at the app's full `qps`; in the daemon the coordinator divides it among the live
/// daemons (`temu::budget::coordinator`).
fn app_budgets(apps: &[AppConfig], tuning: &ClientTuning) -> Result<Budgets, TemuError> {
    let mut budgets = Budgets::default();
    for app in apps {
        if app.qps == 0 {
            return Err(TemuError::Config(format!(
                "apps[{}].qps must be at least 1",
                app.name
            )));
        }
        budgets.insert(&app.app_key, &app.name, app.qps, tuning.rate_burst.max(1));
    }
    Ok(budgets)
}

/// The shops in configuration order, each with its app's limiter and its router's breaker
/// (one breaker per router URL, shared by the shops that call it).
fn shop_table(
    apps: &[AppConfig],
    shops: &[ShopConfig],
    budgets: &Budgets,
    tuning: &ClientTuning,
) -> Result<(Vec<TemuShop>, Vec<Arc<CircuitBreaker>>), TemuError> {
    let mut breakers: HashMap<String, Arc<CircuitBreaker>> = HashMap::new();
    let mut table: Vec<TemuShop> = Vec::with_capacity(shops.len());
    for shop in shops {
        if table.iter().any(|s| s.name() == shop.name) {
            return Err(TemuError::Config(format!(
                "shop {:?} is configured twice",
                shop.name
            )));
        }
        let app = apps.iter().find(|a| a.name == shop.app).ok_or_else(|| {
            TemuError::Config(format!(
                "shop {:?} names app {:?}, which is not in `apps`",
                shop.name, shop.app
            ))
        })?;
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
        let limiter = budgets
            .bucket(&app.app_key)
            .ok_or_else(|| TemuError::Config("app budget missing".into()))?;
        table.push(TemuShop::new(shop, app, url, limiter, breaker));
    }
    Ok((table, breakers.into_values().collect()))
}
