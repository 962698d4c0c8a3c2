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
//!
//! Encode once, send to many: each batch the cache keeps also holds its [`Frame`]s, the
//! messages both live transports send, built by the first viewer that sends the batch and
//! then shared by every viewer at the head (local or remote feed alike), so a thousand viewers
//! cost one encoding and a thousand reference counts. A viewer whose position is not where a
//! kept message starts (it resumed mid-batch, or reads from the store) encodes its own with
//! the same [`Batches`], cut at the same bound, until it reaches a batch's start. The frames'
//! bytes count against the cache's bound from the moment they are built.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use oneoff_core::{LogEntry, RunId, RunRecord};
use oneoff_store::{LogEvent, LogHead, Store, StoreError};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::frames::{Batches, Frame};

/// How often the heads of followed remote runs are read, whatever the notifications say.
pub const REMOTE_POLL: Duration = Duration::from_secs(1);
/// Entries a remote feed's fetcher reads per step (its output is bounded by the step bytes too).
const FETCH_ENTRIES: usize = 20_000;
/// Entries a live stream's step reads from the store (bounded by the step bytes too).
const FRAME_STEP_ENTRIES: usize = 20_000;
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
    /// Bounds what `recent` holds.
    cache_bytes: usize,
}

#[derive(Debug, Default)]
struct Recent {
    batches: VecDeque<Arc<Kept>>,
    /// What the kept batches hold: entries, and the frames built so far.
    bytes: usize,
    /// Sequence number of the last entry published (stored).
    last_seq: u64,
}

/// A stored batch as the cache keeps it: its entries, and the frames of its messages once a
/// viewer built them.
#[derive(Debug)]
struct Kept {
    entries: Arc<[LogEntry]>,
    frames: OnceLock<Vec<Frame>>,
    /// The frames' bytes are counted in [`Recent::bytes`]. Both flags change only under the
    /// cache's lock, so counting and eviction always agree.
    frames_counted: AtomicBool,
    evicted: AtomicBool,
}

impl Kept {
    fn first_seq(&self) -> u64 {
        self.entries.first().map_or(0, |entry| entry.seq)
    }

    fn last_seq(&self) -> u64 {
        self.entries.last().map_or(0, |entry| entry.seq)
    }

    /// What it costs the cache now.
    fn bytes(&self) -> usize {
        let frames = match self.frames.get() {
            Some(frames) if self.frames_counted.load(Ordering::Relaxed) => frames_bytes(frames),
            _ => 0,
        };
        batch_bytes(&self.entries) + frames
    }
}

fn frames_bytes(frames: &[Frame]) -> usize {
    frames.iter().map(|frame| frame.len() + std::mem::size_of::<Frame>()).sum()
}

/// What the cache can say about entries after a position.
enum Cached<T> {
    /// Entries after the position, from memory.
    Hit(T),
    /// Nothing was published after the position yet.
    UpToDate,
    /// The position is older than what the cache holds: read the store.
    Miss,
}

/// One step of a live stream: messages ready to send, the last one ending at `last_seq`.
pub struct Frames {
    source: FrameSource,
    last_seq: u64,
}

enum FrameSource {
    /// Kept batches' frames, shared with every other viewer that sends them.
    Shared(std::vec::IntoIter<Frame>),
    /// This viewer's own messages, encoded one at a time as it sends them.
    Own(Batches),
}

impl Frames {
    fn own(entries: Vec<LogEntry>, max_bytes: usize) -> Option<Frames> {
        let last_seq = entries.last()?.seq;
        Some(Frames { source: FrameSource::Own(Batches::new(entries, max_bytes)), last_seq })
    }

    /// True when the messages are the hub's shared ones, not encoded for this viewer.
    pub fn shared(&self) -> bool {
        matches!(self.source, FrameSource::Shared(_))
    }
}

impl Iterator for Frames {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        match &mut self.source {
            FrameSource::Shared(frames) => frames.next(),
            FrameSource::Own(batches) => batches.next_frame(),
        }
    }
}

