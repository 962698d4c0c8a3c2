//! Masking secret values in a child's output, on the byte stream, before it is cut into lines.
//!
//! A job can print a secret in pieces: two writes a second apart (the first stored by the
//! partial-line flush before the second arrives), a line longer than `max_line_bytes` cut
//! through the secret, or a value that holds newlines (a PEM key). Masking each stored line
//! would leave every piece in clear, so [`SecretMasker`] works on the stream itself, per pipe:
//! it passes on every byte that can no longer be part of a secret and holds back only a tail
//! that could still be the start of one, never more than the longest secret's length minus
//! one byte. Every byte that belongs to an occurrence of a secret is replaced, overlapping
//! occurrences included, and each run of such bytes becomes one [`MASK`]. What the job
//! transforms (base64, URL-encoding, a secret printed backwards) is not recognised.

/// What a secret's occurrence is replaced with in the log.
pub const MASK: &[u8] = b"********";

/// The shortest secret value accepted, in characters. A shorter value would be masked wherever
/// those few characters happen to occur, which mangles the log and, through the pattern of
/// masks, gives the secret away.
pub const MIN_SECRET_CHARS: usize = 4;

/// Why a secret value cannot be masked sensibly, as a message for the user (no field name);
/// `None` when it can. An empty value has nothing to mask and is accepted.
pub fn unmaskable_secret(value: &str) -> Option<String> {
    let length = value.chars().count();
    if length == 0 {
        return None;
    }
    if length < MIN_SECRET_CHARS {
        return Some(format!(
            "must be at least {MIN_SECRET_CHARS} characters (got {length}): a shorter secret would be masked \
             wherever those characters occur in the log"
        ));
    }
    if value.bytes().all(|byte| byte == b'*') {
        return Some("must not be only `*` characters: the log shows masked secrets as `********`".to_string());
    }
    None
}

/// Replaces secrets in one byte stream fed in chunks. Pure: the caller reads the pipe, calls
/// [`SecretMasker::push`] for every chunk and [`SecretMasker::finish`] at the end of the stream.
#[derive(Clone)]
pub struct SecretMasker {
    secrets: Vec<Vec<u8>>,
    longest: usize,
    /// The distinct first bytes of the secrets: every other byte is passed on at a glance.
    first_bytes: Vec<u8>,
    /// Bytes not passed on yet: a tail that could still be the start of a secret.
    held: Vec<u8>,
    /// How many bytes from the next one to pass on belong to an occurrence already found.
    masked_ahead: usize,
    /// The last byte passed on was masked: a run of masked bytes gets one marker, even when
    /// it is passed on in several pieces.
    in_mask: bool,
}

impl SecretMasker {
    /// A masker for these values; empty ones are ignored.
    pub fn new<S: AsRef<[u8]>>(secrets: impl IntoIterator<Item = S>) -> SecretMasker {
        let mut masker = SecretMasker {
            secrets: Vec::new(),
            longest: 0,
            first_bytes: Vec::new(),
            held: Vec::new(),
            masked_ahead: 0,
            in_mask: false,
        };
        masker.replace_secrets(secrets);
        masker
    }

    /// Masks these values from now on, instead of the current ones; appends to `out` what
    /// that releases. Nothing held back is lost: the held tail is examined again with the new
    /// values, so an occurrence of one that starts in it is masked, and afterwards the
    /// hold-back rule holds for the new values. An occurrence that started before the held
    /// tail was passed on already, and bytes already found to be part of an occurrence of an
    /// old value are still masked.
    pub fn set_secrets<S: AsRef<[u8]>>(&mut self, secrets: impl IntoIterator<Item = S>, out: &mut Vec<u8>) {
        self.replace_secrets(secrets);
        let data = std::mem::take(&mut self.held);
        self.pass_on(&data, self.first_possible_start(&data), out);
    }

    fn replace_secrets<S: AsRef<[u8]>>(&mut self, secrets: impl IntoIterator<Item = S>) {
        let mut secrets: Vec<Vec<u8>> =
            secrets.into_iter().map(|secret| secret.as_ref().to_vec()).filter(|secret| !secret.is_empty()).collect();
        secrets.sort();
        secrets.dedup();
        let mut first_bytes: Vec<u8> = secrets.iter().map(|secret| secret[0]).collect();
        first_bytes.dedup(); // sorted secrets: equal first bytes are neighbours
        self.longest = secrets.iter().map(Vec::len).max().unwrap_or(0);
        self.secrets = secrets;
        self.first_bytes = first_bytes;
    }

