//! Splitting a pipe's byte stream into log lines with a bound on line length.
//!
//! A job may write a `\r` progress bar that never ends a line, or 100 MB without a newline.
//! The splitter never holds more than `max_line_bytes` of a line: longer lines are cut
//! into several pieces, and the caller takes a pending partial line out on a timer
//! (`partial_line_flush` after its oldest byte arrived, see [`LineSplitter::partial_since`])
//! so a line that is never quiet still shows up promptly. Every piece after the first of a
//! line is marked [`Piece::continues`], so readers can join the pieces into the line the job
//! wrote.
//!
//! A line that lies whole in one chunk is a slice of that chunk ([`Bytes`]): a read of
//! thousands of short lines costs one buffer, not one allocation per line. Only a line that
//! spans chunks, or is cut, is copied.

use bytes::Bytes;

/// A line, or a piece of one, as it is stored: one log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The bytes, without the line terminator (`\n`, or `\r\n`).
    pub bytes: Bytes,
    /// True when this piece continues the line of the previous piece of the same pipe
    /// (which was cut at `max_line_bytes` or taken out as a partial line).
    pub continues: bool,
    /// True when the line does not end with this piece: it was cut at `max_line_bytes`, or
    /// taken out before its newline (a later piece continues it, unless the output ends).
    pub partial: bool,
}

