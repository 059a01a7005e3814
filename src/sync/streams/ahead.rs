//! The order in which an update-time window's chunks are walked and stored, apart from the API
//! and the database (so it can be tested with fakes).
//!
//! Chunks are walked ahead, several at once, while an earlier one is stored: the number walked
//! ahead (running, or finished and waiting) is `⌈4 × page_concurrency ÷ pages of the last
//! chunk⌉`, at least 2 and at most `2 × page_concurrency` — many small chunks at once (a chunk's
//! first page is fetched alone, and finished chunks wait behind a slower older one: hence the 4),
//! or a few big ones whose pages the walk fetches concurrently. Pages in flight stay bounded by
//! the run's `page_concurrency` slots either way. Chunks are stored strictly one after the other, oldest
//! first, and only a chunk stored as [`ChunkStored::Done`] counts towards the cursor. A chunk
//! stored as [`ChunkStored::Drifted`] (its rows committed, its walk incomplete) is narrowed into
//! halves walked next, before the chunks already walked ahead, which keep their results — so
//! the cursor never passes a chunk that was not stored completely.
//!
//! Memory: at most `A + 1` walked chunks are held at once (A walked ahead, one being stored),
//! A ≤ max(2, 2 × page_concurrency); with chunks of about p pages, A × p is at most
//! `4 × page_concurrency + p`, so about `(4 × page_concurrency + 2p) × 100` records
//! (page_concurrency 20, p = 12: 10 400 records). Until the first chunk is walked, 8 pages a
//! chunk are assumed (10 chunks at 20 slots).

use std::collections::VecDeque;
use std::future::Future;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};

use crate::sync::progress::Progress;
use crate::sync::walk::Walked;
use crate::sync::window::Window;
use crate::sync::SyncError;

/// Pages per chunk assumed until the first chunk was walked (10 chunks start at once at 20 slots).
const FIRST_GUESS_PAGES: usize = 8;

/// The smallest window a drifting chunk is narrowed to.
const MIN_CHUNK: chrono::Duration = chrono::Duration::minutes(1);

/// How storing a walked chunk went.
pub(super) enum ChunkStored {
    /// Stored completely; the cursor moved to its end in the transaction of its last batch.
    Done,
    /// Stored what was read, but the walk was not complete: the cursor did not move.
    Drifted,
}

/// Names in the log line of a narrowed chunk.
pub(super) struct Label<'a> {
    pub shop: &'a str,
    pub stream: &'a str,
}

type Walking<'a, R> = BoxFuture<'a, (Window, Result<Walked<R>, SyncError>)>;

/// The chunks walked ahead of the one being stored, in window order.
struct Ahead<'a, R, W> {
    walk_one: W,
    slots: usize,
    /// Chunks not yet started.
    queue: VecDeque<Window>,
    walks: FuturesOrdered<Walking<'a, R>>,
    /// Walks that finished while an earlier chunk was being stored, in order.
    ready: VecDeque<(Window, Result<Walked<R>, SyncError>)>,
    /// Pages one walk of the last stored chunk took: how many chunks fill the slots.
    pages_per_chunk: usize,
}

