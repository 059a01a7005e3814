//! The per-stream table: for each stream, the one place that says how it is synced.
//!
//! Owns: [`StreamSpec`] — for one stream its request (one page of the listing), the conversion of
//! API items into records, the upsert of a batch, the natural key (its record's [`Keyed`] impl),
//! its window kind and its interval key — and [`body`], the table that maps a configured
//! [`Stream`] to its entry. Adding a stream is one module here + one arm in [`body`] + its store
//! module and migration (+ its `sync.intervals` key); the run protocol (`run/`), the scheduler
//! (`actor.rs`), the config's stream list and `/status` follow from it. The bodies the entries run
//! are generic over [`StreamSpec`]: `chunks.rs` (an update-time window chunk by chunk, the cursor
//! with each chunk's last batch — invariant 1; `ahead.rs` the order chunks are walked and stored in), `sweep.rs` (a whole listing), `batches.rs`.
//!
//! Must not: hold run state (that is `run/`) or talk SQL itself (the upserts are `store`'s).

mod aftersales;
mod ahead;
pub(crate) mod batches;
mod chunks;
pub mod orders;
mod products;
mod sweep;

use std::sync::Arc;
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;

use super::run::{RunBody, Work};
use super::walk::{Keyed, Page};
use super::window::Window;
pub use super::window::WindowKind;
use super::SyncError;
use crate::config::{Stream, SyncConfig};
use crate::store::Upserted;
use crate::temu::envelope::WithRaw;
use crate::temu::fields::{unexpected_fields, RecordFields};
use crate::temu::token::TokenState;
use crate::temu::{TemuClient, TemuShop};
use chunks::walk_chunks;
use sweep::sweep;

pub use aftersales::Aftersales;
pub use orders::Orders;
pub use products::Products;

/// One entry of the table: everything that differs between streams.
pub trait StreamSpec: Send + Sync + 'static {
    /// The stored record; its [`Keyed`] impl is the natural key the walk de-duplicates by.
    type Record: Keyed + Send + 'static;
    const WINDOW: WindowKind;
    /// The configured stream this entry is (metric and log labels).
    const STREAM: Stream;
    /// The documented JSON types of a listed record's fields (see [`crate::temu::fields`]).
    const FIELDS: &'static RecordFields;

    /// The stream's interval key in `sync.intervals`.
    fn interval(config: &SyncConfig) -> Duration;

    /// Page `page` (1-based) of the listing, converted into records. `window` is the chunk for
    /// [`WindowKind::UpdateTime`] streams, `None` for a sweep; `config` carries what a request
    /// needs beyond the window (`sync.fulfillment_types` for orders).
    fn fetch<'a>(
        client: &'a TemuClient,
        shop: &'a TemuShop,
        config: &'a SyncConfig,
        window: Option<Window>,
        page: u32,
    ) -> BoxFuture<'a, Result<Page<Self::Record>, SyncError>>;

    /// Upserts one batch (never moving a row back in time).
    fn upsert(
        conn: &mut AsyncPgConnection,
        shop_id: i64,
        run_id: i64,
        rows: Vec<Self::Record>,
    ) -> BoxFuture<'_, Result<Upserted, SyncError>>;

    /// After a complete [`WindowKind::FullSweep`]: settles what the sweep did not see; returns how
    /// many rows it changed.
    fn after_sweep(
        _conn: &mut AsyncPgConnection,
        _shop_id: i64,
        _run_id: i64,
    ) -> BoxFuture<'_, Result<u64, SyncError>> {
        Box::pin(async { Ok(0) })
    }
}

/// The table: the entry of `stream`.
pub fn body(stream: Stream) -> Arc<dyn RunBody> {
    match stream {
        Stream::Orders => Arc::new(Entry::<Orders>::default()),
        Stream::Aftersales => Arc::new(Entry::<Aftersales>::default()),
        Stream::Products => Arc::new(Entry::<Products>::default()),
    }
}

/// The window kind of `stream`.
pub fn window_kind(stream: Stream) -> WindowKind {
    body(stream).window_kind()
}

/// A table entry as the run protocol sees it.
struct Entry<S>(std::marker::PhantomData<S>);

impl<S> Default for Entry<S> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<S: StreamSpec> RunBody for Entry<S> {
    fn window_kind(&self) -> WindowKind {
        S::WINDOW
    }

    fn interval(&self, config: &SyncConfig) -> Duration {
        S::interval(config)
    }

    fn sync<'a>(&'a self, work: Work<'a>) -> BoxFuture<'a, Result<(), SyncError>> {
        Box::pin(async move {
            // The token's scopes leave this stream out: no call (it would fail with
            // 5000000/3000032 and park); the token check warned once and the board shows it.
            // A run that starts before the first token check makes that check itself (one call;
            // a failure leaves the decision to what is known: the stream runs).
            let (client, shop) = (&work.ctx.client, &work.ctx.shop);
            if matches!(shop.token_state(), TokenState::NotChecked) {
                let _ = client.token_info(shop).await;
            }
            if let Some(api) = shop.missing_scope(work.ctx.stream) {
                tracing::debug!(shop = %work.ctx.shop.name(), stream = work.ctx.stream.as_str(),
                    api, "skipped: the access token's apiScopeList lacks the stream's API");
                return Ok(());
            }
            match (S::WINDOW, work.window) {
                (WindowKind::UpdateTime, Some(window)) => walk_chunks::<S>(work, window).await,
                (WindowKind::UpdateTime, None) => Ok(()),
                (WindowKind::FullSweep, _) => sweep::<S>(work).await,
            }
        })
    }
}

/// Converts one page of stream `S`'s API items into records; a record that cannot be stored
/// fails the page (and so the run, with the reason) rather than being dropped silently. A field
/// whose value is not of the documented type (its typed column stays NULL; the raw JSON keeps
/// it) is reported to the client's observers (counted and logged per stream and field).
fn page_of<S: StreamSpec, I, E: std::fmt::Display>(
    (client, shop): (&TemuClient, &TemuShop),
    items: &[WithRaw<I>],
    total: Option<i64>,
    convert: impl Fn(&WithRaw<I>) -> Result<S::Record, E>,
) -> Result<Page<S::Record>, SyncError> {
    for item in items {
        let unexpected = unexpected_fields(S::FIELDS, item.raw.get());
        if !unexpected.is_empty() {
            client.note_unexpected_fields(shop, S::STREAM.as_str(), &unexpected);
        }
    }
    let records = items
        .iter()
        .map(|item| convert(item).map_err(|e| SyncError::Record(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let total = total.unwrap_or(records.len() as i64);
    Ok(Page { records, total })
}
