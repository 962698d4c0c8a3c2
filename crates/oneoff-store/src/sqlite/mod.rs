//! The SQLite backend: one database file in the data directory, WAL mode, runtime queries.
//!
//! The embedded default for one machine: one server process owns the file.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use oneoff_core::{LogEntry, RunId, RunProcesses, RunRecord, RunStatus};
use sqlx::pool::PoolConnectionMetadata;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqlitePool};

use self::checkpoint::{CheckpointPolicy, Checkpointer, WriteTurn};
use crate::codec::{
    decode_chunk, decode_chunk_before, encode_argv, encode_params, plan_appends, plan_read, plan_read_before, Page,
};
use crate::errors::ErrorCounts;
use crate::health::{WriteHealth, PROBE_PERIOD};
use crate::rows::run_from_row;
use crate::{sqlite_code, Finish, NewRun, RunFilter, StoreError, SQLITE_BUSY, SQLITE_CANTOPEN};

mod access;
mod checkpoint;
mod copy;
mod replicas;
mod tickets;
use futures_util::{TryFutureExt, TryStreamExt};

/// A SQLite database file; cheap to clone, safe to share between tasks.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    health: WriteHealth,
    /// Every failed call, by kind (see `errors`).
    pub(crate) errors: ErrorCounts,
    /// Taken by every group commit of log lines and by the checkpointer's RESTART.
    turn: WriteTurn,
    pub(crate) checkpointer: Arc<Checkpointer>,
}

/// How long opening waits for another process's lock on the file.
const OPEN_BUSY_WAIT: Duration = Duration::from_secs(10);

pub(super) const RUN_COLUMNS: &str = "id, job, status, params, argv, requested_by, created_at_us, started_at_us, \
     finished_at_us, exit_code, signal, error, replica";

impl SqliteStore {
    /// Opens (creating if needed) the database file, checks it (damaged pages, a file that
    /// cannot be written) and brings its schema up to date.
    pub(crate) async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        // Another process on the same file (`oneoff token create --config` beside a running
        // server) can hold a lock that SQLite reports as busy at once, without its busy
        // timeout, for the few statements opening runs: wait for it as for any write.
        let deadline = std::time::Instant::now() + OPEN_BUSY_WAIT;
        loop {
            match SqliteStore::open_with(connect_options(path)).await {
                Err(StoreError::Database(error)) if sqlite_code(&error) == Some(SQLITE_CANTOPEN) => {
                    return Err(unwritable(path).unwrap_or(StoreError::Database(error)));
                }
                Err(StoreError::Database(error))
                    if sqlite_code(&error) == Some(SQLITE_BUSY) && std::time::Instant::now() < deadline =>
                {
                    tracing::debug!(%error, "the database file is busy; opening it again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                opened => return opened,
            }
        }
    }

    pub(crate) async fn open_with(options: SqliteConnectOptions) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_policy(options, CheckpointPolicy::default()).await
    }

    async fn open_with_policy(
        options: SqliteConnectOptions,
        policy: CheckpointPolicy,
    ) -> Result<SqliteStore, StoreError> {
        // No commit checkpoints: the checkpointer does, and no commit waits for it (see `checkpoint.rs`).
        let options = options.pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .after_release(|connection, metadata| no_transaction_left(connection, metadata))
            .connect_with(options.clone())
            .await?;
        // Before the migrations, which would otherwise be the first to trip over a bad page.
        quick_check(&pool).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let turn = WriteTurn::default();
        let checkpointer = Arc::new(Checkpointer::spawn(&options, turn.clone(), policy).await?);
        let store =
            SqliteStore { pool, health: WriteHealth::default(), turn, checkpointer, errors: ErrorCounts::default() };
        // A read-only file reads fine; the first run would be the first to find out.
        if let Err(error) = store.probe_write().await {
            store.close().await;
            return Err(error);
        }
        Ok(store)
    }

