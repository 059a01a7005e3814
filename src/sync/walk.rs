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
//! Must not: write to the database — it only reads the API and returns records.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use super::SyncError;

/// Records per page (the API's maximum).
pub const PAGE_SIZE: u32 = 100;
/// Extra walks of a listing whose count came up short.
pub const MAX_REWALKS: u32 = 3;
/// A listing longer than this many pages is refused rather than walked forever.
const MAX_PAGES: u32 = 100_000;

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
/// `fetch(page_number)` gets one page (1-based). Cancellation is checked between pages.
pub async fn walk<R, F, Fut>(
    mut fetch: F,
    cancel: &CancellationToken,
    progress: &Progress,
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
        let mut page_no = 1u32;
        let mut this_walk: HashSet<String> = HashSet::new();
        let mut first_total: Option<i64> = None;
        let mut total_changed = false;
        let total = loop {
            if cancel.is_cancelled() {
                return Err(SyncError::Cancelled("stopping"));
            }
            let page = fetch(page_no).await?;
            pages += 1;
            progress.page_done(page.records.len());
            let got = page.records.len();
            match first_total {
                None => first_total = Some(page.total),
                Some(t) if t != page.total => total_changed = true,
                Some(_) => {}
            }
            for record in page.records {
                this_walk.insert(record.key().to_string());
                merge(&mut seen, record);
            }
            let reached_end =
                got < PAGE_SIZE as usize || i64::from(page_no) * i64::from(PAGE_SIZE) >= page.total;
            if reached_end {
                break page.total;
            }
            page_no += 1;
            if page_no > MAX_PAGES {
                return Err(SyncError::Record(format!(
                    "listing did not end after {MAX_PAGES} pages"
                )));
            }
        };
        let complete = !total_changed && this_walk.len() as i64 >= total;
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
            total,
            rewalks,
            "listing moved during the walk; walking it again"
        );
    }
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
        )
        .await
        .unwrap();
        assert!(!walked.complete);
        assert_eq!(walked.rewalks, MAX_REWALKS);
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
