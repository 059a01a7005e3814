//! Prometheus metrics: the registry, the recording API the other parts call, and the text served
//! at `GET /metrics`.
//!
//! Owns: every series — its name and help text ([`names`]), label set and histogram buckets
//! ([`Metrics`]). Event
//! series (sync runs, API attempts, checkout waits) are recorded by their producers through the
//! methods below, and so are the typed state gauges of the Temu client (circuit state, token
//! expiry: set by the client whenever it publishes that state). The other state series (pool
//! counters, actor restarts, health per check) mirror the [`Health`] snapshot and are refreshed
//! from it at scrape time by [`Metrics::render`], so they can never disagree with `/health`.
//! Panics of spawned tasks are caught and counted through `panics.rs` ([`catch_panic`],
//! [`Metrics::watched`]).
//!
//! Backend: `metrics` + `metrics-exporter-prometheus` without default features (no listener of its
//! own; we serve the text from our hyper route). Chosen over `prometheus-client` because it writes
//! the Prometheus text format 0.0.4 that `/metrics` advertises and `promtool check metrics` parses
//! (prometheus-client writes OpenMetrics only: `_total` samples under a family without the suffix
//! and `info` types, which the 0.0.4 parser does not understand). The recorder is *not* installed
//! globally: each [`Metrics`] owns its own, so tests in one process stay independent.
//!
//! Must not: import the parts it measures (they call in with typed values; nothing is parsed
//! back out of `/health`), or put an unbounded value in a label — labels are shop and stream
//! names (from the configuration), API names, outcome and error-code classes, actor and check
//! names, router URLs without credentials. Never an order id, a request id, a token or an error
//! message.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use metrics::{Key, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::health::{Health, Status};

pub mod names;
mod panics;

pub use panics::{
    catch_panic, panic_message, TASKS, TASK_HEARTBEAT, TASK_METRICS_UPKEEP, TASK_NOTIFIER,
    TASK_QPS_BUDGET, TASK_SYNC_RUN,
};