    /// Succeeds when the database answers a query.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Succeeds when the database answers and accepts writes. After a write failed for a fault
    /// of the disk or the file (full, read-only, damaged), this is that fault until a write
    /// succeeds; at most every [`PROBE_PERIOD`] it tries a one-page write itself, so an idle
    /// store is seen to recover once space is freed.
    pub(crate) async fn check_writable(&self) -> Result<(), StoreError> {
        self.ping().await?;
        match self.health.fault() {
            None => Ok(()),
            Some((fault, age)) if age < PROBE_PERIOD => Err(fault),
            Some(_) => self.probe_write().await,
        }
    }

    /// Rewrites the schema's user version with its own value: a real one-page commit.
    async fn probe_write(&self) -> Result<(), StoreError> {
        self.write(async {
            let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *transaction).await?;
            sqlx::query(&format!("PRAGMA user_version = {version}")).execute(&mut *transaction).await?;
            transaction.commit().await?;
            Ok(())
        })
        .await
    }

    /// Runs a write and keeps its outcome for [`SqliteStore::check_writable`].
    pub(crate) async fn write<T>(&self, write: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let result = write.await;
        self.health.record(&result);
        result
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Stops the checkpointer, then closes every connection.
    pub(crate) async fn close(&self) {
        self.checkpointer.stop().await;
        self.pool.close().await;
    }

    /// Records a new run in `queued` state and returns it with its id; refused with
    /// [`StoreError::QueueFull`] when `max_queued` runs are queued already.
    pub(crate) async fn insert_run(&self, new: &NewRun, max_queued: u32) -> Result<RunRecord, StoreError> {
        // Not `RETURNING id` with `fetch_one`: that stops stepping at the row, so the error of
        // the implicit COMMIT (a full disk) is never seen and an id that was rolled back is used.
        // One statement: the count and the insert see the same database (SQLite has one writer).
        let done = self
            .write(
                sqlx::query(
                    "INSERT INTO runs (job, status, params, argv, requested_by, created_at_us, held_by) \
                     SELECT ?, ?, ?, ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM runs WHERE status = 'queued') < ?",
                )
                .bind(&new.job)
                .bind(RunStatus::Queued.as_str())
                .bind(encode_params(&new.params))
                .bind(encode_argv(&new.argv))
                .bind(&new.requested_by)
                .bind(new.created_at_us)
                .bind(&new.held_by)
                .bind(i64::from(max_queued))
                .execute(&self.pool)
                .err_into(),
            )
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::QueueFull(max_queued));
        }
        let id = done.last_insert_rowid();
        self.run(RunId(id)).await?.ok_or(StoreError::RunNotFound(RunId(id)))
    }

    pub(crate) async fn queued_by_job(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT job, COUNT(*) FROM runs WHERE status = 'queued' GROUP BY job")
                .fetch_all(&self.pool)
                .await?;
        Ok(counts.into_iter().map(|(job, count)| (job, u64::try_from(count).unwrap_or(0))).collect())
    }

    pub(crate) async fn run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| run_from_row(&row)).transpose()
    }

    /// Newest first, filtered.
    pub(crate) async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1"));
        if let Some(job) = &filter.job {
            query.push(" AND job = ").push_bind(job.clone());
        }
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(user) = &filter.requested_by {
            query.push(" AND requested_by = ").push_bind(user.clone());
        }
        if let Some(jobs) = &filter.jobs_in {
            query
                .push(" AND job IN (SELECT value FROM json_each(")
                .push_bind(serde_json::Value::from(jobs.clone()).to_string())
                .push("))");
        }
        if let Some(before) = filter.before {
            query.push(" AND id < ").push_bind(before.0);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(filter.limit));
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Runs in one state, oldest first (the queue order).
    pub(crate) async fn runs_with_status(&self, status: RunStatus) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE status = ? ORDER BY id"))
            .bind(status.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Moves a queued run to running.
    pub(crate) async fn mark_running(&self, id: RunId, started_at_us: i64) -> Result<(), StoreError> {
        let done = self
            .write(
                sqlx::query("UPDATE runs SET status = ?, started_at_us = ? WHERE id = ? AND status = ?")
                    .bind(RunStatus::Running.as_str())
                    .bind(started_at_us)
                    .bind(id.0)
                    .bind(RunStatus::Queued.as_str())
                    .execute(&self.pool)
                    .err_into(),
            )
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::RunNotFound(id));
        }
        Ok(())
    }

    /// Records where a running run's processes are, so that a later start can find them
    /// (see [`RunProcesses`]). Called before the spawn with the cgroup, after it with the rest.
    pub(crate) async fn set_run_processes(&self, id: RunId, processes: &RunProcesses) -> Result<(), StoreError> {
        let ticks = processes.leader_start_ticks.map(|ticks| i64::try_from(ticks).unwrap_or(i64::MAX));
        sqlx::query("UPDATE runs SET cgroup = ?, process_group = ?, leader_start_ticks = ?, boot_id = ? WHERE id = ?")
            .bind(&processes.cgroup)
            .bind(processes.process_group)
            .bind(ticks)
            .bind(&processes.boot_id)
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Where a run's processes were when it started; all `None` for a run that never started
    /// (or was started by a version of oneoff that did not record them).
    pub(crate) async fn run_processes(&self, id: RunId) -> Result<RunProcesses, StoreError> {
        let row = sqlx::query("SELECT cgroup, process_group, leader_start_ticks, boot_id FROM runs WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::RunNotFound(id))?;
        let ticks: Option<i64> = row.try_get("leader_start_ticks")?;
        Ok(RunProcesses {
            cgroup: row.try_get("cgroup")?,
            process_group: row.try_get("process_group")?,
            leader_start_ticks: ticks.and_then(|ticks| u64::try_from(ticks).ok()),
            boot_id: row.try_get("boot_id")?,
        })
    }

    /// Writes a run's final state. A run that is already final keeps its first outcome.
    pub(crate) async fn finish_run(&self, id: RunId, finish: &Finish) -> Result<(), StoreError> {
        debug_assert!(finish.status.is_final(), "finish_run needs a final status");
        self.write(
            sqlx::query(
                "UPDATE runs SET status = ?, finished_at_us = ?, exit_code = ?, signal = ?, error = ? \
                 WHERE id = ? AND status IN ('queued', 'running')",
            )
            .bind(finish.status.as_str())
            .bind(finish.finished_at_us)
            .bind(finish.exit_code)
            .bind(finish.signal)
            .bind(&finish.error)
            .bind(id.0)
            .execute(&self.pool)
            .err_into(),
        )
        .await?;
        Ok(())
    }

    /// Appends one chunk to each of several runs' logs in a single transaction (group commit:
    /// one write lock and one WAL sync for every live run). The outer error means nothing was
    /// stored; otherwise there is one result per append, in order, and a refused append (a gap
    /// or a repeated sequence number) is skipped without failing the others.
    pub(crate) async fn append_logs(
        &self,
        appends: &[(RunId, &[LogEntry])],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.write(self.store_chunks(appends)).await
    }

    async fn store_chunks(&self, appends: &[(RunId, &[LogEntry])]) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let _turn = self.turn.lock().await;
        // IMMEDIATE takes the write lock before the reads: a deferred transaction that reads first
        // cannot wait for the lock in WAL mode and would fail with SQLITE_BUSY under load.
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Two statements for the whole group, whatever its size: the runs' stored heads, then
        // one multi-row insert. Round trips to SQLite's thread, not SQL, are the cost here.
        let runs: Vec<i64> = appends.iter().map(|(run_id, _)| run_id.0).collect();
        let heads: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT value, (SELECT MAX(last_seq) FROM log_chunks WHERE run_id = value) FROM json_each(?)",
        )
        .bind(serde_json::Value::from(runs).to_string())
        .fetch_all(&mut *transaction)
        .await?;
        let (results, rows) = plan_appends(appends, heads);
        // At most 4 parameters a row; SQLite allows 32,766 in one statement.
        for chunk in rows.chunks(4096) {
            QueryBuilder::<Sqlite>::new("INSERT INTO log_chunks (run_id, first_seq, last_seq, entries) ")
                .push_values(chunk, |mut row, chunk| {
                    row.push_bind(chunk.run.0)
                        .push_bind(seq_column(chunk.first_seq))
                        .push_bind(seq_column(chunk.last_seq))
                        .push_bind(&chunk.data);
                })
                .build()
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(results)
    }

    /// Entries with `seq > after`, in order: at most `max_entries` of them and at most
    /// `max_bytes` of output, unless the first entry alone is larger (a read always makes
    /// progress). What a read costs is bounded by `max_bytes` plus one chunk, whatever the log holds.
    pub(crate) async fn read_log(
        &self,
        run_id: RunId,
        after: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        // First which chunks the page needs, from their sizes alone: `length()` of a blob does
        // not load it. Streaming every chunk after `after` instead would let SQLite's thread
        // read rows ahead of the decoding here (sqlx buffers 50 of them), whatever the page needs.
        let sizes: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT first_seq, last_seq, length(entries) FROM log_chunks \
             WHERE run_id = ? AND last_seq > ? ORDER BY last_seq LIMIT ?",
        )
        .bind(run_id.0)
        .bind(seq_column(after))
        .bind(i64::try_from(max_entries).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let through = plan_read(sizes, after, max_entries, max_bytes);
        let Some(through) = through else { return Ok(Vec::new()) };
        let mut page = Page::new(max_entries, max_bytes);
        let mut chunks = sqlx::query(
            "SELECT first_seq, entries FROM log_chunks WHERE run_id = ? AND last_seq > ? AND last_seq <= ? \
             ORDER BY last_seq",
        )
        .bind(run_id.0)
        .bind(seq_column(after))
        .bind(through)
        .fetch(&self.pool);
        while !page.is_full() {
            let Some(row) = chunks.try_next().await? else { break };
            let first_seq: i64 = row.try_get("first_seq")?;
            let data: &[u8] = row.try_get("entries")?;
            decode_chunk(first_seq.max(0) as u64, data, after, &mut page)?;
        }
        Ok(page.into_entries())
    }

    /// The last entries with `after < seq < before`, in ascending order, within the same
    /// bounds as [`Self::read_log`]; a page cut by them keeps the entries nearest `before`.
    pub(crate) async fn read_log_before(
        &self,
        run_id: RunId,
        after: u64,
        before: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        if before <= after.saturating_add(1) {
            return Ok(Vec::new());
        }
        // The chunk holding `before - 1` bounds the scan from above, so that the index on
        // `(run_id, last_seq)` starts there rather than at the head, however far back the page is.
        let sizes: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT first_seq, last_seq, length(entries) FROM log_chunks \
             WHERE run_id = ?1 AND last_seq > ?2 AND first_seq < ?3 \
             AND last_seq <= COALESCE((SELECT MIN(last_seq) FROM log_chunks WHERE run_id = ?1 AND last_seq >= ?3 - 1), ?3) \
             ORDER BY last_seq DESC LIMIT ?4",
        )
        .bind(run_id.0)
        .bind(seq_column(after))
        .bind(seq_column(before))
        .bind(i64::try_from(max_entries).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let range = plan_read_before(sizes, after, before, max_entries, max_bytes);
        let Some((oldest, newest)) = range else { return Ok(Vec::new()) };
        let mut page = Page::new(max_entries, max_bytes);
        let mut chunks = sqlx::query(
            "SELECT first_seq, entries FROM log_chunks WHERE run_id = ? AND last_seq >= ? AND last_seq <= ? \
             ORDER BY last_seq DESC",
        )
        .bind(run_id.0)
        .bind(oldest)
        .bind(newest)
        .fetch(&self.pool);
        while !page.is_full() {
            let Some(row) = chunks.try_next().await? else { break };
            let first_seq: i64 = row.try_get("first_seq")?;
            let data: &[u8] = row.try_get("entries")?;
            decode_chunk_before(first_seq.max(0) as u64, data, after, before, &mut page)?;
        }
        Ok(page.into_entries_oldest_first())
    }

    /// The highest sequence number stored for a run (0 when it has no lines).
    /// Each existing run's stored head, in one statement (one snapshot).
    pub(crate) async fn log_heads(&self, runs: &[RunId]) -> Result<Vec<crate::events::LogHead>, StoreError> {
        let ids: Vec<i64> = runs.iter().map(|run| run.0).collect();
        let rows: Vec<(i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, status, (SELECT MAX(last_seq) FROM log_chunks WHERE run_id = id) FROM runs \
             WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(serde_json::Value::from(ids).to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|(id, status, last)| crate::postgres::head_from_row(id, &status, last)).collect()
    }

    pub(crate) async fn last_seq(&self, run_id: RunId) -> Result<u64, StoreError> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(last_seq) FROM log_chunks WHERE run_id = ?")
            .bind(run_id.0)
            .fetch_one(&self.pool)
            .await?;
        Ok(last.map_or(0, |seq| seq.max(0) as u64))
    }

    /// Deletes runs that finished before `cutoff_us`, with their logs; returns how many runs.
    pub(crate) async fn delete_finished_before(&self, cutoff_us: i64) -> Result<u64, StoreError> {
        self.write(self.delete_finished(cutoff_us)).await
    }

    async fn delete_finished(&self, cutoff_us: i64) -> Result<u64, StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM log_chunks WHERE run_id IN (SELECT id FROM runs WHERE finished_at_us IS NOT NULL AND finished_at_us < ?)",
        )
        .bind(cutoff_us)
        .execute(&mut *transaction)
        .await?;
        let deleted = sqlx::query("DELETE FROM runs WHERE finished_at_us IS NOT NULL AND finished_at_us < ?")
            .bind(cutoff_us)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        transaction.commit().await?;
        Ok(deleted)
    }
}

