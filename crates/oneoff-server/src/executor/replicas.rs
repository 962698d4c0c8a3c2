//! This replica's heartbeat, and the monitor that ends the runs of replicas that died.
//!
//! Every `replica_timeout / 3` the heartbeat task moves this replica's row, then asks the
//! store to declare lost every replica whose heartbeat is older than `replica_timeout`
//! (exactly one survivor gets each). For each lost replica's running run it appends one
//! system line saying which replica was lost and since when, and finishes the run `lost`:
//! it is never run again, since jobs need not be idempotent. Queued runs whose secret values
//! only the lost replica held fail with a line saying so. If that survivor dies before it
//! has ended them, another one is given them `replica_timeout` later. A heartbeat that finds the row no
//! longer this instance's (this replica was declared lost while it was alive, e.g. a stalled
//! process or a network cut) tells the scheduler to stop its runs, then takes the row again.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oneoff_core::{LogEntry, LogStream, RunRecord, RunStatus};
use oneoff_store::{Finish, LostReplica, ReplicaIdentity, Store, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Command;
use crate::clock::now_us;
use crate::metrics::{ran_since, Metrics};

/// The heartbeat task; [`Heartbeat::shutdown`] stops it and removes the replica's row.
pub struct Heartbeat {
    stop: CancellationToken,
    task: JoinHandle<()>,
    store: Store,
    replica: Arc<ReplicaIdentity>,
}

impl Heartbeat {
    pub fn spawn(
        store: Store,
        replica: Arc<ReplicaIdentity>,
        replica_timeout: Duration,
        commands: mpsc::WeakSender<Command>,
        metrics: Arc<Metrics>,
    ) -> Heartbeat {
        let stop = CancellationToken::new();
        let beat =
            Beat { store: store.clone(), replica: replica.clone(), replica_timeout, commands, failures: 0, metrics };
        let task = tokio::spawn(beat.run(stop.clone()));
        Heartbeat { stop, task, store, replica }
    }

    /// Stops the heartbeat and removes this replica's row (a clean stop: nothing of it is left running).
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
        if let Err(error) = self.store.remove_replica(&self.replica).await {
            tracing::warn!(%error, "cannot remove this replica's row; the others will declare it lost");
        }
    }
}

struct Beat {
    store: Store,
    replica: Arc<ReplicaIdentity>,
    replica_timeout: Duration,
    commands: mpsc::WeakSender<Command>,
    failures: u32,
    metrics: Arc<Metrics>,
}

impl Beat {
    async fn run(mut self, stop: CancellationToken) {
        let mut every = tokio::time::interval(self.replica_timeout / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = stop.cancelled() => return,
            }
            match self.store.heartbeat(&self.replica).await {
                Ok(true) => self.failures = 0,
                Ok(false) => self.declared_lost().await,
                Err(error) => {
                    self.failures += 1;
                    if self.failures == 1 {
                        tracing::warn!(%error, "cannot write this replica's heartbeat; trying again");
                    }
                    continue;
                }
            }
            match self.store.declare_lost(&self.replica, self.replica_timeout).await {
                Ok(lost) => {
                    for replica in lost {
                        end_runs_of(&self.store, &self.metrics, &replica, self.replica_timeout).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot look for lost replicas"),
            }
        }
    }

    async fn declared_lost(&self) {
        if let Some(commands) = self.commands.upgrade() {
            let _ = commands.send(Command::DeclaredLost).await;
        }
        match self.store.take_over_replica(&self.replica, now_us()).await {
            Ok(()) => tracing::warn!(replica = %self.replica.name, "registered this replica again"),
            Err(error) => tracing::error!(%error, "cannot register this replica again"),
        }
    }
}

/// Ends what a lost replica left: its running runs `lost`, its held queued runs `failed`,
/// each with one system line saying why.
async fn end_runs_of(store: &Store, metrics: &Metrics, lost: &LostReplica, timeout: Duration) {
    let since = shown_time(lost.heartbeat_at_us);
    tracing::warn!(
        replica = %lost.name, host = %lost.host, last_heartbeat = %since,
        running = lost.running.len(), held = lost.held.len(),
        "replica lost: no heartbeat within replica_timeout; its runs are lost"
    );
    for run in &lost.running {
        let line = format!(
            "replica {} was lost: no heartbeat since {since} (replica_timeout {} s); the run may have gone on \
             until then; it is not run again",
            lost.name,
            timeout.as_secs()
        );
        end_with_line(store, metrics, run, RunStatus::Lost, line).await;
    }
    for run in &lost.held {
        let line = format!(
            "replica {} was lost (no heartbeat since {since}) before this run started, and its secret values \
             were only in that replica's memory; start the run again",
            lost.name
        );
        end_with_line(store, metrics, run, RunStatus::Failed, line).await;
    }
}

/// Appends one system line and writes the final state. A log the lost replica extended
/// meanwhile (its last lines landing after it was declared lost) only moves the line's number.
async fn end_with_line(store: &Store, metrics: &Metrics, run: &RunRecord, status: RunStatus, line: String) {
    let mut appended: Result<(), StoreError> = Ok(());
    for _ in 0..5 {
        appended = match store.last_seq(run.id).await {
            Ok(last) => {
                let entry = LogEntry {
                    seq: last + 1,
                    ts_us: now_us(),
                    stream: LogStream::System,
                    bytes: line.as_bytes().to_vec().into(),
                    continues: false,
                    partial: false,
                };
                store.append_log(run.id, &[entry]).await
            }
            Err(error) => Err(error),
        };
        if !matches!(appended, Err(StoreError::Sequence { .. })) {
            break;
        }
    }
    if let Err(error) = appended {
        tracing::error!(run = %run.id, %error, "cannot append the lost replica's line to the run's log");
    }
    let finish = Finish { status, finished_at_us: now_us(), exit_code: None, signal: None, error: Some(line) };
    match store.finish_run(run.id, &finish).await {
        // Counted by the survivor that recorded it: the lost replica counts nothing more.
        Ok(()) => metrics.run_finished(&run.job, status, ran_since(run.started_at_us)),
        Err(error) => tracing::error!(run = %run.id, %error, "cannot record the end of a lost replica's run"),
    }
}

/// A stored time for a message: RFC 3339 in UTC, to the second.
fn shown_time(at_us: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_micros(u64::try_from(at_us).unwrap_or(0));
    humantime::format_rfc3339_seconds(at.max(SystemTime::UNIX_EPOCH)).to_string()
}
