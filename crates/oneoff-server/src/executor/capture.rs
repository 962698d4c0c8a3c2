//! Capturing a child's output: pipes to lines, lines to numbered entries in the store.
//!
//! One capture task per pipe reads as fast as the pipe delivers, whatever the viewers do,
//! masks secret values on the byte stream with [`SecretMasker`] (so a secret written in
//! pieces, cut by `max_line_bytes` or spanning lines is still caught) and only then cuts
//! lines with [`LineSplitter`]. A partial line is stored `partial_flush` after its oldest
//! byte arrived, whatever follows (a `\r` progress bar is never quiet); the pieces after the
//! first are marked as continuing it. One task per run numbers the lines and hands them in
//! batches to the shared [`LogWriter`], which stores and publishes them. A run has one
//! batch in flight; the lines read meanwhile wait in a channel bounded in reads and in entries
//! ([`LineSink`]), so memory stays bounded even when the disk is slower than the job, or the
//! job prints nothing but newlines.
//!
//! Batches follow the load, with no timer: a line of a run with nothing in flight goes to the
//! writer at once (a viewer of an idle server sees it a commit later, not after a linger),
//! and the lines that arrive while a batch is being stored make up the next batch. A run
//! printing faster than the store commits thus sends fewer, larger batches.

use std::time::Duration;

use bytes::BytesMut;
use oneoff_core::{LineSplitter, LogEntry, LogStream, Piece, RunId, SecretMasker};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::log_writer::{AppendError, LogWriter, Unstored};
use super::sleep_until_some;
use crate::clock::now_us;

/// Lines read together from one pipe, as entries not numbered yet (`seq` 0): the run's log
/// task numbers them in place, and takes the list as its batch when it has none. They hold
/// their share of the run's [`IN_FLIGHT_ENTRIES`] until the log task takes them.
#[derive(Debug)]
pub struct Lines {
    entries: Vec<LogEntry>,
    _room: Option<OwnedSemaphorePermit>,
}

/// Where a run's pipes and its supervisor send lines: the channel to the run's log task,
/// bounded in reads ([`CHANNEL_CHUNKS`], so in bytes) and in entries ([`IN_FLIGHT_ENTRIES`]).
/// The bound in entries is what holds a job that prints empty lines as fast as a pipe goes
/// (`yes ''`: 65,536 lines a read) to a few megabytes instead of hundreds.
#[derive(Clone)]
pub struct LineSink {
    sender: mpsc::Sender<Lines>,
    room: Arc<Semaphore>,
}

/// A run's line channel: the sink for its pipes, the receiver for its log task ([`write_log`]).
pub fn line_channel() -> (LineSink, mpsc::Receiver<Lines>) {
    let (sender, incoming) = mpsc::channel(CHANNEL_CHUNKS);
    (LineSink { sender, room: Arc::new(Semaphore::new(IN_FLIGHT_ENTRIES)) }, incoming)
}

impl LineSink {
    /// Waits until the log task has room for `entries`, then hands them over; false once the
    /// log task is gone. A list larger than the whole room waits for all of it.
    pub async fn send(&self, entries: Vec<LogEntry>) -> bool {
        let wanted = u32::try_from(entries.len().min(IN_FLIGHT_ENTRIES)).unwrap_or(u32::MAX);
        let Ok(room) = self.room.clone().acquire_many_owned(wanted).await else { return false };
        self.sender.send(Lines { entries, _room: Some(room) }).await.is_ok()
    }

    /// Says something about the run in its log, as a `system` line.
    pub async fn system(&self, text: impl Into<String>) -> bool {
        self.send(vec![system_entry(text)]).await
    }
}

fn system_entry(text: impl Into<String>) -> LogEntry {
    let line = Piece { bytes: text.into().into_bytes().into(), continues: false, partial: false };
    unnumbered(LogStream::System, now_us(), line)
}

fn unnumbered(stream: LogStream, ts_us: i64, piece: Piece) -> LogEntry {
    let Piece { bytes, continues, partial } = piece;
    LogEntry { seq: 0, ts_us, stream, bytes, continues, partial }
}

/// Chunks of lines in flight between capture and writer; each chunk holds at most one read.
const CHANNEL_CHUNKS: usize = 256;
/// Entries in flight between a run's pipes and its log task: about 7 MB of entries, room for
/// two reads of nothing but newlines, or fourteen reads of `seq`. The batch being stored
/// (up to [`BATCH_ENTRIES`] and one read) comes on top.
pub const IN_FLIGHT_ENTRIES: usize = 1 << 17;
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Entries per batch (a batch may pass it by the lines of one read).
const BATCH_ENTRIES: usize = 8192;

