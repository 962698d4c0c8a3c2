-- A token made with another API token depends on it: its expiry is capped at its parent's,
-- and revoking the parent revokes it (and its own children). NULL: made through SSO, by
-- anonymous access, or with `oneoff token create --config` on the server's host.
ALTER TABLE tokens ADD COLUMN parent_id INTEGER REFERENCES tokens (id);

CREATE INDEX tokens_by_parent ON tokens (parent_id);
