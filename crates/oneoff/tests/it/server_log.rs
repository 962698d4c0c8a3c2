//! The server's own log on stderr: one JSON object per line for a collector, carrying the
//! request's id and user and the run's id, job and user; plain text without colour escapes
//! unless stderr is a terminal; a wrong `log_format` is a config error in our words.

use serde_json::{json, Value};

use crate::support::{cli_command, config_text, stderr, write_config, ServerProcess, TestServer};

const JOBS: &str = "[[job]]\nname = \"hello\"\ncommand = [\"echo\", \"hi\"]\n";

/// `oneoff serve` as a process whose stderr goes to a file (not a terminal), with `env` added.
struct Served {
    process: ServerProcess,
    api: TestServer,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start(server_extra: &str, env: &[(&str, &str)]) -> Served {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_config(dir.path(), &config_text(&dir.path().join("data"), server_extra, JOBS));
        let log = dir.path().join("server.log");
        let env: Vec<(&str, &str)> = env.iter().copied().chain([("ONEOFF_LOG", "info")]).collect();
        let process = ServerProcess::start_logging_to(&path, &env, &log);
        let api = TestServer::remote(process.url.clone(), tempfile::tempdir().expect("temp dir"));
        Served { process, api, log, _dir: dir }
    }

    /// Stops it as SIGTERM does and returns everything it logged.
    fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.process.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = self.process.child.wait().expect("wait");
        assert!(status.success(), "a graceful stop exits 0: {status}");
        std::fs::read_to_string(&self.log).expect("read the log")
    }
}

/// The spans an event happened in, by name (with `with_span_list`, outermost first).
fn span<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["spans"].as_array()?.iter().find(|span| span["name"] == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_log_is_one_object_per_line_with_the_request_id_and_user_and_the_run_id_job_and_user() {
    let served = Served::start("", &[("ONEOFF_LOG_FORMAT", "json")]);
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/runs", served.api.url))
        .header("x-request-id", "req-7f3a")
        .json(&json!({ "job": "hello", "params": {} }))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "req-7f3a", "the proxy's id comes back");
    let id = response.json::<Value>().await.expect("JSON")["id"].as_i64().expect("an id");
    served.api.wait_final(id).await;
    // An id that could fake a field is not taken: the server makes one.
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/jobs", served.api.url))
        .header("x-request-id", "x\" user=\"root")
        .send()
        .await
        .expect("GET");
    let made = response.headers()["x-request-id"].to_str().expect("ASCII").to_string();
    let uuid_shaped = made.len() == 36 && made.split('-').map(str::len).eq([8, 4, 4, 4, 12]);
    assert!(uuid_shaped, "a UUID made by the server: {made}");

    let log = served.stop();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}")))
        .collect();
    assert!(lines.iter().all(|line| line["timestamp"].is_string() && line["level"].is_string()), "{log}");
    let user = served_user(&lines);
    let queued = lines.iter().find(|line| line["message"] == "run queued");
    let queued = queued.unwrap_or_else(|| panic!("no `run queued` line in:\n{log}"));
    let request = span(queued, "request").unwrap_or_else(|| panic!("not in the request's span: {queued}"));
    assert_eq!(request["request_id"], "req-7f3a", "{queued}");
    assert_eq!(request["user"], user.as_str(), "{queued}");
    let finished = lines.iter().find(|line| line["message"] == "run finished").expect("a `run finished` line");
    let run = span(finished, "run").unwrap_or_else(|| panic!("not in the run's span: {finished}"));
    assert_eq!((&run["run"], &run["job"], &run["user"]), (&json!(id.to_string()), &json!("hello"), &json!(user)));
    assert!(!log.contains('\u{1b}'), "no colour escapes in JSON");
}

/// The user the test server's callers are (anonymous access): what the log must name.
fn served_user(lines: &[Value]) -> String {
    lines
        .iter()
        .find_map(|line| span(line, "run").and_then(|run| run["user"].as_str()).filter(|user| !user.is_empty()))
        .expect("a run span naming its user")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_text_log_has_no_colour_when_stderr_is_not_a_terminal() {
    let served = Served::start("", &[]);
    let id = served.api.start_run("hello", json!({})).await;
    served.api.wait_final(id).await;
    let log = served.stop();
    assert!(log.contains("run finished"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour escapes in a file:\n{log:?}");
}

#[test]
fn a_wrong_log_format_is_a_config_error_that_says_what_to_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), &config_text(&dir.path().join("data"), "log_format = \"yaml\"", JOBS));
    let path = path.to_str().expect("UTF-8 path");
    let output = cli_command(&["serve", "--config", path]).output().expect("run");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("log_format `yaml` must be \"text\" or \"json\""), "{}", stderr(&output));

    let output = cli_command(&["serve", "--config", path]).env("ONEOFF_LOG_FORMAT", "jsonl").output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output);
    assert!(error.starts_with("ONEOFF_LOG_FORMAT: log_format `jsonl` must be"), "{error}");
    assert!(error.contains("did you mean `json`?"), "{error}");

    // Asked for JSON outside the file, a config error is a JSON line too.
    let path = write_config(dir.path(), &config_text(&dir.path().join("data"), "drain = \"soon\"", JOBS));
    let path = path.to_str().expect("UTF-8 path");
    let output = cli_command(&["serve", "--config", path]).env("ONEOFF_LOG_FORMAT", "json").output().expect("run");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let line: Value = serde_json::from_str(stderr(&output).trim()).expect("one JSON object");
    assert_eq!(line["level"], "ERROR");
    assert!(line["error"].as_str().is_some_and(|error| error.contains("soon")), "{line}");
}

#[test]
fn colour_is_for_a_terminal_and_never_with_no_color() {
    // On a terminal (`script` gives the server one), the warning about the job's missing
    // program comes in colour, then the server stops: its port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let listen = taken.local_addr().expect("its address").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = "[[job]]\nname = \"a\"\ncommand = [\"/nonexistent/prog\"]\n";
    let path = write_config(dir.path(), &config_text(&dir.path().join("data"), "", jobs));
    let serve = format!("{} serve --config {} --listen {listen}", env!("CARGO_BIN_EXE_oneoff"), path.display());
    let on_a_terminal = |no_color: &str| {
        let output = std::process::Command::new("script")
            .args(["-qec", &serve, "/dev/null"])
            .env("NO_COLOR", no_color)
            .env_remove("ONEOFF_LOG_FORMAT")
            .output()
            .expect("run script");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let coloured = on_a_terminal("");
    assert!(coloured.contains("/nonexistent/prog"), "{coloured}");
    assert!(coloured.contains("\u{1b}["), "an empty NO_COLOR counts as unset: colour on a terminal:\n{coloured:?}");
    let plain = on_a_terminal("1");
    assert!(plain.contains("/nonexistent/prog"), "{plain}");
    assert!(!plain.contains("\u{1b}["), "NO_COLOR=1 on a terminal:\n{plain:?}");
}
