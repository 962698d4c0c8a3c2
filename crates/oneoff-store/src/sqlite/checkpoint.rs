//! Copying the write-ahead log into the database file off the commit path, and keeping the
//! log from growing without bound.
//!
//! SQLite's own checkpoint (`wal_autocheckpoint`) runs inside the commit that grows the WAL
//! past 1,000 pages, and with group commit every live run's lines wait for that commit: tens
//! of milliseconds, once a second under load. It is off on every pooled connection. Instead a
//! [`Checkpointer`] task, on a connection of its own, runs a PASSIVE checkpoint every
//! [`CheckpointPolicy::period`]: it copies the log while commits go on, waiting for nobody.
//!
//! A PASSIVE checkpoint alone does not bound the log: the WAL starts over only at a commit that
//! finds it copied to the end, and under steady writes a commit always lands during the copy
//! (a job running `yes` grew it to 1.9 GB that way). So once the log is past
//! [`CheckpointPolicy::restart_frames`], the task takes the commit turn ([`WriteTurn`], which
//! the log's group commits take too), and runs a RESTART checkpoint: only the frames the
//! PASSIVE copy left are copied with commits waiting, and the next commit starts the log over.
//! A read that holds an old snapshot would keep it from doing so; the RESTART waits for it at
//! most [`RESTART_BUSY_WAIT`], and after a failure the next try comes later and later
//! ([`RESTART_BACKOFF_MAX`]), so a reader costs commits at most that wait now and then. Every
//! read of the store is one bounded statement, so the log starts over soon after; a read that
//! never ended would pin the log as it pins it for SQLite's own checkpoint.
//!
//! [`Checkpointer::stop`] ends the task and closes its connection; so does dropping the last
//! clone of the store.

use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::StoreError;

/// The turn to write the log: a group commit of log lines holds it for its transaction, the
/// checkpointer for a RESTART checkpoint, so neither polls SQLite's lock while the other has it.
pub(crate) type WriteTurn = Arc<Mutex<()>>;

/// How long a RESTART checkpoint waits for the lock and for readers to leave the log; commits
/// wait for it meanwhile.
pub(crate) const RESTART_BUSY_WAIT: Duration = Duration::from_millis(100);
/// After a RESTART that could not finish (a reader held the log), the next waits this long at first,
/// then twice as long each time, up to [`RESTART_BACKOFF_MAX`].
const RESTART_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// When the checkpointer copies the log and when it makes it start over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckpointPolicy {
    pub period: Duration,
    /// Log frames (pages) past which the log is made to start over: 2,048 frames are 8 MiB
    /// with SQLite's 4 KiB pages, well under the 64 MiB `journal_size_limit`, so the file is
    /// reused, not cut and grown again. The log holds at most this plus what is written in one
    /// period and one PASSIVE copy: when the job writes faster than the disk takes it, the
    /// RESTART makes commits wait for the rest, as SQLite's own checkpoint would.
    pub restart_frames: u64,
}

impl Default for CheckpointPolicy {
    fn default() -> CheckpointPolicy {
        CheckpointPolicy { period: Duration::from_millis(100), restart_frames: 2048 }
    }
}

/// What the checkpointer has done, for tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WalStats {
    /// The most frames the log held at any checkpoint.
    pub largest_frames: u64,
    /// RESTART checkpoints that finished: each let the next commit start the log over.
    pub restarts: u64,
    /// RESTART checkpoints that a reader or another writer kept from finishing.
    pub restarts_refused: u64,
}

/// The checkpoint task's handle; [`Checkpointer::stop`] ends it.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    #[cfg(test)]
    stats: watch::Receiver<WalStats>,
}

