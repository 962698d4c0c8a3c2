-- Replicas sharing this database. `replica` is who claimed the run; `held_by` is, for a
-- queued run with secret parameters, the replica holding the values in memory (the only one
-- that may claim it); `cancel_requested_at_us` is a cancel the owner has yet to act on.
ALTER TABLE runs ADD COLUMN replica TEXT;
ALTER TABLE runs ADD COLUMN held_by TEXT;
ALTER TABLE runs ADD COLUMN cancel_requested_at_us BIGINT;

CREATE INDEX runs_by_replica ON runs (replica, status);

-- One row per replica name. `instance` is random per process: a process that finds another
-- instance in its row (it was declared lost, or its name was taken over) no longer owns it.
-- Heartbeats and the dead-replica check use this server's clock, so replicas' clocks do not matter.
CREATE TABLE replicas (
    name            TEXT    PRIMARY KEY,
    instance        TEXT    NOT NULL,
    host            TEXT    NOT NULL,
    boot_id         TEXT,
    pid             BIGINT  NOT NULL,
    started_at_us   BIGINT  NOT NULL,
    heartbeat_at_us BIGINT  NOT NULL,
    draining        BOOLEAN NOT NULL DEFAULT FALSE,
    lost_at_us      BIGINT
);
