//! The body of a full-sweep stream: every page of the listing, upserted in batches; a complete
//! sweep then settles what it did not see (products: marked removed).
//!
//! Must not: settle anything after an incomplete sweep — what was not seen is left as it is.

use super::batches::upsert_batches;
use crate::sync::run::Work;
use crate::sync::streams::StreamSpec;
use crate::sync::walk::{walk, PageSlots};
use crate::sync::SyncError;

pub async fn sweep<S: StreamSpec>(work: Work<'_>) -> Result<(), SyncError> {
    let ctx = work.ctx;
    let (shop_id, run_id) = (work.shop_id, work.run_id);
    let (client, shop) = (&ctx.client, &ctx.shop);
    let slots = PageSlots::new(ctx.config.page_concurrency_for(shop.app_qps()));
    let walked = walk(
        |page| S::fetch(client, shop, &ctx.config, None, page),
        work.cancel,
        work.progress,
        &slots,
    )
    .await?;
    let complete = walked.complete;
    upsert_batches::<S>(&work, walked.records, false).await?;
    if !complete {
        return Err(SyncError::Record(format!(
            "the {} listing kept changing during every walk; records not seen were left as they are",
            ctx.stream.as_str()
        )));
    }
    let settled = ctx
        .db
        .transaction("settle-sweep", ctx.db_deadline, move |c| {
            S::after_sweep(c, shop_id, run_id)
        })
        .await?;
    if settled > 0 {
        tracing::info!(shop = %ctx.shop.name(), stream = ctx.stream.as_str(), settled,
            "records no longer listed were settled (products: marked removed)");
    }
    Ok(())
}
