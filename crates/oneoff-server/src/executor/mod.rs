//! The executor: a handle plus one scheduler task that owns the runs this replica runs.
//!
//! The queue is the database's `queued` rows, for both backends: the scheduler claims runs
//! from it (`Store::claim_runs`, one transaction that counts what runs on every replica), so
//! the global limit, each job's `max_concurrent` and the FIFO order (a run waits behind older
//! runs unless their job is at its limit) hold across replicas. It claims when it has a reason
//! to: a run submitted or finished here, and a poll every [`POLL_PERIOD`] for other replicas'
//! submits and finishes. A queued run with secret parameters keeps its values in this
//! replica's memory ([`SecretBook`]) and is `held_by` it: only this replica may claim it.
//! Every change to what runs here goes through the scheduler's closed [`Command`] enum.
//! Each running run has its own supervisor task ([`process`]); one [`LogWriter`] task stores
//! the log lines of all of them; [`replicas::Heartbeat`] keeps this replica's row alive and
//! ends the runs of replicas that died.

mod capture;
mod isolation;
mod log_writer;
mod process;
mod recovery;
mod replicas;
mod runner;
mod secret_book;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oneoff_core::params::{self, FieldError, ParamInput};
use oneoff_core::run::{RunRecord, StoredParam};
use oneoff_core::{Catalog, Config, JobSpec, Launch, RunId, RunStatus, StopReason};
use oneoff_store::{CancelRequest, Claim, Finish, NewRun, ReplicaIdentity, Store, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::catalog::Catalogs;
use crate::clock::now_us;
use crate::hub::LogHub;
use crate::metrics::Metrics;

pub(crate) use isolation::boot_id;
pub use isolation::Isolation;
use log_writer::{LogWriter, Refusal};
pub use recovery::recover;
use replicas::Heartbeat;
pub use secret_book::server_secrets;
use secret_book::{BookEntry, SecretBook};

/// How often the scheduler looks for runs other replicas queued or made room for, and for
/// cancels of its runs requested on other replicas.
const POLL_PERIOD: Duration = Duration::from_millis(500);

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
    /// SIGTERM was sent to the run's processes (or, on another replica, will be within a
    /// second); the run ends after its grace period at most.
    Signalled,
    /// The run's replica is not responding: the run is now `lost`.
    EndedLost,
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

/// What the scheduler did with a cancel: only runs it holds are its to act on.
enum LocalCancel {
    Signalled,
    NotHere,
}

enum Command {
    /// A run was queued here; with secret values, the scheduler holds them until it starts.
    Submitted(Option<Pending>),
    Cancel(RunId, oneshot::Sender<LocalCancel>),
    Finished(RunId),
    /// Recovery is done: claiming may begin.
    Resume,
    /// A reload put a new catalog in force: its jobs' limits hold from the next claim.
    CatalogChanged,
    /// This replica was declared lost by the others: its runs are `lost` already; stop them.
    DeclaredLost,
    Shutdown(oneshot::Sender<()>),
}

/// Settings the scheduler and supervisors need, taken from [`Config`].
#[derive(Debug, Clone)]
struct Limits {
    max_concurrent_runs: u32,
    drain: Duration,
    max_line_bytes: usize,
    partial_line_flush: Duration,
    replica_timeout: Duration,
}

/// Cheap to clone; every clone talks to the same scheduler.
#[derive(Clone)]
pub struct ExecutorHandle {
    commands: mpsc::Sender<Command>,
    config: Arc<Config>,
    store: Store,
    hub: LogHub,
    catalogs: Catalogs,
    refusal: Refusal,
    replica: Arc<ReplicaIdentity>,
    /// False once a stop began: no new runs are taken.
    accepting: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl ExecutorHandle {
    /// Starts the scheduler task and this replica's heartbeat (its row must be registered:
    /// see `Store::register_replica`). `isolation` is how runs are held (decided once at
    /// start). Every job's output is masked against `server_secrets` too (see
    /// [`server_secrets`]). Nothing is claimed before [`recover`] has run. What it does is measured
    /// into [`ExecutorHandle::metrics`].
    pub fn spawn(
        config: Arc<Config>,
        catalogs: Catalogs,
        store: Store,
        hub: LogHub,
        isolation: Arc<Isolation>,
        server_secrets: Vec<Vec<u8>>,
        replica: ReplicaIdentity,
    ) -> ExecutorHandle {
        let metrics = Arc::new(Metrics::new(&catalogs.current()));
        let (commands, receiver) = mpsc::channel(256);
        let limits = Limits {
            max_concurrent_runs: config.server.max_concurrent_runs,
            drain: config.server.drain,
            max_line_bytes: config.server.max_line_bytes,
            partial_line_flush: config.server.partial_line_flush,
            replica_timeout: config.server.replica_timeout,
        };
        let replica = Arc::new(replica);
        let writer = LogWriter::spawn(store.clone(), hub.clone(), config.server.store_wait, metrics.clone());
        let refusal = writer.refusal();
        let heartbeat = Heartbeat::spawn(
            store.clone(),
            replica.clone(),
            limits.replica_timeout,
            commands.downgrade(),
            metrics.clone(),
        );
        let job_limits = job_limits(&catalogs.current());
        let scheduler = Scheduler {
            limits,
            catalogs: catalogs.clone(),
            store: store.clone(),
            hub: hub.clone(),
            writer,
            isolation,
            book: SecretBook::new(server_secrets),
            commands: commands.downgrade(),
            replica: replica.clone(),
            job_limits,
            held: HashMap::new(),
            running: HashMap::new(),
            claiming: false,
            want_claim: false,
            claim_failures: 0,
            heartbeat: Some(heartbeat),
            drain: None,
            metrics: metrics.clone(),
        };
        tokio::spawn(scheduler.run(receiver));
        ExecutorHandle {
            commands,
            config,
            store,
            hub,
            catalogs,
            refusal,
            replica,
            accepting: Arc::new(AtomicBool::new(true)),
            metrics,
        }
    }

    /// What this replica measures, for `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Who this replica is.
    pub fn replica(&self) -> &ReplicaIdentity {
        &self.replica
    }

    /// False once a stop began (SIGTERM): this replica takes no new runs and is draining.
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// The storage fault (a full disk) for which running runs' lines wait, if any: new runs
    /// are refused meanwhile, as their lines would only wait too.
    pub fn store_refusal(&self) -> Option<StoreError> {
        self.refusal.current()
    }

    /// Validates parameters, records the run as queued (the database's queue, bounded by
    /// `max_queued_runs` over all replicas) and tells the scheduler.
    pub async fn start_run(
        &self,
        job_name: &str,
        inputs: BTreeMap<String, ParamInput>,
        requested_by: Option<String>,
    ) -> Result<RunRecord, StartError> {
        let catalog = self.catalogs.current();
        let job = catalog.get(job_name).ok_or_else(|| StartError::UnknownJob(job_name.to_string()))?;
        let resolved = params::resolve(&job.params, inputs).map_err(StartError::InvalidParams)?;
        if !self.accepting.load(Ordering::Acquire) {
            return Err(StartError::ShuttingDown);
        }
        if let Some(fault) = self.store_refusal() {
            return Err(StartError::Store(fault));
        }
        let stored_params =
            resolved.iter().map(|(name, value)| (name.to_string(), StoredParam::from_value(value))).collect();
        let secrets: Vec<String> = job.secret_values(&resolved).into_iter().map(str::to_string).collect();
        // The argv does not depend on the run id, so it can be computed before the id exists.
        let argv = job.launch(RunId(0), &resolved).argv;
        let new = NewRun {
            job: job_name.to_string(),
            params: stored_params,
            argv,
            requested_by,
            created_at_us: now_us(),
            // Secret values live only in this process: no other replica can start the run.
            held_by: (!secrets.is_empty()).then(|| self.replica.name.clone()),
        };
        let record = match self.store.insert_run(&new, self.config.server.max_queued_runs).await {
            Ok(record) => record,
            Err(StoreError::QueueFull(max)) => return Err(StartError::QueueFull(max)),
            Err(error) => return Err(error.into()),
        };
        if secrets.is_empty() {
            // A nudge: if the channel is full, the next poll claims it.
            let _ = self.commands.try_send(Command::Submitted(None));
            return Ok(record);
        }
        let pending =
            Pending { run: record.id, job: Arc::new(job.clone()), launch: job.launch(record.id, &resolved), secrets };
        if self.commands.send(Command::Submitted(Some(pending))).await.is_err() {
            // The values are gone with the scheduler: the row must not stay queued forever.
            let finish = failed(StartError::ShuttingDown.to_string());
            self.store.finish_run(record.id, &finish).await?;
            self.metrics.run_finished(job_name, RunStatus::Failed, None);
            return Err(StartError::ShuttingDown);
        }
        Ok(record)
    }

    /// Cancels a run wherever it is: signalled at once when it runs here; otherwise through
    /// the store (a queued run is cancelled, a running one's replica acts within a second, a
    /// run whose replica is dead ends `lost`).
    pub async fn cancel(&self, run: RunId, job: &str) -> Result<CancelOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Cancel(run, reply)).await.is_ok() {
            if let Ok(LocalCancel::Signalled) = answer.await {
                return Ok(CancelOutcome::Signalled);
            }
        }
        let outcome = self.store.request_cancel(run, self.config.server.replica_timeout, now_us()).await?;
        Ok(match outcome {
            CancelRequest::CancelledWhileQueued => {
                self.metrics.run_finished(job, RunStatus::Cancelled, None);
                self.hub.finish(run);
                CancelOutcome::CancelledWhileQueued
            }
            CancelRequest::Requested { replica } => {
                tracing::info!(run = %run, %replica, "cancel recorded for the replica running the run");
                CancelOutcome::Signalled
            }
            CancelRequest::EndedLost { replica } => {
                tracing::warn!(run = %run, replica = ?replica, "cancel of a run whose replica is not responding: marked lost");
                self.metrics.run_finished(job, RunStatus::Lost, None);
                self.hub.finish(run);
                CancelOutcome::EndedLost
            }
            CancelRequest::AlreadyFinished | CancelRequest::NotFound => CancelOutcome::AlreadyFinished,
        })
    }

    /// Lets claiming begin (after recovery stopped what an earlier instance left running).
    /// Waits for room in the queue rather than drop the command: a lost `Resume` would leave
    /// the replica claiming nothing, ever.
    async fn resume(&self) {
        let _ = self.commands.send(Command::Resume).await;
    }

    /// Tells the scheduler a reload put a new catalog in force (see [`Catalogs`]).
    pub async fn catalog_changed(&self) {
        let _ = self.commands.send(Command::CatalogChanged).await;
    }

    /// Stops claiming (the replica is marked draining, so other replicas take the queue), lets
    /// running runs go on for the drain period, cancels the rest, removes this replica's row and
    /// returns when every run here has a final state. Queued runs stay queued for the others.
    pub async fn shutdown(&self) {
        self.accepting.store(false, Ordering::Release);
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Shutdown(reply)).await.is_ok() {
            let _ = answer.await;
        }
    }
}

