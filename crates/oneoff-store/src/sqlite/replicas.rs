//! Replicas on SQLite. One file has one writer at a time: `BEGIN IMMEDIATE` takes the write
//! lock before a claim reads the counts, so claims from two handles are serialised.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::TryFutureExt;
use oneoff_core::{Bytes, LogEntry, LogStream, RunId, RunRecord};
use sqlx::{Row, Sqlite, Transaction};

use super::{seq_column, SqliteStore, RUN_COLUMNS};
use crate::codec::encode_chunk;
use crate::replicas::{
    lost_on_cancel_line, pick_claims, CancelRequest, Claim, Leftovers, LostReplica, QueuedRow, Registration,
    ReplicaIdentity, ReplicaRecord,
};
use crate::rows::{replica_from_row, run_from_row};
use crate::StoreError;

/// The database's clock, in microseconds since the epoch (millisecond resolution).
const NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";

fn replica_columns() -> String {
    format!(
        "name, instance, host, boot_id, pid, started_at_us, heartbeat_at_us, ({NOW} - heartbeat_at_us) / 1000 AS age_ms, \
         draining, (SELECT COUNT(*) FROM runs WHERE runs.status = 'running' AND runs.replica = replicas.name) AS running"
    )
}

fn timeout_us(timeout: Duration) -> i64 {
    i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX)
}

impl SqliteStore {
    pub(crate) async fn register_replica(
        &self,
        identity: &ReplicaIdentity,
        timeout: Duration,
        now_us: i64,
    ) -> Result<Registration, StoreError> {
        self.write(async {
            let mut transaction = self.pool().begin_with("BEGIN IMMEDIATE").await?;
            let previous =
                sqlx::query(&format!("SELECT {}, lost_at_us FROM replicas WHERE name = ?", replica_columns()))
                    .bind(&identity.name)
                    .fetch_optional(&mut *transaction)
                    .await?;
            let previous = match previous {
                None => None,
                Some(row) => {
                    let lost: Option<i64> = row.try_get("lost_at_us")?;
                    let record = replica_from_row(&row)?;
                    if lost.is_none() && record.heartbeat_age_ms * 1000 <= timeout_us(timeout) {
                        return Ok(Registration::InUse(record));
                    }
                    Some(record)
                }
            };
            upsert(&mut transaction, identity, now_us).await?;
            transaction.commit().await?;
            Ok(Registration::Registered { previous })
        })
        .await
    }

