//! Rows into domain records, once for both backends: every column the store reads has a
//! type both SQLite and PostgreSQL decode, so each record is read by one function whatever
//! row it comes from.

use std::str::FromStr;

use oneoff_core::audit::{AuditAction, AuditEntry, AuditRecord, RecordFormat};
use oneoff_core::{RunId, RunRecord, RunStatus};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Postgres, Row, Sqlite, Type};

use crate::codec::{decode_argv, decode_params};
use crate::{ReplicaRecord, StoreError, TokenRecord};

/// A column type both backends decode.
pub(crate) trait Column:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Column for T where T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> {}

/// A row of either backend, read by column name.
pub(crate) trait StoreRow {
    fn column<T: Column>(&self, name: &str) -> Result<T, sqlx::Error>;
}

impl StoreRow for SqliteRow {
    fn column<T: Column>(&self, name: &str) -> Result<T, sqlx::Error> {
        self.try_get(name)
    }
}

impl StoreRow for PgRow {
    fn column<T: Column>(&self, name: &str) -> Result<T, sqlx::Error> {
        self.try_get(name)
    }
}

pub(crate) fn run_from_row(row: &impl StoreRow) -> Result<RunRecord, StoreError> {
    let status_text: String = row.column("status")?;
    let status = RunStatus::from_str(&status_text).map_err(StoreError::Corrupt)?;
    let exit_code: Option<i64> = row.column("exit_code")?;
    let signal: Option<i64> = row.column("signal")?;
    Ok(RunRecord {
        id: RunId(row.column("id")?),
        job: row.column("job")?,
        status,
        params: decode_params(&row.column::<String>("params")?)?,
        argv: decode_argv(&row.column::<String>("argv")?)?,
        requested_by: row.column("requested_by")?,
        created_at_us: row.column("created_at_us")?,
        started_at_us: row.column("started_at_us")?,
        finished_at_us: row.column("finished_at_us")?,
        exit_code: exit_code.and_then(|code| i32::try_from(code).ok()),
        signal: signal.and_then(|signal| i32::try_from(signal).ok()),
        error: row.column("error")?,
        replica: row.column("replica")?,
    })
}

pub(crate) fn token_from_row(row: &impl StoreRow) -> Result<TokenRecord, StoreError> {
    let groups: String = row.column("groups")?;
    Ok(TokenRecord {
        id: row.column("id")?,
        name: row.column("name")?,
        user: row.column("user")?,
        groups: serde_json::from_str(&groups).map_err(|_| StoreError::Corrupt(format!("token groups: {groups}")))?,
        created_by: row.column("created_by")?,
        created_at_us: row.column("created_at_us")?,
        expires_at_us: row.column("expires_at_us")?,
        revoked_at_us: row.column("revoked_at_us")?,
        last_used_us: row.column("last_used_us")?,
        parent_id: row.column("parent_id")?,
    })
}

/// A stored record; one without a message was written before actions were codes, and is
/// read (and hashed) as it was written.
pub(crate) fn audit_from_row(row: &impl StoreRow) -> Result<AuditRecord, StoreError> {
    let stored_action: String = row.column("action")?;
    let action = AuditAction::decode(&stored_action);
    let actor: String = row.column("actor")?;
    let job: Option<String> = row.column("job")?;
    let run_id: Option<i64> = row.column("run_id")?;
    let (message, format) = match row.column::<Option<String>>("message")? {
        Some(message) => (message, RecordFormat::Coded),
        None => (action.sentence(&actor, job.as_deref(), run_id), RecordFormat::Legacy { stored_action }),
    };
    let entry = AuditEntry {
        at_us: row.column("at_us")?,
        actor,
        source: row.column("source")?,
        client: row.column("client")?,
        action,
        message,
        job,
        run_id,
        detail: row.column("detail")?,
    };
    Ok(AuditRecord {
        id: row.column("id")?,
        entry,
        format,
        prev_hash: row.column("prev_hash")?,
        hash: row.column("hash")?,
    })
}

pub(crate) fn replica_from_row(row: &impl StoreRow) -> Result<ReplicaRecord, StoreError> {
    let pid: i64 = row.column("pid")?;
    let running: i64 = row.column("running")?;
    Ok(ReplicaRecord {
        name: row.column("name")?,
        instance: row.column("instance")?,
        host: row.column("host")?,
        boot_id: row.column("boot_id")?,
        pid: u32::try_from(pid).unwrap_or(0),
        started_at_us: row.column("started_at_us")?,
        heartbeat_at_us: row.column("heartbeat_at_us")?,
        heartbeat_age_ms: row.column("age_ms")?,
        draining: row.column("draining")?,
        running: u32::try_from(running).unwrap_or(u32::MAX),
    })
}
