//! Jobs that try to outlive their run: processes that leave the process group with `setsid`
//! and a double fork (one ignoring SIGTERM), stopped when the run ends, on cancel, on timeout,
//! and after a `kill -9` of the real `oneoff serve` process, before the queued run of the
//! same `max_concurrent = 1` job may start.
//!
//! These tests need what the server needs for the promise: a writable cgroup v2 hierarchy
//! (Linux, as root or in a delegated cgroup). With `cgroup = "off"` they would fail.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    config_text, eventually, get_json, process_alive, serve_process, write_config, ServerProcess, TestServer,
};

/// Starts two processes that leave the run's process group: a `setsid` shell's background
/// `sleep` that ignores SIGTERM, and a `setsid sleep` whose parent shell exits at once (a
/// double fork). Each prints its pid.
const ESCAPE: &str =
    r#"setsid sh -c 'trap "" TERM; sleep 300 & echo "escaped $!"'; sh -c 'setsid sleep 301 & echo "double $!"'"#;

fn jobs() -> String {
    format!(
        r#"
[[job]]
name = "ends"
command = ["sh", "-c", '''{ESCAPE}; echo ready''']

[[job]]
name = "endless"
command = ["sh", "-c", '''{ESCAPE}; echo ready; sleep 300''']
grace = "300ms"

[[job]]
name = "slow"
command = ["sh", "-c", '''{ESCAPE}; echo ready; sleep 300''']
timeout = "1s"
grace = "300ms"
"#
    )
}

/// The pids the job printed ("escaped PID", "double PID"), once both are in the log.
async fn escaped_pids(server: &TestServer, id: i64) -> Vec<i32> {
    eventually("the job to print the pids of its escaped processes", Duration::from_secs(20), || async {
        let lines = server.lines(id, "stdout").await;
        let pids: Vec<i32> = lines
            .iter()
            .filter_map(|line| line.strip_prefix("escaped ").or_else(|| line.strip_prefix("double ")))
            .filter_map(|pid| pid.trim().parse().ok())
            .collect();
        (pids.len() == 2 && lines.iter().any(|line| line == "ready")).then_some(pids)
    })
    .await
}

fn assert_all_dead(pids: &[i32], when: &str) {
    for pid in pids {
        assert!(!process_alive(*pid), "process {pid} escaped with setsid and is still alive {when}");
    }
}

#[tokio::test]
async fn nothing_a_job_started_outlives_the_run_when_it_ends() {
    let server = TestServer::start(&jobs()).await;
    let id = server.start_run("ends", json!({})).await;
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let pids = escaped_pids(&server, id).await;
    assert_all_dead(&pids, "after its run ended");
}

#[tokio::test]
async fn nothing_a_job_started_outlives_a_cancel() {
    let server = TestServer::start(&jobs()).await;
    let id = server.start_run("endless", json!({})).await;
    let pids = escaped_pids(&server, id).await;
    for pid in &pids {
        assert!(process_alive(*pid), "the escaped process {pid} runs while its run does");
    }
    let (status, body) = server.post(&format!("/api/v1/runs/{id}/cancel"), json!({})).await;
    assert!(status.is_success(), "{status}: {body}");
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_all_dead(&pids, "after its run was cancelled");
    let system = server.lines(id, "system").await;
    assert!(system.iter().any(|line| line.contains("SIGTERM to every process of the run")), "{system:?}");
}

#[tokio::test]
async fn nothing_a_job_started_outlives_a_timeout() {
    let server = TestServer::start(&jobs()).await;
    let id = server.start_run("slow", json!({})).await;
    let pids = escaped_pids(&server, id).await;
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "timed_out", "{run}");
    assert_all_dead(&pids, "after its run timed out");
}