impl Checkpointer {
    /// Opens the checkpointer's own connection (with `options`, a short busy timeout) and starts it.
    pub(crate) async fn spawn(
        options: &SqliteConnectOptions,
        turn: WriteTurn,
        policy: CheckpointPolicy,
    ) -> Result<Checkpointer, StoreError> {
        let connection = SqliteConnection::connect_with(&options.clone().busy_timeout(RESTART_BUSY_WAIT)).await?;
        let (stop, stopped) = watch::channel(false);
        // A `watch` updates its value with no receiver left, so only tests keep one.
        let (stats_sender, _stats) = watch::channel(WalStats::default());
        let task = tokio::spawn(checkpoint_in_background(connection, turn, policy, stats_sender, stopped));
        Ok(Checkpointer {
            stop,
            task: std::sync::Mutex::new(Some(task)),
            #[cfg(test)]
            stats: _stats,
        })
    }

    /// Ends the task (after the checkpoint it is running, if any) and closes its connection.
    pub(crate) async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(task) = task {
            if let Err(error) = task.await {
                tracing::error!(%error, "the checkpoint task failed");
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn stats(&self) -> watch::Receiver<WalStats> {
        self.stats.clone()
    }

    #[cfg(test)]
    pub(crate) fn is_running(&self) -> bool {
        let task = self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        task.as_ref().is_some_and(|task| !task.is_finished())
    }
}

/// The outcome of `PRAGMA wal_checkpoint`: whether it was kept from finishing, the frames in
/// the log, and how many of them are copied into the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checkpointed {
    busy: bool,
    log_frames: u64,
    copied_frames: u64,
}

async fn checkpoint(connection: &mut SqliteConnection, mode: &str) -> Result<Checkpointed, sqlx::Error> {
    let (busy, log, copied): (i64, i64, i64) =
        sqlx::query_as(&format!("PRAGMA wal_checkpoint({mode})")).fetch_one(&mut *connection).await?;
    // -1 when the database is not in WAL mode: nothing to copy.
    let frames = |count: i64| u64::try_from(count).unwrap_or(0);
    Ok(Checkpointed { busy: busy != 0, log_frames: frames(log), copied_frames: frames(copied) })
}

/// What the task does after a PASSIVE checkpoint: copy again at the next period, or make the log
/// start over now: it is past the policy's size, no refused RESTART asks to wait, and it is not
/// the log the last RESTART left, which no commit has written to since (it starts over at the
/// next commit).
fn wants_restart(passive: Checkpointed, policy: &CheckpointPolicy, last: Restarts, now: Instant) -> bool {
    passive.log_frames >= policy.restart_frames
        && last.retry_at.is_none_or(|at| now >= at)
        && last.restarted_frames != Some(passive.log_frames)
}

/// What the last RESTART checkpoints did.
#[derive(Debug, Clone, Copy, Default)]
struct Restarts {
    /// After a refused one: when to try again.
    retry_at: Option<Instant>,
    /// After one that finished: the size of the log it left.
    restarted_frames: Option<u64>,
}

async fn checkpoint_in_background(
    mut connection: SqliteConnection,
    turn: WriteTurn,
    policy: CheckpointPolicy,
    stats: watch::Sender<WalStats>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    let mut last = Restarts::default();
    // The wait after the next refused RESTART.
    let mut backoff = RESTART_BACKOFF_FIRST;
    loop {
        tokio::select! {
            biased;
            // A stop, or the last store clone dropped.
            _ = stopped.wait_for(|stop| *stop) => break,
            () = tokio::time::sleep(policy.period) => {}
        }
        let passive = match checkpoint(&mut connection, "PASSIVE").await {
            Ok(passive) => {
                failures = 0;
                passive
            }
            Err(error) => {
                failures += 1;
                // Once per streak: a broken disk is reported by the writes themselves.
                if failures == 1 {
                    tracing::warn!(%error, "cannot checkpoint the database's write-ahead log");
                }
                continue;
            }
        };
        stats.send_if_modified(|stats| {
            let larger = passive.log_frames > stats.largest_frames;
            stats.largest_frames = stats.largest_frames.max(passive.log_frames);
            larger
        });
        if !wants_restart(passive, &policy, last, Instant::now()) {
            continue;
        }
        let restarted = {
            let _turn = turn.lock().await;
            checkpoint(&mut connection, "RESTART").await
        };
        match restarted {
            Ok(restart) if !restart.busy => {
                stats.send_modify(|stats| stats.restarts += 1);
                last = Restarts { retry_at: None, restarted_frames: Some(restart.log_frames) };
                backoff = RESTART_BACKOFF_FIRST;
                tracing::trace!(
                    frames = passive.log_frames,
                    left = passive.log_frames - passive.copied_frames,
                    "the write-ahead log starts over"
                );
            }
            outcome => {
                stats.send_modify(|stats| stats.restarts_refused += 1);
                if backoff == RESTART_BACKOFF_FIRST {
                    match outcome {
                        Err(error) => tracing::warn!(%error, "cannot make the write-ahead log start over"),
                        Ok(_) => tracing::debug!(
                            frames = passive.log_frames,
                            "the write-ahead log cannot start over yet: a read still uses it"
                        ),
                    }
                }
                last = Restarts { retry_at: Some(Instant::now() + backoff), restarted_frames: None };
                backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
            }
        }
    }
    if let Err(error) = connection.close().await {
        tracing::debug!(%error, "closing the checkpoint connection failed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use oneoff_core::{LogEntry, LogStream, RunId};

    use super::*;
    use crate::sqlite::{connect_options, SqliteStore};
    use crate::NewRun;

    #[test]
    fn the_log_starts_over_once_it_is_past_the_policy_unless_a_refused_restart_asks_to_wait() {
        let policy = CheckpointPolicy { period: Duration::from_millis(200), restart_frames: 100 };
        let now = Instant::now();
        let log = |frames| Checkpointed { busy: true, log_frames: frames, copied_frames: frames / 2 };
        let none = Restarts::default();
        assert!(!wants_restart(log(99), &policy, none, now));
        assert!(wants_restart(log(100), &policy, none, now));
        let refused = |at| Restarts { retry_at: Some(at), restarted_frames: None };
        assert!(!wants_restart(log(5000), &policy, refused(now + Duration::from_secs(1)), now));
        assert!(wants_restart(log(5000), &policy, refused(now), now));
        // An idle log that a RESTART left is not restarted again and again.
        let restarted = Restarts { retry_at: None, restarted_frames: Some(5000) };
        assert!(!wants_restart(log(5000), &policy, restarted, now));
        assert!(wants_restart(log(5200), &policy, restarted, now));
    }

    /// A store in a fresh directory whose checkpointer copies every `period_ms` and makes the
    /// log start over past `restart_frames`.
    async fn store(period_ms: u64, restart_frames: u64) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let policy = CheckpointPolicy { period: Duration::from_millis(period_ms), restart_frames };
        let store =
            SqliteStore::open_with_policy(connect_options(&dir.path().join("oneoff.db")), policy).await.unwrap();
        (dir, store)
    }

    async fn new_run(store: &SqliteStore) -> RunId {
        let new = NewRun {
            job: "flood".into(),
            params: Vec::new(),
            argv: vec!["yes".into()],
            requested_by: None,
            created_at_us: 1,
            held_by: None,
        };
        store.insert_run(&new, u32::MAX).await.unwrap().id
    }

    /// `count` entries from `first` on, 1 KiB each of bytes that do not compress.
    fn entries(first: u64, count: u64) -> Vec<LogEntry> {
        (first..first + count)
            .map(|seq| {
                let mut state = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let bytes = (0..1024)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        b'!' + (state % 90) as u8
                    })
                    .collect();
                LogEntry { seq, ts_us: 1, stream: LogStream::Stdout, bytes, continues: false, partial: false }
            })
            .collect()
    }

