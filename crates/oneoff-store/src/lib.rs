//! The run and log store: the only place in oneoff that speaks SQL.
//!
//! The store is the source of truth for run states and log lines: every view a client
//! sees can be rebuilt from it, and live notifications in the server only lower latency.
//! SQLite (embedded, WAL) is the backend today; the public surface is backend-neutral
//! (plain domain types in and out, no SQL types leak), so a PostgreSQL backend can sit
//! behind the same methods and pass the same [`story`] tests.

mod access;
mod codec;
mod health;
mod sqlite;
#[cfg(test)]
mod tests;

use oneoff_core::{RunId, RunStatus, StoredParam};

pub use access::{Appended, AuditFilter, HeadUpdate, NewToken, TokenRecord};
#[cfg(test)]
use sqlite::connect_options;
pub use sqlite::Store;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system holding the database has no space left: nothing can be written until
    /// space is freed. The store recovers by itself once it is.
    #[error("storage full: the disk holding the database has no space left ({0})")]
    Full(String),
    /// The database file, its directory or its file system does not accept writes.
    #[error("the database is read-only ({0})")]
    ReadOnly(String),
    /// SQLite found damaged pages, or the file is not a database at all.
    #[error("the database file is damaged ({0})")]
    Damaged(String),
    /// The operating system failed a read or a write of the database file.
    #[error("disk I/O error on the database file ({0})")]
    Io(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row that this version of oneoff cannot read (written by a newer version, or edited by hand).
    #[error("unreadable row: {0}")]
    Corrupt(String),
    /// Log entries that do not continue the run's sequence (a bug in the caller).
    #[error("log of run {run}: expected sequence number {expected}, got {found}")]
    Sequence { run: RunId, expected: u64, found: u64 },
    #[error("run {0} does not exist")]
    RunNotFound(RunId),
}

impl StoreError {
    /// True for a fault of the disk or the file (full, read-only, damaged, failing) rather than
    /// of one query: while one lasts, no write can succeed.
    pub fn is_storage_fault(&self) -> bool {
        matches!(self, StoreError::Full(_) | StoreError::ReadOnly(_) | StoreError::Damaged(_) | StoreError::Io(_))
    }

    /// A copy of this error if it is a storage fault (which holds only text), for a second reader.
    pub fn storage_fault(&self) -> Option<StoreError> {
        Some(match self {
            StoreError::Full(detail) => StoreError::Full(detail.clone()),
            StoreError::ReadOnly(detail) => StoreError::ReadOnly(detail.clone()),
            StoreError::Damaged(detail) => StoreError::Damaged(detail.clone()),
            StoreError::Io(detail) => StoreError::Io(detail.clone()),
            _ => return None,
        })
    }
}

impl From<sqlx::Error> for StoreError {
    /// Faults of the disk or the file get their own variants (SQLite's primary result codes),
    /// so callers can say "storage full" or "read-only" instead of "database error".
    fn from(error: sqlx::Error) -> StoreError {
        let detail = || match &error {
            sqlx::Error::Database(database) => database.message().to_string(),
            other => other.to_string(),
        };
        match sqlite_code(&error) {
            Some(SQLITE_FULL) => StoreError::Full(detail()),
            Some(SQLITE_READONLY) => StoreError::ReadOnly(detail()),
            Some(SQLITE_CORRUPT | SQLITE_NOTADB) => StoreError::Damaged(detail()),
            Some(SQLITE_IOERR) => StoreError::Io(detail()),
            _ => StoreError::Database(error),
        }
    }
}

const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_NOTADB: i64 = 26;

/// SQLite's primary result code in an error, if it is one of SQLite's.
fn sqlite_code(error: &sqlx::Error) -> Option<i64> {
    match error {
        sqlx::Error::Database(database) => database.code()?.parse::<i64>().ok().map(|code| code & 0xff),
        _ => None,
    }
}

/// A run about to be queued.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub job: String,
    pub params: Vec<(String, StoredParam)>,
    pub argv: Vec<String>,
    pub requested_by: Option<String>,
    pub created_at_us: i64,
}

/// How a run ended, written once.
#[derive(Debug, Clone)]
pub struct Finish {
    pub status: RunStatus,
    pub finished_at_us: i64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
}

/// Filters of a run listing; newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub job: Option<String>,
    pub status: Option<RunStatus>,
    /// Only runs requested by this user.
    pub requested_by: Option<String>,
    /// Only runs of these jobs (the ones the caller may see); `None`: all.
    pub jobs_in: Option<Vec<String>>,
    /// Only runs with a smaller id (the next page).
    pub before: Option<RunId>,
    pub limit: u32,
}
