//! The fuzz targets (proptest), one binary: `config` (the configuration loader and its
//! overrides), `decode` (the Temu API's bytes to rows), `http` (raw requests against the real
//! daemon). `common` holds the case count (`FUZZ_CASES`, default 3 000), the timed runner and
//! the turn that keeps the CPU-bound targets from running beside the HTTP target.
//!
//! Run: `cargo test --test fuzz` (one module: `cargo test --test fuzz decode::`).

#[path = "../sync_common/mod.rs"]
mod sync_common;

mod common;
mod config;
mod decode;
mod http;
