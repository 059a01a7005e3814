//! One audit of one shop × stream: Temu's total against the database's count, per UTC day for
//! orders and after-sales (by update time), for the whole listing for products; and the repair
//! that re-walks exactly the days that differ, then checks them again.
//!
//! Cost: one API call per audited day per stream (`pageSize: 1`), one for products; a repair
//! adds the pages of the days it re-walks and one more call per such day for the re-check.
//!
//! Limits: counts compare parents — a child missing from a parent that is present is not seen
//! (the fulfilment filter and the contract tests cover that); a record deleted at Temu stays in
//! our copy and shows as a surplus.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::count::temu_total;
use super::days::{audit_days, day_window};
use super::operator::{OpError, Operator};
use super::rewalk::rewalk_body;
use crate::config::Stream;
use crate::store::audit::{self as queries, DatedTable};
use crate::sync::SyncError;
use crate::temu::TemuShop;

/// One day (or, for products, the whole listing: `day` is `None`) whose counts differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayDiff {
    pub day: Option<NaiveDate>,
    pub temu: i64,
    pub ours: i64,
}

impl DayDiff {
    /// Temu's count minus ours: positive means records are missing here.
    pub fn difference(&self) -> i64 {
        self.temu - self.ours
    }
}

/// The result of auditing one shop × stream (and repairing it, when asked).
#[derive(Debug, Clone, Serialize)]
pub struct StreamAudit {
    pub shop: String,
    pub stream: Stream,
    /// Days (or listings) compared.
    pub checked: usize,
    /// API calls the audit made (not counting a repair's re-walk pages).
    pub calls: u64,
    /// What still differs.
    pub differences: Vec<DayDiff>,
    /// Days (or listings) that differed and were repaired.
    pub repaired: usize,
    /// Why no day was audited, when none was (e.g. the stream has no cursor yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl StreamAudit {
    /// Nothing compared, for the reason `note` gives.
    fn skipped(shop: &TemuShop, stream: Stream, note: String) -> Self {
        Self {
            shop: shop.name().to_string(),
            stream,
            checked: 0,
            calls: 0,
            differences: Vec::new(),
            repaired: 0,
            note: Some(note),
        }
    }
}

fn table(stream: Stream) -> Option<DatedTable> {
    match stream {
        Stream::Orders => Some(DatedTable::Orders),
        Stream::Aftersales => Some(DatedTable::Aftersales),
        Stream::Products => None,
    }
}

/// What the database says about (shop, stream): its id and cursor (none before the first sync).
async fn stored_state(
    op: &Operator,
    shop: &str,
    stream: Stream,
) -> Result<Option<(i64, Option<DateTime<Utc>>)>, OpError> {
    let name = shop.to_string();
    op.db
        .transaction("audit-state", op.db_deadline, move |c| {
            Box::pin(async move {
                let Some(id) = queries::shop_id(c, &name).await? else {
                    return Ok::<_, SyncError>(None);
                };
                Ok(Some((id, queries::cursor(c, id, stream.as_str()).await?)))
            })
        })
        .await
        .map_err(|e| OpError::from_sync("reading the sync state", e))
}

/// Our counts for `days` of `table` (days without rows: 0).
async fn our_counts(
    op: &Operator,
    table: DatedTable,
    shop_id: i64,
    days: &[NaiveDate],
) -> Result<BTreeMap<NaiveDate, i64>, OpError> {
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        return Ok(BTreeMap::new());
    };
    let from = day_window(*first).start;
    let to = day_window(*last).end + chrono::Duration::seconds(1);
    let rows = op
        .db
        .transaction("audit-counts", op.db_deadline, move |c| {
            Box::pin(async move {
                Ok::<_, SyncError>(queries::rows_per_day(c, table, shop_id, from, to).await?)
            })
        })
        .await
        .map_err(|e| OpError::from_sync("counting stored rows", e))?;
    Ok(rows.into_iter().collect())
}

