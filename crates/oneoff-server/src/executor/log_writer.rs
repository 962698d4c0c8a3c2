//! The log writer: one task that stores the log lines of every live run, many runs per
//! transaction (group commit), then publishes them to the hub.
//!
//! SQLite has a single write lock. With one transaction per run, 200 busy runs queue some
//! 20,000 small commits a second for it and their lines wait seconds. Here each run's
//! [`write_log`](super::capture::write_log) hands its batch to [`LogWriter::append`] and waits
//! for the commit; the task takes every append waiting (up to a bound), stores them all in
//! one transaction, publishes each to the hub and answers. Commits run back to back, so under
//! load the transactions grow instead of the queue, and a quiet server commits a lone batch
//! at once: nothing waits on a timer, neither here nor in the runs' tasks. Each run has at most one append in flight, so the channel never holds more
//! appends than there are live runs.
//!
//! On PostgreSQL the store sends, inside each group's transaction, one notification naming
//! every run the group extended and its new head (see `oneoff_store::LogEvents`): other
//! replicas' followers wake on the commit, never before it, and a group that is retried sends
//! nothing until it is stored. One notification per commit, whatever its size.
//!
//! When the store refuses a group (a full disk), the group is kept, with its sequence numbers,
//! and tried again with back-off, taking in the appends that arrive meanwhile; each run waits
//! for its answer, so its pipes fill and its job blocks on its writes. An append is given up
//! only after its run's `store_wait`; [`Refusal`] tells readiness and new runs meanwhile.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use oneoff_core::{LogEntry, LogStream, RunId};
use oneoff_store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::clock::now_us;
use crate::hub::LogHub;
use crate::metrics::Metrics;

/// Appends waiting for the writer; a run waits for its commit, so this bounds runs, not lines.
const QUEUED_APPENDS: usize = 1024;
/// Appends per transaction, and entries: a huge group would hold the write lock too long.
const APPENDS_PER_COMMIT: usize = 512;
const ENTRIES_PER_COMMIT: usize = 64 * 1024;
/// Back-off between attempts while the store refuses a group: short at first (a busy
/// moment), then at most [`MAX_RETRY_DELAY`], which is also how soon a store that got its
/// space back takes the waiting lines.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);
/// While the store keeps refusing, the failure is logged this often, not at every attempt.
const FAILURE_LOG_PERIOD: Duration = Duration::from_secs(10);
/// How long the system line that reports unstored lines may wait: the run already waited
/// its whole store wait for them.
const NOTE_WAIT: Duration = Duration::from_secs(5);

/// Why an append was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// The store refused the lines for the whole store wait, or the writer is gone: they are
    /// not stored, and nothing after them may be (it would leave a gap or take their numbers).
    Unstored { reason: String },
    /// The store refused the batch: it expects this sequence number next.
    Sequence { expected: u64 },
}

type Outcome = Result<(), AppendError>;

pub(super) struct Append {
    run: RunId,
    entries: Arc<[LogEntry]>,
    /// When the writer stops retrying this append.
    give_up_at: Instant,
    stored: oneshot::Sender<Outcome>,
}

/// Cheap to clone; every clone feeds the same writer task, which ends with the last clone.
#[derive(Clone)]
pub struct LogWriter {
    appends: mpsc::Sender<Append>,
    store_wait: Duration,
    refusal: Refusal,
}

/// The storage fault (a full disk) for which the writer is holding runs' lines back, if any.
///
/// A small write can still fit where a group of lines does not, so this, not the outcome of
/// the last write, says whether the store is taking runs' output.
#[derive(Clone, Default)]
pub struct Refusal(Arc<Mutex<Option<StoreError>>>);

impl Refusal {
    pub fn current(&self) -> Option<StoreError> {
        self.lock().as_ref().and_then(StoreError::storage_fault)
    }

    fn set(&self, fault: Option<StoreError>) {
        *self.lock() = fault;
    }

    fn lock(&self) -> MutexGuard<'_, Option<StoreError>> {
        // Replaced whole, so a panic elsewhere cannot leave it half-written.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LogWriter {
    /// Starts the writer task. An append the store refuses is retried for up to `store_wait`.
    pub fn spawn(store: Store, hub: LogHub, store_wait: Duration, metrics: Arc<Metrics>) -> LogWriter {
        let (appends, receiver) = mpsc::channel(QUEUED_APPENDS);
        let refusal = Refusal::default();
        tokio::spawn(write_groups(store, hub, receiver, refusal.clone(), metrics));
        LogWriter { appends, store_wait, refusal }
    }

    /// A writer without its task, for tests that play the task: they receive the appends and answer them.
    #[cfg(test)]
    pub(super) fn detached(store_wait: Duration) -> (LogWriter, mpsc::Receiver<Append>) {
        let (appends, receiver) = mpsc::channel(QUEUED_APPENDS);
        (LogWriter { appends, store_wait, refusal: Refusal::default() }, receiver)
    }