impl<'a, R: Send + 'a, W> Ahead<'a, R, W>
where
    W: Fn(Window) -> BoxFuture<'a, Result<Walked<R>, SyncError>>,
{
    /// Chunks walked ahead: enough that their pages keep the slots busy although each chunk
    /// fetches its first page alone and finished chunks wait behind a slow older one
    /// (`⌈4 × slots ÷ pages per chunk⌉`), at least 2, at most `2 × slots`.
    fn limit(&self) -> usize {
        let most = (2 * self.slots).max(2);
        (4 * self.slots)
            .div_ceil(self.pages_per_chunk.max(1))
            .clamp(2, most)
    }

    fn start(&self, chunk: Window) -> Walking<'a, R> {
        let walking = (self.walk_one)(chunk);
        Box::pin(async move { (chunk, walking.await) })
    }

    /// Starts walks until the running and the waiting ones reach the limit.
    fn top_up(&mut self) {
        while self.ready.len() + self.walks.len() < self.limit() {
            let Some(chunk) = self.queue.pop_front() else {
                return;
            };
            let walking = self.start(chunk);
            self.walks.push_back(walking);
        }
    }

    /// The next chunk in window order, once walked; `None` when every chunk was handed out.
    async fn next(&mut self) -> Option<(Window, Result<Walked<R>, SyncError>)> {
        self.top_up();
        match self.ready.pop_front() {
            Some(walked) => Some(walked),
            None => self.walks.next().await,
        }
    }

    /// Runs `store` while the walks ahead go on; the ones that finish meanwhile wait in `ready`.
    async fn meanwhile<T>(&mut self, store: impl Future<Output = T>) -> T {
        tokio::pin!(store);
        loop {
            tokio::select! {
                stored = &mut store => return stored,
                Some(walked) = self.walks.next(), if !self.walks.is_empty() => {
                    self.ready.push_back(walked);
                }
            }
        }
    }

    /// Walks the halves of `chunk` next, before everything walked ahead (which keeps its
    /// results and its place after them).
    fn narrow(&mut self, chunk: Window) {
        while let Some((c, walked)) = self.ready.pop_back() {
            self.walks.push_front(Box::pin(async move { (c, walked) }));
        }
        let (first, second) = chunk.halves();
        let second = self.start(second);
        self.walks.push_front(second);
        let first = self.start(first);
        self.walks.push_front(first);
    }
}

