//! The health snapshot: what every part of the daemon last said about itself.
//!
//! Owns: the in-memory [`Health`] record that actors write into and the HTTP endpoint reads, and
//! its rendering as `application/health+json` (draft-inadarei-api-health-check). Once the
//! endpoint arms it ([`Health::watch_freshness`]), the report also judges its own freshness
//! (`freshness.rs`): the supervisor's last answer to a liveness ping and the snapshot's last write,
//! so a daemon whose runtime is stuck reports `fail` rather than its last words.
//!
//! Must not: wait on anything. Reading or writing the snapshot takes a short `parking_lot` lock and
//! never awaits, so `/health` answers in microseconds even while the database hangs (invariant 6).
//! Nothing here may hold a secret: outputs are built from error kinds and messages that have
//! already been scrubbed by their producers.

mod freshness;
mod model;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use parking_lot::RwLock;

pub use freshness::{FreshnessBounds, LIVENESS_CHECK, SNAPSHOT_CHECK};
pub use model::{Check, ChildHealth, ChildState, DbHealth, HealthReport, PoolStats, Status};

#[derive(Debug, Default)]
struct Snapshot {
    children: BTreeMap<String, ChildHealth>,
    db: DbHealth,
    /// Checks contributed by components other than the supervisor or the database (Temu client,
    /// sync actors, …), keyed by the health+json check name, e.g. `temu:circuit` or
    /// `sync:us-main:orders`.
    extra: BTreeMap<String, Vec<Check>>,
    /// Standing remarks about the daemon as a whole (e.g. "no shops configured"), in the report's
    /// `notes` and at the end of systemd's `STATUS=` line.
    notes: Vec<String>,
    shutting_down: bool,
}

/// Shared, cheap-to-clone handle on the health snapshot.
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<RwLock<Snapshot>>,
    service_id: Arc<str>,
    /// Bumped by every change, so a rendered body can be reused until something changes.
    version: Arc<AtomicU64>,
    rendered: Arc<parking_lot::Mutex<Option<Rendered>>>,
    /// The supervisor's last liveness answer and the snapshot's last write (atomics).
    freshness: Arc<freshness::Freshness>,
}

/// A serialized report, reused while the snapshot is unchanged and younger than [`RENDER_TTL`].
#[derive(Debug)]
struct Rendered {
    version: u64,
    /// The freshness checks' statuses it was rendered with: a change re-renders at once.
    freshness: freshness::Verdict,
    at: Instant,
    status: Status,
    body: bytes::Bytes,
}

/// How long a rendered `/health` body may be reused when nothing changed (it contains countdowns
/// such as "restarting in N ms").
const RENDER_TTL: Duration = Duration::from_millis(250);

impl Health {
    pub fn new(service_id: impl Into<String>) -> Self {
        Self {
            inner: Arc::default(),
            service_id: Arc::from(service_id.into()),
            version: Arc::default(),
            rendered: Arc::default(),
            freshness: Arc::new(freshness::Freshness::new()),
        }
    }

    /// Every writer ends here: a new version for the body cache, and the snapshot's last write.
    fn changed(&self) {
        self.version.fetch_add(1, Ordering::Release);
        self.freshness.wrote(Instant::now());
    }

    /// Starts judging the snapshot's freshness: from now on the report has the checks
    /// `supervisor:liveness` (fails once the last [`Health::record_supervisor_answer`] is older
    /// than `bounds.liveness_fail_after`) and `health:snapshot` (fails once no writer has changed
    /// the snapshot for `bounds.stale_after`). Call it only where something keeps recording the
    /// supervisor's answers (the endpoint's liveness pinger); a second call keeps the first bounds.
    pub fn watch_freshness(&self, bounds: FreshnessBounds) {
        self.freshness.arm(bounds, Instant::now());
    }

    /// The supervisor answered a liveness ping just now. One atomic store: it does not count as a
    /// write of the snapshot and does not bump the version (the body cache compares the freshness
    /// verdict itself).
    pub fn record_supervisor_answer(&self) {
        self.freshness.answered(Instant::now());
    }

    /// The report's status and its JSON body, rendered at most once per change (and at least
    /// every 250 ms): `/health` under load serializes only when there is something new to say.
    pub fn report_body(&self) -> Result<(Status, bytes::Bytes), serde_json::Error> {
        self.report_body_at(Instant::now())
    }

    /// [`Health::report_body`] as of `now`. A cached body is reused only while the snapshot's
    /// version and the freshness verdict are unchanged and it is younger than [`RENDER_TTL`], so
    /// a check that turns `fail` because time passed is served at once.
    fn report_body_at(&self, now: Instant) -> Result<(Status, bytes::Bytes), serde_json::Error> {
        let version = self.version.load(Ordering::Acquire);
        let verdict = self.freshness.verdict(now);
        let mut cache = self.rendered.lock();
        if let Some(r) = cache.as_ref() {
            if r.version == version
                && r.freshness == verdict
                && now.saturating_duration_since(r.at) < RENDER_TTL
            {
                return Ok((r.status, r.body.clone()));
            }
        }
        let report = self.report_at(now);
        let body = bytes::Bytes::from(serde_json::to_vec(&report)?);
        *cache = Some(Rendered {
            version,
            freshness: verdict,
            at: now,
            status: report.status,
            body: body.clone(),
        });
        Ok((report.status, body))
    }

