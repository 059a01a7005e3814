//! The daemon's one shutdown primitive: a cancellation token every task obeys, and a tracker of
//! the tasks spawned under it, so the daemon stops in one place, in one order, with a deadline.
//!
//! Owns: [`Shutdown`] — [`Shutdown::spawn`] starts a tracked task (the notifier, the metrics
//! upkeep, sync runs), [`Shutdown::token`] / [`Shutdown::child`] hand the token to what runs
//! elsewhere (the HTTP endpoint's thread, a run's heartbeat), [`Shutdown::stop`] cancels and waits,
//! bounded, for every tracked task to end.
//!
//! Must not: decide the stop order of the actors (the supervisor stops its children in reverse
//! start order) or block: every wait here has a deadline.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Cheap to clone; every clone is the same shutdown.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// The token itself: cancelled when the daemon stops.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// A token cancelled when the daemon stops, or earlier on its own (e.g. one run).
    pub fn child(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Resolves when the daemon starts stopping.
    pub async fn stopping(&self) {
        self.token.cancelled().await
    }

    /// Spawns a task [`stop`](Self::stop) waits for. The task must end soon after the token is
    /// cancelled (select on [`stopping`](Self::stopping) or a [`child`](Self::child) token).
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Like [`spawn`](Self::spawn), on the runtime of `handle` (e.g. work started by the HTTP
    /// endpoint's own thread that belongs on the daemon's runtime).
    pub fn spawn_on<F>(&self, task: F, handle: &tokio::runtime::Handle) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn_on(task, handle)
    }

    /// Tells every task to stop.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Cancels, then waits at most `deadline` for every tracked task to end; `Err` carries how
    /// many were still running.
    pub async fn stop(&self, deadline: Duration) -> Result<(), usize> {
        self.token.cancel();
        self.tasks.close();
        match tokio::time::timeout(deadline, self.tasks.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.tasks.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_waits_for_tasks_that_obey_the_token() {
        let shutdown = Shutdown::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let s = shutdown.clone();
        shutdown.spawn(async move {
            s.stopping().await;
            let _ = tx.send("saw the stop");
        });
        assert_eq!(shutdown.stop(Duration::from_secs(5)).await, Ok(()));
        assert_eq!(rx.await.ok(), Some("saw the stop"));
    }

    #[tokio::test(start_paused = true)]
    async fn stop_gives_up_on_a_task_that_ignores_it() {
        let shutdown = Shutdown::new();
        shutdown.spawn(std::future::pending::<()>());
        assert_eq!(shutdown.stop(Duration::from_secs(1)).await, Err(1));
    }
}
