//! The configuration model: every key the daemon reads, with its default.
//!
//! Defaults are the numbers of the original robustness write-up (the "seed"); each key is read by
//! exactly one component, named in its doc comment. `config.yaml` at the repository root documents
//! the same keys line by line — keep the two in step.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::secret::Secret;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(deserialize_with = "null_as_default")]
    pub http: HttpConfig,
    #[serde(deserialize_with = "null_as_default")]
    pub database: DatabaseConfig,
    #[serde(deserialize_with = "null_as_default")]
    pub temu: TemuConfig,
    #[serde(deserialize_with = "null_as_default")]
    pub apps: Vec<AppConfig>,
    #[serde(deserialize_with = "null_as_default")]
    pub shops: Vec<ShopConfig>,
    #[serde(deserialize_with = "null_as_default")]
    pub sync: SyncConfig,
    #[serde(deserialize_with = "null_as_default")]
    pub supervisor: SupervisorConfig,
    #[serde(deserialize_with = "null_as_default")]
    pub log: LogConfig,
}

/// A section written with no value (`database:` with every key commented out) means its defaults.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The health / control endpoint (read by `http`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on. Loopback by default: put a reverse proxy in front to expose it.
    pub listen: SocketAddr,
    /// Deadline for one request, end to end (seed: 300 s).
    #[serde(with = "super::duration")]
    pub request_timeout: Duration,
    /// Deadline for a client to send its request headers (slowloris guard).
    #[serde(with = "super::duration")]
    pub header_read_timeout: Duration,
    /// Open connections at most; further connections wait in the kernel backlog.
    pub max_connections: usize,
    /// Requests per second per client IP on every route except the health probes.
    pub rate_limit_per_second: u32,
    /// Requests a client may make at once before the per-second rate applies (bucket size).
    pub rate_limit_burst: u32,
    /// Bearer token for the control routes (`POST /sync/...`). Unset: control routes answer 403.
    pub admin_token: Option<Secret>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(300),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 256,
            rate_limit_per_second: 20,
            rate_limit_burst: 40,
            admin_token: None,
        }
    }
}

/// PostgreSQL and the connection pool (read by `db`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user@host:port/dbname[?params]`. Put the password in `password`, not here.
    pub url: String,
    /// The role's password, by reference (`{env: NAME}`, `{file: PATH}`, `{credential: NAME}`).
    pub password: Option<Secret>,
    /// Connections kept open (seed: 10); the pool's `min_idle`.
    pub pool_size: u32,
    /// Extra connections opened under load (seed: 20); max size = pool_size + max_overflow.
    pub max_overflow: u32,
    /// Longest wait for a free connection before a checkout fails (seed: 30 s).
    #[serde(with = "super::duration")]
    pub pool_timeout: Duration,
    /// A connection older than this is closed and replaced (seed: 1 h).
    #[serde(with = "super::duration")]
    pub pool_recycle: Duration,
    /// A connection unused this long is closed; the pool opens new ones up to `pool_size`
    /// (1 s to 1 d; default 10 min).
    #[serde(with = "super::duration")]
    pub idle_timeout: Duration,
    /// Deadline for opening one connection (seed: 10 s).
    #[serde(with = "super::duration")]
    pub connect_timeout: Duration,
    /// Server-side limit on one statement (seed: 30 s).
    #[serde(with = "super::duration")]
    pub statement_timeout: Duration,
    /// Server-side limit on waiting for a lock.
    #[serde(with = "super::duration")]
    pub lock_timeout: Duration,
    /// The server ends a session left idle inside a transaction this long.
    #[serde(with = "super::duration")]
    pub idle_in_transaction_timeout: Duration,
    /// TCP keepalive idle time on database sockets (detects a vanished server).
    #[serde(with = "super::duration")]
    pub keepalive_idle: Duration,
    /// How often the pool actor pings the database.
    #[serde(with = "super::duration")]
    pub ping_interval: Duration,
    /// Deadline for one ping (checkout + `SELECT 1`).
    #[serde(with = "super::duration")]
    pub ping_timeout: Duration,
    /// Warn when a connection is held longer than this (leak detection).
    #[serde(with = "super::duration")]
    pub leak_threshold: Duration,
    /// Create the database at start when it does not exist (needs CREATEDB).
    pub create_database: bool,
    /// First retry delay after the database was found unreachable.
    #[serde(with = "super::duration")]
    pub retry_min: Duration,
    /// Longest retry delay while the database stays unreachable.
    #[serde(with = "super::duration")]
    pub retry_max: Duration,
    /// PEM file of the CA certificates trusted for the server's certificate, instead of the
    /// system's; used when `url` has `sslmode=require` (then TLS is always verified).
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/temu_sync".to_string(),
            password: None,
            pool_size: 10,
            max_overflow: 20,
            pool_timeout: Duration::from_secs(30),
            pool_recycle: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(60),
            keepalive_idle: Duration::from_secs(60),
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(5),
            leak_threshold: Duration::from_secs(60),
            create_database: true,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            tls_ca_file: None,
        }
    }
}