    /// Applies `f` to the named child's record, creating it when new.
    pub fn update_child(&self, name: &str, f: impl FnOnce(&mut ChildHealth)) {
        let mut snap = self.inner.write();
        let entry = snap
            .children
            .entry(name.to_string())
            .or_insert_with(ChildHealth::starting);
        f(entry);
        drop(snap);
        self.changed();
    }

    pub fn child(&self, name: &str) -> Option<ChildHealth> {
        self.inner.read().children.get(name).cloned()
    }

    pub fn children(&self) -> BTreeMap<String, ChildHealth> {
        self.inner.read().children.clone()
    }

    pub fn update_db(&self, f: impl FnOnce(&mut DbHealth)) {
        f(&mut self.inner.write().db);
        self.changed();
    }

    pub fn db(&self) -> DbHealth {
        self.inner.read().db.clone()
    }

    /// Replaces the checks published under `name` (e.g. `temu:circuit`).
    pub fn set_checks(&self, name: &str, checks: Vec<Check>) {
        self.inner.write().extra.insert(name.to_string(), checks);
        self.changed();
    }

    pub fn remove_checks(&self, name: &str) {
        self.inner.write().extra.remove(name);
        self.changed();
    }

    /// Adds a standing note to every report (once, however often it is added).
    pub fn add_note(&self, note: &str) {
        let mut snap = self.inner.write();
        if !snap.notes.iter().any(|n| n == note) {
            snap.notes.push(note.to_string());
        }
        drop(snap);
        self.changed();
    }

    pub fn set_shutting_down(&self) {
        self.inner.write().shutting_down = true;
        self.changed();
    }

    /// Readiness: the database answers and the schema is migrated.
    pub fn readiness(&self) -> Result<(), String> {
        let snap = self.inner.read();
        if snap.shutting_down {
            return Err("shutting down".to_string());
        }
        if !snap.db.reachable {
            return Err(format!(
                "database unreachable: {}",
                snap.db.last_error.as_deref().unwrap_or("unknown")
            ));
        }
        if !snap.db.migrations_applied {
            return Err("database migrations not applied yet".to_string());
        }
        Ok(())
    }

    /// The full report served at `/health`.
    pub fn report(&self) -> HealthReport {
        self.report_at(Instant::now())
    }

    /// [`Health::report`] as of `now` (the freshness checks depend on it).
    fn report_at(&self, now: Instant) -> HealthReport {
        let wall = Utc::now();
        let snap = self.inner.read();
        let mut checks: BTreeMap<String, Vec<Check>> = BTreeMap::new();
        checks.insert("postgres:connections".to_string(), db_checks(&snap.db));
        let children: Vec<Check> = snap
            .children
            .iter()
            .map(|(name, child)| child.check(name))
            .collect();
        if !children.is_empty() {
            checks.insert("supervisor:children".to_string(), children);
        }
        for (name, extra) in &snap.extra {
            checks.insert(name.clone(), extra.clone());
        }
        for (name, check) in self.freshness.checks(now, wall) {
            checks.insert(name.to_string(), vec![check]);
        }
        let mut status = checks
            .values()
            .flatten()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Pass);
        let mut notes = snap.notes.clone();
        if snap.shutting_down {
            status = Status::Fail;
            notes.push("shutting down".to_string());
        }
        HealthReport {
            status,
            version: env!("CARGO_PKG_VERSION"),
            service_id: self.service_id.to_string(),
            description: "temu-sync: Temu Open Platform to PostgreSQL sync daemon",
            notes,
            checks,
        }
    }
}

/// Every connection is lent out and callers queue for one: work is slowing down.
fn pool_saturated(pool: &PoolStats) -> bool {
    pool.waiting > 0 && pool.max_size > 0 && pool.in_use >= pool.max_size
}

