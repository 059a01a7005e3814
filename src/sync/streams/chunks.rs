//! The body of an update-time stream: its window walked chunk by chunk, each chunk upserted in
//! batches, the cursor advanced in the same transaction as the chunk's last batch (invariant 1).
//!
//! The walk of the next chunk runs while the previous one is stored (the API and PostgreSQL work
//! at the same time); chunks are still stored, and the cursor advanced, strictly one after the
//! other. When a stored chunk drifted, the walk of the chunk after it is thrown away and that chunk
//! walked again after the narrowed halves, so the cursor never passes a chunk that was not stored
//! completely.
//!
//! Must not: talk SQL itself (the upserts are the stream's, the cursor is `store`'s).

use std::collections::VecDeque;

use super::batches::upsert_batches;
use crate::store;
use crate::sync::run::Work;
use crate::sync::streams::StreamSpec;
use crate::sync::walk::{walk, Walked};
use crate::sync::window::{chunks, Window};
use crate::sync::SyncError;

/// The smallest window a drifting chunk is narrowed to.
const MIN_CHUNK: chrono::Duration = chrono::Duration::minutes(1);

enum ChunkStored {
    Done,
    /// Stored what was read, but the walk was not complete: the cursor did not move.
    Drifted,
}

/// Walks `window` of stream `S` chunk by chunk, oldest first.
pub async fn walk_chunks<S: StreamSpec>(work: Work<'_>, window: Window) -> Result<(), SyncError> {
    let mut queue: VecDeque<Window> = chunks(window, work.ctx.config.chunk).into();
    work.progress.set_chunks(queue.len() as u64);
    let mut walked: Option<(Window, Walked<S::Record>)> = None;
    loop {
        let (chunk, records) = match walked.take() {
            Some(w) => w,
            None => match queue.pop_front() {
                None => return Ok(()),
                Some(c) => (c, walk_chunk::<S>(&work, c).await?),
            },
        };
        let (stored, next) = match queue.pop_front() {
            Some(n) => {
                let (stored, next) = tokio::join!(
                    store_chunk::<S>(&work, chunk, records),
                    walk_chunk::<S>(&work, n)
                );
                (stored, Some((n, next)))
            }
            None => (store_chunk::<S>(&work, chunk, records).await, None),
        };
        match stored? {
            ChunkStored::Done => {
                *work.cursor = Some(work.cursor.map_or(chunk.end, |c| c.max(chunk.end)));
                work.progress.chunk_done();
                if let Some((n, next)) = next {
                    walked = Some((n, next?));
                }
            }
            ChunkStored::Drifted if chunk.len() > MIN_CHUNK => {
                let (first, second) = chunk.halves();
                tracing::info!(shop = %work.ctx.shop.name(), stream = work.ctx.stream.as_str(),
                    from = %chunk.start, to = %chunk.end, "listing kept changing; narrowing the chunk");
                if let Some((n, _)) = next {
                    queue.push_front(n);
                }
                queue.push_front(second);
                queue.push_front(first);
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

async fn walk_chunk<S: StreamSpec>(
    work: &Work<'_>,
    chunk: Window,
) -> Result<Walked<S::Record>, SyncError> {
    let (client, shop) = (&work.ctx.client, &work.ctx.shop);
    walk(
        |page| S::fetch(client, shop, &work.ctx.config, Some(chunk), page),
        work.cancel,
        work.progress,
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
