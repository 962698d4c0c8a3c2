//! Whether the store can write: the last storage fault seen by a write, until a write succeeds.
//!
//! A full disk, a read-only file system or a damaged file fails every write, but reads go on,
//! so a `SELECT 1` says nothing about them. Every write reports its outcome here; readiness
//! reads it back. The fault clears with the next write that succeeds, and while nothing else
//! writes, readiness makes a one-page write itself now and then ([`PROBE_PERIOD`]), so the
//! store is seen to recover when space comes back even on an idle server.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::StoreError;

/// How often readiness tries a write of its own while the store is failing.
pub(crate) const PROBE_PERIOD: Duration = Duration::from_secs(1);

/// Shared by every clone of a store.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteHealth {
    fault: Arc<Mutex<Option<Fault>>>,
}

#[derive(Debug)]
struct Fault {
    error: StoreError,
    seen_at: Instant,
}

impl WriteHealth {
    /// Records how a write ended: a storage fault is kept, a success clears it, any other
    /// error (a refused sequence, a busy database) says nothing about the disk.
    pub(crate) fn record<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => {
                if self.lock().take().is_some() {
                    tracing::info!("the database accepts writes again");
                }
            }
            Err(error) => {
                if let Some(error) = error.storage_fault() {
                    let mut fault = self.lock();
                    if fault.is_none() {
                        tracing::error!(%error, "the database cannot be written");
                    }
                    *fault = Some(Fault { error, seen_at: Instant::now() });
                }
            }
        }
    }

    /// The storage fault of the last write, if it failed, and how long ago it was seen.
    pub(crate) fn fault(&self) -> Option<(StoreError, Duration)> {
        let fault = self.lock();
        let fault = fault.as_ref()?;
        Some((fault.error.storage_fault()?, fault.seen_at.elapsed()))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Fault>> {
        // The value is replaced whole, so a panic elsewhere cannot leave it half-written.
        self.fault.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
