//! Holding on to everything a run starts, so that none of it outlives the run, a cancel, a
//! timeout or the server itself.
//!
//! Every run's leader starts a process group of its own. Where cgroup v2 can be written
//! (Linux, as root or in a delegated subtree), each run also gets a cgroup of its own: the
//! child enters it between fork and exec, so every process the job will ever start is inside,
//! including one that calls `setsid` or double-forks out of the group, and `cgroup.kill`
//! ends them all at once. Elsewhere the process group is all there is, and a process that
//! leaves it is out of reach; [`Isolation::describe`] says which is in force. A job may
//! make cgroups inside its run's and move into them, so a run's cgroup always means its
//! whole subtree ([`cgroup_subtree`]). What no cgroup holds is a process that may write the
//! `cgroup.procs` of a cgroup outside the run's (a job running as root): it can leave.
//!
//! The leader also gets `PR_SET_PDEATHSIG` (SIGKILL), so it dies with the server. The kernel
//! sends that signal when the *thread* that forked the child ends, not the process, and a
//! tokio worker thread can end while the server lives (`block_in_place`, a runtime shut
//! down), so every spawn goes through one thread that lives as long as the process
//! ([`spawn`]). The kernel clears the setting in every fork, so it holds for the leader only;
//! the rest is found again at the next start through what [`RunProcesses`] records, and
//! killed there before the run is called lost (see `recovery.rs`).

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, OnceLock};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oneoff_core::{CgroupSetting, RunId, RunProcesses};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How often a wait for processes to leave looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Distinguishes the cgroups of several servers in one process (the integration tests) and
/// of successive servers that share a cgroup.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// What holds a run's processes together on this host, decided once at start.
#[derive(Debug)]
pub struct Isolation {
    cgroups: Option<CgroupParent>,
    /// Why there is no cgroup per run, for the start-up log.
    without_cgroups: Option<String>,
}

#[derive(Debug)]
struct CgroupParent {
    dir: PathBuf,
    /// `<pid>.<n>`: part of every run cgroup's name, unique among live servers.
    instance: String,
}

impl Isolation {
    /// Decides from the `[server] cgroup` setting. Only an explicit path that cannot be used
    /// is an error: the operator asked for a guarantee this host cannot give.
    pub fn from_setting(setting: &CgroupSetting) -> Result<Isolation, String> {
        let parent = match setting {
            CgroupSetting::Off => {
                return Ok(Isolation::process_group_only("cgroup = \"off\" in the config".into()));
            }
            CgroupSetting::Auto => match own_cgroup_dir() {
                Ok(dir) => dir,
                Err(reason) => return Ok(Isolation::process_group_only(reason)),
            },
            CgroupSetting::Under(dir) => dir.clone(),
        };
        let instance = format!("{}.{}", std::process::id(), INSTANCES.fetch_add(1, Ordering::Relaxed));
        let parent = CgroupParent { dir: parent, instance };
        match parent.probe() {
            Ok(()) => Ok(Isolation { cgroups: Some(parent), without_cgroups: None }),
            Err(reason) => match setting {
                CgroupSetting::Under(dir) => Err(format!(
                    "cgroup {} cannot hold runs: {reason}; give a writable cgroup v2 directory, \
                     or cgroup = \"auto\" or \"off\"",
                    dir.display()
                )),
                _ => Ok(Isolation::process_group_only(reason)),
            },
        }
    }

    fn process_group_only(reason: String) -> Isolation {
        Isolation { cgroups: None, without_cgroups: Some(reason) }
    }

    /// One sentence for the start-up log: what is guaranteed about a run's processes here.
    pub fn describe(&self) -> String {
        let death = if cfg!(target_os = "linux") { "; a run's leader dies with the server" } else { "" };
        match (&self.cgroups, &self.without_cgroups) {
            (Some(parent), _) => format!(
                "each run gets a cgroup under {}: nothing a run starts outlives it{death}",
                parent.dir.display()
            ),
            (None, reason) => format!(
                "runs are held by their process group only ({}): a process that calls setsid can outlive its run{death}",
                reason.as_deref().unwrap_or("no cgroup v2")
            ),
        }
    }

    pub fn uses_cgroups(&self) -> bool {
        self.cgroups.is_some()
    }

