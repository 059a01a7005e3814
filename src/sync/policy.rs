//! The scheduling policy of a sync stream, as a pure function of how a run ended: [`next_step`]
//! says the stream's next state, when it runs next (or that it is parked) and the failure streak
//! it carries on with. The sync actor (`actor.rs`) applies it; the scheduler tests prove it.

use std::time::Duration;

use super::board::StreamState;
use super::run::RunOutcome;
use super::FailureKind;
use crate::config::SyncConfig;
use crate::supervisor::Backoff;

/// What the scheduler does after a run: the stream's state, when to run next (`None`: parked
/// until a trigger; a parked state with a time: the probe),
/// and the failure streak it carries on with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextStep {
    pub state: StreamState,
    pub run_in: Option<Duration>,
    pub consecutive_failures: u32,
}

/// The scheduling policy, as a pure function: success → the interval (± 10 %); held elsewhere →
/// within one lease period; cancelled → the interval; a retryable failure (a panic included) →
/// backoff, up to `max_retries` times in a row, then the interval; a fatal one, or a park found
/// persisted in `sync_state` → parked until a trigger or a configuration change — and, for a
/// permanent database error (a probed park), probed again every `retry_backoff_max`.
pub fn next_step(
    outcome: &RunOutcome,
    config: &SyncConfig,
    interval: Duration,
    consecutive_failures: u32,
) -> NextStep {
    let step = |state, run_in, consecutive_failures| NextStep {
        state,
        run_in,
        consecutive_failures,
    };
    match outcome {
        RunOutcome::Succeeded { .. } => step(StreamState::Idle, Some(jittered(interval)), 0),
        // Check again within one lease period, so a dead owner's stream is taken over in time.
        RunOutcome::HeldElsewhere => step(
            StreamState::HeldElsewhere,
            Some(config.lease_ttl.min(interval)),
            consecutive_failures,
        ),
        RunOutcome::Parked(park) => step(
            StreamState::Parked,
            park.probe.then_some(config.retry_backoff_max),
            consecutive_failures,
        ),
        RunOutcome::Failed { error, .. } => match error.kind() {
            FailureKind::Park => step(
                StreamState::Parked,
                error.probed().then_some(config.retry_backoff_max),
                consecutive_failures,
            ),
            FailureKind::Cancelled => step(
                StreamState::Idle,
                Some(jittered(interval)),
                consecutive_failures,
            ),
            FailureKind::Retry if consecutive_failures < config.max_retries => {
                let retries = consecutive_failures + 1;
                let backoff = Backoff::new(config.retry_backoff_min, config.retry_backoff_max);
                step(StreamState::Retrying, Some(backoff.delay(retries)), retries)
            }
            FailureKind::Retry => step(StreamState::Idle, Some(jittered(interval)), 0),
        },
    }
}

/// `interval` ± 10 %, so streams that started together drift apart.
fn jittered(interval: Duration) -> Duration {
    let tenth = interval / 10;
    interval - tenth + tenth.mul_f64(2.0 * fastrand::f64())
}
