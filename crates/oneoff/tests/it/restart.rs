//! The real `oneoff serve` process: it prints its URL, after a kill -9 the runs it was
//! running are marked lost at the next start while queued ones run, and a graceful stop says
//! goodbye to live viewers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{config_text, get_json, serve_process, write_config};

const JOBS: &str = r#"
[[job]]
name = "sleepy"
command = ["sh", "-c", "echo sleeping; sleep 600"]
max_concurrent = 1
"#;

#[tokio::test]
async fn after_a_crash_running_runs_are_lost_and_queued_runs_resume() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config_text(&dir.path().join("data"), "drain = \"300ms\"", JOBS));
    let mut server = serve_process(&config);
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let run: Value = client
            .post(format!("{}/api/v1/runs", server.url))
            .json(&json!({ "job": "sleepy" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(run["id"].as_i64().unwrap());
    }
    for _ in 0..100 {
        if get_json(&format!("{}/api/v1/runs/{}", server.url, ids[0])).await["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.child.kill().unwrap(); // SIGKILL: no chance to clean up
    server.child.wait().unwrap();

    let mut server = serve_process(&config);
    let lost = get_json(&format!("{}/api/v1/runs/{}", server.url, ids[0])).await;
    assert_eq!(lost["status"], "lost", "{lost}");
    let log = get_json(&format!("{}/api/v1/runs/{}/log", server.url, ids[0])).await;
    let last = log["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["stream"], "system");
    assert!(last["text"].as_str().unwrap().contains("outcome is unknown"));
    for _ in 0..100 {
        if get_json(&format!("{}/api/v1/runs/{}", server.url, ids[1])).await["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get_json(&format!("{}/api/v1/runs/{}", server.url, ids[1])).await["status"],
        "running",
        "the queued run resumed"
    );

    // SIGTERM: a graceful stop cancels the run after the drain period and exits 0.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut again = serve_process(&config);
    let resumed = get_json(&format!("{}/api/v1/runs/{}", again.url, ids[1])).await;
    assert!(resumed["status"] == "cancelled", "{resumed}");
    again.child.kill().unwrap();
    again.child.wait().unwrap();
}

#[tokio::test]
async fn a_graceful_stop_closes_live_viewers_with_going_away_and_where_to_resume() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    const VIEWERS: usize = 200;

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config_text(&dir.path().join("data"), "drain = \"200ms\"", JOBS));
    let mut server = serve_process(&config);
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = client.post(format!("{}/api/v1/runs", server.url)).json(&json!({ "job": "sleepy" }));
        let run: Value = response.send().await.unwrap().json().await.unwrap();
        ids.push(run["id"].as_i64().unwrap());
    }
    // The second run waits behind the first (max_concurrent = 1), so it is live when the server stops.
    let url = format!("{}/api/v1/runs/{}/log/ws", server.url.replacen("http://", "ws://", 1), ids[1]);
    let mut viewers = Vec::new();
    for _ in 0..VIEWERS {
        viewers.push(tokio_tungstenite::connect_async(&url).await.expect("WebSocket handshake").0);
    }

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let closes = futures_util::future::join_all(viewers.into_iter().map(|mut socket| async move {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()));
            }
        }
        None
    }));
    let closes = tokio::time::timeout(Duration::from_secs(20), closes).await.expect("every stream ends");
    for close in closes {
        let (code, reason) = close.expect("a close frame, not a dropped connection");
        assert_eq!(code, 1001, "going away, not an internal error: {reason}");
        assert!(reason.contains("resume with after=0"), "{reason}");
    }
    assert!(server.child.wait().unwrap().success());
}
