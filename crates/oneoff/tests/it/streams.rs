//! WebSocket and SSE log streams: backlog then live tail on the stored sequence, resume by
//! `after` and `Last-Event-ID`, stalled viewers, and handshakes that explain their failure.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::support::TestServer;

const JOBS: &str = r#"
[[job]]
name = "drip"
command = ["sh", "-c", 'for i in 1 2 3 4 5; do echo "drip $i"; echo "err $i" >&2; sleep 0.1; done']

[[job]]
name = "count"
command = ["seq", "1", "{n}"]
[[job.param]]
name = "n"
type = "integer"

[[job]]
name = "quiet"
command = ["sh", "-c", "echo start; sleep 1.5; echo end"]

[[job]]
name = "exit4"
command = ["sh", "-c", "echo x; exit 4"]
"#;

fn texts(entries: &[Value]) -> Vec<(u64, String, String)> {
    entries
        .iter()
        .map(|entry| {
            (
                entry["seq"].as_u64().unwrap(),
                entry["stream"].as_str().unwrap().to_string(),
                entry["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn websocket_streams_backlog_and_live_tail_exactly_as_stored() {
    let server = TestServer::start(JOBS).await;
    let id = server.start_run("drip", json!({})).await;
    let live = server.ws_follow(id, 0).await;
    assert_eq!(live.close_code, Some(1000), "{}", live.close_reason);
    let done = live.done.expect("done message");
    assert_eq!(
        (done["status"].as_str(), done["exit_code"].as_i64(), done["next"].as_u64()),
        (Some("succeeded"), Some(0), Some(10))
    );
    let stored = server.entries(id).await;
    assert_eq!(texts(&live.entries), texts(&stored), "the live view is the stored log, no gap, no duplicate");
    assert_eq!(stored.len(), 10);

    // A late joiner on the finished run, resuming after 4, gets exactly the rest.
    let resumed = server.ws_follow(id, 4).await;
    assert_eq!(texts(&resumed.entries), texts(&stored[4..]));
    assert_eq!(resumed.done.unwrap()["next"], 10);
}

#[tokio::test]
async fn websocket_batches_a_firehose_and_reports_the_exit_code() {
    let server = TestServer::start_with(JOBS, "partial_line_flush = \"10s\"").await;
    let id = server.start_run("count", json!({ "n": 100000 })).await;
    let live = server.ws_follow(id, 0).await;
    assert_eq!(live.entries.len(), 100_000);
    assert!(live.entries.iter().enumerate().all(|(index, entry)| entry["seq"] == index as u64 + 1
        && entry["text"].as_str() == Some((index + 1).to_string().as_str())));
    assert!(live.messages < 2_000, "{} messages for 100000 lines: entries are batched", live.messages);

    let failing = server.start_run("exit4", json!({})).await;
    let log = server.ws_follow(failing, 0).await;
    let done = log.done.unwrap();
    assert_eq!((done["status"].as_str(), done["exit_code"].as_i64()), (Some("failed"), Some(4)));
}

#[tokio::test]
async fn sse_streams_the_same_sequence_and_resumes_with_last_event_id() {
    let server = TestServer::start(JOBS).await;
    let id = server.start_run("drip", json!({})).await;
    let live = server.sse_follow(id, None).await;
    assert_eq!(live.headers["content-type"], "text/event-stream");
    assert_eq!(live.headers["cache-control"], "no-cache, no-transform");
    assert_eq!(live.headers["x-accel-buffering"], "no");
    assert!(live.headers.get("content-encoding").is_none());
    let stored = server.entries(id).await;
    assert_eq!(texts(&live.entries()), texts(&stored));
    for event in live.events.iter().filter(|event| event.event.is_none() && event.comment.is_none()) {
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(
            event.id.as_deref(),
            Some(data["next"].to_string().as_str()),
            "each event's id is the last seq it carries"
        );
    }
    let done = live.events.last().unwrap();
    assert_eq!(done.event.as_deref(), Some("done"));
    assert_eq!(serde_json::from_str::<Value>(&done.data).unwrap()["status"], "succeeded");

    let resumed = server.sse_follow(id, Some(7)).await;
    assert_eq!(texts(&resumed.entries()), texts(&stored[7..]));
}

#[tokio::test]
async fn quiet_streams_get_keepalives() {
    let server =
        TestServer::start_with(JOBS, "[streams]\nws_ping_interval = \"200ms\"\nsse_ping_interval = \"200ms\"").await;
    let id = server.start_run("quiet", json!({})).await;
    let sse = server.sse_follow(id, None).await;
    assert!(sse.events.iter().any(|event| event.comment.as_deref() == Some(" ping")), "{:?}", sse.events);
    assert_eq!(texts(&sse.entries()).len(), 2);

    let id = server.start_run("quiet", json!({})).await;
    let url = server.ws_url(&format!("/api/v1/runs/{id}/log/ws"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut pings = 0;
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Ping(_) => pings += 1,
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert!(pings >= 3, "pings on a quiet WebSocket: {pings}");
}

#[tokio::test]
async fn a_stripped_upgrade_gets_426_with_a_diagnosis() {
    let server = TestServer::start(JOBS).await;
    let id = server.start_run("drip", json!({})).await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{id}/log/ws", server.url))
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .header("x-forwarded-for", "203.0.113.7, 10.1.2.3")
        .header("via", "1.1 classic-elb")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(response.headers()["upgrade"], "websocket");
    assert_eq!(response.headers()["sec-websocket-version"], "13");
    assert_eq!(response.headers()["x-oneoff-diagnosis"], "websocket-upgrade-stripped");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "websocket_upgrade_stripped");
    assert_eq!(body["diagnosis"]["missing"], json!(["Upgrade: websocket", "Connection: upgrade"]));
    assert_eq!(body["diagnosis"]["hops"]["x-forwarded-for"], "203.0.113.7, 10.1.2.3");
    assert_eq!(body["diagnosis"]["hops"]["via"], "1.1 classic-elb");
    assert!(body["diagnosis"]["likely_cause"].as_str().unwrap().contains("does not forward WebSocket upgrades"));
    assert_eq!(body["diagnosis"]["fallbacks"][0], format!("/api/v1/runs/{id}/log/sse"));

    let (_, metrics) = server.get_text("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("oneoff_websocket_handshakes_refused_total{reason=\"websocket_upgrade_stripped\"} 1"),
        "{metrics}"
    );

    let wrong_version = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{id}/log/ws", server.url))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "8")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_version.status(), StatusCode::UPGRADE_REQUIRED);
    let body: Value = wrong_version.json().await.unwrap();
    assert_eq!(body["error"]["code"], "websocket_version_unsupported");
}

#[tokio::test]
async fn streams_refuse_origins_that_are_not_public() {
    let server = TestServer::start_with(JOBS, "public_origins = [\"https://oneoff.example.com\"]").await;
    let id = server.start_run("exit4", json!({})).await;
    server.wait_final(id).await;
    let url = server.ws_url(&format!("/api/v1/runs/{id}/log/ws"));
    let mut evil = url.clone().into_client_request().unwrap();
    evil.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(evil).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a foreign origin was not refused: {other:?}"),
    }
    let mut good = url.into_client_request().unwrap();
    good.headers_mut().insert("origin", "https://oneoff.example.com".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(good).await.is_ok());

    let sse = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{id}/log/sse", server.url))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), StatusCode::FORBIDDEN);
    let body: Value = sse.json().await.unwrap();
    assert_eq!(body["error"]["code"], "origin_rejected");
}

/// Cross-site WebSocket hijacking with the default config (`public_origins` empty): a page
/// on another site opens the log stream with the user's cookies. Only the server's own
/// origin (the host the request was sent to) may.
#[tokio::test]
async fn without_public_origins_only_the_servers_own_pages_open_streams() {
    let server = TestServer::start(JOBS).await;
    let id = server.start_run("exit4", json!({})).await;
    server.wait_final(id).await;
    let url = server.ws_url(&format!("/api/v1/runs/{id}/log/ws"));
    let with = |pairs: &[(&'static str, &str)]| {
        let mut request = url.clone().into_client_request().unwrap();
        for (name, value) in pairs {
            request.headers_mut().insert(*name, value.parse().unwrap());
        }
        request
    };
    for attack in [
        vec![("origin", "https://evil.example")],
        vec![("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")],
        vec![("origin", "null")],
    ] {
        match tokio_tungstenite::connect_async(with(&attack)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{attack:?}");
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["error"]["code"], "origin_rejected", "{body}");
                assert!(body["error"]["message"].as_str().unwrap().contains("public_origins"), "{body}");
            }
            other => panic!("a foreign origin opened the stream: {attack:?} {other:?}"),
        }
    }
    let sse = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{id}/log/sse", server.url))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), StatusCode::FORBIDDEN);

    // The server's own page, a browser that says same-origin, and non-browser clients.
    let own = server.url.clone();
    assert!(tokio_tungstenite::connect_async(with(&[("origin", own.as_str())])).await.is_ok());
    let vouched = [("origin", "https://renamed.example"), ("sec-fetch-site", "same-origin")];
    assert!(tokio_tungstenite::connect_async(with(&vouched)).await.is_ok());
    assert!(tokio_tungstenite::connect_async(with(&[])).await.is_ok());
}

#[tokio::test]
async fn debug_echo_shows_what_arrived_with_secrets_redacted() {
    let extra = "[debug]\necho = true\nredact_headers = [\"X-Secret\"]\n[auth]\nadmins = { users = [\"root\"] }";
    let server = TestServer::start_with(JOBS, extra).await;
    // The echo answers administrators only: an administrator's real token, which it redacts.
    let created = server.post("/api/v1/tokens", json!({ "name": "echo", "user": "root" })).await.1;
    let token = created["token"].as_str().unwrap().to_string();
    let response = reqwest::Client::new()
        .get(format!("{}/debug/echo/some/path?x=1", server.url))
        .header("cookie", "session=abc")
        .header("authorization", format!("Bearer {token}"))
        .header("x-secret", "hidden")
        .header("x-forwarded-for", "198.51.100.1")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(
        (report["method"].as_str(), report["path"].as_str(), report["query"].as_str()),
        (Some("GET"), Some("/debug/echo/some/path"), Some("x=1"))
    );
    let header = |name: &str| {
        report["headers"].as_array().unwrap().iter().find(|pair| pair[0] == name).map(|pair| pair[1].clone())
    };
    assert_eq!(header("cookie"), Some(json!("<redacted>")));
    assert_eq!(header("authorization"), Some(json!("<redacted>")));
    assert_eq!(header("x-secret"), Some(json!("<redacted>")));
    assert_eq!(header("x-forwarded-for"), Some(json!("198.51.100.1")));
    assert_eq!(report["websocket"]["looks_like_handshake"], true);
    assert_eq!(report["websocket"]["complete"], false);
    assert_eq!(report["websocket"]["missing"], json!(["Upgrade: websocket", "Connection: upgrade"]));

    let (mut socket, _) = tokio_tungstenite::connect_async(server.ws_url("/debug/echo")).await.unwrap();
    let Some(Ok(Message::Text(first))) = socket.next().await else { panic!("no report") };
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["websocket"]["complete"], true);
    socket.send(Message::Text("hello".into())).await.unwrap();
    let Some(Ok(Message::Text(echoed))) = socket.next().await else { panic!("no echo") };
    assert_eq!(echoed.as_str(), "hello");

    let disabled = TestServer::start(JOBS).await;
    assert_eq!(disabled.get("/debug/echo").await.0, StatusCode::NOT_FOUND, "off unless configured");
}

#[tokio::test]
async fn a_stalled_viewer_slows_nothing_and_others_get_every_line() {
    // A line cut by a pipe read is only stored in two pieces after this much quiet; the
    // busy test machine may pause `seq` for a moment mid-line, so wait long.
    let server =
        TestServer::start_with(JOBS, "partial_line_flush = \"10s\"\n[streams]\nviewer_send_timeout = \"2s\"").await;
    let lines = 1_000_000u64;
    // A first run without a stalled viewer brings the allocator and SQLite's caches to
    // their working size; the second run is measured against it.
    let warm_up = server.start_run("count", json!({ "n": lines })).await;
    read_every_line(&server, warm_up, lines).await;
    let rss_before = resident_kib();

    let id = server.start_run("count", json!({ "n": lines })).await;
    // This viewer completes the handshake and then never reads.
    let (stalled, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/api/v1/runs/{id}/log/ws"))).await.unwrap();
    let started = Instant::now();
    read_every_line(&server, id, lines).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    assert!(started.elapsed() < Duration::from_secs(60));
    // Nothing was queued for the stalled viewer: the whole process grew by far less than
    // the log's size as JSON (about 85 MB for these lines).
    let grown_kib = resident_kib().saturating_sub(rss_before);
    assert!(grown_kib < 32 * 1024, "resident memory grew by {grown_kib} KiB");
    // The stalled viewer is dropped after the send timeout, with a reason that says how to resume.
    let mut dropped = false;
    for _ in 0..100 {
        let metrics = String::from_utf8(server.get_text("/metrics").await.1).unwrap();
        dropped = metrics.contains("oneoff_viewers_dropped_slow_total 1");
        if dropped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dropped, "the stalled viewer was not dropped");
    drop(stalled);
}

/// Follows a run over WebSocket, checking every sequence number and text, keeping nothing.
async fn read_every_line(server: &TestServer, id: i64, lines: u64) {
    let (mut viewer, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/api/v1/runs/{id}/log/ws"))).await.unwrap();
    let mut expected = 1u64;
    while let Some(Ok(message)) = viewer.next().await {
        let Message::Text(text) = message else { continue };
        if text.starts_with("{\"done\"") {
            break;
        }
        let batch: oneoff_api::v1::StreamBatch = serde_json::from_str(&text).unwrap();
        for entry in &batch.entries {
            assert_eq!((entry.seq, entry.text.as_str()), (expected, expected.to_string().as_str()));
            expected += 1;
        }
    }
    assert_eq!(expected, lines + 1, "the reading viewer got every line");
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn viewer_limits_answer_503() {
    let server = TestServer::start_with(JOBS, "[streams]\nmax_viewers_per_run = 1").await;
    let id = server.start_run("quiet", json!({})).await;
    let (_first, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/api/v1/runs/{id}/log/ws"))).await.unwrap();
    let (status, body) = server.get(&format!("/api/v1/runs/{id}/log/sse")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "viewer_limit");
}