/// The Temu API HTTP client (read by `temu`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemuConfig {
    /// Whole-request deadline for one attempt (seed: 30 s).
    #[serde(with = "super::duration")]
    pub timeout: Duration,
    /// TCP/TLS connect deadline (seed: 10 s).
    #[serde(with = "super::duration")]
    pub connect_timeout: Duration,
    /// Longest gap between two reads of a response (seed: 30 s).
    #[serde(with = "super::duration")]
    pub read_timeout: Duration,
    /// Written data left unacknowledged this long closes the connection (seed: 10 s), enforced
    /// as the socket's `TCP_USER_TIMEOUT`.
    #[serde(with = "super::duration")]
    pub write_timeout: Duration,
    /// Longest wait for a free connection slot (seed: 5 s).
    #[serde(with = "super::duration")]
    pub pool_timeout: Duration,
    /// Requests in flight at most (seed: 100).
    pub max_connections: usize,
    /// Idle keep-alive connections kept per host (seed: 20).
    pub max_keepalive_connections: usize,
    /// Retries of one call after a retryable error.
    pub max_retries: u32,
    /// Deadline for one call including its retries.
    #[serde(with = "super::duration")]
    pub call_deadline: Duration,
    /// Consecutive transport failures (connect, reset, timeout, 5xx) that open a router's circuit.
    pub breaker_threshold: u32,
    /// How long an open circuit fails fast before it lets one probe through.
    #[serde(with = "super::duration")]
    pub breaker_cool_off: Duration,
    /// First retry backoff ceiling; doubles per retry (full jitter: uniform in [0, ceiling]).
    #[serde(with = "super::duration")]
    pub retry_backoff_min: Duration,
    /// Largest retry backoff ceiling.
    #[serde(with = "super::duration")]
    pub retry_backoff_max: Duration,
    /// How often every shop's access token is checked (expiry and scopes).
    #[serde(with = "super::duration")]
    pub token_check_interval: Duration,
    /// `http://`, `https://` or `socks5://` proxy for every Temu call.
    pub proxy: Option<ProxyConfig>,
}

impl Default for TemuConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            pool_timeout: Duration::from_secs(5),
            max_connections: 100,
            max_keepalive_connections: 20,
            max_retries: 3,
            call_deadline: Duration::from_secs(120),
            breaker_threshold: 5,
            breaker_cool_off: Duration::from_secs(30),
            retry_backoff_min: Duration::from_millis(250),
            retry_backoff_max: Duration::from_secs(10),
            token_check_interval: Duration::from_secs(6 * 3600),
            proxy: None,
        }
    }
}

/// An outbound proxy for Temu calls.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Proxy URL without credentials, e.g. `socks5://10.0.0.2:1080`.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// One Temu Open Platform app (an `app_key` and its secret); its QPS budget is shared by its shops.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub name: String,
    pub app_key: String,
    pub app_secret: Secret,
    #[serde(default = "default_qps")]
    pub qps: u32,
}

