//! Validation of a parsed configuration: ranges, cross-references, URLs.
//!
//! Owns: the rules a value must satisfy beyond its type (pool_size ≥ 1, backoff_min ≤
//! backoff_max, every shop's `app` exists, no password in `database.url`, …) and
//! [`DatabaseConfig::pg_config`]. Each problem is reported with its key path; the loader adds
//! where the value came from.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::error::{ConfigError, IssueOrigin};
use super::model::{
    Config, DatabaseConfig, FulfillmentType, Stream, MAX_BATCH_SIZE, MAX_PAGE_CONCURRENCY,
};

/// Most pooled database connections in all (`pool_size + max_overflow`): more than a PostgreSQL
/// server is usually configured to accept (`max_connections` defaults to 100).
const MAX_POOL: u64 = 1000;

/// Problems as (key path, message).
type Problems = Vec<(String, String)>;

impl Config {
    /// Check every rule; an empty list means valid. Run by the loader after secrets are resolved.
    pub fn validation_problems(&self) -> Vec<(String, String)> {
        let mut p = Problems::new();
        self.validate_http(&mut p);
        self.validate_database(&mut p);
        self.validate_temu(&mut p);
        self.validate_apps_and_shops(&mut p);
        self.validate_sync(&mut p);
        self.validate_supervisor(&mut p);
        self.validate_log(&mut p);
        p
    }