    pub(crate) async fn take_over_replica(&self, identity: &ReplicaIdentity, now_us: i64) -> Result<(), StoreError> {
        self.write(async {
            let mut transaction = self.pool().begin_with("BEGIN IMMEDIATE").await?;
            upsert(&mut transaction, identity, now_us).await?;
            transaction.commit().await?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn heartbeat(&self, identity: &ReplicaIdentity) -> Result<bool, StoreError> {
        let done = self
            .write(
                sqlx::query(&format!(
                    "UPDATE replicas SET heartbeat_at_us = {NOW} WHERE name = ? AND instance = ? AND lost_at_us IS NULL"
                ))
                .bind(&identity.name)
                .bind(&identity.instance)
                .execute(self.pool())
                .err_into(),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn set_draining(&self, identity: &ReplicaIdentity) -> Result<(), StoreError> {
        self.write(
            sqlx::query("UPDATE replicas SET draining = 1 WHERE name = ? AND instance = ?")
                .bind(&identity.name)
                .bind(&identity.instance)
                .execute(self.pool())
                .err_into(),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn remove_replica(&self, identity: &ReplicaIdentity) -> Result<(), StoreError> {
        self.write(
            sqlx::query("DELETE FROM replicas WHERE name = ? AND instance = ?")
                .bind(&identity.name)
                .bind(&identity.instance)
                .execute(self.pool())
                .err_into(),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn list_replicas(&self) -> Result<Vec<ReplicaRecord>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {} FROM replicas WHERE lost_at_us IS NULL ORDER BY name", replica_columns()))
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(replica_from_row).collect()
    }

    pub(crate) async fn declare_lost(
        &self,
        survivor: &ReplicaIdentity,
        timeout: Duration,
    ) -> Result<Vec<LostReplica>, StoreError> {
        self.write(async {
            let mut transaction = self.pool().begin_with("BEGIN IMMEDIATE").await?;
            let declared: Vec<(String, String, i64)> = sqlx::query_as(&format!(
                "UPDATE replicas SET lost_at_us = {NOW} \
                 WHERE name <> ?1 \
                   AND ((lost_at_us IS NULL AND heartbeat_at_us < {NOW} - ?2) \
                        OR (lost_at_us < {NOW} - ?2 AND EXISTS (SELECT 1 FROM runs \
                              WHERE (runs.status = 'running' AND runs.replica = replicas.name) \
                                 OR (runs.status = 'queued' AND runs.held_by = replicas.name)))) \
                   AND EXISTS (SELECT 1 FROM replicas AS me WHERE me.name = ?1 AND me.instance = ?3 \
                               AND me.lost_at_us IS NULL) \
                 RETURNING name, host, heartbeat_at_us"
            ))
            .bind(&survivor.name)
            .bind(timeout_us(timeout))
            .bind(&survivor.instance)
            .fetch_all(&mut *transaction)
            .await?;
            let mut lost = Vec::with_capacity(declared.len());
            for (name, host, heartbeat_at_us) in declared {
                let running = runs_where(&mut transaction, "status = 'running' AND replica = ?", &name).await?;
                let held = runs_where(&mut transaction, "status = 'queued' AND held_by = ?", &name).await?;
                lost.push(LostReplica { name, host, heartbeat_at_us, running, held });
            }
            transaction.commit().await?;
            Ok(lost)
        })
        .await
    }

    pub(crate) async fn claim_runs(&self, claim: &Claim<'_>) -> Result<Vec<RunRecord>, StoreError> {
        // Most polls find nothing queued: a read then, not a write transaction and its lock.
        let queued: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'queued')")
            .fetch_one(self.pool())
            .await?;
        if !queued {
            return Ok(Vec::new());
        }
        self.write(async {
            let mut transaction = self.pool().begin_with("BEGIN IMMEDIATE").await?;
            let live: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM replicas WHERE name = ? AND instance = ? AND lost_at_us IS NULL AND draining = 0",
            )
            .bind(&claim.replica.name)
            .bind(&claim.replica.instance)
            .fetch_optional(&mut *transaction)
            .await?;
            if live.is_none() {
                return Ok(Vec::new());
            }
            let counts: Vec<(String, i64)> =
                sqlx::query_as("SELECT job, COUNT(*) FROM runs WHERE status = 'running' GROUP BY job")
                    .fetch_all(&mut *transaction)
                    .await?;
            let running: HashMap<String, u32> = counts.into_iter().map(|(job, count)| (job, u32::try_from(count).unwrap_or(u32::MAX))).collect();
            let queued: Vec<(i64, String, Option<String>)> =
                sqlx::query_as("SELECT id, job, held_by FROM runs WHERE status = 'queued' ORDER BY id")
                    .fetch_all(&mut *transaction)
                    .await?;
            let queued: Vec<QueuedRow> =
                queued.into_iter().map(|(id, job, held_by)| QueuedRow { id, job, held_by }).collect();
            let picked = pick_claims(claim, running, &queued);
            let mut claimed = Vec::with_capacity(picked.len());
            for id in picked {
                let row = sqlx::query(&format!(
                    "UPDATE runs SET status = 'running', replica = ?, started_at_us = ? WHERE id = ? RETURNING {RUN_COLUMNS}"
                ))
                .bind(&claim.replica.name)
                .bind(claim.now_us)
                .bind(id)
                .fetch_one(&mut *transaction)
                .await?;
                claimed.push(run_from_row(&row)?);
            }
            transaction.commit().await?;
            Ok(claimed)
        })
        .await
    }

    pub(crate) async fn request_cancel(
        &self,
        run: RunId,
        timeout: Duration,
        now_us: i64,
    ) -> Result<CancelRequest, StoreError> {
        self.write(async {
            let mut transaction = self.pool().begin_with("BEGIN IMMEDIATE").await?;
            let row = sqlx::query(&format!(
                "SELECT runs.status, runs.replica, replicas.lost_at_us, replicas.name AS owner, \
                        ({NOW} - replicas.heartbeat_at_us) / 1000 AS age_ms \
                 FROM runs LEFT JOIN replicas ON replicas.name = runs.replica WHERE runs.id = ?"
            ))
            .bind(run.0)
            .fetch_optional(&mut *transaction)
            .await?;
            let Some(row) = row else { return Ok(CancelRequest::NotFound) };
            let status: String = row.try_get("status")?;
            let replica: Option<String> = row.try_get("replica")?;
            let outcome = match status.as_str() {
                "queued" => {
                    sqlx::query(
                        "UPDATE runs SET status = 'cancelled', finished_at_us = ?, error = 'cancelled while queued' \
                         WHERE id = ?",
                    )
                    .bind(now_us)
                    .bind(run.0)
                    .execute(&mut *transaction)
                    .await?;
                    CancelRequest::CancelledWhileQueued
                }
                "running" => {
                    let owner: Option<String> = row.try_get("owner")?;
                    let lost: Option<i64> = row.try_get("lost_at_us")?;
                    let age_ms: Option<i64> = row.try_get("age_ms")?;
                    let live = owner.is_some()
                        && lost.is_none()
                        && age_ms.is_some_and(|age| age * 1000 <= timeout_us(timeout));
                    match replica {
                        Some(replica) if live => {
                            sqlx::query("UPDATE runs SET cancel_requested_at_us = ? WHERE id = ?")
                                .bind(now_us)
                                .bind(run.0)
                                .execute(&mut *transaction)
                                .await?;
                            CancelRequest::Requested { replica }
                        }
                        replica => {
                            let age = owner.as_ref().and(age_ms);
                            let line = lost_on_cancel_line(replica.as_deref(), age, timeout);
                            append_system_line(&mut transaction, run, &line, now_us).await?;
                            sqlx::query("UPDATE runs SET status = 'lost', finished_at_us = ?, error = ? WHERE id = ?")
                                .bind(now_us)
                                .bind(&line)
                                .bind(run.0)
                                .execute(&mut *transaction)
                                .await?;
                            CancelRequest::EndedLost { replica }
                        }
                    }
                }
                _ => CancelRequest::AlreadyFinished,
            };
            transaction.commit().await?;
            Ok(outcome)
        })
        .await
    }

    pub(crate) async fn cancel_requests(&self, replica: &str) -> Result<Vec<RunId>, StoreError> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE status = 'running' AND replica = ? AND cancel_requested_at_us IS NOT NULL \
             ORDER BY id",
        )
        .bind(replica)
        .fetch_all(self.pool())
        .await?;
        Ok(ids.into_iter().map(RunId).collect())
    }

    pub(crate) async fn leftovers(&self, name: &str) -> Result<Leftovers, StoreError> {
        let mut connection = self.pool().acquire().await?;
        let running = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' AND (replica = ? OR replica IS NULL \
             OR replica NOT IN (SELECT name FROM replicas)) ORDER BY id"
        ))
        .bind(name)
        .fetch_all(&mut *connection)
        .await?;
        let held = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'queued' AND (held_by = ? \
             OR held_by NOT IN (SELECT name FROM replicas)) ORDER BY id"
        ))
        .bind(name)
        .fetch_all(&mut *connection)
        .await?;
        Ok(Leftovers {
            running: running.iter().map(run_from_row).collect::<Result<_, _>>()?,
            held: held.iter().map(run_from_row).collect::<Result<_, _>>()?,
        })
    }
}

