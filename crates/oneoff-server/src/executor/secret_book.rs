//! The secret book: every secret value the server holds while jobs run, so that each job's
//! output is masked against all of them, not only its own run's.
//!
//! Every job runs as the server's user, so it can read another run's environment
//! (`/proc/PID/environ`, where its secret parameters are) and the server's own (where
//! `ONEOFF_AUDIT_KEY` may be), or the audit key file. The book holds the server's secrets for
//! its whole life and each run's secret values from the moment the run is queued (before any
//! process of it exists) until no run that was queued or running at the same time is left:
//! a run that read a secret may print it until it ends. Each pipe reader compares the book's
//! generation before every read and gives its masker the new values when it changed
//! ([`SecretMasker::set_secrets`] keeps what it holds back), so a value is known to every
//! masker before its run's process can be read.
//!
//! The book is bounded: beyond [`MAX_SECRETS`] values or [`MAX_SECRET_BYTES`] bytes, the
//! values kept for runs that have ended are dropped, oldest first, with a warning in the
//! server log. The values of live runs and of the server are never dropped (live runs are
//! bounded by the queue and concurrency limits).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The most secret values the book keeps, and their most bytes in all, before it drops those
/// of ended runs.
pub const MAX_SECRETS: usize = 4096;
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// Cheap to clone; every clone is the same book.
#[derive(Clone)]
pub struct SecretBook {
    shared: Arc<Shared>,
}

struct Shared {
    /// Read without the lock before every pipe read; changes with the values.
    generation: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    server: Vec<Vec<u8>>,
    /// Counts entries and ends, so "was live at the same time" is a comparison.
    tick: u64,
    live: Vec<LiveEntry>,
    /// Ended runs whose values are kept, oldest end first.
    ended: VecDeque<EndedEntry>,
    values: Arc<Vec<Vec<u8>>>,
}

struct LiveEntry {
    entered: u64,
    secrets: Vec<Vec<u8>>,
}

struct EndedEntry {
    ended: u64,
    secrets: Vec<Vec<u8>>,
}

/// A run's place in the book: its values are in the book while this lives, and stay after it
/// is dropped until every run that was live at the same time has ended.
pub struct BookEntry {
    shared: Arc<Shared>,
    entered: u64,
}

impl SecretBook {
    /// A book that always holds the server's own secret values (empty ones are ignored).
    pub fn new(server_secrets: Vec<Vec<u8>>) -> SecretBook {
        let state = State {
            server: server_secrets.into_iter().filter(|value| !value.is_empty()).collect(),
            ..State::default()
        };
        let shared = Arc::new(Shared { generation: AtomicU64::new(0), state: Mutex::new(state) });
        lock(&shared.state).refresh(&shared.generation);
        SecretBook { shared }
    }

    /// Enters a run (queued or about to run) with its secret values. Every run enters, with or
    /// without secrets: while it lives, the values of runs that end meanwhile are kept.
    pub fn enter(&self, secrets: &[String]) -> BookEntry {
        let mut state = lock(&self.shared.state);
        state.tick += 1;
        let entered = state.tick;
        let secrets = secrets.iter().filter(|value| !value.is_empty()).map(|value| value.as_bytes().to_vec()).collect();
        state.live.push(LiveEntry { entered, secrets });
        state.refresh(&self.shared.generation);
        BookEntry { shared: self.shared.clone(), entered }
    }

    /// The values to mask, when they changed since `seen` (which is then updated).
    pub fn changed_since(&self, seen: &mut u64) -> Option<Arc<Vec<Vec<u8>>>> {
        if self.shared.generation.load(Ordering::Acquire) == *seen {
            return None;
        }
        let state = lock(&self.shared.state);
        *seen = self.shared.generation.load(Ordering::Acquire);
        Some(state.values.clone())
    }
}

impl Drop for BookEntry {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.tick += 1;
        let ended = state.tick;
        if let Some(index) = state.live.iter().position(|entry| entry.entered == self.entered) {
            let entry = state.live.swap_remove(index);
            if !entry.secrets.is_empty() {
                state.ended.push_back(EndedEntry { ended, secrets: entry.secrets });
            }
        }
        state.refresh(&self.shared.generation);
    }
}