    /// Feeds the next chunk of the stream; appends to `out` every byte that is now safe to
    /// pass on, secrets replaced. Afterwards at most the longest secret's length minus one
    /// byte is held back, and only while it could still be the start of a secret.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.secrets.is_empty() && self.held.is_empty() && self.masked_ahead == 0 {
            out.extend_from_slice(chunk);
            self.in_mask &= chunk.is_empty();
        } else if self.held.is_empty() {
            self.pass_on(chunk, self.first_possible_start(chunk), out);
        } else {
            let mut data = std::mem::take(&mut self.held);
            data.extend_from_slice(chunk);
            self.pass_on(&data, self.first_possible_start(&data), out);
        }
    }

    /// The stream has ended: nothing held back can become a secret any more, so it is passed on.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let data = std::mem::take(&mut self.held);
        self.pass_on(&data, data.len(), out);
    }

    /// How many bytes are held back, waiting for the next chunk.
    pub fn held_bytes(&self) -> usize {
        self.held.len()
    }

    /// The first position of `data` whose rest is a proper prefix of a secret (the rest could
    /// still become that secret), or `data.len()`. Only the last `longest - 1` positions can be.
    fn first_possible_start(&self, data: &[u8]) -> usize {
        let len = data.len();
        let window = self.longest.saturating_sub(1).min(len);
        (len - window..len)
            .find(|&start| {
                let rest = &data[start..];
                self.secrets.iter().any(|secret| secret.len() > rest.len() && secret.starts_with(rest))
            })
            .unwrap_or(len)
    }

    /// Passes on `data[..end]` and holds the rest. Every occurrence that starts before `end`
    /// is complete in `data` (else its start would be a possible start, and `end` no later).
    fn pass_on(&mut self, data: &[u8], end: usize, out: &mut Vec<u8>) {
        let mut position = 0;
        while position < end {
            if self.masked_ahead == 0 {
                let clear_until = self.next_first_byte(&data[position..end]).map_or(end, |offset| position + offset);
                if clear_until > position {
                    out.extend_from_slice(&data[position..clear_until]);
                    self.in_mask = false;
                    position = clear_until;
                    continue;
                }
            }
            let rest = &data[position..];
            let found = self.secrets.iter().filter(|secret| rest.starts_with(secret)).map(Vec::len).max();
            self.masked_ahead = self.masked_ahead.max(found.unwrap_or(0));
            if self.masked_ahead > 0 {
                if !self.in_mask {
                    out.extend_from_slice(MASK);
                    self.in_mask = true;
                }
                self.masked_ahead -= 1;
            } else {
                out.push(data[position]);
                self.in_mask = false;
            }
            position += 1;
        }
        self.held.clear();
        self.held.extend_from_slice(&data[end..]);
    }

    /// Where the next byte that starts a secret is: the scan every byte of output goes through.
    fn next_first_byte(&self, data: &[u8]) -> Option<usize> {
        match self.first_bytes[..] {
            [one] => memchr::memchr(one, data),
            [one, two] => memchr::memchr2(one, two, data),
            [one, two, three] => memchr::memchr3(one, two, three, data),
            _ => data.iter().position(|byte| self.first_bytes.contains(byte)),
        }
    }
}

impl std::fmt::Debug for SecretMasker {
    /// Never shows the secrets, nor the bytes held back (they may be the start of one).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretMasker")
            .field("secrets", &self.secrets.len())
            .field("held_bytes", &self.held.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole stream at once, by another method: mark every byte inside any occurrence of
    /// any secret, then replace each run of marked bytes with one mask.
    fn reference(input: &[u8], secrets: &[&[u8]]) -> Vec<u8> {
        reference_changing(input, secrets, secrets, 0)
    }

    /// The hold-back rule: fewer bytes than the longest secret, and only the start of one.
    fn assert_holds_only_a_secret_start(masker: &SecretMasker, secrets: &[&[u8]]) {
        let longest = secrets.iter().map(|secret| secret.len()).max().unwrap_or(0);
        assert!(masker.held_bytes() < longest.max(1), "held {} bytes for secrets of {longest}", masker.held_bytes());
        let held = &masker.held;
        assert!(
            held.is_empty() || secrets.iter().any(|secret| secret.len() > held.len() && secret.starts_with(held)),
            "held {held:?}, which cannot be the start of a secret of {secrets:?}"
        );
    }

    /// Streams `chunks` through a masker, checking the hold-back bound after every chunk.
    fn stream(secrets: &[&[u8]], chunks: &[&[u8]]) -> Vec<u8> {
        let mut masker = SecretMasker::new(secrets);
        let mut out = Vec::new();
        for chunk in chunks {
            masker.push(chunk, &mut out);
            assert_holds_only_a_secret_start(&masker, secrets);
        }
        masker.finish(&mut out);
        assert_eq!(masker.held_bytes(), 0);
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|window| window == needle)
    }

