//! No panic of a spawned task escapes unnoticed: the one way a task's panic is caught, turned into
//! its message, logged and counted in `temu_sync_task_panics_total{task}`.
//!
//! Owns: [`catch_panic`] (a future's panic as `Err(message)`, for callers that turn it into an
//! outcome of their own — a sync run records itself failed), [`Metrics::watched`] (catch, log at
//! `error`, count: for tasks whose panic has no other consumer — the notifier, the metrics upkeep)
//! and [`Metrics::record_task_panic`], and [`TASKS`], the `task` label values (registered at zero).
//!
//! Must not: swallow a panic silently, or put the panic message in a label (it goes to the log).

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use super::{names, Metrics};

/// A sync run (its body, or the run protocol around it).
pub const TASK_SYNC_RUN: &str = "sync_run";
/// The lease heartbeat of a sync run.
pub const TASK_HEARTBEAT: &str = "heartbeat";
/// The systemd notifier (STATUS=, WATCHDOG=1).
pub const TASK_NOTIFIER: &str = "notifier";
/// The periodic folding of histogram samples.
pub const TASK_METRICS_UPKEEP: &str = "metrics_upkeep";
/// The division of each app_key's QPS budget among the live daemons.
pub const TASK_QPS_BUDGET: &str = "qps_budget";

/// Every value of the `task` label of `temu_sync_task_panics_total`.
pub const TASKS: [&str; 5] = [
    TASK_SYNC_RUN,
    TASK_HEARTBEAT,
    TASK_NOTIFIER,
    TASK_METRICS_UPKEEP,
    TASK_QPS_BUDGET,
];

/// Runs `future`; a panic inside it comes back as `Err` with the panic's message. The future's
/// state is dropped after a panic and never polled again, so unwind safety is not a concern here.
pub async fn catch_panic<F: Future>(future: F) -> Result<F::Output, String> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|payload| panic_message(payload.as_ref()))
}

/// The text of a panic payload (`panic!("…")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

impl Metrics {
    /// Counts one panic of `task` (one of [`TASKS`]).
    pub fn record_task_panic(&self, task: &'static str) {
        self.counter_add(names::TASK_PANICS, &[("task", task)], 1);
    }

    /// Registers `temu_sync_task_panics_total` at zero for every task, so an alert on its
    /// increase sees the series before the first panic.
    pub(super) fn init_task_panics(&self) {
        for task in TASKS {
            self.counter_add(names::TASK_PANICS, &[("task", task)], 0);
        }
    }

    /// Runs `future` as task `task`: a panic is logged at `error` with its message and counted,
    /// and comes back as `None` (the task has ended).
    pub async fn watched<F: Future>(&self, task: &'static str, future: F) -> Option<F::Output> {
        match catch_panic(future).await {
            Ok(output) => Some(output),
            Err(message) => {
                tracing::error!(task, panic = %message,
                    "a task of the daemon panicked and has ended (a bug: please report it with this log)");
                self.record_task_panic(task);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Health;

    fn panics_of(text: &str, task: &str) -> Option<f64> {
        let prefix = format!("{}{{task=\"{task}\"}} ", names::TASK_PANICS);
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    #[tokio::test]
    async fn a_watched_panic_is_caught_with_its_message_and_counted() {
        let m = Metrics::new();
        let text = m.render(&Health::new("t"));
        for task in TASKS {
            assert_eq!(panics_of(&text, task), Some(0.0), "{task} at zero\n{text}");
        }
        fn scripted_panic() -> u8 {
            panic!("scripted notifier panic")
        }
        let out = m.watched(TASK_NOTIFIER, async { scripted_panic() }).await;
        assert_eq!(out, None);
        assert_eq!(m.watched(TASK_METRICS_UPKEEP, async { 7 }).await, Some(7));
        let text = m.render(&Health::new("t"));
        assert_eq!(panics_of(&text, TASK_NOTIFIER), Some(1.0), "{text}");
        assert_eq!(panics_of(&text, TASK_METRICS_UPKEEP), Some(0.0), "{text}");
    }

    #[tokio::test]
    async fn catch_panic_returns_the_message_of_str_and_string_payloads() {
        fn plain() {
            panic!("plain")
        }
        fn formatted(n: u8) {
            panic!("formatted {n}")
        }
        assert_eq!(
            catch_panic(async { plain() }).await,
            Err("plain".to_string())
        );
        let got = catch_panic(async { formatted(3) }).await;
        assert_eq!(got, Err("formatted 3".to_string()));
    }
}
