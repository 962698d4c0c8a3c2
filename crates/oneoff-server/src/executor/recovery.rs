//! What a starting replica does with runs an earlier instance of it left behind.
//!
//! Only this replica's own runs are touched: `running` rows claimed under its name (by an
//! earlier instance: this one has claimed nothing yet) and rows without a replica (from a
//! version before replicas); never another live replica's, whose runs are its own business
//! and, if it dies, its survivors'. Such a row means the earlier instance died without
//! finishing it (a clean stop always writes a final state): it becomes `lost`, since nobody
//! knows how it ended. Its processes may still be running, unsupervised and outside every
//! limit, so first they are found again from what the run recorded when it started (its
//! cgroup, or its process group and the leader's start time) and stopped as a cancel would:
//! SIGTERM, the job's grace period, SIGKILL. Only then is the run marked lost (its last log
//! line says what was found and how it ended) and only then does claiming begin, so a
//! `max_concurrent = 1` job never runs twice at once across a crash.
//! `queued` rows are the queue itself and wait there; those held by this name (with secret
//! values, which died with the earlier instance) fail.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use oneoff_core::params::{self, ParamInput};
use oneoff_core::run::{RunRecord, StoredParam};
use oneoff_core::{Catalog, LogEntry, LogStream, RunProcesses, RunStatus};
use oneoff_store::{Finish, StoreError};

use super::{isolation, ExecutorHandle, Pending};
use crate::clock::now_us;
use crate::metrics::ran_since;

/// The grace period of a lost run whose job is no longer in the catalog (a job's default).
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How long processes may take to die after SIGKILL before recovery gives up on them.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How many runs recovery touched.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovered {
    /// Runs of an earlier instance marked lost.
    pub lost: usize,
    /// Queued runs waiting in the store (of every replica).
    pub queued: usize,
    /// Held queued runs of an earlier instance, failed (their secret values are gone).
    pub failed: usize,
}

pub async fn recover(executor: &ExecutorHandle) -> Result<Recovered, StoreError> {
    let store = &executor.store;
    let name = &executor.replica.name;
    let mut recovered = Recovered::default();
    let leftovers = store.leftovers(name).await?;
    let lost = leftovers.running;
    let mut found = Vec::with_capacity(lost.len());
    for run in &lost {
        found.push(store.run_processes(run.id).await?);
    }
    // All at once: each run gets its own grace period, and they overlap.
    let reports = futures_util::future::join_all(
        lost.iter().zip(&found).map(|(run, processes)| stop_leftovers(processes, grace_of(executor, run))),
    )
    .await;
    for (run, report) in lost.iter().zip(reports) {
        let message = format!(
            "replica {name} stopped while this run was running (crash or kill -9); its outcome is unknown. {report}"
        );
        let entry = LogEntry {
            seq: store.last_seq(run.id).await? + 1,
            ts_us: now_us(),
            stream: LogStream::System,
            bytes: message.as_bytes().to_vec().into(),
            continues: false,
            partial: false,
        };
        store.append_log(run.id, &[entry]).await?;
        let finish = Finish {
            status: RunStatus::Lost,
            finished_at_us: now_us(),
            exit_code: None,
            signal: None,
            error: Some(message),
        };
        store.finish_run(run.id, &finish).await?;
        executor.metrics.run_finished(&run.job, RunStatus::Lost, ran_since(run.started_at_us));
        tracing::warn!(run = %run.id, job = %run.job, %report, "run marked lost");
        recovered.lost += 1;
    }
    for run in &leftovers.held {
        let reason = format!(
            "its secret values were only in the memory of the previous instance of replica {name}, which \
             stopped before the run could start; start the run again"
        );
        fail(executor, run, reason).await?;
        recovered.failed += 1;
    }
    // The rest of the queue waits in the store, for this replica and the others.
    recovered.queued = store.runs_with_status(RunStatus::Queued).await?.len();
    executor.resume().await;
    Ok(recovered)
}

