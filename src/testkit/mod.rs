//! Test support shared by the integration tests, the fault matrix and the bench: throwaway
//! PostgreSQL databases, a fault-injecting TCP proxy, the daemon binary as a child process, free
//! ports, bounded waits, and an in-memory run ledger.
//!
//! Compiled only with the `testkit` cargo feature (off by default, so it is no part of the
//! production library; the package's tests and the bench turn it on — see `Cargo.toml`). Nothing
//! in the daemon may use it. It drives the daemon from outside (a process, a config file,
//! environment variables, HTTP) and knows the simulator only through its public
//! [`crate::sim::SimConfig`]; the one exception is [`MemoryLedger`], which implements the sync
//! engine's `RunLedger` interface so the scheduler's tests run in process on paused time.

mod daemon;
mod fault_proxy;
mod ledger;
mod net;
mod sim_shops;
mod test_database;
mod wait;

pub use daemon::{DaemonLaunch, DaemonProcess};
pub use fault_proxy::{FaultMode, FaultProxy};
pub use ledger::{MemoryLedger, RecordedRun};
pub use net::{free_port, http_status};
pub use sim_shops::SimShops;
pub use test_database::TestDatabase;
pub use wait::{eventually, eventually_some, POLL};
