//! Hostile log viewers. Viewers that never read, on every transport, cost the server one
//! message each, not the run's output however large it is; every transport delivers a huge
//! line whole, in bounded messages; following a finished run from past its end returns
//! at once, done, on every transport and in the CLI; and a job that prints empty lines as fast
//! as a pipe goes costs the server a bounded amount of memory, and no line.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{cli_command, eventually, ServerProcess, TestServer};

const JOBS: &str = r#"
[[job]]
name = "huge-line"
command = ["sh", "-c", "head -c {bytes} /dev/zero | tr '\\0' x"]
[[job.param]]
name = "bytes"
type = "integer"

[[job]]
name = "one-line"
command = ["echo", "the only line"]

[[job]]
name = "newlines"
command = ["sh", "-c", "head -c {lines} /dev/zero | tr '\\0' '\\n'"]
[[job.param]]
name = "lines"
type = "integer"
"#;

/// The attack's run: one line of 200 MB without a newline (stored as 64 KiB entries).
const HUGE_LINE_BYTES: u64 = 200_000_000;
const VIEWERS_PER_TRANSPORT: usize = 8;
/// What all the stalled viewers together may cost the server.
const MAX_GROWTH_KIB: u64 = 64 * 1024;

/// A viewer that sends its request and then never reads, with a tiny receive buffer, so the
/// server's writes to it stall at once.
struct StalledViewer {
    transport: &'static str,
    stream: std::net::TcpStream,
}

impl StalledViewer {
    async fn connect(server: &ServerProcess, transport: &'static str, request: String) -> StalledViewer {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let mut stream = socket.connect(server.addr()).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("send the request");
        StalledViewer { transport, stream: stream.into_std().expect("a std socket") }
    }

    /// Whether the server has written past any response head: the viewer's read is then
    /// built, and the server blocked on sending it. The bytes stay unread.
    fn got_body(&self) -> bool {
        let mut peeked = [0u8; 2048];
        match self.stream.peek(&mut peeked) {
            Ok(0) => panic!("the server closed the stalled {} viewer", self.transport),
            Ok(count) => count >= 1024,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(error) => panic!("stalled {} viewer: {error}", self.transport),
        }
    }
}

fn get_request(path: &str, extra_headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}\r\n")
}

#[tokio::test]
async fn stalled_viewers_of_every_transport_cost_the_server_a_message_each_not_the_log() {
    let mut writer = TestServer::start(JOBS).await;
    let id = writer.start_run("huge-line", json!({ "bytes": HUGE_LINE_BYTES })).await;
    assert_eq!(writer.wait_final(id).await["status"], "succeeded");
    let (_, tail) = writer.get(&format!("/api/v1/runs/{id}/log?after=3000")).await;
    assert!(tail["next"].as_u64().unwrap() > 3000, "the line is stored as many entries: {}", tail["next"]);
    writer.stop().await;
    // The viewers meet a fresh `oneoff serve` on that data: a process of its own, whose
    // allocator holds nothing from storing the line, so what they cost shows in full.
    let server = ServerProcess::start(&writer.dir.path().join("oneoff.toml"));
    let http = reqwest::Client::new();

    let baseline_kib = server.memory_kib("VmRSS");
    server.reset_peak_memory();
    let transports: [(&str, String); 4] = [
        (
            "WebSocket",
            get_request(
                &format!("/api/v1/runs/{id}/log/ws"),
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n",
            ),
        ),
        ("SSE", get_request(&format!("/api/v1/runs/{id}/log/sse"), "Accept: text/event-stream\r\n")),
        ("long-poll", get_request(&format!("/api/v1/runs/{id}/log?limit=10000"), "")),
        ("log.txt", get_request(&format!("/api/v1/runs/{id}/log.txt"), "")),
    ];
    let mut viewers = Vec::new();
    let mut growth = Vec::new();
    for (transport, request) in &transports {
        for _ in 0..VIEWERS_PER_TRANSPORT {
            let viewer = StalledViewer::connect(&server, transport, request.clone()).await;
            let what = format!("the server to start sending to a stalled {transport} viewer");
            eventually(&what, Duration::from_secs(60), || async { viewer.got_body().then_some(()) }).await;
            viewers.push(viewer);
            // Checked after every viewer, so that a server that does hold the log fails here
            // long before it takes the machine's memory.
            let grown_kib = server.memory_kib("VmHWM").saturating_sub(baseline_kib);
            growth.push(format!("{} {transport}: +{} MiB", viewers.len(), grown_kib / 1024));
            assert!(grown_kib < MAX_GROWTH_KIB, "the server's peak memory grew too much: {}", growth.join(", "));
        }
    }
    let health = http.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "the server still answers beside {} stalled viewers", viewers.len());
    eprintln!("resident {baseline_kib} KiB before the viewers; peak growth: {}", growth.join(", "));
}

