//! The wire form of log entries: `{"entries":[...],"next":N}` messages (the JSON of
//! [`StreamBatch`](oneoff_api::v1::StreamBatch)), cut by size, and the frames that carry one
//! message to both live transports from one buffer.
//!
//! [`Batches`] cuts entries into messages of at most `max_bytes` each (one entry may exceed
//! it alone), encoding them one at a time, when the reader asks for the next: a reader holds
//! one message and what is left of its entries, never all of their JSON. This is the hot
//! path of every stream: entries are written straight into the message by hand (the JSON
//! serde would write for the API's `Entry`, a test holds it), a line that needs no escape is
//! copied as it is, and a timestamp shared by consecutive lines is formatted once.
//!
//! A [`Frame`] is one message laid out as its Server-Sent Event (`id: N\ndata: JSON\n\n`),
//! of which the WebSocket text is a slice. The hub builds the frames of a batch once and
//! every viewer at the head sends the same buffer (a reference count, no copy); a viewer
//! elsewhere builds its own with the same [`Batches`], so both are byte for byte the same.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use oneoff_api::v1::timestamp;
use oneoff_core::LogEntry;

/// Entries cut into messages of at most `max_bytes`, encoded one at a time.
pub struct Batches {
    entries: Entries,
    /// The next entry to encode.
    next: usize,
    max_bytes: usize,
    /// The encoded entry that did not fit in the previous message, and its sequence number.
    carried: Option<(Vec<u8>, u64)>,
    formatted: Option<(i64, String)>,
}

/// One message of [`Batches`] as text (the long-poll page is made from it).
pub struct Batch {
    pub text: String,
    /// The sequence number of its last entry (where a reader resumes after it).
    pub last_seq: u64,
}

/// One message ready for either live transport, cheap to clone (it shares its buffer).
#[derive(Clone, Debug)]
pub struct Frame {
    /// The whole SSE event.
    event: Bytes,
    /// The message alone: a slice of `event`.
    text: Utf8Bytes,
    /// The sequence number of its last entry.
    pub last_seq: u64,
}

/// A message's JSON before its entries.
const HEAD: &[u8] = br#"{"entries":["#;
/// Room for what follows its entries: `],"next":`, the number and `}`, and the SSE event's end.
const TAIL_BYTES: usize = 32;

/// `id: ` and `\ndata: ` around the largest sequence number.
const EVENT_ROOM: usize = "id: ".len() + 20 + "\ndata: ".len();
const EVENT_END: &[u8] = b"\n\n";

impl Frame {
    /// The Server-Sent Event carrying the message, its id the last sequence number.
    pub fn sse_event(&self) -> Bytes {
        self.event.clone()
    }

    /// The WebSocket text message.
    pub fn ws_text(&self) -> Utf8Bytes {
        self.text.clone()
    }

    /// The message (what [`Frame::ws_text`] carries).
    #[cfg(test)]
    pub fn text(&self) -> &str {
        self.text.as_str()
    }

    /// Bytes the frame holds.
    pub fn len(&self) -> usize {
        self.event.len()
    }

    /// `message` holds [`EVENT_ROOM`] bytes of room, then the JSON.
    fn new(mut message: Vec<u8>, last_seq: u64) -> Frame {
        let prefix = format!("id: {last_seq}\ndata: ");
        let start = EVENT_ROOM - prefix.len();
        message[start..EVENT_ROOM].copy_from_slice(prefix.as_bytes());
        let json_end = message.len();
        message.extend_from_slice(EVENT_END);
        // A frame may live in the cache: it keeps at most an eighth more than it holds (the
        // room of a carried entry, or of an escaped line's growth, goes back).
        if message.capacity() - message.len() > message.len() / 8 {
            message.shrink_to_fit();
        }
        let event = Bytes::from(message).slice(start..);
        let json = event.slice(prefix.len()..json_end - start);
        // serde_json writes UTF-8 (and the message is ASCII), so this never falls back.
        let text = Utf8Bytes::try_from(json.clone())
            .unwrap_or_else(|_| Utf8Bytes::from(String::from_utf8_lossy(&json).into_owned()));
        Frame { event, text, last_seq }
    }
}

/// The entries a [`Batches`] encodes: a reader's own, or a batch the hub keeps (encoded in
/// place, not copied).
enum Entries {
    Own(Vec<LogEntry>),
    Kept(Arc<[LogEntry]>),
}

