//! The values a health report is made of: [`Status`], [`Check`] (one health+json check entry),
//! [`HealthReport`], what the supervisor records per child ([`ChildHealth`], [`ChildState`]) and
//! what the database actor records ([`DbHealth`], [`PoolStats`]). Plain data: no locks, no I/O.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// pass / warn / fail, ordered so that `max` gives the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One entry of a health report's `checks` map.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_type: Option<&'static str>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<&'static str>,
    pub time: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// The body of `GET /health`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    pub status: Status,
    pub version: &'static str,
    pub service_id: String,
    pub description: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub checks: BTreeMap<String, Vec<Check>>,
}

/// Lifecycle of one supervised child, as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildState {
    Starting,
    Running,
    /// Waiting out the backoff before the next spawn attempt.
    Restarting {
        at: Instant,
    },
    /// Gave up (meltdown or shutdown); the reason is shown to the operator.
    Failed {
        reason: String,
    },
    Stopped,
}

/// What the supervisor records about one child.
#[derive(Debug, Clone)]
pub struct ChildHealth {
    pub state: ChildState,
    /// Restarts since the daemon started.
    pub restarts: u64,
    pub last_error: Option<String>,
    pub since: DateTime<Utc>,
}

impl ChildHealth {
    pub fn starting() -> Self {
        Self {
            state: ChildState::Starting,
            restarts: 0,
            last_error: None,
            since: Utc::now(),
        }
    }

    pub(super) fn check(&self, name: &str) -> Check {
        let (status, text) = match &self.state {
            ChildState::Starting => (Status::Warn, "starting".to_string()),
            ChildState::Running => (Status::Pass, "running".to_string()),
            ChildState::Restarting { at } => {
                let ms = at.saturating_duration_since(Instant::now()).as_millis();
                (Status::Warn, format!("restarting in {ms} ms"))
            }
            ChildState::Failed { reason } => (Status::Fail, format!("failed: {reason}")),
            ChildState::Stopped => (Status::Warn, "stopped".to_string()),
        };
        let output = match (&self.last_error, self.state == ChildState::Running) {
            (Some(err), _) => format!("{text}; last error: {err}"),
            (None, _) => text,
        };
        Check {
            component_id: Some(name.to_string()),
            component_type: Some("component"),
            status,
            observed_value: Some(serde_json::json!({ "restarts": self.restarts })),
            observed_unit: None,
            time: self.since,
            output: Some(output),
        }
    }
}

/// Pool counters published by the database actor.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (idle + in use).
    pub size: u32,
    pub idle: u32,
    pub in_use: u32,
    /// Callers waiting for a connection right now.
    pub waiting: u64,
    pub max_size: u32,
    /// Checkouts that gave up after `pool_timeout`.
    pub checkout_timeouts: u64,
    /// Connections closed because they were broken (or left in a transaction).
    pub broken_closed: u64,
    pub checkouts: u64,
    pub returns: u64,
    /// Checkouts held past `leak_threshold` right now.
    pub leaked_now: u64,
}

/// What the database actor last found.
#[derive(Debug, Clone)]
pub struct DbHealth {
    pub reachable: bool,
    pub migrations_applied: bool,
    pub ping_latency: Option<Duration>,
    pub last_error: Option<String>,
    pub checked_at: DateTime<Utc>,
    pub pool: PoolStats,
}

impl Default for DbHealth {
    fn default() -> Self {
        Self {
            reachable: false,
            migrations_applied: false,
            ping_latency: None,
            last_error: Some("not checked yet".to_string()),
            checked_at: Utc::now(),
            pool: PoolStats::default(),
        }
    }
}
