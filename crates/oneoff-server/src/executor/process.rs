//! Supervising one run: spawn the child in its own process group, capture its output,
//! stop it on cancel or timeout (SIGTERM to the group, SIGKILL after the grace period),
//! and record how it ended.
//!
//! A run ends when its main process exits; whatever it left behind is killed then: its
//! cgroup where it has one (so even a process that left the group with `setsid` goes), its
//! process group otherwise. See [`isolation`] for what holds on which platform.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use oneoff_core::run::final_status;
use oneoff_core::{ExitKind, JobSpec, Launch, LogStream, RunId, RunProcesses, RunStatus, SecretMasker, StopReason};
use oneoff_store::{Finish, Store};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::capture::{self, Lines, PipeWatch, CHANNEL_CHUNKS};
use super::isolation::{self, Isolation, RunCgroup};
use super::log_writer::{with_store_retries, LogWriter, Unstored};
use super::sleep_until_some;
use crate::clock::now_us;
use crate::hub::LogHub;

/// How long the pipes may stay open after the process group is gone, not counting time spent
/// waiting for the log writer. Only a process that escaped the group (`setsid`) can hold them
/// open longer; its output is then dropped.
const PIPE_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How long the processes of a run's cgroup may take to die after SIGKILL before the cgroup
/// is left behind (a process in uninterruptible sleep dies only when its IO ends).
const CGROUP_EMPTY_WAIT: Duration = Duration::from_secs(5);

/// How long each background attempt to record a run's end retries before it starts over.
const FINISH_RETRY_PERIOD: Duration = Duration::from_secs(60);

pub struct Supervision {
    pub run: RunId,
    pub job: Arc<JobSpec>,
    pub launch: Launch,
    /// The values every masker of this run masks (all runs' and the server's).
    pub book: super::SecretBook,
    /// This run's place in the book, given up when the supervision ends.
    pub book_entry: Option<super::BookEntry>,
    pub store: Store,
    pub hub: LogHub,
    pub writer: LogWriter,
    pub max_line_bytes: usize,
    pub partial_line_flush: Duration,
    pub isolation: Arc<Isolation>,
}

struct Ended {
    exit: ExitKind,
    stop: Option<StopReason>,
    error: Option<String>,
}

pub async fn supervise(context: Supervision, stop_requests: mpsc::Receiver<StopReason>) {
    let run = context.run;
    let finish = match run_to_end(&context, stop_requests).await {
        Ok((ended, unstored)) => {
            let (exit_code, signal) = match ended.exit {
                ExitKind::Code(code) => (Some(code), None),
                ExitKind::Signal(signal) => (None, Some(signal)),
                ExitKind::SpawnFailed => (None, None),
            };
            // Never `succeeded` with lines missing; the error field says what the log could not.
            let (status, error) = match unstored {
                None => (final_status(ended.exit, ended.stop), ended.error),
                Some(unstored) => {
                    let lost = unstored.error();
                    (RunStatus::Failed, Some(ended.error.map_or(lost.clone(), |error| format!("{error}; {lost}"))))
                }
            };
            Finish { status, finished_at_us: now_us(), exit_code, signal, error }
        }
        Err(error) => {
            tracing::error!(run = %run, %error, "run could not be supervised");
            Finish {
                status: RunStatus::Failed,
                finished_at_us: now_us(),
                exit_code: None,
                signal: None,
                // A full or read-only disk is no bug: say which.
                error: Some(if error.is_storage_fault() {
                    error.to_string()
                } else {
                    format!("internal error: {error}")
                }),
            }
        }
    };
    tracing::info!(run = %run, job = %context.job.name, status = %finish.status, exit_code = ?finish.exit_code, signal = ?finish.signal, "run finished");
    // A store that refuses writes (a full disk) gets the same wait as the run's lines, then
    // is tried again in the background until it takes the outcome or closes.
    let store = context.store.clone();
    match with_store_retries(context.writer.store_wait(), || store.finish_run(run, &finish)).await {
        Ok(()) => {}
        Err(error) if error.is_storage_fault() => {
            tracing::error!(run = %run, %error, "cannot record how the run ended yet; trying again until the store can write");
            tokio::spawn(async move {
                while let Err(error) = with_store_retries(FINISH_RETRY_PERIOD, || store.finish_run(run, &finish)).await
                {
                    if !error.is_storage_fault() {
                        tracing::error!(run = %run, %error, "cannot record how the run ended");
                        return;
                    }
                }
                tracing::info!(run = %run, "recorded how the run ended, once the store could write again");
            });
        }
        Err(error) => tracing::error!(run = %run, %error, "cannot record how the run ended"),
    }
    context.hub.finish(run);
    // Its processes and pipes are gone: the book keeps its values only for the runs that
    // were live with it.
    drop(context.book_entry);
}

