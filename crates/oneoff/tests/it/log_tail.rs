//! Opening a log at its end: `tail=N` on every transport (long-poll, `log.txt`, WebSocket,
//! SSE), backward pages with `before`, the `head` and `prev` of every page, resuming after a
//! tail with `after` / `Last-Event-ID` exactly, and hostile values of each parameter.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{cli_command, eventually, seqs_of, stderr, stdout, TestServer};

const JOBS: &str = r#"
[[job]]
name = "count"
command = ["seq", "1", "{n}"]
[[job.param]]
name = "n"
type = "integer"

[[job]]
name = "wide"
command = ["sh", "-c", "i=1; while [ $i -le 300 ]; do printf '%02000d\n' $i; i=$((i+1)); done"]
"#;

/// A finished run of `count` printing 1..=n; returns its id.
async fn counted(server: &TestServer, n: u64) -> i64 {
    let id = server.start_run("count", json!({ "n": n })).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    id
}

/// A run that prints lines 1 to 100, stored before `start` returns, then waits for
/// [`GatedRun::release`] to print the rest up to `last`: a follower started in between
/// must get every line after its start.
struct GatedRun {
    server: TestServer,
    id: i64,
    gate: tempfile::TempDir,
}

impl GatedRun {
    async fn start(last: u64) -> GatedRun {
        let gate = tempfile::tempdir().unwrap();
        let jobs = format!(
            r#"
[[job]]
name = "gated"
command = ["sh", "-c", "seq 1 100; while [ ! -e '{}' ]; do sleep 0.01; done; seq 101 {last}"]
"#,
            gate.path().join("go").display()
        );
        let server = TestServer::start(&jobs).await;
        let id = server.start_run("gated", json!({})).await;
        eventually("the first hundred lines stored", std::time::Duration::from_secs(20), || async {
            let (_, page) = server.get(&format!("/api/v1/runs/{id}/log?tail=0")).await;
            (page["head"] == 100).then_some(())
        })
        .await;
        GatedRun { server, id, gate }
    }

    fn release(&self) {
        std::fs::write(self.gate.path().join("go"), "").unwrap();
    }
}

fn range(from: u64, to: u64) -> Vec<u64> {
    (from..=to).collect()
}