/// The grace period a cancel of this run would give; the default when its job is gone.
fn grace_of(executor: &ExecutorHandle, run: &RunRecord) -> Duration {
    executor.catalogs.current().get(&run.job).map_or(DEFAULT_GRACE, |job| job.grace)
}

/// Finds what is left of a lost run and stops it (SIGTERM, `grace`, SIGKILL); says what
/// was found and done, for the run's last log line.
async fn stop_leftovers(processes: &RunProcesses, grace: Duration) -> String {
    if let Some(cgroup) = &processes.cgroup {
        return stop_cgroup(Path::new(cgroup), grace).await;
    }
    let (Some(group), Some(leader_start_ticks)) = (processes.process_group, processes.leader_start_ticks) else {
        return match processes.process_group {
            Some(group) => format!(
                "Its process group {group} was not signalled: without the leader's start time (no /proc) \
                 it cannot be told from a newer process that reuses the number."
            ),
            None => "Its processes were not recorded (it was started by an older oneoff, or the server died \
                     while starting it), so none could be stopped."
                .into(),
        };
    };
    if processes.boot_id.is_some() && processes.boot_id != isolation::boot_id() {
        return "The machine has restarted since, so none of its processes are left.".into();
    }
    stop_group(group, leader_start_ticks, grace).await
}

async fn stop_cgroup(dir: &Path, grace: Duration) -> String {
    let shown = dir.display();
    if !dir.exists() {
        return format!("Its cgroup {shown} is gone: nothing of it was left running.");
    }
    // The subtree's processes: a job may have moved into a cgroup of its own below the run's.
    let pids = isolation::cgroup_pids(dir);
    let outcome = if pids.is_empty() && !isolation::cgroup_populated(dir) {
        format!("Nothing of it was left running (its cgroup {shown} was empty).")
    } else {
        isolation::signal_cgroup(dir, Signal::SIGTERM);
        let mut outcome = format!(
            "{} of its processes were still running in its cgroup {shown} ({}): sent SIGTERM",
            pids.len(),
            list_pids(&pids)
        );
        if isolation::until_cgroup_empty(dir, grace).await {
            outcome.push_str(", and they ended.");
        } else {
            isolation::kill_cgroup(dir);
            let gone = isolation::until_cgroup_empty(dir, KILL_WAIT).await;
            outcome.push_str(&format!(", still running after {grace:?}: sent SIGKILL"));
            outcome.push_str(if gone { ", and they ended." } else { ", and some are still alive." });
        }
        outcome
    };
    if let Err(error) = isolation::remove_cgroup(dir) {
        tracing::warn!(cgroup = %shown, %error, "cannot remove a lost run's cgroup");
    }
    outcome
}

async fn stop_group(group: i32, leader_start_ticks: u64, grace: Duration) -> String {
    if isolation::start_ticks(group).is_some_and(|ticks| ticks != leader_start_ticks) {
        // A pid is not given out again while a process group of that number exists.
        return format!("Its process group {group} is gone (the number now belongs to another process).");
    }
    let members = isolation::group_members(group, leader_start_ticks);
    if members.is_empty() {
        return format!("Nothing of it was left running (its process group {group} is gone).");
    }
    let pgid = Pid::from_raw(group);
    let _ = killpg(pgid, Signal::SIGTERM);
    let mut outcome = format!(
        "{} of its processes were still running in its process group {group} ({}): sent SIGTERM",
        members.len(),
        list_pids(&members)
    );
    let left = || isolation::group_members(group, leader_start_ticks).len();
    if isolation::until_none_left(grace, left).await {
        outcome.push_str(", and they ended.");
    } else {
        let _ = killpg(pgid, Signal::SIGKILL);
        let gone = isolation::until_none_left(KILL_WAIT, left).await;
        outcome.push_str(&format!(", still running after {grace:?}: sent SIGKILL"));
        outcome.push_str(if gone { ", and they ended." } else { ", and some are still alive." });
    }
    outcome
}

/// "pids 1, 2, 3", shortened when there are many.
fn list_pids(pids: &[i32]) -> String {
    let shown: Vec<String> = pids.iter().take(10).map(ToString::to_string).collect();
    let more = pids.len().saturating_sub(shown.len());
    let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!("pids {}{tail}", shown.join(", "))
}