async fn run_to_end(
    context: &Supervision,
    stop_requests: mpsc::Receiver<StopReason>,
) -> Result<(Ended, Option<Unstored>), oneoff_store::StoreError> {
    let run = context.run;
    context.store.mark_running(run, now_us()).await?;
    let first_seq = context.store.last_seq(run).await?;
    let (lines, incoming) = mpsc::channel(CHANNEL_CHUNKS);
    let store_refused = CancellationToken::new();
    let writer =
        tokio::spawn(capture::write_log(run, context.writer.clone(), first_seq, incoming, store_refused.clone()));
    let ended = match context.isolation.create_cgroup(run) {
        Err(error) => {
            let message = format!("cannot create the run's cgroup: {error}");
            let _ = lines.send(Lines::system(message.clone())).await;
            Ended { exit: ExitKind::SpawnFailed, stop: None, error: Some(message) }
        }
        Ok(cgroup) => {
            let ended = start_and_supervise(context, cgroup.as_ref(), stop_requests, &lines, &store_refused).await;
            if let Some(cgroup) = cgroup {
                remove_cgroup(run, cgroup, &lines).await;
            }
            ended
        }
    };
    drop(lines);
    // Output that could not be stored (the log says so, if it could): the run then fails.
    let unstored = writer.await.unwrap_or_else(|_| {
        tracing::error!(run = %run, "log writer panicked");
        None
    });
    Ok((ended, unstored))
}

/// Records where the run's processes will be, starts the leader, and supervises it until
/// everything it started is gone (or, without a cgroup, its process group is).
async fn start_and_supervise(
    context: &Supervision,
    cgroup: Option<&RunCgroup>,
    stop_requests: mpsc::Receiver<StopReason>,
    lines: &mpsc::Sender<Lines>,
    store_refused: &CancellationToken,
) -> Ended {
    let run = context.run;
    if let Some(cgroup) = cgroup {
        // Before the spawn: a server that dies right after it still leaves a trail to follow.
        let before = RunProcesses { cgroup: Some(cgroup.dir().display().to_string()), ..RunProcesses::default() };
        if let Err(error) = context.store.set_run_processes(run, &before).await {
            let message = format!("cannot record the run's cgroup, so the run was not started: {error}");
            let _ = lines.send(Lines::system(message.clone())).await;
            return Ended { exit: ExitKind::SpawnFailed, stop: None, error: Some(message) };
        }
    }
    let mut child = match spawn(&context.launch, cgroup).await {
        Ok(child) => child,
        Err(error) => {
            let program = context.launch.argv.first().map_or("", String::as_str);
            // exec reports a missing working directory as ENOENT too, which reads as if the
            // program were missing: name the directory.
            let message = match context.launch.workdir.as_ref().filter(|dir| !dir.is_dir()) {
                Some(dir) => {
                    format!("cannot start `{program}`: its workdir {} is not a directory: {error}", dir.display())
                }
                None => format!("cannot start `{program}`: {error}"),
            };
            let _ = lines.send(Lines::system(message.clone())).await;
            return Ended { exit: ExitKind::SpawnFailed, stop: None, error: Some(message) };
        }
    };
    tracing::info!(run = %run, job = %context.job.name, pid = ?child.id(), "run started");
    let processes = isolation::processes_of(child.id(), cgroup);
    if let Err(error) = context.store.set_run_processes(run, &processes).await {
        tracing::warn!(run = %run, %error, "cannot record the run's process group; after a crash it cannot be found again");
    }
    if let Err(error) = lower_priority(&child, context.job.nice) {
        tracing::warn!(run = %run, nice = context.job.nice, %error, "cannot lower the run's priority");
    }
    let group_gone = CancellationToken::new();
    let readers = start_readers(&mut child, context, &group_gone, lines);
    let reach = Reach { group: child.id().and_then(|pid| i32::try_from(pid).ok()).map(Pid::from_raw), cgroup };
    let ended = wait_or_stop(child, &context.job, &reach, stop_requests, lines, store_refused).await;
    group_gone.cancel();
    for reader in readers {
        // Each reader ends by itself: at the pipe's end, or when it stays open too long.
        if let Err(error) = reader.await {
            tracing::error!(run = %run, %error, "pipe reader panicked");
        }
    }
    ended
}

