//! Replicas on PostgreSQL. Limits are counts across rows, which row locks cannot enforce:
//! a claim (and a queueing insert, for `max_queued_runs`) holds one transaction-level advisory
//! lock, so claims from all replicas are serialised. Heartbeats and the dead-replica check use
//! the server's `clock_timestamp()`, so replicas' clocks do not matter. Declaring a replica
//! lost is one conditional UPDATE: under READ COMMITTED a second survivor waits for the first's
//! row lock, re-checks `lost_at_us IS NULL`, and finds nothing to do.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::TryFutureExt;
use oneoff_core::{Bytes, LogEntry, LogStream, RunId, RunRecord};
use sqlx::{Postgres, Row, Transaction};

use super::{seq_column, PgStore, RUN_COLUMNS};
use crate::codec::encode_chunk;
use crate::replicas::{
    lost_on_cancel_line, pick_claims, CancelRequest, Claim, Leftovers, LostReplica, QueuedRow, Registration,
    ReplicaIdentity, ReplicaRecord,
};
use crate::rows::{replica_from_row, run_from_row};
use crate::StoreError;

/// The advisory lock key under which runs are queued and claimed ("oneoff:q").
pub(crate) const QUEUE_LOCK: i64 = 0x6f6e_656f_6666_3a71;

/// The database server's clock, in microseconds since the epoch.
const NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT";

fn replica_columns() -> String {
    format!(
        "name, instance, host, boot_id, pid, started_at_us, heartbeat_at_us, ({NOW} - heartbeat_at_us) / 1000 AS age_ms, \
         draining, (SELECT COUNT(*) FROM runs WHERE runs.status = 'running' AND runs.replica = replicas.name) AS running"
    )
}

fn timeout_us(timeout: Duration) -> i64 {
    i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX)
}

/// Takes the queue lock for the rest of the transaction.
pub(crate) async fn lock_queue(transaction: &mut Transaction<'_, Postgres>) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(QUEUE_LOCK).execute(&mut **transaction).await?;
    Ok(())
}