    /// Creates the run's cgroup (none without cgroups) and opens its `cgroup.procs` for the
    /// child to write itself into.
    pub fn create_cgroup(&self, run: RunId) -> io::Result<Option<RunCgroup>> {
        let Some(parent) = &self.cgroups else { return Ok(None) };
        let dir = parent.dir.join(format!("oneoff-run-{run}.{}", parent.instance));
        if let Err(error) = std::fs::create_dir(&dir) {
            // Left over by a server that had this pid and the same instance number: empty it.
            if error.kind() != io::ErrorKind::AlreadyExists {
                return Err(error);
            }
            kill_cgroup(&dir);
        }
        match std::fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs")) {
            Ok(procs) => Ok(Some(RunCgroup { dir, procs: Arc::new(procs.into()), armed: true })),
            Err(error) => {
                let _ = remove_cgroup(&dir);
                Err(error)
            }
        }
    }
}

impl CgroupParent {
    /// Makes a child cgroup, moves a process into it and removes it, as every run will.
    fn probe(&self) -> Result<(), String> {
        let is_cgroup2 = |dir: &Path| dir.join("cgroup.controllers").exists();
        if !self.dir.exists() && self.dir.parent().is_some_and(is_cgroup2) {
            std::fs::create_dir(&self.dir)
                .map_err(|error| format!("cannot create the cgroup {}: {error}", self.dir.display()))?;
        }
        if !is_cgroup2(&self.dir) {
            return Err(format!("{} is not a cgroup v2 directory", self.dir.display()));
        }
        let probe = self.dir.join(format!("oneoff-probe.{}", self.instance));
        std::fs::create_dir(&probe)
            .map_err(|error| format!("cannot create a cgroup in {}: {error}", self.dir.display()))?;
        let moved = probe_moving_a_process(&probe);
        if let Err(error) = remove_cgroup(&probe) {
            tracing::warn!(cgroup = %probe.display(), %error, "cannot remove the probe cgroup");
        }
        moved
    }
}

/// The server's own cgroup directory, from `/proc/self/cgroup` and the cgroup2 mount.
fn own_cgroup_dir() -> Result<PathBuf, String> {
    if !cfg!(target_os = "linux") {
        return Err("cgroups exist on Linux only".into());
    }
    let membership = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|error| format!("cannot read /proc/self/cgroup: {error}"))?;
    let own = unified_cgroup(&membership).ok_or("the server is in no cgroup v2 hierarchy")?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|error| format!("cannot read /proc/self/mountinfo: {error}"))?;
    let (root, mount_point) = cgroup2_mount(&mounts).ok_or("no cgroup2 file system is mounted")?;
    let relative = Path::new(own)
        .strip_prefix(&root)
        .map_err(|_| format!("the server's cgroup {own} is outside the mounted cgroup2 root {root}"))?;
    let mount_point = PathBuf::from(mount_point);
    Ok(if relative.as_os_str().is_empty() { mount_point } else { mount_point.join(relative) })
}

/// The path of the `0::PATH` line of `/proc/PID/cgroup` (the cgroup v2 membership).
fn unified_cgroup(membership: &str) -> Option<&str> {
    membership.lines().find_map(|line| line.strip_prefix("0::"))
}

/// The root and mount point of the first cgroup2 mount in `/proc/PID/mountinfo`.
fn cgroup2_mount(mountinfo: &str) -> Option<(String, String)> {
    mountinfo.lines().find_map(|line| {
        let (mount, filesystem) = line.split_once(" - ")?;
        if filesystem.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut fields = mount.split(' ').skip(3);
        let root = unescape_mount_field(fields.next()?);
        let mount_point = unescape_mount_field(fields.next()?);
        Some((root, mount_point))
    })
}

