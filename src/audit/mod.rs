//! The self-audit and the operator commands that re-read Temu without moving a cursor.
//!
//! Owns: the audit (`check.rs`: for each UTC day, Temu's total by update time — one call with
//! `pageSize: 1` — against the database's count; products: the listing's total against the rows
//! not removed; `--repair` re-walks the days that differ and checks them again), its days and the
//! operator's date ranges (`days.rs`), Temu's totals (`count.rs`), the re-walk body that never
//! moves the cursor (`rewalk.rs`), how a command takes the stream's lease and runs a body through
//! the ordinary run protocol (`operator.rs`), and the daemon's scheduled audit with what it
//! publishes to `/status`, `/health` and `/metrics` (`schedule.rs`).
//!
//! Must not: move a cursor forwards (that is the sync's), talk SQL (that is `store::audit`), or
//! build its own stream table (it calls the streams' entries in `sync::streams`).

mod check;
mod count;
pub mod days;
mod operator;
mod rewalk;
pub mod routes;
mod schedule;

pub use check::{audit_stream, DayDiff, StreamAudit};
pub use days::{parse_range, RangeError};
pub use operator::{OpError, Operator};
pub use rewalk::rewalk_body;
pub use schedule::{spawn_scheduled_audit, AuditBoard, AuditOutputs, AuditView};

use crate::config::Stream;

/// The streams an audit can check.
pub const AUDITED: [Stream; 3] = [Stream::Orders, Stream::Aftersales, Stream::Products];