/// How a reader learns that the job's process group is gone.
pub struct PipeWatch {
    pub group_gone: CancellationToken,
    /// How long the pipe may stay open after that: only a process that escaped the group
    /// (`setsid`) can hold it, and its output is then dropped.
    pub close_wait: Duration,
}

/// A pipe's masker and where its values come from: before every read it takes the secret
/// book's values when they changed, so it masks every secret the server holds.
pub struct Masking {
    pub masker: SecretMasker,
    pub book: super::SecretBook,
    /// The book generation the masker has the values of.
    pub seen: u64,
}

impl Masking {
    /// Gives the masker the book's current values if they changed; what that releases goes to `out`.
    fn refresh(&mut self, out: &mut Vec<u8>) {
        if let Some(values) = self.book.changed_since(&mut self.seen) {
            self.masker.set_secrets(values.iter(), out);
        }
    }
}

/// Reads one pipe to its end. A partial line is sent `partial_flush` after the read that
/// brought its oldest unsent byte, however much follows without a newline: waiting for quiet
/// would show a 10 Hz progress bar only when it ends.
///
/// Bytes go through `masker` before the splitter sees them: what it holds back (the start of
/// a possible secret) waits for the next read, or for the end of the pipe, never for a timer,
/// so the partial-line flush cannot store half a secret.
///
/// After the group is gone the pipe gets `close_wait` to reach its end, not counting the time
/// spent waiting for the log writer: a slow store must never cost lines the job wrote.
pub async fn capture(
    mut pipe: impl AsyncRead + Unpin,
    stream: LogStream,
    max_line_bytes: usize,
    partial_flush: Duration,
    mut masking: Masking,
    watch: PipeWatch,
    sink: LineSink,
) {
    let mut splitter = LineSplitter::new(max_line_bytes);
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    let mut masked = Vec::with_capacity(READ_BUFFER_BYTES);
    // The masked bytes of successive reads, each frozen into the chunk its lines slice: one
    // allocation serves many reads, and is freed when the last entry slicing it is dropped.
    let mut chunks = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut give_up_at = PipeDeadline::default();
    let mut lines_per_read = 0;
    // When the partial line waiting in the splitter is due, and the push that dated it.
    let mut flush_at: Option<(u64, Instant)> = None;
    loop {
        let read = tokio::select! {
            read = pipe.read(&mut buffer) => read,
            () = sleep_until_some(flush_at.map(|(_, at)| at)) => {
                flush_at = None;
                if let Some(partial) = splitter.take_partial() {
                    let lines = vec![unnumbered(stream, now_us(), partial)];
                    if !send_lines(&sink, lines, &mut give_up_at).await {
                        return;
                    }
                }
                continue;
            }
            () = watch.group_gone.cancelled(), if give_up_at.at.is_none() => {
                give_up_at.start(watch.close_wait);
                continue;
            }
            () = sleep_until_some(give_up_at.at) => {
                tracing::warn!(stream = stream.as_str(), "a process outside the run's group still holds its output pipe; no longer reading it");
                break;
            }
        };
        let count = match read {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                let message = format!("reading {} failed: {error}", stream.as_str());
                send_lines(&sink, vec![system_entry(message)], &mut give_up_at).await;
                break;
            }
        };
        let read_at = Instant::now();
        masked.clear();
        masking.refresh(&mut masked);
        masking.masker.push(&buffer[..count], &mut masked);
        chunks.extend_from_slice(&masked);
        // A pipe's reads tend to be alike: the last one's count saves growing the list.
        let mut entries = Vec::with_capacity(lines_per_read);
        let ts_us = now_us();
        splitter.push(&chunks.split().freeze(), |line| entries.push(unnumbered(stream, ts_us, line)));
        lines_per_read = entries.len();
        flush_at = match (splitter.partial_since(), flush_at) {
            (None, _) => None,
            (Some(push), Some((dated_by, at))) if push == dated_by => Some((dated_by, at)),
            (Some(push), _) => Some((push, read_at + partial_flush)),
        };
        if !entries.is_empty() && !send_lines(&sink, entries, &mut give_up_at).await {
            return;
        }
    }
    masked.clear();
    masking.refresh(&mut masked);
    masking.masker.finish(&mut masked);
    let mut entries = Vec::new();
    let ts_us = now_us();
    chunks.extend_from_slice(&masked);
    splitter.push(&chunks.split().freeze(), |line| entries.push(unnumbered(stream, ts_us, line)));
    entries.extend(splitter.take_partial().map(|line| unnumbered(stream, ts_us, line)));
    if !entries.is_empty() {
        send_lines(&sink, entries, &mut give_up_at).await;
    }
}

