//! Log entries: one captured line of a run's output, numbered by a per-run sequence.

/// Which pipe a line came from; `System` lines are written by oneoff itself
/// (spawn failures, cancel and timeout notices, lost runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
    System,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }

    pub fn code(self) -> i64 {
        match self {
            LogStream::Stdout => 1,
            LogStream::Stderr => 2,
            LogStream::System => 3,
        }
    }

    pub fn from_code(code: i64) -> Option<LogStream> {
        match code {
            1 => Some(LogStream::Stdout),
            2 => Some(LogStream::Stderr),
            3 => Some(LogStream::System),
            _ => None,
        }
    }
}

/// One line of a run's log.
///
/// `bytes` are exactly what the job wrote, without the line terminator, so binary or
/// invalid UTF-8 output is stored without loss; [`LogEntry::text`] is the lossy view
/// shown to people. `seq` starts at 1 for every run and has no gaps.
///
/// A line the job wrote may be stored as several entries: a partial line is stored
/// `partial_line_flush` after its oldest byte arrived, newline or not (so a `\r` progress
/// bar shows while it runs), and a line longer than `max_line_bytes` is cut. Every entry
/// after the first of such a line has `continues` set: it continues the previous entry of
/// the same stream, and readers join them into one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    /// Microseconds since the Unix epoch, taken when the line was read from the pipe.
    pub ts_us: i64,
    pub stream: LogStream,
    /// Often a slice of the buffer the line was read into or decoded from, shared with the
    /// entries next to it: cloning an entry copies no bytes.
    pub bytes: bytes::Bytes,
    /// This entry continues the line of the previous entry of the same stream.
    pub continues: bool,
    /// This entry does not end its line: the next entry of the same stream continues it
    /// (unless the output ended without a newline).
    pub partial: bool,
}

impl LogEntry {
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }
}