/// The connection settings of the database file at `path`.
pub(crate) fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL loses at most the last transactions on power loss, never corrupts.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // After a WAL reset, the file shrinks back to this; without it, it keeps its peak size.
        .pragma("journal_size_limit", "67108864")
}

/// Why SQLite cannot open the database for writing, when the file or its directory refuses
/// writes: SQLite only says "unable to open database file". The directory is tried with a
/// file of our own (created and removed at once), as it must take the `-wal` and `-shm` files.
fn unwritable(path: &Path) -> Option<StoreError> {
    let refused = |error: &std::io::Error| {
        matches!(error.kind(), std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied)
    };
    if path.exists() {
        if let Err(error) = std::fs::OpenOptions::new().write(true).open(path) {
            return refused(&error).then(|| StoreError::ReadOnly(format!("cannot write {}: {error}", path.display())));
        }
    }
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let probe = dir.join(".oneoff-write-check");
    match std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(error) => {
            refused(&error).then(|| StoreError::ReadOnly(format!("cannot create files in {}: {error}", dir.display())))
        }
    }
}

/// A connection goes back to the pool only with no transaction left open on it.
///
/// When a statement or a COMMIT fails with SQLITE_FULL or SQLITE_IOERR, SQLite rolls the whole
/// transaction back by itself. sqlx does not see that: the ROLLBACK it sends when the
/// `Transaction` is dropped then fails ("no transaction is active"), so it still counts one
/// transaction open on the connection, and every later `begin_with` there fails with
/// "attempted to call begin_with at non-zero transaction depth" for as long as the pool keeps
/// the connection, long after the disk has space again. Such a connection is closed here
/// instead (the pool opens a fresh one when it needs it).
fn no_transaction_left(
    connection: &mut SqliteConnection,
    _: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        // The rollback queued by a dropped transaction is done once this ping is answered.
        connection.ping().await?;
        let left_open = connection.is_in_transaction();
        if left_open {
            tracing::debug!("closing a database connection left inside a failed transaction");
        }
        Ok(!left_open)
    })
}

/// SQLite's `quick_check`: every page readable and well-formed (indexes are not compared
/// with their tables). It reads the whole file once.
async fn quick_check(pool: &SqlitePool) -> Result<(), StoreError> {
    let problems: Vec<String> = sqlx::query_scalar("PRAGMA quick_check(5)").fetch_all(pool).await?;
    match problems.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => {
            let found = problems.join("\n").lines().map(str::trim).collect::<Vec<_>>().join("; ");
            Err(StoreError::Damaged(format!("SQLite's quick_check found: {found}")))
        }
    }
}

pub(super) fn seq_column(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}
