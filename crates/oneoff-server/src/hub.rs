//! The log hub: tells followers that a live run has new lines, and keeps its recent lines
//! in memory so followers near the head never touch the store.
//!
//! The store is the source of truth. A live run has a [`Feed`]: a `watch` carrying "stored
//! up to seq N" and "finished", and a byte-bounded cache of the most recent batches, which
//! are always already stored. Every follower is a [`Cursor`] that pulls from its own
//! position: from the cache when it covers that position, else from the store. Followers
//! pull, so a slow or stalled follower costs the writer nothing and no memory: it simply
//! falls behind into the store, and never sees a gap or a duplicate. Every step of a cursor
//! is bounded by bytes (`max_message_bytes`) as well as by entries, so a follower holds at
//! most one step's output, whatever the log holds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use oneoff_core::{LogEntry, RunId, RunRecord};
use oneoff_store::{Store, StoreError};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What followers of one run are told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub last_seq: u64,
    pub finished: bool,
}

/// One live run's notifications and recent lines.
#[derive(Debug)]
pub struct Feed {
    progress: watch::Sender<Progress>,
    recent: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    batches: VecDeque<Arc<[LogEntry]>>,
    bytes: usize,
    /// Sequence number of the last entry published (stored).
    last_seq: u64,
}

/// What the cache can say about entries after a position.
enum Cached {
    /// Entries after the position, from memory.
    Hit(Vec<LogEntry>),
    /// Nothing was published after the position yet.
    UpToDate,
    /// The position is older than what the cache holds: read the store.
    Miss,
}

impl Feed {
    fn read(&self, after: u64, max_entries: usize, max_bytes: usize) -> Cached {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if after >= recent.last_seq {
            return Cached::UpToDate;
        }
        let Some(oldest) = recent.batches.front().and_then(|batch| batch.first()) else { return Cached::Miss };
        if oldest.seq > after + 1 {
            return Cached::Miss;
        }
        let (mut entries, mut bytes) = (Vec::new(), 0usize);
        for batch in &recent.batches {
            let Some(last) = batch.last() else { continue };
            if last.seq <= after {
                continue;
            }
            let skip = after.saturating_sub(batch[0].seq - 1) as usize;
            for entry in &batch[skip..] {
                let fits = entries.is_empty() || bytes + entry.bytes.len() <= max_bytes;
                if !fits || entries.len() >= max_entries {
                    return Cached::Hit(entries);
                }
                bytes += entry.bytes.len();
                entries.push(entry.clone());
            }
        }
        Cached::Hit(entries)
    }
}

#[derive(Debug, Clone)]
pub struct LogHub {
    live: Arc<Mutex<HashMap<RunId, Arc<Feed>>>>,
    cache_bytes: usize,
    step_bytes: usize,
}

impl LogHub {
    /// `cache_bytes` bounds the recent lines kept in memory per live run; `step_bytes` the
    /// output one step of a [`Cursor`] reads (one entry may be larger alone).
    pub fn new(cache_bytes: usize, step_bytes: usize) -> LogHub {
        LogHub { live: Arc::default(), cache_bytes, step_bytes }
    }

    /// Registers a run as live (queued or running). Called before the run can produce lines.
    pub fn open(&self, run: RunId) {
        self.lock().entry(run).or_insert_with(|| {
            Arc::new(Feed { progress: watch::channel(Progress::default()).0, recent: Mutex::default() })
        });
    }

    /// `batch` is in the store now; keeps it in the cache and wakes followers.
    pub fn publish(&self, run: RunId, batch: Arc<[LogEntry]>) {
        let Some(feed) = self.feed(run) else { return };
        let Some(last_seq) = batch.last().map(|entry| entry.seq) else { return };
        {
            let mut recent = feed.recent.lock().unwrap_or_else(PoisonError::into_inner);
            recent.bytes += batch_bytes(&batch);
            recent.batches.push_back(batch);
            recent.last_seq = last_seq;
            // A batch larger than the whole cache is not kept either: followers read it from the store.
            while recent.bytes > self.cache_bytes {
                if let Some(evicted) = recent.batches.pop_front() {
                    recent.bytes -= batch_bytes(&evicted);
                }
            }
        }
        feed.progress.send_replace(Progress { last_seq, finished: false });
    }

