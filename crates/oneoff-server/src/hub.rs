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
//!
//! A run executing on another replica (PostgreSQL) has no feed here; its first follower makes
//! a *remote feed* for it, dropped with its last follower: the same `Feed`, filled by one
//! fetcher task per run that reads newly stored lines from the store once for all of this
//! replica's followers. The fetcher is woken by the run's stored head, which the remote watch
//! ([`LogHub::spawn_remote_watch`]) moves from the store's log events (a notification sent in
//! the other replica's commit) and, every [`REMOTE_POLL`], from one query of the heads of all
//! followed remote runs, so a lost notification only delays. Everything in a remote feed's
//! cache was read from the store, so a follower there, too, never sees a line that is not stored.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use oneoff_core::{LogEntry, RunId, RunRecord};
use oneoff_store::{LogEvent, LogHead, Store, StoreError};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the heads of followed remote runs are read, whatever the notifications say.
pub const REMOTE_POLL: Duration = Duration::from_secs(1);
/// Entries a remote feed's fetcher reads per step (its output is bounded by the step bytes too).
const FETCH_ENTRIES: usize = 20_000;
/// Back-off of a fetcher whose reads fail (the database is away).
const FETCH_RETRY: Duration = Duration::from_millis(500);

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
    fn new(last_seq: u64) -> Feed {
        let recent = Recent { last_seq, ..Recent::default() };
        Feed { progress: watch::channel(Progress { last_seq, finished: false }).0, recent: Mutex::new(recent) }
    }

    /// `batch` (the entries right after the cache's head) is stored: keeps it and wakes followers.
    fn publish(&self, batch: Arc<[LogEntry]>, cache_bytes: usize) {
        let Some(last_seq) = batch.last().map(|entry| entry.seq) else { return };
        {
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            recent.bytes += batch_bytes(&batch);
            recent.batches.push_back(batch);
            recent.last_seq = last_seq;
            // A batch larger than the whole cache is not kept either: followers read it from the store.
            while recent.bytes > cache_bytes {
                if let Some(evicted) = recent.batches.pop_front() {
                    recent.bytes -= batch_bytes(&evicted);
                }
            }
        }
        self.progress.send_replace(Progress { last_seq, finished: false });
    }

    fn last_seq(&self) -> u64 {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner).last_seq
    }

    fn finish(&self) {
        let last_seq = self.progress.borrow().last_seq;
        self.progress.send_replace(Progress { last_seq, finished: true });
    }

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
    /// Runs executing elsewhere that someone here follows.
    remote: Arc<Mutex<HashMap<RunId, Remote>>>,
    /// Asks the remote watch to read every followed head now (a notification may be lost).
    poll_now: Arc<Notify>,
    cache_bytes: usize,
    step_bytes: usize,
}

/// A followed run executing on another replica.
#[derive(Debug)]
struct Remote {
    feed: Arc<Feed>,
    /// How far the store holds the run, as events and polls said: the fetcher reads up to it.
    head: watch::Sender<Progress>,
    followers: usize,
    /// Ends the fetcher when the last follower leaves.
    stop: CancellationToken,
}

/// A follower's share of a remote feed; the feed goes with the last one.
struct RemoteFollow {
    hub: LogHub,
    run: RunId,
    feed: Arc<Feed>,
}

impl Drop for RemoteFollow {
    fn drop(&mut self) {
        let mut remote = self.hub.remote_lock();
        if let Some(entry) = remote.get_mut(&self.run) {
            entry.followers -= 1;
            if entry.followers == 0 {
                entry.stop.cancel();
                remote.remove(&self.run);
            }
        }
    }
}

impl LogHub {
    /// `cache_bytes` bounds the recent lines kept in memory per live run; `step_bytes` the
    /// output one step of a [`Cursor`] reads (one entry may be larger alone).
    pub fn new(cache_bytes: usize, step_bytes: usize) -> LogHub {
        LogHub { live: Arc::default(), remote: Arc::default(), poll_now: Arc::default(), cache_bytes, step_bytes }
    }

    /// Registers a run as live (queued or running). Called before the run can produce lines.
    pub fn open(&self, run: RunId) {
        self.lock().entry(run).or_insert_with(|| Arc::new(Feed::new(0)));
        // Followers that took it for another replica's run switch to this feed.
        if let Some(remote) = self.remote_lock().get(&run) {
            remote.feed.progress.send_modify(|_| {});
        }
    }

