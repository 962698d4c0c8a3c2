//! Runs: their identity, their lifecycle states, and how a finished child process maps to a final state.

use std::fmt;
use std::str::FromStr;

/// A run's identity: a positive integer assigned by the store, shown to users as `#42`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for RunId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.strip_prefix('#').unwrap_or(text);
        match digits.parse::<i64>() {
            Ok(id) if id > 0 => Ok(RunId(id)),
            _ => Err(format!("`{text}` is not a run id (a positive number such as 42)")),
        }
    }
}

/// Where a run is in its life. `Queued` and `Running` are live; the rest are final and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    /// The server died while the run was running; its outcome is unknown.
    Lost,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::TimedOut,
        RunStatus::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Lost => "lost",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL.into_iter().find(|status| status.as_str() == text).ok_or_else(|| {
            let known: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown status `{text}` (one of: {})", known.join(", "))
        })
    }
}

/// How the child process ended, as the operating system reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
    /// The program could not be started at all (not found, not executable, bad workdir).
    SpawnFailed,
}

/// Why the server stopped a run before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Cancelled,
    TimedOut,
}

/// The final state of a run, from how it ended and whether the server stopped it.
///
/// A stop request wins over the exit status: a job that traps SIGTERM and exits 0
/// after a cancel is still `cancelled`, because that is what the user asked for.
pub fn final_status(exit: ExitKind, stop: Option<StopReason>) -> RunStatus {
    match (stop, exit) {
        (Some(StopReason::Cancelled), _) => RunStatus::Cancelled,
        (Some(StopReason::TimedOut), _) => RunStatus::TimedOut,
        (None, ExitKind::Code(0)) => RunStatus::Succeeded,
        (None, _) => RunStatus::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_text() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
        }
        assert!("done".parse::<RunStatus>().unwrap_err().contains("timed_out"));
    }

    #[test]
    fn run_id_accepts_hash_prefix_and_rejects_garbage() {
        assert_eq!("#42".parse::<RunId>(), Ok(RunId(42)));
        assert_eq!("7".parse::<RunId>(), Ok(RunId(7)));
        assert!("0".parse::<RunId>().is_err());
        assert!("abc".parse::<RunId>().is_err());
    }

    #[test]
    fn stop_request_decides_final_status() {
        assert_eq!(final_status(ExitKind::Code(0), None), RunStatus::Succeeded);
        assert_eq!(final_status(ExitKind::Code(3), None), RunStatus::Failed);
        assert_eq!(final_status(ExitKind::Signal(9), None), RunStatus::Failed);
        assert_eq!(final_status(ExitKind::SpawnFailed, None), RunStatus::Failed);
        assert_eq!(final_status(ExitKind::Code(0), Some(StopReason::Cancelled)), RunStatus::Cancelled);
        assert_eq!(final_status(ExitKind::Signal(15), Some(StopReason::TimedOut)), RunStatus::TimedOut);
    }
}

/// A parameter value as it is kept with a run: secrets are never kept, only the fact that one was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredParam {
    Text(String),
    Integer(i64),
    Boolean(bool),
    Redacted,
}

impl StoredParam {
    pub fn from_value(value: &crate::params::ParamValue) -> StoredParam {
        use crate::params::ParamValue;
        match value {
            ParamValue::Text(text) => StoredParam::Text(text.clone()),
            ParamValue::Integer(number) => StoredParam::Integer(*number),
            ParamValue::Boolean(flag) => StoredParam::Boolean(*flag),
            ParamValue::Secret(_) => StoredParam::Redacted,
        }
    }
}

/// Everything known about one run, as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub id: RunId,
    pub job: String,
    pub status: RunStatus,
    pub params: Vec<(String, StoredParam)>,
    /// The resolved argv; never holds a secret (secrets cannot appear in command templates).
    pub argv: Vec<String>,
    pub requested_by: Option<String>,
    pub created_at_us: i64,
    pub started_at_us: Option<i64>,
    pub finished_at_us: Option<i64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Why the run failed without an exit status (spawn failure, lost, secret lost in a restart).
    pub error: Option<String>,
    /// The replica that claimed the run (`None` while queued, and for runs from before replicas).
    pub replica: Option<String>,
}

/// What a server needs to find a run's processes again after it died (`kill -9`, a crash),
/// so that the next start can stop them before it calls the run lost and lets the queue go on.
///
/// A pid alone is not enough: after the leader exits its pid can be given to an unrelated
/// process. The leader's start time (in clock ticks since boot, `/proc/PID/stat` field 22)
/// and the boot id tell the same process from a newcomer with a reused pid. A cgroup, where
/// there is one, holds every process of the run, including those that left its process group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunProcesses {
    /// The run's own cgroup directory (an absolute path in the cgroup v2 file system).
    pub cgroup: Option<String>,
    /// The process group of the run; the leader's pid, since the leader starts the group.
    pub process_group: Option<i32>,
    /// When the leader started, in clock ticks since boot.
    pub leader_start_ticks: Option<u64>,
    /// The kernel's boot id when the run started: start times only compare within one boot.
    pub boot_id: Option<String>,
}
