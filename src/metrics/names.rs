//! The series `/metrics` serves: every name (all prefixed `temu_sync_`) and its type, unit and
//! help text ([`CATALOGUE`], described to the registry once at start).
//!
//! Owns: what a series is called and what its help line says. Must not: record anything — the
//! recording API is [`super::Metrics`].

use metrics::Unit;

pub const BUILD_INFO: &str = "temu_sync_build_info";
pub const START_TIME: &str = "temu_sync_start_time_seconds";
pub const SYNC_RUNS: &str = "temu_sync_sync_runs_total";
pub const SYNC_RECORDS: &str = "temu_sync_sync_records_total";
pub const SYNC_PAGES: &str = "temu_sync_sync_pages_total";
pub const SYNC_RUN_DURATION: &str = "temu_sync_sync_run_duration_seconds";
pub const SYNC_LAG: &str = "temu_sync_sync_lag_seconds";
pub const SYNC_LAST_SUCCESS: &str = "temu_sync_sync_last_success_timestamp_seconds";
pub const AUDIT_DIFFERENCES: &str = "temu_sync_audit_differences";
pub const API_DURATION: &str = "temu_sync_api_request_duration_seconds";
pub const API_ERRORS: &str = "temu_sync_api_errors_total";
pub const API_RETRIES: &str = "temu_sync_api_retries_total";
pub const UNEXPECTED_FIELD_TYPES: &str = "temu_sync_unexpected_field_types_total";
pub const API_RATE_LIMIT_WAIT: &str = "temu_sync_api_rate_limit_wait_seconds";
pub const QPS_SHARE: &str = "temu_sync_qps_share";
pub const API_CIRCUIT_STATE: &str = "temu_sync_api_circuit_state";
pub const TOKEN_EXPIRY: &str = "temu_sync_token_expiry_timestamp_seconds";
pub const DB_UP: &str = "temu_sync_db_up";
pub const DB_POOL_CONNECTIONS: &str = "temu_sync_db_pool_connections";
pub const DB_POOL_MAX: &str = "temu_sync_db_pool_max_connections";
pub const DB_POOL_WAITING: &str = "temu_sync_db_pool_waiting";
pub const DB_CHECKOUT_WAIT: &str = "temu_sync_db_checkout_wait_seconds";
pub const DB_CHECKOUT_TIMEOUTS: &str = "temu_sync_db_checkout_timeouts_total";
pub const DB_BROKEN: &str = "temu_sync_db_broken_connections_total";
pub const ACTOR_RESTARTS: &str = "temu_sync_actor_restarts_total";
pub const TASK_PANICS: &str = "temu_sync_task_panics_total";
pub const HEALTH_STATUS: &str = "temu_sync_health_status";
pub const HEALTH_CHECK_STATUS: &str = "temu_sync_health_check_status";

/// The Prometheus type of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One documented series.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
}