/// mountinfo writes space, tab, newline and backslash as `\040`-style octal escapes.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match (bytes[index], octal) {
            (b'\\', Some(digits)) => {
                out.push(digits.iter().fold(0u8, |value, digit| value.wrapping_mul(8) + (digit - b'0')));
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A run's own cgroup, from before its spawn until it is removed at the run's end.
///
/// Dropped without [`RunCgroup::into_dir`] (its supervisor was dropped: a runtime shutting
/// down under a run), it kills what is inside and removes itself on the spot.
pub struct RunCgroup {
    dir: PathBuf,
    procs: Arc<OwnedFd>,
    /// False once the supervisor took over the removal.
    armed: bool,
}

impl RunCgroup {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Closes the cgroup's `cgroup.procs` and hands the removal to the caller.
    pub fn into_dir(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.dir)
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        kill_cgroup(&self.dir);
        // Killed processes leave the cgroup within moments; do not block long in a drop.
        for _ in 0..50 {
            if remove_cgroup(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        tracing::warn!(cgroup = %self.dir.display(), "cannot remove the cgroup of a run that was abandoned");
    }
}

/// The cgroup and every cgroup below it, each parent before its children. A job may make
/// cgroups inside its run's and move into them, so whatever lists, signals or removes a run's
/// processes walks all of them, never the top `cgroup.procs` alone. Iterative: a job chooses
/// how deep the tree is.
pub fn cgroup_subtree(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    let mut next = 0;
    while let Some(cgroup) = found.get(next).cloned() {
        if let Ok(entries) = std::fs::read_dir(&cgroup) {
            // In cgroupfs every directory is a cgroup; the files are its interface.
            found.extend(
                entries
                    .flatten()
                    .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                    .map(|entry| entry.path()),
            );
        }
        next += 1;
    }
    found
}

/// The processes in a cgroup and in every cgroup below it; none when the cgroup is gone.
pub fn cgroup_pids(dir: &Path) -> Vec<i32> {
    cgroup_subtree(dir)
        .iter()
        .flat_map(|cgroup| {
            std::fs::read_to_string(cgroup.join("cgroup.procs"))
                .map(|text| text.lines().filter_map(|line| line.trim().parse().ok()).collect::<Vec<i32>>())
                .unwrap_or_default()
        })
        .collect()
}

/// Whether any process is left in the cgroup or below it. `cgroup.events` says so for the
/// whole subtree in one read (`populated 0`); where it cannot be read, the subtree's
/// `cgroup.procs` are counted.
pub fn cgroup_populated(dir: &Path) -> bool {
    match std::fs::read_to_string(dir.join("cgroup.events")) {
        Ok(events) => match events.lines().find_map(|line| line.strip_prefix("populated ")) {
            Some(flag) => flag.trim() != "0",
            None => !cgroup_pids(dir).is_empty(),
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound && !dir.exists() => false,
        Err(_) => !cgroup_pids(dir).is_empty(),
    }
}

/// Sends `signal` to every process in the cgroup and below it; returns how many there were.
pub fn signal_cgroup(dir: &Path, signal: Signal) -> usize {
    let pids = cgroup_pids(dir);
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), signal);
    }
    pids.len()
}

/// SIGKILLs everything in the cgroup and below it, including what forks meanwhile
/// (`cgroup.kill`, Linux 5.14, kills the whole subtree); on older kernels, rounds of SIGKILL
/// to every process of the subtree until none is left.
pub fn kill_cgroup(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), b"1").is_ok() {
        return;
    }
    kill_cgroup_by_signals(dir);
}

/// The fallback of [`kill_cgroup`] for kernels without `cgroup.kill`.
fn kill_cgroup_by_signals(dir: &Path) {
    for _ in 0..100 {
        if signal_cgroup(dir, Signal::SIGKILL) == 0 {
            return;
        }
    }
}

/// Waits until the cgroup holds no process (a killed one leaves it when it exits), at most `within`.
pub async fn until_cgroup_empty(dir: &Path, within: Duration) -> bool {
    until_none_left(within, || usize::from(cgroup_populated(dir))).await
}

