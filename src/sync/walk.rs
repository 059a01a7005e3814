//! Walking every page of one listing, and noticing when the listing moved under the walk.
//!
//! Offset paging over live data drifts: a record updated during the walk leaves its place, the
//! records behind it move up a page, and a naive walk skips one. So a walk collects records by
//! their natural key, and a walk counts as complete only when the listing's total stayed the same
//! on every page and the walk itself saw that many distinct records (a record that left the window
//! mid-walk lowers the total and is caught by the first condition; one skipped by a shift, by the
//! second). Otherwise it walks again — the union of walks only grows — up to [`MAX_REWALKS`] times.
//! A listing that still will not hold still is reported incomplete, and the caller narrows the
//! window (a listing that fits on one page is read atomically).
//!
//! Pages are fetched concurrently: the first page of a walk tells the total, then pages
//! `2..=⌈total ÷ 100⌉` are fetched at once, each holding one permit of the caller's [`PageSlots`]
//! (`sync.page_concurrency`) while it is in flight. The drift checks are the same as for a page-by-
//! page walk: every page's total is compared with the first page's, and the distinct records of the
//! walk must reach it. A fetch still waits for its app's rate limiter (the Temu client gates every
//! call), so concurrency only fills the budget a single walk left idle, never exceeds it. Records
//! are merged in page order, so "the later-fetched version wins" still means "the later page".
//!
//! Must not: write to the database — it only reads the API and returns records.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use super::SyncError;

/// Records per page (the API's maximum).
pub const PAGE_SIZE: u32 = 100;
/// Extra walks of a listing whose count came up short.
pub const MAX_REWALKS: u32 = 3;
/// A listing longer than this many pages is refused rather than walked forever.
const MAX_PAGES: u32 = 100_000;

/// The pages one run may have in flight at once (`sync.page_concurrency`), shared by every walk of
/// the run (the chunks walked ahead and the pages of each). Permits are handed out first come,
/// first served (tokio's semaphore is fair).
pub struct PageSlots {
    permits: Semaphore,
    size: usize,
}

impl PageSlots {
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        Self {
            permits: Semaphore::new(size),
            size,
        }
    }

    /// How many pages may be in flight at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `fetch` holding one permit.
    async fn run<T>(
        &self,
        fetch: impl Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SyncError::Cancelled("stopping"))?;
        fetch.await
    }
}

/// One page as the API returned it.
pub struct Page<R> {
    pub records: Vec<R>,
    /// The listing's total (`totalItemNum` / `total`) at the time of this page.
    pub total: i64,
}

impl<R> Page<R> {
    /// The API answered `result: null`: an empty listing.
    pub fn empty() -> Self {
        Self {
            records: Vec::new(),
            total: 0,
        }
    }
}

/// The outcome of walking a listing.
pub struct Walked<R> {
    /// Distinct records, the newest version of each.
    pub records: Vec<R>,
    pub pages: u32,
    pub rewalks: u32,
    /// True when the distinct records seen reached the listing's total.
    pub complete: bool,
}

/// How to tell records apart and which version is newer.
pub trait Keyed {
    fn key(&self) -> &str;
    /// `None` for records without an update time (products): the later-fetched one wins.
    fn updated_at(&self) -> Option<DateTime<Utc>>;
}

/// Walks all pages of a listing, re-walking while the distinct count is below the total.
///
/// `fetch(page_number)` gets one page (1-based); at most `slots.size()` pages are in flight at
/// once (and fewer when other walks of the run hold slots). Cancellation is checked between pages.
pub async fn walk<R, F, Fut>(
    mut fetch: F,
    cancel: &CancellationToken,
    progress: &Progress,
    slots: &PageSlots,
) -> Result<Walked<R>, SyncError>
where
    R: Keyed,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Page<R>, SyncError>>,
{
    let mut seen: HashMap<String, R> = HashMap::new();
    let mut pages = 0u32;
    let mut rewalks = 0u32;
    loop {
        let pass = walk_once(&mut fetch, cancel, progress, slots, &mut seen).await?;
        pages += pass.pages;
        let complete = !pass.total_changed && pass.this_walk.len() as i64 >= pass.total;
        if complete || rewalks >= MAX_REWALKS {
            return Ok(Walked {
                records: seen.into_values().collect(),
                pages,
                rewalks,
                complete,
            });
        }
        rewalks += 1;
        tracing::debug!(
            seen = seen.len(),
            total = pass.total,
            rewalks,
            "listing moved during the walk; walking it again"
        );
    }
}

