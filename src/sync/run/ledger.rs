//! Where a run records itself: the shop row, the lease, the run record and its outcome.
//!
//! Owns: [`RunLedger`], the small interface between the run protocol and its bookkeeping (the
//! park lives here too, in `sync_state`, so it survives a restart), and
//! [`PgLedger`], its PostgreSQL implementation — each call one short transaction with a deadline
//! through [`Database::transaction`] (invariant 5). The scheduler's tests give the run an
//! in-memory ledger (the test kit's), so the protocol runs on paused time; the real-database proof
//! of leases stays in the store and sync integration tests.
//!
//! Must not: decide policy (when to retry, park or give up: that is `actor.rs`).

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::super::progress::ProgressSnapshot;
use super::super::window::Window;
use super::super::SyncError;
use crate::config::Stream;
use crate::db::Database;
use crate::store::{self, Lease, RunStatus};

/// How a run ended, as its record keeps it.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub status: RunStatus,
    /// `None` on success.
    pub class: Option<&'static str>,
    pub message: Option<String>,
    /// The failure needs the operator: the stream is parked with this text (a [`super::Park`]
    /// as stored: the reason and its tag).
    pub park: Option<String>,
    pub progress: ProgressSnapshot,
}

/// The bookkeeping of runs of one daemon (`owner` is its instance id).
pub trait RunLedger: Send + Sync + 'static {
    /// This daemon's instance id: the lease owner and the run's `instance_id`.
    fn owner(&self) -> &str;

    /// The shop's id (its row created on first use), recording its mall id when known.
    fn ensure_shop<'a>(
        &'a self,
        shop: &'a str,
        region: &'static str,
        mall_id: Option<String>,
    ) -> BoxFuture<'a, Result<i64, SyncError>>;

    /// Takes the lease of (shop, stream) for `ttl`; `None` while another live owner holds it. A
    /// lease taken over from a dead owner marks that owner's unfinished runs `abandoned`.
    fn take_lease(
        &self,
        shop_id: i64,
        stream: Stream,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Option<Lease>, SyncError>>;

    /// Records the start of a run over `window`; returns the run's id.
    fn start_run(
        &self,
        shop_id: i64,
        stream: Stream,
        window: Option<Window>,
    ) -> BoxFuture<'_, Result<i64, SyncError>>;

    /// Renews the lease and writes the run's progress; `false` when the lease was lost.
    fn heartbeat(
        &self,
        shop_id: i64,
        stream: Stream,
        run_id: i64,
        ttl: Duration,
        progress: ProgressSnapshot,
    ) -> BoxFuture<'_, Result<bool, SyncError>>;

    /// Records how the run ended and the stream's last outcome (parking it when asked).
    fn finish_run(
        &self,
        shop_id: i64,
        stream: Stream,
        run_id: i64,
        end: RunEnd,
    ) -> BoxFuture<'_, Result<(), SyncError>>;

    /// Releases the lease (a lease already lost is left alone).
    fn release(&self, shop_id: i64, stream: Stream) -> BoxFuture<'_, Result<(), SyncError>>;

    /// Clears the persisted park of (shop, stream) (an operator's trigger), if any.
    fn unpark(&self, shop_id: i64, stream: Stream) -> BoxFuture<'_, Result<(), SyncError>>;
}

/// The ledger in PostgreSQL (`shops`, `sync_state`, `sync_runs`).
pub struct PgLedger {
    db: Database,
    owner: String,
    /// Deadline of one transaction.
    deadline: Duration,
}

impl PgLedger {
    pub fn new(db: Database, owner: impl Into<String>, deadline: Duration) -> Self {
        Self {
            db,
            owner: owner.into(),
            deadline,
        }
    }
}

