//! PostgreSQL: the connection pool, its supervising actor, migrations and the transaction helper.
//!
//! Owns: every connection to PostgreSQL. Other components get connections only through
//! [`Database::checkout`] / [`Database::transaction`], one checkout per unit of work.
//! The [`DbActor`] builds the pool, creates the database and applies migrations (retrying with
//! backoff while the database is down), pings on an interval and publishes reachability, latency
//! and pool counters into the health snapshot. Errors are classified by SQLSTATE (`sqlstate.rs`),
//! recovered from the wire where diesel drops it (`wire.rs`). Must not: block its mailbox on the
//! database — slow work runs in tasks that report back by message.

mod actor;
mod connect;
mod error;
pub mod migrate;
mod pool;
pub mod schema;
mod session;
pub mod sqlstate;
mod tls;
pub mod wire;

pub use actor::{DbActor, DbActorArgs, DbMsg, Instance};
pub use connect::{ConnectFailure, Connector};
pub use error::DbError;
pub use pool::{reaper_period, Checkout, Database, PgPool};
pub use session::describe_pg_error;