impl std::fmt::Debug for Frames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frames").field("shared", &self.shared()).field("last_seq", &self.last_seq).finish()
    }
}

impl Feed {
    fn new(last_seq: u64, cache_bytes: usize) -> Feed {
        let recent = Recent { last_seq, ..Recent::default() };
        let progress = watch::channel(Progress { last_seq, finished: false }).0;
        Feed { progress, recent: Mutex::new(recent), cache_bytes }
    }

    /// `batch` (the entries right after the cache's head) is stored: keeps it and wakes followers.
    fn publish(&self, batch: Arc<[LogEntry]>) {
        let Some(last_seq) = batch.last().map(|entry| entry.seq) else { return };
        {
            let mut recent = self.lock_recent();
            recent.bytes += batch_bytes(&batch);
            let kept = Kept {
                entries: batch,
                frames: OnceLock::new(),
                frames_counted: AtomicBool::new(false),
                evicted: AtomicBool::new(false),
            };
            recent.batches.push_back(Arc::new(kept));
            recent.last_seq = last_seq;
            recent.evict(self.cache_bytes);
        }
        self.progress.send_replace(Progress { last_seq, finished: false });
    }

    fn last_seq(&self) -> u64 {
        self.lock_recent().last_seq
    }

    fn lock_recent(&self) -> MutexGuard<'_, Recent> {
        // Every change leaves the batches and their count consistent, so a poisoned lock is safe.
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self) {
        let last_seq = self.progress.borrow().last_seq;
        self.progress.send_replace(Progress { last_seq, finished: true });
    }

    fn read(&self, after: u64, max_entries: usize, max_bytes: usize) -> Cached<Vec<LogEntry>> {
        let recent = self.lock_recent();
        let start = match recent.first_after(after) {
            Cached::Hit(start) => start,
            Cached::UpToDate => return Cached::UpToDate,
            Cached::Miss => return Cached::Miss,
        };
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for kept in recent.batches.range(start..) {
            if !take_entries(&kept.entries, after, max_entries, max_bytes, &mut entries, &mut bytes) {
                break;
            }
        }
        Cached::Hit(entries)
    }

    /// The messages after `after`, at most `max_bytes` of them (at least one): the kept
    /// batches' shared frames when `after` is where one of their messages starts, else this
    /// reader's own encoding of the rest of the batch holding `after + 1` (so its next step
    /// starts where a kept message does).
    fn read_frames(&self, after: u64, max_bytes: usize) -> Cached<Frames> {
        let kept: Vec<Arc<Kept>> = {
            let recent = self.lock_recent();
            let start = match recent.first_after(after) {
                Cached::Hit(start) => start,
                Cached::UpToDate => return Cached::UpToDate,
                Cached::Miss => return Cached::Miss,
            };
            // A message is at least as large as the bytes it carries: batches of `max_bytes`
            // of entries give enough frames for one step.
            let mut bytes = 0usize;
            let mut kept = Vec::new();
            for batch in recent.batches.range(start..) {
                if bytes > max_bytes {
                    break;
                }
                bytes += batch.entries.iter().map(|entry| entry.bytes.len()).sum::<usize>();
                kept.push(batch.clone());
            }
            kept
        };
        let Some(first) = kept.first() else { return Cached::Miss };
        let first_frames = self.frames_of(first, max_bytes);
        let starts_here = if after + 1 == first.first_seq() {
            Some(0)
        } else {
            first_frames.iter().position(|frame| frame.last_seq == after).map(|index| index + 1)
        };
        let Some(skip) = starts_here else {
            // Mid-message: this reader's own encoding, up to the end of this batch.
            let (mut entries, mut bytes) = (Vec::new(), 0usize);
            take_entries(&first.entries, after, usize::MAX, max_bytes, &mut entries, &mut bytes);
            return Frames::own(entries, max_bytes).map_or(Cached::UpToDate, Cached::Hit);
        };
        let mut frames = Vec::new();
        let mut bytes = 0usize;
        'batches: for (index, batch) in kept.iter().enumerate() {
            let (batch_frames, skip) =
                if index == 0 { (first_frames, skip) } else { (self.frames_of(batch, max_bytes), 0) };
            for frame in &batch_frames[skip..] {
                if !frames.is_empty() && bytes + frame.len() > max_bytes {
                    break 'batches;
                }
                bytes += frame.len();
                frames.push(frame.clone());
            }
        }
        match frames.last().map(|frame| frame.last_seq) {
            Some(last_seq) => Cached::Hit(Frames { source: FrameSource::Shared(frames.into_iter()), last_seq }),
            None => Cached::UpToDate,
        }
    }

    /// The batch's frames, built now by the first reader that needs them (the others wait
    /// for that one encoding), and then counted against the cache's bound.
    fn frames_of<'a>(&self, kept: &'a Kept, max_bytes: usize) -> &'a [Frame] {
        let mut built = false;
        let frames = kept.frames.get_or_init(|| {
            built = true;
            Batches::kept(kept.entries.clone(), max_bytes).frames()
        });
        if built {
            let mut recent = self.lock_recent();
            // Evicted meanwhile: never counted, so nothing to take back at eviction either.
            if !kept.evicted.load(Ordering::Relaxed) {
                kept.frames_counted.store(true, Ordering::Relaxed);
                recent.bytes += frames_bytes(frames);
                recent.evict(self.cache_bytes);
            }
        }
        frames
    }
}

