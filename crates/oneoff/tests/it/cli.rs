//! The CLI binary against a real server: tables, `--json`, follow with the job's exit code,
//! and config checking.

use serde_json::Value;

use crate::support::{cli_command, stderr, stdout, write_config, TestServer};

const JOBS: &str = r#"
[[job]]
name = "greet"
description = "Say hello"
command = ["sh", "-c", 'echo "hello $1"; echo "to stderr" >&2', "greet", "{name}"]
[[job.param]]
name = "name"
required = true
pattern = "^[a-z]+$"

[[job]]
name = "exit7"
command = ["sh", "-c", "echo bye; exit 7"]

[[job]]
name = "killed"
command = ["sh", "-c", "kill -KILL $$"]

[[job]]
name = "slow"
command = ["sh", "-c", "echo tick; sleep 600"]
"#;

#[tokio::test]
async fn jobs_lists_the_catalog() {
    let server = TestServer::start(JOBS).await;
    let output = server.cli(&["jobs"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.lines().next().unwrap().starts_with("NAME"), "{text}");
    assert!(
        text.lines().any(|line| line.starts_with("greet") && line.contains("name*") && line.contains("Say hello")),
        "{text}"
    );

    let output = server.cli(&["jobs", "--json"]).await;
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["jobs"][0]["name"], "greet");
}

