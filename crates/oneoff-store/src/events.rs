//! Log events: how a replica learns that another replica stored lines of a run, or its end.
//!
//! On PostgreSQL, every group commit of log lines sends, inside its own transaction, one
//! notification on [`LOG_CHANNEL`] naming each run it extended and the sequence number the
//! run is now stored up to ([`LogHead`]); `finish_run` sends the run's head marked finished.
//! PostgreSQL delivers a notification only when its transaction commits, so an event never
//! names a line that is not stored, and a rolled-back group sends nothing. A payload is at
//! most [`MAX_PAYLOAD_BYTES`] (PostgreSQL refuses 8000 bytes or more): a commit of more runs
//! than fit sends several notifications, still in its one transaction and one statement.
//!
//! [`LogEvents`] is the receiving side: a task holding one `LISTEN` connection, reconnecting
//! with back-off when it drops. Notifications sent while it was away are lost, so after every
//! (re)connect it says [`LogEvent::Missed`] and the server re-reads what it follows; the
//! server polls as well, so a lost notification only delays. SQLite has no events (one
//! process writes it): [`crate::Store::log_events`] is `None` there.

use std::fmt::Write as _;

use oneoff_core::RunId;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The one channel of log notifications.
pub const LOG_CHANNEL: &str = "oneoff_log";
/// PostgreSQL refuses a payload of 8000 bytes or more.
pub const MAX_PAYLOAD_BYTES: usize = 7999;

/// How far a run's log is stored, and whether its final state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHead {
    pub run: RunId,
    /// The last sequence number stored (0: none yet).
    pub last_seq: u64,
    /// The run's final state is stored: nothing will follow `last_seq`.
    pub finished: bool,
}

/// What the listening task tells the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEvent {
    /// A commit (of this replica or another) stored a run up to this head.
    Stored(LogHead),
    /// The listener (re)connected, or fell behind: notifications may have been missed, so
    /// whatever is followed must be read again.
    Missed,
}

/// The receiving end of log events: a task with its own `LISTEN` connection. Stop it with
/// [`LogEvents::shutdown`]; dropping it stops the task too, without waiting.
pub struct LogEvents {
    pub(crate) events: mpsc::Receiver<LogEvent>,
    pub(crate) stop: Option<oneshot::Sender<()>>,
    pub(crate) task: Option<JoinHandle<()>>,
}

impl LogEvents {
    /// The next event; `None` once the task has stopped.
    pub async fn next(&mut self) -> Option<LogEvent> {
        self.events.recv().await
    }

    /// Stops listening and waits for the task to end (it closes its connection).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LogEvents {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The payloads announcing `heads`: `RUN:SEQ` items separated by spaces, `!` after a finished
/// run's, each payload at most [`MAX_PAYLOAD_BYTES`]. Empty when `heads` is.
pub(crate) fn encode_payloads(heads: &[LogHead]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = String::new();
    let mut item = String::new();
    for head in heads {
        item.clear();
        let _ = write!(item, "{}:{}{}", head.run.0, head.last_seq, if head.finished { "!" } else { "" });
        if !payload.is_empty() && payload.len() + 1 + item.len() > MAX_PAYLOAD_BYTES {
            payloads.push(std::mem::take(&mut payload));
        }
        if !payload.is_empty() {
            payload.push(' ');
        }
        payload.push_str(&item);
    }
    if !payload.is_empty() {
        payloads.push(payload);
    }
    payloads
}

/// The heads a payload announces; an item that is not ours (someone else notifying on the
/// channel) is skipped.
pub(crate) fn decode_payload(payload: &str) -> impl Iterator<Item = LogHead> + '_ {
    payload.split_ascii_whitespace().filter_map(|item| {
        let (item, finished) = match item.strip_suffix('!') {
            Some(rest) => (rest, true),
            None => (item, false),
        };
        let (run, seq) = item.split_once(':')?;
        Some(LogHead { run: RunId(run.parse().ok()?), last_seq: seq.parse().ok()?, finished })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(run: i64, last_seq: u64, finished: bool) -> LogHead {
        LogHead { run: RunId(run), last_seq, finished }
    }

    #[test]
    fn heads_round_trip_and_foreign_items_are_skipped() {
        let heads = [head(1, 0, false), head(42, 1_000_000, true), head(i64::MAX, u64::MAX, false)];
        let payloads = encode_payloads(&heads);
        assert_eq!(payloads, vec![format!("1:0 42:1000000! {}:{}", i64::MAX, u64::MAX)]);
        assert_eq!(decode_payload(&payloads[0]).collect::<Vec<_>>(), heads);
        let foreign: Vec<LogHead> = decode_payload("hello 7:x 8:9 :3 9:10!! 10:11!").collect();
        assert_eq!(foreign, vec![head(8, 9, false), head(10, 11, true)]);
        assert!(encode_payloads(&[]).is_empty());
    }

    #[test]
    fn a_commit_of_many_runs_is_split_under_the_payload_limit() {
        let heads: Vec<LogHead> = (0..2000).map(|run| head(i64::MAX - run, u64::MAX - 1, true)).collect();
        let payloads = encode_payloads(&heads);
        assert!(payloads.len() > 1, "{} payloads", payloads.len());
        assert!(payloads.iter().all(|payload| payload.len() <= MAX_PAYLOAD_BYTES));
        let decoded: Vec<LogHead> = payloads.iter().flat_map(|payload| decode_payload(payload)).collect();
        assert_eq!(decoded, heads, "every head once, in order");
    }
}
