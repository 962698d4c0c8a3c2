//! Repeated denials, summarised: the first refusal of a caller for an action (and job) in a
//! window is recorded in full; the ones after it in that window are only counted, and the
//! count is recorded as one summary record when the book is flushed. A caller who is refused
//! 5,000 times a second costs the database a few records a window, and the trail still says
//! who was refused what, how often, and from where last.
//!
//! The book is bounded: when more callers are open than it holds, the oldest window is
//! closed (its count flushed) to make room. It does no IO; the server owns the clock.

use std::collections::HashMap;

use super::{AuditAction, AuditEntry, Denial};

/// What makes denials "the same": who, what, on which job. Not the run id or the client
/// address, which a caller can vary at will.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DenialKey {
    pub actor: String,
    pub denial: Denial,
    pub job: Option<String>,
}

/// What to do with a denial just noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// The first in its window: record it in full.
    Record,
    /// Counted; it will be part of a summary record.
    Counted,
}

/// Denials counted but not yet recorded: the content of one summary record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatedDenials {
    pub key: DenialKey,
    pub repeats: u64,
    pub first_us: i64,
    pub last_us: i64,
    pub source: String,
    pub last_client: String,
    pub last_run_id: Option<i64>,
}

#[derive(Debug)]
struct Window {
    started_us: i64,
    pending: Option<RepeatedDenials>,
}

/// The open windows, one per [`DenialKey`].
#[derive(Debug)]
pub struct DenialBook {
    window_us: i64,
    max_open: usize,
    open: HashMap<DenialKey, Window>,
}

/// One denial as the book sees it.
#[derive(Debug, Clone)]
pub struct Denied<'a> {
    pub key: DenialKey,
    pub at_us: i64,
    pub source: &'a str,
    pub client: &'a str,
    pub run_id: Option<i64>,
}

impl DenialBook {
    pub fn new(window_us: i64, max_open: usize) -> DenialBook {
        DenialBook { window_us: window_us.max(1), max_open: max_open.max(1), open: HashMap::new() }
    }

    /// Notes a denial. Returns whether to record it now, and the counts of windows it
    /// closed (its own, expired, or the oldest one, to make room), to record first.
    pub fn note(&mut self, denied: Denied<'_>) -> (Noted, Vec<RepeatedDenials>) {
        let mut closed = Vec::new();
        if let Some(window) = self.open.get_mut(&denied.key) {
            if denied.at_us < window.started_us.saturating_add(self.window_us) {
                let pending = window.pending.get_or_insert_with(|| RepeatedDenials {
                    key: denied.key.clone(),
                    repeats: 0,
                    first_us: denied.at_us,
                    last_us: denied.at_us,
                    source: String::new(),
                    last_client: String::new(),
                    last_run_id: None,
                });
                pending.repeats += 1;
                pending.last_us = denied.at_us;
                pending.source = denied.source.to_string();
                pending.last_client = denied.client.to_string();
                pending.last_run_id = denied.run_id;
                return (Noted::Counted, closed);
            }
            closed.extend(self.open.remove(&denied.key).and_then(|window| window.pending));
        } else if self.open.len() >= self.max_open {
            let oldest = self.open.iter().min_by_key(|(_, window)| window.started_us).map(|(key, _)| key.clone());
            closed.extend(oldest.and_then(|key| self.open.remove(&key)).and_then(|window| window.pending));
        }
        self.open.insert(denied.key, Window { started_us: denied.at_us, pending: None });
        (Noted::Record, closed)
    }

    /// Takes every count not yet recorded; windows that have ended are closed, the others
    /// stay open (their next denials are counted again).
    pub fn flush(&mut self, now_us: i64) -> Vec<RepeatedDenials> {
        let window_us = self.window_us;
        let mut flushed: Vec<RepeatedDenials> =
            self.open.values_mut().filter_map(|window| window.pending.take()).collect();
        self.open.retain(|_, window| now_us < window.started_us.saturating_add(window_us));
        flushed.sort_by_key(|repeated| repeated.first_us);
        flushed
    }

    /// Open windows (for tests and metrics).
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }
}

impl RepeatedDenials {
    /// The summary record, made at `at_us`.
    pub fn entry(&self, at_us: i64) -> AuditEntry {
        let action = AuditAction::Denied(self.key.denial);
        let seconds = (self.last_us - self.first_us).max(0) / 1_000_000;
        let message = format!(
            "{}: {} more attempts in {seconds} s, summarised",
            self.key.denial.sentence(&self.key.actor, self.key.job.as_deref()),
            self.repeats
        );
        let last_run = self.last_run_id.map_or("null".to_string(), |run| run.to_string());
        AuditEntry {
            at_us,
            actor: self.key.actor.clone(),
            source: self.source.clone(),
            client: self.last_client.clone(),
            action,
            message,
            job: self.key.job.clone(),
            run_id: self.last_run_id,
            detail: format!(
                r#"{{"repeated":{},"first_at_us":{},"last_at_us":{},"last_run_id":{last_run}}}"#,
                self.repeats, self.first_us, self.last_us
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(actor: &str, at_us: i64) -> Denied<'static> {
        Denied {
            key: DenialKey { actor: actor.into(), denial: Denial::Cancel, job: Some("backfill".into()) },
            at_us,
            source: "trusted_headers",
            client: "127.0.0.1",
            run_id: Some(at_us),
        }
    }

    #[test]
    fn repeats_in_a_window_are_counted_and_flushed_once() {
        let mut book = DenialBook::new(60, 100);
        assert_eq!(book.note(denied("carol", 0)), (Noted::Record, vec![]));
        for at in 1..60 {
            assert_eq!(book.note(denied("carol", at)).0, Noted::Counted);
        }
        assert_eq!(book.note(denied("dave", 5)).0, Noted::Record, "another caller has its own window");
        let flushed = book.flush(30);
        assert_eq!(flushed.len(), 1);
        assert_eq!((flushed[0].repeats, flushed[0].first_us, flushed[0].last_us), (59, 1, 59));
        assert_eq!(flushed[0].last_run_id, Some(59));
        assert!(book.flush(31).is_empty(), "a count is recorded once");
        assert_eq!(book.note(denied("carol", 61)).0, Noted::Record, "a new window records in full again");
        let entry = flushed[0].entry(100);
        assert_eq!(entry.action.code(), "denied.cancel");
        assert!(entry.message.contains("carol may not cancel job `backfill`: 59 more attempts"), "{}", entry.message);
        assert!(entry.detail.contains(r#""repeated":59"#), "{}", entry.detail);
    }

    #[test]
    fn a_full_book_closes_its_oldest_window() {
        let mut book = DenialBook::new(1000, 2);
        book.note(denied("a", 0));
        book.note(denied("a", 1));
        book.note(denied("b", 2));
        let (noted, closed) = book.note(denied("c", 3));
        assert_eq!(noted, Noted::Record);
        assert_eq!(
            closed.iter().map(|repeated| (repeated.key.actor.as_str(), repeated.repeats)).collect::<Vec<_>>(),
            vec![("a", 1)]
        );
        assert_eq!(book.open_windows(), 2);
        assert!(book.flush(5000).is_empty());
        assert_eq!(book.open_windows(), 0, "ended windows close on flush");
    }
}