/// What one pass over the listing saw.
struct Pass {
    pages: u32,
    /// The total the first page reported.
    total: i64,
    /// A later page reported another total.
    total_changed: bool,
    /// The distinct keys of this pass.
    this_walk: HashSet<String>,
}

impl Pass {
    fn take<R: Keyed>(
        &mut self,
        page: Page<R>,
        seen: &mut HashMap<String, R>,
        progress: &Progress,
    ) {
        self.pages += 1;
        progress.page_done(page.records.len());
        if page.total != self.total {
            self.total_changed = true;
        }
        for record in page.records {
            self.this_walk.insert(record.key().to_string());
            merge(seen, record);
        }
    }
}

/// One pass: page 1, then every further page the first one's total names, concurrently.
async fn walk_once<R, F, Fut>(
    fetch: &mut F,
    cancel: &CancellationToken,
    progress: &Progress,
    slots: &PageSlots,
    seen: &mut HashMap<String, R>,
) -> Result<Pass, SyncError>
where
    R: Keyed,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Page<R>, SyncError>>,
{
    if cancel.is_cancelled() {
        return Err(SyncError::Cancelled("stopping"));
    }
    let first = slots.run(fetch(1)).await?;
    let full = first.records.len() >= PAGE_SIZE as usize;
    let mut pass = Pass {
        pages: 0,
        total: first.total,
        total_changed: false,
        this_walk: HashSet::new(),
    };
    pass.take(first, seen, progress);
    if !full || pass.total <= i64::from(PAGE_SIZE) {
        return Ok(pass);
    }
    let last = last_page(pass.total)?;
    let mut rest = stream::iter(2..=last)
        .map(|page| slots.run(fetch(page)))
        .buffered(slots.size());
    loop {
        let page = tokio::select! {
            page = rest.next() => page,
            _ = cancel.cancelled() => return Err(SyncError::Cancelled("stopping")),
        };
        match page {
            Some(page) => pass.take(page?, seen, progress),
            None => return Ok(pass),
        }
    }
}

/// The last page of a listing of `total` records.
fn last_page(total: i64) -> Result<u32, SyncError> {
    let pages = (total + i64::from(PAGE_SIZE) - 1) / i64::from(PAGE_SIZE);
    u32::try_from(pages)
        .ok()
        .filter(|p| *p <= MAX_PAGES)
        .ok_or_else(|| {
            SyncError::Record(format!(
                "listing of {total} records is longer than {MAX_PAGES} pages"
            ))
        })
}