/// Rebuilds the launch of a claimed run from its stored parameters and the current catalog
/// (every run not submitted on this replica, and every run after a restart).
pub(super) fn pending_again(catalog: &Catalog, run: &RunRecord) -> Result<Pending, String> {
    let job = catalog.get(&run.job).ok_or_else(|| format!("job `{}` is no longer in the catalog", run.job))?;
    let mut inputs = BTreeMap::new();
    for (name, value) in &run.params {
        let input = match value {
            StoredParam::Text(text) => ParamInput::Text(text.clone()),
            StoredParam::Integer(number) => ParamInput::Integer(*number),
            StoredParam::Boolean(flag) => ParamInput::Boolean(*flag),
            StoredParam::Redacted => {
                return Err(format!(
                    "secret parameter `{name}` is kept only in the memory of the replica it was given to, \
                     which no longer holds it; start the run again"
                ));
            }
        };
        inputs.insert(name.clone(), input);
    }
    let resolved = params::resolve(&job.params, inputs).map_err(|errors| {
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("the job's parameters changed while the run was queued: {}", shown.join("; "))
    })?;
    let launch = job.launch(run.id, &resolved);
    if launch.argv != run.argv {
        return Err("the job's command changed while the run was queued; start the run again".into());
    }
    Ok(Pending { run: run.id, job: Arc::new(job.clone()), launch, secrets: Vec::new() })
}

async fn fail(executor: &ExecutorHandle, run: &RunRecord, reason: String) -> Result<(), StoreError> {
    tracing::warn!(run = %run.id, job = %run.job, %reason, "queued run cannot be resumed");
    let finish = Finish {
        status: RunStatus::Failed,
        finished_at_us: now_us(),
        exit_code: None,
        signal: None,
        error: Some(reason),
    };
    executor.store.finish_run(run.id, &finish).await?;
    executor.metrics.run_finished(&run.job, RunStatus::Failed, None);
    executor.hub.finish(run.id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    use super::*;

    /// A `sleep` leading a process group of its own, as a job's leader would.
    fn group_leader() -> std::process::Child {
        std::process::Command::new("sleep").arg("30").process_group(0).spawn().expect("spawn sleep")
    }

    #[tokio::test]
    async fn a_process_group_whose_leader_started_at_another_time_is_left_alone() {
        let mut leader = group_leader();
        let pid = i32::try_from(leader.id()).unwrap();
        let ticks = isolation::start_ticks(pid).expect("a start time in /proc");
        // As if the pid now belonged to a newer process than the recorded leader.
        let recorded = RunProcesses {
            process_group: Some(pid),
            leader_start_ticks: Some(ticks.saturating_sub(1)),
            boot_id: isolation::boot_id(),
            cgroup: None,
        };
        let report = stop_leftovers(&recorded, Duration::from_millis(100)).await;
        assert!(report.contains("now belongs to another process"), "{report}");
        assert!(leader.try_wait().unwrap().is_none(), "a process that is not the run's was signalled");

        let recorded = RunProcesses { leader_start_ticks: Some(ticks), ..recorded };
        let report = stop_leftovers(&recorded, Duration::from_secs(5)).await;
        assert!(report.contains("1 of its processes were still running in its process group"), "{report}");
        assert!(report.ends_with("sent SIGTERM, and they ended."), "{report}");
        assert!(leader.wait().unwrap().signal().is_some());
    }

    #[tokio::test]
    async fn a_run_from_another_boot_or_without_a_record_is_not_signalled() {
        let other_boot = RunProcesses {
            process_group: Some(1),
            leader_start_ticks: Some(1),
            boot_id: Some("not-this-boot".into()),
            cgroup: None,
        };
        let report = stop_leftovers(&other_boot, Duration::ZERO).await;
        assert!(report.contains("restarted since"), "{report}");
        let report = stop_leftovers(&RunProcesses::default(), Duration::ZERO).await;
        assert!(report.contains("were not recorded"), "{report}");
    }
}