/// Turns chunks of bytes into lines. Pure: the caller decides when to flush a partial line.
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    max_line_bytes: usize,
    /// The last piece emitted did not end its line, so the next one continues it.
    open: bool,
    /// How many times [`LineSplitter::push`] was called.
    pushes: u64,
    /// The push that brought the oldest byte of `pending` (None when it is empty).
    pending_since: Option<u64>,
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize) -> LineSplitter {
        // A cut needs room for at least one whole UTF-8 character.
        let max_line_bytes = max_line_bytes.max(4);
        LineSplitter { pending: Vec::new(), max_line_bytes, open: false, pushes: 0, pending_since: None }
    }

    /// Feeds bytes; calls `emit` for every complete line (terminator removed) and for every
    /// `max_line_bytes` piece of an over-long line. A line that starts and ends in `data` and
    /// fits the bound is a slice of it.
    pub fn push(&mut self, data: &Bytes, mut emit: impl FnMut(Piece)) {
        self.pushes += 1;
        let mut start = 0;
        while start < data.len() {
            let Some(offset) = memchr::memchr(b'\n', &data[start..]) else {
                self.append_bounded(&data[start..], &mut emit);
                break;
            };
            let newline = start + offset;
            if self.pending.is_empty() && newline - start <= self.max_line_bytes {
                let end = if data[start..newline].last() == Some(&b'\r') { newline - 1 } else { newline };
                self.emit(data.slice(start..end), true, &mut emit);
            } else {
                self.append_bounded(&data[start..newline], &mut emit);
                let mut line = std::mem::take(&mut self.pending);
                self.pending_since = None;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.emit(Bytes::from(line), true, &mut emit);
            }
            start = newline + 1;
        }
    }

    /// True when bytes of an unfinished line are waiting.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Which call of [`LineSplitter::push`] (counted from 1) brought the oldest byte of the
    /// partial line waiting now, if one is. The caller keeps the time of each push it makes
    /// and flushes the partial line a fixed delay after that push, however many bytes
    /// follow without a newline: a `\r` progress bar is never quiet, but must still show.
    pub fn partial_since(&self) -> Option<u64> {
        self.pending_since
    }

    /// Takes the unfinished line, if any (on the flush timer, or at end of stream). The
    /// next piece continues it.
    pub fn take_partial(&mut self) -> Option<Piece> {
        if self.pending.is_empty() {
            return None;
        }
        let bytes = Bytes::from(std::mem::take(&mut self.pending));
        self.pending_since = None;
        let piece = Piece { bytes, continues: self.open, partial: true };
        self.open = true;
        Some(piece)
    }

    fn emit(&mut self, bytes: Bytes, ends_line: bool, emit: &mut impl FnMut(Piece)) {
        emit(Piece { bytes, continues: self.open, partial: !ends_line });
        self.open = !ends_line;
    }

    fn append_bounded(&mut self, mut data: &[u8], emit: &mut impl FnMut(Piece)) {
        while self.pending.len() + data.len() > self.max_line_bytes {
            let room = self.max_line_bytes - self.pending.len();
            self.pending.extend_from_slice(&data[..room]);
            data = &data[room..];
            let cut = utf8_safe_cut(&self.pending);
            let carry = self.pending.split_off(cut);
            let piece = std::mem::replace(&mut self.pending, carry);
            // A carried byte may be older than this push: keeping the older mark only
            // flushes earlier, never later.
            if self.pending.is_empty() {
                self.pending_since = None;
            }
            self.emit(Bytes::from(piece), false, emit);
        }
        self.pending.extend_from_slice(data);
        if self.pending.is_empty() {
            self.pending_since = None;
        } else if self.pending_since.is_none() {
            self.pending_since = Some(self.pushes);
        }
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

    impl LineSplitter {
        /// [`LineSplitter::push`] of a copy of `data`.
        fn push_copy(&mut self, data: &[u8], emit: impl FnMut(Piece)) {
            self.push(&Bytes::copy_from_slice(data), emit);
        }
    }

    fn split(max: usize, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
        let mut splitter = LineSplitter::new(max);
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push_copy(chunk, |piece| lines.push(piece.bytes.to_vec()));
        }
        (lines, splitter.take_partial().map(|piece| piece.bytes.to_vec()))
    }

    /// Every piece as (text, continues, partial); a chunk `|` stands for a partial-line flush.
    fn pieces(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool, bool)> {
        let mut splitter = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut note =
            |piece: Piece| out.push((String::from_utf8(piece.bytes.to_vec()).unwrap(), piece.continues, piece.partial));
        for chunk in chunks {
            if *chunk == b"|" {
                if let Some(piece) = splitter.take_partial() {
                    note(piece);
                }
            } else {
                splitter.push_copy(chunk, &mut note);
            }
        }
        out
    }

    fn owned(pieces: &[(&str, bool, bool)]) -> Vec<(String, bool, bool)> {
        pieces.iter().map(|&(text, continues, partial)| (text.to_string(), continues, partial)).collect()
    }

    #[test]
    fn pieces_after_a_flush_or_a_cut_continue_the_line() {
        let got = pieces(100, &[b"\r1", b"|", b"\r2\r3", b"|", b"\r4\nnext\n", b"a", b"|", b"\n", b"end", b"|"]);
        let want = [
            ("\r1", false, true),
            ("\r2\r3", true, true),
            ("\r4", true, false),
            ("next", false, false),
            ("a", false, true),
            ("", true, false),
            ("end", false, true),
        ];
        assert_eq!(got, owned(&want));
        let cut = pieces(4, &[b"abcdefghij\nk\n"]);
        assert_eq!(
            cut,
            owned(&[("abcd", false, true), ("efgh", true, true), ("ij", true, false), ("k", false, false)])
        );
    }

    #[test]
    fn the_partial_line_is_dated_by_its_oldest_byte() {
        let mut splitter = LineSplitter::new(100);
        let mut ignore = |_: Piece| {};
        splitter.push_copy(b"\r1", &mut ignore);
        assert_eq!(splitter.partial_since(), Some(1));
        splitter.push_copy(b"\r2", &mut ignore);
        assert_eq!(splitter.partial_since(), Some(1), "more bytes without a newline do not make the line younger");
        splitter.push_copy(b"\n\r3", &mut ignore);
        assert_eq!(splitter.partial_since(), Some(3), "a new line starts with this push");
        splitter.take_partial();
        assert_eq!(splitter.partial_since(), None);
        splitter.push_copy(b"x\n", &mut ignore);
        assert_eq!(splitter.partial_since(), None);
        let mut long = LineSplitter::new(4);
        long.push_copy(b"abcdef", &mut ignore);
        assert_eq!(long.partial_since(), Some(1), "the tail after a cut waits too");
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
            splitter.push_copy(b"abc", |piece| {
                assert!(piece.bytes.len() <= 8);
                emitted += piece.bytes.len();
            });
            assert!(splitter.pending.len() <= 8);
        }
        assert_eq!(emitted + splitter.take_partial().map_or(0, |p| p.bytes.len()), 3000);
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

    #[test]
    fn a_line_whole_in_one_chunk_is_a_slice_of_it_and_one_that_spans_chunks_is_its_own() {
        let mut splitter = LineSplitter::new(6);
        let first = Bytes::from_static(b"one\r\ntwo\nlonger line\nsp");
        let second = Bytes::from_static(b"an\n");
        let within = |piece: &Piece, chunk: &Bytes| chunk.as_ptr_range().contains(&piece.bytes.as_ptr());
        let mut pieces = Vec::new();
        splitter.push(&first, |piece| pieces.push(piece));
        splitter.push(&second, |piece| pieces.push(piece));
        let texts: Vec<&[u8]> = pieces.iter().map(|piece| &piece.bytes[..]).collect();
        assert_eq!(texts, [&b"one"[..], b"two", b"longer", b" line", b"span"]);
        assert!(within(&pieces[0], &first) && within(&pieces[1], &first), "short lines are slices of their chunk");
        assert!(pieces[2..].iter().all(|piece| !within(piece, &first) && !within(piece, &second)));
    }
}
