//! Upserting walked records in batches of `sync.batch_size`, each batch its own transaction.

use crate::sync::run::Work;
use crate::sync::streams::StreamSpec;
use crate::sync::SyncError;

/// Commits `records` batch by batch. With `keep_last`, the last batch (at most `batch_size`
/// records, possibly none) is returned uncommitted, for the caller's own transaction (the one
/// that advances the cursor); otherwise everything is committed and nothing is returned.
pub(crate) async fn upsert_batches<S: StreamSpec>(
    work: &Work<'_>,
    mut records: Vec<S::Record>,
    keep_last: bool,
) -> Result<Vec<S::Record>, SyncError> {
    let ctx = work.ctx;
    let (shop_id, run_id) = (work.shop_id, work.run_id);
    let batch = ctx.config.batch_size.max(1);
    let keep = if keep_last { batch } else { 0 };
    while records.len() > keep {
        let rest = records.split_off(batch.min(records.len()));
        let this = std::mem::replace(&mut records, rest);
        let counts = ctx
            .db
            .transaction("upsert-batch", ctx.db_deadline, move |c| {
                S::upsert(c, shop_id, run_id, this)
            })
            .await?;
        work.progress.stored(counts.inserted, counts.updated);
    }
    Ok(records)
}
