-- Sync coordination: one sync_state row per (shop, stream) holds the cursor (data is complete up
-- to it), the lease that keeps two daemons from syncing the same pair at once, and the last
-- outcome; sync_runs records every run.

CREATE TABLE sync_state (
    shop_id            BIGINT NOT NULL REFERENCES shops (id),
    stream             TEXT NOT NULL CHECK (stream IN ('orders', 'products', 'aftersales')),
    -- Data is complete up to here; moves only forward, in the transaction of the data it covers.
    cursor             TIMESTAMPTZ,
    lease_owner        TEXT,
    lease_expires_at   TIMESTAMPTZ,
    last_success_at    TIMESTAMPTZ,
    last_error         TEXT,
    last_error_class   TEXT,
    -- Non-null: a fatal error parked this stream until an operator unparks it.
    parked_reason      TEXT,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, stream)
);

CREATE TABLE sync_runs (
    id             BIGSERIAL PRIMARY KEY,
    shop_id        BIGINT NOT NULL REFERENCES shops (id),
    stream         TEXT NOT NULL CHECK (stream IN ('orders', 'products', 'aftersales')),
    instance_id    TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'abandoned')),
    window_start   TIMESTAMPTZ,
    window_end     TIMESTAMPTZ,
    pages          INTEGER NOT NULL DEFAULT 0,
    records_seen   INTEGER NOT NULL DEFAULT 0,
    inserted       INTEGER NOT NULL DEFAULT 0,
    updated        INTEGER NOT NULL DEFAULT 0,
    error_class    TEXT,
    error_message  TEXT,
    started_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at    TIMESTAMPTZ,
    heartbeat_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sync_runs_shop_stream_started ON sync_runs (shop_id, stream, started_at DESC);