/// Empties and removes the run's cgroup once the run is over.
async fn remove_cgroup(run: RunId, cgroup: RunCgroup, lines: &mpsc::Sender<Lines>) {
    let dir = cgroup.into_dir();
    isolation::kill_cgroup(&dir);
    if !isolation::until_cgroup_empty(&dir, CGROUP_EMPTY_WAIT).await {
        let left = isolation::cgroup_pids(&dir);
        let message = format!(
            "{} processes of this run were still alive {} after SIGKILL (pids {left:?}); they stay in cgroup {}",
            left.len(),
            humanize(CGROUP_EMPTY_WAIT),
            dir.display()
        );
        tracing::warn!(run = %run, "{message}");
        let _ = lines.send(Lines::system(message)).await;
        return;
    }
    if let Err(error) = isolation::remove_cgroup(&dir) {
        tracing::warn!(run = %run, cgroup = %dir.display(), %error, "cannot remove the run's cgroup");
    }
}

async fn spawn(launch: &Launch, cgroup: Option<&RunCgroup>) -> std::io::Result<Child> {
    let (program, args) =
        launch.argv.split_first().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty argv"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        // The server's own secrets are not the job's: it inherits the rest of the environment.
        .env_remove(crate::audit_trail::AUDIT_KEY_ENV)
        .envs(launch.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so signals reach everything the job forks.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &launch.workdir {
        command.current_dir(dir);
    }
    isolation::spawn(command, cgroup).await
}

/// Lowers the priority of the job's whole process group by `nice` below the server's own, as
/// `nice -n` would, so whatever it forked before this call is niced too (later forks inherit it).
fn lower_priority(child: &Child, nice: u8) -> std::io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    // `None` would mean the server's own group: only ever pass the child's.
    let Some(group) = child.id().and_then(|pid| i32::try_from(pid).ok()).and_then(rustix::process::Pid::from_raw)
    else {
        return Ok(());
    };
    let own = rustix::process::getpriority_process(None)?;
    rustix::process::setpriority_pgrp(Some(group), (own + i32::from(nice)).min(19)).map_err(std::io::Error::from)
}

