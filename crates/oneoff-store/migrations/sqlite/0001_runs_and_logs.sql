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

CREATE TABLE log_entries (
    run_id INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    ts_us  INTEGER NOT NULL,
    stream INTEGER NOT NULL, -- 1 stdout, 2 stderr, 3 system
    bytes  BLOB    NOT NULL, -- exactly what the job wrote, without the line terminator
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
