ALTER TABLE sync_state DROP COLUMN backfill_reason;
