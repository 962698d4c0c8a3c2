//! Reading a run's log from the server: paging through `GET /api/v1/runs/{id}/log`, or
//! long-polling it until the run ends, and printing each entry exactly once, in order.
//!
//! Shared by `oneoff logs` and `oneoff run --follow`. The pieces of a line (a `\r` progress
//! bar stored while it runs, a line cut at `max_line_bytes`) are printed as one line: a
//! partial entry gets no newline, and the piece that continues it none of its own prefix,
//! so a terminal shows one line updating. While following, a short outage of
//! the server or the network (a restart, a proxy's 502) is ridden out with backoff, and
//! reading resumes from the last `next` the server gave, so nothing is lost or repeated.

use std::future::Future;
use std::io::{self, BufWriter, Write};
use std::time::{Duration, Instant};

use oneoff_api::v1::{Entry, LogPage, Run};
use oneoff_api::{Client, ClientError};

use crate::cmd::client_error_text;
use crate::output::stderr_line;

/// Entries asked for per request (the server's most; a page is bounded by its size too).
const PAGE_LIMIT: u32 = 10_000;
/// How long one long-poll request may wait for new entries.
const LONG_POLL_SECONDS: u32 = 25;
/// A pause after an empty long-poll answer, so a server that does not wait cannot make us spin.
const EMPTY_PAGE_PAUSE: Duration = Duration::from_millis(200);

/// How log entries are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The text of each line, on the stream it came from.
    Text { timestamps: bool },
    /// One JSON object per line (NDJSON) on stdout.
    Json,
}

/// Writes log entries: stdout lines to `out`; stderr and oneoff's own `system` lines to `err`.
pub struct Printer<O: Write, E: Write> {
    out: BufWriter<O>,
    err: E,
    format: Format,
    /// The stream of the last entry printed as text when its line did not end with it.
    open_line: Option<String>,
}

impl Printer<io::Stdout, io::Stderr> {
    pub fn stdio(format: Format) -> Self {
        Printer::new(io::stdout(), io::stderr(), format)
    }
}

impl<O: Write, E: Write> Printer<O, E> {
    pub fn new(out: O, err: E, format: Format) -> Self {
        Printer { out: BufWriter::new(out), err, format, open_line: None }
    }

    pub fn print(&mut self, entry: &Entry) -> io::Result<()> {
        let timestamps = match self.format {
            Format::Json => {
                let line = serde_json::to_string(entry).map_err(io::Error::from)?;
                return writeln!(self.out, "{line}");
            }
            Format::Text { timestamps } => timestamps,
        };
        let continues = entry.continues && self.open_line.as_deref() == Some(entry.stream.as_str());
        if !continues {
            // A line left open by another stream (or cut off by a resumed read) ends here.
            self.end_line()?;
        }
        let prefix = if timestamps && !continues { format!("{} ", entry.ts) } else { String::new() };
        let newline = if entry.partial { "" } else { "\n" };
        match entry.stream.as_str() {
            "stdout" => write!(self.out, "{prefix}{}{newline}", entry.text)?,
            stream => {
                // stdout is buffered and stderr is not: flush first so a terminal that
                // shows both keeps the order the job wrote them in.
                self.out.flush()?;
                let tag = if stream == "system" && !continues { "oneoff: " } else { "" };
                write!(self.err, "{prefix}{tag}{}{newline}", entry.text)?;
            }
        }
        self.open_line = entry.partial.then(|| entry.stream.clone());
        Ok(())
    }

    /// Ends a line left open by a partial entry (at the end of the log, or before another).
    pub fn end_line(&mut self) -> io::Result<()> {
        match self.open_line.take().as_deref() {
            None => Ok(()),
            Some("stdout") => writeln!(self.out),
            Some(_) => writeln!(self.err),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.err.flush()
    }
}

/// Where printing a log starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Right after this sequence number (0: the beginning).
    After(u64),
    /// With the last N entries stored when the first request arrives (`tail=N`).
    Tail(u64),
}

