//! Formatting for people: tables, key/value blocks, durations, timestamps, shell quoting,
//! and the few functions that write to stdout and stderr.
//!
//! Writes to stdout return their `io::Error` so a closed pipe (`oneoff logs 1 | head`)
//! can end the program quietly; writes to stderr never fail, because there is nowhere
//! left to report such a failure.

use std::io::{self, Write};

use serde::Serialize;

/// Columns are separated by this much space.
const GAP: &str = "  ";

/// Left-aligned columns, each padded to its widest cell, under a header row in capitals.
/// Lines carry no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = headers.iter().map(|name| name.to_uppercase()).collect();
    let rows: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(|cell| one_line(cell)).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in &rows {
        for (index, cell) in row.iter().enumerate() {
            match widths.get_mut(index) {
                Some(width) => *width = (*width).max(cell.chars().count()),
                None => widths.push(cell.chars().count()),
            }
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            line.push_str(cell);
            let pad = widths[index] - cell.chars().count();
            line.extend(std::iter::repeat_n(' ', pad));
            line.push_str(GAP);
        }
        text.push_str(line.trim_end_matches(' '));
        text.push('\n');
    }
    text
}

/// `key: value` lines with the values aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(key, _)| key.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for (key, value) in pairs {
        let pad = width - key.chars().count();
        text.push_str(&format!("{key}:{} {}\n", " ".repeat(pad), one_line(value)));
    }
    text
}

/// Control characters (newlines, tabs, escapes) would break the layout or the terminal.
fn one_line(cell: &str) -> String {
    cell.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A duration for people: `0.4s`, `1.2s`, `3m04s`, `2h05m`.
pub fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    // Rounded before choosing the unit, so 59.96s shows as 1m00s rather than 60.0s.
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let seconds = (ms + 500) / 1000;
    if seconds < 3600 {
        return format!("{}m{:02}s", seconds / 60, seconds % 60);
    }
    format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60)
}

/// `2026-01-01T12:00:03.123456Z` (RFC 3339, UTC, as the API sends it) as `2026-01-01 12:00:03`.
/// Anything else is shown as it came.
pub fn short_time(timestamp: &str) -> String {
    let bytes = timestamp.as_bytes();
    let looks_rfc3339 = bytes.len() >= 19 && bytes[10] == b'T' && timestamp.is_char_boundary(19);
    if !looks_rfc3339 {
        return timestamp.to_string();
    }
    format!("{} {}", &timestamp[..10], &timestamp[11..19])
}

/// A word as a shell would need it, so shown commands can be pasted back (see
/// `oneoff_core::shell`: control characters become `$'…'` escapes, never raw bytes).
pub fn shell_quote(word: &str) -> String {
    oneoff_core::shell::quote(word, false)
}

/// An argv as a command line that runs the same argv when pasted into a shell.
pub fn command_line(argv: &[String]) -> String {
    oneoff_core::shell::command_line(argv)
}

/// Writes `text` to stdout as is.
pub fn stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes one line to stdout.
pub fn stdout_line(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Pretty JSON on stdout, for `--json`.
pub fn json<T: Serialize>(value: &T) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::from)?;
    stdout_line(&text)
}

/// One line on stderr; a failure to write it is ignored (see the module comment).
pub fn stderr_line(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(row: &[&str]) -> Vec<String> {
        row.iter().map(|cell| cell.to_string()).collect()
    }

    #[test]
    fn table_pads_columns_to_the_widest_cell() {
        let rows = vec![cells(&["1", "backup-database", "ok"]), cells(&["1234", "x", "failed"])];
        let text = table(&["id", "job", "status"], &rows);
        assert_eq!(
            text,
            "ID    JOB              STATUS\n\
             1     backup-database  ok\n\
             1234  x                failed\n"
        );
    }

    #[test]
    fn table_has_no_trailing_spaces_and_flattens_newlines() {
        let rows = vec![cells(&["a", "two\nlines"]), cells(&["bbbb", ""])];
        let text = table(&["name", "description"], &rows);
        assert_eq!(text, "NAME  DESCRIPTION\na     two lines\nbbbb\n");
    }

    #[test]
    fn table_counts_characters_not_bytes() {
        let rows = vec![cells(&["é", "x"])];
        assert_eq!(table(&["a", "b"], &rows), "A  B\né  x\n");
    }

    #[test]
    fn key_values_align() {
        let text = key_values(&[("id", "#1".into()), ("requested by", "ann".into())]);
        assert_eq!(text, "id:           #1\nrequested by: ann\n");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_ms(-5), "0.0s");
        assert_eq!(duration_ms(4), "0.0s");
        assert_eq!(duration_ms(350), "0.4s");
        assert_eq!(duration_ms(1000), "1.0s");
        assert_eq!(duration_ms(1234), "1.2s");
        assert_eq!(duration_ms(59_949), "59.9s");
        assert_eq!(duration_ms(59_960), "1m00s");
        assert_eq!(duration_ms(184_000), "3m04s");
        assert_eq!(duration_ms(3_599_499), "59m59s");
        assert_eq!(duration_ms(3_599_500), "1h00m");
        assert_eq!(duration_ms(7_500_000), "2h05m");
    }

    #[test]
    fn timestamps_are_shortened_when_they_look_like_rfc3339() {
        assert_eq!(short_time("2026-01-01T12:00:03.123456Z"), "2026-01-01 12:00:03");
        assert_eq!(short_time("2026-01-01T12:00:03Z"), "2026-01-01 12:00:03");
        assert_eq!(short_time("yesterday"), "yesterday");
        assert_eq!(short_time("2026-01-01 12:00:0é"), "2026-01-01 12:00:0é");
    }

    #[test]
    fn shell_quoting_leaves_plain_words_alone() {
        assert_eq!(shell_quote("--count=5"), "--count=5");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_quote("a\nb"), "$'a\\nb'");
    }
}