#[tokio::test]
async fn a_long_poll_opens_at_the_tail_and_pages_back_to_the_first_line() {
    let server = TestServer::start(JOBS).await;
    let id = counted(&server, 5000).await;
    let log = format!("/api/v1/runs/{id}/log");

    let (status, tail) = server.get(&format!("{log}?tail=10")).await;
    assert_eq!(status, StatusCode::OK, "{tail}");
    assert_eq!(tail["head"], 5000);
    assert_eq!(seqs_of(tail["entries"].as_array().unwrap()), range(4991, 5000));
    assert_eq!(tail["entries"][0]["text"], "4991");
    assert_eq!((tail["prev"].as_u64(), tail["next"].as_u64(), &tail["done"]), (Some(4991), Some(5000), &json!(true)));

    // Backwards from `prev` to the start: every entry once, each page the last before `before`.
    let (mut before, mut seen) = (tail["prev"].as_u64().unwrap(), seqs_of(tail["entries"].as_array().unwrap()));
    while before > 1 {
        let (status, page) = server.get(&format!("{log}?before={before}&limit=700")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let entries = seqs_of(page["entries"].as_array().unwrap());
        assert_eq!(entries, range(before.saturating_sub(700).max(1), before - 1), "the page right before {before}");
        assert_eq!(page["head"], 5000);
        assert_eq!(page["prev"].as_u64(), entries.first().copied());
        assert_eq!(page["next"].as_u64(), entries.last().copied());
        assert_eq!(page["done"], false, "entries follow a backward page");
        before = page["prev"].as_u64().unwrap();
        seen.splice(0..0, entries);
    }
    assert_eq!(seen, range(1, 5000));

    let (_, between) = server.get(&format!("{log}?after=100&before=106")).await;
    assert_eq!(seqs_of(between["entries"].as_array().unwrap()), range(101, 105), "after < seq < before");
    let (_, past) = server.get(&format!("{log}?before=18446744073709551615&limit=3")).await;
    assert_eq!(seqs_of(past["entries"].as_array().unwrap()), range(4998, 5000), "before past the head: the last ones");
    assert_eq!(past["done"], true);
    for before in [0, 1] {
        let (status, empty) = server.get(&format!("{log}?before={before}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(empty["entries"], json!([]));
        assert_eq!((empty["prev"].as_u64(), empty["next"].as_u64()), (Some(before), Some(0)), "{empty}");
        assert_eq!(empty["head"], 5000);
    }
    let (_, whole) = server.get(&format!("{log}?tail=999999&limit=10")).await;
    assert_eq!(seqs_of(whole["entries"].as_array().unwrap()), range(1, 10), "tail beyond the log: from the start");
    assert_eq!(whole["prev"], 1);
    let (_, at_head) = server.get(&format!("{log}?tail=0&wait=5")).await;
    assert_eq!(at_head["entries"], json!([]), "tail=0: nothing old");
    assert_eq!((at_head["next"].as_u64(), at_head["prev"].as_u64()), (Some(5000), Some(5001)));
    assert_eq!(at_head["done"], true, "a final run at its head is done at once, whatever the wait");
    let (_, huge) = server.get(&format!("{log}?tail=18446744073709551615&limit=1")).await;
    assert_eq!(seqs_of(huge["entries"].as_array().unwrap()), vec![1]);
    let (_, forward) = server.get(&format!("{log}?after=18446744073709551615")).await;
    assert_eq!((&forward["entries"], &forward["done"]), (&json!([]), &json!(true)), "{forward}");

    // Resume after a tail: `after=next` goes on exactly.
    let (_, first) = server.get(&format!("{log}?tail=300&limit=100")).await;
    assert_eq!(seqs_of(first["entries"].as_array().unwrap()), range(4701, 4800));
    let (_, rest) = server.get(&format!("{log}?after={}", first["next"])).await;
    assert_eq!(seqs_of(rest["entries"].as_array().unwrap()), range(4801, 5000));
}

#[tokio::test]
async fn a_backward_page_cut_by_size_keeps_the_entries_nearest_before() {
    let server = TestServer::start_with(JOBS, "[streams]\nmax_message_bytes = 65536").await;
    let id = server.start_run("wide", json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let (status, page) = server.get(&format!("/api/v1/runs/{id}/log?before=201&limit=100")).await;
    assert_eq!(status, StatusCode::OK);
    let entries = seqs_of(page["entries"].as_array().unwrap());
    assert!(entries.len() < 100 && entries.len() > 5, "cut by max_message_bytes: {} entries", entries.len());
    assert_eq!(entries.last(), Some(&200), "the entries nearest `before` are kept");
    assert_eq!(entries, range(entries[0], 200), "no gap");
    assert_eq!(page["prev"].as_u64(), Some(entries[0]), "the page then starts later: read on from prev");
    assert!(serde_json::to_string(&page).unwrap().len() <= 65536);
    let (_, before_that) = server.get(&format!("/api/v1/runs/{id}/log?before={}&limit=100", entries[0])).await;
    assert_eq!(seqs_of(before_that["entries"].as_array().unwrap()).last(), Some(&(entries[0] - 1)));
}

#[tokio::test]
async fn the_raw_log_opens_at_the_tail() {
    let server = TestServer::start(JOBS).await;
    let id = counted(&server, 3000).await;
    let (status, text) = server.get_text(&format!("/api/v1/runs/{id}/log.txt?tail=3")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(String::from_utf8(text).unwrap(), "2998\n2999\n3000\n");
    let (_, all) = server.get_text(&format!("/api/v1/runs/{id}/log.txt?tail=99999")).await;
    let expected: String = (1..=3000).map(|n| format!("{n}\n")).collect();
    assert_eq!(String::from_utf8(all).unwrap(), expected);
    let (_, none) = server.get_text(&format!("/api/v1/runs/{id}/log.txt?tail=0&follow=true")).await;
    assert!(none.is_empty(), "tail=0 of a finished run: nothing, and the follow ends");
}

#[tokio::test]
async fn a_websocket_viewer_starts_with_the_last_lines_and_resumes_exactly() {
    let server = TestServer::start_with(JOBS, "[streams]\nmax_message_bytes = 65536").await;
    let id = server.start_run("wide", json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let (whole, messages) = server.ws_follow_query(id, "tail=200", None).await.expect("the stream opens");
    assert_eq!(seqs_of(&whole.entries), range(101, 300));
    assert!(messages.len() > 4, "messages of at most max_message_bytes: {}", messages.len());
    assert_eq!(whole.done.as_ref().map(|done| done["next"].clone()), Some(json!(300)));

    // Hang up after three messages, then reconnect with the last `next`.
    let (first, messages) = server.ws_follow_query(id, "tail=200", Some(3)).await.unwrap();
    let next = messages.last().unwrap()["next"].as_u64().unwrap();
    assert!(next < 300, "hung up in the middle: {next}");
    let (rest, _) = server.ws_follow_query(id, &format!("after={next}"), None).await.unwrap();
    let mut joined = seqs_of(&first.entries);
    joined.extend(seqs_of(&rest.entries));
    assert_eq!(joined, range(101, 300), "no gap, no duplicate");
}

#[tokio::test]
async fn an_sse_viewer_starts_with_the_last_lines_and_last_event_id_wins_over_tail() {
    let server = TestServer::start_with(JOBS, "[streams]\nmax_message_bytes = 65536").await;
    let id = server.start_run("wide", json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let whole = server.sse_follow_query(id, "tail=200", None, None).await.expect("the stream opens");
    assert_eq!(seqs_of(&whole.entries()), range(101, 300));

    // An EventSource reconnects to the same URL (still `tail=200`) with Last-Event-ID.
    let first = server.sse_follow_query(id, "tail=200", None, Some(2)).await.unwrap();
    let last_id: u64 = first.events.last().unwrap().id.as_deref().unwrap().parse().unwrap();
    assert!(last_id < 300, "hung up in the middle: {last_id}");
    let resumed = server.sse_follow_query(id, "tail=200", Some(last_id), None).await.unwrap();
    let mut joined = seqs_of(&first.entries());
    joined.extend(seqs_of(&resumed.entries()));
    assert_eq!(joined, range(101, 300), "resumed exactly after the last event, not with the tail again");
    assert_eq!(resumed.events.last().unwrap().event.as_deref(), Some("done"));
}

#[tokio::test]
async fn a_follower_from_the_tail_goes_on_live_on_every_transport() {
    let gated = GatedRun::start(250).await;
    let (server, id) = (&gated.server, gated.id);
    let log = format!("/api/v1/runs/{id}/log");
    // Each follower starts now, from the last 5 stored, and must get every line after them.
    // The long-poll's first page and the download's headers come once their start is fixed;
    // a stream counts as a viewer once its start is fixed.
    let (_, first) = server.get(&format!("{log}?tail=5")).await;
    let download = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{id}/log.txt?tail=5&follow=true", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    let ws = server.ws_follow_query(id, "tail=5", None);
    let sse = server.sse_follow_query(id, "tail=5", None, None);
    let text = async { String::from_utf8(download.bytes().await.unwrap().to_vec()).unwrap() };
    let poll = async {
        let mut seen = seqs_of(first["entries"].as_array().unwrap());
        let mut next = first["next"].as_u64().unwrap();
        loop {
            let (_, page) = server.get(&format!("{log}?after={next}&wait=10")).await;
            seen.extend(seqs_of(page["entries"].as_array().unwrap()));
            next = page["next"].as_u64().unwrap();
            if page["done"] == true {
                return seen;
            }
        }
    };
    let release = async {
        eventually("both streams open", std::time::Duration::from_secs(20), || async {
            let (_, metrics) = server.get_text("/metrics").await;
            let metrics = String::from_utf8(metrics).unwrap();
            metrics.lines().any(|line| line == "oneoff_log_viewers 2").then_some(())
        })
        .await;
        gated.release();
    };
    let (ws, sse, text, poll, ()) = tokio::join!(ws, sse, text, poll, release);
    let expected = range(96, 250);
    assert_eq!(seqs_of(&ws.unwrap().0.entries), expected, "WebSocket");
    assert_eq!(seqs_of(&sse.unwrap().entries()), expected, "SSE");
    assert_eq!(poll, expected, "long-poll");
    let lines: Vec<u64> = text.lines().map(|line| line.parse().unwrap()).collect();
    assert_eq!(lines, expected, "log.txt");
}

#[tokio::test]
async fn hostile_positions_are_refused_in_our_words_on_every_transport() {
    let server = TestServer::start(JOBS).await;
    let id = counted(&server, 10).await;
    let base = format!("/api/v1/runs/{id}");
    let refused = [
        ("tail=5&after=0", "`after` or `tail`"),
        ("tail=-1", "whole number of 0 or more"),
        ("tail=abc", "must be a whole number"),
        ("tail=99999999999999999999999", "out of range"),
        ("tail=1.5", "tail"),
        ("tail=", "tail"),
    ];
    for (query, says) in refused {
        for path in ["log", "log.txt", "log/sse"] {
            let (status, body) = server.get_text(&format!("{base}/{path}?{query}")).await;
            let body = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}?{query}: {body}");
            assert!(body.contains(says), "{path}?{query}: {body}");
        }
        let (status, body) = server.ws_follow_query(id, query, None).await.expect_err("a refused handshake");
        assert_eq!(status, 400, "ws?{query}");
        assert!(body["error"]["message"].as_str().unwrap().contains(says), "ws?{query}: {body}");
    }
    for (query, says) in [
        ("before=5&tail=2", "`before` or `tail`"),
        ("before=5&wait=1", "drop `wait`"),
        ("before=-3", "whole number of 0 or more"),
        ("before=x", "must be a whole number"),
    ] {
        let (status, body) = server.get(&format!("{base}/log?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(body["error"]["message"].as_str().unwrap().contains(says), "{query}: {body}");
    }
    let (status, body) = server.get(&format!("{base}/log.txt?before=5")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "log.txt has no backward read: {body}");
    // Still alive and exact after all that.
    let (_, page) = server.get(&format!("{base}/log?tail=2")).await;
    assert_eq!(seqs_of(page["entries"].as_array().unwrap()), vec![9, 10]);
}

const MIXED: &str = r#"
[[job]]
name = "mixed"
command = ["sh", "-c", "seq 1 3000; echo oops >&2; seq 3001 3005"]
"#;

#[tokio::test]
async fn oneoff_logs_tail_prints_the_last_entries_on_their_streams() {
    let server = TestServer::start(MIXED).await;
    let id = server.start_run("mixed", json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let id = id.to_string();

    let output = server.cli(&["logs", &id, "--tail", "6"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "3001\n3002\n3003\n3004\n3005\n");
    assert_eq!(stderr(&output), "oops\n", "the tail's stderr line on stderr");

    let whole = server.cli(&["logs", &id]).await;
    let everything: String = (1..=3005).map(|n| format!("{n}\n")).collect();
    assert_eq!(stdout(&whole), everything, "the default form: the whole log, stdout on stdout");
    assert_eq!(stderr(&whole), "oops\n");
    let longer = server.cli(&["logs", &id, "--tail", "18446744073709551615"]).await;
    assert_eq!((stdout(&longer), stderr(&longer)), (everything, "oops\n".to_string()), "a tail longer than the log");

    let nothing = server.cli(&["logs", &id, "--tail", "0"]).await;
    assert!(nothing.status.success());
    assert_eq!((stdout(&nothing).as_str(), stderr(&nothing).as_str()), ("", ""));

    let json = server.cli(&["logs", &id, "--tail", "2", "--json"]).await;
    let seqs: Vec<u64> = stdout(&json)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3005, 3006]);

    for (args, says) in [
        (vec!["--tail", "5", "--after", "3"], "cannot be used with"),
        (vec!["--tail=-1"], "invalid value '-1' for '--tail <N>'"),
        (vec!["--tail", "many"], "invalid value"),
    ] {
        let mut full = vec!["logs", id.as_str()];
        full.extend(args.iter().copied());
        let refused = server.cli(&full).await;
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        assert!(stderr(&refused).contains(says), "{args:?}: {}", stderr(&refused));
    }
}

#[tokio::test]
async fn oneoff_logs_tail_follow_starts_at_the_end_and_goes_on_to_the_last_line() {
    use tokio::io::AsyncBufReadExt;
    let gated = GatedRun::start(150).await;
    let (server, id) = (&gated.server, gated.id);
    let mut command = cli_command(&["logs", &id.to_string(), "--tail", "5", "-f"]);
    command.env("ONEOFF_SERVER", &server.url).stdout(std::process::Stdio::piped());
    let mut child = tokio::process::Command::from(command).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push(line.parse::<u64>().unwrap());
        if seen.last() == Some(&100) {
            // The follower printed its tail; only now does the job go on.
            gated.release();
        }
    }
    assert!(child.wait().await.unwrap().success());
    assert_eq!(seen, range(96, 150), "the last 5, then every line after them");
}