/// When a reader stops waiting for a pipe that a process outside the run's group holds open.
#[derive(Default)]
struct PipeDeadline {
    at: Option<Instant>,
    /// However slow the writer, the reader gives up by then (the run must end).
    latest: Option<Instant>,
}

/// The most that waiting for the log writer can add to a pipe's deadline.
const MAX_WRITER_WAIT: Duration = Duration::from_secs(60);

impl PipeDeadline {
    fn start(&mut self, close_wait: Duration) {
        let now = Instant::now();
        self.at = Some(now + close_wait);
        self.latest = Some(now + close_wait + MAX_WRITER_WAIT);
    }

    /// Time spent waiting for the writer does not count against the pipe.
    fn extend(&mut self, waited: Duration) {
        if let (Some(at), Some(latest)) = (self.at, self.latest) {
            self.at = Some((at + waited).min(latest));
        }
    }
}

/// Sends lines to the writer; returns false when the writer is gone.
async fn send_lines(sink: &LineSink, entries: Vec<LogEntry>, deadline: &mut PipeDeadline) -> bool {
    let started = Instant::now();
    let sent = sink.send(entries).await;
    deadline.extend(started.elapsed());
    sent
}

/// Numbers and stores lines until every sender is gone.
///
/// Once a batch could not be stored (the store refused it for the whole store wait), no later
/// line is stored either: that would leave a gap, or give the later lines the numbers of the
/// lost ones. `store_refused` is cancelled then, so the job is stopped; the lines still
/// arriving are counted, and the log ends with a system line that says how many were lost.
/// Returns those lines, if any.
pub async fn write_log(
    run: RunId,
    writer: LogWriter,
    mut last_seq: u64,
    mut incoming: mpsc::Receiver<Lines>,
    store_refused: CancellationToken,
) -> Option<Unstored> {
    let mut unstored: Option<Unstored> = None;
    let mut batch: Vec<LogEntry> = Vec::new();
    while let Some(first) = incoming.recv().await {
        push_lines(&mut batch, &mut last_seq, first);
        // What arrived while the previous batch was stored joins this one; nothing waits for more.
        while batch.len() < BATCH_ENTRIES {
            let Ok(lines) = incoming.try_recv() else { break };
            push_lines(&mut batch, &mut last_seq, lines);
        }
        let entries = batch.len() as u64;
        if let Some(unstored) = &mut unstored {
            unstored.lines += entries;
            batch.clear();
            continue;
        }
        match writer.append(run, std::mem::take(&mut batch)).await {
            Ok(()) => {}
            Err(AppendError::Unstored { reason }) => {
                unstored = Some(Unstored { first_seq: last_seq + 1 - entries, lines: entries, reason, noted: false });
                store_refused.cancel();
            }
            // The store holds another sequence than this task thinks: continue from the store's.
            Err(AppendError::Sequence { expected }) => last_seq = expected.saturating_sub(1),
        }
    }
    if let Some(unstored) = &mut unstored {
        unstored.noted = writer.note_unstored(run, unstored).await;
    }
    unstored
}

