-- Stream tickets (see tickets.rs): only a SHA-256 hash of each ticket, bound to a run and the
-- principal it stands for (JSON), until it expires or is taken once.
-- One short statement, WITHOUT ROWID (keyed by the hash, no second index for it) and no
-- expiry index (the sweep reads at most max_stream_tickets rows): the schema is kept on the
-- database's first page, which the damaged-file check (quick_check at open) relies on.
CREATE TABLE stream_tickets (hash TEXT PRIMARY KEY, run_id INTEGER NOT NULL, user_name TEXT NOT NULL,
principal TEXT NOT NULL, expires_at_us INTEGER NOT NULL) WITHOUT ROWID;
