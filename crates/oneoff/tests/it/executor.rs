//! Real child processes: exit codes and signals, cancel and timeout of whole process groups,
//! concurrency limits and the FIFO queue, spawn failures, graceful shutdown.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{eventually, process_alive, TestServer};

/// A job that forks a child which ignores SIGTERM, and ignores SIGTERM itself.
const STUBBORN: &str = r#"
[[job]]
name = "stubborn"
command = ["sh", "-c", 'trap "" TERM; sh -c "trap \"\" TERM; sleep 600" & echo "child $!"; while true; do sleep 0.05; done']
grace = "500ms"
"#;

#[tokio::test]
async fn exit_codes_and_signals_are_recorded() {
    let jobs = r#"
[[job]]
name = "exit3"
command = ["sh", "-c", "echo failing >&2; exit 3"]
[[job]]
name = "segv"
command = ["sh", "-c", "kill -SEGV $$"]
[[job]]
name = "missing"
command = ["/nonexistent/program", "arg"]
"#;
    let server = TestServer::start(jobs).await;
    let id = server.start_run("exit3", json!({})).await;
    let run = server.wait_final(id).await;
    assert_eq!((run["status"].as_str(), run["exit_code"].as_i64()), (Some("failed"), Some(3)));
    assert_eq!(server.lines(id, "stderr").await, vec!["failing"]);

    let id = server.start_run("segv", json!({})).await;
    let run = server.wait_final(id).await;
    assert_eq!(
        (run["status"].as_str(), run["signal"].as_i64(), run["signal_name"].as_str()),
        (Some("failed"), Some(11), Some("SIGSEGV"))
    );

    let id = server.start_run("missing", json!({})).await;
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "failed");
    assert!(run["exit_code"].is_null());
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("cannot start `/nonexistent/program`") && error.contains("No such file"), "{error}");
    assert_eq!(server.lines(id, "system").await, vec![error.to_string()]);
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group_after_the_grace_period() {
    let server = TestServer::start(STUBBORN).await;
    let id = server.start_run("stubborn", json!({})).await;
    let child_pid = wait_for_child_pid(&server, id).await;
    assert!(process_alive(child_pid));

    let (status, body) = server.post(&format!("/api/v1/runs/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["signal_name"], "SIGKILL", "SIGTERM was ignored, so SIGKILL ended it");
    let system = server.lines(id, "system").await;
    assert!(system[0].starts_with("cancel requested: sending SIGTERM"), "{system:?}");
    assert!(system[1].contains("sending SIGKILL"), "{system:?}");
    wait_until_gone(child_pid).await;

    let (status, body) = server.post(&format!("/api/v1/runs/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("already finished (cancelled)"));
}

#[tokio::test]
async fn a_timeout_stops_the_run() {
    let jobs = r#"
[[job]]
name = "slow"
command = ["sh", "-c", "echo started; sleep 30"]
timeout = "300ms"
grace = "5s"
"#;
    let server = TestServer::start(jobs).await;
    let id = server.start_run("slow", json!({})).await;
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "timed_out");
    assert_eq!(run["signal_name"], "SIGTERM", "sh obeys SIGTERM within the grace period");
    let system = server.lines(id, "system").await;
    assert!(system[0].starts_with("timed out after 300ms"), "{system:?}");
}

#[tokio::test]
async fn children_left_behind_die_with_the_run() {
    let jobs = r#"
[[job]]
name = "leaver"
command = ["sh", "-c", 'sleep 600 & echo "child $!"']
"#;
    let server = TestServer::start(jobs).await;
    let id = server.start_run("leaver", json!({})).await;
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "succeeded");
    let child: i32 = server.lines(id, "stdout").await[0].trim_start_matches("child ").parse().unwrap();
    wait_until_gone(child).await;
}

#[tokio::test]
async fn per_job_limit_queues_runs_in_fifo_order() {
    let jobs = r#"
[[job]]
name = "one-at-a-time"
command = ["sh", "-c", "sleep 0.3"]
max_concurrent = 1
[[job]]
name = "free"
command = ["true"]
"#;
    let server = TestServer::start(jobs).await;
    let first = server.start_run("one-at-a-time", json!({})).await;
    let second = server.start_run("one-at-a-time", json!({})).await;
    let third = server.start_run("one-at-a-time", json!({})).await;
    assert_eq!(server.run_json(third).await["status"], "queued");
    // Another job is not held up by this job's limit.
    let free = server.start_run("free", json!({})).await;
    assert_eq!(server.wait_final(free).await["status"], "succeeded");
    assert_eq!(server.run_json(third).await["status"], "queued");

    let runs = [server.wait_final(first).await, server.wait_final(second).await, server.wait_final(third).await];
    for pair in runs.windows(2) {
        assert!(pair[0]["finished_at"].as_str() <= pair[1]["started_at"].as_str(), "one at a time, in order: {pair:?}");
    }
}

#[tokio::test]
async fn global_limit_applies_across_jobs_and_queued_runs_can_be_cancelled() {
    let jobs = r#"
[[job]]
name = "a"
command = ["sleep", "0.4"]
[[job]]
name = "b"
command = ["true"]
"#;
    let server = TestServer::start_with(jobs, "max_concurrent_runs = 1").await;
    let a = server.start_run("a", json!({})).await;
    let b = server.start_run("b", json!({})).await;
    let cancelled = server.start_run("b", json!({})).await;
    assert_eq!(server.run_json(b).await["status"], "queued");
    let (status, body) = server.post(&format!("/api/v1/runs/{cancelled}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "cancelled");
    assert!(body["started_at"].is_null());
    let a = server.wait_final(a).await;
    let b = server.wait_final(b).await;
    assert!(a["finished_at"].as_str() <= b["started_at"].as_str());
}

#[tokio::test]
async fn shutdown_drains_then_cancels_and_leaves_queued_runs_queued() {
    let jobs = r#"
[[job]]
name = "quick"
command = ["sh", "-c", "sleep 0.2; echo finished"]
[[job]]
name = "endless"
command = ["sh", "-c", "echo begin; sleep 600"]
grace = "1s"
"#;
    let mut server = TestServer::start_with(jobs, "drain = \"800ms\"\nmax_concurrent_runs = 2").await;
    let quick = server.start_run("quick", json!({})).await;
    let endless = server.start_run("endless", json!({})).await;
    let waiting = server.start_run("quick", json!({})).await;
    server.wait_status(endless, |status| status == "running").await;
    server.stop().await;

    server.restart(jobs, "max_concurrent_runs = 1").await;
    let quick = server.run_json(quick).await;
    assert_eq!(quick["status"], "succeeded", "a run that ends within the drain period finishes normally");
    let endless = server.run_json(endless).await;
    assert_eq!(endless["status"], "cancelled", "{endless}");
    assert_eq!(server.lines(endless["id"].as_i64().unwrap(), "stdout").await, vec!["begin"]);
    // The queued run survived the restart and runs now.
    assert_eq!(server.wait_final(waiting).await["status"], "succeeded");
    assert_eq!(server.lines(waiting, "stdout").await, vec!["finished"]);
}

#[tokio::test]
async fn a_draining_server_is_not_ready_while_its_runs_finish_and_still_serves_them() {
    let jobs = r#"
[[job]]
name = "endless"
command = ["sh", "-c", "echo begin; sleep 600"]
grace = "1s"
"#;
    let mut server = TestServer::start_with(jobs, "drain = \"60s\"").await;
    let (status, ready) = server.get("/readyz").await;
    assert_eq!((status, ready["status"].as_str()), (StatusCode::OK, Some("ready")), "{ready}");
    let id = server.start_run("endless", json!({})).await;
    eventually("the run's first line", Duration::from_secs(10), || async {
        (server.lines(id, "stdout").await == ["begin"]).then_some(())
    })
    .await;
    server.begin_stop();
    let ready = eventually("readiness to see the drain", Duration::from_secs(10), || async {
        let (status, body) = server.get("/readyz").await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some(body)
    })
    .await;
    assert_eq!(ready["status"], "draining", "{ready}");
    // Still serving: the run is running, its log is readable, and it can be cancelled.
    assert_eq!(server.run_json(id).await["status"], "running");
    assert_eq!(server.lines(id, "stdout").await, vec!["begin"]);
    let (status, body) = server.post(&format!("/api/v1/runs/{id}/cancel"), json!({})).await;
    assert!(status.is_success(), "{status} {body}");
    server.stop().await;
}

async fn wait_for_child_pid(server: &TestServer, id: i64) -> i32 {
    for _ in 0..200 {
        if let Some(line) = server.lines(id, "stdout").await.first() {
            return line.trim_start_matches("child ").parse().expect("pid");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the job never printed its child's pid");
}

async fn wait_until_gone(pid: i32) {
    for _ in 0..200 {
        if !process_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("process {pid} outlived its run");
}

#[tokio::test]
async fn a_process_that_escaped_the_group_cannot_hold_the_run_open() {
    // `setsid` puts the sleeper in a session of its own, out of reach of the group's SIGKILL;
    // it keeps stdout open, so only the pipe deadline can end the run. Without a cgroup per
    // run (`cgroup = "off"`, or a host without cgroup v2) that is all that holds.
    let jobs = r#"
[[job]]
name = "escapee"
command = ["sh", "-c", 'setsid sleep 600 & echo "escaped $!"; sleep 0.5; echo done']
"#;
    let server = TestServer::start_with(jobs, "cgroup = \"off\"").await;
    let id = server.start_run("escapee", json!({})).await;
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let lines = server.lines(id, "stdout").await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1], "done");
    let escaped_pid: i32 = lines[0].strip_prefix("escaped ").and_then(|pid| pid.parse().ok()).expect("the pid");
    assert!(process_alive(escaped_pid), "the escaped process is out of the run's reach");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(escaped_pid), nix::sys::signal::Signal::SIGKILL);
}

#[tokio::test]
async fn a_nice_job_runs_at_lower_priority_with_everything_it_forks() {
    let jobs = r#"
[[job]]
name = "background"
command = ["sh", "-c", "sleep 0.3; nice; sh -c nice"]
nice = 15
[[job]]
name = "normal"
command = ["nice"]
"#;
    // Relative to the server's own niceness (this process's), as `nice -n` is.
    let own: i32 =
        String::from_utf8(std::process::Command::new("nice").output().unwrap().stdout).unwrap().trim().parse().unwrap();
    let lowered = (own + 15).min(19).to_string();
    let server = TestServer::start(jobs).await;
    let id = server.start_run("background", json!({})).await;
    server.wait_final(id).await;
    assert_eq!(server.lines(id, "stdout").await, vec![lowered.clone(), lowered]);
    let id = server.start_run("normal", json!({})).await;
    server.wait_final(id).await;
    assert_eq!(server.lines(id, "stdout").await, vec![own.to_string()]);
}
