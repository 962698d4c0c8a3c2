//! Log capture and the long-poll and raw-text transports: sequence numbers without gaps,
//! waiting for new lines, binary output, over-long lines and lines without a newline.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::TestServer;

const JOBS: &str = r#"
[[job]]
name = "count"
command = ["seq", "1", "{n}"]
[[job.param]]
name = "n"
type = "integer"

[[job]]
name = "drip"
command = ["sh", "-c", 'for i in 1 2 3; do echo "drip $i"; sleep 0.3; done']

[[job]]
name = "binary"
command = ["printf", '\377\376abc\000def\r\nok\n']

[[job]]
name = "long-line"
command = ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; echo; echo after"]

[[job]]
name = "partial"
command = ["sh", "-c", "printf 'progress 50%%'; sleep 1.5; printf '\\rprogress 100%%\\n'"]

[[job]]
name = "mixed"
command = ["sh", "-c", "echo out1; echo err1 >&2; sleep 0.1; echo out2; echo err2 >&2"]
"#;

#[tokio::test]
async fn many_lines_arrive_in_order_without_gaps_across_pages() {
    // Lines cut by a pipe read wait this long before being stored in pieces.
    let server = TestServer::start_with(JOBS, "partial_line_flush = \"10s\"").await;
    let id = server.start_run("count", json!({ "n": 50000 })).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let mut after = 0;
    let mut expected = 1;
    loop {
        let (status, page) = server.get(&format!("/api/v1/runs/{id}/log?after={after}&limit=7000")).await;
        assert_eq!(status, StatusCode::OK);
        for entry in page["entries"].as_array().unwrap() {
            assert_eq!(entry["seq"], expected);
            assert_eq!(entry["text"], expected.to_string());
            assert_eq!(entry["stream"], "stdout");
            expected += 1;
        }
        after = page["next"].as_u64().unwrap();
        if page["done"] == true {
            break;
        }
    }
    assert_eq!(expected, 50001);
    assert_eq!(after, 50000);
}

#[tokio::test]
async fn long_poll_waits_for_new_lines_and_ends_with_done() {
    let server = TestServer::start(JOBS).await;
    let id = server.start_run("drip", json!({})).await;
    let mut after = 0;
    let mut texts = Vec::new();
    let mut polls = 0;
    loop {
        let (status, page) = server.get(&format!("/api/v1/runs/{id}/log?after={after}&wait=10")).await;
        assert_eq!(status, StatusCode::OK);
        polls += 1;
        for entry in page["entries"].as_array().unwrap() {
            texts.push(entry["text"].as_str().unwrap().to_string());
        }
        after = page["next"].as_u64().unwrap();
        if page["done"] == true {
            assert_eq!(page["status"], "succeeded");
            break;
        }
        assert!(polls < 20, "long-poll returned empty pages in a loop");
    }
    assert_eq!(texts, vec!["drip 1", "drip 2", "drip 3"]);
    // A finished run answers at once, whatever the wait.
    let started = Instant::now();
    let (_, page) = server.get(&format!("/api/v1/runs/{id}/log?after={after}&wait=30")).await;
    assert_eq!((page["entries"].as_array().unwrap().len(), page["done"].as_bool()), (0, Some(true)));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn binary_output_is_stored_without_loss_and_shown_with_replacement_characters() {
    let server = TestServer::start(JOBS).await;
    let id = server.start_run("binary", json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let lines = server.lines(id, "stdout").await;
    assert_eq!(lines, vec!["\u{fffd}\u{fffd}abc\u{0}def", "ok"]);
    let (status, raw) = server.get_text(&format!("/api/v1/runs/{id}/log.txt")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(raw, b"\xff\xfeabc\x00def\nok\n".to_vec());
}

#[tokio::test]
async fn over_long_lines_are_cut_at_the_bound() {
    let server = TestServer::start_with(JOBS, "max_line_bytes = 65536").await;
    let id = server.start_run("long-line", json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let lines = server.lines(id, "stdout").await;
    let (last, pieces) = lines.split_last().unwrap();
    assert_eq!(last, "after");
    assert!(pieces.len() >= 5, "300000 bytes need at least 5 entries of 65536");
    assert!(pieces.iter().all(|piece| piece.len() <= 65536 && piece.bytes().all(|byte| byte == b'x')));
    assert_eq!(pieces.iter().map(String::len).sum::<usize>(), 300_000, "nothing lost");
}

#[tokio::test]
async fn a_line_without_newline_shows_up_before_the_job_ends() {
    let server = TestServer::start(JOBS).await;
    let id = server.start_run("partial", json!({})).await;
    let (_, page) = server.get(&format!("/api/v1/runs/{id}/log?after=0&wait=10")).await;
    assert_eq!(page["entries"][0]["text"], "progress 50%");
    assert_eq!(page["status"], "running", "the partial line came while the job was still running");
    server.wait_final(id).await;
    assert_eq!(server.lines(id, "stdout").await, vec!["progress 50%", "\rprogress 100%"]);
}

#[tokio::test]
async fn stdout_and_stderr_are_kept_apart_on_one_sequence() {
    let server = TestServer::start(JOBS).await;
    let id = server.start_run("mixed", json!({})).await;
    server.wait_final(id).await;
    let entries = server.entries(id).await;
    let seqs: Vec<u64> = entries.iter().map(|entry| entry["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(server.lines(id, "stdout").await, vec!["out1", "out2"]);
    assert_eq!(server.lines(id, "stderr").await, vec!["err1", "err2"]);
    assert!(entries.iter().all(|entry| entry["ts"].as_str().unwrap().ends_with('Z')));
}

#[tokio::test]
async fn raw_log_follows_a_running_job_until_it_ends() {
    let server = TestServer::start(JOBS).await;
    let id = server.start_run("drip", json!({})).await;
    let response = reqwest::get(format!("{}/api/v1/runs/{id}/log.txt?follow=true", server.url)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    let body = response.text().await.unwrap();
    assert_eq!(body, "drip 1\ndrip 2\ndrip 3\n");
    assert_eq!(server.run_json(id).await["status"], "succeeded", "the stream ended because the run did");

    let (_, tail) = server.get_text(&format!("/api/v1/runs/{id}/log.txt?after=2")).await;
    assert_eq!(tail, b"drip 3\n");
}