impl PgStore {
    pub(crate) async fn register_replica(
        &self,
        identity: &ReplicaIdentity,
        timeout: Duration,
        now_us: i64,
    ) -> Result<Registration, StoreError> {
        self.write(async {
            let mut transaction = self.pool().begin().await?;
            let previous = sqlx::query(&format!(
                "SELECT {}, lost_at_us FROM replicas WHERE name = $1 FOR UPDATE",
                replica_columns()
            ))
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
            let mut transaction = self.pool().begin().await?;
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
                    "UPDATE replicas SET heartbeat_at_us = {NOW} WHERE name = $1 AND instance = $2 AND lost_at_us IS NULL"
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
            sqlx::query("UPDATE replicas SET draining = TRUE WHERE name = $1 AND instance = $2")
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
            sqlx::query("DELETE FROM replicas WHERE name = $1 AND instance = $2")
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
            let mut transaction = self.pool().begin().await?;
            let declared: Vec<(String, String, i64)> = sqlx::query_as(&format!(
                "UPDATE replicas SET lost_at_us = {NOW} \
                 WHERE name <> $1 \
                   AND ((lost_at_us IS NULL AND heartbeat_at_us < {NOW} - $2) \
                        OR (lost_at_us < {NOW} - $2 AND EXISTS (SELECT 1 FROM runs \
                              WHERE (runs.status = 'running' AND runs.replica = replicas.name) \
                                 OR (runs.status = 'queued' AND runs.held_by = replicas.name)))) \
                   AND EXISTS (SELECT 1 FROM replicas AS me WHERE me.name = $1 AND me.instance = $3 \
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
                let running = runs_where(&mut transaction, "status = 'running' AND replica = $1", &name).await?;
                let held = runs_where(&mut transaction, "status = 'queued' AND held_by = $1", &name).await?;
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
            let mut transaction = self.pool().begin().await?;
            lock_queue(&mut transaction).await?;
            let live: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM replicas WHERE name = $1 AND instance = $2 AND lost_at_us IS NULL AND NOT draining",
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
            let running: HashMap<String, u32> =
                counts.into_iter().map(|(job, count)| (job, u32::try_from(count).unwrap_or(u32::MAX))).collect();
            let queued: Vec<(i64, String, Option<String>)> =
                sqlx::query_as("SELECT id, job, held_by FROM runs WHERE status = 'queued' ORDER BY id")
                    .fetch_all(&mut *transaction)
                    .await?;
            let queued: Vec<QueuedRow> =
                queued.into_iter().map(|(id, job, held_by)| QueuedRow { id, job, held_by }).collect();
            let picked = pick_claims(claim, running, &queued);
            let rows = sqlx::query(&format!(
                "UPDATE runs SET status = 'running', replica = $1, started_at_us = $2 WHERE id = ANY($3) \
                 RETURNING {RUN_COLUMNS}"
            ))
            .bind(&claim.replica.name)
            .bind(claim.now_us)
            .bind(&picked)
            .fetch_all(&mut *transaction)
            .await?;
            transaction.commit().await?;
            let mut claimed = rows.iter().map(run_from_row).collect::<Result<Vec<_>, _>>()?;
            claimed.sort_by_key(|run| run.id);
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
            let mut transaction = self.pool().begin().await?;
            // The run's row first: its log's writers lock it too (see `store_chunks`).
            let row = sqlx::query(&format!(
                "SELECT runs.status, runs.replica, replicas.lost_at_us, replicas.name AS owner, \
                        ({NOW} - replicas.heartbeat_at_us) / 1000 AS age_ms \
                 FROM runs LEFT JOIN replicas ON replicas.name = runs.replica WHERE runs.id = $1 FOR UPDATE OF runs"
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
                        "UPDATE runs SET status = 'cancelled', finished_at_us = $1, error = 'cancelled while queued' \
                         WHERE id = $2",
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
                            sqlx::query("UPDATE runs SET cancel_requested_at_us = $1 WHERE id = $2")
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
                            sqlx::query(
                                "UPDATE runs SET status = 'lost', finished_at_us = $1, error = $2 WHERE id = $3",
                            )
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
            "SELECT id FROM runs WHERE status = 'running' AND replica = $1 AND cancel_requested_at_us IS NOT NULL \
             ORDER BY id",
        )
        .bind(replica)
        .fetch_all(self.pool())
        .await?;
        Ok(ids.into_iter().map(RunId).collect())
    }

    pub(crate) async fn leftovers(&self, name: &str) -> Result<Leftovers, StoreError> {
        let running = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' AND (replica = $1 OR replica IS NULL \
             OR replica NOT IN (SELECT name FROM replicas)) ORDER BY id"
        ))
        .bind(name)
        .fetch_all(self.pool())
        .await?;
        let held = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'queued' AND (held_by = $1 \
             OR held_by NOT IN (SELECT name FROM replicas)) ORDER BY id"
        ))
        .bind(name)
        .fetch_all(self.pool())
        .await?;
        Ok(Leftovers {
            running: running.iter().map(run_from_row).collect::<Result<_, _>>()?,
            held: held.iter().map(run_from_row).collect::<Result<_, _>>()?,
        })
    }
}

async fn upsert(
    transaction: &mut Transaction<'_, Postgres>,
    identity: &ReplicaIdentity,
    now_us: i64,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO replicas (name, instance, host, boot_id, pid, started_at_us, heartbeat_at_us, draining, lost_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6, {NOW}, FALSE, NULL) \
         ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, host = excluded.host, \
           boot_id = excluded.boot_id, pid = excluded.pid, started_at_us = excluded.started_at_us, \
           heartbeat_at_us = excluded.heartbeat_at_us, draining = FALSE, lost_at_us = NULL"
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
    transaction: &mut Transaction<'_, Postgres>,
    condition: &str,
    name: &str,
) -> Result<Vec<RunRecord>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE {condition} ORDER BY id"))
        .bind(name)
        .fetch_all(&mut **transaction)
        .await?;
    rows.iter().map(run_from_row).collect()
}

/// Appends one system line to a run's log inside the caller's transaction, which holds the
/// run's row lock (so no other writer of its log is between the head read and the insert).
async fn append_system_line(
    transaction: &mut Transaction<'_, Postgres>,
    run: RunId,
    line: &str,
    now_us: i64,
) -> Result<(), StoreError> {
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(last_seq) FROM log_chunks WHERE run_id = $1")
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
    sqlx::query("INSERT INTO log_chunks (run_id, first_seq, last_seq, entries) VALUES ($1, $2, $3, $4)")
        .bind(run.0)
        .bind(seq_column(seq))
        .bind(seq_column(seq))
        .bind(encode_chunk(&[entry]))
        .execute(&mut **transaction)
        .await?;
    Ok(())
}
