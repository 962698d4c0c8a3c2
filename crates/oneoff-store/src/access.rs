//! Tokens and the audit trail: the types, and the store's methods for them.

use oneoff_core::audit::{AuditAction, AuditEntry, AuditKey, AuditRecord, ChainHead, SignedHead};

use crate::{dispatch, Store, StoreError};

/// An API token as stored (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub user: String,
    pub groups: Vec<String>,
    pub created_by: String,
    pub created_at_us: i64,
    pub expires_at_us: Option<i64>,
    pub revoked_at_us: Option<i64>,
    pub last_used_us: Option<i64>,
    /// The API token this one was made with, if any: revoking that one revokes this one.
    pub parent_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub user: String,
    pub groups: Vec<String>,
    pub hash: String,
    pub created_by: String,
    pub created_at_us: i64,
    pub expires_at_us: Option<i64>,
    /// The API token it is made with; the caller caps `expires_at_us` at that token's.
    pub parent_id: Option<i64>,
}

/// Filters of the audit listing; newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Matches every form the action was stored as (older versions stored prose).
    pub action: Option<AuditAction>,
    pub job: Option<String>,
    pub before: Option<i64>,
    /// Records at or after this time (µs since the epoch).
    pub since_us: Option<i64>,
    /// Records before this time (µs since the epoch), so consecutive windows do not overlap.
    pub until_us: Option<i64>,
    pub limit: u32,
}

pub(crate) const AUDIT_COLUMNS: &str =
    "id, at_us, actor, source, client, action, message, job, run_id, detail, prev_hash, hash";

/// What an append did to the signed head (`audit_head`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadUpdate {
    /// No audit key: the head is neither checked nor moved.
    Unkeyed,
    /// The head now signs the chain with the new record.
    Signed,
    /// The stored head did not sign the chain as found (the reason says how), so it was
    /// left as it was: moving it would sign the tampered chain.
    Withheld(String),
}

/// A record just appended and what happened to the signed head.
#[derive(Debug, Clone)]
pub struct Appended {
    pub record: AuditRecord,
    pub head: HeadUpdate,
}

impl Store {
    /// Stores a new token. With a parent, only while that parent is neither revoked nor
    /// expired, checked in the same statement, so a parent revoked meanwhile cannot leave a
    /// child behind (the revocation either comes first, and this is `None`, or it sees the
    /// child and revokes it too).
    pub async fn insert_token(&self, new: &NewToken) -> Result<Option<TokenRecord>, StoreError> {
        dispatch!(self, store => store.insert_token(new).await)
    }

    pub async fn token(&self, id: i64) -> Result<Option<TokenRecord>, StoreError> {
        dispatch!(self, store => store.token(id).await)
    }

    /// The token with this hash, and marks it used now. On a database that cannot be written
    /// (a full disk) the token still works and its last use is not updated: reading logs must
    /// not need space.
    pub async fn use_token(&self, hash: &str, now_us: i64) -> Result<Option<TokenRecord>, StoreError> {
        dispatch!(self, store => store.use_token(hash, now_us).await)
    }

    /// All tokens, or one user's.
    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        dispatch!(self, store => store.list_tokens(user).await)
    }

    /// Revokes a token and every token made with it (their children too), in one statement.
    /// Returns the ids revoked, the token's first; empty when it does not exist or was
    /// already revoked (its descendants were revoked with it then).
    pub async fn revoke_token(&self, id: i64, now_us: i64) -> Result<Vec<i64>, StoreError> {
        dispatch!(self, store => store.revoke_token(id, now_us).await)
    }

    /// Appends a record to the audit chain, atomically with reading the chain's head, with
    /// every field within its bound; concurrent appends from several replicas make one chain.
    /// With `key`, moves the signed head along, but only from a head that signs the chain as
    /// found, or from none when the chain is empty or the record is the `audit.anchor` that
    /// adopts a chain written without a key.
    pub async fn append_audit(&self, entry: &AuditEntry, key: Option<&AuditKey>) -> Result<Appended, StoreError> {
        dispatch!(self, store => store.append_audit(entry, key).await)
    }

    /// The signed head, when a server with an audit key has written one.
    pub async fn audit_head(&self) -> Result<Option<SignedHead>, StoreError> {
        dispatch!(self, store => store.audit_head().await)
    }

    /// The chain's length and last hash as stored (not verified).
    pub async fn audit_tail(&self) -> Result<ChainHead, StoreError> {
        dispatch!(self, store => store.audit_tail().await)
    }

    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        dispatch!(self, store => store.list_audit(filter).await)
    }

    /// Every audit record in chain order and the signed head, read in one transaction so an
    /// append between the two reads cannot look like tampering.
    pub async fn audit_snapshot(&self) -> Result<(Vec<AuditRecord>, Option<SignedHead>), StoreError> {
        dispatch!(self, store => store.audit_snapshot().await)
    }

    /// Every audit record in chain order, for verification.
    pub async fn audit_chain(&self) -> Result<Vec<AuditRecord>, StoreError> {
        dispatch!(self, store => store.audit_chain().await)
    }
}