    /// Whether runs' lines are being held back by a fault of the store, and which.
    pub fn refusal(&self) -> Refusal {
        self.refusal.clone()
    }

    /// How long an append may wait for a store that refuses it.
    pub fn store_wait(&self) -> Duration {
        self.store_wait
    }

    /// Stores `entries` (the next of `run`'s sequence) and publishes them to the hub;
    /// returns once they are committed, or why they were not. While the store refuses them
    /// (a full disk) this waits, for up to the store wait: the run's pipes then fill and its
    /// job blocks on its writes, as on a terminal that does not scroll.
    pub async fn append(&self, run: RunId, entries: Vec<LogEntry>) -> Outcome {
        self.append_within(run, entries, self.store_wait).await
    }

    async fn append_within(&self, run: RunId, entries: Vec<LogEntry>, wait: Duration) -> Outcome {
        if entries.is_empty() {
            return Ok(());
        }
        let gone = || AppendError::Unstored { reason: "the log writer stopped".into() };
        let (stored, answer) = oneshot::channel();
        let append = Append { run, entries: Arc::from(entries), give_up_at: deadline(wait), stored };
        if self.appends.send(append).await.is_err() {
            tracing::error!(run = %run, "log lines dropped: the log writer is gone");
            return Err(gone());
        }
        answer.await.unwrap_or_else(|_| {
            tracing::error!(run = %run, "log lines dropped: the log writer stopped before answering");
            Err(gone())
        })
    }

    /// Ends a log whose lines from `unstored.first_seq` on could not be stored with a system
    /// line that says so, numbered where the store expects the next entry (the unstored lines
    /// were never readable, so no reader ever saw another entry under that number). Returns
    /// whether it was stored.
    pub async fn note_unstored(&self, run: RunId, unstored: &Unstored) -> bool {
        let line = |seq| LogEntry {
            seq,
            ts_us: now_us(),
            stream: LogStream::System,
            bytes: unstored.describe().into_bytes().into(),
            continues: false,
            partial: false,
        };
        match self.append_within(run, vec![line(unstored.first_seq)], NOTE_WAIT).await {
            Ok(()) => true,
            // A commit reported as failed had landed after all: the note goes after it.
            Err(AppendError::Sequence { expected }) => {
                self.append_within(run, vec![line(expected)], NOTE_WAIT).await.is_ok()
            }
            Err(AppendError::Unstored { .. }) => false,
        }
    }
}

/// The lines of a run that could not be stored: from `first_seq`, `lines` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unstored {
    pub first_seq: u64,
    pub lines: u64,
    pub reason: String,
    /// Whether the system line that says so is in the log.
    pub noted: bool,
}

impl Unstored {
    /// What the run's log says.
    pub fn describe(&self) -> String {
        let lines = if self.lines == 1 { "1 line".to_string() } else { format!("{} lines", self.lines) };
        format!("{lines} of output from here on could not be stored, so the run was stopped: {}", self.reason)
    }

    /// What the run's error field says.
    pub fn error(&self) -> String {
        let mut error = self.describe();
        if !self.noted {
            error.push_str(" (the log could not say so either)");
        }
        error
    }
}

async fn write_groups(
    store: Store,
    hub: LogHub,
    mut receiver: mpsc::Receiver<Append>,
    refusal: Refusal,
    metrics: Arc<Metrics>,
) {
    let mut group: Vec<Append> = Vec::new();
    let mut delay = FIRST_RETRY_DELAY;
    // Since when the store refuses groups, and when that was last logged.
    let mut failing_since: Option<Instant> = None;
    let mut logged_at: Option<Instant> = None;
    loop {
        if group.is_empty() {
            let Some(first) = receiver.recv().await else { return };
            group.push(first);
            // No timer: one turn of the scheduler, so that the runs the last commit answered
            // (woken, about to send their next batch) join this group instead of the next one.
            tokio::task::yield_now().await;
        }
        // A group being retried takes in the appends that arrived meanwhile (other runs').
        let mut entries: usize = group.iter().map(|append| append.entries.len()).sum();
        while group.len() < APPENDS_PER_COMMIT && entries < ENTRIES_PER_COMMIT {
            let Ok(next) = receiver.try_recv() else { break };
            entries += next.entries.len();
            group.push(next);
        }
        // A bug here must cost one group, not every run's log for the rest of the server's life.
        let written = AssertUnwindSafe(commit_and_publish(&store, &hub, &metrics, &group)).catch_unwind().await;
        let outcomes = match written {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(error)) => {
                let now = Instant::now();
                let since = *failing_since.get_or_insert(now);
                if logged_at.is_none_or(|at| now - at >= FAILURE_LOG_PERIOD) {
                    logged_at = Some(now);
                    let waited_ms = u64::try_from((now - since).as_millis()).unwrap_or(u64::MAX);
                    tracing::error!(%error, runs = group.len(), entries, waited_ms, "cannot store log lines; their runs wait");
                }
                let reason = error.to_string();
                give_up_overdue(&mut group, &reason);
                refusal.set(if group.is_empty() { None } else { error.storage_fault() });
                if let Some(earliest) = group.iter().map(|append| append.give_up_at).min() {
                    tokio::time::sleep_until(earliest.min(Instant::now() + delay)).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
                continue;
            }
            Err(_) => {
                tracing::error!(runs = group.len(), entries, "log writer panicked; these lines are lost");
                let reason = "internal error in the log writer".to_string();
                vec![Err(AppendError::Unstored { reason }); group.len()]
            }
        };
        logged_at = None;
        refusal.set(None);
        if let Some(since) = failing_since.take() {
            let waited_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(waited_ms, "log lines are stored again");
        }
        delay = FIRST_RETRY_DELAY;
        for (append, outcome) in group.drain(..).zip(outcomes) {
            let _ = append.stored.send(outcome);
        }
    }
}

