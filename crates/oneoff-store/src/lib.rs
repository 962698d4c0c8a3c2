//! The run and log store: the only place in oneoff that speaks SQL.
//!
//! The store is the source of truth for run states and log lines: every view a client
//! sees can be rebuilt from it, and live notifications in the server only lower latency.
//! [`Store`] is the one type the server holds, with two backends behind it: SQLite (one
//! file, WAL), the embedded default for one machine, and PostgreSQL, which several replicas
//! share. The public surface is backend-neutral (plain domain types in and out, no SQL types
//! leak); each backend's SQL lives in its own module, and both pass the same story
//! (`tests.rs`).

mod access;
mod codec;
mod copy;
mod errors;
mod events;
mod health;
mod postgres;
mod replicas;
mod rows;
mod sqlite;
#[cfg(test)]
mod tests;
mod tickets;

use std::path::Path;

use oneoff_core::{LogEntry, RunId, RunProcesses, RunRecord, RunStatus, StoredParam};

pub use access::{Appended, AuditFilter, HeadUpdate, NewToken, TokenRecord};
pub use copy::{CopyError, LiveRuns, StoreContents};
pub use errors::ERROR_KINDS;
pub use events::{LogEvent, LogEvents, LogHead, LOG_CHANNEL};
use postgres::PgStore;
pub use postgres::PostgresOptions;
pub use replicas::{CancelRequest, Claim, Leftovers, LostReplica, Registration, ReplicaIdentity, ReplicaRecord};
use sqlite::SqliteStore;
pub use tickets::{NewStreamTicket, StreamTicketRecord, TicketCaps, TicketRefusal};

/// A handle to the store; cheap to clone, safe to share between tasks.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Calls the same method on whichever backend the store is, and counts its error if any
/// (see [`errors`]).
macro_rules! dispatch {
    ($store:expr, $backend:ident => $call:expr) => {
        match $store {
            $crate::Store::Sqlite($backend) => {
                let outcome = $call;
                $backend.errors.count(&outcome);
                outcome
            }
            $crate::Store::Postgres($backend) => {
                let outcome = $call;
                $backend.errors.count(&outcome);
                outcome
            }
        }
    };
}
pub(crate) use dispatch;

