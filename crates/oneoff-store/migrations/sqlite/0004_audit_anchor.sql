-- Typed audit actions and the signed head (see oneoff-core audit/action.rs and audit/anchor.rs).
-- Records written before this migration keep their action text and hash as they were: a
-- NULL message marks them as the legacy format, whose hash does not cover a message.
ALTER TABLE audit ADD COLUMN message TEXT;

-- One row at most: the chain's length and last hash with the audit key's MAC of both,
-- updated with every append while the server holds the key. The key itself is never here.
CREATE TABLE audit_head (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    records   INTEGER NOT NULL,
    hash      TEXT    NOT NULL,
    mac       TEXT    NOT NULL
);