/// Prints the log of run `id` from `start`, returning the `next` to continue from.
///
/// Without `follow`, reads pages until one comes back empty (or the run is done);
/// with `follow`, long-polls until the server says the run is done and retries
/// transient failures. The next page is asked for as soon as a page arrives, and printed
/// while it travels, so a long log costs the server's and the printing's time, not their sum.
pub async fn print_log<O: Write, E: Write>(
    client: &Client,
    id: i64,
    start: Start,
    follow: bool,
    printer: &mut Printer<O, E>,
) -> anyhow::Result<u64> {
    let wait = follow.then_some(LONG_POLL_SECONDS);
    let (mut after, first) = match start {
        Start::After(after) => (after, ("after", after.to_string())),
        Start::Tail(tail) => (0, ("tail", tail.to_string())),
    };
    let mut pending = fetch_page(client, id, first, wait, follow, Duration::ZERO);
    loop {
        let page = pending.await.map_err(|error| anyhow::anyhow!("reading the log stopped: {error}"))??;
        let printed_through = after;
        after = after.max(page.next);
        let finished = page.done || (!follow && page.entries.is_empty());
        if finished {
            // The server never repeats entries before `after`; skipping them anyway keeps a
            // misbehaving proxy cache from printing a line twice.
            for entry in page.entries.iter().filter(|entry| entry.seq > printed_through) {
                printer.print(entry)?;
            }
            printer.end_line()?;
            printer.flush()?;
            return Ok(after);
        }
        let pause = if page.entries.is_empty() { EMPTY_PAGE_PAUSE } else { Duration::ZERO };
        pending = fetch_page(client, id, ("after", after.to_string()), wait, follow, pause);
        for entry in page.entries.iter().filter(|entry| entry.seq > printed_through) {
            if let Err(error) = printer.print(entry) {
                pending.abort();
                return Err(error.into());
            }
        }
        printer.flush()?;
    }
}

