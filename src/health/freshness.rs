//! How fresh the health snapshot is: the supervisor's last answer to a liveness ping, and the
//! snapshot's last write. Both fold into `/health`, so a daemon whose main runtime is stuck turns
//! `/health` to `503 fail` instead of serving its last words as `pass` from the endpoint's thread.
//!
//! Owns: the two records (milliseconds since the record was made, in atomics), the bounds they are
//! judged by ([`FreshnessBounds`]), and the two checks built from them — `supervisor:liveness`
//! and `health:snapshot`. Until something arms the watch ([`super::Health::watch_freshness`], the
//! endpoint's thread when it starts its liveness pinger), neither check exists: a snapshot nobody
//! pings for (a unit test, the `status` command) must not turn stale by itself.
//!
//! Must not: wait, lock or ask anyone. Recording is one atomic store; judging reads two atomics
//! against a clock the caller passes in (so tests judge at any instant without sleeping), which
//! keeps `/health` as cheap as before (invariant 6).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Check, Status};

/// The check that fails when the supervisor stops answering liveness pings.
pub const LIVENESS_CHECK: &str = "supervisor:liveness";
/// The check that fails when no writer has touched the snapshot for too long.
pub const SNAPSHOT_CHECK: &str = "health:snapshot";

/// How old the two records may get before their check fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessBounds {
    /// `supervisor:liveness` fails once the supervisor's last answer is older than this.
    pub liveness_fail_after: Duration,
    /// `health:snapshot` fails once the snapshot has not been written for longer than this.
    pub stale_after: Duration,
}

impl FreshnessBounds {
    /// The daemon's liveness bound. The endpoint pings every 1 s with a 1 s deadline, so a
    /// running supervisor answers about ten times within it (one answer in ten is enough, which
    /// is what keeps a loaded daemon from flapping), and a frozen runtime fails `/health` within
    /// 10 s of its last answer, which came at most one ping before the freeze (the body cache
    /// re-renders as soon as the verdict changes): inside the 15 s promised.
    pub const LIVENESS_FAIL_AFTER: Duration = Duration::from_secs(10);
    /// The least `stale_after` the daemon uses, whatever its configured periods.
    pub const STALE_AFTER_AT_LEAST: Duration = Duration::from_secs(60);

    /// The daemon's bounds from the periods of the snapshot's writers.
    ///
    /// The one writer that never pauses while the daemon is healthy is the database actor: after
    /// every ping (every `db_ping_interval`, each bounded by two `ping_timeout`s, which are shorter
    /// than the interval) it publishes the outcome, so its writes are less than
    /// 3 × `db_ping_interval` apart. If that actor hangs or fails, the supervisor writes when it
    /// notices and again when it restarts it; `child_recovery` is the longest that takes
    /// (`supervisor.ping_interval` × `max_missed_pings` + `backoff_max`). The sync actors also
    /// refresh their checks every 10 s, but a daemon without shops has none. `stale_after` is
    /// twice the longest of these gaps and at least [`Self::STALE_AFTER_AT_LEAST`]: 90 s with
    /// the default configuration. Saturating arithmetic, so no configured value can overflow it.
    pub fn for_daemon(db_ping_interval: Duration, child_recovery: Duration) -> Self {
        let longest_gap = db_ping_interval.saturating_mul(3).max(child_recovery);
        Self {
            liveness_fail_after: Self::LIVENESS_FAIL_AFTER,
            stale_after: longest_gap
                .saturating_mul(2)
                .max(Self::STALE_AFTER_AT_LEAST),
        }
    }
}

/// What the report needs to know to tell whether a rendered body is still right: the status of
/// each check, `None` while the watch is not armed.
pub(super) type Verdict = Option<(Status, Status)>;

/// The two records, as milliseconds since `epoch`.
#[derive(Debug)]
pub(super) struct Freshness {
    epoch: Instant,
    bounds: OnceLock<FreshnessBounds>,
    answered_ms: AtomicU64,
    written_ms: AtomicU64,
}

