//! The sync engine: one supervised actor per configured shop × stream that copies Temu data into
//! PostgreSQL, crash-safely and incrementally.
//!
//! Owns: the per-stream table (`streams/`: request, conversion, upsert, natural key, window kind
//! of each stream), scheduling, retries, parking and triggers (`actor.rs`, what it shares:
//! `deps.rs`), the protocol of one run — lease, run record, heartbeat, chunked walk or sweep,
//! batched upserts, cursor in the same transaction as a chunk's last batch (`run/`), walking paged
//! listings that move under the walk (`walk.rs`), window planning (`window.rs`), the live status
//! board and its health checks (`board.rs`, `progress.rs`), the control and status HTTP routes
//! (`control.rs`). Must not: talk SQL directly (that is `store`) or HTTP to Temu directly (that is
//! `temu`).

pub mod actor;
pub mod board;
pub mod control;
mod deps;
mod error;
mod policy;
pub mod progress;
pub mod run;
pub mod streams;
pub mod walk;
pub mod window;

pub use actor::{actor_name, SyncActor, SyncActorArgs, SyncMsg, TriggerOutcome};
pub use board::{StreamState, StreamView, SyncBoard};
pub use control::SyncControl;
pub use deps::SyncDeps;
pub use error::{FailureKind, SyncError};
pub use policy::{next_step, NextStep};