    fn wal_bytes(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join("oneoff.db-wal")).map_or(0, |metadata| metadata.len())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_written_without_pause_starts_over_instead_of_growing_with_it() {
        let (dir, store) = store(10, 256).await;
        // Three writers back to back, and a reader, so that a commit or a read is almost always
        // in flight: a PASSIVE checkpoint alone then never finds the log copied to its end.
        const APPENDS: u64 = 400;
        const PER_APPEND: u64 = 16;
        let mut writers = Vec::new();
        for _ in 0..3 {
            let (store, run) = (store.clone(), new_run(&store).await);
            writers.push(tokio::spawn(async move {
                for append in 0..APPENDS {
                    let batch = entries(append * PER_APPEND + 1, PER_APPEND);
                    store.append_logs(&[(run, &batch[..])]).await.unwrap().pop().unwrap().unwrap();
                }
                run
            }));
        }
        let reading = Arc::new(AtomicBool::new(true));
        let reader = {
            let (store, reading) = (store.clone(), reading.clone());
            tokio::spawn(async move {
                while reading.load(Ordering::Relaxed) {
                    store.read_log(RunId(1), 0, 100, 1 << 20).await.unwrap();
                }
            })
        };
        for writer in writers {
            let run = writer.await.unwrap();
            assert_eq!(store.last_seq(run).await.unwrap(), APPENDS * PER_APPEND);
        }
        reading.store(false, Ordering::Relaxed);
        reader.await.unwrap();
        let written = 3 * APPENDS * PER_APPEND * 1024;
        let stats = *store.checkpointer.stats().borrow();
        // Every page written goes into the log as a frame: without restarts it holds all of it.
        let wal = wal_bytes(&dir);
        assert!(wal < written / 2, "the log grew to {wal} bytes for {written} bytes of lines: {stats:?}");
        assert!(stats.restarts > 0, "the log never started over: {stats:?}");
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_holds_the_log_keeps_it_from_starting_over_only_until_it_ends_and_fails_no_write() {
        let (dir, store) = store(10, 64).await;
        let run = new_run(&store).await;
        let path = dir.path().join("oneoff.db");
        let mut reader = SqliteConnection::connect_with(&connect_options(&path)).await.unwrap();
        let mut seq = 1;
        store.append_logs(&[(run, &entries(seq, 8)[..])]).await.unwrap().pop().unwrap().unwrap();
        seq += 8;
        // A read transaction on an old snapshot: no checkpoint may copy past it.
        sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
        let chunks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM log_chunks").fetch_one(&mut reader).await.unwrap();
        assert_eq!(chunks, 1);
        let mut stats = store.checkpointer.stats();
        // Writes go on while the checkpointer's RESTART finds the log held.
        let mut appends = 0;
        while stats.borrow().restarts_refused == 0 {
            store.append_logs(&[(run, &entries(seq, 8)[..])]).await.unwrap().pop().unwrap().unwrap();
            seq += 8;
            appends += 1;
            assert!(appends < 100_000, "the checkpointer never tried to make the log start over");
        }
        assert_eq!(stats.borrow().restarts, 0);
        let held = wal_bytes(&dir);
        sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
        reader.close().await.unwrap();
        // Once the read is over, the next RESTART (after its back-off) succeeds.
        tokio::time::timeout(Duration::from_secs(60), stats.wait_for(|stats| stats.restarts > 0))
            .await
            .expect("the log never started over after the read ended")
            .unwrap();
        // The next commit writes from the start of the file again: it does not grow.
        for _ in 0..10 {
            store.append_logs(&[(run, &entries(seq, 8)[..])]).await.unwrap().pop().unwrap().unwrap();
            seq += 8;
        }
        assert!(wal_bytes(&dir) <= held, "the log grew from {held} to {} bytes after its restart", wal_bytes(&dir));
        assert_eq!(store.last_seq(run).await.unwrap(), seq - 1);
        store.close().await;
    }

    #[tokio::test]
    async fn closing_the_store_ends_the_checkpointer() {
        let (dir, store) = store(10, 64).await;
        let run = new_run(&store).await;
        store.append_logs(&[(run, &entries(1, 8)[..])]).await.unwrap().pop().unwrap().unwrap();
        assert!(store.checkpointer.is_running());
        store.close().await;
        // Not merely told to stop: ended, its connection closed, when `close` returns.
        assert!(!store.checkpointer.is_running());
        let store = SqliteStore::open(&dir.path().join("oneoff.db")).await.unwrap();
        assert_eq!(store.last_seq(run).await.unwrap(), 8);
        store.close().await;
    }
}
