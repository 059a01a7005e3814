//! The body of an update-time stream: its window walked chunk by chunk, each chunk upserted in
//! batches, the cursor advanced in the same transaction as the chunk's last batch (invariant 1).
//!
//! Chunks are walked ahead, several at once, while earlier ones are stored: all walks of the run
//! share one [`PageSlots`] of `sync.page_concurrency` pages in flight, and the number of chunks
//! walked ahead is sized so their pages about fill it (`⌈page_concurrency ÷ pages of the last
//! chunk⌉`, at least 2, at most `page_concurrency`) — many small chunks at once, or one big one
//! whose pages are fetched concurrently. Chunks are still stored, and the cursor advanced,
//! strictly one after the other, oldest first. A chunk whose walk drifted is stored anyway (its
//! rows commit; upserts are idempotent and never move a row back in time) but does not move the
//! cursor; it is narrowed into halves walked next, before the chunks already walked ahead — so the
//! cursor never passes a chunk that was not stored completely.
//!
//! Memory: at most `A + 1` walked chunks are held (A walked ahead, one being stored), A ≤
//! `page_concurrency`; with chunks of p pages about `(page_concurrency + 3p) × 100` records.
//!
//! Must not: talk SQL itself (the upserts are the stream's, the cursor is `store`'s).

use std::collections::VecDeque;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};

use super::batches::upsert_batches;
use crate::store;
use crate::sync::run::Work;
use crate::sync::streams::StreamSpec;
use crate::sync::walk::{walk, PageSlots, Walked};
use crate::sync::window::{chunks, Window};
use crate::sync::SyncError;

/// The smallest window a drifting chunk is narrowed to.
const MIN_CHUNK: chrono::Duration = chrono::Duration::minutes(1);

enum ChunkStored {
    Done,
    /// Stored what was read, but the walk was not complete: the cursor did not move.
    Drifted,
}

type Walking<'a, R> = BoxFuture<'a, (Window, Result<Walked<R>, SyncError>)>;
type WalkedChunk<S> = (Window, Result<Walked<<S as StreamSpec>::Record>, SyncError>);

/// What a walk needs of the run (not its cursor, which only the storing side moves).
#[derive(Clone, Copy)]
struct Reader<'a> {
    ctx: &'a crate::sync::run::RunContext,
    cancel: &'a tokio_util::sync::CancellationToken,
    progress: &'a crate::sync::progress::Progress,
}

/// The chunks walked ahead of the one being stored, in window order.
struct Ahead<'a, S: StreamSpec> {
    reader: Reader<'a>,
    slots: &'a PageSlots,
    /// Chunks not yet started.
    queue: VecDeque<Window>,
    walks: FuturesOrdered<Walking<'a, S::Record>>,
    /// Pages one walk of the last stored chunk took: how many chunks fill the slots.
    pages_per_chunk: usize,
}

impl<'a, S: StreamSpec> Ahead<'a, S> {
    fn limit(&self) -> usize {
        let slots = self.slots.size();
        slots
            .div_ceil(self.pages_per_chunk.max(1))
            .clamp(2, slots.max(2))
    }

    fn start(&self, chunk: Window) -> Walking<'a, S::Record> {
        let (reader, slots) = (self.reader, self.slots);
        Box::pin(async move { (chunk, walk_chunk::<S>(reader, chunk, slots).await) })
    }

    /// Starts walks until `held` (results waiting to be stored) plus the running walks reach
    /// the limit.
    fn top_up(&mut self, held: usize) {
        while held + self.walks.len() < self.limit() {
            let Some(chunk) = self.queue.pop_front() else {
                return;
            };
            let walking = self.start(chunk);
            self.walks.push_back(walking);
        }
    }

    /// Walks `first` and `second` next, before everything walked ahead; `ready` (results already
    /// taken out of the walks, in order) go back in front of the running walks, after the halves.
    fn narrow(&mut self, (first, second): (Window, Window), ready: &mut VecDeque<WalkedChunk<S>>) {
        while let Some((chunk, walked)) = ready.pop_back() {
            self.walks
                .push_front(Box::pin(async move { (chunk, walked) }));
        }
        let second = self.start(second);
        self.walks.push_front(second);
        let first = self.start(first);
        self.walks.push_front(first);
    }
}

