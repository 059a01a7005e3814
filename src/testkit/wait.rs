//! Bounded waits: poll a condition every [`POLL`] until it holds or a limit passes. Waiting for a
//! condition in the tests and the bench goes through here: one poll interval, always a limit. Not
//! here: a child's exit ([`super::DaemonProcess::wait_exit`], finer because callers time it) and
//! the bench's measurements, which poll at the resolution they report.
//!
//! Timed on tokio's clock, so a wait also ends on paused (test) time; what the condition checks
//! may of course need real time to change.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often a waiting test asks again: fine enough for latencies of a few hundred milliseconds,
/// coarse enough that a dozen tests polling PostgreSQL at once do not load the machine.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `cond` every [`POLL`] until it holds (true) or `limit` passes (false). The condition is
/// asked once more after the limit, so a wait that ends just as the condition turns true passes.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_some(limit, || {
        let holds = cond();
        async move { holds.await.then_some(()) }
    })
    .await
    .is_some()
}

/// Polls `probe` every [`POLL`] until it yields a value or `limit` passes (None): a wait that
/// also hands over what it waited for (a connection, a response body).
pub async fn eventually_some<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}