fn db_checks(db: &DbHealth) -> Vec<Check> {
    let status = if !db.reachable {
        Status::Fail
    } else if !db.migrations_applied || db.pool.leaked_now > 0 || pool_saturated(&db.pool) {
        Status::Warn
    } else {
        Status::Pass
    };
    let output = if !db.reachable {
        Some(format!(
            "unreachable: {}",
            db.last_error.as_deref().unwrap_or("unknown")
        ))
    } else if !db.migrations_applied {
        Some("migrations not applied".to_string())
    } else if db.pool.leaked_now > 0 {
        Some(format!(
            "{} connection(s) held past the leak threshold",
            db.pool.leaked_now
        ))
    } else if db.pool.waiting > 0 {
        Some(format!(
            "{} caller(s) waiting for a connection",
            db.pool.waiting
        ))
    } else {
        None
    };
    let latency = Check {
        component_id: Some("postgres".to_string()),
        component_type: Some("datastore"),
        status,
        observed_value: db
            .ping_latency
            .map(|d| serde_json::json!((d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0)),
        observed_unit: Some("ms"),
        time: db.checked_at,
        output,
    };
    let pool = Check {
        component_id: Some("postgres:pool".to_string()),
        component_type: Some("datastore"),
        status: if pool_saturated(&db.pool) {
            Status::Warn
        } else {
            Status::Pass
        },
        observed_value: serde_json::to_value(&db.pool).ok(),
        observed_unit: None,
        time: db.checked_at,
        output: None,
    };
    vec![latency, pool]
}

#[cfg(test)]
impl Health {
    /// A snapshot whose every check passes: the database reachable and migrated, the `db` child
    /// running (for unit tests of what reads the snapshot).
    pub(crate) fn passing(service_id: &str) -> Health {
        let health = Health::new(service_id);
        health.update_db(|db| {
            db.reachable = true;
            db.migrations_applied = true;
            db.last_error = None;
        });
        health.update_child("db", |c| c.state = ChildState::Running);
        health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_database_fails_the_report_and_readiness() {
        let health = Health::new("test");
        health.update_db(|db| {
            db.reachable = false;
            db.last_error = Some("connection refused".into());
        });
        let report = health.report();
        assert_eq!(report.status, Status::Fail);
        let out = report.checks["postgres:connections"][0].output.clone();
        assert!(out.unwrap().contains("connection refused"));
        assert!(health.readiness().is_err());
    }

    #[test]
    fn rendered_body_follows_every_change() {
        let health = Health::new("test");
        health.update_db(|db| {
            db.reachable = true;
            db.migrations_applied = true;
            db.last_error = None;
        });
        let (status, first) = health.report_body().unwrap();
        assert_eq!(status, Status::Pass);
        let (_, again) = health.report_body().unwrap();
        assert_eq!(first, again, "unchanged snapshot: same body");
        health.update_db(|db| {
            db.reachable = false;
            db.last_error = Some("connection refused".into());
        });
        let (status, body) = health.report_body().unwrap();
        assert_eq!(status, Status::Fail, "a change is visible at once");
        assert!(String::from_utf8_lossy(&body).contains("connection refused"));
    }

    #[test]
    fn a_silent_supervisor_fails_the_cached_body_at_once_and_an_answer_restores_it() {
        let health = Health::passing("test");
        let t0 = Instant::now();
        let bounds = FreshnessBounds {
            liveness_fail_after: Duration::from_secs(10),
            stale_after: Duration::from_secs(60),
        };
        health.freshness.arm(bounds, t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let (status, body) = health.report_body_at(at(9_900)).unwrap();
        assert_eq!(status, Status::Pass);
        assert!(String::from_utf8_lossy(&body).contains(LIVENESS_CHECK));
        // 200 ms later (inside the cache's 250 ms, no write in between) the bound has passed.
        let (status, body) = health.report_body_at(at(10_100)).unwrap();
        assert_eq!(
            status,
            Status::Fail,
            "the verdict changed: not the cached pass"
        );
        let body = String::from_utf8_lossy(&body).into_owned();
        assert!(
            body.contains("the supervisor has not answered for 10 s"),
            "{body}"
        );
        // The next answer passes at once.
        health.freshness.answered(at(10_150));
        let (status, _) = health.report_body_at(at(10_200)).unwrap();
        assert_eq!(status, Status::Pass);
        assert_eq!(health.report_at(at(10_200)).status, Status::Pass);
        // Without writers the snapshot fails on its own bound, even while the supervisor answers.
        health.freshness.answered(at(70_150));
        let report = health.report_at(at(70_200));
        assert_eq!(report.status, Status::Fail);
        assert_eq!(report.checks[SNAPSHOT_CHECK][0].status, Status::Fail);
        assert_eq!(report.checks[LIVENESS_CHECK][0].status, Status::Pass);
    }

    #[test]
    fn unarmed_health_has_no_freshness_checks() {
        let health = Health::passing("test");
        let report = health.report_at(Instant::now() + Duration::from_secs(86_400));
        assert_eq!(report.status, Status::Pass);
        assert!(!report.checks.contains_key(LIVENESS_CHECK));
        assert!(!report.checks.contains_key(SNAPSHOT_CHECK));
    }

    #[test]
    fn worst_check_wins() {
        let health = Health::passing("test");
        assert_eq!(health.report().status, Status::Pass);
        health.update_child("temu", |c| {
            c.state = ChildState::Restarting {
                at: Instant::now() + Duration::from_millis(500),
            }
        });
        assert_eq!(health.report().status, Status::Warn);
        health.update_child("temu", |c| {
            c.state = ChildState::Failed {
                reason: "boom".into(),
            }
        });
        assert_eq!(health.report().status, Status::Fail);
        assert!(health.readiness().is_ok());
    }
}