impl Store {
    /// Opens (creating if needed) a SQLite database file, checks it (damaged pages, a file
    /// that cannot be written) and brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        SqliteStore::open(path).await.map(Store::Sqlite)
    }

    /// Connects to a PostgreSQL database (`url` carries the password, if any: it is never
    /// logged nor put in an error), checks that it accepts writes and brings its schema up to date.
    pub async fn open_postgres(url: &str, options: &PostgresOptions) -> Result<Store, StoreError> {
        PgStore::open(url, options).await.map(Store::Postgres)
    }

    /// How many calls failed since the store opened, by kind (every kind of [`ERROR_KINDS`], in
    /// that order), counted by this process alone: other replicas count their own.
    pub fn error_counts(&self) -> [(&'static str, u64); ERROR_KINDS.len()] {
        match self {
            Store::Sqlite(store) => store.errors.snapshot(),
            Store::Postgres(store) => store.errors.snapshot(),
        }
    }

    /// How many runs wait in the queue, by job, over every replica (the queue is the
    /// database's). Read through the status index, so the cost follows the queue's length,
    /// which `max_queued_runs` bounds, not the size of the table.
    pub async fn queued_by_job(&self) -> Result<Vec<(String, u64)>, StoreError> {
        dispatch!(self, store => store.queued_by_job().await)
    }

    /// Which engine this is, for messages: `SQLite` or `PostgreSQL`.
    pub fn engine(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "SQLite",
            Store::Postgres(_) => "PostgreSQL",
        }
    }

    /// Succeeds when the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, store => store.ping().await)
    }

    /// Succeeds when the database answers and accepts writes. After a write failed for a fault
    /// of the storage (full, read-only, damaged, unreachable), this is that fault until a
    /// write succeeds; now and then it tries a small write itself, so an idle store is seen to
    /// recover.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        dispatch!(self, store => store.check_writable().await)
    }

    pub async fn close(&self) {
        dispatch!(self, store => store.close().await)
    }

    /// Records a new run in `queued` state and returns it with its id. Refused with
    /// [`StoreError::QueueFull`] when `max_queued` runs are queued already (all replicas'
    /// together, counted in the database).
    pub async fn insert_run(&self, new: &NewRun, max_queued: u32) -> Result<RunRecord, StoreError> {
        dispatch!(self, store => store.insert_run(new, max_queued).await)
    }

    pub async fn run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        dispatch!(self, store => store.run(id).await)
    }

    /// Newest first, filtered.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        dispatch!(self, store => store.list_runs(filter).await)
    }

    /// Runs in one state, oldest first (the queue order).
    pub async fn runs_with_status(&self, status: RunStatus) -> Result<Vec<RunRecord>, StoreError> {
        dispatch!(self, store => store.runs_with_status(status).await)
    }

    /// Moves a queued run to running.
    pub async fn mark_running(&self, id: RunId, started_at_us: i64) -> Result<(), StoreError> {
        dispatch!(self, store => store.mark_running(id, started_at_us).await)
    }

    /// Records where a running run's processes are, so that a later start can find them
    /// (see [`RunProcesses`]). Called before the spawn with the cgroup, after it with the rest.
    pub async fn set_run_processes(&self, id: RunId, processes: &RunProcesses) -> Result<(), StoreError> {
        dispatch!(self, store => store.set_run_processes(id, processes).await)
    }

    /// Where a run's processes were when it started; all `None` for a run that never started
    /// (or was started by a version of oneoff that did not record them).
    pub async fn run_processes(&self, id: RunId) -> Result<RunProcesses, StoreError> {
        dispatch!(self, store => store.run_processes(id).await)
    }

    /// Writes a run's final state. A run that is already final keeps its first outcome.
    pub async fn finish_run(&self, id: RunId, finish: &Finish) -> Result<(), StoreError> {
        debug_assert!(finish.status.is_final(), "finish_run needs a final status");
        dispatch!(self, store => store.finish_run(id, finish).await)
    }

    /// Appends log entries as one chunk. They must continue the run's sequence exactly:
    /// the store refuses a gap or a repeated sequence number.
    pub async fn append_log(&self, run_id: RunId, entries: &[LogEntry]) -> Result<(), StoreError> {
        self.append_logs(&[(run_id, entries)]).await?.pop().unwrap_or(Ok(()))
    }

    /// Appends one chunk to each of several runs' logs in a single transaction (group commit:
    /// one commit for every live run). The outer error means nothing was stored; otherwise
    /// there is one result per append, in order, and a refused append (a gap or a repeated
    /// sequence number) is skipped without failing the others.
    pub async fn append_logs(
        &self,
        appends: &[(RunId, &[LogEntry])],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        dispatch!(self, store => store.append_logs(appends).await)
    }

    /// Entries with `seq > after`, in order: at most `max_entries` of them and at most
    /// `max_bytes` of output, unless the first entry alone is larger (a read always makes
    /// progress). What a read costs is bounded by `max_bytes` plus one chunk, whatever the log holds.
    pub async fn read_log(
        &self,
        run_id: RunId,
        after: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        dispatch!(self, store => store.read_log(run_id, after, max_entries, max_bytes).await)
    }

    /// The last entries with `after < seq < before`, in ascending order (a backward read: the
    /// page before `before`). Bounded as [`Store::read_log`] is; when the bounds cut the page,
    /// it keeps the entries nearest `before`. What a read costs is bounded the same way,
    /// however far back `before` is.
    pub async fn read_log_before(
        &self,
        run_id: RunId,
        after: u64,
        before: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        dispatch!(self, store => store.read_log_before(run_id, after, before, max_entries, max_bytes).await)
    }

    /// The highest sequence number stored for a run (0 when it has no lines).
    pub async fn last_seq(&self, run_id: RunId) -> Result<u64, StoreError> {
        dispatch!(self, store => store.last_seq(run_id).await)
    }

    /// The stored head of each of `runs` that exists (a missing run is left out), read in one
    /// statement: how followers of runs executing elsewhere catch up without notifications.
    pub async fn log_heads(&self, runs: &[RunId]) -> Result<Vec<LogHead>, StoreError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, store => store.log_heads(runs).await)
    }

    /// Events announcing other replicas' commits of log lines and final states (see
    /// [`LogEvents`]); `None` on SQLite, which one process writes.
    pub fn log_events(&self) -> Option<LogEvents> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(store) => Some(store.log_events()),
        }
    }

    /// Deletes runs that finished before `cutoff_us`, with their logs; returns how many runs.
    pub async fn delete_finished_before(&self, cutoff_us: i64) -> Result<u64, StoreError> {
        dispatch!(self, store => store.delete_finished_before(cutoff_us).await)
    }
}

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
    /// The database server refused this user, password or database name.
    #[error("the database server refused access ({0})")]
    Access(String),
    /// The database server cannot be reached, or is shutting down or starting: nothing can be
    /// read or written until it is back. The store reconnects by itself.
    #[error("the database server cannot be reached ({0})")]
    Unavailable(String),
    /// A TLS connection to the database server was refused: its certificate is not the one the
    /// URL asks for, or it offers no TLS. Each connection is tried again, so it ends when the
    /// certificates or the URL are put right.
    #[error("the database server's TLS is not what the URL demands: {0}")]
    Tls(String),
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
    /// `max_queued_runs` runs are queued already.
    #[error("the run queue is full ({0} runs waiting); try again later")]
    QueueFull(u32),
}