impl std::ops::Deref for Entries {
    type Target = [LogEntry];

    fn deref(&self) -> &[LogEntry] {
        match self {
            Entries::Own(entries) => entries,
            Entries::Kept(entries) => entries,
        }
    }
}

impl Batches {
    pub fn new(entries: Vec<LogEntry>, max_bytes: usize) -> Batches {
        Batches::of(Entries::Own(entries), max_bytes)
    }

    /// The messages of a batch the hub keeps.
    pub fn kept(entries: Arc<[LogEntry]>, max_bytes: usize) -> Batches {
        Batches::of(Entries::Kept(entries), max_bytes)
    }

    fn of(entries: Entries, max_bytes: usize) -> Batches {
        Batches { entries, next: 0, max_bytes, carried: None, formatted: None }
    }

    /// The next message as a [`Frame`].
    pub fn next_frame(&mut self) -> Option<Frame> {
        let (message, last_seq) = self.next_message(EVENT_ROOM)?;
        Some(Frame::new(message, last_seq))
    }

    /// Every message as frames (for a batch the hub keeps, whose frames viewers share).
    pub fn frames(mut self) -> Vec<Frame> {
        std::iter::from_fn(|| self.next_frame()).collect()
    }

    /// Appends the entry's JSON to `out`: byte for byte what serde writes for an
    /// [`Entry`](oneoff_api::v1::Entry) (the test below holds that), without its per-key and
    /// per-byte work. This is the hot path of every stream: the keys, the timestamp and the
    /// stream name need no escaping, and most lines need none either.
    fn write_entry(
        formatted: &mut Option<(i64, String)>,
        out: &mut Vec<u8>,
        entry: &LogEntry,
    ) -> serde_json::Result<()> {
        let ts = match formatted {
            Some((ts_us, text)) if *ts_us == entry.ts_us => text.as_str(),
            _ => &formatted.insert((entry.ts_us, timestamp(entry.ts_us))).1,
        };
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(itoa::Buffer::new().format(entry.seq).as_bytes());
        out.extend_from_slice(b",\"ts\":\"");
        out.extend_from_slice(ts.as_bytes());
        out.extend_from_slice(b"\",\"stream\":\"");
        out.extend_from_slice(entry.stream.as_str().as_bytes());
        out.extend_from_slice(b"\",\"text\":");
        let text = entry.text();
        // serde_json escapes exactly these; a line without any is copied as it is.
        if text.bytes().any(|byte| byte < 0x20 || byte == b'"' || byte == b'\\') {
            serde_json::to_writer(&mut *out, text.as_ref())?;
        } else {
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        if entry.continues {
            out.extend_from_slice(b",\"continues\":true");
        }
        if entry.partial {
            out.extend_from_slice(b",\"partial\":true");
        }
        out.push(b'}');
        Ok(())
    }

    /// The next message's JSON after `room` bytes of zeros (which do not count against
    /// `max_bytes`), and its last sequence number.
    fn next_message(&mut self, room: usize) -> Option<(Vec<u8>, u64)> {
        let carried = self.carried.as_ref().map_or(0, |(json, _)| json.len());
        let mut message = Vec::with_capacity(room + self.expected_bytes(carried));
        message.resize(room, 0);
        message.extend_from_slice(HEAD);
        let mut last_seq = None;
        if let Some((json, seq)) = self.carried.take() {
            message.extend_from_slice(&json);
            last_seq = Some(seq);
        }
        while let Some(entry) = self.entries.get(self.next) {
            self.next += 1;
            let before = message.len();
            if last_seq.is_some() {
                message.push(b',');
            }
            let start = message.len();
            if Batches::write_entry(&mut self.formatted, &mut message, entry).is_err() {
                message.truncate(before); // cannot happen when writing to memory; never send half an entry
                continue;
            }
            if let Some(seq) = last_seq.filter(|_| message.len() - room + TAIL_BYTES > self.max_bytes) {
                // This entry starts the next message.
                self.carried = Some((message.split_off(start), entry.seq));
                message.truncate(before); // its comma
                return Some(finish_message(message, seq));
            }
            last_seq = Some(entry.seq);
        }
        last_seq.map(|seq| finish_message(message, seq))
    }

    /// About what the next message takes: its head, `carried`, then the entries up to and
    /// including the one that takes it past `max_bytes` (written, then carried to the next
    /// message), and its tail. Reserved up front so that the message is not copied as it
    /// grows; an escaped line may still make it grow, and [`Frame::new`] gives back what a
    /// frame does not use.
    fn expected_bytes(&self, carried: usize) -> usize {
        let mut bytes = HEAD.len() + carried + TAIL_BYTES;
        for entry in &self.entries[self.next..] {
            if bytes > self.max_bytes {
                break;
            }
            bytes += expected_entry_bytes(entry);
        }
        bytes
    }
}

/// What [`Batches::write_entry`] writes for an entry whose text needs no escape, and the comma
/// before it: `{"seq":`, `,"ts":"`, the 27 bytes of a timestamp, `","stream":"`, `","text":"`
/// and `"}` around the numbers and names.
fn expected_entry_bytes(entry: &LogEntry) -> usize {
    const FIXED: usize = 1 + 7 + 7 + 27 + 12 + 10 + 2;
    let flags = if entry.continues { ",\"continues\":true".len() } else { 0 }
        + if entry.partial { ",\"partial\":true".len() } else { 0 };
    FIXED + itoa::Buffer::new().format(entry.seq).len() + entry.stream.as_str().len() + entry.bytes.len() + flags
}

impl Iterator for Batches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let (message, last_seq) = self.next_message(0)?;
        // serde_json writes UTF-8 and the frame is ASCII, so this never falls back.
        let text =
            String::from_utf8(message).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
        Some(Batch { text, last_seq })
    }
}

