//! The log hub: tells followers that a live run has new lines in the store.
//!
//! The store is the source of truth; the hub only carries "persisted up to seq N" and
//! "finished" per live run over a `watch` channel, so a follower re-reads the store from
//! its own position and can never see a gap or a duplicate, however slow it is. A watch
//! holds one value, so a slow follower costs no memory on the writer's side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oneoff_core::{LogEntry, RunId, RunRecord};
use oneoff_store::{Store, StoreError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What followers of one run are told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub last_seq: u64,
    pub finished: bool,
}

#[derive(Debug, Clone, Default)]
pub struct LogHub {
    live: Arc<Mutex<HashMap<RunId, watch::Sender<Progress>>>>,
}

impl LogHub {
    /// Registers a run as live (queued or running). Called before the run can produce lines.
    pub fn open(&self, run: RunId) {
        self.lock().entry(run).or_insert_with(|| watch::channel(Progress::default()).0);
    }

    /// Lines up to `last_seq` are in the store.
    pub fn publish(&self, run: RunId, last_seq: u64) {
        if let Some(sender) = self.lock().get(&run) {
            sender.send_replace(Progress { last_seq, finished: false });
        }
    }

    /// The run's final state is in the store; wakes every follower and forgets the run.
    pub fn finish(&self, run: RunId) {
        if let Some(sender) = self.lock().remove(&run) {
            let last_seq = sender.borrow().last_seq;
            sender.send_replace(Progress { last_seq, finished: true });
        }
    }

    /// A receiver that changes whenever the run makes progress; `None` when the run is not live.
    pub fn subscribe(&self, run: RunId) -> Option<watch::Receiver<Progress>> {
        self.lock().get(&run).map(watch::Sender::subscribe)
    }

    pub fn live_runs(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, watch::Sender<Progress>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removals), so a poisoned lock is still safe to use.
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The result of one "read from SEQ, then follow" step.
#[derive(Debug)]
pub struct LogRead {
    pub entries: Vec<LogEntry>,
    /// The run as read before the entries: when it is final, no entry can follow the last one read.
    pub run: RunRecord,
}

impl LogRead {
    /// True when the run is final and every entry after `after` up to the end was returned.
    pub fn done(&self, limit: u32) -> bool {
        self.run.status.is_final() && (self.entries.len() as u64) < u64::from(limit)
    }
}

/// Reads entries after `after`; when there are none and the run is live, waits up to `wait`
/// for new ones. This one operation serves every log transport.
pub async fn read_or_wait(
    store: &Store,
    hub: &LogHub,
    run: RunId,
    after: u64,
    limit: u32,
    wait: Duration,
    shutdown: &CancellationToken,
) -> Result<Option<LogRead>, StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Subscribe before reading so that progress made between the read and the wait wakes us.
        let mut progress = hub.subscribe(run);
        // Read the run before its entries: if it is final now, every entry is already stored.
        let Some(record) = store.run(run).await? else { return Ok(None) };
        let entries = store.read_log(run, after, limit).await?;
        let read = LogRead { entries, run: record };
        if !read.entries.is_empty() || read.run.status.is_final() {
            return Ok(Some(read));
        }
        let woke = match progress.as_mut() {
            Some(receiver) => tokio::select! {
                _ = receiver.changed() => true,
                () = tokio::time::sleep_until(deadline) => false,
                () = shutdown.cancelled() => false,
            },
            // Live in the store but not yet in the hub (being recovered at start): poll.
            None => tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => tokio::time::Instant::now() < deadline,
                () = tokio::time::sleep_until(deadline) => false,
                () = shutdown.cancelled() => false,
            },
        };
        if !woke {
            return Ok(Some(read));
        }
    }
}
