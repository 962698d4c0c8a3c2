//! Three replicas on one PostgreSQL behind a round-robin nginx: every request works on every
//! replica, a follower goes on through a rolling restart of all three without a gap or a
//! duplicate, and the audit trail stays one chain whichever replicas write it.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::cluster::{Cluster, WAIT};
use crate::support::{eventually, stderr, stdout, TestServer};

const JOBS: &str = r#"
[[job]]
name = "count"
command = ["sh", "-c", 'i=1; while [ "$i" -le "$1" ]; do echo "line $i"; i=$((i + 1)); sleep "$2"; done', "count", "{lines}", "{pause}"]

[[job.param]]
name = "lines"
type = "integer"
required = true

[[job.param]]
name = "pause"
type = "string"
default = "0.01"
"#;

/// What a client following through the balancer saw: every entry's (seq, text), in order.
#[derive(Default)]
struct Followed {
    entries: Vec<(u64, String)>,
    /// How many times the stream was closed by a stopping replica and opened again.
    reconnects: usize,
    done: bool,
}

/// Follows run `id` over WebSocket through nginx, reconnecting with `after=` whenever the
/// replica it is on goes away (close 1001 with the position, or a dropped connection), as
/// the UI and the CLI do, until the run is done.
async fn follow_through(api: &TestServer, id: i64) -> Followed {
    let mut followed = Followed::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !followed.done {
        assert!(tokio::time::Instant::now() < deadline, "the run never finished for the follower");
        let after = followed.entries.last().map_or(0, |(seq, _)| *seq);
        let url = api.ws_url(&format!("/api/v1/runs/{id}/log/ws?after={after}"));
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
            // Every replica behind nginx may be restarting at this instant: try again.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON message");
                    if value["done"] == true {
                        followed.done = true;
                    }
                    for entry in value["entries"].as_array().into_iter().flatten() {
                        let seq = entry["seq"].as_u64().expect("seq");
                        followed.entries.push((seq, entry["text"].as_str().unwrap_or_default().to_string()));
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if !followed.done {
            followed.reconnects += 1;
        }
    }
    followed
}

fn assert_every_line_once(followed: &Followed, lines: u64) {
    let seqs: Vec<u64> = followed.entries.iter().map(|(seq, _)| *seq).collect();
    let expected: Vec<u64> = (1..=lines).collect();
    assert_eq!(seqs, expected, "every line once, in order, across {} reconnects", followed.reconnects);
    for (seq, text) in &followed.entries {
        assert_eq!(text, &format!("line {seq}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn any_replica_serves_any_request_and_a_follower_through_nginx_sees_every_line() {
    let cluster = Cluster::start(3, JOBS, "").await;
    let id = cluster.api.start_run("count", json!({ "lines": 300, "pause": "0.01" })).await;
    let follower = follow_through(&cluster.api, id);
    // Meanwhile every replica, asked directly, knows the run and serves its log.
    let others = async {
        for index in 0..3 {
            let direct = cluster.direct(index);
            let run = direct.run_json(id).await;
            assert_eq!(run["id"], id, "replica {} knows the run", cluster.replicas[index].name);
        }
    };
    let (followed, ()) = tokio::join!(follower, others);
    assert_every_line_once(&followed, 300);
    for index in 0..3 {
        let direct = cluster.direct(index);
        assert_eq!(direct.wait_final(id).await["status"], "succeeded");
        let (status, text) = direct.get_text(&format!("/api/v1/runs/{id}/log.txt")).await;
        assert_eq!(status, 200);
        let expected: String = (1..=300).map(|seq| format!("line {seq}\n")).collect();
        assert_eq!(String::from_utf8(text).unwrap(), expected, "log.txt from replica {index}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_of_every_replica_loses_no_line_of_a_run_being_followed() {
    // A drain long enough for the run: its replica, stopped, finishes it before it exits.
    let mut cluster = Cluster::start(3, JOBS, "drain = \"60s\"").await;
    let id = cluster.api.start_run("count", json!({ "lines": 300, "pause": "0.02" })).await;
    let running = eventually("the run to start", WAIT, || async {
        let run = cluster.api.run_json(id).await;
        (run["status"] == "running").then_some(run)
    })
    .await;
    let owner = running["replica"].as_str().expect("a running run names its replica").to_string();
    let api = TestServer::remote(cluster.url().to_string(), tempfile::tempdir().unwrap());
    let follower = tokio::spawn(async move { follow_through(&api, id).await });
    // One by one, as a rolling deploy does: SIGTERM, wait for the exit, start again.
    for index in 0..3 {
        cluster.stop_replica(index).await;
        cluster.start_replica(index).await;
    }
    let followed = follower.await.unwrap();
    assert_every_line_once(&followed, 300);
    let run = cluster.api.wait_final(id).await;
    assert_eq!((run["status"].as_str(), run["replica"].as_str()), (Some("succeeded"), Some(owner.as_str())));
    assert!(followed.reconnects >= 1, "the follower was moved at least once (by its replica stopping)");
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_records_written_by_every_replica_at_once_make_one_verified_chain() {
    let cluster = Cluster::start(3, JOBS, "").await;
    let writes = (0..45).map(|index| {
        let direct = cluster.direct(index % 3);
        async move {
            let (status, body) = direct.post("/api/v1/tokens", json!({ "name": format!("t{index}") })).await;
            assert_eq!(status, 201, "{body}");
        }
    });
    futures_util::future::join_all(writes).await;
    let output = cluster.api.cli(&["audit", "verify"]).await;
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    let (_, listing) = cluster.api.get("/api/v1/audit?limit=100").await;
    let records = listing["records"].as_array().expect("records");
    assert!(records.len() >= 45, "every token creation is audited: {}", records.len());
}
