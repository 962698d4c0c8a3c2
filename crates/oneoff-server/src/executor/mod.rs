//! The executor: a handle plus one scheduler task that owns the queue and the running set.
//!
//! Every change to "what runs now" goes through the scheduler's closed [`Command`] enum,
//! so limits are enforced in one place without locks: a global limit, a per-job
//! `max_concurrent`, and a FIFO queue (a run waits behind older runs unless their job is at
//! its limit). The queue is persisted as `queued` rows, so a restart resumes it.
//! Each running run has its own supervisor task ([`process`]); one [`LogWriter`] task stores
//! the log lines of all of them.

mod capture;
mod isolation;
mod log_writer;
mod process;
mod recovery;
mod runner;
mod secret_book;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use oneoff_core::params::{self, FieldError, ParamInput};
use oneoff_core::run::{RunRecord, StoredParam};
use oneoff_core::{Config, JobSpec, Launch, RunId, RunStatus, StopReason};
use oneoff_store::{Finish, NewRun, Store, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::clock::now_us;
use crate::hub::LogHub;

pub use isolation::Isolation;
use log_writer::{LogWriter, Refusal};
pub use recovery::recover;
pub use secret_book::server_secrets;
use secret_book::{BookEntry, SecretBook};

/// Why a run could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no job named `{0}`")]
    UnknownJob(String),
    #[error("invalid parameters")]
    InvalidParams(Vec<FieldError>),
    #[error("the server is shutting down and accepts no new runs")]
    ShuttingDown,
    #[error("the run queue is full ({0} runs waiting); try again later")]
    QueueFull(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run was queued and is now cancelled.
    CancelledWhileQueued,
    /// SIGTERM was sent to the run's processes; the run ends after its grace period at most.
    Signalled,
    /// The run had already finished.
    AlreadyFinished,
}

/// A run ready to start, with everything its supervisor needs.
struct Pending {
    run: RunId,
    job: Arc<JobSpec>,
    launch: Launch,
    secrets: Vec<String>,
}

enum Command {
    Submit(Pending, oneshot::Sender<Result<(), StartError>>),
    Cancel(RunId, oneshot::Sender<CancelOutcome>),
    Finished(RunId),
    Shutdown(oneshot::Sender<()>),
}

/// Settings the scheduler and supervisors need, taken from [`Config`].
#[derive(Debug, Clone)]
struct Limits {
    max_concurrent_runs: u32,
    max_queued_runs: u32,
    drain: Duration,
    max_line_bytes: usize,
    partial_line_flush: Duration,
}

/// Cheap to clone; every clone talks to the same scheduler.
#[derive(Clone)]
pub struct ExecutorHandle {
    commands: mpsc::Sender<Command>,
    config: Arc<Config>,
    store: Store,
    hub: LogHub,
    refusal: Refusal,
}

impl ExecutorHandle {
    /// Starts the scheduler task; `isolation` is how runs are held (decided once at start).
    /// Every job's output is masked against `server_secrets` too (see [`server_secrets`]).
    pub fn spawn(
        config: Arc<Config>,
        store: Store,
        hub: LogHub,
        isolation: Arc<Isolation>,
        server_secrets: Vec<Vec<u8>>,
    ) -> ExecutorHandle {
        let (commands, receiver) = mpsc::channel(256);
        let limits = Limits {
            max_concurrent_runs: config.server.max_concurrent_runs,
            max_queued_runs: config.server.max_queued_runs,
            drain: config.server.drain,
            max_line_bytes: config.server.max_line_bytes,
            partial_line_flush: config.server.partial_line_flush,
        };
        let writer = LogWriter::spawn(store.clone(), hub.clone(), config.server.store_wait);
        let refusal = writer.refusal();
        let scheduler = Scheduler {
            limits,
            store: store.clone(),
            hub: hub.clone(),
            writer,
            isolation,
            book: SecretBook::new(server_secrets),
            book_entries: HashMap::new(),
            commands: commands.downgrade(),
            queue: VecDeque::new(),
            running: HashMap::new(),
            running_per_job: HashMap::new(),
            accepting: true,
            drain: None,
        };
        tokio::spawn(scheduler.run(receiver));
        ExecutorHandle { commands, config, store, hub, refusal }
    }

    /// The storage fault (a full disk) for which running runs' lines wait, if any: new runs
    /// are refused meanwhile, as their lines would only wait too.
    pub fn store_refusal(&self) -> Option<StoreError> {
        self.refusal.current()
    }

    /// Validates parameters, records the run as queued and hands it to the scheduler.
    pub async fn start_run(
        &self,
        job_name: &str,
        inputs: BTreeMap<String, ParamInput>,
        requested_by: Option<String>,
    ) -> Result<RunRecord, StartError> {
        let job = self.config.catalog.get(job_name).ok_or_else(|| StartError::UnknownJob(job_name.to_string()))?;
        let resolved = params::resolve(&job.params, inputs).map_err(StartError::InvalidParams)?;
        if let Some(fault) = self.store_refusal() {
            return Err(StartError::Store(fault));
        }
        let stored_params =
            resolved.iter().map(|(name, value)| (name.to_string(), StoredParam::from_value(value))).collect();
        // The argv does not depend on the run id, so it can be computed before the id exists.
        let argv = job.launch(RunId(0), &resolved).argv;
        let new =
            NewRun { job: job_name.to_string(), params: stored_params, argv, requested_by, created_at_us: now_us() };
        let record = self.store.insert_run(&new).await?;
        self.hub.open(record.id);
        let pending = Pending {
            run: record.id,
            job: Arc::new(job.clone()),
            launch: job.launch(record.id, &resolved),
            secrets: job.secret_values(&resolved).into_iter().map(str::to_string).collect(),
        };
        if let Err(error) = self.submit(pending).await {
            // Refused: the row must not stay queued forever.
            let finish = Finish {
                status: RunStatus::Failed,
                finished_at_us: now_us(),
                exit_code: None,
                signal: None,
                error: Some(error.to_string()),
            };
            self.store.finish_run(record.id, &finish).await?;
            self.hub.finish(record.id);
            return Err(error);
        }
        Ok(record)
    }

    async fn submit(&self, pending: Pending) -> Result<(), StartError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Submit(pending, reply)).await.map_err(|_| StartError::ShuttingDown)?;
        answer.await.unwrap_or(Err(StartError::ShuttingDown))
    }

    /// Cancels a queued run at once, or signals a running one.
    pub async fn cancel(&self, run: RunId) -> CancelOutcome {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Cancel(run, reply)).await.is_err() {
            return CancelOutcome::AlreadyFinished;
        }
        answer.await.unwrap_or(CancelOutcome::AlreadyFinished)
    }

    /// Stops accepting runs, lets running ones go on for the drain period, cancels the rest,
    /// and returns when every run has a final state. Queued runs stay queued for the next start.
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Shutdown(reply)).await.is_ok() {
            let _ = answer.await;
        }
    }
}

