//! Shared by the proptest fuzz targets: how many cases to run (`FUZZ_CASES`, default 3 000), a
//! runner that prints how many executions took how long (the figures in docs/RELIABILITY.md),
//! and the turn that keeps the CPU-bound targets off the machine while the HTTP target measures
//! answer times, RSS and descriptors of the real daemon.

use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

pub fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// Shared by the CPU-bound targets (they may run side by side), taken alone by the HTTP target:
/// before the targets shared one binary they never overlapped it. A tokio lock, so the async
/// HTTP target can hold it across awaits; it does not poison when a holder panics.
static MACHINE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The machine to oneself (no CPU-bound target runs meanwhile), as long as the guard lives.
pub async fn alone() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

/// Runs `test` on `cases()` values of `strategy`; panics with the shrunk failure, if any.
/// Waits while the HTTP target has the machine to itself.
pub fn run<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let _shared = MACHINE.blocking_read();
    let n = cases();
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let t = Instant::now();
    let result = runner.run(&strategy, test);
    println!(
        "fuzz {name}: {n} executions in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}
