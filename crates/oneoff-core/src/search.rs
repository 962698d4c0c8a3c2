//! Searching a log as its reader sees it: a line's text without its terminal escape sequences
//! (colours, titles, cursor moves) and control characters, matched without regard to case.
//!
//! The rules follow the web UI's renderer (`web/ansi.js`): a CSI sequence ends at its final
//! byte, an OSC/DCS/APC/PM string at BEL or `ESC \`, a charset selection after three bytes,
//! any other escape after two; every other control character but the tab is dropped. So a
//! query finds `error` in `\x1b[31mERROR\x1b[0m`, and never matches inside an escape.

use std::borrow::Cow;

use memchr::memmem;

/// The longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 1000;

/// A case-insensitive substring query over lines' visible text.
pub struct LineMatcher {
    finder: memmem::Finder<'static>,
    /// The visible, lower-cased text of the line last tested (reused between lines).
    scratch: String,
}

impl LineMatcher {
    /// `None` for a query with no visible text (empty, or only escapes and controls).
    pub fn new(query: &str) -> Option<LineMatcher> {
        let mut needle = String::new();
        push_visible_lowercase(query, &mut needle);
        if needle.is_empty() {
            return None;
        }
        Some(LineMatcher { finder: memmem::Finder::new(needle.as_bytes()).into_owned(), scratch: String::new() })
    }

    /// Whether the line's visible text (its bytes read as UTF-8, invalid bytes as U+FFFD,
    /// as the API shows them) contains the query, ignoring case.
    pub fn matches(&mut self, line: &[u8]) -> bool {
        let text: Cow<'_, str> = String::from_utf8_lossy(line);
        self.scratch.clear();
        push_visible_lowercase(&text, &mut self.scratch);
        self.finder.find(self.scratch.as_bytes()).is_some()
    }
}

/// The visible text of a line: escape sequences and control characters (but tabs) removed.
pub fn visible_text(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    walk_visible(line, |piece| out.push_str(piece));
    out
}

fn push_visible_lowercase(text: &str, out: &mut String) {
    walk_visible(text, |piece| {
        if piece.is_ascii() {
            out.extend(piece.bytes().map(|byte| char::from(byte.to_ascii_lowercase())));
        } else {
            out.extend(piece.chars().flat_map(char::to_lowercase));
        }
    });
}

/// Calls `visit` with each run of visible text of `text`, in order.
fn walk_visible(text: &str, mut visit: impl FnMut(&str)) {
    const ESC: char = '\u{1b}';
    let bytes = text.as_bytes();
    let mut chars = text.char_indices().peekable();
    let mut start = 0;
    while let Some((index, c)) = chars.next() {
        let control = (c < ' ' && c != '\t') || ('\u{7f}'..='\u{9f}').contains(&c);
        if !control {
            continue;
        }
        if index > start {
            visit(&text[start..index]);
        }
        let mut end = index + c.len_utf8();
        if c == ESC {
            end = escape_end(bytes, index);
            while chars.peek().is_some_and(|&(next, _)| next < end) {
                chars.next();
            }
        }
        start = end;
    }
    if start < text.len() {
        visit(&text[start..]);
    }
}

/// Where the escape sequence starting at `bytes[esc]` (an ESC) ends, as `web/ansi.js` reads it.
fn escape_end(bytes: &[u8], esc: usize) -> usize {
    let n = bytes.len();
    let Some(&next) = bytes.get(esc + 1) else { return n };
    match next {
        b'[' => {
            let mut j = esc + 2;
            while j < n && (0x30..=0x3f).contains(&bytes[j]) {
                j += 1;
            }
            while j < n && (0x20..=0x2f).contains(&bytes[j]) {
                j += 1;
            }
            if j < n && (0x40..=0x7e).contains(&bytes[j]) {
                j + 1
            } else {
                j
            }
        }
        b']' | b'P' | b'_' | b'^' => {
            let mut j = esc + 2;
            while j < n {
                if bytes[j] == 0x07 {
                    return j + 1;
                }
                if bytes[j] == 0x1b && bytes.get(j + 1) == Some(&b'\\') {
                    return j + 2;
                }
                j += 1;
            }
            n
        }
        b'(' | b')' | b'*' | b'+' | b'#' | b'%' => next_boundary(bytes, esc + 3),
        _ => next_boundary(bytes, esc + 2),
    }
}

/// `at`, or the start of the character it falls inside (a multi-byte character after an ESC
/// is not cut: it is dropped whole with the sequence).
fn next_boundary(bytes: &[u8], at: usize) -> usize {
    let mut at = at.min(bytes.len());
    while at < bytes.len() && (bytes[at] & 0xc0) == 0x80 {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finds(query: &str, line: &str) -> bool {
        LineMatcher::new(query).expect("a query").matches(line.as_bytes())
    }

    #[test]
    fn matching_ignores_case_and_escapes() {
        assert!(finds("error", "\x1b[1;31mERROR\x1b[0m: disk full"));
        assert!(finds("ERR", "an \x1b[31merr\x1b[0mor"), "colours inside the word do not split it");
        assert!(finds("disk full", "\x1b]0;title\x07disk FULL"));
        assert!(finds("ÉTÉ", "l'été"), "non-ASCII letters too");
        assert!(finds("a\tb", "A\tB"), "tabs are text");
        assert!(!finds("31m", "\x1b[31mred"), "never inside an escape sequence");
        assert!(!finds("title", "\x1b]0;title\x1b\\text"), "nor inside an OSC string");
        assert!(!finds("xyz", "abc"));
        assert!(finds("ab", "a\x07b\x7f"), "control characters are dropped");
    }

    #[test]
    fn visible_text_drops_what_a_terminal_does_not_show() {
        assert_eq!(visible_text("\x1b[31mred\x1b[0m \x1b(Bplain\x1b7 x\x1b"), "red plain x");
        assert_eq!(visible_text("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"), "link");
        assert_eq!(visible_text("\x1b[unterminated"), "nterminated", "a malformed CSI drops what was read");
        assert_eq!(visible_text("\x1b\u{e9}t\u{e9}"), "t\u{e9}", "a multi-byte character is never cut");
        assert_eq!(visible_text("\u{1b}]unterminated osc"), "");
    }

    #[test]
    fn a_query_needs_visible_text_and_invalid_bytes_do_not_panic() {
        assert!(LineMatcher::new("").is_none());
        assert!(LineMatcher::new("\x1b[0m").is_none());
        let mut matcher = LineMatcher::new("ok").unwrap();
        assert!(matcher.matches(&[0xff, b'O', b'K', 0xc3]));
        assert!(!matcher.matches(&[0x1b, b'[', b'O', b'K']));
    }
}
