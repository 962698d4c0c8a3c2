//! The log writer: one task that stores the log lines of every live run, many runs per
//! transaction (group commit), then publishes them to the hub.
//!
//! SQLite has a single write lock. With one transaction per run, 200 busy runs queue some
//! 20,000 small commits a second for it and their lines wait seconds. Here each run's
//! [`write_log`](super::capture::write_log) hands its batch to [`LogWriter::append`] and waits
//! for the commit; the task takes every append waiting (up to a bound), stores them all in
//! one transaction, publishes each to the hub and answers. Commits run back to back, so under
//! load the transactions grow instead of the queue, and a quiet server commits a lone batch
//! at once. Each run has at most one append in flight, so the channel never holds more
//! appends than there are live runs.

use std::sync::Arc;
use std::time::Duration;

use oneoff_core::{LogEntry, RunId};
use oneoff_store::Store;
use tokio::sync::{mpsc, oneshot};

use crate::hub::LogHub;

/// Appends waiting for the writer; a run waits for its commit, so this bounds runs, not lines.
const QUEUED_APPENDS: usize = 1024;
/// Appends per transaction, and entries: a huge group would hold the write lock too long.
const APPENDS_PER_COMMIT: usize = 512;
const ENTRIES_PER_COMMIT: usize = 64 * 1024;
/// Attempts before a group's lines are given up (the store stayed broken for about a minute).
const COMMIT_ATTEMPTS: u32 = 10;

struct Append {
    run: RunId,
    entries: Arc<[LogEntry]>,
    stored: oneshot::Sender<bool>,
}

/// Cheap to clone; every clone feeds the same writer task, which ends with the last clone.
#[derive(Clone)]
pub struct LogWriter {
    appends: mpsc::Sender<Append>,
}

impl LogWriter {
    /// Starts the writer task.
    pub fn spawn(store: Store, hub: LogHub) -> LogWriter {
        let (appends, receiver) = mpsc::channel(QUEUED_APPENDS);
        tokio::spawn(write_groups(store, hub, receiver));
        LogWriter { appends }
    }

    /// Stores `entries` (the next of `run`'s sequence) and publishes them to the hub.
    /// Returns once they are committed: true, or false when the store refused them or kept
    /// failing (the caller then reuses their sequence numbers, so the log stays gapless).
    pub async fn append(&self, run: RunId, entries: Vec<LogEntry>) -> bool {
        if entries.is_empty() {
            return true;
        }
        let (stored, answer) = oneshot::channel();
        let append = Append { run, entries: Arc::from(entries), stored };
        if self.appends.send(append).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

async fn write_groups(store: Store, hub: LogHub, mut receiver: mpsc::Receiver<Append>) {
    let mut group: Vec<Append> = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut entries = first.entries.len();
        group.push(first);
        while group.len() < APPENDS_PER_COMMIT && entries < ENTRIES_PER_COMMIT {
            let Ok(next) = receiver.try_recv() else { break };
            entries += next.entries.len();
            group.push(next);
        }
        let started = std::time::Instant::now();
        let results = commit(&store, &group).await;
        let commit_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tracing::trace!(appends = group.len(), entries, commit_us, "log lines committed");
        for (append, result) in group.drain(..).zip(results) {
            if result {
                hub.publish(append.run, append.entries);
            }
            let _ = append.stored.send(result);
        }
    }
}

/// Stores a group, retrying while the transaction fails; one result per append.
async fn commit(store: &Store, group: &[Append]) -> Vec<bool> {
    let appends: Vec<(RunId, &[LogEntry])> = group.iter().map(|append| (append.run, &append.entries[..])).collect();
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=COMMIT_ATTEMPTS {
        match store.append_logs(&appends).await {
            Ok(results) => {
                return results
                    .into_iter()
                    .zip(&appends)
                    .map(|(result, (run, entries))| match result {
                        Ok(()) => true,
                        Err(error) => {
                            tracing::error!(run = %run, %error, entries = entries.len(), "log lines refused by the store");
                            false
                        }
                    })
                    .collect();
            }
            Err(error) => {
                let entries: usize = appends.iter().map(|(_, entries)| entries.len()).sum();
                tracing::error!(attempt, %error, runs = appends.len(), entries, "cannot store log lines; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
    for (run, entries) in &appends {
        tracing::error!(run = %run, entries = entries.len(), "log lines dropped: the store keeps failing");
    }
    vec![false; group.len()]
}
