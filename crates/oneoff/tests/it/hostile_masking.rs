//! Attacks on secret masking with real child processes: a secret written in two pieces with
//! a pause between them, cut by `max_line_bytes`, or spanning lines (a PEM key) must never
//! reach the stored log, whole or in part; what is stored shows the mask instead. Nor may
//! a secret the job did not get: another run's, read from its `/proc/PID/environ`, or the
//! server's audit key, read from the server's environment or its key file.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::TestServer;

const TOKEN: &str = "S3cr3tT0ken-abcdefXYZ";
const PEM: &str = "-----BEGIN TEST KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n0lqd9BeQ2xTYr5Hk\n-----END TEST KEY-----";

/// A job named `leak` whose `sh` script gets the secret parameter `token`.
fn job_printing_the_token(script: &str) -> String {
    format!(
        r#"
[[job]]
name = "leak"
command = ["sh", "-c", {script:?}]
[[job.param]]
name = "token"
type = "secret"
required = true
"#
    )
}

/// Runs `leak` with `secret` to its end and returns its log entries, after checking that no
/// stored form of the log holds a piece of the secret.
async fn run_and_read(server: &TestServer, secret: &str) -> Vec<Value> {
    let id = server.start_run("leak", json!({ "token": secret })).await;
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_not_stored(server, id, secret, 4).await
}

/// Checks that no stored form of run `id`'s log, nor the database file, holds a piece of
/// `secret` (in the log, none of `shortest_in_log` bytes); returns the run's log entries.
async fn assert_not_stored(server: &TestServer, id: i64, secret: &str, shortest_in_log: usize) -> Vec<Value> {
    let entries = server.entries(id).await;
    let every_text: String = entries.iter().map(|entry| format!("{}\n", text(entry))).collect();
    let (status, raw) = server.get_text(&format!("/api/v1/runs/{id}/log.txt")).await;
    assert_eq!(status, StatusCode::OK);
    // Four characters of a random token in a line are a leak; in a binary database page, a
    // run of eight is.
    assert_no_piece_of(secret, every_text.as_bytes(), shortest_in_log, "the log entries");
    assert_no_piece_of(secret, &raw, shortest_in_log, "log.txt");
    let data = server.dir.path().join("data");
    let stored = crate::support::stored_files(&data);
    assert!(stored.iter().any(|(_, bytes)| !bytes.is_empty()), "no stored data for {}", data.display());
    for (file, bytes) in stored {
        assert_no_piece_of(secret, &bytes, 8, &file);
    }
    entries
}

fn text(entry: &Value) -> &str {
    entry["text"].as_str().unwrap_or_default()
}

/// The text of each entry of one stream.
fn texts<'a>(entries: &'a [Value], stream: &str) -> Vec<&'a str> {
    entries.iter().filter(|entry| entry["stream"] == stream).map(text).collect()
}

/// Fails when `haystack` holds any `shortest` consecutive bytes of `secret`.
fn assert_no_piece_of(secret: &str, haystack: &[u8], shortest: usize, place: &str) {
    for piece in secret.as_bytes().windows(shortest) {
        assert!(
            !haystack.windows(piece.len()).any(|window| window == piece),
            "{place} holds {:?}, a piece of the secret: {}",
            String::from_utf8_lossy(piece),
            String::from_utf8_lossy(&haystack[..haystack.len().min(2000)])
        );
    }
}

#[tokio::test]
async fn a_secret_written_in_two_pieces_apart_in_time_is_masked_on_each_stream() {
    // The pause is far longer than the partial-line flush, so the first piece is quiet long
    // enough to be stored on its own unless the masker holds it back.
    let script = r#"
        printf 'A:%.10s' "$ONEOFF_PARAM_TOKEN"
        printf 'E:%.10s' "$ONEOFF_PARAM_TOKEN" >&2
        sleep 0.6
        printf '%s:B' "${ONEOFF_PARAM_TOKEN#??????????}"
        printf '%s:F\n' "${ONEOFF_PARAM_TOKEN#??????????}" >&2
    "#;
    let server = TestServer::start_with(&job_printing_the_token(script), "partial_line_flush = \"50ms\"").await;
    let entries = run_and_read(&server, TOKEN).await;
    assert_eq!(texts(&entries, "stdout").concat(), "A:********:B");
    assert_eq!(texts(&entries, "stderr").concat(), "E:********:F");
}

