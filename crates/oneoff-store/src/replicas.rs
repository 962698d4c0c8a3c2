//! Replicas sharing one database: their rows, the claim of queued runs, and cross-replica cancel.
//!
//! Every replica has a row (its name, a random instance id per process, where it runs) whose
//! heartbeat moves every `replica_timeout / 3`. A replica whose heartbeat is older than the
//! timeout is declared lost by exactly one survivor, which then ends its runs. The queue is
//! the `queued` rows: a replica claims runs in one transaction that holds the claim lock
//! (SQLite's write lock, PostgreSQL's advisory lock), so `max_concurrent_runs` and every
//! job's `max_concurrent` hold across all replicas together. Times of heartbeats are the
//! database's clock (PostgreSQL's `clock_timestamp()`), so replicas' clocks do not matter.

use std::collections::HashMap;
use std::time::Duration;

use oneoff_core::{RunId, RunRecord};

use crate::{dispatch, Store, StoreError};

/// Who a replica is: its name (unique among live replicas) and this process of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaIdentity {
    pub name: String,
    /// Random per process: a row that holds another instance is no longer this process's.
    pub instance: String,
    pub host: String,
    pub boot_id: Option<String>,
    pub pid: u32,
}

/// A replica's row as others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub name: String,
    pub instance: String,
    pub host: String,
    pub boot_id: Option<String>,
    pub pid: u32,
    pub started_at_us: i64,
    /// The database's clock at the last heartbeat.
    pub heartbeat_at_us: i64,
    /// How long ago that was, by the database's clock.
    pub heartbeat_age_ms: i64,
    pub draining: bool,
    /// Runs it is running now.
    pub running: u32,
}

/// What registering a replica's name found.
#[derive(Debug, Clone)]
pub enum Registration {
    /// The row is this process's now; `previous` is the row it replaced (a lost, stale or
    /// stopped instance of the same name), if any.
    Registered { previous: Option<ReplicaRecord> },
    /// Another instance holds the name with a fresh heartbeat; nothing was changed.
    InUse(ReplicaRecord),
}

/// A replica that [`Store::declare_lost`] declared lost, with what it left.
#[derive(Debug, Clone)]
pub struct LostReplica {
    pub name: String,
    pub host: String,
    /// Its last heartbeat, by the database's clock.
    pub heartbeat_at_us: i64,
    /// Its `running` runs: they are still `running` in the store; the survivor ends them.
    pub running: Vec<RunRecord>,
    /// Queued runs whose secret values only it held: they can never run.
    pub held: Vec<RunRecord>,
}

/// What a claiming replica may take.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub replica: &'a ReplicaIdentity,
    /// `max_concurrent_runs`: runs running on all replicas together.
    pub max_concurrent_runs: u32,
    /// Each job's `max_concurrent`, for the jobs that have one.
    pub job_limits: &'a HashMap<String, u32>,
    /// At most this many runs in this claim.
    pub max: u32,
    /// Queued runs held by this replica that it is ready to start (their values are in its
    /// memory); other runs held by it are not taken yet.
    pub holding: &'a [RunId],
    pub now_us: i64,
}

/// What [`Store::request_cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelRequest {
    /// The run was queued and is now `cancelled`.
    CancelledWhileQueued,
    /// The run is running on a live replica; the request is recorded for it to act on.
    Requested {
        replica: String,
    },
    /// The run's replica is not responding: the run is now `lost`, with a system line saying so.
    EndedLost {
        replica: Option<String>,
    },
    /// The run had already finished.
    AlreadyFinished,
    NotFound,
}

/// A replica's own runs left by an earlier instance of it (or by a version without replicas).
#[derive(Debug, Clone, Default)]
pub struct Leftovers {
    /// `running` runs claimed by this name, or without a replica.
    pub running: Vec<RunRecord>,
    /// `queued` runs held by this name: their secret values died with the earlier instance.
    pub held: Vec<RunRecord>,
}

impl Store {
    /// Takes the replica's name if it is free, or held by a lost or stale instance (no
    /// heartbeat for `replica_timeout`); otherwise says who holds it.
    pub async fn register_replica(
        &self,
        identity: &ReplicaIdentity,
        replica_timeout: Duration,
        now_us: i64,
    ) -> Result<Registration, StoreError> {
        dispatch!(self, store => store.register_replica(identity, replica_timeout, now_us).await)
    }

    /// Takes the name whatever holds it (the caller knows the holder is dead: same host, its pid gone).
    pub async fn take_over_replica(&self, identity: &ReplicaIdentity, now_us: i64) -> Result<(), StoreError> {
        dispatch!(self, store => store.take_over_replica(identity, now_us).await)
    }

    /// Moves the replica's heartbeat. `false`: the row is no longer this instance's (it was
    /// declared lost, or taken over), and this process must stop its runs.
    pub async fn heartbeat(&self, identity: &ReplicaIdentity) -> Result<bool, StoreError> {
        dispatch!(self, store => store.heartbeat(identity).await)
    }

