//! Progress bars show while they run: a `\r` bar that is never quiet is stored in pieces,
//! `partial_line_flush` after its oldest unstored byte, and every viewer (long-poll, SSE,
//! WebSocket, `oneoff logs -f`) sees its first state while the job is still drawing it; the
//! pieces are marked so that readers join them into the one line a terminal would show, and
//! the raw download is the job's bytes exactly.

use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use crate::support::TestServer;

/// The promise of the issue: a state is visible this soon after the job printed it.
const VISIBLE_WITHIN_SECONDS: f64 = 0.5;

/// A bar of `states` states, one every `pause` seconds, each stamped with the time it was
/// printed (bash's `$EPOCHREALTIME`, no fork); it starts once `go` exists, so that every
/// viewer is connected before the first state is printed.
fn bar_jobs(go: &std::path::Path, states: u32, pause: &str) -> String {
    let script = format!(
        r#"while [ ! -e '{go}' ]; do sleep 0.01; done; i=0; while [ $i -lt {states} ]; do printf '\rprogress %d %s' $i $EPOCHREALTIME; sleep {pause}; i=$((i+1)); done; echo"#,
        go = go.display()
    );
    format!("[[job]]\nname = \"bar\"\ncommand = [\"bash\", \"-c\", {script:?}]\n")
}

fn now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs_f64()
}

/// One state of a bar: its number, and when it was printed (`$EPOCHREALTIME`, as printed).
#[derive(Debug, Clone, PartialEq)]
struct State {
    number: u32,
    printed_at: String,
}

impl State {
    fn parse(text: &str) -> Option<State> {
        let (number, printed_at) = text.strip_prefix("progress ")?.split_once(' ')?;
        let (_, micros) = printed_at.split_once('.')?;
        let whole = micros.len() == 6 && micros.bytes().all(|byte| byte.is_ascii_digit());
        let number = number.parse().ok().filter(|_| whole)?;
        Some(State { number, printed_at: printed_at.to_string() })
    }

    fn printed_at_seconds(&self) -> f64 {
        self.printed_at.parse().expect("a print time")
    }
}

/// The states of a bar's text, in order (every `\r` starts one).
fn states(text: &str) -> Vec<State> {
    text.split('\r')
        .filter(|state| !state.is_empty())
        .map(|state| State::parse(state).unwrap_or_else(|| panic!("a whole state: {state:?}")))
        .collect()
}

/// What one line shows on a terminal: `\r` moves back to the start, later text overwrites.
fn terminal_line(text: &str) -> String {
    let mut shown: Vec<char> = Vec::new();
    let mut column = 0;
    for c in text.chars() {
        if c == '\r' {
            column = 0;
            continue;
        }
        if column < shown.len() {
            shown[column] = c;
        } else {
            shown.push(c);
        }
        column += 1;
    }
    shown.into_iter().collect()
}

/// The first output a viewer saw: its text and when it arrived.
#[derive(Debug, Clone)]
struct FirstSight {
    viewer: &'static str,
    text: String,
    at: f64,
}

fn first_of_entries(viewer: &'static str, entries: &[Value]) -> Option<FirstSight> {
    let entry = entries.iter().find(|entry| entry["stream"] == "stdout")?;
    Some(FirstSight { viewer, text: entry["text"].as_str().unwrap_or_default().to_string(), at: now_seconds() })
}

async fn long_poll_viewer(url: String, id: i64) -> FirstSight {
    let client = reqwest::Client::new();
    let mut after = 0;
    loop {
        let page: Value = client
            .get(format!("{url}/api/v1/runs/{id}/log?after={after}&wait=20"))
            .send()
            .await
            .expect("long-poll")
            .json()
            .await
            .expect("a log page");
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        if let Some(first) = first_of_entries("long-poll", &entries) {
            return first;
        }
        assert_ne!(page["done"], true, "the run ended before the long-poll saw output");
        after = page["next"].as_u64().expect("next");
    }
}

async fn sse_viewer(url: String, id: i64, connected: tokio::sync::oneshot::Sender<()>) -> FirstSight {
    let response = reqwest::get(format!("{url}/api/v1/runs/{id}/log/sse")).await.expect("SSE request");
    let _ = connected.send(());
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("SSE chunk")));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            for data in block.lines().filter_map(|line| line.strip_prefix("data: ")) {
                let value: Value = serde_json::from_str(data).expect("JSON data");
                if let Some(first) = first_of_entries("SSE", value["entries"].as_array().map_or(&[][..], Vec::as_slice))
                {
                    return first;
                }
            }
        }
    }
    panic!("the SSE stream ended before any output");
}