/// Waits until `count_left` says none are left, at most `within`; true when none are.
pub async fn until_none_left(within: Duration, mut count_left: impl FnMut() -> usize) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if count_left() == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Removes an empty cgroup and the cgroups a job made inside it, the deepest first (a
/// cgroup with children cannot be removed); one that is already gone is fine. The error is
/// the first one met.
pub fn remove_cgroup(dir: &Path) -> io::Result<()> {
    let mut first_error = None;
    for cgroup in cgroup_subtree(dir).iter().rev() {
        match std::fs::remove_dir(cgroup) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                first_error.get_or_insert(error);
            }
            _ => {}
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// What to record about a leader that just started (and its cgroup).
pub fn processes_of(leader: Option<u32>, cgroup: Option<&RunCgroup>) -> RunProcesses {
    let pid = leader.and_then(|pid| i32::try_from(pid).ok());
    RunProcesses {
        cgroup: cgroup.map(|cgroup| cgroup.dir.display().to_string()),
        process_group: pid,
        leader_start_ticks: pid.and_then(start_ticks),
        boot_id: boot_id(),
    }
}

/// The kernel's id of the current boot; process start times only compare within one.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|id| id.trim().to_string())
}

/// When a process started, in clock ticks since boot (`/proc/PID/stat` field 22).
pub fn start_ticks(pid: i32) -> Option<u64> {
    Some(parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?.start_ticks)
}

/// The fields of `/proc/PID/stat` that finding a process group needs.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    zombie: bool,
    process_group: i32,
    start_ticks: u64,
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (the state), so field N is `fields[N - 3]`.
    Some(Stat {
        zombie: matches!(*fields.first()?, "Z" | "X"),
        process_group: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// The live processes of the process group `group` that started no earlier than its leader
/// did: a newcomer that reuses the group's number after every member left cannot be older.
pub fn group_members(group: i32, leader_start_ticks: u64) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().as_deref().and_then(parse_stat).is_some_and(
                |stat| !stat.zombie && stat.process_group == group && stat.start_ticks >= leader_start_ticks,
            )
        })
        .collect()
}

/// A spawn handed to the spawner thread.
struct SpawnRequest {
    command: Command,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The thread every job is forked from; it lives as long as the server process, so that
/// `PR_SET_PDEATHSIG` fires when the server dies and never before.
static SPAWNER: OnceLock<Option<std_mpsc::Sender<SpawnRequest>>> = OnceLock::new();

/// Spawns the job's leader into its cgroup (if any), dying with the server, from the spawner
/// thread; the child belongs to the caller's tokio runtime.
pub async fn spawn(mut command: Command, cgroup: Option<&RunCgroup>) -> io::Result<Child> {
    install_pre_exec_hook(command.as_std_mut(), cgroup.map(|cgroup| cgroup.procs.clone()), Hook::Leader);
    let runtime = tokio::runtime::Handle::current();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = std_mpsc::channel::<SpawnRequest>();
        let thread = std::thread::Builder::new().name("oneoff-spawner".into()).spawn(move || {
            for request in incoming {
                // This thread must outlive every run, so a panic (a runtime shutting down
                // under the spawn) fails that spawn only.
                let SpawnRequest { mut command, runtime, reply } = request;
                let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _runtime = runtime.enter();
                    command.spawn()
                }));
                let spawned = spawned.unwrap_or_else(|_| Err(io::Error::other("the spawn panicked")));
                // A caller that gave up drops the child, which kills it (`kill_on_drop`).
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _runtime = runtime.enter();
                    drop(reply.send(spawned));
                }));
            }
        });
        match thread {
            Ok(_) => Some(requests),
            Err(error) => {
                tracing::warn!(%error, "cannot start the spawner thread; jobs are forked from worker threads");
                None
            }
        }
    });
    let Some(spawner) = spawner else { return command.spawn() };
    let (reply, answer) = oneshot::channel();
    if let Err(mut refused) = spawner.send(SpawnRequest { command, runtime, reply }) {
        return refused.0.command.spawn();
    }
    answer.await.map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// What the pre-exec hook is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    /// A job's leader: enter the cgroup, die with the server, exec.
    Leader,
    /// The start-up probe: enter the cgroup, then stop before exec with `ECANCELED`, which
    /// tells the parent that the move worked (any other error is why it did not).
    Probe,
}

