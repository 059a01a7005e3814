//! Shared by the proptest fuzz targets: how many cases to run (`FUZZ_CASES`, default 3 000) and a
//! runner that prints how many executions took how long (the figures in docs/RELIABILITY.md).
#![allow(dead_code)]

use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

pub fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// Runs `test` on `cases()` values of `strategy`; panics with the shrunk failure, if any.
pub fn run<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
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