async fn stdout_lines(url: &str, id: i64) -> Vec<String> {
    let log = get_json(&format!("{url}/api/v1/runs/{id}/log?limit=1000")).await;
    log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["stream"] == "stdout")
        .map(|entry| entry["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A server killed with `kill -9` while the first run of a `max_concurrent = 1` job ran and
/// a second one waited; what is left to look at.
struct Crashed {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    /// The running run, then the queued one.
    ids: Vec<i64>,
    /// The first run's processes: escaped with setsid (ignoring SIGTERM), escaped by a double
    /// fork, in the group, and the leader.
    pids: Vec<i32>,
}

impl Crashed {
    /// Every pid every run of the job wrote, in order (four per run).
    fn all_pids(&self) -> Vec<i32> {
        let text = std::fs::read_to_string(self.dir.path().join("pids")).unwrap();
        text.lines().map(|pid| pid.trim().parse().unwrap()).collect()
    }
}

async fn crash_while_running(server_extra: &str) -> Crashed {
    crash_while_running_after(server_extra, "").await
}

/// As [`crash_while_running`], with `prelude` run first by each run's leader shell.
async fn crash_while_running_after(server_extra: &str, prelude: &str) -> Crashed {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    // Each run first reports which processes of earlier runs are still alive (not zombies),
    // then starts its own: two that escape the group, one that stays in it, and the leader.
    let script = format!(
        r#"{prelude}for p in $(cat {file} 2>/dev/null); do s=$(cut -d" " -f3 /proc/$p/stat 2>/dev/null); if [ -n "$s" ] && [ "$s" != Z ]; then echo "alive $p"; fi; done; echo checked; setsid sh -c 'trap "" TERM; sleep 300 & echo $! >> {file}'; sh -c 'setsid sleep 301 & echo $! >> {file}'; sleep 302 & echo $! >> {file}; echo $$ >> {file}; echo ready; wait"#,
        file = pidfile.display()
    );
    let jobs = format!(
        r#"
[[job]]
name = "exclusive"
command = ["sh", "-c", '''{script}''']
max_concurrent = 1
grace = "1s"
"#
    );
    let server_extra = format!("drain = \"200ms\"\n{server_extra}");
    let config = write_config(dir.path(), &config_text(&dir.path().join("data"), &server_extra, &jobs));
    let mut server = serve_process(&config);
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = client.post(format!("{}/api/v1/runs", server.url)).json(&json!({ "job": "exclusive" }));
        let run: Value = response.send().await.unwrap().json().await.unwrap();
        ids.push(run["id"].as_i64().expect("run id"));
    }
    let url = server.url.clone();
    eventually("the first run to start its processes", Duration::from_secs(20), || async {
        stdout_lines(&url, ids[0]).await.contains(&"ready".to_string()).then_some(())
    })
    .await;
    assert_eq!(get_json(&format!("{url}/api/v1/runs/{}", ids[1])).await["status"], "queued");

    server.child.kill().unwrap(); // SIGKILL: no chance to clean up
    server.child.wait().unwrap();
    let crashed = Crashed { pids: Vec::new(), dir, config, ids };
    let pids = crashed.all_pids();
    assert_eq!(pids.len(), 4, "{pids:?}");
    let leader = pids[3];
    eventually("the run's leader to die with the server", Duration::from_secs(10), || async {
        (!process_alive(leader)).then_some(())
    })
    .await;
    for pid in &pids[..3] {
        assert!(process_alive(*pid), "process {pid} runs on, unsupervised, while no server is up");
    }
    Crashed { pids, ..crashed }
}

/// Asserts the run is `lost` and returns its last log line, which says what recovery found and did.
async fn lost_and_what_recovery_said(url: &str, id: i64) -> String {
    let lost = get_json(&format!("{url}/api/v1/runs/{id}")).await;
    assert_eq!(lost["status"], "lost", "{lost}");
    let log = get_json(&format!("{url}/api/v1/runs/{id}/log")).await;
    let last = log["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["stream"], "system");
    let said = last["text"].as_str().unwrap().to_string();
    assert!(said.contains("outcome is unknown"), "{said}");
    said
}

fn stop_gracefully(mut server: ServerProcess) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    assert!(server.child.wait().unwrap().success());
}

#[tokio::test]
async fn after_kill_9_the_next_start_stops_a_lost_runs_processes_before_the_queue_resumes() {
    let crashed = crash_while_running("").await;
    let server = serve_process(&crashed.config);
    let url = server.url.clone();
    let said = lost_and_what_recovery_said(&url, crashed.ids[0]).await;
    assert_all_dead(&crashed.pids, "after the next server start");
    assert!(said.contains("3 of its processes were still running in its cgroup"), "{said}");
    assert!(said.contains("sent SIGTERM, still running after 1s: sent SIGKILL, and they ended."), "{said}");

    // The queued run started after recovery, and found nothing of the lost run alive.
    let second = eventually("the queued run to start and check", Duration::from_secs(20), || async {
        let lines = stdout_lines(&url, crashed.ids[1]).await;
        lines.contains(&"checked".to_string()).then_some(lines)
    })
    .await;
    let alive: Vec<&String> = second.iter().filter(|line| line.starts_with("alive ")).collect();
    assert!(alive.is_empty(), "the lost run's processes were alive when the queued run started: {alive:?}");

    // A graceful stop cancels the second run, and takes its processes with it.
    stop_gracefully(server);
    let all = crashed.all_pids();
    assert_eq!(all.len(), 8, "{all:?}");
    assert_all_dead(&all, "after a graceful stop");
}

#[tokio::test]
async fn without_cgroups_the_next_start_still_stops_a_lost_runs_process_group() {
    let crashed = crash_while_running("cgroup = \"off\"").await;
    let server = serve_process(&crashed.config);
    let url = server.url.clone();
    let said = lost_and_what_recovery_said(&url, crashed.ids[0]).await;
    assert!(said.contains("1 of its processes were still running in its process group"), "{said}");
    assert!(said.contains("sent SIGTERM, and they ended."), "{said}");
    let in_group = crashed.pids[2];
    assert!(!process_alive(in_group), "the lost run's process {in_group} survived the next start");
    // What left the group is out of reach without a cgroup, as docs/configuration.md says.
    for pid in &crashed.pids[..2] {
        assert!(process_alive(*pid), "process {pid} left the group, so only a cgroup can reach it");
    }
    stop_gracefully(server);
    for pid in crashed.all_pids() {
        // Only the escaped ones are still alive; the test cleans up after them.
        if process_alive(pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Makes a cgroup `sub` inside the run's own cgroup and moves the job's shell into it, so that
/// everything it starts afterwards is in `sub`, not in the run's `cgroup.procs`; prints
/// `run cgroup DIR` (the run's cgroup). Only the job's own cgroup is written.
const INTO_SUB_CGROUP: &str = r#"mnt=$(grep -m1 ' - cgroup2 ' /proc/self/mountinfo | cut -d' ' -f5); run="$mnt$(sed -n 's/^0:://p' /proc/self/cgroup)"; mkdir "$run/sub" && echo $$ > "$run/sub/cgroup.procs" && echo "run cgroup $run"; "#;

/// The run's cgroup, as the job printed it with [`INTO_SUB_CGROUP`].
fn run_cgroup(stdout: &[String]) -> std::path::PathBuf {
    let dir = stdout.iter().find_map(|line| line.strip_prefix("run cgroup ")).expect("the job moved into a sub-cgroup");
    std::path::PathBuf::from(dir)
}

#[tokio::test]
async fn after_kill_9_processes_in_a_sub_cgroup_are_stopped_before_the_queue_resumes() {
    let crashed = crash_while_running_after("", INTO_SUB_CGROUP).await;
    let server = serve_process(&crashed.config);
    let url = server.url.clone();
    let first_cgroup = run_cgroup(&stdout_lines(&url, crashed.ids[0]).await);
    let said = lost_and_what_recovery_said(&url, crashed.ids[0]).await;
    assert_all_dead(&crashed.pids, "after the next server start");
    assert!(said.contains("3 of its processes were still running in its cgroup"), "{said}");
    assert!(said.contains("and they ended."), "{said}");
    assert!(!first_cgroup.exists(), "the lost run's cgroup {} was left behind", first_cgroup.display());

    let second = eventually("the queued run to start and check", Duration::from_secs(20), || async {
        let lines = stdout_lines(&url, crashed.ids[1]).await;
        lines.contains(&"ready".to_string()).then_some(lines)
    })
    .await;
    let alive: Vec<&String> = second.iter().filter(|line| line.starts_with("alive ")).collect();
    assert!(alive.is_empty(), "the lost run's processes were alive when the queued run started: {alive:?}");
    let second_cgroup = run_cgroup(&second);

    stop_gracefully(server);
    let all = crashed.all_pids();
    assert_eq!(all.len(), 8, "{all:?}");
    assert_all_dead(&all, "after a graceful stop");
    assert!(!second_cgroup.exists(), "the cancelled run's cgroup {} was left behind", second_cgroup.display());
}

#[tokio::test]
async fn a_cancel_sends_sigterm_into_a_sub_cgroup_and_removes_it() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("terminated");
    // The trapper leaves the process group (setsid) from inside the sub-cgroup, so only a
    // SIGTERM to every process of the subtree reaches it. The leader waits for it on SIGTERM,
    // so the run does not end (and SIGKILL everything) before the trapper wrote its marker.
    let jobs = format!(
        r#"
[[job]]
name = "nested"
command = ["sh", "-c", '''{INTO_SUB_CGROUP}setsid sh -c 'trap "echo term > {marker}; exit 0" TERM; echo trapping; sleep 300 & wait' & t=$!; trap 'wait $t; exit 0' TERM; echo ready; sleep 301 & wait''']
grace = "3s"
"#,
        marker = marker.display()
    );
    let server = TestServer::start(&jobs).await;
    let id = server.start_run("nested", json!({})).await;
    let stdout =
        eventually("the job to move into its sub-cgroup and trap SIGTERM", Duration::from_secs(20), || async {
            let lines = server.lines(id, "stdout").await;
            (lines.iter().any(|line| line == "ready") && lines.iter().any(|line| line == "trapping")).then_some(lines)
        })
        .await;
    let cgroup = run_cgroup(&stdout);
    assert!(cgroup.join("sub").is_dir(), "the job made {}/sub", cgroup.display());

    let (status, body) = server.post(&format!("/api/v1/runs/{id}/cancel"), json!({})).await;
    assert!(status.is_success(), "{status}: {body}");
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    let said = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(said.trim(), "term", "the process in the sub-cgroup got no SIGTERM before SIGKILL");
    assert!(!cgroup.exists(), "the run's cgroup {} (with its sub-cgroup) was left behind", cgroup.display());
}
