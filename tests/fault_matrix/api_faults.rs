//! Temu API faults, produced by the in-process simulator: stalls, resets, 5xx, 429, bad bodies,
//! scripted API errors, a skewed clock and an expired token.
//!
//! Each touches only its own simulator. Owns injecting the fault and what the row says about
//! it; must not repeat the recovery, data and leak checks (`World::finish` makes them).

use std::time::Duration;
use std::time::Instant;

use crate::observe::{degraded, duplicates, time_until};
use crate::report::Row;
use crate::world::{Setup, World};
use temu_sync::sim::{Fault, FaultConfig};

/// Applies `faults` for `hold` after a first complete round, with 30 changes waiting.
async fn api_fault(
    row: &mut Row,
    prefix: &str,
    faults: FaultConfig,
    hold: Duration,
    env: Vec<(&'static str, &'static str)>,
) {
    let setup = Setup {
        env,
        ..Setup::default()
    };
    let Some(mut w) = World::start(prefix, setup, row).await else {
        return;
    };
    w.sim.handle.reset_stats();
    w.sim.handle.mutate("shop-0", 30);
    let before = w.sim.handle.stats().requests;
    w.sim.handle.set_faults(faults);
    let t = w.detect(row, hold, degraded).await;
    if let Some(t) = t {
        tokio::time::sleep(hold.saturating_sub(t)).await;
    }
    row.check(w.daemon.still_running(), "exited under API faults");
    w.sim.handle.set_faults(FaultConfig::none());
    let injected = w.sim.handle.stats().requests - before;
    row.check(injected > 0, "no request met the fault");
    let cleared = Instant::now();
    row.did = format!(
        "{injected} requests met the fault; {}",
        if row.did.is_empty() {
            "retried, absorbed (no health change)".to_string()
        } else {
            row.did.clone()
        }
    );
    w.finish(row, cleared).await;
}

/// The next `script.len()` answers are the scripted faults, with 30 changes waiting.
async fn api_script(row: &mut Row, prefix: &str, script: Vec<Fault>) {
    let Some(mut w) = World::start(prefix, Setup::default(), row).await else {
        return;
    };
    let n = script.len();
    w.sim.handle.mutate("shop-0", 30);
    w.sim.handle.push_faults(script);
    let t = w.detect(row, Duration::from_secs(20), degraded).await;
    let _ = t;
    // The script is consumed by the daemon's requests; the fault ends when it is.
    let drained = time_until(Duration::from_secs(60), || async {
        w.sim.handle.stats().requests as usize >= n
    })
    .await;
    row.check(drained.is_some(), "the fault script was not consumed");
    row.check(w.daemon.still_running(), "exited under API errors");
    let cleared = Instant::now();
    row.did = format!(
        "{n} scripted errors; {}",
        if row.did.is_empty() {
            "retried, absorbed (no health change)".to_string()
        } else {
            row.did.clone()
        }
    );
    w.finish(row, cleared).await;
}

pub async fn api_slow(row: &mut Row) {
    let stall = FaultConfig {
        stall: 1.0,
        stall_for: Duration::from_secs(5),
        ..FaultConfig::default()
    };
    let env = vec![("TEMU_SYNC__TEMU__BREAKER_THRESHOLD", "2")];
    api_fault(row, "fm_slow", stall, Duration::from_secs(10), env).await;
}

pub async fn api_reset(row: &mut Row) {
    let faults = FaultConfig {
        reset: 1.0,
        ..FaultConfig::default()
    };
    api_fault(row, "fm_reset", faults, Duration::from_secs(3), vec![]).await;
}

pub async fn api_5xx(row: &mut Row) {
    let faults = FaultConfig {
        http_502: 0.5,
        http_503: 0.5,
        ..FaultConfig::default()
    };
    api_fault(row, "fm_5xx", faults, Duration::from_secs(3), vec![]).await;
}

pub async fn api_429(row: &mut Row) {
    let faults = FaultConfig {
        http_429: 1.0,
        retry_after_secs: 1,
        ..FaultConfig::default()
    };
    api_fault(row, "fm_429", faults, Duration::from_secs(3), vec![]).await;
}