async fn upsert(
    transaction: &mut Transaction<'_, Sqlite>,
    identity: &ReplicaIdentity,
    now_us: i64,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO replicas (name, instance, host, boot_id, pid, started_at_us, heartbeat_at_us, draining, lost_at_us) \
         VALUES (?, ?, ?, ?, ?, ?, {NOW}, 0, NULL) \
         ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, host = excluded.host, \
           boot_id = excluded.boot_id, pid = excluded.pid, started_at_us = excluded.started_at_us, \
           heartbeat_at_us = excluded.heartbeat_at_us, draining = 0, lost_at_us = NULL"
    ))
    .bind(&identity.name)
    .bind(&identity.instance)
    .bind(&identity.host)
    .bind(&identity.boot_id)
    .bind(i64::from(identity.pid))
    .bind(now_us)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

async fn runs_where(
    transaction: &mut Transaction<'_, Sqlite>,
    condition: &str,
    name: &str,
) -> Result<Vec<RunRecord>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE {condition} ORDER BY id"))
        .bind(name)
        .fetch_all(&mut **transaction)
        .await?;
    rows.iter().map(run_from_row).collect()
}

/// Appends one system line to a run's log inside the caller's transaction (which holds the write lock).
async fn append_system_line(
    transaction: &mut Transaction<'_, Sqlite>,
    run: RunId,
    line: &str,
    now_us: i64,
) -> Result<(), StoreError> {
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(last_seq) FROM log_chunks WHERE run_id = ?")
        .bind(run.0)
        .fetch_one(&mut **transaction)
        .await?;
    let seq = last.map_or(1, |seq| seq.max(0) as u64 + 1);
    let entry = LogEntry {
        seq,
        ts_us: now_us,
        stream: LogStream::System,
        bytes: Bytes::copy_from_slice(line.as_bytes()),
        continues: false,
        partial: false,
    };
    sqlx::query("INSERT INTO log_chunks (run_id, first_seq, last_seq, entries) VALUES (?, ?, ?, ?)")
        .bind(run.0)
        .bind(seq_column(seq))
        .bind(seq_column(seq))
        .bind(encode_chunk(&[entry]))
        .execute(&mut **transaction)
        .await?;
    Ok(())
}
