//! Test support shared by the integration tests, the fault matrix and the benchmarks: throwaway
//! PostgreSQL databases and a fault-injecting TCP proxy. Not used by the daemon itself.

mod fault_proxy;
mod test_database;

pub use fault_proxy::{FaultMode, FaultProxy};
pub use test_database::TestDatabase;
