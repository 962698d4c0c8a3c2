-- API tokens: only a SHA-256 hash of each token is kept.
CREATE TABLE tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    user          TEXT    NOT NULL,
    groups        TEXT    NOT NULL, -- JSON array
    hash          TEXT    NOT NULL UNIQUE,
    created_by    TEXT    NOT NULL,
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER,
    revoked_at_us INTEGER,
    last_used_us  INTEGER
);

-- The audit trail, hash-chained: hash = sha256(fields, prev_hash); see oneoff-core audit.rs.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us     INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    source    TEXT    NOT NULL,
    client    TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    job       TEXT,
    run_id    INTEGER,
    detail    TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);

CREATE INDEX audit_by_actor ON audit (actor, id);
CREATE INDEX audit_by_job ON audit (job, id);