    /// `batch` is in the store now; keeps it in the cache and wakes followers.
    pub fn publish(&self, run: RunId, batch: Arc<[LogEntry]>) {
        if let Some(feed) = self.feed(run) {
            feed.publish(batch, self.cache_bytes);
        }
    }

    /// The run's final state is in the store; wakes every follower and forgets the run.
    pub fn finish(&self, run: RunId) {
        if let Some(feed) = self.lock().remove(&run) {
            feed.finish();
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

    fn remote_lock(&self) -> MutexGuard<'_, HashMap<RunId, Remote>> {
        // As above: whole inserts, removals and counter steps.
        self.remote.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs executing elsewhere with followers here.
    pub fn remote_runs(&self) -> usize {
        self.remote_lock().len()
    }

    /// Follows `run`, executing elsewhere and stored up to `stored_seq`, through its remote
    /// feed (made by the first follower, with a fetcher reading from `stored_seq` on).
    fn follow_remote(&self, store: &Store, run: RunId, stored_seq: u64) -> RemoteFollow {
        let mut remote = self.remote_lock();
        let entry = remote.entry(run).or_insert_with(|| {
            let feed = Arc::new(Feed::new(stored_seq));
            let (head, heads) = watch::channel(Progress { last_seq: stored_seq, finished: false });
            let stop = CancellationToken::new();
            let fetcher = Fetcher {
                store: store.clone(),
                run,
                feed: feed.clone(),
                cache_bytes: self.cache_bytes,
                step_bytes: self.step_bytes,
            };
            tokio::spawn(fetcher.run(heads, stop.clone()));
            Remote { feed, head, followers: 0, stop }
        });
        entry.followers += 1;
        RemoteFollow { hub: self.clone(), run, feed: entry.feed.clone() }
    }

    /// Moves a followed remote run's head forward (never back), which wakes its fetcher.
    fn remote_head(&self, head: LogHead) {
        if let Some(remote) = self.remote_lock().get(&head.run) {
            remote.head.send_if_modified(|known| {
                let moved = head.last_seq > known.last_seq || (head.finished && !known.finished);
                known.last_seq = known.last_seq.max(head.last_seq);
                known.finished |= head.finished;
                moved
            });
        }
    }

    /// Reads the heads of every followed remote run in one query; a run no longer stored is over.
    async fn poll_remote_heads(&self, store: &Store) -> Result<(), StoreError> {
        let runs: Vec<RunId> = self.remote_lock().keys().copied().collect();
        if runs.is_empty() {
            return Ok(());
        }
        let heads = store.log_heads(&runs).await?;
        for run in runs {
            match heads.iter().find(|head| head.run == run) {
                Some(head) => self.remote_head(*head),
                None => self.remote_head(LogHead { run, last_seq: 0, finished: true }),
            }
        }
        Ok(())
    }

    /// Starts the remote watch: it moves followed remote runs' heads from the store's log
    /// events (none on SQLite) and from a poll every [`REMOTE_POLL`], until `shutdown`, when it
    /// stops the events' listener too.
    pub fn spawn_remote_watch(&self, store: Store, shutdown: CancellationToken) -> JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut events = store.log_events();
            let mut poll = tokio::time::interval(REMOTE_POLL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                let next_event = async {
                    match events.as_mut() {
                        Some(events) => events.next().await,
                        None => std::future::pending().await,
                    }
                };
                let poll_due = tokio::select! {
                    () = shutdown.cancelled() => break,
                    event = next_event => match event {
                        Some(LogEvent::Stored(head)) => {
                            hub.remote_head(head);
                            false
                        }
                        // Notifications were lost: read what they would have said.
                        Some(LogEvent::Missed) => true,
                        None => {
                            tracing::error!("the log event listener stopped; followers of other replicas' runs poll");
                            events = None;
                            false
                        }
                    },
                    _ = poll.tick() => true,
                    () = hub.poll_now.notified() => true,
                };
                if poll_due {
                    match hub.poll_remote_heads(&store).await {
                        Ok(()) => failing = false,
                        Err(error) => {
                            if !failing {
                                tracing::warn!(%error, "cannot read the heads of other replicas' runs; their followers wait");
                            }
                            failing = true;
                        }
                    }
                }
            }
            if let Some(events) = events {
                events.shutdown().await;
            }
        })
    }
}

/// Reads a remote run's new lines from the store into its feed, once for all its followers.
struct Fetcher {
    store: Store,
    run: RunId,
    feed: Arc<Feed>,
    cache_bytes: usize,
    step_bytes: usize,
}

