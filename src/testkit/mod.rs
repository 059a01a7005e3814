//! Test support shared by the integration tests, the fault matrix and the benchmarks: throwaway
//! PostgreSQL databases, a fault-injecting TCP proxy and an in-memory run ledger. Not used by the
//! daemon itself.

mod fault_proxy;
mod ledger;
mod test_database;

pub use fault_proxy::{FaultMode, FaultProxy};
pub use ledger::{MemoryLedger, RecordedRun};
pub use test_database::TestDatabase;
