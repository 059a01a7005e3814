-- Who shares each app_key's QPS budget (issue 15): one row per live daemon with shops on that
-- app_key. A daemon refreshes its rows every second (temu::budget::coordinator); a row older than
-- the member TTL is a dead daemon's. app_key is the public key, never the secret.
CREATE TABLE app_budget_members (
    app_key      TEXT NOT NULL,
    instance_id  TEXT NOT NULL,
    joined_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (app_key, instance_id)
);