fn clamp(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl RunLedger for PgLedger {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn ensure_shop<'a>(
        &'a self,
        shop: &'a str,
        region: &'static str,
        mall_id: Option<String>,
    ) -> BoxFuture<'a, Result<i64, SyncError>> {
        let shop = shop.to_string();
        Box::pin(self.db.transaction("ensure-shop", self.deadline, move |c| {
            Box::pin(async move {
                let id = store::ensure_shop(c, &shop, region).await?;
                if let Some(mall_id) = mall_id {
                    store::set_shop_mall_id(c, id, &mall_id).await?;
                }
                Ok::<_, SyncError>(id)
            })
        }))
    }

    fn take_lease(
        &self,
        shop_id: i64,
        stream: Stream,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Option<Lease>, SyncError>> {
        let owner = self.owner.clone();
        Box::pin(self.db.transaction("take-lease", self.deadline, move |c| {
            Box::pin(async move {
                let stream = stream.as_str();
                // Fair leases (issue 15): over its share, a daemon leaves the pair to the others.
                if !super::fair_share::within_fair_share(c, shop_id, stream, &owner).await? {
                    return Ok(None);
                }
                let lease = store::try_acquire_lease(c, shop_id, stream, &owner, ttl).await?;
                if lease.as_ref().is_some_and(|l| l.took_over_from.is_some()) {
                    store::abandon_stale_runs(c, shop_id, stream, &owner).await?;
                }
                Ok::<_, SyncError>(lease)
            })
        }))
    }

    fn start_run(
        &self,
        shop_id: i64,
        stream: Stream,
        window: Option<Window>,
    ) -> BoxFuture<'_, Result<i64, SyncError>> {
        let owner = self.owner.clone();
        Box::pin(self.db.transaction("start-run", self.deadline, move |c| {
            Box::pin(async move {
                let span = window.map(|w| (w.start, w.end));
                Ok::<_, SyncError>(
                    store::start_run(c, shop_id, stream.as_str(), &owner, span).await?,
                )
            })
        }))
    }

    fn heartbeat(
        &self,
        shop_id: i64,
        stream: Stream,
        run_id: i64,
        ttl: Duration,
        p: ProgressSnapshot,
    ) -> BoxFuture<'_, Result<bool, SyncError>> {
        let owner = self.owner.clone();
        Box::pin(
            self.db
                .transaction("lease-heartbeat", self.deadline, move |c| {
                    Box::pin(async move {
                        let held =
                            store::renew_lease(c, shop_id, stream.as_str(), &owner, ttl).await?;
                        if held {
                            write_progress(c, run_id, p).await?;
                        }
                        Ok::<_, SyncError>(held)
                    })
                }),
        )
    }

    fn finish_run(
        &self,
        shop_id: i64,
        stream: Stream,
        run_id: i64,
        end: RunEnd,
    ) -> BoxFuture<'_, Result<(), SyncError>> {
        Box::pin(self.db.transaction("finish-run", self.deadline, move |c| {
            Box::pin(async move {
                let stream = stream.as_str();
                write_progress(c, run_id, end.progress).await?;
                let message = end.message.as_deref();
                store::finish_run(c, run_id, end.status, end.class, message).await?;
                match end.class {
                    None => {
                        store::record_success(c, shop_id, stream).await?;
                        store::unpark(c, shop_id, stream).await?;
                    }
                    Some(class) => {
                        let message = message.unwrap_or(class);
                        store::record_failure(c, shop_id, stream, class, message).await?;
                        if let Some(park) = &end.park {
                            store::park(c, shop_id, stream, park).await?;
                        }
                    }
                }
                Ok::<_, SyncError>(())
            })
        }))
    }

    fn release(&self, shop_id: i64, stream: Stream) -> BoxFuture<'_, Result<(), SyncError>> {
        let owner = self.owner.clone();
        Box::pin(
            self.db
                .transaction("release-lease", self.deadline, move |c| {
                    Box::pin(async move {
                        Ok::<_, SyncError>(
                            store::release_lease(c, shop_id, stream.as_str(), &owner).await?,
                        )
                    })
                }),
        )
    }

    fn unpark(&self, shop_id: i64, stream: Stream) -> BoxFuture<'_, Result<(), SyncError>> {
        Box::pin(self.db.transaction("unpark", self.deadline, move |c| {
            Box::pin(async move {
                Ok::<_, SyncError>(store::unpark(c, shop_id, stream.as_str()).await?)
            })
        }))
    }
}

async fn write_progress(
    c: &mut diesel_async::AsyncPgConnection,
    run_id: i64,
    p: ProgressSnapshot,
) -> Result<(), SyncError> {
    let (pages, seen) = (clamp(p.pages), clamp(p.records_seen));
    store::update_run_progress(c, run_id, pages, seen, clamp(p.inserted), clamp(p.updated)).await?;
    Ok(())
}