fn default_qps() -> u32 {
    20
}

/// Temu API regions, each with its own router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Us,
    Eu,
    Global,
    Cn,
}

/// What a sync actor copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Orders,
    Products,
    Aftersales,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Orders, Stream::Products, Stream::Aftersales];

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Orders => "orders",
            Stream::Products => "products",
            Stream::Aftersales => "aftersales",
        }
    }
}

/// One seller shop: which app it uses, its token, and what to sync.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShopConfig {
    /// Our name for the shop (used in logs, metrics and URLs): letters, digits, `-`, `_`.
    pub name: String,
    pub region: Region,
    /// Name of an entry in `apps`.
    pub app: String,
    pub access_token: Secret,
    /// Overrides the region's router URL (a relay, or the simulator).
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default = "all_streams")]
    pub streams: Vec<Stream>,
}

fn all_streams() -> Vec<Stream> {
    Stream::ALL.to_vec()
}

/// Largest `sync.batch_size`: a batch is one multi-row `INSERT … ON CONFLICT`, and PostgreSQL takes
/// at most 65 535 bind parameters a statement; the widest row today has 19 columns
/// (`order_items`), so 1 000 rows leave room for tables that grow (a child table's rows are
/// inserted in statements of at most this many rows too).
pub const MAX_BATCH_SIZE: usize = 1000;

/// Sync scheduling and batching (read by `sync`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// A run longer than this is cancelled cleanly (seed: 1 h).
    #[serde(with = "super::duration")]
    pub task_timeout: Duration,
    /// Records per upsert statement (seed: 100).
    pub batch_size: usize,
    /// Retries of a failed run before waiting for the next interval (seed: 3).
    pub max_retries: u32,
    /// How far each window reaches back before the cursor (overlap against late updates).
    #[serde(with = "super::duration")]
    pub lookback: Duration,
    /// What the first run of a stream backfills.
    #[serde(with = "super::duration")]
    pub initial_window: Duration,
    /// Runs in progress at once across all shops (the seed's "sync task rate limiting").
    pub max_concurrent_runs: usize,
    /// Windows end this long before now: records still moving are left for the next run.
    #[serde(with = "super::duration")]
    pub settle: Duration,
    /// A window is walked in chunks of this length; the cursor advances chunk by chunk.
    #[serde(with = "super::duration")]
    pub chunk: Duration,
    /// Pages of one run in flight at once; `None`: one per QPS of the shop's app
    /// ([`SyncConfig::page_concurrency_for`]).
    pub page_concurrency: Option<usize>,
    /// How long a daemon's claim on a shop × stream lasts without a heartbeat; a dead daemon's
    /// streams are taken over by another within this period.
    #[serde(with = "super::duration")]
    pub lease_ttl: Duration,
    /// `/health` warns for a stream whose data is older than this.
    #[serde(with = "super::duration")]
    pub lag_warn: Duration,
    /// How often the daemon audits its copy against Temu's daily totals (and repairs the days
    /// that differ): one call per audited day per stream.
    #[serde(with = "super::duration")]
    pub audit_interval: Duration,
    /// How far back the scheduled audit reaches (whole UTC days).
    #[serde(with = "super::duration")]
    pub audit_window: Duration,
    /// First delay before retrying a failed run; doubles per retry, with jitter.
    #[serde(with = "super::duration")]
    pub retry_backoff_min: Duration,
    /// Longest delay before retrying a failed run.
    #[serde(with = "super::duration")]
    pub retry_backoff_max: Duration,
    #[serde(deserialize_with = "null_as_default")]
    pub intervals: SyncIntervals,
    /// Which child orders the order calls ask for (`fulfillmentTypeList`); both by default, since
    /// the API lists only seller-fulfilled children when the list is absent.
    pub fulfillment_types: Vec<FulfillmentType>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            task_timeout: Duration::from_secs(3600),
            batch_size: 100,
            max_retries: 3,
            lookback: Duration::from_secs(3600),
            initial_window: Duration::from_secs(90 * 86400),
            max_concurrent_runs: 4,
            settle: Duration::from_secs(30),
            chunk: Duration::from_secs(86_400),
            page_concurrency: None,
            lease_ttl: Duration::from_secs(60),
            lag_warn: Duration::from_secs(2 * 3600),
            audit_interval: Duration::from_secs(86_400),
            audit_window: Duration::from_secs(30 * 86_400),
            retry_backoff_min: Duration::from_secs(30),
            retry_backoff_max: Duration::from_secs(600),
            intervals: SyncIntervals::default(),
            fulfillment_types: FulfillmentType::ALL.to_vec(),
        }
    }
}