fn push_lines(batch: &mut Vec<LogEntry>, last_seq: &mut u64, lines: Lines) {
    let mut entries = lines.entries;
    for entry in &mut entries {
        *last_seq += 1;
        entry.seq = *last_seq;
    }
    if batch.is_empty() {
        *batch = entries;
    } else {
        batch.append(&mut entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdout(texts: &[&str]) -> Lines {
        let entries = texts
            .iter()
            .map(|text| {
                let piece = Piece { bytes: text.as_bytes().to_vec().into(), continues: false, partial: false };
                unnumbered(LogStream::Stdout, 1, piece)
            })
            .collect();
        Lines { entries, _room: None }
    }

    /// Lets the other tasks of this single-threaded runtime run until they wait, a hundred
    /// scheduler turns: microseconds, so a batching timer of milliseconds has not fired yet.
    async fn let_tasks_run() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_line_goes_to_the_writer_at_once_and_the_lines_arriving_meanwhile_make_the_next_batch() {
        let (writer, mut appends) = LogWriter::detached(Duration::from_secs(60));
        let (lines, incoming) = mpsc::channel(8);
        let task = tokio::spawn(write_log(RunId(7), writer, 0, incoming, CancellationToken::new()));

        lines.send(stdout(&["one"])).await.unwrap();
        let_tasks_run().await;
        let first = appends.try_recv().expect("the line of an idle run waits for company");
        assert_eq!(first.seqs(), [1]);

        // While that batch is being stored, more lines come, in several reads.
        lines.send(stdout(&["two", "three"])).await.unwrap();
        lines.send(stdout(&["four"])).await.unwrap();
        let_tasks_run().await;
        assert!(appends.try_recv().is_err(), "a second batch was sent while one was in flight");
        first.answer(Ok(()));
        let_tasks_run().await;
        let second = appends.try_recv().expect("the lines that arrived meanwhile wait for company");
        assert_eq!(second.seqs(), [2, 3, 4], "the lines that arrived meanwhile are one batch");
        second.answer(Ok(()));

        drop(lines);
        assert_eq!(task.await.unwrap(), None, "every line was stored");
        assert!(appends.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_its_bound_and_the_rest_follows_in_order() {
        let (writer, mut appends) = LogWriter::detached(Duration::from_secs(60));
        let (lines, incoming) = mpsc::channel(8);
        let task = tokio::spawn(write_log(RunId(7), writer, 0, incoming, CancellationToken::new()));
        lines.send(stdout(&["first"])).await.unwrap();
        let first = appends.recv().await.unwrap();
        // 3 reads of 5,000 lines while the first batch is stored: 8,192 entries is the bound, and
        // a read is never split, so the next batch takes two reads and the third comes after.
        let read: Vec<String> = (0..5000).map(|index| index.to_string()).collect();
        let read: Vec<&str> = read.iter().map(String::as_str).collect();
        for _ in 0..3 {
            lines.send(stdout(&read)).await.unwrap();
        }
        first.answer(Ok(()));
        let second = appends.recv().await.unwrap();
        assert_eq!(second.seqs(), (2..=10001).collect::<Vec<_>>());
        second.answer(Ok(()));
        let third = appends.recv().await.unwrap();
        assert_eq!(third.seqs(), (10002..=15001).collect::<Vec<_>>());
        third.answer(Ok(()));
        drop(lines);
        assert_eq!(task.await.unwrap(), None);
    }

    fn empty_lines(count: usize) -> Vec<LogEntry> {
        let piece = || Piece { bytes: bytes::Bytes::new(), continues: false, partial: false };
        (0..count).map(|_| unnumbered(LogStream::Stdout, 1, piece())).collect()
    }

    /// A job that prints nothing but newlines fills a 64 KiB read with 65,536 entries; the
    /// pipes wait once the entries in flight fill the room, whatever the count of reads.
    #[tokio::test]
    async fn the_pipes_wait_while_the_entries_in_flight_fill_the_room() {
        use futures_util::FutureExt;
        let (sink, mut incoming) = line_channel();
        let read = IN_FLIGHT_ENTRIES / 2;
        assert_eq!(sink.send(empty_lines(read)).now_or_never(), Some(true));
        assert_eq!(sink.send(empty_lines(read)).now_or_never(), Some(true), "the room holds two such reads");
        let third = sink.send(empty_lines(1));
        tokio::pin!(third);
        assert_eq!(third.as_mut().now_or_never(), None, "a third waits for room");
        let first = incoming.recv().await.unwrap();
        assert_eq!(third.as_mut().now_or_never(), None, "entries still in the channel hold their room");
        drop(first);
        assert!(third.await, "the log task took the first read");
        // A list larger than the whole room waits for all of it, then goes through.
        let huge = sink.send(empty_lines(IN_FLIGHT_ENTRIES * 2));
        tokio::pin!(huge);
        assert_eq!(huge.as_mut().now_or_never(), None);
        drop((incoming.recv().await.unwrap(), incoming.recv().await.unwrap()));
        assert!(huge.await);
        assert_eq!(incoming.recv().await.unwrap().entries.len(), IN_FLIGHT_ENTRIES * 2);
        drop(incoming);
        assert!(!sink.system("no log task").await, "a sink without its log task says so");
    }
}
