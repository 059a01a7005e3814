//! One QPS budget per app_key across every live daemon (issue 15, item 1).
//!
//! Owns: [`Bucket`] (`bucket.rs`), the token bucket every call of an app_key waits on, whose
//! rate can change at run time; [`Budgets`] (one bucket per app_key, the client's, shared by the
//! shops of that key); and the [`coordinator`] that divides each app_key's `qps` among the live
//! daemons that have shops on it, through the `app_budget_members` table (see
//! docs/ARCHITECTURE.md, "One QPS budget across daemons", for the protocol and its worst case).
//!
//! Must not: call Temu or hold a lock across an await.

mod bucket;
pub mod coordinator;

pub use bucket::Bucket;

use std::collections::BTreeMap;
use std::sync::Arc;

/// The buckets of a client, by app_key (one per key, whatever the number of app entries).
#[derive(Clone, Default)]
pub struct Budgets {
    by_key: BTreeMap<String, AppBudget>,
}

/// One app_key's budget: its configured `qps`, the app's name (for metrics) and its bucket.
#[derive(Clone)]
pub struct AppBudget {
    pub app: String,
    pub qps: u32,
    pub bucket: Arc<Bucket>,
}

impl Budgets {
    /// Adds `app_key` with `qps` and `burst` unless already there; returns its bucket.
    pub(crate) fn insert(&mut self, app_key: &str, app: &str, qps: u32, burst: u32) -> Arc<Bucket> {
        self.by_key
            .entry(app_key.to_string())
            .or_insert_with(|| AppBudget {
                app: app.to_string(),
                qps,
                bucket: Arc::new(Bucket::new(f64::from(qps), burst)),
            })
            .bucket
            .clone()
    }

    /// The bucket of `app_key`.
    pub fn bucket(&self, app_key: &str) -> Option<Arc<Bucket>> {
        self.by_key.get(app_key).map(|b| b.bucket.clone())
    }

    /// Every app_key with its budget.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AppBudget)> {
        self.by_key.iter().map(|(k, v)| (k.as_str(), v))
    }
}