#[tokio::test]
async fn a_line_cut_by_max_line_bytes_through_the_secret_is_masked() {
    // The first line is cut 4 bytes into the secret; the second puts it after 64 KiB, across
    // the reads of a full pipe as well as a cut.
    let script = r#"
        head -c 1020 /dev/zero | tr '\0' x
        printf '%syyyy\n' "$ONEOFF_PARAM_TOKEN"
        head -c 70000 /dev/zero | tr '\0' x
        printf '%syyyy\n' "$ONEOFF_PARAM_TOKEN"
    "#;
    let server = TestServer::start_with(&job_printing_the_token(script), "max_line_bytes = 1024").await;
    let entries = run_and_read(&server, TOKEN).await;
    let stdout = texts(&entries, "stdout");
    assert!(stdout.len() > 70, "lines are cut at max_line_bytes: {} entries", stdout.len());
    assert!(stdout.iter().all(|line| line.len() <= 1024), "lines are cut at max_line_bytes");
    let expected = format!("{}********yyyy{}********yyyy", "x".repeat(1020), "x".repeat(70000));
    assert_eq!(stdout.concat(), expected);
}

#[tokio::test]
async fn a_multi_line_secret_is_masked_as_a_whole() {
    let script = r#"printf 'key:\n%s\ndone\n' "$ONEOFF_PARAM_TOKEN"; printf '%s' "$ONEOFF_PARAM_TOKEN" >&2"#;
    let server = TestServer::start(&job_printing_the_token(script)).await;
    let entries = run_and_read(&server, PEM).await;
    assert_eq!(texts(&entries, "stdout"), ["key:", "********", "done"]);
    assert_eq!(texts(&entries, "stderr"), ["********"]);
}

#[tokio::test]
async fn the_start_of_a_secret_at_the_end_of_the_output_is_stored_when_the_pipe_closes() {
    // Held back while it could still become the secret; the job ends, so it cannot.
    let script = r#"printf 'waiting for %.4s' "$ONEOFF_PARAM_TOKEN""#;
    let server = TestServer::start(&job_printing_the_token(script)).await;
    let id = server.start_run("leak", json!({ "token": TOKEN })).await;
    server.wait_final(id).await;
    assert_eq!(server.lines(id, "stdout").await, vec!["waiting for S3cr"]);
}

#[tokio::test]
async fn a_secret_too_short_to_mask_is_refused_with_the_reason() {
    let server = TestServer::start(&job_printing_the_token("true")).await;
    let (status, body) = server.post("/api/v1/runs", json!({ "job": "leak", "params": { "token": "abc" } })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields = &body["error"]["fields"];
    assert_eq!(fields[0]["field"], "token", "{body}");
    let message = fields[0]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("must be at least 4 characters (got 3)"), "{message}");
    assert!(!body.to_string().contains("\"abc\""), "the refused secret is echoed: {body}");
}

/// Two jobs: `rotate-key` gets a secret, writes its pid to `pid_file` and waits for
/// `release_file`; `diag` reads the environment of the pid in `pid_file`, as any job can (all
/// run as the server's user).
fn rotate_key_and_diag(pid_file: &std::path::Path, release_file: &std::path::Path) -> String {
    let rotate = format!(
        "echo $$ > {pid}.tmp && mv {pid}.tmp {pid}; while [ ! -e {release} ]; do sleep 0.05; done",
        pid = pid_file.display(),
        release = release_file.display()
    );
    let diag = format!("tr '\\0' '\\n' < /proc/$(cat {})/environ | grep ONEOFF_PARAM_", pid_file.display());
    format!(
        r#"
[[job]]
name = "rotate-key"
command = ["sh", "-c", {rotate:?}]
[[job.param]]
name = "token"
type = "secret"
required = true

[[job]]
name = "diag"
command = ["sh", "-c", {diag:?}]
"#
    )
}