    /// The run's final state is in the store; wakes every follower and forgets the run.
    pub fn finish(&self, run: RunId) {
        if let Some(feed) = self.lock().remove(&run) {
            let last_seq = feed.progress.borrow().last_seq;
            feed.progress.send_replace(Progress { last_seq, finished: true });
        }
    }

    /// A receiver that changes whenever the run makes progress; `None` when the run is not live.
    pub fn subscribe(&self, run: RunId) -> Option<watch::Receiver<Progress>> {
        self.feed(run).map(|feed| feed.progress.subscribe())
    }

    pub fn live_runs(&self) -> usize {
        self.lock().len()
    }

    fn feed(&self, run: RunId) -> Option<Arc<Feed>> {
        self.lock().get(&run).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RunId, Arc<Feed>>> {
        // Inserts and removals cannot leave the map half-changed, so a poisoned lock is safe.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn batch_bytes(batch: &[LogEntry]) -> usize {
    batch.iter().map(|entry| entry.bytes.len() + std::mem::size_of::<LogEntry>()).sum()
}

/// One step of following a run.
#[derive(Debug)]
pub enum Step {
    /// The next entries after the cursor's position (which has moved past them).
    Entries(Vec<LogEntry>),
    /// The run is final and every entry was delivered.
    Finished(RunRecord),
    /// Nothing new before the deadline (or the server is stopping).
    Quiet,
    /// The run does not exist (any more).
    Gone,
}

/// A follower's position in one run's log: "read from SEQ, then follow" for every transport.
pub struct Cursor {
    store: Store,
    hub: LogHub,
    run: RunId,
    after: u64,
}

impl Cursor {
    pub fn new(store: Store, hub: LogHub, run: RunId, after: u64) -> Cursor {
        Cursor { store, hub, run, after }
    }

    /// The sequence number of the last entry delivered (what a client resumes `after`).
    pub fn position(&self) -> u64 {
        self.after
    }

    /// Up to `max_entries` entries after the position (and no more output than the hub's
    /// step bound), waiting until `deadline` for them.
    pub async fn next(
        &mut self,
        max_entries: usize,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> Result<Step, StoreError> {
        let max_bytes = self.hub.step_bytes;
        loop {
            let feed = self.hub.feed(self.run);
            // Subscribe before reading, so progress made after the read wakes the wait below.
            let mut progress = feed.as_ref().map(|feed| feed.progress.subscribe());
            let cached = feed.as_ref().map_or(Cached::Miss, |feed| feed.read(self.after, max_entries, max_bytes));
            let entries = match cached {
                Cached::Hit(entries) => entries,
                Cached::UpToDate => Vec::new(),
                Cached::Miss => self.store.read_log(self.run, self.after, max_entries, max_bytes).await?,
            };
            if let Some(last) = entries.last() {
                self.after = last.seq;
                return Ok(Step::Entries(entries));
            }
            let finished = progress.as_ref().is_none_or(|receiver| receiver.borrow().finished);
            if finished {
                // Not live: the run is final (all entries stored, none left after the position),
                // or queued and not yet registered after a restart.
                match self.store.run(self.run).await? {
                    None => return Ok(Step::Gone),
                    Some(record) if record.status.is_final() => {
                        let rest = self.store.read_log(self.run, self.after, max_entries, max_bytes).await?;
                        if let Some(last) = rest.last() {
                            self.after = last.seq;
                            return Ok(Step::Entries(rest));
                        }
                        return Ok(Step::Finished(record));
                    }
                    Some(_) => progress = None,
                }
            }
            let woke = match progress.as_mut() {
                Some(receiver) => tokio::select! {
                    _ = receiver.changed() => true,
                    () = tokio::time::sleep_until(deadline) => false,
                    () = shutdown.cancelled() => false,
                },
                None => tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => Instant::now() < deadline,
                    () = tokio::time::sleep_until(deadline) => false,
                    () = shutdown.cancelled() => false,
                },
            };
            if !woke {
                return Ok(Step::Quiet);
            }
        }
    }
}

/// The result of one long-poll read.
#[derive(Debug)]
pub struct LogRead {
    pub entries: Vec<LogEntry>,
    /// The run as read after the entries.
    pub run: RunRecord,
    /// True when the run is final and no entry follows the last one returned (or `after`,
    /// when it is past the end).
    pub done: bool,
}

/// Long-poll: entries after `after`, waiting up to `wait` when there are none and the run is live.
pub async fn read_or_wait(
    store: &Store,
    hub: &LogHub,
    run: RunId,
    after: u64,
    limit: u32,
    wait: Duration,
    shutdown: &CancellationToken,
) -> Result<Option<LogRead>, StoreError> {
    let mut cursor = Cursor::new(store.clone(), hub.clone(), run, after);
    let deadline = Instant::now() + wait;
    let entries = match cursor.next(limit as usize, deadline, shutdown).await? {
        Step::Gone => return Ok(None),
        Step::Finished(record) => return Ok(Some(LogRead { entries: Vec::new(), run: record, done: true })),
        Step::Entries(entries) => entries,
        Step::Quiet => Vec::new(),
    };
    // Read the run after the entries: entries are stored before the final state, so a final
    // run whose last stored entry is at or before the position has nothing more to give.
    let Some(record) = store.run(run).await? else { return Ok(None) };
    let done = record.status.is_final() && store.last_seq(run).await? <= cursor.position();
    Ok(Some(LogRead { entries, run: record, done }))
}

#[cfg(test)]
mod tests {
    use oneoff_core::LogStream;

    use super::*;

    fn batch(seqs: std::ops::RangeInclusive<u64>, bytes: usize) -> Arc<[LogEntry]> {
        seqs.map(|seq| LogEntry {
            seq,
            ts_us: 0,
            stream: LogStream::Stdout,
            bytes: vec![b'x'; bytes],
            continues: false,
            partial: false,
        })
        .collect()
    }

    fn seqs(cached: Cached) -> Option<Vec<u64>> {
        match cached {
            Cached::Hit(entries) => Some(entries.iter().map(|entry| entry.seq).collect()),
            Cached::UpToDate => Some(Vec::new()),
            Cached::Miss => None,
        }
    }

    #[test]
    fn a_cache_read_is_bounded_by_bytes_and_entries() {
        let hub = LogHub::new(1_000_000, 250);
        hub.open(RunId(1));
        hub.publish(RunId(1), batch(1..=5, 100));
        hub.publish(RunId(1), batch(6..=10, 100));
        let feed = hub.feed(RunId(1)).unwrap();
        assert_eq!(seqs(feed.read(0, 100, 250)), Some(vec![1, 2]), "200 bytes fit in 250, 300 do not");
        assert_eq!(seqs(feed.read(4, 100, 250)), Some(vec![5, 6]), "a read spans batches");
        assert_eq!(seqs(feed.read(2, 1, 250)), Some(vec![3]));
        assert_eq!(seqs(feed.read(0, 100, 10)), Some(vec![1]), "an entry larger than the bound comes alone");
        assert_eq!(seqs(feed.read(10, 100, 250)), Some(vec![]));
    }

    #[test]
    fn a_batch_larger_than_the_cache_is_left_to_the_store() {
        let hub = LogHub::new(10_000, 1_000_000);
        hub.open(RunId(1));
        hub.publish(RunId(1), batch(1..=5, 100));
        hub.publish(RunId(1), batch(6..=205, 100));
        let feed = hub.feed(RunId(1)).unwrap();
        assert_eq!(seqs(feed.read(0, 100, 1000)), None, "read from the store");
        assert_eq!(seqs(feed.read(204, 100, 1000)), None);
        assert_eq!(seqs(feed.read(205, 100, 1000)), Some(vec![]), "and still known to be up to date");
        hub.publish(RunId(1), batch(206..=206, 100));
        assert_eq!(seqs(feed.read(205, 100, 1000)), Some(vec![206]), "the next batch is cached again");
    }
}
