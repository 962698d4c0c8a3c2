-- Runs and their log lines. Times are microseconds since the Unix epoch (UTC).
CREATE TABLE runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job            TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    params         TEXT    NOT NULL, -- JSON; secret values are never stored
    argv           TEXT    NOT NULL, -- JSON array of the resolved argv
    requested_by   TEXT,
    created_at_us  INTEGER NOT NULL,
    started_at_us  INTEGER,
    finished_at_us INTEGER,
    exit_code      INTEGER,
    signal         INTEGER,
    error          TEXT
);

CREATE INDEX runs_by_status ON runs (status, id);
CREATE INDEX runs_by_job ON runs (job, id);
CREATE INDEX runs_by_finish ON runs (finished_at_us);

-- Log lines are stored in chunks: one row holds the consecutive entries first_seq..=last_seq
-- that were written together (see codec.rs for the encoding). A job printing a million
-- lines a second becomes a few hundred rows, while a trickle is one row per line.
CREATE TABLE log_chunks (
    run_id    INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    entries   BLOB    NOT NULL,
    UNIQUE (run_id, first_seq)
);

CREATE INDEX log_chunks_by_last ON log_chunks (run_id, last_seq);
