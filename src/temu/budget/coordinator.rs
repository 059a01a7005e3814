//! Divides each app_key's `qps` among the live daemons that have shops on it.
//!
//! Every [`REFRESH`] the daemon refreshes its row in `app_budget_members` for each of its
//! app_keys and counts the live members `n` (rows seen within [`MEMBER_TTL`], on the database's
//! clock); its bucket's rate becomes `qps / n`. Three rules keep the sum of the shares at or under
//! `qps` while members come and go (the argument is in docs/ARCHITECTURE.md):
//! - **join at 0**: a daemon calls nothing for an app_key until it has been a member for
//!   [`SETTLE`] (`settled`), by when every other member has counted it;
//! - **stale means 0**: a daemon whose last refresh that worked was *sent* more than [`STALE`] ago
//!   drops to rate 0 until one works again (so a share never rests on an old count);
//! - **leave after the last call**: the row is deleted only after every run stopped
//!   ([`leave`], from `app::stop`); a dead daemon's row simply expires after [`MEMBER_TTL`].
//!
//! Must not: block the caller; talk to Temu.

use std::time::Duration;

use tokio::time::Instant;

use super::{AppBudget, Budgets};
use crate::db::{Database, DbError};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// How often each member refreshes its rows and re-divides.
pub const REFRESH: Duration = Duration::from_secs(1);
/// A daemon's last refresh that worked must have been sent within this, or its rate is 0.
pub const STALE: Duration = Duration::from_secs(2);
/// A newcomer waits this long (database clock) after joining before it calls: > STALE + REFRESH.
pub const SETTLE: Duration = Duration::from_secs(4);
/// A row not refreshed within this is a dead daemon's (> STALE, so a live one is at 0 first).
pub const MEMBER_TTL: Duration = Duration::from_secs(6);

// The argument in the module doc needs these.
const _: () = assert!(SETTLE.as_millis() > STALE.as_millis() + REFRESH.as_millis());
const _: () = assert!(MEMBER_TTL.as_millis() > STALE.as_millis());

/// The coordinator of one daemon process.
#[derive(Clone)]
pub struct Coordinator {
    db: Database,
    instance: String,
    budgets: Budgets,
    metrics: Metrics,
}

impl Coordinator {
    /// Holds every app_key of `budgets` at rate 0 (not joined yet) until [`Coordinator::run`]
    /// divides them. Call before anything can call Temu.
    pub fn new(db: Database, instance: String, budgets: Budgets, metrics: Metrics) -> Self {
        for (_, b) in budgets.iter() {
            b.bucket.set_rate(0.0);
            metrics.set_qps_share(&b.app, 0.0);
        }
        Self {
            db,
            instance,
            budgets,
            metrics,
        }
    }

    /// Refreshes and re-divides every [`REFRESH`] until the shutdown begins. The rates stay as
    /// they are then, so the runs still stopping keep their share until [`leave`].
    pub async fn run(self, shutdown: Shutdown) {
        let mut last_ok: Vec<Option<Instant>> = vec![None; self.budgets.iter().count()];
        let mut every = tokio::time::interval(REFRESH);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.stopping() => return,
                _ = every.tick() => {}
            }
            for ((key, budget), ok) in self.budgets.iter().zip(last_ok.iter_mut()) {
                self.refresh_one(key, budget, ok).await;
            }
        }
    }

    async fn refresh_one(&self, key: &str, budget: &AppBudget, last_ok: &mut Option<Instant>) {
        let sent = Instant::now();
        let seen = tokio::time::timeout(REFRESH, self.membership(key)).await;
        let share = match seen {
            Ok(Ok(m)) => {
                *last_ok = Some(sent);
                share(budget.qps, m.live, m.settled)
            }
            failed => {
                if let Ok(Err(e)) = failed {
                    tracing::warn!(app = %budget.app, error = %e, "QPS budget refresh failed");
                }
                match last_ok {
                    Some(at) if sent.duration_since(*at) <= STALE => return,
                    _ => 0.0,
                }
            }
        };
        if (budget.bucket.rate() - share).abs() > f64::EPSILON {
            tracing::info!(app = %budget.app, share, "QPS share changed");
        }
        budget.bucket.set_rate(share);
        self.metrics.set_qps_share(&budget.app, share);
    }

    async fn membership(&self, key: &str) -> Result<crate::store::budget::Membership, DbError> {
        let mut conn = self.db.checkout("qps-budget").await?;
        crate::store::budget::refresh_member(
            &mut conn,
            key,
            &self.instance,
            MEMBER_TTL.as_secs_f64(),
            SETTLE.as_secs_f64(),
        )
        .await
    }
}

/// The share of one member: `qps / live`, 0 until settled.
pub fn share(qps: u32, live: i64, settled: bool) -> f64 {
    if !settled || live < 1 {
        return 0.0;
    }
    f64::from(qps) / live as f64
}

/// Gives up this daemon's shares (after its last call), bounded by `deadline`; a failure only
/// means the others wait [`MEMBER_TTL`] longer.
pub async fn leave(db: &Database, instance: &str, deadline: Duration) {
    let work = async {
        let mut conn = db.checkout("qps-budget-leave").await?;
        crate::store::budget::leave(&mut conn, instance).await
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not leave the QPS budget"),
        Err(_) => tracing::warn!("leaving the QPS budget did not finish in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_divide_the_budget_and_newcomers_wait() {
        assert_eq!(share(20, 3, true), 20.0 / 3.0);
        assert_eq!(share(20, 1, true), 20.0);
        assert_eq!(share(20, 4, false), 0.0);
        assert_eq!(share(20, 0, true), 0.0);
    }
}