    /// [`Config::validation_problems`] as a `Result` (origins unknown: no file positions).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.validation_problems();
        if problems.is_empty() {
            return Ok(());
        }
        Err(ConfigError::Invalid(
            problems
                .into_iter()
                .map(|(key, message)| super::error::ConfigIssue {
                    origin: IssueOrigin::FileOnly {
                        source: "configuration".to_string(),
                    },
                    key,
                    message,
                })
                .collect(),
        ))
    }

    fn validate_http(&self, p: &mut Problems) {
        let h = &self.http;
        positive(p, "http.request_timeout", h.request_timeout);
        positive(p, "http.header_read_timeout", h.header_read_timeout);
        in_range(
            p,
            "http.max_connections",
            h.max_connections as u64,
            1,
            65_536,
        );
        let per_second = u64::from(h.rate_limit_per_second);
        in_range(p, "http.rate_limit_per_second", per_second, 1, 1_000_000);
        let burst = u64::from(h.rate_limit_burst);
        in_range(p, "http.rate_limit_burst", burst, 0, 1_000_000);
    }

    fn validate_database(&self, p: &mut Problems) {
        let d = &self.database;
        if let Err(message) = check_database_url(&d.url) {
            p.push(("database.url".to_string(), message));
        }
        in_range(p, "database.pool_size", u64::from(d.pool_size), 1, MAX_POOL);
        in_range(
            p,
            "database.max_overflow",
            u64::from(d.max_overflow),
            0,
            MAX_POOL,
        );
        let total = u64::from(d.pool_size) + u64::from(d.max_overflow);
        if total > MAX_POOL && d.pool_size as u64 <= MAX_POOL && d.max_overflow as u64 <= MAX_POOL {
            p.push((
                "database.max_overflow".to_string(),
                format!(
                    "pool_size + max_overflow is {total}; at most {MAX_POOL} connections in all"
                ),
            ));
        }
        positive(p, "database.pool_timeout", d.pool_timeout);
        positive(p, "database.pool_recycle", d.pool_recycle);
        check_idle_timeout(p, d.idle_timeout);
        positive(p, "database.connect_timeout", d.connect_timeout);
        positive(p, "database.statement_timeout", d.statement_timeout);
        positive(p, "database.lock_timeout", d.lock_timeout);
        positive(
            p,
            "database.idle_in_transaction_timeout",
            d.idle_in_transaction_timeout,
        );
        positive(p, "database.keepalive_idle", d.keepalive_idle);
        ping_settings(p, "database", d.ping_interval, d.ping_timeout);
        if let Some(path) = &d.tls_ca_file {
            if let Err(message) = check_tls_ca_file(&d.url, path) {
                p.push(("database.tls_ca_file".to_string(), message));
            }
        }
        positive(p, "database.leak_threshold", d.leak_threshold);
        backoff_range(p, "database.retry", d.retry_min, d.retry_max);
    }

    fn validate_temu(&self, p: &mut Problems) {
        let t = &self.temu;
        positive(p, "temu.timeout", t.timeout);
        positive(p, "temu.connect_timeout", t.connect_timeout);
        positive(p, "temu.read_timeout", t.read_timeout);
        positive(p, "temu.write_timeout", t.write_timeout);
        positive(p, "temu.pool_timeout", t.pool_timeout);
        positive(p, "temu.call_deadline", t.call_deadline);
        in_range(p, "temu.max_connections", t.max_connections as u64, 1, 1024);
        let keepalive = t.max_keepalive_connections as u64;
        in_range(p, "temu.max_keepalive_connections", keepalive, 0, 1024);
        in_range(p, "temu.max_retries", u64::from(t.max_retries), 0, 100);
        let threshold = u64::from(t.breaker_threshold);
        in_range(p, "temu.breaker_threshold", threshold, 1, 10_000);
        positive(p, "temu.breaker_cool_off", t.breaker_cool_off);
        backoff_range(
            p,
            "temu.retry_backoff",
            t.retry_backoff_min,
            t.retry_backoff_max,
        );
        positive(p, "temu.token_check_interval", t.token_check_interval);
        if let Some(proxy) = &t.proxy {
            if let Err(message) = check_proxy_url(&proxy.url) {
                p.push(("temu.proxy.url".to_string(), message));
            }
            if proxy.password.is_some() && proxy.username.is_none() {
                p.push((
                    "temu.proxy.password".to_string(),
                    "a proxy password needs temu.proxy.username".to_string(),
                ));
            }
        }
    }

    fn validate_apps_and_shops(&self, p: &mut Problems) {
        let mut app_names = HashSet::new();
        let mut qps_of_key: HashMap<&str, (usize, u32)> = HashMap::new();
        for (i, app) in self.apps.iter().enumerate() {
            let key = format!("apps[{i}]");
            check_unique_name(p, &key, "app", &app.name, &mut app_names);
            if app.app_key.trim().is_empty() {
                p.push((format!("{key}.app_key"), "must not be empty".to_string()));
            }
            in_range(p, &format!("{key}.qps"), u64::from(app.qps), 1, 10_000);
            // The budget belongs to the app_key: two entries of one key must agree on it.
            match qps_of_key.get(app.app_key.as_str()) {
                Some((first, qps)) if *qps != app.qps => p.push((
                    format!("{key}.qps"),
                    format!(
                        "apps[{first}] has the same app_key with qps {qps}; one app_key has one \
                         budget: give both entries the same qps (or one entry for the key)"
                    ),
                )),
                Some(_) => {}
                None => {
                    qps_of_key.insert(app.app_key.as_str(), (i, app.qps));
                }
            }
        }
        let mut shop_names = HashSet::new();
        for (i, shop) in self.shops.iter().enumerate() {
            let key = format!("shops[{i}]");
            check_unique_name(p, &key, "shop", &shop.name, &mut shop_names);
            if !app_names.contains(shop.app.as_str()) {
                p.push((format!("{key}.app"), self.unknown_app(&shop.app)));
            }
            if let Some(url) = &shop.base_url {
                if let Err(message) = check_base_url(url) {
                    p.push((format!("{key}.base_url"), message));
                }
            }
            check_streams(p, &key, &shop.streams);
        }
    }

    /// The message for a shop whose `app` names no app: the names there are.
    fn unknown_app(&self, app: &str) -> String {
        let known: Vec<&str> = self.apps.iter().map(|a| a.name.as_str()).collect();
        let known = if known.is_empty() {
            "there are no apps; add one under `apps`".to_string()
        } else {
            format!("expected one of: {}", known.join(", "))
        };
        format!("no app named {app:?} in `apps`; {known}")
    }

    fn validate_sync(&self, p: &mut Problems) {
        let s = &self.sync;
        positive(p, "sync.task_timeout", s.task_timeout);
        in_range(
            p,
            "sync.batch_size",
            s.batch_size as u64,
            1,
            MAX_BATCH_SIZE as u64,
        );
        in_range(p, "sync.max_retries", u64::from(s.max_retries), 0, 1000);
        positive(p, "sync.initial_window", s.initial_window);
        in_range(
            p,
            "sync.max_concurrent_runs",
            s.max_concurrent_runs as u64,
            1,
            1024,
        );
        positive(p, "sync.chunk", s.chunk);
        if let Some(pages) = s.page_concurrency {
            let max = MAX_PAGE_CONCURRENCY as u64;
            in_range(p, "sync.page_concurrency", pages as u64, 1, max);
        }
        positive(p, "sync.lease_ttl", s.lease_ttl);
        positive(p, "sync.lag_warn", s.lag_warn);
        audit_settings(p, s.audit_interval, s.audit_window);
        backoff_range(
            p,
            "sync.retry_backoff",
            s.retry_backoff_min,
            s.retry_backoff_max,
        );
        positive(p, "sync.intervals.orders", s.intervals.orders);
        positive(p, "sync.intervals.products", s.intervals.products);
        positive(p, "sync.intervals.aftersales", s.intervals.aftersales);
        fulfillment_types(p, &s.fulfillment_types);
    }

    fn validate_supervisor(&self, p: &mut Problems) {
        let s = &self.supervisor;
        positive(p, "supervisor.restart_window", s.restart_window);
        backoff_range(p, "supervisor.backoff", s.backoff_min, s.backoff_max);
        ping_settings(p, "supervisor", s.ping_interval, s.ping_timeout);
        let missed = u64::from(s.max_missed_pings);
        in_range(p, "supervisor.max_missed_pings", missed, 1, 100);
        let restarts = u64::from(s.max_restarts);
        in_range(p, "supervisor.max_restarts", restarts, 0, 10_000);
        positive(p, "supervisor.call_timeout", s.call_timeout);
        positive(p, "supervisor.shutdown_timeout", s.shutdown_timeout);
    }

    fn validate_log(&self, p: &mut Problems) {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            p.push((
                "log.level".to_string(),
                format!(
                    "invalid filter {:?}: {e}; expected e.g. info, debug or temu_sync=debug,info",
                    self.log.level
                ),
            ));
        }
    }
}