pub async fn api_bad_body(row: &mut Row) {
    let faults = FaultConfig {
        malformed: 0.5,
        truncated: 0.5,
        ..FaultConfig::default()
    };
    api_fault(row, "fm_body", faults, Duration::from_secs(3), vec![]).await;
}

pub async fn api_4000000_burst(row: &mut Row) {
    api_script(row, "fm_4000000", vec![Fault::ApiError(4_000_000); 30]).await;
}

pub async fn api_4000004_sustained(row: &mut Row) {
    api_script(row, "fm_4000004", vec![Fault::ApiError(4_000_004); 80]).await;
}

/// `/health` warns, naming the clock, on a sync check.
fn warns_of_the_clock(h: &serde_json::Value) -> bool {
    h["status"] != "pass"
        && h["checks"].as_object().is_some_and(|c| {
            c.iter().any(|(k, v)| {
                k.starts_with("sync:")
                    && v[0]["output"].as_str().is_some_and(|o| o.contains("clock"))
            })
        })
}

pub async fn api_skew(row: &mut Row) {
    // The simulator's clock is 15 min ahead: every request's timestamp is outside ±300 s.
    let setup = Setup {
        settle: false,
        sim: |c| c.clock_offset_secs = 900,
        ..Setup::default()
    };
    let Some(mut w) = World::start("fm_skew", setup, row).await else {
        return;
    };
    // Regression (issue 6): /health used to stay `pass` here until `lag_warn` (1 h) passed.
    let t = w
        .detect(row, Duration::from_secs(30), warns_of_the_clock)
        .await;
    row.check(
        t.is_some(),
        "/health did not turn warn on the signature/timestamp errors",
    );
    let refused = w.sim.handle.outcome_count(3_000_011);
    row.check(refused > 0, "no 3000011 answered");
    // Not recoverable inside the process: the fix is the host clock (NTP). Prove it stays up
    // without a crash loop and without writing anything wrong.
    tokio::time::sleep(Duration::from_secs(3)).await;
    row.check(w.daemon.still_running(), "exited on clock skew");
    row.did = format!(
        "{refused}× 3000011 (re-signs once per call, run fails, retried with backoff); stays up; NOT recoverable in-process (fix the host clock); {}",
        row.did
    );
    let dups = duplicates(&w.client).await;
    row.dups = Some(dups);
    row.check(dups == 0, "duplicates");
    w.leaks_and_exit(row).await;
}

/// Every one of the shop's three streams reports `parked` on `/health`.
async fn all_streams_parked(w: &World) -> bool {
    w.health().await.is_some_and(|h| {
        h["checks"].as_object().map(|c| {
            c.iter()
                .filter(|(k, _)| k.starts_with("sync:"))
                .filter(|(_, v)| {
                    v[0]["output"]
                        .as_str()
                        .is_some_and(|o| o.starts_with("parked"))
                })
                .count()
        }) == Some(3)
    })
}

pub async fn api_token(row: &mut Row) {
    let setup = Setup {
        settle: false,
        sim: |c| c.shops[0].token_expires_at = chrono::Utc::now().timestamp() - 86_400,
        ..Setup::default()
    };
    let Some(mut w) = World::start("fm_token", setup, row).await else {
        return;
    };
    let t = w
        .detect(row, Duration::from_secs(30), |h| h["status"] == "fail")
        .await;
    row.check(t.is_some(), "/health did not fail on the expired token");
    let parked = time_until(Duration::from_secs(30), || all_streams_parked(&w)).await;
    row.check(parked.is_some(), "not every stream parked");
    let before = w.sim.handle.stats().requests;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = w.sim.handle.stats().requests;
    row.check(
        after - before <= 1,
        format!("kept calling: {before} -> {after}"),
    );
    row.check(w.daemon.still_running(), "crash loop on an expired token");
    row.did = format!("streams parked, no further calls; {}", row.did);
    w.leaks_and_exit(row).await;
}
