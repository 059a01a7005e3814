//! One sync run of one shop × stream, from taking the lease to recording the outcome.
//!
//! Owns the run's protocol:
//! 1. take the lease in `sync_state` (or report that another daemon holds it); a taken-over
//!    lease marks the dead owner's unfinished run `abandoned`;
//! 2. record the run in `sync_runs`, heartbeat the lease and the run's progress while it works;
//! 3. walk the window chunk by chunk (orders, after-sales) or the whole listing (products), upsert
//!    in batches of `sync.batch_size`, and advance the cursor in the same transaction as each
//!    chunk's last batch (invariant 1);
//! 4. record how it ended, and release the lease.
//!
//! Every database step is its own short transaction through [`Database::transaction`] with a
//! deadline, so cancelling the run (shutdown, `task_timeout`, lease lost) at any await leaves the
//! committed chunks and nothing half-written.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use super::walk::{walk, Keyed, Page, Walked, PAGE_SIZE};
use super::window::{chunks, plan_window, Window};
use super::SyncError;
use crate::config::{Stream, SyncConfig};
use crate::db::Database;
use crate::store::{self, AfterSalesRecord, OrderRecord, ProductRecord, RunStatus};
use crate::temu::model::{AfterSalesListRequest, GoodsListRequest, OrderListRequest};
use crate::temu::{TemuClient, TemuShop};

/// The smallest window a drifting chunk is narrowed to.
const MIN_CHUNK: chrono::Duration = chrono::Duration::minutes(1);

/// Everything one run needs.
#[derive(Clone)]
pub struct RunContext {
    pub shop: String,
    pub region: &'static str,
    pub stream: Stream,
    pub config: SyncConfig,
    pub db: Database,
    pub client: TemuClient,
    /// The shop as the client resolved it: every call passes it.
    pub temu_shop: TemuShop,
    /// This daemon's instance id: the lease owner and `sync_runs.instance_id`.
    pub owner: String,
    /// Deadline of one database transaction.
    pub db_deadline: Duration,
}

/// How a run ended.
#[derive(Debug)]
pub enum RunOutcome {
    Succeeded {
        cursor: Option<DateTime<Utc>>,
    },
    /// Another daemon holds the lease: nothing was done.
    HeldElsewhere,
    Failed {
        error: SyncError,
        cursor: Option<DateTime<Utc>>,
    },
}

impl Keyed for OrderRecord {
    fn key(&self) -> &str {
        &self.parent_order_sn
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        Some(self.updated_at)
    }
}

impl Keyed for AfterSalesRecord {
    fn key(&self) -> &str {
        &self.parent_after_sales_sn
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        Some(self.updated_at)
    }
}

impl Keyed for ProductRecord {
    fn key(&self) -> &str {
        &self.goods_id
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        None
    }
}

impl RunContext {
    async fn tx<R, F>(&self, label: &'static str, work: F) -> Result<R, SyncError>
    where
        R: Send + 'static,
        F: for<'r> FnOnce(&'r mut AsyncPgConnection) -> BoxFuture<'r, Result<R, SyncError>>
            + Send
            + 'static,
    {
        self.db.transaction(label, self.db_deadline, work).await
    }
}