    /// Marks the replica as draining (a SIGTERM): it claims nothing more.
    pub async fn set_draining(&self, identity: &ReplicaIdentity) -> Result<(), StoreError> {
        dispatch!(self, store => store.set_draining(identity).await)
    }

    /// Removes the replica's row on a clean stop (only this instance's row).
    pub async fn remove_replica(&self, identity: &ReplicaIdentity) -> Result<(), StoreError> {
        dispatch!(self, store => store.remove_replica(identity).await)
    }

    /// The replicas not declared lost, by name, with their running-run counts.
    pub async fn list_replicas(&self) -> Result<Vec<ReplicaRecord>, StoreError> {
        dispatch!(self, store => store.list_replicas().await)
    }

    /// Declares lost every other replica without a heartbeat for `replica_timeout` (exactly
    /// one survivor gets each) and returns what they left, for the survivor to end. Nothing,
    /// if `survivor` is not itself live. Declaring is a lease of `replica_timeout`: a replica
    /// declared that long ago whose runs are still not ended (its survivor died too) is
    /// declared again, to one survivor.
    pub async fn declare_lost(
        &self,
        survivor: &ReplicaIdentity,
        replica_timeout: Duration,
    ) -> Result<Vec<LostReplica>, StoreError> {
        dispatch!(self, store => store.declare_lost(survivor, replica_timeout).await)
    }

    /// Claims queued runs for `claim.replica`, oldest first, within the global and per-job
    /// limits counted over every replica, in one transaction; they are `running` on return.
    /// A run waits behind older runs unless their job is at its limit or another replica holds
    /// them. Nothing if the replica is not live or is draining.
    pub async fn claim_runs(&self, claim: &Claim<'_>) -> Result<Vec<RunRecord>, StoreError> {
        dispatch!(self, store => store.claim_runs(claim).await)
    }

    /// Cancels a run whichever replica has it: a queued one at once; a running one on a live
    /// replica by recording the request (the owner polls [`Store::cancel_requests`]); a
    /// running one whose replica has no heartbeat for `replica_timeout` ends `lost`.
    pub async fn request_cancel(
        &self,
        run: RunId,
        replica_timeout: Duration,
        now_us: i64,
    ) -> Result<CancelRequest, StoreError> {
        dispatch!(self, store => store.request_cancel(run, replica_timeout, now_us).await)
    }

    /// This replica's running runs with a cancel requested.
    pub async fn cancel_requests(&self, identity: &ReplicaIdentity) -> Result<Vec<RunId>, StoreError> {
        dispatch!(self, store => store.cancel_requests(&identity.name).await)
    }

    /// What earlier instances of this replica name left (see [`Leftovers`]).
    pub async fn leftovers(&self, name: &str) -> Result<Leftovers, StoreError> {
        dispatch!(self, store => store.leftovers(name).await)
    }
}

/// A queued row as the claim sees it.
pub(crate) struct QueuedRow {
    pub id: i64,
    pub job: String,
    pub held_by: Option<String>,
}

/// The runs a claim takes, oldest first: the FIFO rule with the limits, given what runs now.
pub(crate) fn pick_claims(claim: &Claim<'_>, running_per_job: HashMap<String, u32>, queued: &[QueuedRow]) -> Vec<i64> {
    let mut running_per_job = running_per_job;
    let mut running: u32 = running_per_job.values().sum();
    let mut picked = Vec::new();
    for row in queued {
        if running >= claim.max_concurrent_runs || picked.len() >= claim.max as usize {
            break;
        }
        let held_elsewhere = row
            .held_by
            .as_ref()
            .is_some_and(|holder| *holder != claim.replica.name || !claim.holding.contains(&RunId(row.id)));
        if held_elsewhere {
            continue;
        }
        let job_running = running_per_job.entry(row.job.clone()).or_default();
        if claim.job_limits.get(&row.job).is_some_and(|max| *job_running >= *max) {
            continue;
        }
        *job_running += 1;
        running += 1;
        picked.push(row.id);
    }
    picked
}

/// The system line of a run ended `lost` by a cancel while its replica was not responding.
pub(crate) fn lost_on_cancel_line(replica: Option<&str>, heartbeat_age_ms: Option<i64>, timeout: Duration) -> String {
    match (replica, heartbeat_age_ms) {
        (Some(name), Some(age)) => format!(
            "cancel requested while replica {name} was not responding (no heartbeat for {} s; replica_timeout {} s): \
             the run is marked lost; it may have gone on until its replica stopped, and it is not run again",
            age / 1000,
            timeout.as_secs()
        ),
        (Some(name), None) => format!(
            "cancel requested while replica {name} is gone: the run is marked lost; it may have gone on until \
             its replica stopped, and it is not run again"
        ),
        (None, _) => "cancel requested for a run started by a server that is gone: the run is marked lost".into(),
    }
}