impl Freshness {
    pub(super) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            bounds: OnceLock::new(),
            answered_ms: AtomicU64::new(0),
            written_ms: AtomicU64::new(0),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn age(&self, record: &AtomicU64, now: Instant) -> Duration {
        Duration::from_millis(self.ms(now).saturating_sub(record.load(Ordering::Acquire)))
    }

    /// Starts judging both records, counting from `now` (the supervisor has had no chance to
    /// answer yet). A second call keeps the first bounds.
    pub(super) fn arm(&self, bounds: FreshnessBounds, now: Instant) {
        self.answered(now);
        self.wrote(now);
        let _ = self.bounds.set(bounds);
    }

    /// The supervisor answered a liveness ping at `at`.
    pub(super) fn answered(&self, at: Instant) {
        self.answered_ms.fetch_max(self.ms(at), Ordering::AcqRel);
    }

    /// A writer changed the snapshot at `at`.
    pub(super) fn wrote(&self, at: Instant) {
        self.written_ms.fetch_max(self.ms(at), Ordering::AcqRel);
    }

    pub(super) fn verdict(&self, now: Instant) -> Verdict {
        let bounds = self.bounds.get()?;
        Some((
            judge(self.age(&self.answered_ms, now), bounds.liveness_fail_after),
            judge(self.age(&self.written_ms, now), bounds.stale_after),
        ))
    }

    /// The two checks as of `now` (`wall` is the same instant on the wall clock, for their
    /// `time`), or none while the watch is not armed.
    pub(super) fn checks(&self, now: Instant, wall: DateTime<Utc>) -> Vec<(&'static str, Check)> {
        let Some(bounds) = self.bounds.get() else {
            return Vec::new();
        };
        let answered = self.age(&self.answered_ms, now);
        let written = self.age(&self.written_ms, now);
        let liveness = check(
            "supervisor",
            "component",
            answered,
            bounds.liveness_fail_after,
            wall,
            |age, limit| {
                format!(
                    "the supervisor has not answered for {age} s (the limit is {limit} s): the \
                     daemon's runtime is stuck"
                )
            },
        );
        let snapshot = check(
            "snapshot",
            "system",
            written,
            bounds.stale_after,
            wall,
            |age, limit| {
                format!(
                    "the health snapshot has not been written for {age} s (the limit is {limit} \
                     s): the daemon's actors have stopped reporting"
                )
            },
        );
        vec![(LIVENESS_CHECK, liveness), (SNAPSHOT_CHECK, snapshot)]
    }
}

fn judge(age: Duration, limit: Duration) -> Status {
    if age > limit {
        Status::Fail
    } else {
        Status::Pass
    }
}