/// Each job's `max_concurrent`, for the jobs that have one.
fn job_limits(catalog: &Catalog) -> HashMap<String, u32> {
    catalog.jobs().iter().filter_map(|job| job.max_concurrent.map(|max| (job.name.to_string(), max))).collect()
}

/// A run that failed before it could start.
fn failed(error: String) -> Finish {
    Finish { status: RunStatus::Failed, finished_at_us: now_us(), exit_code: None, signal: None, error: Some(error) }
}

struct RunningRun {
    job: String,
    stop: mpsc::Sender<StopReason>,
    /// A cancel requested through the store was passed on already.
    cancel_passed_on: bool,
}

/// A queued run whose secret values this replica holds.
struct Held {
    pending: Pending,
    entry: BookEntry,
}

struct Scheduler {
    limits: Limits,
    catalogs: Catalogs,
    store: Store,
    hub: LogHub,
    writer: LogWriter,
    isolation: Arc<Isolation>,
    /// Every secret value held while runs are queued or running: each run's output is masked
    /// against all of them, since a job can read another's environment.
    book: SecretBook,
    /// Weak, so the scheduler ends when every handle is gone.
    commands: mpsc::WeakSender<Command>,
    replica: Arc<ReplicaIdentity>,
    /// Each job's `max_concurrent`, for the jobs that have one.
    job_limits: HashMap<String, u32>,
    /// Queued runs held here (with secret values); a run's entry goes to its supervisor when it starts.
    held: HashMap<RunId, Held>,
    running: HashMap<RunId, RunningRun>,
    /// Claims are made: after recovery, until a stop begins.
    claiming: bool,
    want_claim: bool,
    claim_failures: u32,
    heartbeat: Option<Heartbeat>,
    metrics: Arc<Metrics>,
    drain: Option<Drain>,
}

