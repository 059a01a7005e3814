-- One row per daemon process that has run against this database: who is (or was) alive.
-- The database actor registers its instance at start and refreshes last_seen on every ping,
-- so operators (and, later, lease take-over) can tell a live daemon from a dead one.
CREATE TABLE daemon_instances (
    instance_id  TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    version      TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX daemon_instances_last_seen ON daemon_instances (last_seen);
