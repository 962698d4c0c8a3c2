//! The seam between supervising a run and running it somewhere: [`Runner::run`].
//!
//! [`super::process`] does what every run needs, whatever runs it: it marks the run running,
//! starts the task that numbers and stores its lines, waits for that task, decides the final
//! state, records it and tells the hub. A [`Runner`] does the rest: it starts the run's
//! processes where it keeps them, feeds what they print to [`Output`] (masking, lines, the
//! log writer), stops them when [`Stops`] or the job's timeout say so, makes sure nothing of
//! the run is left, and returns how the run [`Ended`]. Its one store write is where its
//! processes are ([`Whereabouts`]), so that a server started after a crash can find them.
//!
//! `Local` is the only runner today: child processes of this server, in a process group and
//! a cgroup (see [`local`]). `docs/design/kubernetes.md` sketches a Kubernetes Job runner on
//! this seam.

mod local;

use std::time::Duration;

use oneoff_core::{ExitKind, JobSpec, Launch, LogStream, RunId, RunProcesses, SecretMasker, StopReason};
use oneoff_store::{Store, StoreError};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use local::LocalRunner;

use super::capture::{self, LineSink, PipeWatch};
use super::SecretBook;

/// Where a run's processes run. A closed set: dispatch is a `match`, each runner a type of its own.
pub enum Runner {
    Local(LocalRunner),
}

impl Runner {
    /// Runs one run to its end: starts it, follows it, stops it when asked, and leaves nothing
    /// of it behind. Every failure to start is an [`Ended`] too (`SpawnFailed`, with the
    /// reason in the log and in `error`), never a panic or a silent return.
    pub async fn run(&self, assignment: Assignment<'_>) -> Ended {
        match self {
            Runner::Local(local) => local.run(assignment).await,
        }
    }
}

/// What a runner gets for one run.
pub struct Assignment<'a> {
    pub run: RunId,
    /// Its grace, timeout and priority.
    pub job: &'a JobSpec,
    /// The argv, environment and workdir rendered for this run.
    pub launch: &'a Launch,
    pub stops: Stops,
    pub output: &'a Output,
    pub whereabouts: Whereabouts<'a>,
}

/// Why a runner must stop the run before it ends by itself. The job's own timeout
/// (`JobSpec::timeout`) is the runner's to enforce as well, since where it runs may do that
/// better (a Kubernetes Job's deadline keeps counting while no server is watching).
pub struct Stops {
    /// Cancel requests; the first one counts.
    pub requests: mpsc::Receiver<StopReason>,
    /// Cancelled once the run's output can no longer be stored: stop the run as on a timeout,
    /// with no stop reason of its own (the log writer says what was lost, and the run fails).
    pub store_refused: CancellationToken,
}

/// How a run ended, as its runner saw it; [`super::process`] turns it into the final state.
pub struct Ended {
    pub exit: ExitKind,
    /// Why it was stopped, if it was; this wins over the exit status.
    pub stop: Option<StopReason>,
    pub error: Option<String>,
}

impl Ended {
    /// The run never started; `message` says why (and is in its log already).
    pub fn not_started(message: String) -> Ended {
        Ended { exit: ExitKind::SpawnFailed, stop: None, error: Some(message) }
    }
}

/// Where a runner sends what the run prints: each byte stream is masked against every secret
/// the server holds, cut into lines, numbered and stored by the log writer.
pub struct Output {
    lines: LineSink,
    max_line_bytes: usize,
    partial_line_flush: Duration,
    book: SecretBook,
}

impl Output {
    pub fn new(lines: LineSink, max_line_bytes: usize, partial_line_flush: Duration, book: SecretBook) -> Output {
        Output { lines, max_line_bytes, partial_line_flush, book }
    }

    /// Says something about the run in its log, as a `system` line. Once the log writer is
    /// gone there is no log to say it in.
    pub async fn system(&self, text: impl Into<String>) {
        self.lines.system(text).await;
    }

    /// Reads one byte stream of the run to its end in a task of its own; the task ends at
    /// the stream's end, or when `watch` says to stop waiting for it.
    pub fn capture(
        &self,
        bytes: impl AsyncRead + Unpin + Send + 'static,
        stream: LogStream,
        watch: PipeWatch,
    ) -> JoinHandle<()> {
        // One masker per stream: each is a stream of its own, and a secret split between two
        // was never printed whole. It starts with no values and takes the book's before its
        // first read.
        let masking = capture::Masking {
            masker: SecretMasker::new(Vec::<Vec<u8>>::new()),
            book: self.book.clone(),
            seen: u64::MAX,
        };
        tokio::spawn(
            capture::capture(
                bytes,
                stream,
                self.max_line_bytes,
                self.partial_line_flush,
                masking,
                watch,
                self.lines.clone(),
            )
            .in_current_span(),
        )
    }
}

/// The one store write a runner makes: where the run's processes are (a cgroup, a process
/// group; a Kubernetes Job's namespace and name), so that recovery can stop them after a crash.
pub struct Whereabouts<'a> {
    run: RunId,
    store: &'a Store,
}

impl Whereabouts<'_> {
    pub fn new(run: RunId, store: &Store) -> Whereabouts<'_> {
        Whereabouts { run, store }
    }

    pub async fn record(&self, processes: &RunProcesses) -> Result<(), StoreError> {
        self.store.set_run_processes(self.run, processes).await
    }
}
