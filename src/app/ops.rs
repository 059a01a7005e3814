//! The operator commands: `audit`, `backfill`, `reset` — argument checks, the calls into
//! `audit/`, the printed table and the exit code (0 done / no difference, 1 differences remain
//! or the work failed, 69 Temu or the database unreachable or the lease stayed held, 78 bad
//! arguments).
//!
//! Must not: contain the audit or the re-walk themselves (that is `audit/`).

use std::io::IsTerminal;
use std::time::Duration;

use chrono::Utc;

use crate::audit::{self, audit_stream, parse_range, OpError, Operator, StreamAudit};
use crate::config::{Config, Stream};
use crate::exit;
use crate::temu::TemuShop;

/// `temu-sync audit` arguments.
pub struct AuditArgs {
    pub shop: Option<String>,
    pub stream: Option<String>,
    pub since: Duration,
    pub repair: bool,
    pub lease_wait: Duration,
}

/// A stream's name as the CLI and the routes take it.
pub fn parse_stream(text: &str) -> Result<Stream, OpError> {
    crate::sync::control::stream_named(text).map_err(OpError::NotConfigured)
}

fn report(e: &OpError) -> i32 {
    eprintln!("temu-sync: {e}");
    e.exit_code()
}

/// The (shop, stream) pairs an audit covers.
fn audit_targets(op: &Operator, args: &AuditArgs) -> Result<Vec<(TemuShop, Stream)>, OpError> {
    let stream = args.stream.as_deref().map(parse_stream).transpose()?;
    if let Some(s) = stream.filter(|s| !audit::AUDITED.contains(s)) {
        return Err(OpError::Refused(format!(
            "stream {} cannot be audited",
            s.as_str()
        )));
    }
    let shops = match &args.shop {
        Some(name) => vec![op.shop(name)?],
        None => op.client.shops().to_vec(),
    };
    let mut targets = Vec::new();
    for shop in shops {
        match stream {
            Some(s) => {
                if args.shop.is_some() {
                    Operator::check_stream(&shop, s)?;
                }
                if shop.streams().contains(&s) {
                    targets.push((shop.clone(), s));
                }
            }
            None => targets.extend(
                audit::AUDITED
                    .into_iter()
                    .filter(|s| shop.streams().contains(s))
                    .map(|s| (shop.clone(), s)),
            ),
        }
    }
    if targets.is_empty() {
        return Err(OpError::Refused(
            "no configured shop syncs that stream".to_string(),
        ));
    }
    Ok(targets)
}

/// `temu-sync audit`.
pub async fn audit(config: &Config, args: AuditArgs) -> i32 {
    if !(86_400..=3660 * 86_400).contains(&args.since.as_secs()) {
        return report(&OpError::Refused(
            "--since must be 1d to 3660d, e.g. 90d".to_string(),
        ));
    }
    let op = match Operator::for_cli(config, args.lease_wait) {
        Ok(op) => op,
        Err(e) => return report(&e),
    };
    let targets = match audit_targets(&op, &args) {
        Ok(t) => t,
        Err(e) => return report(&e),
    };
    let mut audits = Vec::new();
    for (shop, stream) in targets {
        match audit_stream(&op, &shop, stream, args.since, args.repair).await {
            Ok(a) => audits.push(a),
            Err(e) => {
                op.db.close();
                return report(&e);
            }
        }
    }
    op.db.close();
    print!("{}", render_audits(&audits));
    if audits.iter().all(|a| a.differences.is_empty()) {
        exit::OK
    } else {
        1
    }
}

/// The table of the days that differ, then one summary line per stream.
pub fn render_audits(audits: &[StreamAudit]) -> String {
    let mut out = String::new();
    let any = audits.iter().any(|a| !a.differences.is_empty());
    if any {
        out.push_str(&format!(
            "{:<16} {:<11} {:<10} {:>8} {:>8} {:>8}\n",
            "SHOP", "STREAM", "DAY", "TEMU", "OURS", "DIFF"
        ));
        for a in audits {
            for d in &a.differences {
                let day = d.day.map_or("listing".to_string(), |d| d.to_string());
                out.push_str(&format!(
                    "{:<16} {:<11} {:<10} {:>8} {:>8} {:>+8}\n",
                    a.shop,
                    a.stream.as_str(),
                    day,
                    d.temu,
                    d.ours,
                    d.difference()
                ));
            }
        }
    }
    for a in audits {
        let note = a
            .note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} {}: {} checked, {} API call(s), {} differ, {} repaired{note}\n",
            a.shop,
            a.stream.as_str(),
            a.checked,
            a.calls,
            a.differences.len(),
            a.repaired
        ));
    }
    out
}