/// The SSE viewers open on this server process, from its `/metrics`.
async fn sse_viewers(server: &ServerProcess) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.url)).await.expect("GET /metrics").text().await.unwrap();
    let line = text.lines().find(|line| line.starts_with(r#"oneoff_log_viewers_by_transport{transport="sse"}"#));
    line.and_then(|line| line.split_whitespace().last()?.parse().ok()).expect("the SSE viewers gauge")
}

/// hyper polls a response body only when the socket takes more, so an SSE viewer or a
/// download that stops reading used to keep its connection for as long as the client did: a
/// viewer slot, and a stop that never ended. Now a connection whose peer takes nothing for
/// twice `viewer_send_timeout` is cut, and the server's stop goes on.
#[tokio::test]
async fn a_stalled_sse_viewer_or_download_is_cut_off_and_does_not_hold_up_the_stop() {
    let mut writer = TestServer::start_with(JOBS, "[streams]\nviewer_send_timeout = \"1s\"").await;
    let id = writer.start_run("huge-line", json!({ "bytes": 20_000_000 })).await;
    assert_eq!(writer.wait_final(id).await["status"], "succeeded");
    writer.stop().await;
    let server = ServerProcess::start(&writer.dir.path().join("oneoff.toml"));
    let sse_request = get_request(&format!("/api/v1/runs/{id}/log/sse"), "Accept: text/event-stream\r\n");
    let sse = StalledViewer::connect(&server, "SSE", sse_request).await;
    let download =
        StalledViewer::connect(&server, "log.txt", get_request(&format!("/api/v1/runs/{id}/log.txt"), "")).await;
    for viewer in [&sse, &download] {
        let what = format!("the server to start sending to a stalled {} viewer", viewer.transport);
        eventually(&what, Duration::from_secs(60), || async { viewer.got_body().then_some(()) }).await;
    }
    let stalled_at = std::time::Instant::now();
    assert_eq!(sse_viewers(&server).await, 1);
    eventually("the stalled SSE viewer to be cut off", Duration::from_secs(30), || async {
        (sse_viewers(&server).await == 0).then_some(())
    })
    .await;
    assert!(stalled_at.elapsed() >= Duration::from_secs(1), "cut off before it had stalled for the timeout");

    // A fresh stall of each kind, then the stop: it ends, the stalled connections cut.
    let _sse = StalledViewer::connect(&server, "SSE", get_request(&format!("/api/v1/runs/{id}/log/sse"), "")).await;
    let _download =
        StalledViewer::connect(&server, "log.txt", get_request(&format!("/api/v1/runs/{id}/log.txt"), "")).await;
    eventually("the second SSE viewer to be served", Duration::from_secs(60), || async {
        (sse_viewers(&server).await == 1).then_some(())
    })
    .await;
    let mut server = server;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let status = eventually("the server to stop beside stalled viewers", Duration::from_secs(60), || {
        std::future::ready(server.child.try_wait().expect("wait for the server"))
    })
    .await;
    assert!(status.success(), "the stop ended with {status}");
}

/// Nothing but newlines, as fast as a pipe goes: 65,536 lines in every 64 KiB read, faster
/// than any store commits them. The lines waiting between the pipe and the store are bounded
/// by their count, not only by reads: before, this job held the server at 600-750 MB.
#[tokio::test]
async fn a_job_printing_empty_lines_at_pipe_speed_holds_bounded_memory_and_loses_no_line() {
    const LINES: u64 = 4_000_000;
    const MAX_GROWTH_KIB: u64 = 96 * 1024;
    let mut writer = TestServer::start(JOBS).await;
    writer.stop().await;
    let process = ServerProcess::start(&writer.dir.path().join("oneoff.toml"));
    let baseline_kib = process.memory_kib("VmRSS");
    process.reset_peak_memory();
    let server = TestServer::remote(process.url.clone(), writer.dir);
    let id = server.start_run("newlines", json!({ "lines": LINES })).await;
    let run = eventually("the run of 4,000,000 empty lines to end", Duration::from_secs(300), || async {
        let run = server.run_json(id).await;
        let grown_kib = process.memory_kib("VmHWM").saturating_sub(baseline_kib);
        assert!(grown_kib < MAX_GROWTH_KIB, "the server's peak memory grew by {} MiB", grown_kib / 1024);
        (!matches!(run["status"].as_str(), Some("queued" | "running"))).then_some(run)
    })
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let grown_kib = process.memory_kib("VmHWM").saturating_sub(baseline_kib);
    let (_, tail) = server.get(&format!("/api/v1/runs/{id}/log?tail=1")).await;
    assert_eq!(tail["entries"][0]["seq"], LINES, "every line is stored: {tail}");
    assert_eq!(tail["entries"][0]["text"], "");
    eprintln!("resident {baseline_kib} KiB before the run; peak growth {} MiB", grown_kib / 1024);
}

#[tokio::test]
async fn every_transport_delivers_a_huge_line_whole_in_bounded_messages() {
    const LINE_BYTES: usize = 3_000_000;
    const MAX_MESSAGE_BYTES: usize = 65_536;
    let settings = format!("max_line_bytes = 16384\n[streams]\nmax_message_bytes = {MAX_MESSAGE_BYTES}");
    let server = TestServer::start_with(JOBS, &settings).await;
    let id = server.start_run("huge-line", json!({ "bytes": LINE_BYTES })).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let stored = server.entries(id).await;
    let texts = |entries: &[Value]| -> Vec<(u64, usize)> {
        entries.iter().map(|entry| (entry["seq"].as_u64().unwrap(), entry["text"].as_str().unwrap().len())).collect()
    };
    let expected = texts(&stored);
    assert_eq!(expected.iter().map(|(_, length)| length).sum::<usize>(), LINE_BYTES, "the whole line is stored");
    assert!(stored.iter().all(|entry| entry["text"].as_str().unwrap().bytes().all(|byte| byte == b'x')));

    // Long-poll: a page holds at most about one message of output, whatever `limit` says.
    let (status, page) = server.get(&format!("/api/v1/runs/{id}/log?limit=10000")).await;
    assert_eq!(status, StatusCode::OK);
    let page_bytes: usize = texts(page["entries"].as_array().unwrap()).iter().map(|(_, length)| length).sum();
    assert!(page_bytes <= MAX_MESSAGE_BYTES, "a long-poll page carried {page_bytes} bytes of output");

    // WebSocket: every message within the bound, together the stored log.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/api/v1/runs/{id}/log/ws"))).await.unwrap();
    let mut received = Vec::new();
    while let Some(message) = socket.next().await {
        let Message::Text(text) = message.expect("a WebSocket message") else { continue };
        assert!(text.len() <= MAX_MESSAGE_BYTES, "a WebSocket message of {} bytes", text.len());
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["done"] == true {
            break;
        }
        received.extend(value["entries"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(texts(&received), expected, "WebSocket");

    // SSE: the same, each event's id being its last entry.
    let sse = server.sse_follow(id, None).await;
    for event in sse.events.iter().filter(|event| event.event.is_none() && event.comment.is_none()) {
        assert!(event.data.len() <= MAX_MESSAGE_BYTES, "an SSE event of {} bytes", event.data.len());
        let batch: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(event.id.as_deref(), Some(batch["next"].to_string().as_str()), "the event id is where to resume");
    }
    assert_eq!(texts(&sse.entries()), expected, "SSE");

    // log.txt: the exact bytes the job wrote: the pieces joined, and no newline, as the job
    // wrote none (the pieces are marked: it::progress).
    let (status, text) = server.get_text(&format!("/api/v1/runs/{id}/log.txt")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text.len(), LINE_BYTES, "log.txt");
    assert!(text.iter().all(|byte| *byte == b'x'), "log.txt is the line, without a newline between its pieces");
}

/// Guards a request that must return at once: failing, not hanging, when it does not.
async fn promptly<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), request).await.unwrap_or_else(|_| panic!("{what} never returned"))
}

#[tokio::test]
async fn following_a_finished_run_from_past_its_end_is_done_on_every_transport() {
    let server = TestServer::start(JOBS).await;
    let id = server.start_run("one-line", json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    assert_eq!(server.entries(id).await.len(), 1);

    for after in [1u64, 5] {
        let (status, page) =
            promptly("long-poll", server.get(&format!("/api/v1/runs/{id}/log?after={after}&wait=30"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (page["entries"].as_array().map(Vec::len), &page["done"], &page["next"], &page["status"]),
            (Some(0), &json!(true), &json!(after), &json!("succeeded")),
            "long-poll after {after}: {page}"
        );

        let (status, text) = promptly(
            "log.txt with follow",
            server.get_text(&format!("/api/v1/runs/{id}/log.txt?after={after}&follow=true")),
        )
        .await;
        assert_eq!((status, text), (StatusCode::OK, Vec::new()), "log.txt after {after}");

        let sse = promptly("SSE", server.sse_follow(id, Some(after))).await;
        let done = sse.events.last().expect("an event");
        assert_eq!(done.event.as_deref(), Some("done"), "SSE after {after}: {:?}", sse.events);
        assert!(sse.entries().is_empty());

        let ws = promptly("WebSocket", server.ws_follow(id, after)).await;
        assert_eq!(ws.close_code, Some(1000), "WebSocket after {after}: {}", ws.close_reason);
        assert_eq!(
            ws.done.as_ref().map(|done| (&done["status"], &done["next"])),
            Some((&json!("succeeded"), &json!(after)))
        );
        assert!(ws.entries.is_empty());

        let after_text = after.to_string();
        let mut cli = cli_command(&["logs", &id.to_string(), "--after", &after_text, "-f"]);
        cli.env("ONEOFF_SERVER", &server.url);
        let output =
            promptly("oneoff logs --after -f", tokio::process::Command::from(cli).kill_on_drop(true).output()).await;
        let output = output.expect("run oneoff logs");
        assert!(output.status.success(), "oneoff logs --after {after} -f: {output:?}");
        assert!(output.stdout.is_empty(), "nothing after the end: {output:?}");
    }
}

#[tokio::test]
async fn a_long_poll_page_is_bounded_by_its_encoded_size_and_pages_stay_gapless() {
    const LINES: usize = 100;
    const LINE_BYTES: usize = 65_535;
    const MAX_MESSAGE_BYTES: usize = 1_048_576;
    // Every \x01 is six bytes in JSON (`\u0001`): raw bytes are the wrong budget.
    let jobs = format!(
        "[[job]]\nname = \"escapes\"\ncommand = [\"sh\", \"-c\", \"for i in $(seq {LINES}); do head -c {LINE_BYTES} /dev/zero | tr '\\\\0' '\\\\1'; echo; done\"]\n"
    );
    let settings = format!("max_line_bytes = 65536\n[streams]\nmax_message_bytes = {MAX_MESSAGE_BYTES}");
    let server = TestServer::start_with(&jobs, &settings).await;
    let id = server.start_run("escapes", json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let one_entry_json_bytes = 6 * LINE_BYTES + 200;

    let mut after = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let path = format!("/api/v1/runs/{id}/log?after={after}&limit=10000");
        let (status, body) = server.get_text(&path).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.len() <= MAX_MESSAGE_BYTES + one_entry_json_bytes,
            "page {pages} after {after} is {} bytes; the bound is {MAX_MESSAGE_BYTES}",
            body.len()
        );
        let page: Value = serde_json::from_slice(&body).expect("a page is JSON");
        pages += 1;
        for entry in page["entries"].as_array().unwrap() {
            seen.push((entry["seq"].as_u64().unwrap(), entry["text"].as_str().unwrap().to_string()));
        }
        let next = page["next"].as_u64().unwrap();
        if page["done"] == true {
            break;
        }
        assert!(next > after, "paging stalled at {after}: {}", page["status"]);
        after = next;
    }
    let job_lines: Vec<&(u64, String)> = seen.iter().filter(|(_, text)| text.starts_with('\u{1}')).collect();
    assert_eq!(job_lines.len(), LINES, "every line once");
    assert!(job_lines.iter().all(|(_, text)| text.len() == LINE_BYTES && text.bytes().all(|byte| byte == 1)));
    let seqs: Vec<u64> = seen.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless, each entry once");
    assert!(pages >= LINES * 6 * LINE_BYTES / MAX_MESSAGE_BYTES, "{pages} pages for ~39 MB of JSON");
}