/// Runs one sync of `ctx.stream` for `ctx.shop`. Never panics on outside input; every failure
/// comes back as [`RunOutcome::Failed`] with the cursor where the data is complete.
pub async fn run(
    ctx: &RunContext,
    cancel: CancellationToken,
    progress: Arc<Progress>,
) -> RunOutcome {
    let stream = ctx.stream.as_str();
    let (shop, region) = (ctx.shop.clone(), ctx.region);
    // The mall id, once the Temu actor's token check has learned it.
    let mall_id = ctx.temu_shop.mall_id();
    let shop_id = match ctx
        .tx("ensure-shop", move |c| {
            Box::pin(async move {
                let id = store::ensure_shop(c, &shop, region).await?;
                if let Some(mall_id) = mall_id {
                    store::set_shop_mall_id(c, id, &mall_id).await?;
                }
                Ok(id)
            })
        })
        .await
    {
        Ok(id) => id,
        Err(error) => {
            return RunOutcome::Failed {
                error,
                cursor: None,
            }
        }
    };

    let (owner, ttl) = (ctx.owner.clone(), ctx.config.lease_ttl);
    let lease = ctx
        .tx("take-lease", move |c| {
            Box::pin(async move {
                let lease = store::try_acquire_lease(c, shop_id, stream, &owner, ttl).await?;
                if let Some(l) = &lease {
                    if l.took_over_from.is_some() {
                        store::abandon_stale_runs(c, shop_id, stream, &owner).await?;
                    }
                }
                Ok(lease)
            })
        })
        .await;
    let lease = match lease {
        Ok(Some(lease)) => lease,
        Ok(None) => return RunOutcome::HeldElsewhere,
        Err(error) => {
            return RunOutcome::Failed {
                error,
                cursor: None,
            }
        }
    };
    if let Some(previous) = &lease.took_over_from {
        tracing::warn!(shop = %ctx.shop, stream, previous_owner = %previous,
            "took over an expired lease; the previous owner's unfinished run is marked abandoned");
    }

    // The window this run covers (orders, after-sales), recorded with the run.
    let window = match ctx.stream {
        Stream::Products => None,
        _ => plan_window(
            lease.cursor,
            Utc::now(),
            ctx.config.lookback,
            ctx.config.settle,
            ctx.config.initial_window,
        ),
    };
    let owner = ctx.owner.clone();
    let run_id = match ctx
        .tx("start-run", move |c| {
            Box::pin(async move {
                let span = window.map(|w| (w.start, w.end));
                Ok(store::start_run(c, shop_id, stream, &owner, span).await?)
            })
        })
        .await
    {
        Ok(id) => id,
        Err(error) => {
            release(ctx, shop_id).await;
            return RunOutcome::Failed {
                error,
                cursor: lease.cursor,
            };
        }
    };
    tracing::info!(shop = %ctx.shop, stream, run_id, cursor = ?lease.cursor, "sync run started");

    // Heartbeat: renew the lease and publish progress; a lost lease cancels the run.
    let stop_heartbeat = CancellationToken::new();
    let lease_lost = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat(
        ctx.clone(),
        shop_id,
        run_id,
        progress.clone(),
        stop_heartbeat.clone(),
        lease_lost.clone(),
    ));

    let started = Instant::now();
    let mut cursor = lease.cursor;
    let body = async {
        match ctx.stream {
            Stream::Orders | Stream::Aftersales => match window {
                Some(window) => {
                    sync_windowed(ctx, shop_id, window, &mut cursor, &cancel, &progress).await
                }
                None => Ok(()),
            },
            Stream::Products => sync_products(ctx, shop_id, run_id, &cancel, &progress).await,
        }
    };
    let result = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(SyncError::Cancelled("the daemon is stopping")),
        _ = lease_lost.cancelled() => Err(SyncError::LeaseLost),
        r = tokio::time::timeout(ctx.config.task_timeout, body) => match r {
            Ok(r) => r,
            Err(_) => Err(SyncError::TaskTimeout(ctx.config.task_timeout)),
        },
    };
    stop_heartbeat.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), heartbeat).await;

    let snap = progress.snapshot();
    let (status, class, message) = match &result {
        Ok(()) => (RunStatus::Succeeded, None, None),
        Err(e) => {
            let status = match e.kind() {
                super::FailureKind::Cancelled => RunStatus::Cancelled,
                _ => RunStatus::Failed,
            };
            (status, Some(e.class()), Some(e.to_string()))
        }
    };
    let parked = matches!(&result, Err(e) if e.kind() == super::FailureKind::Park);
    let lost = matches!(&result, Err(SyncError::LeaseLost));
    let message_for_db = message.clone();
    let stream_name = stream;
    let finished = ctx
        .tx("finish-run", move |c| {
            Box::pin(async move {
                store::update_run_progress(
                    c,
                    run_id,
                    clamp(snap.pages),
                    clamp(snap.records_seen),
                    clamp(snap.inserted),
                    clamp(snap.updated),
                )
                .await?;
                store::finish_run(c, run_id, status, class, message_for_db.as_deref()).await?;
                match (class, message_for_db.as_deref()) {
                    (None, _) => {
                        store::record_success(c, shop_id, stream_name).await?;
                        store::unpark(c, shop_id, stream_name).await?;
                    }
                    (Some(class), Some(msg)) => {
                        store::record_failure(c, shop_id, stream_name, class, msg).await?;
                        if parked {
                            store::park(c, shop_id, stream_name, msg).await?;
                        }
                    }
                    (Some(class), None) => {
                        store::record_failure(c, shop_id, stream_name, class, class).await?;
                    }
                }
                Ok(())
            })
        })
        .await;
    if let Err(e) = finished {
        tracing::warn!(shop = %ctx.shop, stream, run_id, error = %e,
            "could not record the end of the run; the lease expires by itself");
    }
    if !lost {
        release(ctx, shop_id).await;
    }
    let took = started.elapsed();
    match result {
        Ok(()) => {
            tracing::info!(shop = %ctx.shop, stream, run_id, pages = snap.pages,
                inserted = snap.inserted, updated = snap.updated, took_ms = took.as_millis() as u64,
                "sync run succeeded");
            RunOutcome::Succeeded { cursor }
        }
        Err(error) => {
            tracing::warn!(shop = %ctx.shop, stream, run_id, error_class = error.class(),
                error = %error, pages = snap.pages, took_ms = took.as_millis() as u64,
                "sync run did not complete");
            RunOutcome::Failed { error, cursor }
        }
    }
}