/// The configured (shop, stream) an operator names, or a refusal.
pub fn target(op: &Operator, shop: &str, stream: &str) -> Result<(TemuShop, Stream), OpError> {
    let shop = op.shop(shop)?;
    let stream = parse_stream(stream)?;
    Operator::check_stream(&shop, stream)?;
    Ok((shop, stream))
}

/// The configured update-time (shop, stream) a backfill names; a full-sweep stream is refused.
pub fn backfill_target(
    op: &Operator,
    shop: &str,
    stream: &str,
) -> Result<(TemuShop, Stream), OpError> {
    let (shop, stream) = target(op, shop, stream)?;
    if !matches!(stream, Stream::Orders | Stream::Aftersales) {
        return Err(OpError::Refused(format!(
            "{} is re-read in full by every run (it has no time range); trigger a run with \
             POST /sync/{}/{} instead",
            stream.as_str(),
            shop.name(),
            stream.as_str()
        )));
    }
    Ok((shop, stream))
}

/// `backfill` / `POST …/backfill`: re-walks `from..to` of an update-time stream without
/// touching its cursor. Returns a one-line summary.
pub async fn backfill(
    op: &Operator,
    shop: &str,
    stream: &str,
    from: &str,
    to: &str,
) -> Result<String, OpError> {
    let (shop, stream) = backfill_target(op, shop, stream)?;
    let window = parse_range(from, to, Utc::now()).map_err(|e| OpError::Refused(e.to_string()))?;
    let body = audit::rewalk_body(stream, vec![window]);
    let p = op.run_body(&shop, stream, body).await?;
    Ok(format!(
        "backfilled {} {} from {} to {}: {} page(s), {} record(s) seen, {} inserted, {} updated; \
         the cursor was not moved",
        shop.name(),
        stream.as_str(),
        window.start.to_rfc3339(),
        window.end.to_rfc3339(),
        p.pages,
        p.records_seen,
        p.inserted,
        p.updated
    ))
}

/// `reset` / `POST …/reset`: clears the cursor; the next run backfills `initial_window`.
pub async fn reset(op: &Operator, shop: &str, stream: &str) -> Result<String, OpError> {
    let (shop, stream) = target(op, shop, stream)?;
    let before = op.reset(&shop, stream).await?;
    let before = before.map_or("none".to_string(), |c| c.to_rfc3339());
    Ok(format!(
        "reset {} {}: cursor was {before}; the next run backfills sync.initial_window ({})",
        shop.name(),
        stream.as_str(),
        humantime::format_duration(op.config.sync.initial_window)
    ))
}

/// Runs one operator command from the CLI: its own pool, the summary on stdout.
pub async fn run_cli<F, Fut>(config: &Config, lease_wait: Duration, work: F) -> i32
where
    F: FnOnce(Operator) -> Fut,
    Fut: std::future::Future<Output = Result<String, OpError>>,
{
    let op = match Operator::for_cli(config, lease_wait) {
        Ok(op) => op,
        Err(e) => return report(&e),
    };
    let db = op.db.clone();
    let result = work(op).await;
    db.close();
    match result {
        Ok(summary) => {
            println!("{summary}");
            exit::OK
        }
        Err(e) => report(&e),
    }
}

/// `reset`'s confirmation: `--yes`, or "yes" typed on a terminal; refused (78) otherwise.
pub fn confirm_reset(shop: &str, stream: &str, yes: bool) -> Result<(), OpError> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(OpError::Refused(
            "reset needs confirmation: pass --yes when not on a terminal".to_string(),
        ));
    }
    eprint!(
        "Reset {shop} {stream}? Its next run re-reads the whole initial_window from Temu. \
         Type yes to confirm: "
    );
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(_) if line.trim() == "yes" => Ok(()),
        _ => Err(OpError::Refused("reset not confirmed".to_string())),
    }
}