/// Between fork and exec, the child writes itself into the run's `cgroup.procs` (so it is
/// inside before it can fork) and asks for SIGKILL when its parent thread, the spawner, ends.
#[allow(unsafe_code)]
fn install_pre_exec_hook(command: &mut std::process::Command, cgroup_procs: Option<Arc<OwnedFd>>, hook: Hook) {
    use std::os::unix::process::CommandExt;
    let server = rustix::process::getpid();
    let run_in_child = move || -> io::Result<()> {
        if let Some(procs) = &cgroup_procs {
            // "0" is the writing process itself.
            rustix::io::write(procs, b"0")?;
        }
        if hook == Hook::Probe {
            return Err(rustix::io::Errno::CANCELED.into());
        }
        #[cfg(target_os = "linux")]
        {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The server may have died before the line above: then nobody will send the signal.
            if rustix::process::getppid() != Some(server) {
                return Err(rustix::io::Errno::SRCH.into());
            }
        }
        let _ = server;
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
    // calls are allowed. It makes raw syscalls through rustix only (write, prctl, getppid),
    // allocates nothing (its errors are raw OS error codes), takes no lock and reads no state
    // shared with other threads: the fd was opened by the parent and is only borrowed, and
    // `server` and `hook` are plain values copied before the fork.
    unsafe {
        command.pre_exec(run_in_child);
    }
}

/// Moves a short-lived child into `dir` the way a job's leader will be, and says why not.
fn probe_moving_a_process(dir: &Path) -> Result<(), String> {
    let cannot = |error: io::Error| format!("cannot move a process into {}: {error}", dir.display());
    let procs = std::fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs")).map_err(cannot)?;
    // Never executed: the hook stops the child before exec.
    let mut command = std::process::Command::new("/");
    install_pre_exec_hook(&mut command, Some(Arc::new(procs.into())), Hook::Probe);
    match command.spawn() {
        Err(error) if error.raw_os_error() == Some(rustix::io::Errno::CANCELED.raw_os_error()) => Ok(()),
        Err(error) => Err(cannot(error)),
        Ok(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
            Err("the probe child was not stopped before exec".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4240 4240 0 -1 4194560 155 0 0 0 0 0 0 0 20 0 1 0 987654 2293760 212";
        assert_eq!(parse_stat(stat), Some(Stat { zombie: false, process_group: 4240, start_ticks: 987654 }));
        assert!(parse_stat("12 (sleep) Z 1 12 12 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0").unwrap().zombie);
        assert_eq!(parse_stat("12 (truncated) S 1"), None);
    }

    #[test]
    fn an_explicit_cgroup_that_cannot_hold_runs_is_refused_and_off_is_not() {
        let error = Isolation::from_setting(&CgroupSetting::Under("/nonexistent/oneoff".into())).unwrap_err();
        assert!(
            error.starts_with(
                "cgroup /nonexistent/oneoff cannot hold runs: /nonexistent/oneoff is not a cgroup v2 directory"
            ),
            "{error}"
        );
        assert!(error.contains("cgroup = \"auto\" or \"off\""), "{error}");
        let off = Isolation::from_setting(&CgroupSetting::Off).unwrap();
        assert!(!off.uses_cgroups());
        assert!(off.describe().contains("a process that calls setsid can outlive its run"), "{}", off.describe());
    }

    /// Needs what the server needs for cgroups (a writable cgroup v2 hierarchy), like the
    /// integration tests of `hostile_processes`.
    #[test]
    fn without_cgroup_kill_the_signal_rounds_reach_a_process_two_sub_cgroups_down() {
        use std::os::unix::process::ExitStatusExt;
        let parent = own_cgroup_dir().expect("a cgroup v2 hierarchy");
        let run = parent.join(format!("oneoff-test-subtree.{}", std::process::id()));
        let nested = run.join("a").join("b");
        std::fs::create_dir_all(&nested).expect("a writable cgroup v2 hierarchy");
        std::fs::create_dir(run.join("empty")).unwrap();
        let mut child = std::process::Command::new("sleep").arg("300").spawn().unwrap();
        std::fs::write(nested.join("cgroup.procs"), child.id().to_string()).unwrap();
        let listed = cgroup_pids(&run);
        if listed.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert_eq!(listed, vec![child.id() as i32], "the process two cgroups down is the run's");
        assert!(cgroup_populated(&run));

        kill_cgroup_by_signals(&run);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the SIGKILL rounds missed the process in a sub-cgroup");
            }
            std::thread::sleep(POLL_INTERVAL);
        };
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
        assert!(!cgroup_populated(&run));
        remove_cgroup(&run).expect("the subtree is removed bottom-up");
        assert!(!run.exists());
    }

    #[test]
    fn the_unified_cgroup_and_its_mount_are_found() {
        let membership = "9:name=systemd:/\n4:memory:/x\n0::/system.slice/oneoff.service\n";
        assert_eq!(unified_cgroup(membership), Some("/system.slice/oneoff.service"));
        assert_eq!(unified_cgroup("4:memory:/x\n"), None);
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                         41 31 0:38 / /sys/fs/cgroup/un\\040ified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(mountinfo), Some(("/".into(), "/sys/fs/cgroup/un ified".into())));
        assert_eq!(cgroup2_mount("30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw\n"), None);
    }
}