/// Every series with its help text, in the order they are described.
pub const CATALOGUE: &[Series] = &[
    Series {
        name: SYNC_RUNS,
        kind: Kind::Counter,
        unit: None,
        help: "Sync runs finished, by shop, stream and outcome (success, failure, timeout, cancelled).",
    },
    Series {
        name: SYNC_RECORDS,
        kind: Kind::Counter,
        unit: None,
        help: "Records written by sync runs, by shop, stream and action (inserted, updated).",
    },
    Series {
        name: SYNC_PAGES,
        kind: Kind::Counter,
        unit: None,
        help: "API pages fetched by sync runs, by shop and stream.",
    },
    Series {
        name: API_ERRORS,
        kind: Kind::Counter,
        unit: None,
        help: "Failed Temu API attempts, by API type and error code (Temu code, http_<status>, transport_<kind>, decode, circuit_open, pool_timeout).",
    },
    Series {
        name: UNEXPECTED_FIELD_TYPES,
        kind: Kind::Counter,
        unit: None,
        help: "API records with a field whose value is not of the documented JSON type (its typed column stays NULL; the raw JSON keeps it), by stream and field.",
    },
    Series {
        name: API_RETRIES,
        kind: Kind::Counter,
        unit: None,
        help: "Temu API attempts retried after a retryable error, by API type.",
    },
    Series {
        name: DB_CHECKOUT_TIMEOUTS,
        kind: Kind::Counter,
        unit: None,
        help: "Database checkouts that gave up after database.pool_timeout.",
    },
    Series {
        name: DB_BROKEN,
        kind: Kind::Counter,
        unit: None,
        help: "Database connections closed because they were broken or left inside a transaction.",
    },
    Series {
        name: ACTOR_RESTARTS,
        kind: Kind::Counter,
        unit: None,
        help: "Restarts of each supervised actor since the daemon started.",
    },
    Series {
        name: TASK_PANICS,
        kind: Kind::Counter,
        unit: None,
        help: "Panics caught in the daemon's spawned tasks, by task (sync_run, heartbeat, notifier, metrics_upkeep); each is logged at error with its message.",
    },
    Series {
        name: BUILD_INFO,
        kind: Kind::Gauge,
        unit: None,
        help: "Always 1; the version label says which build runs.",
    },
    Series {
        name: START_TIME,
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        help: "When the daemon started, in seconds since the Unix epoch.",
    },
    Series {
        name: SYNC_LAG,
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        help: "How far the stored data lags behind Temu for a shop and stream (now minus the newest synced change).",
    },
    Series {
        name: AUDIT_DIFFERENCES,
        kind: Kind::Gauge,
        unit: None,
        help: "Days (products: the listing) whose Temu count still differs from the stored count after the last scheduled audit and its repair, by shop and stream.",
    },
    Series {
        name: SYNC_LAST_SUCCESS,
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        help: "When the last successful run of a shop and stream finished, in seconds since the Unix epoch.",
    },
    Series {
        name: API_CIRCUIT_STATE,
        kind: Kind::Gauge,
        unit: None,
        help: "Circuit breaker per Temu router: 0 closed, 1 half-open, 2 open.",
    },
    Series {
        name: TOKEN_EXPIRY,
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        help: "When each shop's access token expires, in seconds since the Unix epoch (absent until checked).",
    },
    Series {
        name: DB_UP,
        kind: Kind::Gauge,
        unit: None,
        help: "1 when the last database ping succeeded, else 0.",
    },
    Series {
        name: DB_POOL_CONNECTIONS,
        kind: Kind::Gauge,
        unit: None,
        help: "Open pooled database connections by state (idle, in_use).",
    },
    Series {
        name: DB_POOL_MAX,
        kind: Kind::Gauge,
        unit: None,
        help: "Largest number of pooled connections (pool_size + max_overflow).",
    },
    Series {
        name: DB_POOL_WAITING,
        kind: Kind::Gauge,
        unit: None,
        help: "Callers waiting for a pooled database connection right now.",
    },
    Series {
        name: HEALTH_STATUS,
        kind: Kind::Gauge,
        unit: None,
        help: "Overall health as on /health: 0 pass, 1 warn, 2 fail.",
    },
    Series {
        name: HEALTH_CHECK_STATUS,
        kind: Kind::Gauge,
        unit: None,
        help: "Each health check and component: 0 pass, 1 warn, 2 fail.",
    },
    Series {
        name: SYNC_RUN_DURATION,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Duration of sync runs, by shop and stream.",
    },
    Series {
        name: API_DURATION,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Duration of Temu API attempts, by API type and outcome (ok, api_error, http_error, transport, decode, rejected).",
    },
    Series {
        name: API_RATE_LIMIT_WAIT,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Waits for an app's QPS budget before a Temu API attempt, by shop (only attempts that waited).",
    },
    Series {
        name: QPS_SHARE,
        kind: Kind::Gauge,
        unit: None,
        help: "This daemon's share of its app's QPS budget (calls a second), by app; 0 while it joins.",
    },
    Series {
        name: DB_CHECKOUT_WAIT,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time spent waiting for a pooled database connection.",
    },
];