fn clamp(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

async fn release(ctx: &RunContext, shop_id: i64) {
    let (owner, stream) = (ctx.owner.clone(), ctx.stream.as_str());
    let released = ctx
        .tx("release-lease", move |c| {
            Box::pin(async move { Ok(store::release_lease(c, shop_id, stream, &owner).await?) })
        })
        .await;
    if let Err(e) = released {
        tracing::warn!(shop = %ctx.shop, stream, error = %e, "could not release the lease; it expires by itself");
    }
}

async fn heartbeat(
    ctx: RunContext,
    shop_id: i64,
    run_id: i64,
    progress: Arc<Progress>,
    stop: CancellationToken,
    lease_lost: CancellationToken,
) {
    let every = (ctx.config.lease_ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let snap = progress.snapshot();
        let (owner, stream, ttl) = (ctx.owner.clone(), ctx.stream.as_str(), ctx.config.lease_ttl);
        let renewed = ctx
            .tx("lease-heartbeat", move |c| {
                Box::pin(async move {
                    let held = store::renew_lease(c, shop_id, stream, &owner, ttl).await?;
                    if held {
                        store::update_run_progress(
                            c,
                            run_id,
                            clamp(snap.pages),
                            clamp(snap.records_seen),
                            clamp(snap.inserted),
                            clamp(snap.updated),
                        )
                        .await?;
                    }
                    Ok(held)
                })
            })
            .await;
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(shop = %ctx.shop, stream, run_id, "lease lost to another daemon; cancelling the run");
                lease_lost.cancel();
                return;
            }
            // The database is away: keep working; if it stays away past the TTL another daemon
            // may take over, and our next renew (or cursor advance) notices.
            Err(e) => {
                tracing::warn!(shop = %ctx.shop, stream, run_id, error = %e, "lease heartbeat failed")
            }
        }
    }
}

/// Orders and after-sales: the update-time window, chunk by chunk, cursor with each chunk.
async fn sync_windowed(
    ctx: &RunContext,
    shop_id: i64,
    window: Window,
    cursor: &mut Option<DateTime<Utc>>,
    cancel: &CancellationToken,
    progress: &Progress,
) -> Result<(), SyncError> {
    let cfg = &ctx.config;
    let queue: VecDeque<Window> = chunks(window, cfg.chunk).into();
    progress.set_chunks(queue.len() as u64);
    match ctx.stream {
        Stream::Orders => {
            let fetch = |chunk, page| fetch_orders(ctx, chunk, page);
            sync_chunks(
                ctx,
                shop_id,
                cursor,
                cancel,
                progress,
                queue,
                fetch,
                upsert_orders_fn,
            )
            .await
        }
        _ => {
            let fetch = |chunk, page| fetch_aftersales(ctx, chunk, page);
            let upsert = upsert_aftersales_fn;
            sync_chunks(ctx, shop_id, cursor, cancel, progress, queue, fetch, upsert).await
        }
    }
}

