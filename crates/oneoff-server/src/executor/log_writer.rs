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

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use oneoff_core::{LogEntry, RunId};
use oneoff_store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::hub::LogHub;

/// Appends waiting for the writer; a run waits for its commit, so this bounds runs, not lines.
const QUEUED_APPENDS: usize = 1024;
/// Appends per transaction, and entries: a huge group would hold the write lock too long.
const APPENDS_PER_COMMIT: usize = 512;
const ENTRIES_PER_COMMIT: usize = 64 * 1024;
/// Attempts before a group's lines are given up: 33 s of back-off, plus SQLite's busy
/// timeout in each attempt.
const COMMIT_ATTEMPTS: u32 = 10;

/// Why an append was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendError {
    /// The store kept failing, or the writer is gone: the lines are lost.
    Lost,
    /// The store refused the batch: it expects this sequence number next.
    Sequence { expected: u64 },
}

type Outcome = Result<(), AppendError>;

struct Append {
    run: RunId,
    entries: Arc<[LogEntry]>,
    stored: oneshot::Sender<Outcome>,
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

    /// Stores `entries` (the next of `run`'s sequence) and publishes them to the hub;
    /// returns once they are committed, or why they were not.
    pub async fn append(&self, run: RunId, entries: Vec<LogEntry>) -> Outcome {
        if entries.is_empty() {
            return Ok(());
        }
        let (stored, answer) = oneshot::channel();
        let append = Append { run, entries: Arc::from(entries), stored };
        if self.appends.send(append).await.is_err() {
            tracing::error!(run = %run, "log lines dropped: the log writer is gone");
            return Err(AppendError::Lost);
        }
        answer.await.unwrap_or_else(|_| {
            tracing::error!(run = %run, "log lines dropped: the log writer stopped before answering");
            Err(AppendError::Lost)
        })
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
        // A bug here must cost one group, not every run's log for the rest of the server's life.
        let written = AssertUnwindSafe(commit_and_publish(&store, &hub, &group)).catch_unwind().await;
        let outcomes = written.unwrap_or_else(|_| {
            tracing::error!(runs = group.len(), entries, "log writer panicked; these lines are lost");
            vec![Err(AppendError::Lost); group.len()]
        });
        for (append, outcome) in group.drain(..).zip(outcomes) {
            let _ = append.stored.send(outcome);
        }
    }
}

async fn commit_and_publish(store: &Store, hub: &LogHub, group: &[Append]) -> Vec<Outcome> {
    let started = std::time::Instant::now();
    let outcomes = commit(store, group).await;
    let commit_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    tracing::trace!(appends = group.len(), commit_us, "log lines committed");
    for (append, outcome) in group.iter().zip(&outcomes) {
        if outcome.is_ok() {
            hub.publish(append.run, append.entries.clone());
        }
    }
    outcomes
}

/// Stores a group, retrying while the transaction fails; one outcome per append.
async fn commit(store: &Store, group: &[Append]) -> Vec<Outcome> {
    let appends: Vec<(RunId, &[LogEntry])> = group.iter().map(|append| (append.run, &append.entries[..])).collect();
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=COMMIT_ATTEMPTS {
        match store.append_logs(&appends).await {
            Ok(results) => {
                return results.into_iter().zip(&appends).map(|(result, append)| outcome(result, *append)).collect()
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
    vec![Err(AppendError::Lost); group.len()]
}

fn outcome(result: Result<(), StoreError>, (run, entries): (RunId, &[LogEntry])) -> Outcome {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return Ok(()) };
    match result {
        Ok(()) => Ok(()),
        // A commit reported as failed can have landed; its retry then finds exactly these lines.
        Err(StoreError::Sequence { expected, found, .. }) if found == first.seq && expected == last.seq + 1 => {
            tracing::warn!(run = %run, "log lines were already stored by an attempt reported as failed");
            Ok(())
        }
        Err(StoreError::Sequence { expected, found, .. }) => {
            tracing::error!(run = %run, expected, found, entries = entries.len(), "log lines refused by the store");
            Err(AppendError::Sequence { expected })
        }
        Err(error) => {
            tracing::error!(run = %run, %error, entries = entries.len(), "log lines refused by the store");
            Err(AppendError::Lost)
        }
    }
}

#[cfg(test)]
mod tests {
    use oneoff_core::LogStream;

    use super::*;

    fn entries(first: u64, last: u64) -> Vec<LogEntry> {
        (first..=last).map(|seq| LogEntry { seq, ts_us: 0, stream: LogStream::Stdout, bytes: vec![b'x'] }).collect()
    }

    #[test]
    fn a_retry_that_finds_its_own_lines_stored_counts_as_stored() {
        let batch = entries(5, 7);
        let run = RunId(1);
        let landed = StoreError::Sequence { run, expected: 8, found: 5 };
        assert_eq!(outcome(Err(landed), (run, &batch)), Ok(()));
        let ahead = StoreError::Sequence { run, expected: 12, found: 5 };
        assert_eq!(outcome(Err(ahead), (run, &batch)), Err(AppendError::Sequence { expected: 12 }));
        let behind = StoreError::Sequence { run, expected: 3, found: 5 };
        assert_eq!(outcome(Err(behind), (run, &batch)), Err(AppendError::Sequence { expected: 3 }));
        assert_eq!(outcome(Err(StoreError::RunNotFound(run)), (run, &batch)), Err(AppendError::Lost));
    }
}