fn merge<R: Keyed>(seen: &mut HashMap<String, R>, record: R) {
    match seen.get(record.key()) {
        Some(existing) => {
            let newer = match (record.updated_at(), existing.updated_at()) {
                (Some(new), Some(old)) => new >= old,
                _ => true,
            };
            if newer {
                seen.insert(record.key().to_string(), record);
            }
        }
        None => {
            seen.insert(record.key().to_string(), record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[derive(Clone, Debug)]
    struct Rec {
        key: String,
        at: i64,
    }

    impl Keyed for Rec {
        fn key(&self) -> &str {
            &self.key
        }
        fn updated_at(&self) -> Option<DateTime<Utc>> {
            DateTime::from_timestamp(self.at, 0)
        }
    }

    /// A listing sorted newest first, served by offset; `mutate` runs before each page is cut.
    fn serve(list: &Mutex<Vec<Rec>>, page: u32) -> Page<Rec> {
        let mut items = list.lock().unwrap().clone();
        items.sort_by_key(|r| std::cmp::Reverse(r.at));
        let total = items.len() as i64;
        let records = items
            .into_iter()
            .skip(((page - 1) * PAGE_SIZE) as usize)
            .take(PAGE_SIZE as usize)
            .collect();
        Page { records, total }
    }

    #[tokio::test]
    async fn a_still_listing_is_walked_once() {
        let list = Mutex::new(
            (0..250)
                .map(|i| Rec {
                    key: format!("o{i}"),
                    at: i,
                })
                .collect(),
        );
        let walked = walk(
            |p| {
                let page = serve(&list, p);
                async move { Ok(page) }
            },
            &CancellationToken::new(),
            &Progress::default(),
            &PageSlots::new(4),
        )
        .await
        .unwrap();
        assert_eq!(walked.records.len(), 250);
        assert_eq!(walked.pages, 3);
        assert_eq!(walked.rewalks, 0);
        assert!(walked.complete);
    }

    #[tokio::test]
    async fn a_record_leaving_mid_walk_triggers_a_rewalk_and_nothing_is_skipped() {
        // 250 records in the window; after page 1 is served, the newest record is updated out of
        // the window, so every later record moves up one place and a naive walk skips one.
        let list = Mutex::new(
            (0..250)
                .map(|i| Rec {
                    key: format!("o{i}"),
                    at: i,
                })
                .collect::<Vec<_>>(),
        );
        let moved = Mutex::new(false);
        let walked = walk(
            |p| {
                let page = serve(&list, p);
                if p == 1 && !*moved.lock().unwrap() {
                    *moved.lock().unwrap() = true;
                    // o249 leaves the window (its new version is outside the interval).
                    list.lock().unwrap().retain(|r| r.key != "o249");
                }
                async move { Ok(page) }
            },
            &CancellationToken::new(),
            &Progress::default(),
            &PageSlots::new(4),
        )
        .await
        .unwrap();
        let mut keys: Vec<_> = walked.records.iter().map(|r| r.key.clone()).collect();
        keys.sort();
        keys.dedup();
        // All 249 records still in the window, plus the one that left (seen on page 1).
        assert_eq!(keys.len(), 250, "a record was skipped");
        assert_eq!(walked.rewalks, 1, "the shifted walk is noticed");
        assert!(walked.complete);
    }

    #[tokio::test]
    async fn a_listing_that_never_holds_still_is_reported_incomplete() {
        let list = Mutex::new(
            (0..300)
                .map(|i| Rec {
                    key: format!("o{i}"),
                    at: i,
                })
                .collect::<Vec<_>>(),
        );
        let next = Mutex::new(299);
        let walked = walk(
            |p| {
                let page = serve(&list, p);
                // Every page served, the newest record leaves the window.
                let mut n = next.lock().unwrap();
                let gone = format!("o{}", *n);
                *n -= 1;
                list.lock().unwrap().retain(|r| r.key != gone);
                async move { Ok(page) }
            },
            &CancellationToken::new(),
            &Progress::default(),
            &PageSlots::new(4),
        )
        .await
        .unwrap();
        assert!(!walked.complete);
        assert_eq!(walked.rewalks, MAX_REWALKS);
    }

    fn listing(n: i64) -> Mutex<Vec<Rec>> {
        Mutex::new(
            (0..n)
                .map(|i| Rec {
                    key: format!("o{i}"),
                    at: i,
                })
                .collect(),
        )
    }

    /// Counts the pages in flight and remembers the most at once.
    #[derive(Default)]
    struct InFlight {
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    impl InFlight {
        async fn hold<T>(&self, value: T) -> T {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(n, Ordering::SeqCst);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            self.now.fetch_sub(1, Ordering::SeqCst);
            value
        }
    }

    #[tokio::test]
    async fn pages_are_fetched_concurrently_but_never_more_than_the_slots() {
        let list = listing(2000);
        let in_flight = InFlight::default();
        let walked = walk(
            |p| {
                let page = serve(&list, p);
                let in_flight = &in_flight;
                async move { Ok(in_flight.hold(page).await) }
            },
            &CancellationToken::new(),
            &Progress::default(),
            &PageSlots::new(4),
        )
        .await
        .unwrap();
        assert_eq!(walked.records.len(), 2000);
        assert_eq!(walked.pages, 20);
        assert!(walked.complete);
        let peak = in_flight.peak.load(Ordering::SeqCst);
        assert!(peak > 1, "pages were fetched one at a time");
        assert!(peak <= 4, "{peak} pages in flight with 4 slots");
    }

    #[tokio::test]
    async fn walks_sharing_slots_stay_within_them_together() {
        let (a, b) = (listing(1000), listing(1000));
        let in_flight = InFlight::default();
        let slots = PageSlots::new(3);
        let (cancel, progress) = (CancellationToken::new(), Progress::default());
        let counted = |list: &Mutex<Vec<Rec>>, p| {
            let page = serve(list, p);
            let in_flight = &in_flight;
            async move { Ok(in_flight.hold(page).await) }
        };
        let (wa, wb) = tokio::join!(
            walk(|p| counted(&a, p), &cancel, &progress, &slots),
            walk(|p| counted(&b, p), &cancel, &progress, &slots)
        );
        assert_eq!(wa.unwrap().records.len() + wb.unwrap().records.len(), 2000);
        let peak = in_flight.peak.load(Ordering::SeqCst);
        assert!(peak <= 3, "{peak} pages in flight with 3 shared slots");
    }

    /// Page `p` of `pages` is cut only after it has waited `pages − p` turns, so concurrent pages
    /// are cut (and finish) in reverse order; `on_cut(p)` runs right after page `p` is cut.
    async fn cut_late(
        list: &Mutex<Vec<Rec>>,
        p: u32,
        pages: u32,
        on_cut: impl FnOnce(u32, &Mutex<Vec<Rec>>),
    ) -> Result<Page<Rec>, SyncError> {
        for _ in 0..pages.saturating_sub(p) {
            tokio::task::yield_now().await;
        }
        let page = serve(list, p);
        on_cut(p, list);
        Ok(page)
    }

    #[tokio::test]
    async fn records_leaving_while_pages_are_in_flight_out_of_order_are_not_lost() {
        // 1000 records, 10 pages. When page 5 is cut, the 3 newest records leave the window:
        // every record behind them moves up 3 places, so pages cut later (4, 3, 2 … in this
        // order) skip some. The walk must notice and end with every record it started with.
        let list = listing(1000);
        let moved = AtomicBool::new(false);
        let walked = walk(
            |p| {
                cut_late(&list, p, 10, |p, list| {
                    if p == 5 && !moved.swap(true, Ordering::SeqCst) {
                        list.lock().unwrap().retain(|r| r.at < 997);
                    }
                })
            },
            &CancellationToken::new(),
            &Progress::default(),
            &PageSlots::new(4),
        )
        .await
        .unwrap();
        assert!(moved.load(Ordering::SeqCst), "the listing never moved");
        let keys: HashSet<_> = walked.records.iter().map(|r| r.key.clone()).collect();
        let missing: Vec<_> = (0..1000)
            .map(|i| format!("o{i}"))
            .filter(|k| !keys.contains(k))
            .collect();
        assert!(missing.is_empty(), "lost {missing:?}");
        assert_eq!(
            walked.rewalks, 1,
            "the shift is noticed and one re-walk settles it"
        );
        assert!(walked.complete);
    }

    #[tokio::test]
    async fn a_record_entering_mid_walk_is_seen_and_nothing_is_lost() {
        // After page 1 is cut, a record newer than all others enters the window: every record
        // moves down one place (pages overlap, none is skipped) and the total grows.
        let list = listing(450);
        let entered = AtomicBool::new(false);
        let walked = walk(
            |p| {
                cut_late(&list, p, 5, |p, list| {
                    if p == 1 && !entered.swap(true, Ordering::SeqCst) {
                        list.lock().unwrap().push(Rec {
                            key: "new".into(),
                            at: 10_000,
                        });
                    }
                })
            },
            &CancellationToken::new(),
            &Progress::default(),
            &PageSlots::new(4),
        )
        .await
        .unwrap();
        assert_eq!(walked.records.len(), 451);
        assert!(walked.records.iter().any(|r| r.key == "new"));
        assert_eq!(walked.rewalks, 1, "the grown total is noticed");
        assert!(walked.complete);
    }

    #[tokio::test]
    async fn newest_version_of_a_record_wins() {
        let mut seen = HashMap::new();
        merge(
            &mut seen,
            Rec {
                key: "a".into(),
                at: 5,
            },
        );
        merge(
            &mut seen,
            Rec {
                key: "a".into(),
                at: 3,
            },
        );
        assert_eq!(seen["a"].at, 5);
        merge(
            &mut seen,
            Rec {
                key: "a".into(),
                at: 9,
            },
        );
        assert_eq!(seen["a"].at, 9);
    }
}
