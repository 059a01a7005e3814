//! Re-walking chosen windows of an update-time stream without touching its cursor: the body of
//! `temu-sync backfill`, `POST /sync/{shop}/{stream}/backfill` and `audit --repair`.
//!
//! A [`Rewalk`] is a [`RunBody`], so it runs inside the ordinary run protocol (`sync::run`):
//! the lease in PostgreSQL, the run record, the heartbeat, `task_timeout`, cancellation. It
//! reports itself as a [`WindowKind::FullSweep`] to the protocol so that no cursor window is
//! planned for it, then walks its own windows with the stream's table entry (`S::fetch`, the
//! drift-aware `walk`, `S::upsert`), chunk by chunk (`sync.chunk`), narrowing a chunk that keeps
//! moving. It never calls `advance_cursor`: the stream's cursor stays where the sync left it.
//! The full-sweep stream (products) needs no such body: its own sweep has no cursor.
//!
//! Must not: move the cursor, or settle what it did not see.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::config::{Stream, SyncConfig};
use crate::sync::run::{RunBody, Work};
use crate::sync::streams::batches::upsert_batches;
use crate::sync::streams::{self, Aftersales, Orders, StreamSpec, WindowKind};
use crate::sync::walk::{walk, PageSlots};
use crate::sync::window::{chunks, Window};
use crate::sync::SyncError;

/// The smallest window a drifting chunk is narrowed to.
const MIN_CHUNK: chrono::Duration = chrono::Duration::minutes(1);

/// The body that re-reads `windows` of `stream` (update-time streams), or the stream's own body
/// (a full sweep: products).
pub fn rewalk_body(stream: Stream, windows: Vec<Window>) -> Arc<dyn RunBody> {
    match streams::window_kind(stream) {
        WindowKind::FullSweep => streams::body(stream),
        WindowKind::UpdateTime => match stream {
            Stream::Orders => Arc::new(Rewalk::<Orders>::new(windows)),
            Stream::Aftersales => Arc::new(Rewalk::<Aftersales>::new(windows)),
            // Not an update-time stream; answered above.
            Stream::Products => streams::body(stream),
        },
    }
}

/// Re-reads `windows` of stream `S` and upserts what it finds.
pub struct Rewalk<S> {
    windows: Vec<Window>,
    stream: PhantomData<S>,
}

impl<S> Rewalk<S> {
    pub fn new(windows: Vec<Window>) -> Self {
        Self {
            windows,
            stream: PhantomData,
        }
    }
}

impl<S: StreamSpec> RunBody for Rewalk<S> {
    /// No cursor window is planned for a re-walk (it brings its own windows).
    fn window_kind(&self) -> WindowKind {
        WindowKind::FullSweep
    }

    fn interval(&self, config: &SyncConfig) -> Duration {
        S::interval(config)
    }

    fn sync<'a>(&'a self, work: Work<'a>) -> BoxFuture<'a, Result<(), SyncError>> {
        Box::pin(async move {
            let mut queue: VecDeque<Window> = self
                .windows
                .iter()
                .flat_map(|w| chunks(*w, work.ctx.config.chunk))
                .collect();
            work.progress.set_chunks(queue.len() as u64);
            while let Some(chunk) = queue.pop_front() {
                if rewalk_chunk::<S>(&work, chunk).await? {
                    work.progress.chunk_done();
                } else if chunk.len() > MIN_CHUNK {
                    let (first, second) = chunk.halves();
                    queue.push_front(second);
                    queue.push_front(first);
                    work.progress.add_chunks(1);
                } else {
                    return Err(SyncError::Record(format!(
                        "the listing for {}..{} kept changing during every walk; run it again",
                        chunk.start, chunk.end
                    )));
                }
            }
            Ok(())
        })
    }
}

/// Walks one chunk and stores every record seen, batch by batch; `false` when the listing moved
/// during every walk (what was seen is stored all the same).
async fn rewalk_chunk<S: StreamSpec>(work: &Work<'_>, chunk: Window) -> Result<bool, SyncError> {
    let ctx = work.ctx;
    let slots = PageSlots::new(ctx.config.page_concurrency_for(ctx.shop.app_qps()));
    let walked = walk(
        |page| S::fetch(&ctx.client, &ctx.shop, &ctx.config, Some(chunk), page),
        work.cancel,
        work.progress,
        &slots,
    )
    .await?;
    let complete = walked.complete;
    upsert_batches::<S>(work, walked.records, false).await?;
    Ok(complete)
}
