//! Counting live-log viewers against the configured bounds, and the server's counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use oneoff_core::RunId;
use tokio::sync::Notify;

/// Streaming connections per run and in total; a [`ViewerSlot`] holds one until dropped.
#[derive(Debug)]
pub struct Viewers {
    total: AtomicUsize,
    /// Open now, by [`Transport`] (indexed by its `as usize`).
    by_transport: [AtomicUsize; 2],
    per_run: Mutex<HashMap<RunId, usize>>,
    max_total: usize,
    max_per_run: usize,
    /// Woken when the last viewer leaves.
    none_left: Notify,
}

/// Which bound refused a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerLimit {
    PerRun(usize),
    Total(usize),
}

impl Viewers {
    pub fn new(max_total: usize, max_per_run: usize) -> Viewers {
        Viewers {
            total: AtomicUsize::new(0),
            by_transport: Default::default(),
            per_run: Mutex::default(),
            max_total,
            max_per_run,
            none_left: Notify::new(),
        }
    }

    pub fn acquire(self: &Arc<Self>, run: RunId, transport: Transport) -> Result<ViewerSlot, ViewerLimit> {
        let mut per_run = self.per_run.lock().unwrap_or_else(PoisonError::into_inner);
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(ViewerLimit::Total(self.max_total));
        }
        let count = per_run.entry(run).or_default();
        if *count >= self.max_per_run {
            return Err(ViewerLimit::PerRun(self.max_per_run));
        }
        *count += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        self.by_transport[transport as usize].fetch_add(1, Ordering::Relaxed);
        Ok(ViewerSlot { viewers: self.clone(), run, transport })
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Viewers open now on `transport`.
    pub fn on(&self, transport: Transport) -> usize {
        self.by_transport[transport as usize].load(Ordering::Relaxed)
    }

    /// Returns once no viewer is left. Upgraded WebSockets live outside the HTTP server's
    /// graceful shutdown, so stopping waits here before the store closes under them.
    pub async fn until_none_left(&self) {
        loop {
            let notified = self.none_left.notified();
            tokio::pin!(notified);
            // Registered before the check, so a viewer leaving in between still wakes us.
            notified.as_mut().enable();
            if self.total() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One viewer's place; gives it back when dropped, however the stream ends.
#[derive(Debug)]
pub struct ViewerSlot {
    viewers: Arc<Viewers>,
    run: RunId,
    transport: Transport,
}

/// How a live viewer follows its run: the `transport` label of the viewer metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket = 0,
    Sse = 1,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::WebSocket, Transport::Sse];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
        }
    }
}

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        let mut per_run = self.viewers.per_run.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_run.get_mut(&self.run) {
            *count -= 1;
            if *count == 0 {
                per_run.remove(&self.run);
            }
        }
        self.viewers.by_transport[self.transport as usize].fetch_sub(1, Ordering::Relaxed);
        if self.viewers.total.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.viewers.none_left.notify_waiters();
        }
    }
}

/// Counters exposed at `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Refused WebSocket handshakes by the code of their answer (`websocket_required`, …), so
    /// the metric's `reason` label and the API's `error.code` are one name. The codes are
    /// `&'static str`s of the program, so the map has at most as many entries as there are codes.
    handshakes_refused: Mutex<BTreeMap<&'static str, u64>>,
    pub viewers_refused: AtomicU64,
    pub viewers_too_slow: AtomicU64,
    pub ws_sessions: AtomicU64,
    pub sse_sessions: AtomicU64,
    pub untrusted_identity_headers: AtomicU64,
}

impl Counters {
    /// Counts one refused handshake under the code it was answered with.
    pub fn count_refusal(&self, code: &'static str) {
        *self.refusals().entry(code).or_insert(0) += 1;
    }

    /// How many handshakes were refused with `code`.
    pub fn refused(&self, code: &str) -> u64 {
        self.refusals().get(code).copied().unwrap_or(0)
    }

    fn refusals(&self) -> MutexGuard<'_, BTreeMap<&'static str, u64>> {
        // A panic while counting cannot leave a count half-written: the map stays usable.
        self.handshakes_refused.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