/// One freshness check: pass while `age` is within `limit`, else fail with `why(age s, limit s)`.
/// Its time is when the record was last refreshed; its observed value the age in seconds.
fn check(
    component: &str,
    component_type: &'static str,
    age: Duration,
    limit: Duration,
    wall: DateTime<Utc>,
    why: impl Fn(u64, u64) -> String,
) -> Check {
    let status = judge(age, limit);
    let time = chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| wall.checked_sub_signed(age))
        .unwrap_or(wall);
    Check {
        component_id: Some(component.to_string()),
        component_type: Some(component_type),
        status,
        observed_value: Some(serde_json::json!(age.as_millis() as f64 / 1000.0)),
        observed_unit: Some("s"),
        time,
        output: (status == Status::Fail).then(|| why(age.as_secs(), limit.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: FreshnessBounds = FreshnessBounds {
        liveness_fail_after: Duration::from_secs(10),
        stale_after: Duration::from_secs(60),
    };

    fn status_of(f: &Freshness, name: &str, now: Instant) -> (Status, Option<String>) {
        let checks = f.checks(now, Utc::now());
        let (_, check) = checks
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no {name} check"));
        (check.status, check.output)
    }

    /// A record armed with [`BOUNDS`] just now, and that instant.
    fn armed() -> (Freshness, Instant) {
        let f = Freshness::new();
        let t0 = Instant::now();
        f.arm(BOUNDS, t0);
        (f, t0)
    }

    /// The check `name` fails at `now` with an output containing each of `says`.
    fn fails_saying(f: &Freshness, name: &str, now: Instant, says: &[&str]) {
        let (status, output) = status_of(f, name, now);
        assert_eq!(status, Status::Fail, "{name}");
        let output = output.unwrap_or_default();
        for said in says {
            assert!(output.contains(said), "{name}: {output:?} lacks {said:?}");
        }
    }

    #[test]
    fn nothing_is_judged_until_armed() {
        let f = Freshness::new();
        let later = Instant::now() + Duration::from_secs(3600);
        assert!(f.checks(later, Utc::now()).is_empty());
        assert_eq!(f.verdict(later), None);
    }

    #[test]
    fn a_recent_answer_passes_and_an_old_one_fails_naming_why() {
        let (f, t0) = armed();
        f.answered(t0 + Duration::from_secs(5));
        let recent = t0 + Duration::from_secs(14);
        assert_eq!(status_of(&f, LIVENESS_CHECK, recent), (Status::Pass, None));
        assert_eq!(f.verdict(recent), Some((Status::Pass, Status::Pass)));

        let old = t0 + Duration::from_secs(17);
        fails_saying(
            &f,
            LIVENESS_CHECK,
            old,
            &["has not answered for 12 s", "runtime is stuck"],
        );
        assert_eq!(f.verdict(old), Some((Status::Fail, Status::Pass)));

        // A new answer brings it back at once.
        f.answered(old);
        assert_eq!(status_of(&f, LIVENESS_CHECK, old), (Status::Pass, None));
    }

    #[test]
    fn arming_counts_from_then_not_from_the_start_of_the_record() {
        let f = Freshness::new();
        let armed = Instant::now() + Duration::from_secs(120);
        f.arm(BOUNDS, armed);
        let soon = armed + Duration::from_secs(9);
        assert_eq!(f.verdict(soon), Some((Status::Pass, Status::Pass)));
    }

    #[test]
    fn a_snapshot_nobody_writes_turns_stale() {
        let (f, t0) = armed();
        f.wrote(t0 + Duration::from_secs(30));
        // The supervisor keeps answering: only the snapshot check fails.
        f.answered(t0 + Duration::from_secs(95));
        let within = t0 + Duration::from_secs(90);
        assert_eq!(status_of(&f, SNAPSHOT_CHECK, within), (Status::Pass, None));
        let beyond = t0 + Duration::from_secs(95);
        fails_saying(
            &f,
            SNAPSHOT_CHECK,
            beyond,
            &["not been written for 65 s", "limit is 60 s"],
        );
        assert_eq!(f.verdict(beyond), Some((Status::Pass, Status::Fail)));
    }

    #[test]
    fn daemon_bounds_follow_the_writers_periods() {
        let defaults =
            FreshnessBounds::for_daemon(Duration::from_secs(10), Duration::from_secs(5 * 3 + 30));
        assert_eq!(defaults.liveness_fail_after, Duration::from_secs(10));
        assert_eq!(defaults.stale_after, Duration::from_secs(90));
        let quick = FreshnessBounds::for_daemon(Duration::from_secs(1), Duration::from_secs(2));
        assert_eq!(quick.stale_after, FreshnessBounds::STALE_AFTER_AT_LEAST);
        let slow = FreshnessBounds::for_daemon(Duration::from_secs(600), Duration::from_secs(2));
        assert_eq!(slow.stale_after, Duration::from_secs(3600));
        let huge = FreshnessBounds::for_daemon(Duration::MAX, Duration::MAX);
        assert_eq!(huge.stale_after, Duration::MAX);
    }
}