impl DatabaseConfig {
    /// The connection settings for tokio-postgres: `url` parsed, plus the password from
    /// `password`. Nothing else is applied (timeouts and keepalive are the db module's choice).
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        let mut config = parse_database_url(&self.url).map_err(|message| {
            ConfigError::one(
                IssueOrigin::FileOnly {
                    source: "configuration".to_string(),
                },
                "database.url",
                message,
            )
        })?;
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        Ok(config)
    }
}

fn parse_database_url(url: &str) -> Result<tokio_postgres::Config, String> {
    // The parser's message may quote the input; the URL holds no password once validated, but
    // keep the message generic in case it does.
    url.parse::<tokio_postgres::Config>().map_err(|_| {
        "not a valid PostgreSQL connection string: expected \
         postgres://user@host:port/dbname[?param=value…]"
            .to_string()
    })
}

fn check_database_url(url: &str) -> Result<(), String> {
    let config = parse_database_url(url)?;
    if config.get_password().is_some() {
        return Err(
            "the URL contains a password: put the password in database.password \
                    (e.g. {env: PGPASSWORD})"
                .to_string(),
        );
    }
    if config.get_hosts().is_empty() {
        return Err("the URL names no host: expected postgres://user@host:port/dbname".to_string());
    }
    if config.get_user().is_none() {
        return Err("the URL names no user: expected postgres://user@host:port/dbname".to_string());
    }
    Ok(())
}

/// A CA file only means something with TLS on, and must be a readable file (its PEM content is
/// checked when the connector is built).
fn check_tls_ca_file(url: &str, path: &std::path::Path) -> Result<(), String> {
    let asks_tls = parse_database_url(url)
        .map(|c| c.get_ssl_mode() == tokio_postgres::config::SslMode::Require)
        .unwrap_or(true); // a bad URL is reported under database.url
    if !asks_tls {
        return Err(
            "set, but database.url does not ask for TLS: add ?sslmode=require to the URL \
             (or remove tls_ca_file)"
                .to_string(),
        );
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!("{} is not a file", path.display())),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn check_proxy_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{url:?} is not a URL: expected e.g. socks5://10.0.0.2:1080 or http://proxy:3128"
        ));
    };
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "socks5" | "socks5h") {
        return Err(format!(
            "unsupported proxy scheme {scheme:?}: expected http, https, socks5 or socks5h"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        // Don't echo the URL: it holds credentials.
        return Err(
            "the proxy URL contains credentials: put them in temu.proxy.username and \
                    temu.proxy.password"
                .to_string(),
        );
    }
    if authority.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok(())
}

/// `{key}.name` is a valid name not yet in `seen` (of apps or of shops), and is added to it.
fn check_unique_name<'a>(
    p: &mut Problems,
    key: &str,
    kind: &str,
    name: &'a str,
    seen: &mut HashSet<&'a str>,
) {
    let key = format!("{key}.name");
    check_name(p, &key, name);
    if !seen.insert(name) {
        p.push((
            key,
            format!("{kind} name {name:?} is used twice; names must be unique"),
        ));
    }
}

/// An `http(s)://host…` URL the HTTP client accepts. The URL itself is not echoed (it may hold
/// credentials).
fn check_base_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
        return Err("not a URL: expected http://host… or https://host…".to_string());
    }
    match reqwest::Url::parse(url.trim()) {
        Ok(parsed) if parsed.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        Ok(_) => Err("the URL names no host: expected http://host… or https://host…".to_string()),
        Err(e) => Err(format!(
            "not a valid URL ({e}); expected http://host[:port]/path with no spaces"
        )),
    }
}

