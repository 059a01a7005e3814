//! Test support shared by the integration tests, the fault matrix and the bench: throwaway
//! PostgreSQL databases, a fault-injecting TCP proxy, the daemon binary as a child process, free
//! ports and bounded waits.
//!
//! Compiled only with the `testkit` cargo feature (off by default, so it is no part of the
//! production library; the package's tests and the bench turn it on — see `Cargo.toml`). Nothing
//! in the daemon may use it, and it must not reach into the daemon's internals: it drives the
//! daemon from outside (a process, a config file, environment variables, HTTP) and knows the
//! simulator only through its public [`crate::sim::SimConfig`].

mod daemon;
mod fault_proxy;
mod net;
mod sim_shops;
mod test_database;
mod wait;

pub use daemon::{DaemonLaunch, DaemonProcess};
pub use fault_proxy::{FaultMode, FaultProxy};
pub use net::{free_port, http_status};
pub use sim_shops::SimShops;
pub use test_database::TestDatabase;
pub use wait::{eventually, eventually_some, POLL};
