-- Replicas: several servers sharing one database (with SQLite, one replica at a time).
-- `replica` is who claimed the run; `held_by` is, for a queued run with secret parameters,
-- the replica holding the values in memory (the only one that may claim it);
-- `cancel_requested_at_us` is a cancel the owner has yet to act on.
ALTER TABLE runs ADD COLUMN replica TEXT;
ALTER TABLE runs ADD COLUMN held_by TEXT;
ALTER TABLE runs ADD COLUMN cancel_requested_at_us INTEGER;

CREATE INDEX runs_by_replica ON runs (replica, status);

-- One row per replica name. `instance` is random per process: a process that finds another
-- instance in its row (it was declared lost, or its name was taken over) no longer owns it.
CREATE TABLE replicas (
    name            TEXT    PRIMARY KEY,
    instance        TEXT    NOT NULL,
    host            TEXT    NOT NULL,
    boot_id         TEXT,
    pid             INTEGER NOT NULL,
    started_at_us   INTEGER NOT NULL,
    heartbeat_at_us INTEGER NOT NULL,
    draining        INTEGER NOT NULL DEFAULT 0,
    lost_at_us      INTEGER
);