/// Audits `days` (update-time streams) or the whole listing (products).
async fn compare(
    op: &Operator,
    shop: &TemuShop,
    stream: Stream,
    shop_id: Option<i64>,
    days: &[NaiveDate],
) -> Result<(Vec<DayDiff>, u64), OpError> {
    let context = format!(
        "asking Temu for the {} totals of {}",
        stream.as_str(),
        shop.name()
    );
    let sync = &op.config.sync;
    let Some(table) = table(stream) else {
        let temu = temu_total(&op.client, shop, sync, stream, None)
            .await
            .map_err(|e| OpError::from_sync(&context, e))?;
        let ours = match shop_id {
            None => 0,
            Some(id) => op
                .db
                .transaction("audit-products", op.db_deadline, move |c| {
                    Box::pin(async move {
                        Ok::<_, SyncError>(queries::products_not_removed(c, id).await?)
                    })
                })
                .await
                .map_err(|e| OpError::from_sync("counting stored products", e))?,
        };
        let diff = (temu != ours).then_some(DayDiff {
            day: None,
            temu,
            ours,
        });
        return Ok((diff.into_iter().collect(), 1));
    };
    let ours = match shop_id {
        Some(id) => our_counts(op, table, id, days).await?,
        None => BTreeMap::new(),
    };
    let mut diffs = Vec::new();
    for day in days {
        let temu = temu_total(&op.client, shop, sync, stream, Some(day_window(*day)))
            .await
            .map_err(|e| OpError::from_sync(&context, e))?;
        let ours = ours.get(day).copied().unwrap_or(0);
        if temu != ours {
            diffs.push(DayDiff {
                day: Some(*day),
                temu,
                ours,
            });
        }
    }
    Ok((diffs, days.len() as u64))
}

/// Audits (shop, stream) over the UTC days since `now − since` (see `days.rs` for which days
/// count); with `repair`, re-walks the days that differ and audits them again.
pub async fn audit_stream(
    op: &Operator,
    shop: &TemuShop,
    stream: Stream,
    since: Duration,
    repair: bool,
) -> Result<StreamAudit, OpError> {
    if let Some(api) = shop.missing_scope(stream) {
        // The sync skips this stream too (the token check said so): nothing to compare.
        let note = format!("skipped: the token's apiScopeList lacks {api}");
        return Ok(StreamAudit::skipped(shop, stream, note));
    }
    let state = stored_state(op, shop.name(), stream).await?;
    let shop_id = state.map(|(id, _)| id);
    let cursor = state.and_then(|(_, c)| c);
    let days = match table(stream) {
        Some(_) => audit_days(Utc::now(), since, op.config.sync.settle, cursor),
        None => Vec::new(),
    };
    let note = (table(stream).is_some() && days.is_empty()).then(|| match cursor {
        None => "not synced yet: no cursor, nothing to audit".to_string(),
        Some(c) => format!("no whole day between the window's start and the cursor ({c})"),
    });
    let (mut differences, mut calls) = if note.is_some() {
        (Vec::new(), 0)
    } else {
        compare(op, shop, stream, shop_id, &days).await?
    };
    let checked = if table(stream).is_some() {
        days.len()
    } else {
        1
    };
    let mut repaired = 0;
    if repair && !differences.is_empty() {
        let before = differences.len();
        let (after, more) = repair_days(op, shop, stream, &differences).await?;
        calls += more;
        repaired = before - after.len().min(before);
        differences = after;
    }
    Ok(StreamAudit {
        shop: shop.name().to_string(),
        stream,
        checked,
        calls,
        differences,
        repaired,
        note,
    })
}

/// Re-walks the days of `diffs` (products: the whole listing) under the lease without moving
/// the cursor, then compares those days again; returns what still differs and the calls the
/// re-check made.
async fn repair_days(
    op: &Operator,
    shop: &TemuShop,
    stream: Stream,
    diffs: &[DayDiff],
) -> Result<(Vec<DayDiff>, u64), OpError> {
    let days: Vec<NaiveDate> = diffs.iter().filter_map(|d| d.day).collect();
    let windows = days.iter().map(|d| day_window(*d)).collect();
    let progress = op
        .run_body(shop, stream, rewalk_body(stream, windows))
        .await?;
    tracing::info!(shop = %shop.name(), stream = stream.as_str(), days = days.len(),
        pages = progress.pages, inserted = progress.inserted, updated = progress.updated,
        "audit repair re-walked the days that differed");
    let shop_id = stored_state(op, shop.name(), stream)
        .await?
        .map(|(id, _)| id);
    compare(op, shop, stream, shop_id, &days).await
}
