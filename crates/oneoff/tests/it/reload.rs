//! Reloading the catalog: `POST /api/v1/admin/reload` and `kill -HUP` put the file's new jobs
//! in force; a run in progress keeps the definition it started with; an invalid file changes
//! nothing and says where it is wrong; only administrators may reload; no signal but SIGTERM
//! and SIGINT stops the server.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{config_text, eventually, write_config, ServerProcess, TestServer};

const WAIT: Duration = Duration::from_secs(20);

const AUTH: &str = r#"
[auth]
anonymous = true
admins = { users = ["root"] }

[auth.trusted_headers]
trusted_cidrs = ["127.0.0.1/32"]
"#;

/// A job that prints its version, then waits for `go` to exist (so a test decides when it
/// ends), then prints its version again.
fn jobs(version: &str, go: &std::path::Path, extra: &str) -> String {
    format!(
        r#"{AUTH}
[[job]]
name = "step"
command = ["sh", "-c", "echo {version}; while [ ! -e '{go}' ]; do sleep 0.05; done; echo {version}-end"]
{extra}"#,
        go = go.display()
    )
}

async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request =
        reqwest::Client::new().request(method, format!("{}{path}", server.url)).header("x-forwarded-user", user);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn start_step(server: &TestServer) -> i64 {
    let (status, run) =
        call(server, reqwest::Method::POST, "/api/v1/runs", "root", Some(json!({ "job": "step" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    run["id"].as_i64().expect("an id")
}

async fn job_names(server: &TestServer) -> Vec<String> {
    let (_, list) = call(server, reqwest::Method::GET, "/api/v1/jobs", "root", None).await;
    list["jobs"].as_array().expect("jobs").iter().map(|job| job["name"].as_str().expect("name").to_string()).collect()
}

async fn stdout_lines(server: &TestServer, id: i64, count: usize) -> Vec<String> {
    eventually("the run's lines", WAIT, || async {
        let lines = server.lines(id, "stdout").await;
        (lines.len() >= count).then_some(lines)
    })
    .await
}

#[tokio::test]
async fn a_reload_puts_the_new_jobs_in_force_and_a_running_run_keeps_the_definition_it_started_with() {
    let go = tempfile::tempdir().expect("temp dir");
    let go = go.path().join("go");
    let old_job = "[[job]]\nname = \"old\"\ncommand = [\"true\"]\n";
    let server = TestServer::start(&jobs("v1", &go, old_job)).await;
    let first = start_step(&server).await;
    assert_eq!(stdout_lines(&server, first, 1).await, ["v1"]);

    server.rewrite_config("", &jobs("v2", &go, "[[job]]\nname = \"new\"\ncommand = [\"true\"]\n"));
    let (status, report) = call(&server, reqwest::Method::POST, "/api/v1/admin/reload", "root", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["jobs"], 2, "{report}");
    assert_eq!(
        (&report["added"], &report["removed"], &report["changed"]),
        (&json!(["new"]), &json!(["old"]), &json!(["step"]))
    );
    assert_eq!(report["restart_needed"], json!([]), "{report}");
    assert_eq!(job_names(&server).await, ["step", "new"]);
    let (status, refused) =
        call(&server, reqwest::Method::POST, "/api/v1/runs", "root", Some(json!({ "job": "old" }))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a removed job cannot be started: {refused}");

    // The run that started before goes on with its own definition; a new one uses the new.
    std::fs::write(&go, "").expect("let the runs end");
    assert_eq!(server.wait_final(first).await["status"], "succeeded");
    assert_eq!(server.lines(first, "stdout").await, ["v1", "v1-end"]);
    let second = start_step(&server).await;
    assert_eq!(server.wait_final(second).await["status"], "succeeded");
    assert_eq!(server.lines(second, "stdout").await, ["v2", "v2-end"]);
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_says_where_it_is_wrong_and_is_audited() {
    let go = tempfile::tempdir().expect("temp dir");
    let go = go.path().join("go");
    let server = TestServer::start(&jobs("v1", &go, "")).await;
    // A mistake on line 3 of the rewritten file, column 5.
    let path = server.write_raw_config("[server]\nlisten = \"127.0.0.1:0\"\nmax_concurrent_runs = \"many\"\n");
    let (status, body) = call(&server, reqwest::Method::POST, "/api/v1/admin/reload", "root", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_config", "{body}");
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(message.contains(&format!("{}:3:", path.display())), "names the file and line: {message}");
    assert!(message.contains("the catalog in force stays"), "{message}");
    assert_eq!(job_names(&server).await, ["step"], "the old catalog is still in force");

    // A file that cannot be read at all.
    std::fs::remove_file(&path).expect("remove the file");
    let (status, body) = call(&server, reqwest::Method::POST, "/api/v1/admin/reload", "root", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("config_unreadable")),
        "{body}"
    );
    assert_eq!(job_names(&server).await, ["step"]);

    // Only administrators reload; the refusal is audited like every other.
    let (status, body) = call(&server, reqwest::Method::POST, "/api/v1/admin/reload", "alice", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, audit) = call(&server, reqwest::Method::GET, "/api/v1/audit?limit=50", "root", None).await;
    let actions: Vec<&str> =
        audit["records"].as_array().expect("records").iter().filter_map(|record| record["action"].as_str()).collect();
    for expected in ["catalog.reload_refused", "denied.catalog.reload"] {
        assert!(actions.contains(&expected), "{expected} not in {actions:?}");
    }
    assert_eq!(actions.iter().filter(|action| **action == "catalog.reload_refused").count(), 2);
}

#[tokio::test]
async fn a_changed_server_setting_is_reported_as_needing_a_restart_and_not_applied() {
    let go = tempfile::tempdir().expect("temp dir");
    let go = go.path().join("go");
    let server = TestServer::start(&jobs("v1", &go, "")).await;
    server.rewrite_config("max_concurrent_runs = 7", &jobs("v1", &go, ""));
    let (status, report) = call(&server, reqwest::Method::POST, "/api/v1/admin/reload", "root", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["restart_needed"], json!(["[server]"]), "{report}");
    assert_eq!(report["changed"], json!([]), "{report}");
}

#[test]
fn sighup_reloads_the_catalog_and_no_signal_but_sigterm_stops_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let go = dir.path().join("go");
    let data = dir.path().join("data");
    let path = write_config(dir.path(), &config_text(&data, "", &jobs("v1", &go, "")));
    let mut process = ServerProcess::start(&path);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = TestServer::remote(process.url.clone(), tempfile::tempdir().expect("temp dir"));
    let pid = nix::unistd::Pid::from_raw(process.child.id() as i32);
    runtime.block_on(async {
        let first = start_step(&server).await;
        assert_eq!(stdout_lines(&server, first, 1).await, ["v1"]);
        write_config(
            dir.path(),
            &config_text(&data, "", &jobs("v2", &go, "[[job]]\nname = \"new\"\ncommand = [\"true\"]\n")),
        );
        for signal in
            [nix::sys::signal::Signal::SIGHUP, nix::sys::signal::Signal::SIGUSR1, nix::sys::signal::Signal::SIGUSR2]
        {
            nix::sys::signal::kill(pid, signal).expect("signal");
        }
        eventually("the reload to be in force", WAIT, || async {
            (job_names(&server).await == ["step", "new"]).then_some(())
        })
        .await;
        // Still serving, and the run that was running goes on and succeeds.
        std::fs::write(&go, "").expect("let the run end");
        assert_eq!(server.wait_final(first).await["status"], "succeeded");
        assert_eq!(server.lines(first, "stdout").await, ["v1", "v1-end"]);
    });
    assert_eq!(
        process.child.try_wait().expect("try_wait"),
        None,
        "SIGHUP, SIGUSR1 and SIGUSR2 leave the server running"
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    assert!(process.child.wait().expect("wait").success(), "SIGTERM stops it gracefully");
}
