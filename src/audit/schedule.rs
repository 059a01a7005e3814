//! The daemon's own audit: every `sync.audit_interval`, each configured shop × audited stream
//! over the last `sync.audit_window`, repairing the days that differ; the result is published
//! to the [`AuditBoard`] (shown in `/status`), as health checks `audit:{shop}:{stream}` (warn
//! while a difference remains or the audit could not run) and as the gauge
//! `temu_sync_audit_differences{shop,stream}`.
//!
//! Must not: block a mailbox (it is one tracked task of the daemon's shutdown) or wait without a
//! deadline (every call and transaction has one; a stop cancels it between steps).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use serde::Serialize;

use super::check::{audit_stream, DayDiff};
use super::operator::Operator;
use super::AUDITED;
use crate::config::Stream;
use crate::health::{Check, Health, Status};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::temu::TemuShop;

/// The last scheduled audit of one shop × stream.
#[derive(Debug, Clone, Serialize)]
pub struct AuditView {
    pub shop: String,
    pub stream: Stream,
    pub audited_at: DateTime<Utc>,
    /// Days (products: 1) compared.
    pub checked: usize,
    /// API calls the comparison made (one per day).
    pub calls: u64,
    /// Days that differed and were repaired.
    pub repaired: usize,
    /// What still differs after the repair.
    pub differences: Vec<DayDiff>,
    /// Why the audit could not run, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The scheduled audit's results, read by `/status` (never waits).
#[derive(Clone, Default)]
pub struct AuditBoard {
    inner: Arc<RwLock<BTreeMap<(String, Stream), AuditView>>>,
}

impl AuditBoard {
    pub fn views(&self) -> Vec<AuditView> {
        self.inner.read().values().cloned().collect()
    }

    fn record(&self, view: AuditView) {
        let key = (view.shop.clone(), view.stream);
        self.inner.write().insert(key, view);
    }
}

/// What the scheduled audit publishes to.
#[derive(Clone)]
pub struct AuditOutputs {
    pub board: AuditBoard,
    pub health: Health,
    pub metrics: Metrics,
}

/// The first scheduled audit after a start comes at most this late, so that a daemon restarted
/// more often than `audit_interval` (deploys) still audits.
const FIRST_AUDIT_AFTER: Duration = Duration::from_secs(15 * 60);

/// Starts the scheduled audit as a tracked task of `shutdown`: first after
/// `min(audit_interval, 15 min)`, then every `audit_interval`.
pub fn spawn_scheduled_audit(op: Operator, outputs: AuditOutputs, shutdown: &Shutdown) {
    let stop = shutdown.child();
    let every = op.config.sync.audit_interval;
    shutdown.spawn(async move {
        let mut wait = every.min(FIRST_AUDIT_AFTER);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = every;
            for shop in op.client.shops().to_vec() {
                for stream in AUDITED.into_iter().filter(|s| shop.streams().contains(s)) {
                    if stop.is_cancelled() {
                        return;
                    }
                    let view = audit_one(&op, &shop, stream).await;
                    publish(&outputs, view);
                }
            }
        }
    });
}

async fn audit_one(op: &Operator, shop: &TemuShop, stream: Stream) -> AuditView {
    let window = op.config.sync.audit_window;
    let mut view = AuditView {
        shop: shop.name().to_string(),
        stream,
        audited_at: Utc::now(),
        checked: 0,
        calls: 0,
        repaired: 0,
        differences: Vec::new(),
        error: None,
        note: None,
    };
    match audit_stream(op, shop, stream, window, true).await {
        Ok(audit) => {
            view.checked = audit.checked;
            view.calls = audit.calls;
            view.repaired = audit.repaired;
            view.differences = audit.differences;
            view.note = audit.note;
        }
        Err(e) => view.error = Some(e.to_string()),
    }
    tracing::info!(shop = %view.shop, stream = stream.as_str(), checked = view.checked,
        calls = view.calls, repaired = view.repaired, remaining = view.differences.len(),
        error = view.error.as_deref().unwrap_or(""), "scheduled audit finished");
    view
}

fn publish(outputs: &AuditOutputs, view: AuditView) {
    let (shop, stream) = (view.shop.clone(), view.stream.as_str());
    outputs
        .metrics
        .set_audit_differences(&shop, stream, view.differences.len());
    outputs
        .health
        .set_checks(&format!("audit:{shop}:{stream}"), vec![check_of(&view)]);
    outputs.board.record(view);
}

/// `warn` while a difference remains or the audit failed; `pass` otherwise.
fn check_of(view: &AuditView) -> Check {
    let remaining = view.differences.len();
    let (status, output) = match (&view.error, remaining) {
        (Some(e), _) => (Status::Warn, Some(format!("the audit could not run: {e}"))),
        (None, 0) => (Status::Pass, None),
        (None, n) => (
            Status::Warn,
            Some(format!(
                "{n} day(s) still differ from Temu after repair (e.g. {}); see /status",
                view.differences.first().map(describe).unwrap_or_default()
            )),
        ),
    };
    Check {
        component_id: Some(format!("{}/{}", view.shop, view.stream.as_str())),
        component_type: Some("audit"),
        status,
        observed_value: Some(serde_json::json!(remaining)),
        observed_unit: Some("days"),
        time: view.audited_at,
        output,
    }
}

fn describe(d: &DayDiff) -> String {
    let day = d.day.map_or("listing".to_string(), |d| d.to_string());
    format!("{day}: Temu {}, stored {}", d.temu, d.ours)
}