fn start_readers(
    child: &mut Child,
    context: &Supervision,
    group_gone: &CancellationToken,
    lines: &mpsc::Sender<Lines>,
) -> Vec<JoinHandle<()>> {
    let mut readers = Vec::new();
    let (max, flush) = (context.max_line_bytes, context.partial_line_flush);
    let watch = || PipeWatch { group_gone: group_gone.clone(), close_wait: PIPE_CLOSE_WAIT };
    // One masker per pipe: each is a stream of its own, and a secret split between them was
    // never printed whole. Each starts with no values and takes the book's before its first read.
    let masker = || capture::Masking {
        masker: SecretMasker::new(Vec::<Vec<u8>>::new()),
        book: context.book.clone(),
        seen: u64::MAX,
    };
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(capture::capture(
            stdout,
            LogStream::Stdout,
            max,
            flush,
            masker(),
            watch(),
            lines.clone(),
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(capture::capture(
            stderr,
            LogStream::Stderr,
            max,
            flush,
            masker(),
            watch(),
            lines.clone(),
        )));
    }
    readers
}

/// What the server can signal: the process group always, the cgroup where there is one.
struct Reach<'a> {
    group: Option<Pid>,
    cgroup: Option<&'a RunCgroup>,
}

impl Reach<'_> {
    fn what(&self) -> &'static str {
        if self.cgroup.is_some() {
            "every process of the run"
        } else {
            "the process group"
        }
    }

    fn terminate(&self) {
        signal_group(self.group, Signal::SIGTERM);
        if let Some(cgroup) = self.cgroup {
            isolation::signal_cgroup(cgroup.dir(), Signal::SIGTERM);
        }
    }

    fn kill(&self) {
        signal_group(self.group, Signal::SIGKILL);
        if let Some(cgroup) = self.cgroup {
            isolation::kill_cgroup(cgroup.dir());
        }
    }
}

async fn wait_or_stop(
    mut child: Child,
    job: &JobSpec,
    reach: &Reach<'_>,
    mut stop_requests: mpsc::Receiver<StopReason>,
    lines: &mpsc::Sender<Lines>,
    store_refused: &CancellationToken,
) -> Ended {
    let timeout_at = job.timeout.map(|timeout| Instant::now() + timeout);
    let mut stop: Option<StopReason> = None;
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(reason) = stop_requests.recv(), if stop.is_none() => {
                let _ = lines.send(Lines::system(format!(
                    "cancel requested: sending SIGTERM to {}; SIGKILL in {}",
                    reach.what(),
                    humanize(job.grace)
                ))).await;
                reach.terminate();
                (stop, kill_at) = (Some(reason), Some(Instant::now() + job.grace));
            }
            () = sleep_until_some(timeout_at), if stop.is_none() => {
                let _ = lines.send(Lines::system(format!(
                    "timed out after {}: sending SIGTERM to {}; SIGKILL in {}",
                    humanize(job.timeout.unwrap_or_default()),
                    reach.what(),
                    humanize(job.grace)
                ))).await;
                reach.terminate();
                (stop, kill_at) = (Some(StopReason::TimedOut), Some(Instant::now() + job.grace));
            }
            // Its output can no longer be stored: stop it as on a timeout (the log says why).
            () = store_refused.cancelled(), if kill_at.is_none() => {
                reach.terminate();
                kill_at = Some(Instant::now() + job.grace);
            }
            () = sleep_until_some(kill_at), if !killed => {
                let _ = lines.send(Lines::system(format!("still running {} after SIGTERM: sending SIGKILL", humanize(job.grace)))).await;
                reach.kill();
                killed = true;
            }
        }
    };
    // Whatever the job left behind goes with it.
    reach.kill();
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => Ended { exit: ExitKind::Code(code), stop, error: None },
            (None, Some(signal)) => Ended { exit: ExitKind::Signal(signal), stop, error: None },
            (None, None) => Ended { exit: ExitKind::Code(-1), stop, error: Some("unknown exit status".into()) },
        },
        Err(error) => {
            Ended { exit: ExitKind::SpawnFailed, stop, error: Some(format!("cannot wait for the process: {error}")) }
        }
    }
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group {
        // ESRCH (group already gone) is the normal case after the job exits.
        let _ = killpg(group, signal);
    }
}

fn humanize(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}