/// At least one stream, none listed twice.
fn check_streams(p: &mut Problems, key: &str, streams: &[Stream]) {
    if streams.is_empty() {
        p.push((
            format!("{key}.streams"),
            "list at least one of orders, products, aftersales (or remove the key for all)"
                .to_string(),
        ));
    }
    let mut seen = HashSet::new();
    for s in streams {
        if !seen.insert(*s) {
            p.push((
                format!("{key}.streams"),
                format!("{} is listed twice", s.as_str()),
            ));
        }
    }
}

fn check_name(p: &mut Problems, key: &str, name: &str) {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        p.push((
            key.to_string(),
            format!("invalid name {name:?}: expected letters, digits, `-` and `_` only"),
        ));
    }
}

/// `database.idle_timeout`: 1 s to 1 day (the pool's reaper runs every quarter of it, at least
/// every 250 ms).
fn check_idle_timeout(p: &mut Problems, d: Duration) {
    let (min, max) = (Duration::from_secs(1), Duration::from_secs(86_400));
    if d < min || d > max {
        p.push((
            "database.idle_timeout".to_string(),
            format!(
                "{} is out of range: expected 1s to 1d",
                super::duration::format(d)
            ),
        ));
    }
}

/// `sync.audit_interval` 1 second to 30 days; `sync.audit_window` 1 to 366 days (one API call
/// per day per stream each time).
fn audit_settings(p: &mut Problems, interval: Duration, window: Duration) {
    const DAY: u64 = 86_400;
    let secs = interval.as_secs();
    if !(1..=30 * DAY).contains(&secs) {
        p.push((
            "sync.audit_interval".to_string(),
            "must be 1s to 30d; expected e.g. 1d".to_string(),
        ));
    }
    if !(DAY..=366 * DAY).contains(&window.as_secs()) {
        p.push((
            "sync.audit_window".to_string(),
            "must be 1d to 366d (one API call per day per stream); expected e.g. 30d".to_string(),
        ));
    }
}

fn positive(p: &mut Problems, key: &str, d: Duration) {
    if d.is_zero() {
        p.push((
            key.to_string(),
            "must be longer than zero; expected e.g. 30s".to_string(),
        ));
    }
}

/// `lo ≤ n ≤ hi`, or a problem naming the value and the range.
fn in_range(p: &mut Problems, key: &str, n: u64, lo: u64, hi: u64) {
    if n < lo || n > hi {
        let what = if lo == 1 && n == 0 {
            "must be at least 1".to_string()
        } else {
            format!("{n} is out of range")
        };
        p.push((key.to_string(), format!("{what}; expected {lo} to {hi}")));
    }
}

/// `{prefix}_min` is longer than zero and not longer than `{prefix}_max`.
fn backoff_range(p: &mut Problems, prefix: &str, min: Duration, max: Duration) {
    let min_key = format!("{prefix}_min");
    positive(p, &min_key, min);
    not_above(p, &min_key, min, &format!("{prefix}_max"), max);
}

/// `{section}.ping_interval` and `{section}.ping_timeout` are longer than zero, and a ping
/// times out before the next one is due.
fn ping_settings(p: &mut Problems, section: &str, interval: Duration, timeout: Duration) {
    let interval_key = format!("{section}.ping_interval");
    let timeout_key = format!("{section}.ping_timeout");
    positive(p, &interval_key, interval);
    positive(p, &timeout_key, timeout);
    less_than(p, &timeout_key, timeout, &interval_key, interval);
}

fn less_than(p: &mut Problems, key: &str, d: Duration, other_key: &str, other: Duration) {
    if !d.is_zero() && !other.is_zero() && d >= other {
        p.push((
            key.to_string(),
            format!(
                "{} must be shorter than {other_key} ({})",
                super::duration::format(d),
                super::duration::format(other)
            ),
        ));
    }
}

fn not_above(p: &mut Problems, key: &str, d: Duration, other_key: &str, other: Duration) {
    if d > other {
        p.push((
            key.to_string(),
            format!(
                "{} is longer than {other_key} ({})",
                super::duration::format(d),
                super::duration::format(other)
            ),
        ));
    }
}

/// `sync.fulfillment_types`: at least one, each once (unknown values fail at parsing, naming the
/// allowed ones).
fn fulfillment_types(p: &mut Problems, types: &[FulfillmentType]) {
    let allowed = FulfillmentType::ALL.map(FulfillmentType::as_str).join(", ");
    if types.is_empty() {
        p.push((
            "sync.fulfillment_types".to_string(),
            format!("must name at least one of: {allowed} (both fetch every child order)"),
        ));
    }
    let mut seen = HashSet::new();
    for t in types {
        if !seen.insert(*t) {
            p.push((
                "sync.fulfillment_types".to_string(),
                format!("{} is listed twice", t.as_str()),
            ));
        }
    }
}