impl Recent {
    /// The index of the kept batch holding `after + 1`.
    fn first_after(&self, after: u64) -> Cached<usize> {
        if after >= self.last_seq {
            return Cached::UpToDate;
        }
        match self.batches.front() {
            Some(oldest) if oldest.first_seq() <= after + 1 => {
                Cached::Hit(self.batches.partition_point(|kept| kept.last_seq() <= after))
            }
            _ => Cached::Miss,
        }
    }

    /// Drops the oldest batches until the cache is within `cache_bytes`. A batch larger than
    /// the whole cache is not kept either: followers read it from the store.
    fn evict(&mut self, cache_bytes: usize) {
        while self.bytes > cache_bytes {
            let Some(evicted) = self.batches.pop_front() else { break };
            self.bytes = self.bytes.saturating_sub(evicted.bytes());
            evicted.evicted.store(true, Ordering::Relaxed);
        }
    }
}

/// Appends the entries of `batch` after `after` to `entries` while they fit in `max_entries`
/// and `max_bytes` (the first always does); false once one did not.
fn take_entries(
    batch: &[LogEntry],
    after: u64,
    max_entries: usize,
    max_bytes: usize,
    entries: &mut Vec<LogEntry>,
    bytes: &mut usize,
) -> bool {
    let Some(first) = batch.first() else { return true };
    let skip = after.saturating_sub(first.seq - 1) as usize;
    for entry in batch.iter().skip(skip) {
        let fits = entries.is_empty() || *bytes + entry.bytes.len() <= max_bytes;
        if !fits || entries.len() >= max_entries {
            return false;
        }
        *bytes += entry.bytes.len();
        entries.push(entry.clone());
    }
    true
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
        self.lock().entry(run).or_insert_with(|| Arc::new(Feed::new(0, self.cache_bytes)));
        // Followers that took it for another replica's run switch to this feed.
        if let Some(remote) = self.remote_lock().get(&run) {
            remote.feed.progress.send_modify(|_| {});
        }
    }

    /// `batch` is in the store now; keeps it in the cache and wakes followers.
    pub fn publish(&self, run: RunId, batch: Arc<[LogEntry]>) {
        if let Some(feed) = self.feed(run) {
            feed.publish(batch);
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
            let feed = Arc::new(Feed::new(stored_seq, self.cache_bytes));
            let (head, heads) = watch::channel(Progress { last_seq: stored_seq, finished: false });
            let stop = CancellationToken::new();
            let fetcher = Fetcher { store: store.clone(), run, feed: feed.clone(), step_bytes: self.step_bytes };
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
    step_bytes: usize,
}

impl Fetcher {
    async fn run(self, mut heads: watch::Receiver<Progress>, stop: CancellationToken) {
        let mut first_pass = true;
        loop {
            // The head first, then the lines: lines are stored before the final state, so once
            // the head says finished, reading to the end reads every line.
            let head = *heads.borrow_and_update();
            // Up to the head the events and polls announced, and no further read to confirm
            // there is nothing beyond (one query per commit elsewhere, not two): anything
            // stored later is announced too. The first pass (lines stored before this feed
            // listened were announced to no one) and the end of a run read until nothing is left.
            while first_pass || head.finished || self.feed.last_seq() < head.last_seq {
                let read = tokio::select! {
                    () = stop.cancelled() => return,
                    read = self.store.read_log(self.run, self.feed.last_seq(), FETCH_ENTRIES, self.step_bytes) => read,
                };
                match read {
                    Ok(entries) if entries.is_empty() => break,
                    Ok(entries) => self.feed.publish(Arc::from(entries)),
                    Err(error) => {
                        tracing::debug!(run = %self.run, %error, "cannot read a remote run's lines; trying again");
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(FETCH_RETRY) => {}
                        }
                    }
                }
            }
            first_pass = false;
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
// A step is returned and taken apart at once, never stored in bulk: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step<T = Vec<LogEntry>> {
    /// The next entries after the cursor's position (which has moved past them).
    Entries(T),
    /// The run is final and every entry was delivered.
    Finished(RunRecord),
    /// Nothing new before the deadline (or the server is stopping).
    Quiet,
    /// The run does not exist (any more).
    Gone,
}

/// What a cursor's step yields: entries (long-poll, `log.txt`) or messages (live streams).
trait Take: Sized {
    fn cached(feed: &Feed, after: u64, max_entries: usize, max_bytes: usize) -> Cached<Self>;
    /// What the store returned; `None` when it is empty.
    fn stored(entries: Vec<LogEntry>, max_bytes: usize) -> Option<Self>;
    fn last_seq(&self) -> Option<u64>;
}

impl Take for Vec<LogEntry> {
    fn cached(feed: &Feed, after: u64, max_entries: usize, max_bytes: usize) -> Cached<Self> {
        feed.read(after, max_entries, max_bytes)
    }

    fn stored(entries: Vec<LogEntry>, _max_bytes: usize) -> Option<Self> {
        (!entries.is_empty()).then_some(entries)
    }

    fn last_seq(&self) -> Option<u64> {
        self.last().map(|entry| entry.seq)
    }
}

impl Take for Frames {
    fn cached(feed: &Feed, after: u64, _max_entries: usize, max_bytes: usize) -> Cached<Self> {
        feed.read_frames(after, max_bytes)
    }

    fn stored(entries: Vec<LogEntry>, max_bytes: usize) -> Option<Self> {
        Frames::own(entries, max_bytes)
    }

    fn last_seq(&self) -> Option<u64> {
        Some(self.last_seq)
    }
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
        self.step(max_entries, deadline, shutdown).await
    }

    /// The next messages after the position for a live stream (at most the hub's step bound
    /// of them, each at most that large): the hub's shared frames when the position is where
    /// a kept message starts, else this viewer's own. Waits until `deadline` for them.
    pub async fn next_frames(
        &mut self,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> Result<Step<Frames>, StoreError> {
        self.step(FRAME_STEP_ENTRIES, deadline, shutdown).await
    }

    async fn step<T: Take>(
        &mut self,
        max_entries: usize,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> Result<Step<T>, StoreError> {
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
            let cached = feed.as_ref().map_or(Cached::Miss, |feed| T::cached(feed, self.after, max_entries, max_bytes));
            let read = match cached {
                Cached::Hit(read) => Some(read),
                Cached::UpToDate => None,
                Cached::Miss => {
                    T::stored(self.store.read_log(self.run, self.after, max_entries, max_bytes).await?, max_bytes)
                }
            };
            if let Some((read, last_seq)) = read.and_then(|read| read.last_seq().map(|last_seq| (read, last_seq))) {
                self.after = last_seq;
                return Ok(Step::Entries(read));
            }
            let finished = progress.as_ref().is_none_or(|receiver| receiver.borrow().finished);
            if finished {
                // Not live: the run is final (all entries stored, none left after the position),
                // or queued and not yet registered after a restart.
                match self.store.run(self.run).await? {
                    None => return Ok(Step::Gone),
                    Some(record) if record.status.is_final() => {
                        let rest = self.store.read_log(self.run, self.after, max_entries, max_bytes).await?;
                        let rest = T::stored(rest, max_bytes);
                        if let Some((rest, last_seq)) = rest.and_then(|rest| rest.last_seq().map(|seq| (rest, seq))) {
                            self.after = last_seq;
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
            bytes: vec![b'x'; bytes].into(),
            continues: false,
            partial: false,
        })
        .collect()
    }

    fn seqs(cached: Cached<Vec<LogEntry>>) -> Option<Vec<u64>> {
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

    /// What a frame step carries: (its messages' texts, whether shared), or `None` for a miss.
    fn frame_step(cached: Cached<Frames>) -> Option<(Vec<Frame>, bool)> {
        match cached {
            Cached::Hit(frames) => {
                let shared = frames.shared();
                Some((frames.collect(), shared))
            }
            Cached::UpToDate => Some((Vec::new(), true)),
            Cached::Miss => None,
        }
    }

    fn frame_seqs(frames: &[Frame]) -> Vec<u64> {
        frames
            .iter()
            .flat_map(|frame| {
                let batch: oneoff_api::v1::StreamBatch = serde_json::from_str(frame.text()).unwrap();
                batch.entries.into_iter().map(|entry| entry.seq)
            })
            .collect()
    }

    /// Two viewers at the head send the very same buffers (one encoding, no copy), byte for
    /// byte what a viewer that encodes its own would send; a viewer that resumes inside a
    /// batch gets its own messages up to the end of that batch, exactly the entries after its
    /// position, and shares the next batch with the others.
    #[test]
    fn viewers_at_the_head_share_one_encoding_and_a_late_one_gets_exact_entries() {
        let hub = LogHub::new(1_000_000, 64 * 1024);
        hub.open(RunId(1));
        hub.publish(RunId(1), batch(1..=5, 10));
        let feed = hub.feed(RunId(1)).unwrap();
        let (first, shared) = frame_step(feed.read_frames(0, 64 * 1024)).unwrap();
        let (second, _) = frame_step(feed.read_frames(0, 64 * 1024)).unwrap();
        assert!(shared);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].sse_event().as_ptr(), second[0].sse_event().as_ptr(), "one buffer for both");
        let own: Vec<String> = Batches::new(batch(1..=5, 10).to_vec(), 64 * 1024).map(|batch| batch.text).collect();
        assert_eq!(vec![first[0].text().to_string()], own, "byte for byte the viewer's own encoding");

        hub.publish(RunId(1), batch(6..=8, 10));
        let (late, shared) = frame_step(feed.read_frames(3, 64 * 1024)).unwrap();
        assert!(!shared, "a position inside a batch gets its own messages");
        assert_eq!(frame_seqs(&late), vec![4, 5], "exactly the entries after it, to the end of its batch");
        let (next, shared) = frame_step(feed.read_frames(5, 64 * 1024)).unwrap();
        let (head, _) = frame_step(feed.read_frames(5, 64 * 1024)).unwrap();
        assert!(shared, "then the next batch is shared");
        assert_eq!(frame_seqs(&next), vec![6, 7, 8]);
        assert_eq!(next[0].sse_event().as_ptr(), head[0].sse_event().as_ptr());
        let (both, shared) = frame_step(feed.read_frames(0, 64 * 1024)).unwrap();
        assert!(shared);
        assert_eq!(frame_seqs(&both), (1..=8).collect::<Vec<_>>(), "a viewer behind takes several batches at once");
        assert_eq!(both.len(), 2, "as their own messages");
        assert!(frame_step(feed.read_frames(8, 64 * 1024)).unwrap().0.is_empty(), "up to date");
    }

    /// A batch larger than one message is cut at the same places whoever encodes it: the
    /// shared frames are the messages a viewer reading those entries from the store builds;
    /// a step is bounded by the message bound, whole messages at a time, and a viewer that
    /// sent part of a batch's messages goes on with the shared rest.
    #[test]
    fn a_batch_larger_than_a_message_is_cut_the_same_for_shared_and_own_encodings() {
        let max_bytes = 1000;
        let hub = LogHub::new(1_000_000, max_bytes);
        hub.open(RunId(1));
        let entries = batch(1..=60, 50);
        hub.publish(RunId(1), entries.clone());
        let feed = hub.feed(RunId(1)).unwrap();
        let own: Vec<Frame> = Batches::new(entries.to_vec(), max_bytes).frames();
        assert!(own.len() > 3, "{} messages", own.len());
        let mut received = Vec::new();
        let mut after = 0;
        let mut steps = 0;
        while after < 60 {
            let (frames, shared) = frame_step(feed.read_frames(after, max_bytes)).unwrap();
            assert!(shared);
            assert!(frames.iter().map(Frame::len).sum::<usize>() <= max_bytes, "a step is bounded");
            after = frames.last().unwrap().last_seq;
            received.extend(frames);
            steps += 1;
        }
        assert_eq!(steps, own.len(), "one message of this size per step");
        let texts = |frames: &[Frame]| frames.iter().map(|frame| frame.sse_event()).collect::<Vec<_>>();
        assert_eq!(texts(&received), texts(&own), "the same messages, byte for byte");
        assert_eq!(frame_seqs(&received), (1..=60).collect::<Vec<_>>());
    }

    /// Frames count against the cache's bound: building them can evict old batches, and
    /// evicting a batch whose frames were built gives their bytes back, never more.
    #[test]
    fn frames_count_against_the_cache_bound() {
        let hub = LogHub::new(20_000, 64 * 1024);
        hub.open(RunId(1));
        for first in (1..=100).step_by(10) {
            hub.publish(RunId(1), batch(first..=first + 9, 100));
        }
        let feed = hub.feed(RunId(1)).unwrap();
        let before = feed.lock_recent().bytes;
        assert!(before <= 20_000);
        let oldest = feed.lock_recent().batches.front().unwrap().first_seq();
        // A viewer catching up from the oldest kept batch builds every batch's frames.
        let mut after = oldest - 1;
        while let Some((frames, _)) = frame_step(feed.read_frames(after, 64 * 1024)) {
            let Some(last) = frames.last() else { break };
            after = last.last_seq;
        }
        assert_eq!(after, 100);
        let recent = feed.lock_recent();
        assert!(recent.bytes <= 20_000, "{} bytes kept", recent.bytes);
        let counted: usize = recent.batches.iter().map(|kept| kept.bytes()).sum();
        assert_eq!(recent.bytes, counted, "the count is what the kept batches hold");
        assert!(recent.batches.front().unwrap().first_seq() > oldest, "frames made room by evicting");
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
        // The live streams' messages: the remote feed's frames, one encoding for all three.
        store.append_log(run, &batch(4..=6, 10)).await.unwrap();
        let steps =
            futures_util::future::join_all(cursors.iter_mut().map(|cursor| cursor.next_frames(deadline, &shutdown)))
                .await;
        let mut buffers = Vec::new();
        for step in steps {
            match step.unwrap() {
                Step::Entries(frames) => {
                    assert!(frames.shared(), "{frames:?}");
                    let frames: Vec<Frame> = frames.collect();
                    assert_eq!(frame_seqs(&frames), vec![4, 5, 6]);
                    buffers.push(frames[0].sse_event().as_ptr());
                }
                other => panic!("expected the stored lines, got {other:?}"),
            }
        }
        assert!(buffers.iter().all(|buffer| *buffer == buffers[0]), "one shared encoding");
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