/// Walks and stores the chunks in order. The walk of the next chunk runs while the previous one
/// is stored (the API and PostgreSQL work at the same time); chunks are still stored, and the
/// cursor advanced, strictly one after the other. When a stored chunk drifted, the walk of the
/// chunk after it is thrown away and that chunk walked again after the narrowed halves, so the
/// cursor never passes a chunk that was not stored completely.
#[allow(clippy::too_many_arguments)]
async fn sync_chunks<R, F, Fut>(
    ctx: &RunContext,
    shop_id: i64,
    cursor: &mut Option<DateTime<Utc>>,
    cancel: &CancellationToken,
    progress: &Progress,
    mut queue: VecDeque<Window>,
    fetch: F,
    upsert: UpsertFn<R>,
) -> Result<(), SyncError>
where
    R: Keyed + Send + 'static,
    F: Fn(Window, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Page<R>, SyncError>>,
{
    let mut walked: Option<(Window, Walked<R>)> = None;
    loop {
        let (chunk, records) = match walked.take() {
            Some(w) => w,
            None => match queue.pop_front() {
                None => return Ok(()),
                Some(c) => (c, walk(|page| fetch(c, page), cancel, progress).await?),
            },
        };
        let (stored, next) = match queue.pop_front() {
            Some(n) => {
                let (stored, next) = tokio::join!(
                    store_chunk(ctx, shop_id, chunk, records, upsert, progress),
                    walk(|page| fetch(n, page), cancel, progress)
                );
                (stored, Some((n, next)))
            }
            None => (
                store_chunk(ctx, shop_id, chunk, records, upsert, progress).await,
                None,
            ),
        };
        match stored? {
            ChunkStored::Done => {
                *cursor = Some(cursor.map_or(chunk.end, |c| c.max(chunk.end)));
                progress.chunk_done();
                if let Some((n, next)) = next {
                    walked = Some((n, next?));
                }
            }
            ChunkStored::Drifted if chunk.len() > MIN_CHUNK => {
                let (first, second) = chunk.halves();
                tracing::info!(shop = %ctx.shop, stream = ctx.stream.as_str(),
                    from = %chunk.start, to = %chunk.end, "listing kept changing; narrowing the chunk");
                if let Some((n, _)) = next {
                    queue.push_front(n);
                }
                queue.push_front(second);
                queue.push_front(first);
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
}

enum ChunkStored {
    Done,
    /// Stored what was read, but the walk was not complete: the cursor did not move.
    Drifted,
}

type UpsertFn<R> = for<'r> fn(
    &'r mut AsyncPgConnection,
    i64,
    Vec<R>,
) -> BoxFuture<'r, Result<store::Upserted, SyncError>>;

fn upsert_orders_fn(
    c: &mut AsyncPgConnection,
    shop_id: i64,
    rows: Vec<OrderRecord>,
) -> BoxFuture<'_, Result<store::Upserted, SyncError>> {
    Box::pin(async move { Ok(store::upsert_orders(c, shop_id, &rows).await?) })
}

fn upsert_aftersales_fn(
    c: &mut AsyncPgConnection,
    shop_id: i64,
    rows: Vec<AfterSalesRecord>,
) -> BoxFuture<'_, Result<store::Upserted, SyncError>> {
    Box::pin(async move { Ok(store::upsert_aftersales(c, shop_id, &rows).await?) })
}

/// Upserts a walked chunk in batches; the last batch and the cursor share one transaction.
async fn store_chunk<R: Send + 'static>(
    ctx: &RunContext,
    shop_id: i64,
    chunk: Window,
    walked: Walked<R>,
    upsert: UpsertFn<R>,
    progress: &Progress,
) -> Result<ChunkStored, SyncError> {
    let complete = walked.complete;
    let mut records = walked.records;
    let batch = ctx.config.batch_size.max(1);
    let stream = ctx.stream.as_str();
    // All batches but the last commit on their own.
    while records.len() > batch {
        let rest = records.split_off(batch);
        let this = std::mem::replace(&mut records, rest);
        let counts = ctx
            .tx("upsert-batch", move |c| Box::pin(upsert(c, shop_id, this)))
            .await?;
        progress.stored(counts.inserted, counts.updated);
    }
    let owner = ctx.owner.clone();
    let counts = ctx
        .tx("upsert-last-batch-and-cursor", move |c| {
            Box::pin(async move {
                let counts = if records.is_empty() {
                    store::Upserted::default()
                } else {
                    upsert(c, shop_id, records).await?
                };
                if complete {
                    store::advance_cursor(c, shop_id, stream, &owner, chunk.end).await?;
                }
                Ok(counts)
            })
        })
        .await?;
    progress.stored(counts.inserted, counts.updated);
    Ok(if complete {
        ChunkStored::Done
    } else {
        ChunkStored::Drifted
    })
}