async fn websocket_viewer(url: String, id: i64, connected: tokio::sync::oneshot::Sender<()>) -> FirstSight {
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("{}/api/v1/runs/{id}/log/ws", url.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket handshake");
    let _ = connected.send(());
    while let Some(message) = socket.next().await {
        if let Message::Text(text) = message.expect("WebSocket message") {
            let value: Value = serde_json::from_str(&text).expect("JSON message");
            if let Some(first) =
                first_of_entries("WebSocket", value["entries"].as_array().map_or(&[][..], Vec::as_slice))
            {
                return first;
            }
        }
    }
    panic!("the WebSocket closed before any output");
}

/// `oneoff logs -f`: its first output, and everything it printed once the run ended.
async fn cli_viewer(url: String, id: i64) -> (FirstSight, Vec<u8>) {
    let mut command = tokio::process::Command::from(crate::support::cli_command(&["logs", "-f", &id.to_string()]));
    command.env("ONEOFF_SERVER", url).stdout(std::process::Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().expect("start oneoff logs -f");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut printed = Vec::new();
    let mut first = None;
    let mut buffer = [0u8; 4096];
    loop {
        let count = stdout.read(&mut buffer).await.expect("read the CLI's output");
        if count == 0 {
            break;
        }
        printed.extend_from_slice(&buffer[..count]);
        let text = String::from_utf8_lossy(&printed).into_owned();
        let first_state = text.split('\r').find(|state| !state.is_empty());
        if first.is_none() && first_state.is_some_and(|state| State::parse(state).is_some()) {
            first = Some(FirstSight { viewer: "oneoff logs -f", text, at: now_seconds() });
        }
    }
    assert!(child.wait().await.expect("oneoff logs -f exits").success());
    (first.expect("oneoff logs -f printed the bar"), printed)
}

async fn a_bar_shows_while_it_runs(states_total: u32, pause: &str) {
    let go_dir = tempfile::tempdir().expect("temp dir");
    let go = go_dir.path().join("go");
    let server = TestServer::start(&bar_jobs(&go, states_total, pause)).await;
    let id = server.start_run("bar", json!({})).await;
    server.wait_status(id, |status| status == "running").await;

    let (sse_connected, sse_ready) = tokio::sync::oneshot::channel();
    let (ws_connected, ws_ready) = tokio::sync::oneshot::channel();
    let viewers = [
        tokio::spawn(long_poll_viewer(server.url.clone(), id)),
        tokio::spawn(sse_viewer(server.url.clone(), id, sse_connected)),
        tokio::spawn(websocket_viewer(server.url.clone(), id, ws_connected)),
    ];
    let cli = tokio::spawn(cli_viewer(server.url.clone(), id));
    sse_ready.await.expect("SSE connected");
    ws_ready.await.expect("WebSocket connected");
    std::fs::write(&go, b"").expect("start the bar");

    let mut sights = Vec::new();
    for viewer in viewers {
        sights.push(viewer.await.expect("viewer task"));
    }
    let (cli_sight, cli_output) = cli.await.expect("CLI viewer task");
    sights.push(cli_sight);
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "succeeded", "{run}");

    // The whole log: one line in pieces, numbered without gaps, marked so it joins.
    let entries = server.entries(id).await;
    let seqs: Vec<u64> = entries.iter().map(|entry| entry["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=entries.len() as u64).collect::<Vec<_>>(), "gapless sequence numbers");
    assert!(entries.iter().all(|entry| entry["stream"] == "stdout"), "{entries:?}");
    assert!(entries.len() >= 5, "a bar drawn for seconds is stored in many pieces, got {}", entries.len());
    let (last, pieces) = entries.split_last().expect("entries");
    assert!(entries[0].get("continues").is_none(), "the first piece starts the line: {}", entries[0]);
    assert!(entries[1..].iter().all(|entry| entry["continues"] == true), "every later piece continues it");
    assert!(pieces.iter().all(|entry| entry["partial"] == true), "every piece but the last says the line goes on");
    assert!(last.get("partial").is_none(), "the last piece ends the line: {last}");
    let joined: String = entries.iter().map(|entry| entry["text"].as_str().expect("text")).collect();
    let drawn = states(&joined);
    assert_eq!(
        drawn.iter().map(|state| state.number).collect::<Vec<_>>(),
        (0..states_total).collect::<Vec<_>>(),
        "every state once, in order"
    );
    let last_state = &drawn[drawn.len() - 1];
    let shown = format!("progress {} {}", last_state.number, last_state.printed_at);
    assert_eq!(terminal_line(&joined), shown, "what a terminal shows");

    // The raw download and the CLI are the job's bytes exactly.
    let (_, raw) = server.get_text(&format!("/api/v1/runs/{id}/log.txt")).await;
    assert_eq!(raw, format!("{joined}\n").into_bytes(), "log.txt is byte-exact");
    assert_eq!(cli_output, raw, "oneoff logs -f prints the line as the job wrote it");

    // Every viewer saw the first state soon after it was printed, long before the bar ended.
    let first_at = drawn[0].printed_at_seconds();
    for sight in &sights {
        let seen = states(sight.text.trim_end_matches('\n'));
        assert_eq!(seen.first(), Some(&drawn[0]), "{} saw {:?} first", sight.viewer, sight.text);
        assert!(!seen.contains(last_state), "{} saw the bar only when it was finished: {:?}", sight.viewer, sight.text);
        let latency = sight.at - first_at;
        assert!(
            latency <= VISIBLE_WITHIN_SECONDS,
            "{} saw the first state {latency:.3}s after it was printed (promise: {VISIBLE_WITHIN_SECONDS}s)",
            sight.viewer
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_hz_bar_shows_while_it_runs_and_joins_into_one_line() {
    a_bar_shows_while_it_runs(80, "0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_hz_bar_shows_while_it_runs_and_joins_into_one_line() {
    a_bar_shows_while_it_runs(400, "0.02").await;
}

const CUT_JOBS: &str = r#"
[[job]]
name = "long-line"
command = ["sh", "-c", "head -c 10000 /dev/zero | tr '\\0' x; echo; printf 'a\\tb'; sleep 0.5; printf ' c'"]
"#;

/// A line cut at `max_line_bytes` downloads as the one line the job wrote, and output that
/// ends without a newline downloads without one.
#[tokio::test]
async fn cut_lines_and_a_last_line_without_newline_download_exactly() {
    let server = TestServer::start_with(CUT_JOBS, "max_line_bytes = 4096").await;
    let id = server.start_run("long-line", json!({})).await;
    server.wait_final(id).await;
    let entries = server.entries(id).await;
    let texts: Vec<usize> = entries.iter().map(|entry| entry["text"].as_str().unwrap_or_default().len()).collect();
    assert_eq!(&texts[..3], &[4096, 4096, 1808], "{entries:?}");
    assert_eq!(entries[1]["continues"], true);
    assert_eq!(entries[0]["partial"], true);
    assert!(entries[2].get("partial").is_none());
    let (_, raw) = server.get_text(&format!("/api/v1/runs/{id}/log.txt")).await;
    let mut expected = vec![b'x'; 10_000];
    expected.extend_from_slice(b"\na\tb c");
    assert_eq!(raw, expected, "log.txt is what the job wrote, without a newline it did not write");
    let output = server.cli(&["logs", &id.to_string()]).await;
    assert!(output.status.success(), "{}", crate::support::stderr(&output));
    let mut printed = expected.clone();
    printed.push(b'\n');
    assert_eq!(output.stdout, printed, "the CLI joins the pieces and ends the last line for the terminal");
}

const SECRET: &str = "S3cr3tT0ken-abcdefXYZ";

const SECRET_BAR_JOBS: &str = r#"
[[job]]
name = "typing"
command = ["bash", "-c", 'printf "\rkey: "; t="$ONEOFF_PARAM_TOKEN"; for ((i = 0; i < ${#t}; i++)); do printf "%s" "${t:i:1}"; sleep 0.05; done; printf " ok\n"']
[[job.param]]
name = "token"
type = "secret"
required = true
"#;

/// A bar that is never quiet is stored in pieces while it runs, but a secret it writes one
/// character at a time is still masked whole: the flush takes only what the masker let
/// through, never the bytes it holds back.
#[tokio::test]
async fn a_secret_written_into_a_bar_that_is_never_quiet_is_masked_whole() {
    let server = TestServer::start_with(SECRET_BAR_JOBS, "partial_line_flush = \"100ms\"").await;
    let id = server.start_run("typing", json!({ "token": SECRET })).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let entries = server.entries(id).await;
    assert!(entries.len() >= 2, "the line was stored in pieces while the secret was typed: {entries:?}");
    assert_eq!(entries[0]["text"], "\rkey: ", "what came before the secret was stored on the timer");
    let joined: String = entries.iter().map(|entry| entry["text"].as_str().expect("text")).collect();
    assert_eq!(joined, "\rkey: ******** ok");
    let (_, raw) = server.get_text(&format!("/api/v1/runs/{id}/log.txt")).await;
    assert_eq!(raw, b"\rkey: ******** ok\n");
    for window in SECRET.as_bytes().windows(4) {
        assert!(!raw.windows(4).any(|stored| stored == window), "a piece of the secret was stored: {window:?}");
    }
}