/// Who fulfils a child order, as the order calls name it in `fulfillmentTypeList` and
/// `fulfillmentType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum FulfillmentType {
    /// `fulfillBySeller`: the seller ships (the only children listed when the filter is absent).
    #[serde(rename = "fulfillBySeller")]
    Seller,
    /// `fulfillByCooperativeWarehouse`: a cooperative warehouse ships.
    #[serde(rename = "fulfillByCooperativeWarehouse")]
    CooperativeWarehouse,
}

impl FulfillmentType {
    pub const ALL: [FulfillmentType; 2] = [Self::Seller, Self::CooperativeWarehouse];

    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Seller => "fulfillBySeller",
            Self::CooperativeWarehouse => "fulfillByCooperativeWarehouse",
        }
    }
}

/// Largest `sync.page_concurrency`, and the cap of its default.
pub const MAX_PAGE_CONCURRENCY: usize = 64;

impl SyncConfig {
    /// Pages one run of a shop whose app allows `qps` calls a second may have in flight: the
    /// configured `page_concurrency`, or by default `⌈qps × 1 s⌉` (at most
    /// [`MAX_PAGE_CONCURRENCY`]) — enough to keep the app's limiter busy while each call takes up
    /// to a second (20 in flight at 800 ms ± 50 % offer 25 calls/s against a budget of 20).
    pub fn page_concurrency_for(&self, qps: u32) -> usize {
        self.page_concurrency
            .unwrap_or(qps as usize)
            .clamp(1, MAX_PAGE_CONCURRENCY)
    }
}

/// How often each stream runs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncIntervals {
    #[serde(with = "super::duration")]
    pub orders: Duration,
    #[serde(with = "super::duration")]
    pub products: Duration,
    #[serde(with = "super::duration")]
    pub aftersales: Duration,
}

impl Default for SyncIntervals {
    fn default() -> Self {
        Self {
            orders: Duration::from_secs(60),
            products: Duration::from_secs(60 * 60),
            aftersales: Duration::from_secs(60),
        }
    }
}

/// Restart policy, hang detection and shutdown (read by `supervisor`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// More restarts than this within `restart_window` stops the daemon (exit 69).
    pub max_restarts: u32,
    #[serde(with = "super::duration")]
    pub restart_window: Duration,
    /// First restart delay; doubles per consecutive failure of the same child, with jitter.
    #[serde(with = "super::duration")]
    pub backoff_min: Duration,
    #[serde(with = "super::duration")]
    pub backoff_max: Duration,
    /// How often every child is pinged.
    #[serde(with = "super::duration")]
    pub ping_interval: Duration,
    /// Deadline for one ping answer.
    #[serde(with = "super::duration")]
    pub ping_timeout: Duration,
    /// A child that misses this many pings in a row is killed and restarted.
    pub max_missed_pings: u32,
    /// Default deadline for calls between actors.
    #[serde(with = "super::duration")]
    pub call_timeout: Duration,
    /// Longest an orderly shutdown may take before the process exits anyway.
    #[serde(with = "super::duration")]
    pub shutdown_timeout: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            restart_window: Duration::from_secs(30),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(2),
            max_missed_pings: 3,
            call_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Log output (read by `telemetry`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `temu_sync=debug,info`, … (`RUST_LOG` wins when set).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// journald when stderr is the journal, pretty on a terminal, json otherwise.
    Auto,
    Journald,
    Json,
    Pretty,
}