#[tokio::test]
async fn run_follow_streams_the_log_and_exits_with_the_jobs_code() {
    let server = TestServer::start(JOBS).await;
    let output = server.cli(&["run", "greet", "-p", "name=bob", "--follow"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "hello bob\n");
    let err = stderr(&output);
    assert!(err.contains("to stderr"), "{err}");
    assert!(err.contains("succeeded"), "{err}");

    let output = server.cli(&["run", "exit7", "-f"]).await;
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert_eq!(stdout(&output), "bye\n");

    let output = server.cli(&["run", "killed", "-f"]).await;
    assert_eq!(output.status.code(), Some(128 + 9), "{}", stderr(&output));
}

#[tokio::test]
async fn run_reports_invalid_params_per_field() {
    let server = TestServer::start(JOBS).await;
    let output = server.cli(&["run", "greet", "-p", "name=Bob"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("name: must match the pattern ^[a-z]+$"), "{}", stderr(&output));
    let output = server.cli(&["run", "nope"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no job named `nope`"), "{}", stderr(&output));
    let output = server.cli(&["run", "gret", "-p", "name=bob"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no job named `gret`: did you mean `greet`?"), "{}", stderr(&output));
}

#[tokio::test]
async fn status_logs_runs_and_cancel_work_on_a_run() {
    let server = TestServer::start(JOBS).await;
    let output = server.cli(&["run", "slow", "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let run: Value = serde_json::from_slice(&output.stdout).unwrap();
    let id = run["id"].as_i64().unwrap();
    server.wait_status(id, |status| status == "running").await;
    let id_text = id.to_string();

    let output = server.cli(&["status", &format!("#{id}")]).await;
    assert!(stdout(&output).contains("running"), "{}", stdout(&output));
    let output = server.cli(&["runs"]).await;
    assert!(
        stdout(&output).lines().any(|line| line.starts_with(&id_text) && line.contains("slow")),
        "{}",
        stdout(&output)
    );

    let output = server.cli(&["cancel", &id_text]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.wait_final(id).await["status"], "cancelled");
    let output = server.cli(&["cancel", &id_text]).await;
    assert_eq!(output.status.code(), Some(1), "cancelling twice is refused");

    let output = server.cli(&["logs", &id_text]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("tick\n"), "{}", stdout(&output));
    let output = server.cli(&["logs", &id_text, "--after", "1"]).await;
    assert!(!stdout(&output).contains("tick"), "--after skips what was seen");
}

#[tokio::test]
async fn unreachable_server_is_a_clear_error() {
    let output = cli_command(&["jobs", "--server", "http://127.0.0.1:9"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot reach http://127.0.0.1:9"), "{}", stderr(&output));
}

#[test]
fn check_config_accepts_the_example_catalog() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/oneoff.toml");
    let output = cli_command(&["check-config", example]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("ok (7 jobs)"), "{}", stdout(&output));
}

#[test]
fn check_config_reports_errors_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[[job]]\nname = \"a\"\ncommand = [\"echo\", \"{since}\"]\n");
    let output = cli_command(&["check-config", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let expected = format!("{}:3:20: unknown placeholder `{{since}}`", path.display());
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));

    let output = cli_command(&["check-config", "/nonexistent/oneoff.toml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("/nonexistent/oneoff.toml"), "{}", stderr(&output));
}

#[test]
fn serve_rejects_a_bad_config_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[server]\nlisten = \"nowhere\"\n");
    let output = cli_command(&["serve", "--config", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("2:10: listen address `nowhere` is not IP:PORT"), "{}", stderr(&output));
}

/// `--database` and `--replica` win over `ONEOFF_DATABASE` and `ONEOFF_REPLICA`, which win
/// over the file; a bad value is refused before anything starts, naming where it came from
/// and never showing the password.
#[test]
fn serve_names_the_flag_or_variable_that_holds_a_bad_database_or_replica() {
    const PASSWORD: &str = "hunter2-Sekret";
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[server]\ndatabase = \"mysql://file@db/oneoff\"\nreplica = \"from file\"\n");
    let path = path.to_str().unwrap();
    let serve = |flags: &[&str], database: Option<&str>, replica: Option<&str>| {
        let mut command = cli_command(&[&["serve", "--config", path], flags].concat());
        command.env_remove("ONEOFF_DATABASE").env_remove("ONEOFF_REPLICA").env_remove("ONEOFF_LISTEN");
        if let Some(database) = database {
            command.env("ONEOFF_DATABASE", database);
        }
        if let Some(replica) = replica {
            command.env("ONEOFF_REPLICA", replica);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        let shown = stderr(&output);
        assert!(!shown.contains(PASSWORD), "{shown}");
        shown
    };
    let from_file = serve(&[], None, None);
    assert!(from_file.contains("2:12: `mysql:` is not a database oneoff can use"), "{from_file}");
    assert!(from_file.contains("3:11: replica name `from file` must be"), "{from_file}");

    let bad_env = format!("postgres://oneoff:{PASSWORD}@db");
    let from_env = serve(&[], Some(&bad_env), Some("a/b"));
    assert!(from_env.contains("ONEOFF_DATABASE: the PostgreSQL URL names no database"), "{from_env}");
    assert!(from_env.contains("ONEOFF_REPLICA: replica name `a/b` must be"), "{from_env}");
    assert!(!from_env.contains("mysql") && !from_env.contains("from file"), "the variables win: {from_env}");

    let bad_flag = format!("postgres://oneoff:{PASSWORD}@db/oneoff?sslmode=requir");
    let good_env = format!("postgres://oneoff:{PASSWORD}@db/oneoff");
    let from_flags = serve(&["--database", &bad_flag, "--replica=-x"], Some(&good_env), Some("web-1"));
    assert!(from_flags.contains("--database: sslmode `requir` is not one of"), "{from_flags}");
    assert!(from_flags.contains("--replica: replica name `-x` must be"), "{from_flags}");
    assert!(!from_flags.contains("ONEOFF_"), "the flags win: {from_flags}");

    // A good flag hides a bad variable; an empty variable counts as unset.
    let shown = serve(&["--database", "sqlite:x.db", "--listen", "nowhere"], Some(&bad_env), Some(""));
    assert!(!shown.contains("ONEOFF_DATABASE") && !shown.contains("database"), "{shown}");
    assert!(shown.contains("--listen: listen address `nowhere` is not IP:PORT"), "{shown}");
    assert!(shown.contains("3:11: replica name `from file`"), "an empty ONEOFF_REPLICA leaves the file's: {shown}");
}

#[test]
fn help_never_shows_the_database_password() {
    for args in [&["serve", "--help"][..], &["token", "create", "--help"]] {
        let output =
            cli_command(args).env("ONEOFF_DATABASE", "postgres://oneoff:hunter2-Sekret@db/oneoff").output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let help = stdout(&output);
        assert!(help.contains("--database <URL>") && help.contains("ONEOFF_DATABASE"), "{help}");
        assert!(!help.contains("hunter2"), "{help}");
    }
}

/// `oneoff token create --config` reads `ONEOFF_DATABASE` as `oneoff serve` does, so the
/// token lands in the server's database.
#[test]
fn token_create_offline_takes_the_database_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "");
    let output = cli_command(&["token", "create", "--name", "ci", "--config", path.to_str().unwrap()])
        .env("ONEOFF_DATABASE", "mysql://oneoff:hunter2-Sekret@db/oneoff")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let shown = stderr(&output);
    assert!(shown.contains("ONEOFF_DATABASE: `mysql:` is not a database oneoff can use"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn run_follow_exits_125_when_oneoff_fails_so_a_job_s_own_codes_stay_its_own() {
    let server = TestServer::start(JOBS).await;
    // The request is wrong: 2 without --follow, 125 with it (a job may exit 2 itself).
    let output = server.cli(&["run", "nope", "--follow"]).await;
    assert_eq!(output.status.code(), Some(125), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("oneoff: no job named `nope`"), "{}", stderr(&output));
    let output = server.cli(&["run", "greet", "-p", "name=Bob", "-f"]).await;
    assert_eq!(output.status.code(), Some(125), "{}", stderr(&output));
    // No server there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let command = cli_command(&["run", "greet", "-p", "name=bob", "-f", "--server", &format!("http://{closed}")]);
    let output = tokio::process::Command::from(command).output().await.expect("run oneoff");
    assert_eq!(output.status.code(), Some(125), "{}", stderr(&output));
}