/// Asks for one page in a task of its own (after `pause`), retrying transient failures
/// when following.
fn fetch_page(
    client: &Client,
    id: i64,
    position: (&'static str, String),
    wait: Option<u32>,
    retry: bool,
    pause: Duration,
) -> tokio::task::JoinHandle<Result<LogPage, ClientError>> {
    let client = client.clone();
    tokio::spawn(async move {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let mut query = vec![position, ("limit", PAGE_LIMIT.to_string())];
        if let Some(wait) = wait {
            query.push(("wait", wait.to_string()));
        }
        tracing::debug!(id, ?query, "reading log page");
        call(retry, || client.log_query(id, &query)).await
    })
}

/// Fetches a run, retrying transient failures like the log stream does.
pub async fn fetch_run(client: &Client, id: i64) -> Result<Run, ClientError> {
    call(true, || client.run(id)).await
}

/// Calls `request`, and with `retry` repeats it after transient failures until it
/// succeeds or the retry budget is spent.
async fn call<T, F, Fut>(retry: bool, mut request: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut backoff = Backoff::default();
    let mut failing_since: Option<Instant> = None;
    loop {
        match request().await {
            Ok(value) => {
                if failing_since.is_some() {
                    stderr_line("oneoff: reconnected");
                }
                return Ok(value);
            }
            Err(error) if retry && is_transient(&error) => {
                let since = *failing_since.get_or_insert_with(|| {
                    stderr_line(&format!(
                        "oneoff: {}; retrying for up to {}s",
                        client_error_text(&error),
                        GIVE_UP_AFTER.as_secs()
                    ));
                    Instant::now()
                });
                let Some(delay) = backoff.next_delay(since.elapsed()) else {
                    return Err(error);
                };
                tracing::debug!(?delay, %error, "transient failure, retrying");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Whether a failure is likely to go away by itself: the server restarting, a dropped
/// connection, or a proxy in front of a server that is briefly gone.
pub fn is_transient(error: &ClientError) -> bool {
    match error {
        // A builder error is a bad URL, which waiting will not fix; everything else at
        // this level is the connection (refused, reset, timed out, cut mid-body).
        ClientError::Transport { source, .. } => !source.is_builder(),
        ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
            is_transient_status(status.as_u16())
        }
        // A bad URL or token, or https:// to a plain HTTP server: only the user can fix it.
        ClientError::Usage(_) | ClientError::NotTls { .. } => false,
    }
}

fn is_transient_status(status: u16) -> bool {
    matches!(status, 502..=504)
}

const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(5);
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Delays between retries: 0.5s doubling up to 5s, for at most 60s of failures.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST_DELAY }
    }
}

impl Backoff {
    /// The pause before the next attempt, given how long requests have been failing;
    /// `None` once the budget is spent. The last pause is cut short so the final
    /// attempt happens right at the limit.
    fn next_delay(&mut self, failing_for: Duration) -> Option<Duration> {
        let left = GIVE_UP_AFTER.checked_sub(failing_for).filter(|left| !left.is_zero())?;
        let delay = self.next.min(left);
        self.next = (self.next * 2).min(MAX_DELAY);
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, stream: &str, text: &str) -> Entry {
        Entry {
            seq,
            ts: "2026-01-01T00:00:00Z".into(),
            stream: stream.into(),
            text: text.into(),
            continues: false,
            partial: false,
        }
    }

    fn printed(format: Format, entries: &[Entry]) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        {
            let mut printer = Printer::new(&mut out, &mut err, format);
            for entry in entries {
                printer.print(entry).expect("writing to memory");
            }
            printer.end_line().expect("writing to memory");
            printer.flush().expect("writing to memory");
        }
        (String::from_utf8(out).expect("utf-8"), String::from_utf8(err).expect("utf-8"))
    }

    #[test]
    fn entries_go_to_the_stream_they_came_from() {
        let entries = [entry(1, "stdout", "out"), entry(2, "stderr", "err"), entry(3, "system", "cancelled")];
        let (out, err) = printed(Format::Text { timestamps: false }, &entries);
        assert_eq!(out, "out\n");
        assert_eq!(err, "err\noneoff: cancelled\n");
    }

    fn piece(seq: u64, stream: &str, text: &str, continues: bool, partial: bool) -> Entry {
        Entry { continues, partial, ..entry(seq, stream, text) }
    }

    #[test]
    fn the_pieces_of_a_line_print_as_one_line() {
        let entries = [
            piece(1, "stdout", "\rprogress 0\rprogress 1", false, true),
            piece(2, "stdout", "\rprogress 2", true, true),
            piece(3, "stdout", "\rprogress 3", true, false),
            entry(4, "stdout", "done"),
            piece(5, "stdout", "\rstuck at 5", false, true),
            entry(6, "system", "cancelled"),
        ];
        let (out, err) = printed(Format::Text { timestamps: false }, &entries);
        assert_eq!(out, "\rprogress 0\rprogress 1\rprogress 2\rprogress 3\ndone\n\rstuck at 5\n");
        assert_eq!(err, "oneoff: cancelled\n");
        let (out, _) = printed(Format::Text { timestamps: true }, &entries[..3]);
        assert_eq!(out, "2026-01-01T00:00:00Z \rprogress 0\rprogress 1\rprogress 2\rprogress 3\n");
        let (out, _) = printed(Format::Text { timestamps: false }, &entries[4..5]);
        assert_eq!(out, "\rstuck at 5\n", "the end of the log ends an open line");
    }

    #[test]
    fn timestamps_prefix_each_line() {
        let (out, _) = printed(Format::Text { timestamps: true }, &[entry(1, "stdout", "hi")]);
        assert_eq!(out, "2026-01-01T00:00:00Z hi\n");
    }

    #[test]
    fn json_format_writes_one_object_per_line_to_stdout() {
        let entries = [entry(1, "stdout", "a"), entry(2, "stderr", "b")];
        let (out, err) = printed(Format::Json, &entries);
        assert_eq!(err, "");
        let lines: Vec<Entry> = out.lines().map(|line| serde_json::from_str(line).expect("json")).collect();
        assert_eq!(lines, entries);
    }

    #[test]
    fn backoff_doubles_to_five_seconds_and_gives_up_after_a_minute() {
        let mut backoff = Backoff::default();
        let delays: Vec<u128> =
            (0..6).filter_map(|_| backoff.next_delay(Duration::ZERO)).map(|delay| delay.as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(backoff.next_delay(Duration::from_secs(58)), Some(Duration::from_secs(2)));
        assert_eq!(backoff.next_delay(Duration::from_secs(60)), None);
        assert_eq!(backoff.next_delay(Duration::from_secs(75)), None);
    }

    #[test]
    fn only_gateway_errors_are_transient() {
        assert!(is_transient_status(502));
        assert!(is_transient_status(503));
        assert!(is_transient_status(504));
        assert!(!is_transient_status(500));
        assert!(!is_transient_status(404));
        assert!(!is_transient_status(422));
    }
}
