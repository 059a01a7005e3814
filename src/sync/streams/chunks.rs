//! The body of an update-time stream: its window walked chunk by chunk, each chunk upserted in
//! batches, the cursor advanced in the same transaction as the chunk's last batch (invariant 1).
//!
//! All walks of a run share one [`PageSlots`] of `sync.page_concurrency` pages in flight: the
//! pages of a chunk after its first, and the chunks walked ahead while an earlier one is stored
//! (the order and the memory bound are `ahead.rs`'s). A chunk whose walk drifted is stored anyway
//! — its rows commit before the chunk completes; upserts are idempotent and never move a row back
//! in time — but does not move the cursor.
//!
//! Must not: talk SQL itself (the upserts are the stream's, the cursor is `store`'s).

use std::collections::VecDeque;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::ahead::{drive, ChunkStored, Label};
use super::batches::upsert_batches;
use crate::store;
use crate::sync::progress::Progress;
use crate::sync::run::{RunContext, Work};
use crate::sync::streams::StreamSpec;
use crate::sync::walk::{walk, PageSlots, Walked};
use crate::sync::window::{chunks, Window};
use crate::sync::SyncError;

/// Walks `window` of stream `S` chunk by chunk, oldest first.
pub async fn walk_chunks<S: StreamSpec>(work: Work<'_>, window: Window) -> Result<(), SyncError> {
    let ctx = work.ctx;
    let slots = PageSlots::new(ctx.config.page_concurrency_for(ctx.shop.app_qps()));
    let queue: VecDeque<Window> = chunks(window, ctx.config.chunk).into();
    work.progress.set_chunks(queue.len() as u64);
    let (cancel, progress, pages) = (work.cancel, work.progress, &slots);
    let walk_one = move |chunk| walk_chunk::<S>(ctx, cancel, progress, chunk, pages);
    let label = Label {
        shop: ctx.shop.name(),
        stream: ctx.stream.as_str(),
    };
    let mut done = None;
    let store_one = |chunk, walked| store_chunk::<S>(&work, chunk, walked);
    let result = drive(
        queue,
        slots.size(),
        walk_one,
        store_one,
        &mut done,
        progress,
        label,
    )
    .await;
    if let Some(end) = done {
        *work.cursor = Some(work.cursor.map_or(end, |c| c.max(end)));
    }
    result
}

fn walk_chunk<'a, S: StreamSpec>(
    ctx: &'a RunContext,
    cancel: &'a CancellationToken,
    progress: &'a Progress,
    chunk: Window,
    slots: &'a PageSlots,
) -> BoxFuture<'a, Result<Walked<S::Record>, SyncError>> {
    let (client, shop) = (&ctx.client, &ctx.shop);
    Box::pin(walk(
        move |page| S::fetch(client, shop, &ctx.config, Some(chunk), page),
        cancel,
        progress,
        slots,
    ))
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
