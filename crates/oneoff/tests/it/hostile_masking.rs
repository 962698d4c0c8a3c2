//! Attacks on secret masking with real child processes: a secret written in two pieces with
//! a pause between them, cut by `max_line_bytes`, or spanning lines (a PEM key) must never
//! reach the stored log, whole or in part; what is stored shows the mask instead.

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
    let entries = server.entries(id).await;
    let every_text: String = entries.iter().map(|entry| format!("{}\n", text(entry))).collect();
    let (status, raw) = server.get_text(&format!("/api/v1/runs/{id}/log.txt")).await;
    assert_eq!(status, StatusCode::OK);
    // Four characters of a random token in a line are a leak; in a binary database page, a
    // run of eight is.
    assert_no_piece_of(secret, every_text.as_bytes(), 4, "the log entries");
    assert_no_piece_of(secret, &raw, 4, "log.txt");
    let data = server.dir.path().join("data");
    for file in ["oneoff.db", "oneoff.db-wal"] {
        let bytes = std::fs::read(data.join(file)).unwrap_or_default();
        assert_no_piece_of(secret, &bytes, 8, file);
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
