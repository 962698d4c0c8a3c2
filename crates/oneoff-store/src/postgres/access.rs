//! Tokens and the audit trail in PostgreSQL. The chain is extended under one advisory lock,
//! so appends from every replica make one chain.

use futures_util::TryFutureExt;
use oneoff_core::audit::anchor::check_signed_head;
use oneoff_core::audit::{
    chain_hash, AuditAction, AuditEntry, AuditKey, AuditRecord, ChainHead, RecordFormat, SignedHead, GENESIS,
};
use sqlx::{Postgres, QueryBuilder};

use super::{PgStore, AUDIT_LOCK};
use crate::access::AUDIT_COLUMNS;
use crate::rows::{audit_from_row, token_from_row};
use crate::{Appended, AuditFilter, HeadUpdate, NewToken, StoreError, TokenRecord};

const TOKEN_COLUMNS: &str =
    "id, name, \"user\", groups, created_by, created_at_us, expires_at_us, revoked_at_us, last_used_us, parent_id";

impl PgStore {
    /// Stores a new token. With a parent, only while that parent is neither revoked nor
    /// expired, checked in the same statement, so a parent revoked meanwhile cannot leave a
    /// child behind (the revocation either comes first, and this is `None`, or it sees the
    /// child and revokes it too).
    pub(crate) async fn insert_token(&self, new: &NewToken) -> Result<Option<TokenRecord>, StoreError> {
        let groups = serde_json::Value::from(new.groups.clone()).to_string();
        let ids: Vec<i64> = self
            .write(
                sqlx::query_scalar(
                    "INSERT INTO tokens (name, \"user\", groups, hash, created_by, created_at_us, expires_at_us, parent_id) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                     WHERE $8 IS NULL OR EXISTS (SELECT 1 FROM tokens WHERE id = $8 AND revoked_at_us IS NULL \
                                                 AND (expires_at_us IS NULL OR expires_at_us > $6)) \
                     RETURNING id",
                )
                .bind(&new.name)
                .bind(&new.user)
                .bind(groups)
                .bind(&new.hash)
                .bind(&new.created_by)
                .bind(new.created_at_us)
                .bind(new.expires_at_us)
                .bind(new.parent_id)
                .fetch_all(self.pool())
                .err_into(),
            )
            .await?;
        let Some(&id) = ids.first() else { return Ok(None) };
        let token = self.token(id).await?.ok_or_else(|| StoreError::Corrupt(format!("token {id} vanished")))?;
        Ok(Some(token))
    }