    /// Every way to cut `input` into one, two or three chunks gives the reference's output.
    fn check_every_split(input: &[u8], secrets: &[&[u8]]) {
        let expected = reference(input, secrets);
        for first in 0..=input.len() {
            for second in first..=input.len() {
                let chunks = [&input[..first], &input[first..second], &input[second..]];
                assert_eq!(stream(secrets, &chunks), expected, "{input:?} cut at {first} and {second}");
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(stream(secrets, &bytes), expected, "byte by byte");
    }

    #[test]
    fn a_secret_in_pieces_is_masked_wherever_it_is_cut() {
        let secret: &[u8] = b"S3cr3tT0ken-abcdefXYZ";
        let input = b"A:S3cr3tT0ken-abcdefXYZ:B\nxS3cr3tT0ken-abcdefXYZS3cr3tT0ken-abcdefXYZ\n";
        check_every_split(input, &[secret]);
        assert_eq!(reference(input, &[secret]), b"A:********:B\nx********\n");
    }

    #[test]
    fn a_multi_line_secret_is_masked_as_a_whole() {
        let pem: &[u8] = b"-----BEGIN KEY-----\r\nMIIBOg\nAAJB\n-----END KEY-----";
        let input = b"key:\n-----BEGIN KEY-----\r\nMIIBOg\nAAJB\n-----END KEY-----\ndone\n-----BEGIN KEY-----\n";
        check_every_split(input, &[pem]);
        assert_eq!(stream(&[pem], &[input]), b"key:\n********\ndone\n-----BEGIN KEY-----\n");
    }

    #[test]
    fn overlapping_and_nested_secrets_leave_no_piece_in_clear() {
        let secrets: &[&[u8]] = &[b"abcd", b"cdef", b"abcdefgh", b"abab"];
        for input in [&b"xxabcdefyy"[..], b"abcdefgh", b"abcdefg", b"abababab", b"aabcdabcdefghh", b"ab", b"cdcdef"] {
            check_every_split(input, secrets);
        }
        assert_eq!(reference(b"xxabcdefyy", secrets), b"xx********yy");
        assert_eq!(reference(b"abababa", secrets), b"********a");
    }

    #[test]
    fn a_secret_that_is_a_prefix_of_another_is_masked_either_way() {
        let secrets: &[&[u8]] = &[b"token", b"token-long"];
        assert_eq!(stream(secrets, &[b"a token-lo", b"ng b token-x"]), b"a ******** b ********-x");
        check_every_split(b"a token-long b token-x token", secrets);
    }

    /// A tiny deterministic generator (xorshift), so a failure is the same on every machine.
    struct Random(u64);

    impl Random {
        fn below(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % bound as u64) as usize
        }

        fn bytes(&mut self, alphabet: &[u8], max_len: usize) -> Vec<u8> {
            let len = 1 + self.below(max_len);
            (0..len).map(|_| alphabet[self.below(alphabet.len())]).collect()
        }
    }

    #[test]
    fn random_streams_match_the_reference_and_never_show_a_secret() {
        // A small alphabet makes near misses, overlaps and repeats frequent.
        let alphabet = b"ab\n\r";
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let count = 1 + random.below(3);
            let owned: Vec<Vec<u8>> = (0..count).map(|_| random.bytes(alphabet, 5)).collect();
            let secrets: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            let input = random.bytes(alphabet, 40);
            let mut chunks = Vec::new();
            let mut rest = input.as_slice();
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(1 + random.below(rest.len()));
                chunks.push(chunk);
                rest = tail;
            }
            let masked = stream(&secrets, &chunks);
            assert_eq!(masked, reference(&input, &secrets), "input {input:?}, secrets {secrets:?}, chunks {chunks:?}");
            for secret in &secrets {
                assert!(!contains(&masked, secret), "{secret:?} shown in {masked:?}");
            }
        }
    }

    /// What a stream masked with `before` until `boundary` bytes were passed on, then with
    /// `after`, must give: an occurrence is masked when it starts before the boundary and is
    /// of a `before` value, or starts at or after it and is of an `after` value.
    fn reference_changing(input: &[u8], before: &[&[u8]], after: &[&[u8]], boundary: usize) -> Vec<u8> {
        let mut marked = vec![false; input.len()];
        for start in 0..input.len() {
            let values = if start < boundary { before } else { after };
            for secret in values.iter().filter(|secret| !secret.is_empty()) {
                if input[start..].starts_with(secret) {
                    marked[start..start + secret.len()].iter_mut().for_each(|mark| *mark = true);
                }
            }
        }
        let mut out = Vec::new();
        for (index, &byte) in input.iter().enumerate() {
            match (marked[index], index > 0 && marked[index - 1]) {
                (false, _) => out.push(byte),
                (true, false) => out.extend_from_slice(MASK),
                (true, true) => {}
            }
        }
        out
    }

    /// Streams `chunks`, switching from `before` to `after` once `switch_after` chunks were
    /// pushed; checks the hold-back rule for the set in force after every step. Returns the
    /// output and how many bytes had been passed on (not held) at the switch.
    fn stream_changing(before: &[&[u8]], after: &[&[u8]], chunks: &[&[u8]], switch_after: usize) -> (Vec<u8>, usize) {
        let check = assert_holds_only_a_secret_start;
        let mut masker = SecretMasker::new(before);
        let mut out = Vec::new();
        let mut pushed = 0;
        let mut boundary = 0;
        for (index, chunk) in chunks.iter().enumerate() {
            if index == switch_after {
                boundary = pushed - masker.held_bytes();
                masker.set_secrets(after, &mut out);
                check(&masker, after);
            }
            masker.push(chunk, &mut out);
            pushed += chunk.len();
            check(&masker, if index >= switch_after { after } else { before });
        }
        if switch_after >= chunks.len() {
            boundary = pushed - masker.held_bytes();
            masker.set_secrets(after, &mut out);
            check(&masker, after);
        }
        masker.finish(&mut out);
        assert_eq!(masker.held_bytes(), 0);
        (out, boundary)
    }

    #[test]
    fn a_secret_added_while_its_start_is_held_is_masked() {
        // "S3c" is held as a possible start of the old secret "S3cX"; the new one catches it.
        let (out, boundary) = stream_changing(&[b"S3cX"], &[b"S3cX", b"S3cr3t"], &[b"key=S3c", b"r3t done"], 1);
        assert_eq!((out.as_slice(), boundary), (&b"key=******** done"[..], 4));
        // Nothing was held: what was passed on stays passed on, the rest is masked.
        let (out, _) = stream_changing(&[], &[b"S3cr3t"], &[b"key=S3", b"cr3t S3cr3t"], 1);
        assert_eq!(out, b"key=S3cr3t ********");
    }

    #[test]
    fn a_secret_removed_while_held_releases_the_held_bytes() {
        let mut masker = SecretMasker::new(["S3cr3t"]);
        let mut out = Vec::new();
        masker.push(b"a S3cr", &mut out);
        assert_eq!((out.as_slice(), masker.held_bytes()), (&b"a "[..], 4));
        masker.set_secrets(Vec::<&[u8]>::new(), &mut out);
        assert_eq!((out.as_slice(), masker.held_bytes()), (&b"a S3cr"[..], 0), "released at once, none lost");
        masker.push(b"3t", &mut out);
        assert_eq!(out, b"a S3cr3t");
    }

    #[test]
    fn an_occurrence_found_before_a_change_is_masked_to_its_end() {
        // "abcd" is found while "cd" is held (it could start "cdxy"); after the change to no
        // secrets at all, "cd" is still masked.
        let mut masker = SecretMasker::new(["abcd", "cdxy"]);
        let mut out = Vec::new();
        masker.push(b"xabcd", &mut out);
        assert_eq!((out.as_slice(), masker.held_bytes()), (&b"x********"[..], 2));
        masker.set_secrets(Vec::<&[u8]>::new(), &mut out);
        masker.push(b"ey", &mut out);
        masker.finish(&mut out);
        assert_eq!(out, b"x********ey");
    }

    #[test]
    fn random_changes_of_the_secrets_match_the_reference() {
        let alphabet = b"ab\n";
        let mut random = Random(0x2545_f491_4f6c_dd1d);
        for _ in 0..20000 {
            let mut values = || {
                let count = random.below(4);
                (0..count).map(|_| random.bytes(alphabet, 5)).collect::<Vec<Vec<u8>>>()
            };
            let (before_owned, after_owned) = (values(), values());
            let before: Vec<&[u8]> = before_owned.iter().map(Vec::as_slice).collect();
            let after: Vec<&[u8]> = after_owned.iter().map(Vec::as_slice).collect();
            let input = random.bytes(alphabet, 30);
            let mut chunks = Vec::new();
            let mut rest = input.as_slice();
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(1 + random.below(rest.len()));
                chunks.push(chunk);
                rest = tail;
            }
            let switch_after = random.below(chunks.len() + 1);
            let (masked, boundary) = stream_changing(&before, &after, &chunks, switch_after);
            assert_eq!(
                masked,
                reference_changing(&input, &before, &after, boundary),
                "input {input:?}, before {before:?}, after {after:?}, chunks {chunks:?}, switch after {switch_after}"
            );
        }
    }

    #[test]
    fn adding_secrets_at_every_point_never_shows_one_that_starts_after_it() {
        let input: &[u8] = b"id=S3cr3tT0ken;pw=hunter22;again S3cr3tT0ken";
        let (before, after): (&[&[u8]], &[&[u8]]) = (&[b"hunter22"], &[b"hunter22", b"S3cr3tT0ken"]);
        for first in 0..=input.len() {
            for second in first..=input.len() {
                let chunks = [&input[..first], &input[first..second], &input[second..]];
                for switch_after in 0..=chunks.len() {
                    let (masked, boundary) = stream_changing(before, after, &chunks, switch_after);
                    assert_eq!(masked, reference_changing(input, before, after, boundary));
                    assert!(!contains(&masked, b"hunter22"), "{masked:?}");
                }
            }
        }
    }

    #[test]
    fn a_possible_start_is_held_only_until_it_is_ruled_out() {
        let mut masker = SecretMasker::new(["S3cr3tT0ken"]);
        let mut out = Vec::new();
        masker.push(b"progress 50% S3c", &mut out);
        assert_eq!(out, b"progress 50% ");
        assert_eq!(masker.held_bytes(), 3);
        masker.push(b"x", &mut out);
        assert_eq!(out, b"progress 50% S3cx", "released as soon as it cannot be the secret");
        masker.push(b" S3", &mut out);
        masker.finish(&mut out);
        assert_eq!(out, b"progress 50% S3cx S3", "and at the end of the stream");
    }

    #[test]
    fn without_secrets_bytes_pass_through_unchanged() {
        let data: Vec<u8> = (0u8..=255).collect();
        assert_eq!(stream(&[], &[&data, b"\n"]), [data.as_slice(), b"\n"].concat());
        let mut masker = SecretMasker::new(["", ""]);
        let mut out = Vec::new();
        masker.push(b"abc", &mut out);
        assert_eq!((out.as_slice(), masker.held_bytes()), (&b"abc"[..], 0));
    }

    #[test]
    fn masks_every_occurrence_with_one_marker_each() {
        let secrets: &[&[u8]] = &[b"hunter2"];
        assert_eq!(stream(secrets, &[b"pw=hunter2 again hunter2hunter2"]), b"pw=******** again ********");
    }

    #[test]
    fn debug_shows_neither_secrets_nor_held_bytes() {
        let mut masker = SecretMasker::new(["hunter2"]);
        masker.push(b"hunt", &mut Vec::new());
        let shown = format!("{masker:?}");
        assert!(!shown.contains("hunt"), "{shown}");
    }

    #[test]
    fn refuses_secrets_that_cannot_be_masked_sensibly() {
        assert_eq!(unmaskable_secret(""), None);
        assert_eq!(unmaskable_secret("abcd"), None);
        assert_eq!(unmaskable_secret("é€ü😀"), None, "length counts characters");
        assert!(unmaskable_secret("abc")
            .is_some_and(|message| message.starts_with("must be at least 4 characters (got 3)")));
        assert!(unmaskable_secret("****").is_some_and(|message| message.contains("only `*`")));
    }
}
