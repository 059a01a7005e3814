-- Orders now ask for every fulfilment type (`fulfillmentTypeList`). A database synced by an
-- older version lacks the cooperative-warehouse orders behind its cursor (whole parents, and
-- children of mixed parents), so each orders stream that has synced backfills `initial_window`
-- once more: its cursor is cleared and the reason recorded (`backfill_reason`, shown by `status`,
-- cleared by the next successful run). Upserts are idempotent, so the re-walk only adds and
-- completes.
ALTER TABLE sync_state ADD COLUMN backfill_reason TEXT;

UPDATE sync_state
   SET cursor = NULL,
       backfill_reason = 'upgrade 2026-12-05: orders now include cooperative-warehouse children '
                         || '(fulfillmentTypeList); backfilling initial_window once',
       updated_at = now()
 WHERE stream = 'orders' AND cursor IS NOT NULL;