impl Fetcher {
    async fn run(self, mut heads: watch::Receiver<Progress>, stop: CancellationToken) {
        loop {
            // The head first, then the lines: lines are stored before the final state, so once
            // the head says finished, reading to the end reads every line.
            let head = *heads.borrow_and_update();
            loop {
                let read = tokio::select! {
                    () = stop.cancelled() => return,
                    read = self.store.read_log(self.run, self.feed.last_seq(), FETCH_ENTRIES, self.step_bytes) => read,
                };
                match read {
                    Ok(entries) if entries.is_empty() => break,
                    Ok(entries) => self.feed.publish(Arc::from(entries), self.cache_bytes),
                    Err(error) => {
                        tracing::debug!(run = %self.run, %error, "cannot read a remote run's lines; trying again");
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(FETCH_RETRY) => {}
                        }
                    }
                }
            }
            if head.finished {
                self.feed.finish();
                return;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                changed = heads.changed() => if changed.is_err() { return },
            }
        }
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
    /// While the run is live elsewhere (not in this process's hub): its remote feed.
    remote: Option<RemoteFollow>,
}

impl Cursor {
    pub fn new(store: Store, hub: LogHub, run: RunId, after: u64) -> Cursor {
        Cursor { store, hub, run, after, remote: None }
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
            let feed = match self.hub.feed(self.run) {
                Some(local) => {
                    // Live here (again): the fast path, with no remote feed.
                    self.remote = None;
                    Some(local)
                }
                None => self.remote.as_ref().map(|remote| remote.feed.clone()),
            };
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
                    // Live, and not here: executing on another replica (or queued). Follow it
                    // through its remote feed, from what is stored now, and read again.
                    Some(_) if self.remote.is_none() => {
                        let stored_seq = self.store.last_seq(self.run).await?;
                        self.remote = Some(self.hub.follow_remote(&self.store, self.run, stored_seq));
                        continue;
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

    /// A run stored by someone else (no feed here): its followers share one remote feed, made
    /// by the first and dropped with the last, and are woken by the poll of its head with
    /// exactly the stored lines; when the run ends elsewhere, they finish.
    #[tokio::test]
    async fn followers_of_a_run_stored_elsewhere_share_one_remote_feed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("oneoff.db")).await.unwrap();
        let new = oneoff_store::NewRun {
            job: "j".into(),
            params: Vec::new(),
            argv: vec!["true".into()],
            requested_by: None,
            created_at_us: 1,
            held_by: None,
        };
        let run = store.insert_run(&new, 10).await.unwrap().id;
        store.mark_running(run, 2).await.unwrap();
        let hub = LogHub::new(1_000_000, 1_000_000);
        let shutdown = CancellationToken::new();
        let watch = hub.spawn_remote_watch(store.clone(), shutdown.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut cursors: Vec<Cursor> = (0..3).map(|_| Cursor::new(store.clone(), hub.clone(), run, 0)).collect();
        // Nothing stored yet: each follower finds the run live elsewhere and joins its feed.
        for cursor in &mut cursors {
            let quiet = cursor.next(100, Instant::now() + Duration::from_millis(50), &shutdown).await.unwrap();
            assert!(matches!(quiet, Step::Quiet), "{quiet:?}");
        }
        assert_eq!(hub.remote_runs(), 1, "one feed for the three followers");
        // Lines another replica stores: the poll of the head wakes the feed's fetcher.
        store.append_log(run, &batch(1..=3, 10)).await.unwrap();
        let steps =
            futures_util::future::join_all(cursors.iter_mut().map(|cursor| cursor.next(100, deadline, &shutdown)))
                .await;
        for step in steps {
            match step.unwrap() {
                Step::Entries(entries) => {
                    assert_eq!(entries.iter().map(|entry| entry.seq).collect::<Vec<_>>(), vec![1, 2, 3])
                }
                other => panic!("expected the stored lines, got {other:?}"),
            }
        }
        let finish = oneoff_store::Finish {
            status: oneoff_core::RunStatus::Succeeded,
            finished_at_us: 3,
            exit_code: Some(0),
            signal: None,
            error: None,
        };
        store.finish_run(run, &finish).await.unwrap();
        for cursor in &mut cursors {
            assert!(matches!(cursor.next(100, deadline, &shutdown).await.unwrap(), Step::Finished(_)));
        }
        drop(cursors);
        assert_eq!(hub.remote_runs(), 0, "dropped with its last follower");
        shutdown.cancel();
        watch.await.unwrap();
    }
}