/// Walks `queue` (consecutive chunks, oldest first) with `walk_one`, at most `slots` chunks
/// ahead, and stores each with `store_one` in window order. `done` is the end of the last chunk
/// stored completely, also when a later one fails.
pub(super) async fn drive<'a, R, W, St, Fs>(
    queue: VecDeque<Window>,
    slots: usize,
    walk_one: W,
    mut store_one: St,
    done: &mut Option<DateTime<Utc>>,
    progress: &Progress,
    label: Label<'_>,
) -> Result<(), SyncError>
where
    R: Send + 'a,
    W: Fn(Window) -> BoxFuture<'a, Result<Walked<R>, SyncError>>,
    St: FnMut(Window, Walked<R>) -> Fs,
    Fs: Future<Output = Result<ChunkStored, SyncError>>,
{
    let mut ahead = Ahead {
        walk_one,
        slots,
        queue,
        walks: FuturesOrdered::new(),
        ready: VecDeque::new(),
        pages_per_chunk: FIRST_GUESS_PAGES,
    };
    while let Some((chunk, walked)) = ahead.next().await {
        let walked = walked?;
        ahead.pages_per_chunk = (walked.pages / (walked.rewalks + 1)) as usize;
        match ahead.meanwhile(store_one(chunk, walked)).await? {
            ChunkStored::Done => {
                *done = Some(chunk.end);
                progress.chunk_done();
            }
            ChunkStored::Drifted if chunk.len() > MIN_CHUNK => {
                tracing::info!(shop = label.shop, stream = label.stream, from = %chunk.start,
                    to = %chunk.end, "listing kept changing; narrowing the chunk");
                ahead.narrow(chunk);
                progress.add_chunks(1);
            }
            ChunkStored::Drifted => {
                return Err(SyncError::Record(format!(
                    "the listing for {}..{} kept changing during every walk; will retry",
                    chunk.start, chunk.end
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use crate::sync::window::chunks;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    /// Chunks walked and not yet stored, and the most at once.
    #[derive(Default)]
    struct Held {
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    /// A fake run: walking a chunk takes a few turns and drifts while the chunk is longer than
    /// `drifts_above` and contains `moving`; storing records the chunk and how it went.
    struct Fake {
        moving: i64,
        drifts_above: chrono::Duration,
        fail_at: Option<i64>,
        held: Held,
        stored: Mutex<Vec<(Window, bool)>>,
    }

    impl Fake {
        fn new(moving: i64) -> Self {
            Self {
                moving,
                drifts_above: chrono::Duration::minutes(30),
                fail_at: None,
                held: Held::default(),
                stored: Mutex::new(Vec::new()),
            }
        }

        fn walk_one(&self, chunk: Window) -> BoxFuture<'_, Result<Walked<()>, SyncError>> {
            let n = self.held.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.held.peak.fetch_max(n, Ordering::SeqCst);
            let drifted = chunk.len() > self.drifts_above
                && (chunk.start_secs()..=chunk.end_secs()).contains(&self.moving);
            let fails = self.fail_at.is_some_and(|t| chunk.start_secs() == t);
            Box::pin(async move {
                for _ in 0..(chunk.start_secs() % 7) {
                    tokio::task::yield_now().await;
                }
                if fails {
                    return Err(SyncError::Record("walk failed".into()));
                }
                Ok(Walked {
                    records: Vec::new(),
                    pages: 1,
                    rewalks: 0,
                    complete: !drifted,
                })
            })
        }

        async fn store_one(
            &self,
            chunk: Window,
            walked: Walked<()>,
        ) -> Result<ChunkStored, SyncError> {
            tokio::task::yield_now().await;
            self.stored.lock().unwrap().push((chunk, walked.complete));
            self.held.now.fetch_sub(1, Ordering::SeqCst);
            Ok(if walked.complete {
                ChunkStored::Done
            } else {
                ChunkStored::Drifted
            })
        }

        async fn run(
            &self,
            window: Window,
            slots: usize,
        ) -> (Result<(), SyncError>, Option<DateTime<Utc>>) {
            let queue = chunks(window, Duration::from_secs(3600)).into();
            let mut done = None;
            let label = Label {
                shop: "s",
                stream: "orders",
            };
            let result = drive(
                queue,
                slots,
                |c| self.walk_one(c),
                |c, w| self.store_one(c, w),
                &mut done,
                &Progress::default(),
                label,
            )
            .await;
            (result, done)
        }
    }

    #[tokio::test]
    async fn chunks_are_stored_in_order_and_a_drifted_one_is_narrowed_before_the_rest() {
        let window = Window {
            start: at(0),
            end: at(6 * 3600 - 1),
        };
        let fake = Fake::new(5000);
        let (result, done) = fake.run(window, 4).await;
        result.unwrap();
        assert_eq!(done, Some(window.end));
        let stored = fake.stored.lock().unwrap().clone();
        // The drifted chunk [3600, 7199] is stored (its rows commit) without moving the cursor,
        // then its halves, then the chunks walked ahead of them, in order.
        let drifted: Vec<_> = stored.iter().filter(|(_, ok)| !ok).collect();
        assert_eq!(drifted.len(), 1);
        assert_eq!(drifted[0].0.start, at(3600));
        // The complete chunks tile the window in order: each starts one second after the last.
        let mut next = window.start;
        for (chunk, _) in stored.iter().filter(|(_, ok)| *ok) {
            assert_eq!(chunk.start, next, "stored out of order: {stored:?}");
            next = chunk.end + chrono::Duration::seconds(1);
        }
        assert_eq!(next, window.end + chrono::Duration::seconds(1));
    }

    #[tokio::test]
    async fn at_most_the_limit_plus_one_chunks_are_held() {
        let window = Window {
            start: at(0),
            end: at(48 * 3600 - 1),
        };
        let fake = Fake::new(-1);
        let (result, _) = fake.run(window, 4).await;
        result.unwrap();
        let peak = fake.held.peak.load(Ordering::SeqCst);
        assert!(peak > 1, "chunks were walked one at a time");
        assert!(
            peak <= 2 * 4 + 1,
            "{peak} chunks held with 4 slots of 1-page chunks"
        );
    }

    #[tokio::test]
    async fn a_failing_walk_leaves_the_cursor_after_the_chunks_before_it() {
        let window = Window {
            start: at(0),
            end: at(10 * 3600 - 1),
        };
        let mut fake = Fake::new(-1);
        fake.fail_at = Some(4 * 3600);
        let (result, done) = fake.run(window, 8).await;
        assert!(result.is_err());
        assert_eq!(
            done,
            Some(at(4 * 3600 - 1)),
            "the cursor stops before the failed chunk"
        );
        let stored = fake.stored.lock().unwrap();
        assert!(
            stored.iter().all(|(c, _)| c.end < at(4 * 3600)),
            "a later chunk was stored"
        );
    }
}