#[tokio::test]
async fn a_job_reading_another_runs_environment_stores_its_secret_masked() {
    let files = tempfile::tempdir().unwrap();
    let (pid_file, release_file) = (files.path().join("rotate.pid"), files.path().join("release"));
    let server = TestServer::start(&rotate_key_and_diag(&pid_file, &release_file)).await;
    let secret = "ALICE-PROD-TOKEN-9f8e7d";
    let rotate = server.start_run("rotate-key", json!({ "token": secret })).await;
    crate::support::eventually("rotate-key to write its pid", std::time::Duration::from_secs(10), || async {
        std::fs::read_to_string(&pid_file).ok().filter(|pid| !pid.trim().is_empty())
    })
    .await;
    let diag = server.start_run("diag", json!({})).await;
    let diag_run = server.wait_final(diag).await;
    std::fs::write(&release_file, "").unwrap();
    assert_eq!(diag_run["status"], "succeeded", "diag read the environment: {diag_run}");
    assert_eq!(server.wait_final(rotate).await["status"], "succeeded");
    // Eight bytes: "TOKE" is in the variable's name too.
    let entries = assert_not_stored(&server, diag, secret, 8).await;
    assert_eq!(texts(&entries, "stdout"), ["ONEOFF_PARAM_TOKEN=********"], "the attack did read the variable");
}

/// Random-looking, so no piece of it is also a word of the audit trail's own messages.
const AUDIT_KEY: &str = "q7Zt2kXv9Rw4mYp8Ls3Nd6Hf1Jc5Bg0Ua";

#[tokio::test]
async fn a_job_printing_the_servers_audit_key_from_its_environment_stores_it_masked() {
    let dir = tempfile::tempdir().unwrap();
    let job = r#"
[[job]]
name = "peek"
command = ["sh", "-c", "tr '\\0' '\\n' < /proc/$ONEOFF_PARAM_PID/environ | grep ONEOFF_AUDIT_KEY"]
[[job.param]]
name = "pid"
type = "string"
required = true
"#;
    // Its data in `data`, where `assert_not_stored` reads the database files.
    let data = dir.path().join("data");
    let config = crate::support::write_config(dir.path(), &crate::support::config_text(&data, "", job));
    let server = crate::support::ServerProcess::start_with_env(&config, &[("ONEOFF_AUDIT_KEY", AUDIT_KEY)]);
    let api = TestServer::remote(server.url.clone(), dir);
    let id = api.start_run("peek", json!({ "pid": server.child.id().to_string() })).await;
    assert_eq!(api.wait_final(id).await["status"], "succeeded", "the job read the server's environment");
    let entries = assert_not_stored(&api, id, AUDIT_KEY, 4).await;
    assert_eq!(texts(&entries, "stdout"), ["ONEOFF_AUDIT_KEY=********"]);
    drop(server); // before its data directory goes with `api`
}

#[tokio::test]
async fn a_job_printing_the_audit_key_file_stores_it_masked() {
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("audit.key");
    std::fs::write(&key_file, format!("{AUDIT_KEY}\n")).unwrap();
    let jobs = format!(
        "[audit]\nkey_file = {path:?}\n\n[[job]]\nname = \"peek\"\ncommand = [\"cat\", {path:?}]\n",
        path = key_file.display().to_string()
    );
    let server = TestServer::start(&jobs).await;
    let id = server.start_run("peek", json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let entries = assert_not_stored(&server, id, AUDIT_KEY, 4).await;
    assert_eq!(texts(&entries, "stdout"), ["********"]);
}
