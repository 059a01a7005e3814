//! temu-sync: a supervised daemon that copies a Temu seller's orders, products and after-sales
//! from the Temu Open Platform API into PostgreSQL.
//!
//! One folder per concern; each module's doc says what it owns and what it must not touch.
//! `docs/ARCHITECTURE.md` is the code map.

pub mod app;
pub mod audit;
pub mod config;
pub mod db;
pub mod health;
pub mod http;
pub mod metrics;
pub mod ops;
pub mod pg_cluster;
pub mod shutdown;
pub mod sim;
pub mod store;
pub mod supervisor;
pub mod sync;
pub mod telemetry;
pub mod temu;
/// Test support for the package's tests and the bench; not part of the daemon (feature
/// `testkit`, off by default, see `Cargo.toml`).
#[cfg(feature = "testkit")]
pub mod testkit;

/// Process exit codes (sysexits.h), documented in the README.
pub mod exit {
    /// Clean shutdown.
    pub const OK: i32 = 0;
    /// Unexpected internal error.
    pub const SOFTWARE: i32 = 70;
    /// A dependency stayed unavailable, or the supervisor gave up after too many restarts.
    pub const UNAVAILABLE: i32 = 69;
    /// The configuration is invalid.
    pub const CONFIG: i32 = 78;
}