#[cfg(test)]
impl Append {
    pub(super) fn seqs(&self) -> Vec<u64> {
        self.entries.iter().map(|entry| entry.seq).collect()
    }

    pub(super) fn answer(self, outcome: Outcome) {
        let _ = self.stored.send(outcome);
    }
}

/// Runs a store write again, with the writer's back-off, while it fails for a fault of the
/// disk or the file (full, read-only), for up to `wait`; returns its last outcome.
pub async fn with_store_retries<T, Write, Written>(wait: Duration, mut write: Write) -> Result<T, StoreError>
where
    Write: FnMut() -> Written,
    Written: Future<Output = Result<T, StoreError>>,
{
    let give_up_at = deadline(wait);
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        match write().await {
            Err(error) if error.is_storage_fault() && Instant::now() < give_up_at => {
                tokio::time::sleep_until(give_up_at.min(Instant::now() + delay)).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            outcome => return outcome,
        }
    }
}

/// `wait` from now; a wait too long to represent (`store_wait = "1000000y"`) is a year.
fn deadline(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait).unwrap_or(now + Duration::from_secs(365 * 24 * 3600))
}

/// Answers the appends whose wait is over: their lines are not stored.
fn give_up_overdue(group: &mut Vec<Append>, reason: &str) {
    let now = Instant::now();
    let (overdue, waiting): (Vec<Append>, Vec<Append>) =
        std::mem::take(group).into_iter().partition(|append| append.give_up_at <= now);
    *group = waiting;
    for append in overdue {
        tracing::error!(run = %append.run, entries = append.entries.len(), %reason, "log lines not stored: the store refused them for the whole store wait");
        let _ = append.stored.send(Err(AppendError::Unstored { reason: reason.to_string() }));
    }
}

/// Stores a group in one transaction and publishes what was stored; one outcome per append,
/// or the error that stored nothing.
async fn commit_and_publish(
    store: &Store,
    hub: &LogHub,
    metrics: &Metrics,
    group: &[Append],
) -> Result<Vec<Outcome>, StoreError> {
    let started = std::time::Instant::now();
    let appends: Vec<(RunId, &[LogEntry])> = group.iter().map(|append| (append.run, &append.entries[..])).collect();
    let results = store.append_logs(&appends).await?;
    let took = started.elapsed();
    let commit_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    tracing::trace!(appends = group.len(), commit_us, "log lines committed");
    let outcomes: Vec<Outcome> =
        results.into_iter().zip(&appends).map(|(result, append)| outcome(result, *append)).collect();
    let (mut lines, mut bytes) = (0u64, 0u64);
    for (append, outcome) in group.iter().zip(&outcomes) {
        if outcome.is_ok() {
            lines += append.entries.len() as u64;
            bytes += append.entries.iter().map(|entry| entry.bytes.len() as u64).sum::<u64>();
            hub.publish(append.run, append.entries.clone());
        }
    }
    // One histogram observe and two adds per commit, however many lines it held.
    metrics.log_committed(lines, bytes, took);
    Ok(outcomes)
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
            Err(AppendError::Unstored { reason: error.to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    use oneoff_core::LogStream;

    use super::*;

    fn entries(first: u64, last: u64) -> Vec<LogEntry> {
        (first..=last)
            .map(|seq| LogEntry {
                seq,
                ts_us: 0,
                stream: LogStream::Stdout,
                bytes: vec![b'x'].into(),
                continues: false,
                partial: false,
            })
            .collect()
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
        let unstored = Err(AppendError::Unstored { reason: "run 1 does not exist".into() });
        assert_eq!(outcome(Err(StoreError::RunNotFound(run)), (run, &batch)), unstored);
    }
}