impl StoreError {
    /// True for a fault of the disk or the file (full, read-only, damaged, failing) rather than
    /// of one query: while one lasts, no write can succeed.
    pub fn is_storage_fault(&self) -> bool {
        matches!(
            self,
            StoreError::Full(_)
                | StoreError::ReadOnly(_)
                | StoreError::Damaged(_)
                | StoreError::Io(_)
                | StoreError::Unavailable(_)
                | StoreError::Tls(_)
        )
    }

    /// A copy of this error if it is a storage fault (which holds only text), for a second reader.
    pub fn storage_fault(&self) -> Option<StoreError> {
        Some(match self {
            StoreError::Full(detail) => StoreError::Full(detail.clone()),
            StoreError::ReadOnly(detail) => StoreError::ReadOnly(detail.clone()),
            StoreError::Damaged(detail) => StoreError::Damaged(detail.clone()),
            StoreError::Io(detail) => StoreError::Io(detail.clone()),
            StoreError::Unavailable(detail) => StoreError::Unavailable(detail.clone()),
            StoreError::Tls(detail) => StoreError::Tls(detail.clone()),
            _ => return None,
        })
    }
}

impl From<sqlx::Error> for StoreError {
    /// Faults of the storage get their own variants (SQLite's primary result codes,
    /// PostgreSQL's SQLSTATE classes, a server that cannot be reached), so callers can say
    /// "storage full" or "unreachable" instead of "database error".
    fn from(error: sqlx::Error) -> StoreError {
        let detail = || match &error {
            sqlx::Error::Database(database) => database.message().to_string(),
            other => other.to_string(),
        };
        if let Some(fault) = postgres::storage_fault(&error) {
            return fault;
        }
        match sqlite_code(&error) {
            Some(SQLITE_FULL) => StoreError::Full(detail()),
            Some(SQLITE_READONLY) => StoreError::ReadOnly(detail()),
            Some(SQLITE_CORRUPT | SQLITE_NOTADB) => StoreError::Damaged(detail()),
            Some(SQLITE_IOERR) => StoreError::Io(detail()),
            _ => StoreError::Database(error),
        }
    }
}

const SQLITE_BUSY: i64 = 5;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_NOTADB: i64 = 26;

/// SQLite's primary result code in an error, if it is one of SQLite's.
fn sqlite_code(error: &sqlx::Error) -> Option<i64> {
    match error {
        sqlx::Error::Database(database) if database.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            database.code()?.parse::<i64>().ok().map(|code| code & 0xff)
        }
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
    /// The replica holding the run's secret values in memory, the only one that may claim it
    /// (`None` for a run without secret parameters: any replica may).
    pub held_by: Option<String>,
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