    pub(crate) async fn token(&self, id: i64) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    /// The token with this hash, and marks it used now. On a disk that cannot be written (full,
    /// read-only) the token still works and its last use is not updated: reading logs must
    /// not need space.
    pub(crate) async fn use_token(&self, hash: &str, now_us: i64) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(self.pool())
            .await?;
        let Some(token) = row.map(|row| token_from_row(&row)).transpose()? else { return Ok(None) };
        let marked = self
            .write(
                sqlx::query("UPDATE tokens SET last_used_us = $1 WHERE id = $2")
                    .bind(now_us)
                    .bind(token.id)
                    .execute(self.pool())
                    .err_into::<StoreError>(),
            )
            .await;
        match marked {
            Ok(_) => {}
            Err(error) if error.is_storage_fault() => {
                tracing::warn!(token = token.id, %error, "cannot record the token's last use");
            }
            Err(error) => return Err(error),
        }
        Ok(Some(token))
    }

    /// All tokens, or one user's.
    pub(crate) async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = match user {
            Some(user) => {
                sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE \"user\" = $1 ORDER BY id"))
                    .bind(user)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id")).fetch_all(self.pool()).await?
            }
        };
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes a token and every token made with it (their children too), in one statement.
    /// Returns the ids revoked, the token's first; empty when it does not exist or was
    /// already revoked (its descendants were revoked with it then).
    pub(crate) async fn revoke_token(&self, id: i64, now_us: i64) -> Result<Vec<i64>, StoreError> {
        let mut revoked: Vec<i64> = self
            .write(
                sqlx::query_scalar(
                    "WITH RECURSIVE family(id) AS ( \
                         SELECT id FROM tokens WHERE id = $1 AND revoked_at_us IS NULL \
                         UNION SELECT tokens.id FROM tokens JOIN family ON tokens.parent_id = family.id) \
                     UPDATE tokens SET revoked_at_us = $2 \
                     WHERE id IN (SELECT id FROM family) AND revoked_at_us IS NULL RETURNING id",
                )
                .bind(id)
                .bind(now_us)
                .fetch_all(self.pool())
                .err_into(),
            )
            .await?;
        revoked.sort_by_key(|revoked| (*revoked != id, *revoked));
        Ok(revoked)
    }

    /// Appends a record to the audit chain, atomically with reading the chain's head, with
    /// every field within its bound. With `key`, moves the signed head along, but only from
    /// a head that signs the chain as found, or from none when the chain is empty or the
    /// record is the `audit.anchor` that adopts a chain written without a key.
    pub(crate) async fn append_audit(
        &self,
        entry: &AuditEntry,
        key: Option<&AuditKey>,
    ) -> Result<Appended, StoreError> {
        self.write(self.chain_audit(entry, key)).await
    }

    async fn chain_audit(&self, entry: &AuditEntry, key: Option<&AuditKey>) -> Result<Appended, StoreError> {
        let entry = entry.clone().bounded();
        // The chain's lock first, so two appends (of any replicas) cannot fork the chain;
        // the transaction rolls back when dropped on an error.
        let mut transaction = self.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_LOCK).execute(&mut *transaction).await?;
        let last: Option<(i64, String)> = sqlx::query_as("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *transaction)
            .await?;
        let found = last
            .map_or(ChainHead { records: 0, hash: GENESIS.to_string() }, |(records, hash)| ChainHead { records, hash });
        let id = found.records + 1;
        let format = RecordFormat::Coded;
        let hash = chain_hash(id, &entry, &format, &found.hash);
        sqlx::query(&format!(
            "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(id)
        .bind(entry.at_us)
        .bind(&entry.actor)
        .bind(&entry.source)
        .bind(&entry.client)
        .bind(entry.action.code())
        .bind(&entry.message)
        .bind(&entry.job)
        .bind(entry.run_id)
        .bind(&entry.detail)
        .bind(&found.hash)
        .bind(&hash)
        .execute(&mut *transaction)
        .await?;
        let head = match key {
            None => HeadUpdate::Unkeyed,
            Some(key) => {
                let stored = read_head(&mut transaction).await?;
                // A chain that already holds an anchor was signed before: no head means it
                // was deleted, and a second anchor must not sign whatever is left.
                let signed_before = stored.is_none()
                    && sqlx::query("SELECT 1 FROM audit WHERE action = $1 AND id < $2 LIMIT 1")
                        .bind(AuditAction::AuditAnchor.code())
                        .bind(id)
                        .fetch_optional(&mut *transaction)
                        .await?
                        .is_some();
                let adopting = stored.is_none() && !signed_before && entry.action == AuditAction::AuditAnchor;
                match check_signed_head(key, stored.as_ref(), &found, signed_before) {
                    Err(reason) if !adopting => HeadUpdate::Withheld(reason),
                    _ => {
                        let signed = key.sign_head(&ChainHead { records: id, hash: hash.clone() });
                        sqlx::query(
                            "INSERT INTO audit_head (singleton, records, hash, mac) VALUES (1, $1, $2, $3) \
                             ON CONFLICT (singleton) DO UPDATE SET records = excluded.records, hash = excluded.hash, mac = excluded.mac",
                        )
                        .bind(signed.head.records)
                        .bind(&signed.head.hash)
                        .bind(&signed.mac)
                        .execute(&mut *transaction)
                        .await?;
                        HeadUpdate::Signed
                    }
                }
            }
        };
        transaction.commit().await?;
        Ok(Appended { record: AuditRecord { id, entry, format, prev_hash: found.hash, hash }, head })
    }

    /// The signed head, when a server with an audit key has written one.
    pub(crate) async fn audit_head(&self) -> Result<Option<SignedHead>, StoreError> {
        let mut connection = self.pool().acquire().await?;
        read_head(&mut connection).await
    }

    /// The chain's length and last hash as stored (not verified).
    pub(crate) async fn audit_tail(&self) -> Result<ChainHead, StoreError> {
        let last: Option<(i64, String)> =
            sqlx::query_as("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetch_optional(self.pool()).await?;
        Ok(last
            .map_or(ChainHead { records: 0, hash: GENESIS.to_string() }, |(records, hash)| ChainHead { records, hash }))
    }

    pub(crate) async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE 1 = 1"));
        if let Some(actor) = &filter.actor {
            query.push(" AND actor = ").push_bind(actor.clone());
        }
        if let Some(action) = &filter.action {
            query.push(" AND action IN (");
            let mut forms = query.separated(", ");
            for form in action.stored_forms() {
                forms.push_bind(form);
            }
            query.push(")");
        }
        if let Some(job) = &filter.job {
            query.push(" AND job = ").push_bind(job.clone());
        }
        if let Some(before) = filter.before {
            query.push(" AND id < ").push_bind(before);
        }
        if let Some(since_us) = filter.since_us {
            query.push(" AND at_us >= ").push_bind(since_us);
        }
        if let Some(until_us) = filter.until_us {
            query.push(" AND at_us < ").push_bind(until_us);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(filter.limit));
        let rows = query.build().fetch_all(self.pool()).await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Every audit record in chain order and the signed head, read in one transaction so an
    /// append between the two reads cannot look like tampering.
    pub(crate) async fn audit_snapshot(&self) -> Result<(Vec<AuditRecord>, Option<SignedHead>), StoreError> {
        let mut transaction = self.pool().begin().await?;
        // One snapshot for both statements (READ COMMITTED takes one per statement).
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *transaction).await?;
        let rows =
            sqlx::query(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id")).fetch_all(&mut *transaction).await?;
        let head = read_head(&mut transaction).await?;
        transaction.commit().await?;
        Ok((rows.iter().map(audit_from_row).collect::<Result<_, _>>()?, head))
    }

    /// Every audit record in chain order, for verification.
    pub(crate) async fn audit_chain(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id")).fetch_all(self.pool()).await?;
        rows.iter().map(audit_from_row).collect()
    }
}

async fn read_head(connection: &mut sqlx::PgConnection) -> Result<Option<SignedHead>, StoreError> {
    let row: Option<(i64, String, String)> =
        sqlx::query_as("SELECT records, hash, mac FROM audit_head WHERE singleton = 1")
            .fetch_optional(connection)
            .await?;
    Ok(row.map(|(records, hash, mac)| SignedHead { head: ChainHead { records, hash }, mac }))
}
