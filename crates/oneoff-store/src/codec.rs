//! How domain values are stored, the same for every backend: parameter lists and argv as
//! JSON text, log entries as chunks, and the rules for appending and reading chunks.

use std::collections::HashMap;

use bytes::Bytes;
use oneoff_core::{LogEntry, LogStream, RunId, StoredParam};
use serde_json::{json, Value};

use crate::StoreError;

pub fn encode_params(params: &[(String, StoredParam)]) -> String {
    let items: Vec<Value> = params
        .iter()
        .map(|(name, value)| match value {
            StoredParam::Text(text) => json!({ "name": name, "text": text }),
            StoredParam::Integer(number) => json!({ "name": name, "integer": number }),
            StoredParam::Boolean(flag) => json!({ "name": name, "boolean": flag }),
            StoredParam::Redacted => json!({ "name": name, "redacted": true }),
        })
        .collect();
    Value::Array(items).to_string()
}

pub fn decode_params(text: &str) -> Result<Vec<(String, StoredParam)>, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("params column: {text}"));
    let items: Vec<Value> = serde_json::from_str(text).map_err(|_| corrupt())?;
    items
        .into_iter()
        .map(|item| {
            let name = item.get("name").and_then(Value::as_str).ok_or_else(corrupt)?.to_string();
            let value = if let Some(text) = item.get("text").and_then(Value::as_str) {
                StoredParam::Text(text.to_string())
            } else if let Some(number) = item.get("integer").and_then(Value::as_i64) {
                StoredParam::Integer(number)
            } else if let Some(flag) = item.get("boolean").and_then(Value::as_bool) {
                StoredParam::Boolean(flag)
            } else if item.get("redacted").is_some() {
                StoredParam::Redacted
            } else {
                return Err(corrupt());
            };
            Ok((name, value))
        })
        .collect()
}

pub fn encode_argv(argv: &[String]) -> String {
    Value::from(argv.to_vec()).to_string()
}

pub fn decode_argv(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt(format!("argv column: {text}")))
}

/// Set in an entry's stream byte when the entry continues the previous line of its stream.
///
/// The chunk format's second version: the first had only the stream code (1 to 3) in that
/// byte, so its chunks decode unchanged, with no entry continuing another. A server older
/// than this flag reads a chunk that uses it as damaged rather than misreading it.
const CONTINUES_FLAG: u8 = 0x80;
/// Set in an entry's stream byte when its line does not end with it (same versioning).
const PARTIAL_FLAG: u8 = 0x40;

/// Encodes consecutive entries as one chunk: per entry, the timestamp as a zigzag varint
/// delta from the previous one, the stream code as one byte (with [`CONTINUES_FLAG`] and
/// [`PARTIAL_FLAG`] for the pieces of a line), the length as a varint, then the bytes.
/// Sequence numbers are implicit (`first_seq + index`).
pub fn encode_chunk(entries: &[LogEntry]) -> Vec<u8> {
    let payload: usize = entries.iter().map(|entry| entry.bytes.len()).sum();
    let mut out = Vec::with_capacity(payload + entries.len() * 6);
    let mut previous_ts = 0i64;
    for entry in entries {
        put_varint(&mut out, zigzag(entry.ts_us.wrapping_sub(previous_ts)));
        previous_ts = entry.ts_us;
        let flags = if entry.continues { CONTINUES_FLAG } else { 0 } | if entry.partial { PARTIAL_FLAG } else { 0 };
        out.push(entry.stream.code() as u8 | flags);
        put_varint(&mut out, entry.bytes.len() as u64);
        out.extend_from_slice(&entry.bytes);
    }
    out
}

/// The most output one chunk holds (unless one entry alone is larger): reading a chunk loads
/// all of it, so this bounds what any read of the log costs, however the lines were batched.
pub const CHUNK_MAX_BYTES: usize = 256 * 1024;

