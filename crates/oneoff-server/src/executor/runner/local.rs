//! The local runner: the run as a child process of this server, in its own process group
//! (and cgroup where the host allows one), stopped with SIGTERM to the group, then SIGKILL
//! after the job's grace period, on a cancel, a timeout or a store that refuses its output.
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
use oneoff_core::{ExitKind, JobSpec, Launch, LogStream, RunId, RunProcesses, StopReason};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Assignment, Ended, Output, Stops, Whereabouts};
use crate::executor::capture::PipeWatch;
use crate::executor::isolation::{self, Isolation, RunCgroup};
use crate::executor::sleep_until_some;

/// How long the pipes may stay open after the process group is gone, not counting time spent
/// waiting for the log writer. Only a process that escaped the group (`setsid`) can hold them
/// open longer; its output is then dropped.
const PIPE_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How long the processes of a run's cgroup may take to die after SIGKILL before the cgroup
/// is left behind (a process in uninterruptible sleep dies only when its IO ends).
const CGROUP_EMPTY_WAIT: Duration = Duration::from_secs(5);

pub struct LocalRunner {
    /// How runs are held on this host, decided once at start.
    isolation: Arc<Isolation>,
}

impl LocalRunner {
    pub fn new(isolation: Arc<Isolation>) -> LocalRunner {
        LocalRunner { isolation }
    }

    pub async fn run(&self, assignment: Assignment<'_>) -> Ended {
        let Assignment { run, job, launch, stops, output, whereabouts } = assignment;
        match self.isolation.create_cgroup(run) {
            Err(error) => {
                let message = format!("cannot create the run's cgroup: {error}");
                output.system(message.clone()).await;
                Ended::not_started(message)
            }
            Ok(cgroup) => {
                let ended = start_and_supervise(run, job, launch, cgroup.as_ref(), stops, output, &whereabouts).await;
                if let Some(cgroup) = cgroup {
                    remove_cgroup(run, cgroup, output).await;
                }
                ended
            }
        }
    }
}

/// Records where the run's processes will be, starts the leader, and supervises it until
/// everything it started is gone (or, without a cgroup, its process group is).
async fn start_and_supervise(
    run: RunId,
    job: &JobSpec,
    launch: &Launch,
    cgroup: Option<&RunCgroup>,
    stops: Stops,
    output: &Output,
    whereabouts: &Whereabouts<'_>,
) -> Ended {
    if let Some(cgroup) = cgroup {
        // Before the spawn: a server that dies right after it still leaves a trail to follow.
        let before = RunProcesses { cgroup: Some(cgroup.dir().display().to_string()), ..RunProcesses::default() };
        if let Err(error) = whereabouts.record(&before).await {
            let message = format!("cannot record the run's cgroup, so the run was not started: {error}");
            output.system(message.clone()).await;
            return Ended::not_started(message);
        }
    }
    let mut child = match spawn(launch, cgroup).await {
        Ok(child) => child,
        Err(error) => {
            let program = launch.argv.first().map_or("", String::as_str);
            // exec reports a missing working directory as ENOENT too, which reads as if the
            // program were missing: name the directory.
            let message = match launch.workdir.as_ref().filter(|dir| !dir.is_dir()) {
                Some(dir) => {
                    format!("cannot start `{program}`: its workdir {} is not a directory: {error}", dir.display())
                }
                None => format!("cannot start `{program}`: {error}"),
            };
            output.system(message.clone()).await;
            return Ended::not_started(message);
        }
    };
    tracing::info!(run = %run, job = %job.name, pid = ?child.id(), "run started");
    let processes = isolation::processes_of(child.id(), cgroup);
    if let Err(error) = whereabouts.record(&processes).await {
        tracing::warn!(run = %run, %error, "cannot record the run's process group; after a crash it cannot be found again");
    }
    if let Err(error) = lower_priority(&child, job.nice) {
        tracing::warn!(run = %run, nice = job.nice, %error, "cannot lower the run's priority");
    }
    let group_gone = CancellationToken::new();
    let readers = start_readers(&mut child, output, &group_gone);
    let reach = Reach { group: child.id().and_then(|pid| i32::try_from(pid).ok()).map(Pid::from_raw), cgroup };
    let ended = wait_or_stop(child, job, &reach, stops, output).await;
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
async fn remove_cgroup(run: RunId, cgroup: RunCgroup, output: &Output) {
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
        output.system(message).await;
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
    // Nor are its settings (a database URL with its password, say): ONEOFF_<SECTION>__<KEY>.
    for (name, _) in std::env::vars_os().filter(|(name, _)| oneoff_core::config::env::is_setting_variable(name)) {
        command.env_remove(name);
    }
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

fn start_readers(child: &mut Child, output: &Output, group_gone: &CancellationToken) -> Vec<JoinHandle<()>> {
    let watch = || PipeWatch { group_gone: group_gone.clone(), close_wait: PIPE_CLOSE_WAIT };
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(output.capture(stdout, LogStream::Stdout, watch()));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(output.capture(stderr, LogStream::Stderr, watch()));
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

async fn wait_or_stop(mut child: Child, job: &JobSpec, reach: &Reach<'_>, stops: Stops, output: &Output) -> Ended {
    let Stops { requests: mut stop_requests, store_refused } = stops;
    let timeout_at = job.timeout.map(|timeout| Instant::now() + timeout);
    let mut stop: Option<StopReason> = None;
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(reason) = stop_requests.recv(), if stop.is_none() => {
                output.system(format!(
                    "cancel requested: sending SIGTERM to {}; SIGKILL in {}",
                    reach.what(),
                    humanize(job.grace)
                )).await;
                reach.terminate();
                (stop, kill_at) = (Some(reason), Some(Instant::now() + job.grace));
            }
            () = sleep_until_some(timeout_at), if stop.is_none() => {
                output.system(format!(
                    "timed out after {}: sending SIGTERM to {}; SIGKILL in {}",
                    humanize(job.timeout.unwrap_or_default()),
                    reach.what(),
                    humanize(job.grace)
                )).await;
                reach.terminate();
                (stop, kill_at) = (Some(StopReason::TimedOut), Some(Instant::now() + job.grace));
            }
            // Its output can no longer be stored: stop it as on a timeout (the log says why).
            () = store_refused.cancelled(), if kill_at.is_none() => {
                reach.terminate();
                kill_at = Some(Instant::now() + job.grace);
            }
            () = sleep_until_some(kill_at), if !killed => {
                output.system(format!("still running {} after SIGTERM: sending SIGKILL", humanize(job.grace))).await;
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