impl State {
    /// Drops what no live run can have read, applies the bounds, and publishes the values
    /// (a new generation) when they changed.
    fn refresh(&mut self, generation: &AtomicU64) {
        // A live run that entered before a run ended was live at the same time as it.
        let oldest_live = self.live.iter().map(|entry| entry.entered).min();
        self.ended.retain(|entry| oldest_live.is_some_and(|entered| entered < entry.ended));
        let count = |entries: &mut dyn Iterator<Item = &Vec<Vec<u8>>>| {
            entries.fold((0, 0), |(values, bytes), secrets| {
                (values + secrets.len(), bytes + secrets.iter().map(Vec::len).sum::<usize>())
            })
        };
        let (mut values, mut bytes) = count(
            &mut std::iter::once(&self.server)
                .chain(self.live.iter().map(|entry| &entry.secrets))
                .chain(self.ended.iter().map(|entry| &entry.secrets)),
        );
        while values > MAX_SECRETS || bytes > MAX_SECRET_BYTES {
            let Some(dropped) = self.ended.pop_front() else { break };
            values -= dropped.secrets.len();
            bytes -= dropped.secrets.iter().map(Vec::len).sum::<usize>();
            tracing::warn!(
                values = dropped.secrets.len(),
                max_values = MAX_SECRETS,
                max_bytes = MAX_SECRET_BYTES,
                "the secret book is full: the secret values of an ended run are no longer masked in the output of the runs that were running with it"
            );
        }
        let mut all: Vec<Vec<u8>> = self
            .server
            .iter()
            .chain(self.live.iter().flat_map(|entry| &entry.secrets))
            .chain(self.ended.iter().flat_map(|entry| &entry.secrets))
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        if *self.values != all {
            self.values = Arc::new(all);
            generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The server's own secret values that a job could read: the audit key, from the environment
/// or its key file, as the server uses it (trailing whitespace removed).
pub fn server_secrets(audit: &oneoff_core::AuditConfig) -> Vec<Vec<u8>> {
    let mut secrets = Vec::new();
    if let Some(value) = std::env::var_os(crate::audit_trail::AUDIT_KEY_ENV) {
        secrets.push(value.as_encoded_bytes().trim_ascii_end().to_vec());
    }
    if let Some(bytes) = audit.key_file.as_ref().and_then(|path| std::fs::read(path).ok()) {
        secrets.push(bytes.trim_ascii_end().to_vec());
    }
    secrets.retain(|value| !value.is_empty());
    secrets
}

fn lock(mutex: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves the state consistent enough to go on masking.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(book: &SecretBook) -> Vec<String> {
        let mut seen = u64::MAX;
        let values = book.changed_since(&mut seen).unwrap_or_default();
        values.iter().map(|value| String::from_utf8_lossy(value).into_owned()).collect()
    }

    #[test]
    fn holds_the_server_secrets_always_and_a_run_secret_while_an_overlapping_run_lives() {
        let book = SecretBook::new(vec![b"server-key-123".to_vec(), Vec::new()]);
        assert_eq!(values(&book), ["server-key-123"]);
        let first = book.enter(&["alice-token".to_string()]);
        let second = book.enter(&[]);
        assert_eq!(values(&book), ["alice-token", "server-key-123"]);
        drop(first);
        assert_eq!(values(&book), ["alice-token", "server-key-123"], "the second run may have read it");
        let later = book.enter(&["carol-token".to_string()]);
        drop(second);
        // `later` entered after `first` ended, so it cannot have read its environment.
        assert_eq!(values(&book), ["carol-token", "server-key-123"]);
        drop(later);
        assert_eq!(values(&book), ["server-key-123"]);
    }

    #[test]
    fn the_generation_changes_only_with_the_values() {
        let book = SecretBook::new(Vec::new());
        let mut seen = 0;
        assert!(book.changed_since(&mut seen).is_none());
        let quiet = book.enter(&[]);
        assert!(book.changed_since(&mut seen).is_none(), "a run without secrets changes nothing");
        let loud = book.enter(&["bob-token".to_string()]);
        assert_eq!(book.changed_since(&mut seen).map(|values| values.len()), Some(1));
        assert!(book.changed_since(&mut seen).is_none());
        drop((quiet, loud));
        assert_eq!(book.changed_since(&mut seen).map(|values| values.len()), Some(0));
    }

    #[test]
    fn beyond_its_bounds_it_drops_the_oldest_ended_runs_never_live_ones() {
        let book = SecretBook::new(Vec::new());
        let long_run = book.enter(&["long-running".to_string()]);
        for index in 0..MAX_SECRETS + 10 {
            drop(book.enter(&[format!("ended-{index:05}")]));
        }
        let kept = values(&book);
        assert_eq!(kept.len(), MAX_SECRETS);
        assert!(kept.contains(&"long-running".to_string()));
        assert!(!kept.contains(&"ended-00000".to_string()), "the oldest ended run went first");
        assert!(kept.contains(&format!("ended-{:05}", MAX_SECRETS + 9)));
        let big = "x".repeat(MAX_SECRET_BYTES);
        let huge_live = book.enter(std::slice::from_ref(&big));
        assert!(values(&book).contains(&big), "a live run's value is never dropped");
        drop((long_run, huge_live));
        assert!(values(&book).is_empty());
    }
}
