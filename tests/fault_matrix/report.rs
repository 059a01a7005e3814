//! The fault matrix's report and schedule: one [`Row`] per scenario, the table that
//! docs/RELIABILITY.md shows, and the turn every scenario takes so that only one runs at a time.
//!
//! Owns: printing rows and the table (straight to stderr, past libtest's capture, so CI logs show
//! them without `--nocapture`) and writing `target/fault-matrix.md`. Must not know what any
//! scenario does: scenarios only fill in their row.

use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// What one scenario observed: the table's columns, plus every broken promise in `failures`.
pub struct Row {
    pub fault: String,
    pub how: String,
    pub did: String,
    pub lost: Option<usize>,
    pub dups: Option<i64>,
    pub detect: Option<Duration>,
    pub recover: Option<Duration>,
    pub failures: Vec<String>,
}

impl Row {
    pub fn new(fault: &str, how: &str) -> Self {
        Self {
            fault: fault.to_string(),
            how: how.to_string(),
            did: String::new(),
            lost: None,
            dups: None,
            detect: None,
            recover: None,
            failures: Vec::new(),
        }
    }

    /// Records `what` as a failure unless `ok`.
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }
}

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) if d.as_millis() < 10_000 => format!("{} ms", d.as_millis()),
        Some(d) => format!("{:.1} s", d.as_secs_f64()),
        None => "—".to_string(),
    }
}

const HEADER: &str =
    "| fault | injected as | what the daemon did | lost | dups | detect | recover | result |\n\
                      |---|---|---|---|---|---|---|---|\n";

/// One row of the table, without the trailing newline.
fn line(r: &Row) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        r.fault,
        r.how,
        r.did.replace('|', "/"),
        r.lost.map(|n| n.to_string()).unwrap_or("—".into()),
        r.dups.map(|n| n.to_string()).unwrap_or("—".into()),
        ms(r.detect),
        ms(r.recover),
        if r.failures.is_empty() {
            "ok".to_string()
        } else {
            format!("**FAIL**: {}", r.failures.join("; ").replace('|', "/"))
        }
    )
}

/// The table of `rows` (header, one line each, the summary line), as docs/RELIABILITY.md shows it.
fn table(rows: &[Row], total: Duration) -> String {
    let mut out = String::from(HEADER);
    for r in rows {
        let _ = writeln!(out, "{}", line(r));
    }
    let _ = writeln!(
        out,
        "\n{} scenarios, {} failed, {:.0} s in all. detect = fault injected → `/health` shows it; \
         recover = fault removed → `/health` passes and every stream has completed a run again.",
        rows.len(),
        rows.iter().filter(|r| !r.failures.is_empty()).count(),
        total.as_secs_f64()
    );
    out
}

/// Straight to the process's stderr, past libtest's capture.
fn to_stderr(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// The schedule

/// One scenario at a time, across the test threads (each test has its own runtime; a tokio
/// mutex works across runtimes, and it does not poison when a holder panics). Every scenario
/// starts a daemon, a simulator and often a proxy, and their detect limits (1.5 s for database
/// faults) assume nothing else loads the machine; several also terminate sessions or change a
/// role while they hold it.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The rows finished so far in this process, and when the first scenario began.
struct Finished {
    first_began: Option<Instant>,
    rows: Vec<Row>,
}

static FINISHED: std::sync::Mutex<Finished> = std::sync::Mutex::new(Finished {
    first_began: None,
    rows: Vec::new(),
});

/// Waits until no other scenario (or the soak) runs; the turn lasts as long as the guard.
pub async fn take_turn() -> tokio::sync::MutexGuard<'static, ()> {
    TURN.lock().await
}

/// Runs one scenario on its turn: `body` fills in the row (a panic in it becomes a failure of
/// the row). Prints the row, adds it to the table, and fails the test if the row failed.
pub async fn run_scenario<F, Fut>(name: &'static str, how: &'static str, body: F)
where
    F: FnOnce(Row) -> Fut,
    Fut: Future<Output = Row> + Send + 'static,
{
    let turn = take_turn().await;
    let began = Instant::now();
    finished().first_began.get_or_insert(began);
    let row = match tokio::spawn(body(Row::new(name, how))).await {
        Ok(row) => row,
        Err(e) => {
            let mut row = Row::new(name, how);
            row.check(false, format!("the scenario panicked: {}", panic_text(e)));
            row
        }
    };
    let verdict = if row.failures.is_empty() {
        "ok"
    } else {
        "FAILED"
    };
    to_stderr(&format!(
        "[{:>5.1}s] {name} {verdict}\n{}\n",
        began.elapsed().as_secs_f64(),
        line(&row)
    ));
    let failures = row.failures.join("; ");
    record(row);
    drop(turn);
    assert!(
        failures.is_empty(),
        "fault matrix failures:\n{name}: {failures}"
    );
}

fn finished() -> std::sync::MutexGuard<'static, Finished> {
    FINISHED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds `row` to the rows of this process (in table order) and writes their table to
/// `target/fault-matrix.md`; once every scenario has finished, prints the whole table.
fn record(row: Row) {
    let mut done = finished();
    done.rows.push(row);
    let order = |r: &Row| crate::SCENARIOS.iter().position(|s| *s == r.fault);
    done.rows.sort_by_key(order);
    let total = done.first_began.map(|t| t.elapsed()).unwrap_or_default();
    let text = table(&done.rows, total);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fault-matrix.md");
    let _ = std::fs::write(&path, &text);
    if done.rows.len() == crate::SCENARIOS.len() {
        to_stderr(&format!("\n{text}"));
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string()),
        Err(e) => e.to_string(),
    }
}
