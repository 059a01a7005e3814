//! The liveness pinger: asks the supervisor every second whether it is alive and records each
//! answer in the health snapshot, so `/health` can tell from memory how long ago the daemon's
//! runtime last ran (the `supervisor:liveness` check, `crate::health`).
//!
//! Owns: [`watch_supervisor`], a loop on the endpoint's own runtime (`thread.rs`): that runtime
//! keeps running when the daemon's main runtime is stuck, which is exactly when the answers stop.
//! It logs once when the supervisor falls silent beyond the bound and once when it answers again.
//!
//! Must not: be called from a request (requests read the record, never ping), or wait without a
//! deadline: every ping is bounded by [`LIVENESS_DEADLINE`], and the loop ends with the shutdown
//! token.

use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Liveness, LIVENESS_DEADLINE};
use crate::health::Health;

/// How often the supervisor is asked. With the 1 s deadline and a 10 s bound
/// ([`crate::health::FreshnessBounds::LIVENESS_FAIL_AFTER`]), ten pings in a row must go unanswered before
/// `/health` fails.
pub const LIVENESS_PING_EVERY: Duration = Duration::from_secs(1);

/// Pings the supervisor every [`LIVENESS_PING_EVERY`] until `shutdown` is cancelled, recording
/// each answer with [`Health::record_supervisor_answer`]. `silent_after` is the bound the health
/// check applies, used here only to log when it is crossed.
pub(super) async fn watch_supervisor(
    liveness: Liveness,
    health: Health,
    silent_after: Duration,
    shutdown: CancellationToken,
) {
    let _noticed = EndNoticed(shutdown.clone());
    let mut every = tokio::time::interval(LIVENESS_PING_EVERY);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_answer = Instant::now();
    let mut reported_silent = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let answered = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            answer = tokio::time::timeout(LIVENESS_DEADLINE, liveness(LIVENESS_DEADLINE)) => {
                matches!(answer, Ok(true))
            }
        };
        if answered {
            health.record_supervisor_answer();
            if reported_silent {
                tracing::info!(
                    silent_s = last_answer.elapsed().as_secs(),
                    "the supervisor answers liveness pings again"
                );
                reported_silent = false;
            }
            last_answer = Instant::now();
        } else if !reported_silent && last_answer.elapsed() > silent_after {
            tracing::warn!(
                silent_s = last_answer.elapsed().as_secs(),
                "the supervisor has not answered liveness pings for longer than {} s: the \
                 daemon's runtime is stuck; /health fails until it answers",
                silent_after.as_secs()
            );
            reported_silent = true;
        }
    }
}

/// Logs an error if the pinger ends other than by the shutdown (a panic unwinding through it):
/// `/health` would then fail `supervisor:liveness` within its bound, and the log says why.
struct EndNoticed(CancellationToken);

impl Drop for EndNoticed {
    fn drop(&mut self) {
        if !self.0.is_cancelled() {
            tracing::error!(
                panicking = std::thread::panicking(),
                "the liveness pinger ended before the shutdown; /health will report the \
                 supervisor silent — restart the daemon and report this bug"
            );
        }
    }
}