/// Walks `window` of stream `S` chunk by chunk, oldest first.
pub async fn walk_chunks<S: StreamSpec>(work: Work<'_>, window: Window) -> Result<(), SyncError> {
    let slots = PageSlots::new(
        work.ctx
            .config
            .page_concurrency_for(work.ctx.shop.app_qps()),
    );
    let queue: VecDeque<Window> = chunks(window, work.ctx.config.chunk).into();
    work.progress.set_chunks(queue.len() as u64);
    let reader = Reader {
        ctx: work.ctx,
        cancel: work.cancel,
        progress: work.progress,
    };
    let mut ahead = Ahead::<S> {
        reader,
        slots: &slots,
        queue,
        walks: FuturesOrdered::new(),
        pages_per_chunk: slots.size(),
    };
    let mut ready: VecDeque<WalkedChunk<S>> = VecDeque::new();
    loop {
        ahead.top_up(ready.len());
        let next = match ready.pop_front() {
            Some(r) => Some(r),
            None => ahead.walks.next().await,
        };
        let Some((chunk, walked)) = next else {
            return Ok(());
        };
        let walked = walked?;
        ahead.pages_per_chunk = (walked.pages / (walked.rewalks + 1)) as usize;
        let stored = store_meanwhile::<S>(&work, chunk, walked, &mut ahead, &mut ready).await;
        match stored? {
            ChunkStored::Done => {
                *work.cursor = Some(work.cursor.map_or(chunk.end, |c| c.max(chunk.end)));
                work.progress.chunk_done();
            }
            ChunkStored::Drifted if chunk.len() > MIN_CHUNK => {
                tracing::info!(shop = %work.ctx.shop.name(), stream = work.ctx.stream.as_str(),
                    from = %chunk.start, to = %chunk.end, "listing kept changing; narrowing the chunk");
                ahead.narrow(chunk.halves(), &mut ready);
                work.progress.add_chunks(1);
            }
            ChunkStored::Drifted => {
                return Err(SyncError::Record(format!(
                    "the listing for {}..{} kept changing during every walk; will retry",
                    chunk.start, chunk.end
                )))
            }
        }
    }
}

/// Stores `chunk` while the walks ahead go on; results they finish meanwhile wait in `ready`.
async fn store_meanwhile<S: StreamSpec>(
    work: &Work<'_>,
    chunk: Window,
    walked: Walked<S::Record>,
    ahead: &mut Ahead<'_, S>,
    ready: &mut VecDeque<WalkedChunk<S>>,
) -> Result<ChunkStored, SyncError> {
    let store = store_chunk::<S>(work, chunk, walked);
    tokio::pin!(store);
    loop {
        tokio::select! {
            stored = &mut store => return stored,
            Some(r) = ahead.walks.next(), if !ahead.walks.is_empty() => ready.push_back(r),
        }
    }
}

async fn walk_chunk<S: StreamSpec>(
    reader: Reader<'_>,
    chunk: Window,
    slots: &PageSlots,
) -> Result<Walked<S::Record>, SyncError> {
    let (client, shop) = (&reader.ctx.client, &reader.ctx.shop);
    walk(
        |page| S::fetch(client, shop, Some(chunk), page),
        reader.cancel,
        reader.progress,
        slots,
    )
    .await
}
/// Upserts a walked chunk in batches; the last batch and the cursor share one transaction.
async fn store_chunk<S: StreamSpec>(
    work: &Work<'_>,
    chunk: Window,
    walked: Walked<S::Record>,
) -> Result<ChunkStored, SyncError> {
    let ctx = work.ctx;
    let (shop_id, run_id) = (work.shop_id, work.run_id);
    let complete = walked.complete;
    // All batches but the last commit on their own.
    let records = upsert_batches::<S>(work, walked.records, true).await?;
    let (owner, stream) = (ctx.ledger.owner().to_string(), ctx.stream.as_str());
    let counts = ctx
        .db
        .transaction("upsert-last-batch-and-cursor", ctx.db_deadline, move |c| {
            Box::pin(async move {
                let counts = if records.is_empty() {
                    store::Upserted::default()
                } else {
                    S::upsert(c, shop_id, run_id, records).await?
                };
                if complete {
                    store::advance_cursor(c, shop_id, stream, &owner, chunk.end).await?;
                }
                Ok::<_, SyncError>(counts)
            })
        })
        .await?;
    work.progress.stored(counts.inserted, counts.updated);
    Ok(if complete {
        ChunkStored::Done
    } else {
        ChunkStored::Drifted
    })
}