/// Cuts consecutive entries into the runs that are stored as one chunk each: at most
/// [`CHUNK_MAX_BYTES`] of output, or a single entry.
pub fn chunk_pieces(entries: &[LogEntry]) -> impl Iterator<Item = &[LogEntry]> {
    let mut rest = entries;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let mut bytes = first.bytes.len();
        let mut end = 1;
        while let Some(next) = rest.get(end) {
            if bytes + next.bytes.len() > CHUNK_MAX_BYTES {
                break;
            }
            bytes += next.bytes.len();
            end += 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// Entries gathered by one read of the log, within its bounds: at most `max_entries`, and
/// at most `max_bytes` of output unless the first entry alone is larger (a read always
/// makes progress).
#[derive(Debug)]
pub struct Page {
    entries: Vec<LogEntry>,
    /// Entries counted by [`Page::take`], pushed or about to be.
    taken: usize,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    full: bool,
}

impl Page {
    pub fn new(max_entries: usize, max_bytes: usize) -> Page {
        Page { entries: Vec::new(), taken: 0, bytes: 0, max_entries, max_bytes, full: max_entries == 0 }
    }

    /// No further entry fits.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Counts an entry of `bytes` in if it fits (the caller then pushes it); otherwise the page is full.
    fn take(&mut self, bytes: usize) -> bool {
        let fits = !self.full && (self.taken == 0 || self.bytes + bytes <= self.max_bytes);
        if fits {
            self.taken += 1;
            self.bytes += bytes;
        }
        self.full = !fits || self.taken >= self.max_entries;
        fits
    }

    fn push(&mut self, entry: LogEntry) {
        self.entries.push(entry);
    }

    pub fn into_entries(self) -> Vec<LogEntry> {
        self.entries
    }

    /// The entries of a backward read ([`decode_chunk_before`]), in ascending order.
    pub fn into_entries_oldest_first(mut self) -> Vec<LogEntry> {
        self.entries.reverse();
        self.entries
    }
}

/// Decodes a chunk, keeping the entries with `seq > after` that fit in `page`.
pub fn decode_chunk(first_seq: u64, data: &[u8], after: u64, page: &mut Page) -> Result<(), StoreError> {
    let mut taken = Vec::new();
    for_each_entry(first_seq, data, |seq, piece| {
        if seq > after && page.take(piece.len) {
            taken.push((seq, piece));
        }
        !page.is_full()
    })?;
    let lines = Lines::of(data, &taken);
    for (seq, piece) in taken {
        page.push(lines.entry(seq, &piece));
    }
    Ok(())
}

/// Decodes a chunk for a backward read (chunks newest first): keeps the entries with
/// `after < seq < before` that fit in `page`, newest first; [`Page::into_entries_oldest_first`]
/// puts them back in order. A page cut by its bounds keeps the entries nearest `before`.
pub fn decode_chunk_before(
    first_seq: u64,
    data: &[u8],
    after: u64,
    before: u64,
    page: &mut Page,
) -> Result<(), StoreError> {
    // Entries are encoded forward (timestamps are deltas), so the chunk is decoded whole and
    // then taken from its end; a chunk is at most `CHUNK_MAX_BYTES` (or one entry).
    let mut wanted = Vec::new();
    for_each_entry(first_seq, data, |seq, piece| {
        if seq > after && seq < before {
            wanted.push((seq, piece));
        }
        seq + 1 < before
    })?;
    let mut taken = Vec::new();
    for (seq, piece) in wanted.into_iter().rev() {
        if !page.take(piece.len) {
            break;
        }
        taken.push((seq, piece));
        if page.is_full() {
            break;
        }
    }
    let lines = Lines::of(data, &taken);
    for (seq, piece) in taken {
        page.push(lines.entry(seq, &piece));
    }
    Ok(())
}

/// One entry of a chunk as it is decoded: its fields, and where its bytes lie in the chunk.
struct Piece {
    ts_us: i64,
    stream: LogStream,
    start: usize,
    len: usize,
    continues: bool,
    partial: bool,
}

/// Where the taken entries' bytes come from. When they are most of the chunk, one copy of it
/// that they all slice (one allocation, not one per line); when they are a small part, each
/// its own copy, so a kept entry never holds more than twice its share of the chunk alive.
enum Lines<'a> {
    Shared(Bytes),
    Copied(&'a [u8]),
}

impl<'a> Lines<'a> {
    fn of(data: &'a [u8], taken: &[(u64, Piece)]) -> Lines<'a> {
        let bytes: usize = taken.iter().map(|(_, piece)| piece.len).sum();
        if taken.len() > 1 && bytes * 2 >= data.len() {
            Lines::Shared(Bytes::copy_from_slice(data))
        } else {
            Lines::Copied(data)
        }
    }

    fn entry(&self, seq: u64, piece: &Piece) -> LogEntry {
        let range = piece.start..piece.start + piece.len;
        let bytes = match self {
            Lines::Shared(chunk) => chunk.slice(range),
            Lines::Copied(data) => Bytes::copy_from_slice(&data[range]),
        };
        LogEntry {
            seq,
            ts_us: piece.ts_us,
            stream: piece.stream,
            bytes,
            continues: piece.continues,
            partial: piece.partial,
        }
    }
}

/// Walks a chunk's entries in order while `visit` returns true.
fn for_each_entry(first_seq: u64, data: &[u8], mut visit: impl FnMut(u64, Piece) -> bool) -> Result<(), StoreError> {
    let corrupt = || StoreError::Corrupt(format!("log chunk starting at seq {first_seq}"));
    let mut rest = data;
    let mut seq = first_seq;
    let mut ts_us = 0i64;
    while !rest.is_empty() {
        ts_us = ts_us.wrapping_add(unzigzag(take_varint(&mut rest).ok_or_else(corrupt)?));
        let (&code, tail) = rest.split_first().ok_or_else(corrupt)?;
        rest = tail;
        let (continues, partial) = (code & CONTINUES_FLAG != 0, code & PARTIAL_FLAG != 0);
        let stream = LogStream::from_code(i64::from(code & !(CONTINUES_FLAG | PARTIAL_FLAG))).ok_or_else(corrupt)?;
        let len = usize::try_from(take_varint(&mut rest).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
        if len > rest.len() {
            return Err(corrupt());
        }
        let start = data.len() - rest.len();
        rest = &rest[len..];
        if !visit(seq, Piece { ts_us, stream, start, len, continues, partial }) {
            break;
        }
        seq += 1;
    }
    Ok(())
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(data: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (index, &byte) in data.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *data = &data[index + 1..];
            return Some(value);
        }
    }
    None
}

/// A chunk row to insert: run, first and last sequence numbers, encoded entries.
pub struct ChunkRow {
    pub run: RunId,
    pub first_seq: u64,
    pub last_seq: u64,
    pub data: Vec<u8>,
}

/// Checks each append against its run's stored head (`heads`: run id → highest stored seq,
/// none for a run without lines) and cuts the accepted ones into chunk rows. One result per
/// append, in order: a gap or a repeated sequence number refuses that append only. The same
/// rule for every backend; only how the heads are read and the rows written differs.
pub fn plan_appends(
    appends: &[(RunId, &[LogEntry])],
    heads: impl IntoIterator<Item = (i64, Option<i64>)>,
) -> (Vec<Result<(), StoreError>>, Vec<ChunkRow>) {
    let mut next_seq: HashMap<i64, u64> =
        heads.into_iter().map(|(run, head)| (run, head.map_or(1, |seq| seq.max(0) as u64 + 1))).collect();
    let (mut results, mut rows) = (Vec::with_capacity(appends.len()), Vec::new());
    for &(run, entries) in appends {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            results.push(Ok(()));
            continue;
        };
        let expected = next_seq.get(&run.0).copied().unwrap_or(1);
        if first.seq != expected {
            results.push(Err(StoreError::Sequence { run, expected, found: first.seq }));
        } else if last.seq.checked_sub(first.seq) != Some(entries.len() as u64 - 1) {
            results.push(Err(StoreError::Sequence { run, expected: first.seq, found: last.seq }));
        } else {
            next_seq.insert(run.0, last.seq + 1);
            // Several rows for a batch of long lines, so that reading a chunk stays cheap.
            for piece in chunk_pieces(entries) {
                let (first_seq, last_seq) = (piece[0].seq, piece[piece.len() - 1].seq);
                rows.push(ChunkRow { run, first_seq, last_seq, data: encode_chunk(piece) });
            }
            results.push(Ok(()));
        }
    }
    (results, rows)
}

/// Which chunks a read of entries after `after` needs, from the chunks' `(first_seq,
/// last_seq, stored size)` in order, without loading any: the `last_seq` of the last one
/// needed (`None`: nothing after `after`). At least one chunk, so a read always progresses.
pub fn plan_read(
    sizes: impl IntoIterator<Item = (i64, i64, i64)>,
    after: u64,
    max_entries: usize,
    max_bytes: usize,
) -> Option<i64> {
    let (mut wanted_entries, mut wanted_bytes, mut through) = (0u64, 0usize, None);
    for (first_seq, last_seq, size) in sizes {
        if wanted_entries >= max_entries as u64 || (wanted_bytes >= max_bytes && through.is_some()) {
            break;
        }
        let skipped = after.max(first_seq.max(1) as u64 - 1);
        wanted_entries += (last_seq.max(0) as u64).saturating_sub(skipped);
        wanted_bytes = wanted_bytes.saturating_add(size.max(0) as usize);
        through = Some(last_seq);
    }
    through
}

/// Which chunks a backward read of entries with `after < seq < before` needs, from the
/// chunks' `(first_seq, last_seq, stored size)` newest first, without loading any: the
/// `last_seq` of the oldest and of the newest one needed (`None`: nothing in range). The
/// same rule as [`plan_read`], counted from `before` down; at least one chunk.
pub fn plan_read_before(
    sizes: impl IntoIterator<Item = (i64, i64, i64)>,
    after: u64,
    before: u64,
    max_entries: usize,
    max_bytes: usize,
) -> Option<(i64, i64)> {
    let (mut wanted_entries, mut wanted_bytes, mut range) = (0u64, 0usize, None::<(i64, i64)>);
    for (first_seq, last_seq, size) in sizes {
        if wanted_entries >= max_entries as u64 || (wanted_bytes >= max_bytes && range.is_some()) {
            break;
        }
        let skipped_below = after.max(first_seq.max(1) as u64 - 1);
        let highest = (last_seq.max(0) as u64).min(before.saturating_sub(1));
        wanted_entries += highest.saturating_sub(skipped_below);
        wanted_bytes = wanted_bytes.saturating_add(size.max(0) as usize);
        range = Some((last_seq, range.map_or(last_seq, |(_, newest)| newest)));
    }
    range
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_skip_what_was_seen() {
        let entries: Vec<LogEntry> = (0..300u64)
            .map(|index| LogEntry {
                seq: 10 + index,
                ts_us: 1_767_225_600_000_000 + (index as i64) * 37 - if index == 5 { 1000 } else { 0 },
                stream: if index % 3 == 0 { LogStream::Stderr } else { LogStream::Stdout },
                bytes: vec![index as u8; (index as usize) % 200].into(),
                continues: index % 7 == 1,
                partial: index % 5 == 0,
            })
            .collect();
        let chunk = encode_chunk(&entries);
        let mut all = Page::new(usize::MAX, usize::MAX);
        decode_chunk(10, &chunk, 0, &mut all).unwrap();
        assert_eq!(all.into_entries(), entries);
        let mut tail = Page::new(5, usize::MAX);
        decode_chunk(10, &chunk, 100, &mut tail).unwrap();
        assert!(tail.is_full());
        assert_eq!(tail.into_entries(), entries[91..96].to_vec());
    }

    #[test]
    fn a_truncated_chunk_is_an_error_not_a_panic() {
        let entry = LogEntry {
            seq: 1,
            ts_us: 5,
            stream: LogStream::Stdout,
            bytes: b"hello".to_vec().into(),
            continues: true,
            partial: true,
        };
        let chunk = encode_chunk(&[entry]);
        for cut in 0..chunk.len() {
            let mut page = Page::new(10, usize::MAX);
            let result = decode_chunk(1, &chunk[..cut], 0, &mut page);
            assert!(cut == 0 || result.is_err(), "cut at {cut}");
        }
    }

    fn line(seq: u64, bytes: usize) -> LogEntry {
        LogEntry {
            seq,
            ts_us: 0,
            stream: LogStream::Stdout,
            bytes: vec![b'x'; bytes].into(),
            continues: false,
            partial: false,
        }
    }

    #[test]
    fn chunks_of_the_first_format_still_decode() {
        // Written before entries could continue one another: ts delta 10, stderr, "hi";
        // ts delta 5, stdout, "".
        let old = [20u8, 2, 2, b'h', b'i', 10, 1, 0];
        let mut page = Page::new(10, usize::MAX);
        decode_chunk(4, &old, 0, &mut page).unwrap();
        let stderr = LogEntry {
            seq: 4,
            ts_us: 10,
            stream: LogStream::Stderr,
            bytes: b"hi".to_vec().into(),
            continues: false,
            partial: false,
        };
        let stdout = LogEntry {
            seq: 5,
            ts_us: 15,
            stream: LogStream::Stdout,
            bytes: Bytes::new(),
            continues: false,
            partial: false,
        };
        assert_eq!(page.into_entries(), vec![stderr, stdout]);
        assert!(decode_chunk(1, &[0, 0x84, 0], 0, &mut Page::new(10, usize::MAX)).is_err(), "no stream 4");
    }

    #[test]
    fn a_page_is_bounded_by_bytes_but_always_takes_one_entry() {
        let entries: Vec<LogEntry> = (1..=10).map(|seq| line(seq, 100)).collect();
        let chunk = encode_chunk(&entries);
        let mut page = Page::new(usize::MAX, 350);
        decode_chunk(1, &chunk, 0, &mut page).unwrap();
        assert!(page.is_full());
        assert_eq!(page.into_entries().len(), 3, "300 bytes fit in 350, a fourth entry does not");

        let huge = encode_chunk(&[line(1, 5000), line(2, 1)]);
        let mut page = Page::new(usize::MAX, 350);
        decode_chunk(1, &huge, 0, &mut page).unwrap();
        let taken = page.into_entries();
        assert_eq!(
            taken.iter().map(|entry| entry.seq).collect::<Vec<_>>(),
            vec![1],
            "an entry larger than the bound comes alone"
        );
    }

    #[test]
    fn entries_read_from_most_of_a_chunk_share_one_copy_of_it_and_a_few_have_their_own() {
        let entries: Vec<LogEntry> = (1..=10).map(|seq| line(seq, 100)).collect();
        let chunk = encode_chunk(&entries);
        // Each entry is 3 bytes of header (timestamp delta, stream, length) and its 100 bytes.
        let distances = |page: Page| {
            let taken = page.into_entries();
            assert!(taken.iter().zip(&entries[10 - taken.len()..]).all(|(got, want)| got == want));
            taken
                .windows(2)
                .map(|pair| (pair[1].bytes.as_ptr() as usize).wrapping_sub(pair[0].bytes.as_ptr() as usize))
                .collect::<Vec<_>>()
        };
        let mut whole = Page::new(usize::MAX, usize::MAX);
        decode_chunk(1, &chunk, 0, &mut whole).unwrap();
        assert_eq!(distances(whole), vec![103; 9], "slices of one copy of the chunk, as it is laid out");
        let mut few = Page::new(usize::MAX, usize::MAX);
        decode_chunk(1, &chunk, 7, &mut few).unwrap();
        // Allocations are 16-byte aligned, so entries in their own are never 103 bytes apart.
        assert!(distances(few).iter().all(|&distance| distance != 103), "3 of 10 entries are copied on their own");
        let mut backward = Page::new(6, usize::MAX);
        decode_chunk_before(1, &chunk, 0, 11, &mut backward).unwrap();
        let taken = backward.into_entries_oldest_first();
        assert_eq!(taken.iter().map(|entry| entry.seq).collect::<Vec<_>>(), (5..=10).collect::<Vec<_>>());
        assert!(taken
            .windows(2)
            .all(|pair| (pair[1].bytes.as_ptr() as usize).wrapping_sub(pair[0].bytes.as_ptr() as usize) == 103));
    }

    #[test]
    fn chunks_hold_a_bounded_amount_of_output() {
        let big = CHUNK_MAX_BYTES / 3;
        let entries: Vec<LogEntry> =
            (1..=7).map(|seq| line(seq, big)).chain([line(8, CHUNK_MAX_BYTES * 2), line(9, 1), line(10, 1)]).collect();
        let pieces: Vec<Vec<u64>> =
            chunk_pieces(&entries).map(|piece| piece.iter().map(|entry| entry.seq).collect()).collect();
        assert_eq!(pieces, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7], vec![8], vec![9, 10]]);
        assert_eq!(chunk_pieces(&[]).count(), 0);
    }
    #[test]
    fn a_backward_decode_keeps_the_entries_nearest_before_and_refuses_damage() {
        let entries: Vec<LogEntry> = (1..=10).map(|seq| line(seq, 100)).collect();
        let chunk = encode_chunk(&entries);
        let mut page = Page::new(3, usize::MAX);
        decode_chunk_before(1, &chunk, 0, 9, &mut page).unwrap();
        assert!(page.is_full());
        let seqs: Vec<u64> = page.into_entries_oldest_first().iter().map(|entry| entry.seq).collect();
        assert_eq!(seqs, vec![6, 7, 8]);
        let mut bounded = Page::new(usize::MAX, 250);
        decode_chunk_before(1, &chunk, 0, 11, &mut bounded).unwrap();
        assert_eq!(bounded.into_entries_oldest_first().len(), 2, "the bytes bound counts from `before` down");
        let mut between = Page::new(usize::MAX, usize::MAX);
        decode_chunk_before(1, &chunk, 4, 7, &mut between).unwrap();
        assert_eq!(between.into_entries_oldest_first().iter().map(|entry| entry.seq).collect::<Vec<_>>(), vec![5, 6]);
        assert!(decode_chunk_before(1, &chunk[..chunk.len() - 1], 0, 11, &mut Page::new(10, usize::MAX)).is_err());
    }

    #[test]
    fn a_backward_plan_counts_from_before_down_and_takes_at_least_one_chunk() {
        // Chunks newest first: (first_seq, last_seq, size).
        let sizes = [(201, 300, 1000), (101, 200, 1000), (1, 100, 1000)];
        assert_eq!(plan_read_before(sizes, 0, 251, 50, usize::MAX), Some((300, 300)), "50 of the first chunk");
        assert_eq!(plan_read_before(sizes, 0, 251, 51, usize::MAX), Some((200, 300)));
        assert_eq!(plan_read_before(sizes, 0, 301, 1000, 1500), Some((200, 300)), "bytes: stop once enough");
        assert_eq!(plan_read_before(sizes, 0, 301, 1000, 1), Some((300, 300)), "always one chunk");
        assert_eq!(
            plan_read_before(sizes, 150, 301, 1000, usize::MAX),
            Some((100, 300)),
            "last_seq of the oldest and newest"
        );
        assert_eq!(plan_read_before([], 0, 10, 10, 10), None);
    }
}
