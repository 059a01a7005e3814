//! `temu-sync status`: the state of every shop × stream as a table, read from the database (so it
//! shows what every daemon sharing the database has done, whether or not one runs here).
//!
//! Owns: reading the rows once (one transaction under a deadline, invariant 4) and rendering them
//! as text with ages relative to the caller's clock. Must not: write to the database or start any
//! part of the daemon.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::db::{Database, DbError};
use crate::store::{self, StreamStatus};

/// Reads the status rows, bounded by the database's timeouts.
pub async fn load(config: &Config) -> Result<Vec<StreamStatus>, DbError> {
    let db = Database::new(config.database.clone())?;
    db.rebuild_pool();
    let deadline = config.database.connect_timeout + config.database.statement_timeout;
    let rows = db
        .transaction::<_, DbError, _>("status", deadline, |c| {
            Box::pin(async move { store::stream_status(c).await })
        })
        .await;
    db.close();
    rows
}

fn ago(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        None => "-".to_string(),
        Some(t) => {
            let secs = (now - t).num_seconds().max(0) as u64;
            format!(
                "{} ago",
                humantime::format_duration(Duration::from_secs(secs))
            )
        }
    }
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Renders the rows as a fixed-width table.
pub fn render(rows: &[StreamStatus], now: DateTime<Utc>) -> String {
    let mut table: Vec<[String; 8]> = vec![[
        "SHOP".into(),
        "STREAM".into(),
        "STATE".into(),
        "DATA UP TO".into(),
        "LAST SUCCESS".into(),
        "LAST RUN".into(),
        "RECORDS (new/upd)".into(),
        "LAST ERROR".into(),
    ]];
    for r in rows {
        let state = if r.parked_reason.is_some() {
            "parked".to_string()
        } else if r
            .lease_expires_at
            .is_some_and(|until| until > now && r.lease_owner.is_some())
        {
            format!(
                "running ({})",
                cut(r.lease_owner.as_deref().unwrap_or("?"), 24)
            )
        } else if r.backfill_reason.is_some() {
            "backfill pending".to_string()
        } else {
            "idle".to_string()
        };
        let (last_run, records) = match &r.last_run {
            Some(run) => (
                format!("{} {}", run.status, ago(Some(run.started_at), now)),
                format!("{}/{}", run.inserted, run.updated),
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        let error = r
            .parked_reason
            .as_deref()
            .or(r.last_error.as_deref())
            .or(r.backfill_reason.as_deref())
            .map(|e| cut(e, 60))
            .unwrap_or_else(|| "-".to_string());
        table.push([
            r.shop.clone(),
            r.stream.clone(),
            state,
            ago(r.cursor, now),
            ago(r.last_success_at, now),
            last_run,
            records,
            error,
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &table {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no sync has run against this database yet)\n");
    }
    out
}
