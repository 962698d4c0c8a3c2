//! The PostgreSQL backend: one database that several replicas share, runtime queries.
//!
//! What SQLite gets from its one writer, PostgreSQL gets from locks: appending to a run's log
//! locks that run's row first (so the stored head it reads is the head it extends), and the
//! audit chain is extended under one transaction-level advisory lock (so two replicas cannot
//! fork it). Everything else is plain statements under READ COMMITTED.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use futures_util::{TryFutureExt, TryStreamExt};
use oneoff_core::{LogEntry, RunId, RunProcesses, RunRecord, RunStatus};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, QueryBuilder, Row};

use crate::codec::{
    decode_chunk, decode_chunk_before, encode_argv, encode_params, plan_appends, plan_read, plan_read_before, Page,
};
use crate::errors::ErrorCounts;
use crate::events::LogHead;
use crate::health::{WriteHealth, PROBE_PERIOD};
use crate::rows::run_from_row;
use crate::{Finish, NewRun, RunFilter, StoreError};

mod access;
mod copy;
pub(crate) mod events;
mod replicas;
mod tickets;
mod tls;

/// How a replica connects to PostgreSQL (`[server] database_pool`, `database_statement_timeout`).
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections this replica keeps at most.
    pub max_connections: u32,
    /// A statement running longer is cancelled by the server (an error, never a hang).
    pub statement_timeout: Duration,
    /// How long a request waits for a free connection, or for the server to accept one.
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> PostgresOptions {
        PostgresOptions {
            max_connections: 10,
            statement_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// A PostgreSQL database; cheap to clone, safe to share between tasks.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    health: WriteHealth,
    /// Every failed call, by kind (see `errors`).
    pub(crate) errors: ErrorCounts,
}

pub(super) const RUN_COLUMNS: &str = "id, job, status, params, argv, requested_by, created_at_us, started_at_us, \
     finished_at_us, exit_code, signal, error, replica";

/// The advisory lock key under which the audit chain is extended ("oneoff:a").
pub(crate) const AUDIT_LOCK: i64 = 0x6f6e_656f_6666_3a61;

impl PgStore {
    /// Connects, brings the schema up to date (sqlx's migrator holds an advisory lock, so
    /// replicas starting together migrate once) and makes one write.
    pub(crate) async fn open(url: &str, options: &PostgresOptions) -> Result<PgStore, StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::Unavailable(format!("the database URL is not usable: {}", redact(error))))?
            .application_name("oneoff")
            .options([("statement_timeout", format!("{}ms", options.statement_timeout.as_millis()))]);
        let (tls, connect) = tls::prepare(url, connect)?;
        // One connection first: a pool that cannot connect only says it timed out, while this
        // says why (refused, unknown host, wrong password, a certificate from another CA).
        let first = PgConnection::connect_with(&connect).await;
        let first = first.map_err(|error| tls::refusal(&error, Some(&tls)).unwrap_or_else(|| error.into()))?;
        first.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        let store = PgStore { pool, health: WriteHealth::default(), errors: ErrorCounts::default() };
        sqlx::migrate!("./migrations/postgres").run(&store.pool).await?;
        store.probe_write().await?;
        Ok(store)
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn check_writable(&self) -> Result<(), StoreError> {
        if let Err(error) = self.ping().await {
            // A server that went away is a fault a write would meet too; keep it for the others.
            self.health.record::<()>(&Err(error.storage_fault().unwrap_or(StoreError::Unavailable(error.to_string()))));
            return Err(error);
        }
        match self.health.fault() {
            None => Ok(()),
            Some((fault, age)) if age < PROBE_PERIOD => Err(fault),
            Some(_) => self.probe_write().await,
        }
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        self.write(
            sqlx::query(
                "INSERT INTO write_probe (singleton, at_us) VALUES (1, 0) \
                 ON CONFLICT (singleton) DO UPDATE SET at_us = write_probe.at_us + 1",
            )
            .execute(&self.pool)
            .err_into(),
        )
        .await?;
        Ok(())
    }

    /// Runs a write and keeps its outcome for [`PgStore::check_writable`].
    pub(crate) async fn write<T>(&self, write: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let result = write.await;
        self.health.record(&result);
        result
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    /// Queues a run unless `max_queued` runs are queued already, under the queue lock (a
    /// count across rows: two replicas inserting at once would both see room).
    pub(crate) async fn insert_run(&self, new: &NewRun, max_queued: u32) -> Result<RunRecord, StoreError> {
        self.write(async {
            let mut transaction = self.pool.begin().await?;
            replicas::lock_queue(&mut transaction).await?;
            let row = sqlx::query(&format!(
                "INSERT INTO runs (job, status, params, argv, requested_by, created_at_us, held_by) \
                 SELECT $1, $2, $3, $4, $5, $6, $7 WHERE (SELECT COUNT(*) FROM runs WHERE status = 'queued') < $8 \
                 RETURNING {RUN_COLUMNS}"
            ))
            .bind(&new.job)
            .bind(RunStatus::Queued.as_str())
            .bind(encode_params(&new.params))
            .bind(encode_argv(&new.argv))
            .bind(&new.requested_by)
            .bind(new.created_at_us)
            .bind(&new.held_by)
            .bind(i64::from(max_queued))
            .fetch_optional(&mut *transaction)
            .await?;
            let Some(row) = row else { return Err(StoreError::QueueFull(max_queued)) };
            let record = run_from_row(&row)?;
            transaction.commit().await?;
            Ok(record)
        })
        .await
    }

    pub(crate) async fn queued_by_job(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT job, COUNT(*) FROM runs WHERE status = 'queued' GROUP BY job")
                .fetch_all(&self.pool)
                .await?;
        Ok(counts.into_iter().map(|(job, count)| (job, u64::try_from(count).unwrap_or(0))).collect())
    }

    pub(crate) async fn run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| run_from_row(&row)).transpose()
    }

    pub(crate) async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        // PostgreSQL's text cannot hold a NUL, so no stored name has one; binding it would
        // fail the query (a 500 for `?job=ok%00`) instead of matching nothing.
        if filter.job.iter().chain(&filter.requested_by).any(|name| name.contains('\0')) {
            return Ok(Vec::new());
        }
        let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {RUN_COLUMNS} FROM runs WHERE TRUE"));
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
            query.push(" AND job = ANY(").push_bind(jobs.clone()).push(")");
        }
        if let Some(before) = filter.before {
            query.push(" AND id < ").push_bind(before.0);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(filter.limit));
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(run_from_row).collect()
    }

    pub(crate) async fn runs_with_status(&self, status: RunStatus) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE status = $1 ORDER BY id"))
            .bind(status.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    pub(crate) async fn mark_running(&self, id: RunId, started_at_us: i64) -> Result<(), StoreError> {
        let done = self
            .write(
                sqlx::query("UPDATE runs SET status = $1, started_at_us = $2 WHERE id = $3 AND status = $4")
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

    pub(crate) async fn set_run_processes(&self, id: RunId, processes: &RunProcesses) -> Result<(), StoreError> {
        let ticks = processes.leader_start_ticks.map(|ticks| i64::try_from(ticks).unwrap_or(i64::MAX));
        sqlx::query(
            "UPDATE runs SET cgroup = $1, process_group = $2, leader_start_ticks = $3, boot_id = $4 WHERE id = $5",
        )
        .bind(&processes.cgroup)
        .bind(processes.process_group.map(i64::from))
        .bind(ticks)
        .bind(&processes.boot_id)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn run_processes(&self, id: RunId) -> Result<RunProcesses, StoreError> {
        let row = sqlx::query("SELECT cgroup, process_group, leader_start_ticks, boot_id FROM runs WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::RunNotFound(id))?;
        let group: Option<i64> = row.try_get("process_group")?;
        let ticks: Option<i64> = row.try_get("leader_start_ticks")?;
        Ok(RunProcesses {
            cgroup: row.try_get("cgroup")?,
            process_group: group.and_then(|group| i32::try_from(group).ok()),
            leader_start_ticks: ticks.and_then(|ticks| u64::try_from(ticks).ok()),
            boot_id: row.try_get("boot_id")?,
        })
    }

    pub(crate) async fn finish_run(&self, id: RunId, finish: &Finish) -> Result<(), StoreError> {
        self.write(self.finish_and_notify(id, finish)).await
    }

    /// The final state, and in the same transaction the notification that the run is
    /// finished (with its stored head), so other replicas' followers end without polling.
    async fn finish_and_notify(&self, id: RunId, finish: &Finish) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        let finished: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE runs SET status = $1, finished_at_us = $2, exit_code = $3, signal = $4, error = $5 \
             WHERE id = $6 AND status IN ('queued', 'running') \
             RETURNING (SELECT MAX(last_seq) FROM log_chunks WHERE run_id = $6)",
        )
        .bind(finish.status.as_str())
        .bind(finish.finished_at_us)
        .bind(finish.exit_code.map(i64::from))
        .bind(finish.signal.map(i64::from))
        .bind(&finish.error)
        .bind(id.0)
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(last_seq) = finished {
            let head = LogHead { run: id, last_seq: last_seq.map_or(0, |seq| seq.max(0) as u64), finished: true };
            events::notify(&mut transaction, &[head]).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    pub(crate) async fn append_logs(
        &self,
        appends: &[(RunId, &[LogEntry])],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.write(self.store_chunks(appends)).await
    }

    async fn store_chunks(&self, appends: &[(RunId, &[LogEntry])]) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let mut runs: Vec<i64> = appends.iter().map(|(run_id, _)| run_id.0).collect();
        runs.sort_unstable();
        runs.dedup();
        // Each run's row is locked first, in id order (no deadlock between two groups), so that
        // a second writer of the same run (a survivor writing "replica lost" while the lost
        // replica still writes) waits, then reads the head this commit leaves.
        sqlx::query("SELECT id FROM runs WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&runs)
            .fetch_all(&mut *transaction)
            .await?;
        let heads: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT run, (SELECT MAX(last_seq) FROM log_chunks WHERE run_id = run) FROM unnest($1::BIGINT[]) AS run",
        )
        .bind(&runs)
        .fetch_all(&mut *transaction)
        .await?;
        let (results, rows) = plan_appends(appends, heads);
        let run_ids: Vec<i64> = rows.iter().map(|row| row.run.0).collect();
        let firsts: Vec<i64> = rows.iter().map(|row| seq_column(row.first_seq)).collect();
        let lasts: Vec<i64> = rows.iter().map(|row| seq_column(row.last_seq)).collect();
        let data: Vec<&[u8]> = rows.iter().map(|row| row.data.as_slice()).collect();
        if !run_ids.is_empty() {
            // One statement whatever the group's size: four arrays, unnested together.
            sqlx::query(
                "INSERT INTO log_chunks (run_id, first_seq, last_seq, entries) \
                 SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BYTEA[])",
            )
            .bind(&run_ids)
            .bind(&firsts)
            .bind(&lasts)
            .bind(&data)
            .execute(&mut *transaction)
            .await?;
        }
        // Other replicas' followers learn of these lines when, and only if, they are committed.
        let heads: Vec<LogHead> = appends
            .iter()
            .zip(&results)
            .filter(|(_, result)| result.is_ok())
            .filter_map(|((run, entries), _)| {
                Some(LogHead { run: *run, last_seq: entries.last()?.seq, finished: false })
            })
            .collect();
        events::notify(&mut transaction, &heads).await?;
        transaction.commit().await?;
        Ok(results)
    }

    pub(crate) async fn read_log(
        &self,
        run_id: RunId,
        after: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        // Which chunks the page needs, from their sizes alone (see the SQLite backend).
        let sizes: Vec<(i64, i64, i32)> = sqlx::query_as(
            "SELECT first_seq, last_seq, octet_length(entries) FROM log_chunks \
             WHERE run_id = $1 AND last_seq > $2 ORDER BY last_seq LIMIT $3",
        )
        .bind(run_id.0)
        .bind(seq_column(after))
        .bind(i64::try_from(max_entries).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let through = plan_read(
            sizes.into_iter().map(|(first, last, size)| (first, last, i64::from(size))),
            after,
            max_entries,
            max_bytes,
        );
        let Some(through) = through else { return Ok(Vec::new()) };
        let mut page = Page::new(max_entries, max_bytes);
        let mut chunks = sqlx::query(
            "SELECT first_seq, entries FROM log_chunks WHERE run_id = $1 AND last_seq > $2 AND last_seq <= $3 \
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
        // Bounded from above by the chunk holding `before - 1` (see the SQLite backend).
        let sizes: Vec<(i64, i64, i32)> = sqlx::query_as(
            "SELECT first_seq, last_seq, octet_length(entries) FROM log_chunks \
             WHERE run_id = $1 AND last_seq > $2 AND first_seq < $3 \
             AND last_seq <= COALESCE((SELECT MIN(last_seq) FROM log_chunks WHERE run_id = $1 AND last_seq >= $3 - 1), $3) \
             ORDER BY last_seq DESC LIMIT $4",
        )
        .bind(run_id.0)
        .bind(seq_column(after))
        .bind(seq_column(before))
        .bind(i64::try_from(max_entries).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let range = plan_read_before(
            sizes.into_iter().map(|(first, last, size)| (first, last, i64::from(size))),
            after,
            before,
            max_entries,
            max_bytes,
        );
        let Some((oldest, newest)) = range else { return Ok(Vec::new()) };
        let mut page = Page::new(max_entries, max_bytes);
        let mut chunks = sqlx::query(
            "SELECT first_seq, entries FROM log_chunks WHERE run_id = $1 AND last_seq >= $2 AND last_seq <= $3 \
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

    /// Each existing run's stored head, in one statement (so a final status and the head are
    /// read from one snapshot: a final run's head is its last line).
    pub(crate) async fn log_heads(&self, runs: &[RunId]) -> Result<Vec<LogHead>, StoreError> {
        let ids: Vec<i64> = runs.iter().map(|run| run.0).collect();
        let rows: Vec<(i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, status, (SELECT MAX(last_seq) FROM log_chunks WHERE run_id = id) FROM runs WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|(id, status, last)| head_from_row(id, &status, last)).collect()
    }

    pub(crate) fn log_events(&self) -> crate::events::LogEvents {
        events::listen(&self.pool)
    }

    pub(crate) async fn last_seq(&self, run_id: RunId) -> Result<u64, StoreError> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(last_seq) FROM log_chunks WHERE run_id = $1")
            .bind(run_id.0)
            .fetch_one(&self.pool)
            .await?;
        Ok(last.map_or(0, |seq| seq.max(0) as u64))
    }

    pub(crate) async fn delete_finished_before(&self, cutoff_us: i64) -> Result<u64, StoreError> {
        self.write(self.delete_finished(cutoff_us)).await
    }

    async fn delete_finished(&self, cutoff_us: i64) -> Result<u64, StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM log_chunks WHERE run_id IN \
             (SELECT id FROM runs WHERE finished_at_us IS NOT NULL AND finished_at_us < $1)",
        )
        .bind(cutoff_us)
        .execute(&mut *transaction)
        .await?;
        let deleted = sqlx::query("DELETE FROM runs WHERE finished_at_us IS NOT NULL AND finished_at_us < $1")
            .bind(cutoff_us)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        transaction.commit().await?;
        Ok(deleted)
    }
}

/// The fault of the database (not of one statement) a PostgreSQL error is, by SQLSTATE class,
/// or a server that cannot be reached at all; `None` for an error of one statement (and for
/// every SQLite error).
pub(crate) fn storage_fault(error: &sqlx::Error) -> Option<StoreError> {
    // A refused certificate arrives as an I/O or TLS error: said in its own words.
    if let Some(refusal) = tls::refusal(error, None) {
        return Some(refusal);
    }
    match error {
        sqlx::Error::Database(database) => {
            let database = database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
            let detail = database.message().to_string();
            let code = database.code();
            Some(match code {
                // disk_full
                "53100" => StoreError::Full(detail),
                // read_only_sql_transaction: a standby, or default_transaction_read_only
                "25006" => StoreError::ReadOnly(detail),
                // data_corrupted, index_corrupted
                "XX001" | "XX002" => StoreError::Damaged(detail),
                // io_error
                "58030" => StoreError::Io(detail),
                // invalid authorization (a wrong password, an unknown role), no such database
                _ if code.starts_with("28") || code == "3D000" => StoreError::Access(detail),
                // connection exceptions; admin, crash shutdown and "starting up"; out of
                // memory or connections
                _ if code.starts_with("08") || code.starts_with("57P") || code == "53200" || code == "53300" => {
                    StoreError::Unavailable(detail)
                }
                _ => return None,
            })
        }
        sqlx::Error::Io(io) => Some(StoreError::Unavailable(io.to_string())),
        sqlx::Error::Tls(tls) => Some(StoreError::Unavailable(format!("TLS: {tls}"))),
        sqlx::Error::PoolTimedOut => {
            Some(StoreError::Unavailable("no connection to the database became free or could be made in time".into()))
        }
        sqlx::Error::PoolClosed => Some(StoreError::Unavailable("the store is closed".into())),
        _ => None,
    }
}

/// An error from parsing the URL, without the URL (which may hold a password).
fn redact(error: sqlx::Error) -> String {
    match error {
        sqlx::Error::Configuration(_) => "check its form: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE".into(),
        other => other.to_string(),
    }
}

pub(crate) fn head_from_row(id: i64, status: &str, last_seq: Option<i64>) -> Result<LogHead, StoreError> {
    let status = RunStatus::from_str(status).map_err(StoreError::Corrupt)?;
    Ok(LogHead { run: RunId(id), last_seq: last_seq.map_or(0, |seq| seq.max(0) as u64), finished: status.is_final() })
}

pub(super) fn seq_column(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}
