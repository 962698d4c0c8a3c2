-- Stream tickets (see tickets.rs): only a SHA-256 hash of each ticket, bound to a run and the
-- principal it stands for (JSON), until it expires or is taken once, on whichever replica.
CREATE TABLE stream_tickets (
    hash          TEXT   PRIMARY KEY,
    run_id        BIGINT NOT NULL,
    user_name     TEXT   NOT NULL,
    principal     TEXT   NOT NULL,
    expires_at_us BIGINT NOT NULL
);

CREATE INDEX stream_tickets_by_expiry ON stream_tickets (expires_at_us);
