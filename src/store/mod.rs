//! The storage layer of the sync engine: how Temu records, sync cursors, leases and runs are kept
//! in PostgreSQL.
//!
//! Owns: turning API records into rows ([`records`]), idempotent upserts that never move a row
//! back in time ([`orders`], [`products`], [`aftersales`]), the per-(shop, stream) cursor, lease
//! and park state ([`state`]), the run log ([`runs`]) and the joined status view ([`status`]).
//!
//! Every function takes `&mut AsyncPgConnection` and runs on whatever transaction the caller has
//! open: the caller (the sync engine, through [`crate::db::Database::transaction`]) decides what
//! commits together — rows and cursor in one transaction (invariant 1).
//!
//! Must not: open connections or transactions of its own (a savepoint inside the caller's
//! transaction is fine), call the Temu API, sleep, or decide policy (when to park, retry or take
//! a lease over is the sync engine's call).

/// The `ON CONFLICT … DO UPDATE … WHERE` of a record versioned by Temu's update time: the
/// stored row of `$table` is replaced only by a strictly newer version, or by a different body
/// with the same update time — never by an older one (invariant 2). `$table` needs
/// `updated_at` and `raw` columns.
macro_rules! newer_or_changed_version {
    ($table:ident) => {
        $table::updated_at
            .lt(diesel::upsert::excluded($table::updated_at))
            .or($table::updated_at
                .eq(diesel::upsert::excluded($table::updated_at))
                .and($table::raw.is_distinct_from(diesel::upsert::excluded($table::raw))))
    };
}

/// `SET column = EXCLUDED.column, …` for these columns of `$table`: the part of an
/// `ON CONFLICT … DO UPDATE` that takes them from the incoming row.
macro_rules! incoming {
    ($table:ident: $($column:ident),+ $(,)?) => {
        ($($table::$column.eq(diesel::upsert::excluded($table::$column)),)+)
    };
}

pub mod aftersales;
pub mod audit;
pub mod budget;
pub mod fair_share;
pub mod orders;
pub mod products;
pub mod raw_json;
pub mod records;
pub mod runs;
pub mod state;
pub mod status;

pub use aftersales::upsert_aftersales;
pub use orders::{ensure_shop, set_shop_mall_id, upsert_orders};
pub use products::{mark_products_removed, upsert_products};
pub use raw_json::RawJson;
pub use records::{
    AfterSalesRecord, OrderItemRecord, OrderRecord, ProductRecord, RecordError, SkuRecord,
};
pub use runs::{abandon_stale_runs, finish_run, start_run, update_run_progress, RunStatus};
pub use state::{
    advance_cursor, park, record_failure, record_success, release_lease, renew_lease,
    try_acquire_lease, unpark, Lease,
};
pub use status::{stream_status, RunSummary, StreamStatus};

/// What an upsert did with a batch. `inserted + updated + unchanged` is the batch's length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upserted {
    /// New rows.
    pub inserted: u64,
    /// Existing rows replaced by a newer (or, for products, different) version.
    pub updated: u64,
    /// Records that changed nothing: older than (or identical to) the stored row, or repeated
    /// within the batch.
    pub unchanged: u64,
}

impl Upserted {
    /// Counts from the rows an upsert returned (`true` = inserted) out of `total` records.
    fn from_returned(total: usize, inserted_flags: impl IntoIterator<Item = bool>) -> Self {
        let mut out = Upserted::default();
        for inserted in inserted_flags {
            if inserted {
                out.inserted += 1;
            } else {
                out.updated += 1;
            }
        }
        out.unchanged = (total as u64).saturating_sub(out.inserted + out.updated);
        out
    }
}

/// `RETURNING (xmax = 0)`: true for a row this statement inserted, false for one that
/// `ON CONFLICT … DO UPDATE` updated (the updated version carries the updating transaction in
/// `xmax`). Rows the `DO UPDATE … WHERE` skipped are not returned at all.
fn inserted_flag() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql::<diesel::sql_types::Bool>("(xmax = 0)")
}

/// One record per key, in first-seen order: a later record replaces an earlier one unless
/// `older(later, earlier)` says it is older.
///
/// PostgreSQL refuses an `ON CONFLICT DO UPDATE` that touches the same row twice in one
/// statement, so every batch is made unique by key first.
fn newest_per_key<'a, T, K>(
    records: &'a [T],
    key: impl Fn(&'a T) -> K,
    older: impl Fn(&T, &T) -> bool,
) -> Vec<&'a T>
where
    K: std::hash::Hash + Eq,
{
    use std::collections::hash_map::{Entry, HashMap};
    let mut index: HashMap<K, usize> = HashMap::with_capacity(records.len());
    let mut out: Vec<&T> = Vec::with_capacity(records.len());
    for record in records {
        match index.entry(key(record)) {
            Entry::Occupied(slot) => {
                let kept = &mut out[*slot.get()];
                if !older(record, kept) {
                    *kept = record;
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(out.len());
                out.push(record);
            }
        }
    }
    out
}

/// A parent row an upsert inserted or replaced: `RETURNING (id, natural key, xmax = 0)`.
type ChangedRow = (i64, String, bool);

/// The children of the parents in `batch` that the upsert inserted or replaced (`changed`), each
/// with its parent's id; one per child key, as last listed (a child listed twice, in one parent
/// or in two, is stored once).
fn children_of_changed<'a, P, C>(
    batch: &[&'a P],
    changed: &[ChangedRow],
    parent_key: impl Fn(&P) -> &str,
    children: impl Fn(&'a P) -> &'a [C],
    child_key: impl Fn(&C) -> &str,
) -> Vec<(i64, &'a C)> {
    let ids: std::collections::HashMap<&str, i64> = changed
        .iter()
        .map(|(id, key, _)| (key.as_str(), *id))
        .collect();
    let all: Vec<(i64, &'a C)> = batch
        .iter()
        .filter_map(|r| ids.get(parent_key(r)).map(|id| (*id, *r)))
        .flat_map(|(id, r)| children(r).iter().map(move |c| (id, c)))
        .collect();
    newest_per_key(&all, |(_, c)| child_key(c), |_, _| false)
        .into_iter()
        .copied()
        .collect()
}

/// The longest error message kept in `sync_state.last_error` and `sync_runs.error_message`.
const MAX_ERROR_CHARS: usize = 4000;

/// At most `max_chars` characters, without NUL (which `text` cannot hold).
fn bounded_text(s: &str, max_chars: usize) -> String {
    s.chars()
        .take(max_chars)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}

/// Adds `WHERE predicate` to an `ON CONFLICT … DO UPDATE` (diesel's `FilterDsl` for insert
/// statements, called by path because `QueryDsl::filter` shadows it).
fn on_conflict_where<S, P>(statement: S, predicate: P) -> S::Output
where
    S: diesel::query_dsl::methods::FilterDsl<P>,
{
    diesel::query_dsl::methods::FilterDsl::filter(statement, predicate)
}