struct RunningRun {
    job: String,
    stop: mpsc::Sender<StopReason>,
}

struct Scheduler {
    limits: Limits,
    store: Store,
    hub: LogHub,
    writer: LogWriter,
    isolation: Arc<Isolation>,
    /// Every secret value held while runs are queued or running: each run's output is masked
    /// against all of them, since a job can read another's environment.
    book: SecretBook,
    /// The book entries of queued runs; a run's entry goes to its supervisor when it starts.
    book_entries: HashMap<RunId, BookEntry>,
    /// Weak, so the scheduler ends when every handle is gone.
    commands: mpsc::WeakSender<Command>,
    queue: VecDeque<Pending>,
    running: HashMap<RunId, RunningRun>,
    running_per_job: HashMap<String, u32>,
    accepting: bool,
    drain: Option<Drain>,
}

struct Drain {
    deadline: Instant,
    cancelled: bool,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Scheduler {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let deadline = self.drain.as_ref().filter(|drain| !drain.cancelled).map(|drain| drain.deadline);
            let command = tokio::select! {
                command = commands.recv() => command,
                () = sleep_until_some(deadline) => {
                    self.cancel_all_running();
                    continue;
                }
            };
            let Some(command) = command else { break };
            match command {
                Command::Submit(pending, reply) => {
                    let _ = reply.send(self.enqueue(pending));
                }
                Command::Cancel(run, reply) => {
                    let _ = reply.send(self.cancel(run).await);
                }
                Command::Finished(run) => self.finished(run),
                Command::Shutdown(reply) => self.begin_drain(reply),
            }
            if self.accepting {
                self.start_eligible();
            }
            if self.drain.is_some() && self.running.is_empty() {
                for waiter in self.drain.take().map(|drain| drain.waiters).unwrap_or_default() {
                    let _ = waiter.send(());
                }
            }
        }
    }

    fn enqueue(&mut self, pending: Pending) -> Result<(), StartError> {
        if !self.accepting {
            return Err(StartError::ShuttingDown);
        }
        if self.queue.len() >= self.limits.max_queued_runs as usize {
            return Err(StartError::QueueFull(self.limits.max_queued_runs));
        }
        // Entered while queued: its values are in memory already, and must be in every masker
        // before its process (and its environment) exists.
        self.book_entries.insert(pending.run, self.book.enter(&pending.secrets));
        self.queue.push_back(pending);
        Ok(())
    }

    /// Starts queued runs, oldest first, while slots are free.
    fn start_eligible(&mut self) {
        while self.running.len() < self.limits.max_concurrent_runs as usize {
            let position = self.queue.iter().position(|pending| {
                let running = self.running_per_job.get(pending.job.name.as_str()).copied().unwrap_or(0);
                pending.job.max_concurrent.is_none_or(|max| running < max)
            });
            let Some(pending) = position.and_then(|index| self.queue.remove(index)) else { return };
            self.launch(pending);
        }
    }

    fn launch(&mut self, pending: Pending) {
        let (stop, stop_requests) = mpsc::channel(4);
        let job = pending.job.name.to_string();
        *self.running_per_job.entry(job.clone()).or_default() += 1;
        self.running.insert(pending.run, RunningRun { job, stop });
        let context = process::Supervision {
            run: pending.run,
            job: pending.job,
            launch: pending.launch,
            book: self.book.clone(),
            book_entry: self.book_entries.remove(&pending.run),
            store: self.store.clone(),
            hub: self.hub.clone(),
            writer: self.writer.clone(),
            max_line_bytes: self.limits.max_line_bytes,
            partial_line_flush: self.limits.partial_line_flush,
            isolation: self.isolation.clone(),
        };
        let commands = self.commands.clone();
        let (store, hub, run) = (self.store.clone(), self.hub.clone(), pending.run);
        let supervisor = tokio::spawn(process::supervise(context, stop_requests));
        tokio::spawn(async move {
            // A panic in a supervisor is a bug; it must still free the slot and give the run a final state.
            if let Err(panic) = supervisor.await {
                tracing::error!(run = %run, error = %panic, "run supervisor panicked");
                let finish = Finish {
                    status: RunStatus::Failed,
                    finished_at_us: now_us(),
                    exit_code: None,
                    signal: None,
                    error: Some("internal error in the run supervisor".into()),
                };
                if let Err(error) = store.finish_run(run, &finish).await {
                    tracing::error!(run = %run, %error, "cannot record the failed run");
                }
                hub.finish(run);
            }
            if let Some(commands) = commands.upgrade() {
                let _ = commands.send(Command::Finished(run)).await;
            }
        });
    }

    fn finished(&mut self, run: RunId) {
        if let Some(done) = self.running.remove(&run) {
            if let Some(count) = self.running_per_job.get_mut(&done.job) {
                *count = count.saturating_sub(1);
            }
        }
    }

    async fn cancel(&mut self, run: RunId) -> CancelOutcome {
        if let Some(running) = self.running.get(&run) {
            // A full channel means a stop is already under way; that is the same outcome.
            let _ = running.stop.try_send(StopReason::Cancelled);
            return CancelOutcome::Signalled;
        }
        let Some(index) = self.queue.iter().position(|pending| pending.run == run) else {
            return CancelOutcome::AlreadyFinished;
        };
        self.queue.remove(index);
        self.book_entries.remove(&run);
        let finish = Finish {
            status: RunStatus::Cancelled,
            finished_at_us: now_us(),
            exit_code: None,
            signal: None,
            error: Some("cancelled while queued".into()),
        };
        if let Err(error) = self.store.finish_run(run, &finish).await {
            tracing::error!(run = %run, %error, "cannot record the cancelled run");
        }
        self.hub.finish(run);
        CancelOutcome::CancelledWhileQueued
    }

    fn begin_drain(&mut self, reply: oneshot::Sender<()>) {
        self.accepting = false;
        // Queued runs keep their `queued` row and start after the next server start.
        self.queue.clear();
        self.book_entries.clear();
        match &mut self.drain {
            Some(drain) => drain.waiters.push(reply),
            None => {
                tracing::info!(
                    running = self.running.len(),
                    drain_s = self.limits.drain.as_secs_f64(),
                    "draining running jobs"
                );
                self.drain = Some(Drain {
                    deadline: Instant::now() + self.limits.drain,
                    cancelled: false,
                    waiters: vec![reply],
                });
            }
        }
    }

    fn cancel_all_running(&mut self) {
        if let Some(drain) = &mut self.drain {
            drain.cancelled = true;
        }
        tracing::warn!(running = self.running.len(), "drain period over; cancelling the runs still running");
        for running in self.running.values() {
            let _ = running.stop.try_send(StopReason::Cancelled);
        }
    }
}

/// Sleeps until `deadline`, or forever without one (a `select!` branch that never fires).
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