use names::Kind;

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How a sync run ended (the `outcome` label of `temu_sync_sync_runs_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    Success,
    /// Failed (API, database, or decode error); the next interval tries again.
    Failure,
    /// Cancelled by `sync.task_timeout`.
    Timeout,
    /// Stopped by shutdown before it finished.
    Cancelled,
}

impl RunResult {
    pub const ALL: [RunResult; 4] = [
        RunResult::Success,
        RunResult::Failure,
        RunResult::Timeout,
        RunResult::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Failure => "failure",
            RunResult::Timeout => "timeout",
            RunResult::Cancelled => "cancelled",
        }
    }
}

/// The value of `temu_sync_api_circuit_state` for one router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitGauge {
    Closed,
    HalfOpen,
    Open,
}

impl CircuitGauge {
    /// 0 closed, 1 half-open, 2 open.
    pub fn value(self) -> f64 {
        match self {
            CircuitGauge::Closed => 0.0,
            CircuitGauge::HalfOpen => 1.0,
            CircuitGauge::Open => 2.0,
        }
    }
}

/// Buckets of the sync run duration histogram (seconds): a run is seconds to an hour.
const RUN_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Buckets of the API request duration histogram (seconds).
const API_BUCKETS: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets of the database checkout wait histogram (seconds).
const CHECKOUT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0, 30.0,
];

const META: Metadata<'static> = Metadata::new("temu_sync", Level::INFO, Some("temu_sync::metrics"));

struct Inner {
    recorder: PrometheusRecorder,
}

/// The registry. Cheap to clone; every clone records into the same series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect()
}

fn status_value(status: Status) -> f64 {
    match status {
        Status::Pass => 0.0,
        Status::Warn => 1.0,
        Status::Fail => 2.0,
    }
}

/// How often the daemon folds histogram samples ([`Metrics::run_upkeep`]).
pub const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Metrics {
    /// A fresh registry with every label-free series registered (so they show from the first
    /// scrape) and `temu_sync_build_info` set.
    pub fn new() -> Self {
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in [
            (names::SYNC_RUN_DURATION, RUN_BUCKETS),
            (names::API_DURATION, API_BUCKETS),
            (names::DB_CHECKOUT_WAIT, CHECKOUT_BUCKETS),
            (names::API_RATE_LIMIT_WAIT, CHECKOUT_BUCKETS),
        ] {
            // Only fails on empty buckets, which these constants are not.
            builder = match builder.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
            {
                Ok(b) => b,
                Err(_) => unreachable!("histogram buckets are non-empty constants"),
            };
        }
        let metrics = Self {
            inner: Arc::new(Inner {
                recorder: builder.build_recorder(),
            }),
        };
        metrics.describe_all();
        metrics.gauge(
            names::BUILD_INFO,
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        metrics.gauge(names::START_TIME, &[], start);
        metrics.counter_absolute(names::DB_CHECKOUT_TIMEOUTS, &[], 0);
        metrics.counter_absolute(names::DB_BROKEN, &[], 0);
        metrics.init_task_panics();
        metrics.gauge(names::DB_UP, &[], 0.0);
        metrics.gauge(names::DB_POOL_WAITING, &[], 0.0);
        metrics.gauge(names::DB_POOL_MAX, &[], 0.0);
        for state in ["idle", "in_use"] {
            metrics.gauge(names::DB_POOL_CONNECTIONS, &[("state", state)], 0.0);
        }
        let _ = metrics
            .inner
            .recorder
            .register_histogram(&Key::from_name(names::DB_CHECKOUT_WAIT), &META);
        metrics
    }

    fn describe_all(&self) {
        let r = &self.inner.recorder;
        for series in names::CATALOGUE {
            let (name, help) = (series.name.into(), SharedString::const_str(series.help));
            match series.kind {
                Kind::Counter => r.describe_counter(name, series.unit, help),
                Kind::Gauge => r.describe_gauge(name, series.unit, help),
                Kind::Histogram => r.describe_histogram(name, series.unit, help),
            }
        }
    }

    fn counter_add(&self, name: &'static str, pairs: &[(&'static str, &str)], n: u64) {
        self.inner
            .recorder
            .register_counter(&Key::from_parts(name, labels(pairs)), &META)
            .increment(n);
    }

    fn counter_absolute(&self, name: &'static str, pairs: &[(&'static str, &str)], v: u64) {
        self.inner
            .recorder
            .register_counter(&Key::from_parts(name, labels(pairs)), &META)
            .absolute(v);
    }

    fn gauge(&self, name: &'static str, pairs: &[(&'static str, &str)], v: f64) {
        self.inner
            .recorder
            .register_gauge(&Key::from_parts(name, labels(pairs)), &META)
            .set(v);
    }

    fn observe(&self, name: &'static str, pairs: &[(&'static str, &str)], v: f64) {
        self.inner
            .recorder
            .register_histogram(&Key::from_parts(name, labels(pairs)), &META)
            .record(v);
    }

    // -----------------------------------------------------------------------------------------
    // Sync (called by the sync engine)

    /// Registers every sync series of `shop` × `stream` at zero, so dashboards and alerts see the
    /// stream before its first run finishes.
    pub fn init_sync_series(&self, shop: &str, stream: &str) {
        let base = [("shop", shop), ("stream", stream)];
        for outcome in RunResult::ALL {
            self.counter_add(
                names::SYNC_RUNS,
                &[
                    ("shop", shop),
                    ("stream", stream),
                    ("outcome", outcome.as_str()),
                ],
                0,
            );
        }
        for action in ["inserted", "updated"] {
            self.counter_add(
                names::SYNC_RECORDS,
                &[("shop", shop), ("stream", stream), ("action", action)],
                0,
            );
        }
        self.counter_add(names::SYNC_PAGES, &base, 0);
        let _ = self.inner.recorder.register_histogram(
            &Key::from_parts(names::SYNC_RUN_DURATION, labels(&base)),
            &META,
        );
    }

    /// One finished sync run: its outcome, how long it took, pages fetched and records written.
    // The flat argument list is the agreed call shape for the sync engine.
    #[allow(clippy::too_many_arguments)]
    pub fn record_run(
        &self,
        shop: &str,
        stream: &str,
        outcome: RunResult,
        duration: Duration,
        pages: u64,
        inserted: u64,
        updated: u64,
    ) {
        let base = [("shop", shop), ("stream", stream)];
        self.counter_add(
            names::SYNC_RUNS,
            &[
                ("shop", shop),
                ("stream", stream),
                ("outcome", outcome.as_str()),
            ],
            1,
        );
        self.counter_add(
            names::SYNC_RECORDS,
            &[("shop", shop), ("stream", stream), ("action", "inserted")],
            inserted,
        );
        self.counter_add(
            names::SYNC_RECORDS,
            &[("shop", shop), ("stream", stream), ("action", "updated")],
            updated,
        );
        self.counter_add(names::SYNC_PAGES, &base, pages);
        self.observe(names::SYNC_RUN_DURATION, &base, duration.as_secs_f64());
        if outcome == RunResult::Success {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.gauge(names::SYNC_LAST_SUCCESS, &base, now);
        }
    }

    /// How far `shop`/`stream` lags behind Temu, in seconds.
    pub fn set_lag(&self, shop: &str, stream: &str, secs: f64) {
        self.gauge(
            names::SYNC_LAG,
            &[("shop", shop), ("stream", stream)],
            secs.max(0.0),
        );
    }

    /// Days still differing after the last scheduled audit of (shop, stream) and its repair.
    pub fn set_audit_differences(&self, shop: &str, stream: &str, days: usize) {
        let pairs = [("shop", shop), ("stream", stream)];
        self.gauge(names::AUDIT_DIFFERENCES, &pairs, days as f64);
    }

    // -----------------------------------------------------------------------------------------
    // Temu API (called by the client)

    /// One API attempt: `api` is the Temu `type` (e.g. `bg.order.list.v2.get`), `outcome` one of
    /// `ok`, `api_error`, `http_error`, `transport`, `decode`, `rejected`.
    pub fn record_api_attempt(&self, api: &str, outcome: &str, duration: Duration) {
        self.observe(
            names::API_DURATION,
            &[("type", api), ("outcome", outcome)],
            duration.as_secs_f64(),
        );
    }

    /// A failed attempt's error code: the Temu code, `http_<status>`, `transport_<kind>`, …
    pub fn record_api_error(&self, api: &str, code: &str) {
        self.counter_add(names::API_ERRORS, &[("type", api), ("code", code)], 1);
    }

    /// `records` records of `stream` carried `field` with a value of an undocumented type.
    pub fn record_unexpected_field_type(&self, stream: &str, field: &str, records: u64) {
        self.counter_add(
            names::UNEXPECTED_FIELD_TYPES,
            &[("stream", stream), ("field", field)],
            records,
        );
    }

    pub fn record_api_retry(&self, api: &str) {
        self.counter_add(names::API_RETRIES, &[("type", api)], 1);
    }

    /// An attempt waited `waited` for its app's QPS budget (`_count` of the histogram counts the
    /// waits, `_sum` adds up the time).
    pub fn record_rate_limit_wait(&self, shop: &str, waited: Duration) {
        self.observe(
            names::API_RATE_LIMIT_WAIT,
            &[("shop", shop)],
            waited.as_secs_f64(),
        );
    }

    /// This daemon's share of app `app`'s QPS budget, calls a second.
    pub fn set_qps_share(&self, app: &str, share: f64) {
        self.gauge(names::QPS_SHARE, &[("app", app)], share);
    }

    /// The state of the circuit breaker of router `target` (a URL without credentials).
    pub fn set_circuit_state(&self, target: &str, state: CircuitGauge) {
        self.gauge(
            names::API_CIRCUIT_STATE,
            &[("target", target)],
            state.value(),
        );
    }

    /// When `shop`'s access token expires.
    pub fn set_token_expiry(&self, shop: &str, at: DateTime<Utc>) {
        self.gauge(
            names::TOKEN_EXPIRY,
            &[("shop", shop)],
            at.timestamp() as f64,
        );
    }

    // -----------------------------------------------------------------------------------------
    // Database (called by the pool)

    /// Time a checkout waited for a connection (successful or not).
    pub fn record_checkout_wait(&self, waited: Duration) {
        self.observe(names::DB_CHECKOUT_WAIT, &[], waited.as_secs_f64());
    }

    // -----------------------------------------------------------------------------------------
    // Scrape

    /// Folds the histogram samples recorded since the last call into their buckets.
    ///
    /// The exporter keeps every raw sample until it is folded, and `build_recorder` starts no
    /// upkeep task of its own; without this (and without scrapes) memory grows with every
    /// observation (found while investigating the soak's RSS growth). The daemon calls it every
    /// [`UPKEEP_EVERY`]; folding loses nothing (the next render shows the same counts).
    pub fn run_upkeep(&self) {
        self.inner.recorder.handle().run_upkeep();
    }

    /// Refreshes the series that mirror the health snapshot, then renders the text exposition.
    pub fn render(&self, health: &Health) -> String {
        self.refresh_from_health(health);
        self.inner.recorder.handle().render()
    }

    /// Copies the health snapshot into the state series.
    pub fn refresh_from_health(&self, health: &Health) {
        let db = health.db();
        self.gauge(names::DB_UP, &[], if db.reachable { 1.0 } else { 0.0 });
        self.gauge(
            names::DB_POOL_CONNECTIONS,
            &[("state", "idle")],
            f64::from(db.pool.idle),
        );
        self.gauge(
            names::DB_POOL_CONNECTIONS,
            &[("state", "in_use")],
            f64::from(db.pool.in_use),
        );
        self.gauge(names::DB_POOL_MAX, &[], f64::from(db.pool.max_size));
        self.gauge(names::DB_POOL_WAITING, &[], db.pool.waiting as f64);
        self.counter_absolute(names::DB_CHECKOUT_TIMEOUTS, &[], db.pool.checkout_timeouts);
        self.counter_absolute(names::DB_BROKEN, &[], db.pool.broken_closed);
        for (name, child) in health.children() {
            self.counter_absolute(names::ACTOR_RESTARTS, &[("actor", &name)], child.restarts);
        }
        let report = health.report();
        self.gauge(names::HEALTH_STATUS, &[], status_value(report.status));
        for (check, entries) in &report.checks {
            for entry in entries {
                let component = entry.component_id.as_deref().unwrap_or("");
                self.gauge(
                    names::HEALTH_CHECK_STATUS,
                    &[("check", check), ("component", component)],
                    status_value(entry.status),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upkeep_folds_samples_without_losing_them() {
        let m = Metrics::new();
        for _ in 0..1000 {
            m.record_api_attempt("bg.order.list.v2.get", "ok", Duration::from_millis(20));
        }
        m.run_upkeep();
        for _ in 0..500 {
            m.record_api_attempt("bg.order.list.v2.get", "ok", Duration::from_millis(20));
        }
        m.run_upkeep();
        let text = m.render(&Health::new("t"));
        let count = text
            .lines()
            .find(|l| l.starts_with("temu_sync_api_request_duration_seconds_count{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        assert_eq!(count, Some(1500.0), "{text}");
    }

    #[test]
    fn build_info_and_label_free_series_exist_from_the_start() {
        let m = Metrics::new();
        let text = m.render(&Health::new("t"));
        assert!(text.contains("# TYPE temu_sync_build_info gauge"), "{text}");
        assert!(text.contains(&format!(
            "temu_sync_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("# TYPE temu_sync_db_checkout_wait_seconds histogram"));
        assert!(text.contains("temu_sync_db_up 0"));
        assert!(text.contains("temu_sync_health_status 2"), "{text}");
    }

    #[test]
    fn circuit_and_token_gauges_take_typed_values() {
        let m = Metrics::new();
        m.set_circuit_state("http://a/router", CircuitGauge::Closed);
        m.set_circuit_state("http://b/router", CircuitGauge::HalfOpen);
        m.set_circuit_state("http://c/router", CircuitGauge::Open);
        let at = DateTime::<Utc>::from_timestamp(1_900_000_000, 0).expect("a valid instant");
        m.set_token_expiry("shop-0", at);
        let text = m.render(&Health::new("t"));
        for (target, value) in [("a", 0), ("b", 1), ("c", 2)] {
            let line =
                format!("temu_sync_api_circuit_state{{target=\"http://{target}/router\"}} {value}");
            assert!(text.contains(&line), "{line}\n{text}");
        }
        assert!(
            text.contains("temu_sync_token_expiry_timestamp_seconds{shop=\"shop-0\"} 1900000000"),
            "{text}"
        );
    }
}