/// Products: every page of the listed/delisted set; a complete walk soft-removes the absent.
async fn sync_products(
    ctx: &RunContext,
    shop_id: i64,
    run_id: i64,
    cancel: &CancellationToken,
    progress: &Progress,
) -> Result<(), SyncError> {
    let walked = walk(|page| fetch_goods(ctx, page), cancel, progress).await?;
    let complete = walked.complete;
    let batch = ctx.config.batch_size.max(1);
    let mut records = walked.records;
    while !records.is_empty() {
        let rest = records.split_off(batch.min(records.len()));
        let this = std::mem::replace(&mut records, rest);
        let counts = ctx
            .tx("upsert-products", move |c| {
                Box::pin(
                    async move { Ok(store::upsert_products(c, shop_id, run_id, &this).await?) },
                )
            })
            .await?;
        progress.stored(counts.inserted, counts.updated);
    }
    if !complete {
        return Err(SyncError::Record(
            "the product listing kept changing during every walk; products not seen were left as they are"
                .to_string(),
        ));
    }
    let removed = ctx
        .tx("mark-products-removed", move |c| {
            Box::pin(async move { Ok(store::mark_products_removed(c, shop_id, run_id).await?) })
        })
        .await?;
    if removed > 0 {
        tracing::info!(shop = %ctx.shop, removed, "products no longer listed were marked removed");
    }
    Ok(())
}

/// Converts one page of API items into records; a record that cannot be stored fails the page
/// (and so the run, with the reason) rather than being dropped silently.
fn page_of<I, R, E: std::fmt::Display>(
    items: &[I],
    total: Option<i64>,
    convert: impl Fn(&I) -> Result<R, E>,
) -> Result<Page<R>, SyncError> {
    let records = items
        .iter()
        .map(|item| convert(item).map_err(|e| SyncError::Record(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let total = total.unwrap_or(records.len() as i64);
    Ok(Page { records, total })
}

async fn fetch_orders(
    ctx: &RunContext,
    window: Window,
    page: u32,
) -> Result<Page<OrderRecord>, SyncError> {
    let req = OrderListRequest {
        page_number: page,
        page_size: PAGE_SIZE,
        update_at_start: Some(window.start_secs()),
        update_at_end: Some(window.end_secs()),
        sortby: Some("updateTime".to_string()),
        ..OrderListRequest::default()
    };
    let resp = ctx.client.list_orders(&ctx.temu_shop, &req).await?;
    Ok(match resp.result {
        Some(r) => page_of(&r.page_items, r.total_item_num, OrderRecord::from_api)?,
        None => Page::empty(),
    })
}

async fn fetch_aftersales(
    ctx: &RunContext,
    window: Window,
    page: u32,
) -> Result<Page<AfterSalesRecord>, SyncError> {
    let req = AfterSalesListRequest {
        page_no: page,
        page_size: PAGE_SIZE,
        update_at_start: Some(window.start_secs()),
        update_at_end: Some(window.end_secs()),
        ..AfterSalesListRequest::default()
    };
    let resp = ctx.client.list_aftersales(&ctx.temu_shop, &req).await?;
    Ok(match resp.result {
        Some(r) => page_of(&r.data, r.total, AfterSalesRecord::from_api)?,
        None => Page::empty(),
    })
}

/// `goodsSearchType` 1: listed and delisted products.
const LISTED_OR_DELISTED: i64 = 1;

async fn fetch_goods(ctx: &RunContext, page: u32) -> Result<Page<ProductRecord>, SyncError> {
    let req = GoodsListRequest {
        page_no: page,
        page_size: PAGE_SIZE,
        goods_search_type: LISTED_OR_DELISTED,
        ..GoodsListRequest::default()
    };
    let resp = ctx.client.list_goods(&ctx.temu_shop, &req).await?;
    Ok(match resp.result {
        Some(r) => page_of(&r.goods_list, r.total, ProductRecord::from_api)?,
        None => Page::empty(),
    })
}
