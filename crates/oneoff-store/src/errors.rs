//! How many calls of the store failed, by kind of error, for the server's metrics.
//!
//! Every public call of [`crate::Store`] goes through `dispatch!`, which counts its error
//! here, so no error path of either backend can be missed. A count is one relaxed atomic add
//! on an error and nothing on success: the log writer's group commits stay as cheap as
//! before. Answers that are no fault (a run that does not exist, a full queue) are not counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::StoreError;

/// Every kind [`StoreError::kind`] names, in the order [`ErrorCounts::snapshot`] lists them.
pub const ERROR_KINDS: [&str; 11] = [
    "full",
    "read_only",
    "damaged",
    "io",
    "access",
    "unavailable",
    "tls",
    "database",
    "migrate",
    "corrupt",
    "sequence",
];

impl StoreError {
    /// A short name of the kind of this error (`full`, `unavailable`, …), for the `kind` label
    /// of `oneoff_store_errors_total`; `None` for answers that are no fault.
    pub fn kind(&self) -> Option<&'static str> {
        Some(match self {
            StoreError::Full(_) => "full",
            StoreError::ReadOnly(_) => "read_only",
            StoreError::Damaged(_) => "damaged",
            StoreError::Io(_) => "io",
            StoreError::Access(_) => "access",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Tls(_) => "tls",
            StoreError::Database(_) => "database",
            StoreError::Migrate(_) => "migrate",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Sequence { .. } => "sequence",
            StoreError::RunNotFound(_) | StoreError::QueueFull(_) => return None,
        })
    }
}

/// Shared by every clone of a store.
#[derive(Debug, Clone, Default)]
pub(crate) struct ErrorCounts {
    counts: Arc<[AtomicU64; ERROR_KINDS.len()]>,
}

/// What a store call returned, as far as counting goes.
pub(crate) trait Outcome {
    fn error(&self) -> Option<&StoreError>;
}

impl<T> Outcome for Result<T, StoreError> {
    fn error(&self) -> Option<&StoreError> {
        self.as_ref().err()
    }
}

impl Outcome for () {
    fn error(&self) -> Option<&StoreError> {
        None
    }
}

impl ErrorCounts {
    pub(crate) fn count(&self, outcome: &impl Outcome) {
        let Some(kind) = outcome.error().and_then(StoreError::kind) else { return };
        if let Some(index) = ERROR_KINDS.iter().position(|known| *known == kind) {
            self.counts[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Each kind with its count, in the order of [`ERROR_KINDS`].
    pub(crate) fn snapshot(&self) -> [(&'static str, u64); ERROR_KINDS.len()] {
        std::array::from_fn(|index| (ERROR_KINDS[index], self.counts[index].load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn every_kind_is_listed_and_no_fault_answers_are_not_counted() {
        let counts = ErrorCounts::default();
        counts.count(&Err::<(), _>(StoreError::Full("disk".into())));
        counts.count(&Err::<(), _>(StoreError::Unavailable("gone".into())));
        counts.count(&Err::<(), _>(StoreError::Unavailable("gone".into())));
        counts.count(&Err::<(), _>(StoreError::QueueFull(3)));
        counts.count(&Err::<(), _>(StoreError::RunNotFound(oneoff_core::RunId(1))));
        counts.count(&Ok::<(), StoreError>(()));
        let snapshot = counts.snapshot();
        assert_eq!(snapshot.iter().map(|(_, count)| count).sum::<u64>(), 3);
        assert!(snapshot.contains(&("full", 1)) && snapshot.contains(&("unavailable", 2)));
        for kind in ERROR_KINDS {
            assert!(!kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}
