//! Splitting a pipe's byte stream into log lines with a bound on line length.
//!
//! A job may write a `\r` progress bar that never ends a line, or 100 MB without a newline.
//! The splitter never holds more than `max_line_bytes` of a line: longer lines are cut
//! into several entries, and the caller flushes a pending partial line after a short quiet
//! delay so a line without newline still shows up promptly.

/// Turns chunks of bytes into lines. Pure: the caller decides when to flush a partial line.
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    max_line_bytes: usize,
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize) -> LineSplitter {
        // A cut needs room for at least one whole UTF-8 character.
        let max_line_bytes = max_line_bytes.max(4);
        LineSplitter { pending: Vec::new(), max_line_bytes }
    }

    /// Feeds bytes; calls `emit` for every complete line (terminator removed) and for every
    /// `max_line_bytes` piece of an over-long line.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(Vec<u8>)) {
        while !data.is_empty() {
            match data.iter().position(|&byte| byte == b'\n') {
                Some(newline) => {
                    self.append_bounded(&data[..newline], &mut emit);
                    let mut line = std::mem::take(&mut self.pending);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    emit(line);
                    data = &data[newline + 1..];
                }
                None => {
                    self.append_bounded(data, &mut emit);
                    data = &[];
                }
            }
        }
    }

    /// True when bytes of an unfinished line are waiting.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the unfinished line, if any (after a quiet delay, or at end of stream).
    pub fn take_partial(&mut self) -> Option<Vec<u8>> {
        if self.pending.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.pending))
        }
    }

    fn append_bounded(&mut self, mut data: &[u8], emit: &mut impl FnMut(Vec<u8>)) {
        while self.pending.len() + data.len() > self.max_line_bytes {
            let room = self.max_line_bytes - self.pending.len();
            self.pending.extend_from_slice(&data[..room]);
            data = &data[room..];
            let cut = utf8_safe_cut(&self.pending);
            let carry = self.pending.split_off(cut);
            emit(std::mem::replace(&mut self.pending, carry));
        }
        self.pending.extend_from_slice(data);
    }
}

/// Where to cut `bytes` so that a UTF-8 character is not split across two entries.
/// Returns `bytes.len()` unless the tail is the start of an incomplete multi-byte character.
fn utf8_safe_cut(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=3.min(len) {
        let byte = bytes[len - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // continuation byte: look further back for the lead byte
        }
        let width = match byte {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return len, // not UTF-8 at all: any cut is as good as another
        };
        return if width > back && len - back > 0 { len - back } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
        let mut splitter = LineSplitter::new(max);
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, |line| lines.push(line));
        }
        (lines, splitter.take_partial())
    }

    #[test]
    fn splits_on_newlines_across_chunks() {
        let (lines, rest) = split(100, &[b"one\ntw", b"o\r\nthree\n", b"four"]);
        assert_eq!(lines, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        assert_eq!(rest, Some(b"four".to_vec()));
    }

    #[test]
    fn keeps_carriage_returns_inside_a_line() {
        let (lines, _) = split(100, &[b"10%\r50%\r100%\n"]);
        assert_eq!(lines, vec![b"10%\r50%\r100%".to_vec()]);
    }

    #[test]
    fn empty_lines_are_lines() {
        let (lines, rest) = split(100, &[b"\n\na\n"]);
        assert_eq!(lines, vec![vec![], vec![], b"a".to_vec()]);
        assert_eq!(rest, None);
    }

    #[test]
    fn cuts_long_lines_at_the_bound() {
        let long = vec![b'x'; 25];
        let (lines, rest) = split(10, &[&long, b"\n"]);
        assert_eq!(lines.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 5]);
        assert_eq!(rest, None);
    }

    #[test]
    fn never_holds_more_than_the_bound() {
        let mut splitter = LineSplitter::new(8);
        let mut emitted = 0;
        for _ in 0..1000 {
            splitter.push(b"abc", |line| {
                assert!(line.len() <= 8);
                emitted += line.len();
            });
            assert!(splitter.pending.len() <= 8);
        }
        assert_eq!(emitted + splitter.take_partial().map_or(0, |p| p.len()), 3000);
    }

    #[test]
    fn does_not_split_a_utf8_character() {
        // "aéé" = 61 c3 a9 c3 a9; a cut after 4 bytes would split the second é.
        let (lines, rest) = split(4, &["aéé".as_bytes()]);
        assert_eq!(lines, vec!["aé".as_bytes().to_vec()]);
        assert_eq!(rest, Some("é".as_bytes().to_vec()));
    }

    #[test]
    fn binary_bytes_pass_through_unchanged() {
        let data: Vec<u8> = (0u8..=255).filter(|&b| b != b'\n').collect();
        let (lines, rest) = split(1000, &[&data, b"\n"]);
        assert_eq!(lines, vec![data]);
        assert_eq!(rest, None);
    }
}
