//! Tokens and the audit trail in SQLite.

use futures_util::TryFutureExt;
use oneoff_core::audit::{chain_hash, AuditEntry, AuditRecord, GENESIS};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::{Store, StoreError};

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
}

/// Filters of the audit listing; newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub job: Option<String>,
    pub before: Option<i64>,
    pub limit: u32,
}

const TOKEN_COLUMNS: &str =
    "id, name, user, groups, created_by, created_at_us, expires_at_us, revoked_at_us, last_used_us";
const AUDIT_COLUMNS: &str = "id, at_us, actor, source, client, action, job, run_id, detail, prev_hash, hash";

impl Store {
    pub async fn insert_token(&self, new: &NewToken) -> Result<TokenRecord, StoreError> {
        let groups = serde_json::Value::from(new.groups.clone()).to_string();
        // Not `RETURNING id` with `fetch_one`: that stops stepping at the row, so the error of
        // the implicit COMMIT (a full disk) is never seen and an id that was rolled back is used.
        let id = self
            .write(
                sqlx::query(
                    "INSERT INTO tokens (name, user, groups, hash, created_by, created_at_us, expires_at_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&new.name)
                .bind(&new.user)
                .bind(groups)
                .bind(&new.hash)
                .bind(&new.created_by)
                .bind(new.created_at_us)
                .bind(new.expires_at_us)
                .execute(self.pool())
                .err_into(),
            )
            .await?
            .last_insert_rowid();
        self.token(id).await?.ok_or_else(|| StoreError::Corrupt(format!("token {id} vanished")))
    }

    pub async fn token(&self, id: i64) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    /// The token with this hash, and marks it used now. On a disk that cannot be written (full,
    /// read-only) the token still works and its last use is not updated: reading logs must
    /// not need space.
    pub async fn use_token(&self, hash: &str, now_us: i64) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?"))
            .bind(hash)
            .fetch_optional(self.pool())
            .await?;
        let Some(token) = row.map(|row| token_from_row(&row)).transpose()? else { return Ok(None) };
        let marked = self
            .write(
                sqlx::query("UPDATE tokens SET last_used_us = ? WHERE id = ?")
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
    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = match user {
            Some(user) => {
                sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE user = ? ORDER BY id"))
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

    /// Revokes a token; false when it does not exist or was already revoked.
    pub async fn revoke_token(&self, id: i64, now_us: i64) -> Result<bool, StoreError> {
        let done = self
            .write(
                sqlx::query("UPDATE tokens SET revoked_at_us = ? WHERE id = ? AND revoked_at_us IS NULL")
                    .bind(now_us)
                    .bind(id)
                    .execute(self.pool())
                    .err_into(),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Appends a record to the audit chain, atomically with reading the chain's head.
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<AuditRecord, StoreError> {
        self.write(self.chain_audit(entry)).await
    }

    async fn chain_audit(&self, entry: &AuditEntry) -> Result<AuditRecord, StoreError> {
        // BEGIN IMMEDIATE takes the write lock first, so two appends cannot fork the chain;
        // the transaction rolls back when dropped on an error.
        let mut transaction = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let head: Option<(i64, String)> = sqlx::query_as("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *transaction)
            .await?;
        let (id, prev_hash) = head.map_or((1, GENESIS.to_string()), |(id, hash)| (id + 1, hash));
        let hash = chain_hash(id, entry, &prev_hash);
        sqlx::query(&format!("INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(id)
            .bind(entry.at_us)
            .bind(&entry.actor)
            .bind(&entry.source)
            .bind(&entry.client)
            .bind(&entry.action)
            .bind(&entry.job)
            .bind(entry.run_id)
            .bind(&entry.detail)
            .bind(&prev_hash)
            .bind(&hash)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(AuditRecord { id, entry: entry.clone(), prev_hash, hash })
    }

    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE 1 = 1"));
        if let Some(actor) = &filter.actor {
            query.push(" AND actor = ").push_bind(actor.clone());
        }
        if let Some(action) = &filter.action {
            query.push(" AND action = ").push_bind(action.clone());
        }
        if let Some(job) = &filter.job {
            query.push(" AND job = ").push_bind(job.clone());
        }
        if let Some(before) = filter.before {
            query.push(" AND id < ").push_bind(before);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(filter.limit));
        let rows = query.build().fetch_all(self.pool()).await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Every audit record in chain order, for verification.
    pub async fn audit_chain(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id")).fetch_all(self.pool()).await?;
        rows.iter().map(audit_from_row).collect()
    }
}

fn token_from_row(row: &SqliteRow) -> Result<TokenRecord, StoreError> {
    let groups: String = row.try_get("groups")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        user: row.try_get("user")?,
        groups: serde_json::from_str(&groups).map_err(|_| StoreError::Corrupt(format!("token groups: {groups}")))?,
        created_by: row.try_get("created_by")?,
        created_at_us: row.try_get("created_at_us")?,
        expires_at_us: row.try_get("expires_at_us")?,
        revoked_at_us: row.try_get("revoked_at_us")?,
        last_used_us: row.try_get("last_used_us")?,
    })
}

fn audit_from_row(row: &SqliteRow) -> Result<AuditRecord, StoreError> {
    let entry = AuditEntry {
        at_us: row.try_get("at_us")?,
        actor: row.try_get("actor")?,
        source: row.try_get("source")?,
        client: row.try_get("client")?,
        action: row.try_get("action")?,
        job: row.try_get("job")?,
        run_id: row.try_get("run_id")?,
        detail: row.try_get("detail")?,
    };
    Ok(AuditRecord { id: row.try_get("id")?, entry, prev_hash: row.try_get("prev_hash")?, hash: row.try_get("hash")? })
}
