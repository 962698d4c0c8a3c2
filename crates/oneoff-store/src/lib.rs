//! The run and log store: the only place in oneoff that speaks SQL.
//!
//! The store is the source of truth for run states and log lines: every view a client
//! sees can be rebuilt from it, and live notifications in the server only lower latency.
//! SQLite (embedded, WAL) is the backend today; the public surface is backend-neutral
//! (plain domain types in and out, no SQL types leak), so a PostgreSQL backend can sit
//! behind the same methods and pass the same [`story`] tests.

mod access;
mod codec;
mod sqlite;
#[cfg(test)]
mod tests;

use oneoff_core::{RunId, RunStatus, StoredParam};

pub use access::{Appended, AuditFilter, HeadUpdate, NewToken, TokenRecord};
pub use sqlite::Store;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
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
