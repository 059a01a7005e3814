//! Live counters of the run in progress, shared by the run task, its heartbeat and `/status`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Progress {
    pages: AtomicU64,
    records_seen: AtomicU64,
    inserted: AtomicU64,
    updated: AtomicU64,
    chunks_done: AtomicU64,
    chunks_total: AtomicU64,
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProgressSnapshot {
    pub pages: u64,
    pub records_seen: u64,
    pub inserted: u64,
    pub updated: u64,
    pub chunks_done: u64,
    pub chunks_total: u64,
}

impl Progress {
    pub fn page_done(&self, records: usize) {
        self.pages.fetch_add(1, Ordering::Relaxed);
        self.records_seen
            .fetch_add(records as u64, Ordering::Relaxed);
    }

    pub fn stored(&self, inserted: u64, updated: u64) {
        self.inserted.fetch_add(inserted, Ordering::Relaxed);
        self.updated.fetch_add(updated, Ordering::Relaxed);
    }

    pub fn set_chunks(&self, total: u64) {
        self.chunks_total.store(total, Ordering::Relaxed);
    }

    pub fn add_chunks(&self, more: u64) {
        self.chunks_total.fetch_add(more, Ordering::Relaxed);
    }

    pub fn chunk_done(&self) {
        self.chunks_done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            pages: self.pages.load(Ordering::Relaxed),
            records_seen: self.records_seen.load(Ordering::Relaxed),
            inserted: self.inserted.load(Ordering::Relaxed),
            updated: self.updated.load(Ordering::Relaxed),
            chunks_done: self.chunks_done.load(Ordering::Relaxed),
            chunks_total: self.chunks_total.load(Ordering::Relaxed),
        }
    }
}

impl ProgressSnapshot {
    /// Fraction of chunks done, for the ETA; `None` when unknown (products, or not started).
    pub fn fraction(&self) -> Option<f64> {
        (self.chunks_total > 0).then(|| self.chunks_done as f64 / self.chunks_total as f64)
    }
}