struct Drain {
    deadline: Instant,
    cancelled: bool,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Scheduler {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut poll = tokio::time::interval(POLL_PERIOD);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.drain.as_ref().filter(|drain| !drain.cancelled).map(|drain| drain.deadline);
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command).await;
                }
                _ = poll.tick() => {
                    self.pass_on_cancels().await;
                    self.forget_held_elsewhere().await;
                    self.want_claim = true;
                }
                () = sleep_until_some(deadline) => self.cancel_all_running(),
            }
            if self.claiming && self.want_claim {
                self.want_claim = false;
                self.claim().await;
            }
            if self.drain.is_some() && self.running.is_empty() {
                self.finish_drain().await;
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Submitted(None) => self.want_claim = true,
            Command::Submitted(Some(pending)) => {
                if self.drain.is_some() {
                    self.fail_held_run(pending.run, pending.job.name.as_str()).await;
                    return;
                }
                // Entered while queued: its values are in memory already, and must be in every
                // masker before its process (and its environment) exists.
                let entry = self.book.enter(&pending.secrets);
                self.held.insert(pending.run, Held { pending, entry });
                self.want_claim = true;
            }
            Command::Cancel(run, reply) => {
                let outcome = match self.running.get(&run) {
                    Some(running) => {
                        // A full channel means a stop is already under way; that is the same outcome.
                        let _ = running.stop.try_send(StopReason::Cancelled);
                        LocalCancel::Signalled
                    }
                    None => {
                        // A held run is cancelled in the store by the caller; its values go now.
                        self.held.remove(&run);
                        LocalCancel::NotHere
                    }
                };
                let _ = reply.send(outcome);
            }
            Command::Finished(run) => {
                if let Some(running) = self.running.remove(&run) {
                    self.metrics.running_changed(&running.job, false);
                }
                self.want_claim = true;
            }
            Command::Resume => {
                self.claiming = self.drain.is_none();
                self.want_claim = true;
            }
            Command::CatalogChanged => {
                self.job_limits = job_limits(&self.catalogs.current());
                // A limit may have grown, or a job come back.
                self.want_claim = true;
            }
            Command::DeclaredLost => {
                tracing::error!(
                    running = self.running.len(),
                    "the other replicas declared this replica lost (its heartbeat was late): stopping its runs, \
                     which they recorded as lost"
                );
                for running in self.running.values() {
                    let _ = running.stop.try_send(StopReason::Cancelled);
                }
            }
            Command::Shutdown(reply) => self.begin_drain(reply).await,
        }
    }

    /// Claims what the limits allow, oldest first, and starts it.
    async fn claim(&mut self) {
        let holding: Vec<RunId> = self.held.keys().copied().collect();
        let claim = Claim {
            replica: &self.replica,
            max_concurrent_runs: self.limits.max_concurrent_runs,
            job_limits: &self.job_limits,
            max: self.limits.max_concurrent_runs,
            holding: &holding,
            now_us: now_us(),
        };
        let claimed_at_us = claim.now_us;
        let claimed = match self.store.claim_runs(&claim).await {
            Ok(claimed) => {
                self.claim_failures = 0;
                claimed
            }
            Err(error) => {
                self.claim_failures += 1;
                // Once per streak; the next poll tries again.
                if self.claim_failures == 1 {
                    tracing::warn!(%error, "cannot claim queued runs; trying again");
                }
                return;
            }
        };
        for record in claimed {
            let (pending, entry) = match self.held.remove(&record.id) {
                Some(held) => (held.pending, Some(held.entry)),
                None => match recovery::pending_again(&self.catalogs.current(), &record) {
                    Ok(pending) => (pending, None),
                    Err(reason) => {
                        tracing::warn!(run = %record.id, job = %record.job, %reason, "claimed run cannot start");
                        match self.store.finish_run(record.id, &failed(reason)).await {
                            Ok(()) => self.metrics.run_finished(&record.job, RunStatus::Failed, None),
                            Err(error) => tracing::error!(run = %record.id, %error, "cannot record the failed run"),
                        }
                        self.want_claim = true;
                        continue;
                    }
                },
            };
            let waited_us = record.started_at_us.unwrap_or(claimed_at_us) - record.created_at_us;
            self.metrics.run_started(&record.job, Duration::from_micros(u64::try_from(waited_us).unwrap_or(0)));
            // Every line the run's tasks log carries who asked for what (in the JSON log too).
            let span = tracing::info_span!(
                "run",
                run = %record.id,
                job = %record.job,
                user = record.requested_by.as_deref().unwrap_or("")
            );
            self.launch(pending, entry, span);
        }
    }

    fn launch(&mut self, pending: Pending, book_entry: Option<BookEntry>, span: tracing::Span) {
        let (stop, stop_requests) = mpsc::channel(4);
        let job = pending.job.name.to_string();
        self.hub.open(pending.run);
        self.metrics.running_changed(&job, true);
        self.running.insert(pending.run, RunningRun { job, stop, cancel_passed_on: false });
        let (job_name, started) = (pending.job.name.to_string(), std::time::Instant::now());
        let context = process::Supervision {
            run: pending.run,
            job: pending.job,
            launch: pending.launch,
            book: self.book.clone(),
            book_entry,
            store: self.store.clone(),
            hub: self.hub.clone(),
            writer: self.writer.clone(),
            max_line_bytes: self.limits.max_line_bytes,
            partial_line_flush: self.limits.partial_line_flush,
            isolation: self.isolation.clone(),
            metrics: self.metrics.clone(),
        };
        let commands = self.commands.clone();
        let (store, hub, run, metrics) = (self.store.clone(), self.hub.clone(), pending.run, self.metrics.clone());
        let supervisor = tokio::spawn(process::supervise(context, stop_requests).instrument(span));
        tokio::spawn(async move {
            // A panic in a supervisor is a bug; it must still free the slot and give the run a final state.
            if let Err(panic) = supervisor.await {
                tracing::error!(run = %run, error = %panic, "run supervisor panicked");
                match store.finish_run(run, &failed("internal error in the run supervisor".into())).await {
                    Ok(()) => metrics.run_finished(&job_name, RunStatus::Failed, Some(started.elapsed())),
                    Err(error) => tracing::error!(run = %run, %error, "cannot record the failed run"),
                }
                hub.finish(run);
            }
            if let Some(commands) = commands.upgrade() {
                let _ = commands.send(Command::Finished(run)).await;
            }
        });
    }

    /// Signals the runs here whose cancel was requested on another replica.
    async fn pass_on_cancels(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let requested = match self.store.cancel_requests(&self.replica).await {
            Ok(requested) => requested,
            Err(error) => {
                tracing::debug!(%error, "cannot read cancel requests; trying again");
                return;
            }
        };
        for run in requested {
            if let Some(running) = self.running.get_mut(&run).filter(|running| !running.cancel_passed_on) {
                tracing::info!(run = %run, job = %running.job, "cancel requested on another replica");
                running.cancel_passed_on = true;
                let _ = running.stop.try_send(StopReason::Cancelled);
            }
        }
    }

    /// Drops the values of held runs that ended elsewhere (cancelled through another replica,
    /// or failed by a survivor while this replica was thought dead).
    async fn forget_held_elsewhere(&mut self) {
        let ids: Vec<RunId> = self.held.keys().copied().collect();
        for run in ids {
            if let Ok(record) = self.store.run(run).await {
                if record.is_none_or(|record| record.status != RunStatus::Queued) {
                    self.held.remove(&run);
                }
            }
        }
    }

    async fn fail_held_run(&mut self, run: RunId, job: &str) {
        let reason = format!(
            "its secret values were only in the memory of replica {}, which stopped before the run could \
             start; start the run again",
            self.replica.name
        );
        match self.store.finish_run(run, &failed(reason)).await {
            Ok(()) => self.metrics.run_finished(job, RunStatus::Failed, None),
            Err(error) => tracing::error!(run = %run, %error, "cannot record the failed run"),
        }
    }

    async fn begin_drain(&mut self, reply: oneshot::Sender<()>) {
        self.claiming = false;
        if let Some(drain) = &mut self.drain {
            drain.waiters.push(reply);
            return;
        }
        tracing::info!(
            running = self.running.len(),
            drain_s = self.limits.drain.as_secs_f64(),
            "draining running jobs; queued runs stay queued for the other replicas"
        );
        self.drain =
            Some(Drain { deadline: Instant::now() + self.limits.drain, cancelled: false, waiters: vec![reply] });
        if let Err(error) = self.store.set_draining(&self.replica).await {
            tracing::warn!(%error, "cannot mark this replica as draining");
        }
        // Runs with secret values can start nowhere else: their values die with this process.
        let held: Vec<(RunId, String)> =
            self.held.drain().map(|(run, held)| (run, held.pending.job.name.to_string())).collect();
        for (run, job) in held {
            self.fail_held_run(run, &job).await;
        }
    }

    async fn finish_drain(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.shutdown().await;
        }
        for waiter in self.drain.take().map(|drain| drain.waiters).unwrap_or_default() {
            let _ = waiter.send(());
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