fn finish_message(mut message: Vec<u8>, last_seq: u64) -> (Vec<u8>, u64) {
    message.extend_from_slice(format!(r#"],"next":{last_seq}}}"#).as_bytes());
    (message, last_seq)
}

#[cfg(test)]
mod tests {
    use oneoff_api::v1::{Entry, StreamBatch};
    use oneoff_core::{LogEntry, LogStream};

    use super::{Batch, Batches};

    fn encode_batches(entries: &[LogEntry], max_bytes: usize) -> Vec<String> {
        Batches::new(entries.to_vec(), max_bytes).map(|batch: Batch| batch.text).collect()
    }

    fn entry(seq: u64, ts_us: i64, bytes: &[u8]) -> LogEntry {
        LogEntry {
            seq,
            ts_us,
            stream: if seq.is_multiple_of(2) { LogStream::Stderr } else { LogStream::Stdout },
            bytes: bytes.to_vec().into(),
            continues: seq == 3,
            partial: seq == 2,
        }
    }

    fn mixed_entries() -> Vec<LogEntry> {
        (1..=100)
            .map(|seq| {
                entry(seq, 1_767_225_600_000_000 + (seq as i64 / 10), format!("line \"{seq}\" \u{1b}[1m").as_bytes())
            })
            .chain([entry(101, 5, &[0xff, b'x', 0x00])])
            .collect()
    }

    #[test]
    fn each_entry_is_written_as_serde_writes_the_api_entry() {
        let texts: [&[u8]; 9] = [
            b"plain ascii",
            b"",
            "caf\u{e9} \u{1f600} \u{7f}".as_bytes(),
            b"quote \" backslash \\ slash /",
            b"tab\tnewline\ncr\r nul\x00 esc\x1b[1m bell\x07 unit\x1f",
            &[0xff, b'x', 0xc3],
            b"\xe2\x80\xa8 line separator stays raw",
            b"</script>",
            b"\\u0000 looks escaped",
        ];
        let mut formatted = None;
        for (index, text) in texts.into_iter().enumerate() {
            for (continues, partial) in [(false, false), (true, false), (false, true), (true, true)] {
                let entry = LogEntry {
                    seq: u64::MAX - index as u64,
                    ts_us: -1 + index as i64 * 1_000_003,
                    stream: [LogStream::Stdout, LogStream::Stderr, LogStream::System][index % 3],
                    bytes: text.to_vec().into(),
                    continues,
                    partial,
                };
                let mut ours = Vec::new();
                Batches::write_entry(&mut formatted, &mut ours, &entry).unwrap();
                let serde = serde_json::to_vec(&Entry::from(&entry)).unwrap();
                assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&serde), "{text:?}");
                assert_eq!(ours, serde);
            }
        }
    }

    /// A message is reserved whole before it is written, the entry that starts the next one
    /// included, so it is never copied as it grows, and it reserves little more than it holds.
    #[test]
    fn an_entry_is_expected_to_take_what_it_is_written_in() {
        for (index, seq) in [1, 9, 10, 12_345, u64::MAX].into_iter().enumerate() {
            let stream = [LogStream::Stdout, LogStream::Stderr, LogStream::System][index % 3];
            for (continues, partial) in [(false, false), (true, false), (false, true), (true, true)] {
                let bytes = "x".repeat(index * 7).into();
                let entry = LogEntry { seq, ts_us: 1_767_225_600_123_456, stream, bytes, continues, partial };
                let mut written = vec![b','];
                Batches::write_entry(&mut None, &mut written, &entry).unwrap();
                assert_eq!(super::expected_entry_bytes(&entry), written.len(), "{entry:?}");
            }
        }
    }

    #[test]
    fn a_message_reserves_about_what_it_holds() {
        for (line_bytes, max_bytes) in [(1000, 65_536), (7, 65_536), (60_000, 65_536), (10, 1_000_000)] {
            let entries: Vec<LogEntry> = (1..=200).map(|seq| entry(seq, 1, &vec![b'a'; line_bytes])).collect();
            let mut batches = Batches::new(entries, max_bytes);
            while let Some((message, _)) = batches.next_message(super::EVENT_ROOM) {
                let spare = message.capacity() - message.len();
                assert!(
                    spare <= line_bytes + 200,
                    "{line_bytes}-byte lines, messages of {max_bytes}: {} bytes held in {}",
                    message.len(),
                    message.capacity()
                );
            }
        }
    }

    #[test]
    fn batches_are_the_api_messages_cut_by_size_in_order() {
        let entries = mixed_entries();
        let messages = encode_batches(&entries, 1000);
        assert!(messages.len() > 5, "cut by size: {}", messages.len());
        let mut decoded = Vec::new();
        for message in &messages {
            assert!(message.len() <= 1000, "{} bytes", message.len());
            let batch: StreamBatch = serde_json::from_str(message).expect("a StreamBatch");
            assert_eq!(batch.next, batch.entries.last().unwrap().seq, "next is the last sequence it carries");
            decoded.extend(batch.entries);
        }
        let expected: Vec<Entry> = entries.iter().map(Entry::from).collect();
        assert_eq!(decoded, expected, "every entry once, in order, as the API type says");
    }

    #[test]
    fn an_entry_larger_than_the_bound_travels_alone() {
        let big = vec![b'x'; 5000];
        let entries = [entry(1, 0, b"a"), entry(2, 0, &big), entry(3, 0, b"b")];
        let messages = encode_batches(&entries, 1000);
        let counts: Vec<usize> =
            messages.iter().map(|m| serde_json::from_str::<StreamBatch>(m).unwrap().entries.len()).collect();
        assert_eq!(counts, vec![1, 1, 1]);
        assert!(encode_batches(&[], 1000).is_empty());
        assert!(Batches::new(Vec::new(), 1000).frames().is_empty());
    }

    /// A frame is the same message as the text a long-poll page is made from, cut at the
    /// same places (the event's room does not count against the bound), and its SSE event
    /// is that message with the last sequence number as its id.
    #[test]
    fn frames_carry_the_same_messages_as_text_and_as_sse_events() {
        let entries = mixed_entries();
        let texts = encode_batches(&entries, 1000);
        let frames = Batches::new(entries.clone(), 1000).frames();
        assert_eq!(frames.iter().map(|frame| frame.text().to_string()).collect::<Vec<_>>(), texts);
        for frame in &frames {
            let batch: StreamBatch = serde_json::from_str(frame.text()).unwrap();
            assert_eq!(frame.last_seq, batch.next);
            let event = String::from_utf8(frame.sse_event().to_vec()).unwrap();
            assert_eq!(event, format!("id: {}\ndata: {}\n\n", batch.next, frame.text()));
            assert_eq!(frame.ws_text().as_str(), frame.text());
        }
        let huge = [entry(u64::MAX, 0, b"the largest id")];
        let frame = Batches::new(huge.to_vec(), 1000).next_frame().unwrap();
        assert!(String::from_utf8(frame.sse_event().to_vec()).unwrap().starts_with(&format!("id: {}\n", u64::MAX)));
    }
}
