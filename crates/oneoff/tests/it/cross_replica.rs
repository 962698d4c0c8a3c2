//! Several replicas on one PostgreSQL: a run executing on one replica is followed live from
//! another over WebSocket, SSE and long-poll, resumed on either by sequence number; a stream
//! ticket made on one is good once on any; and a PostgreSQL outage mid-run holds the lines
//! until the database is back. Two real `oneoff serve` processes on a real PostgreSQL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{eventually, sqlite_config_text, write_config, ServerProcess, TestServer};

const LINES: u64 = 150;

fn jobs() -> String {
    // Slow enough that the followers on the other replica follow it live, from its first lines.
    format!(
        r#"
[[job]]
name = "drip"
command = ["sh", "-c", 'i=1; while [ $i -le {LINES} ]; do echo "line $i"; i=$((i+1)); sleep 0.02; done']

[[job]]
name = "slow"
command = ["sh", "-c", 'i=1; while [ $i -le {{n}} ]; do echo "line $i"; i=$((i+1)); sleep 0.02; done']
[[job.param]]
name = "n"
type = "integer"
"#
    )
}

/// A replica named `name`: `oneoff serve` with a data directory of its own, on the shared database.
fn replica(name: &str, database: &str) -> (ServerProcess, TestServer) {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = sqlite_config_text(dir.path(), &format!("database = {database:?}\nreplica = {name:?}"), &jobs());
    let config = write_config(dir.path(), &text);
    let process = ServerProcess::start(&config);
    let server = TestServer::remote(process.url.clone(), dir);
    (process, server)
}

/// Which of `a` (named "a") and `b` runs `id` once it started, and the other: `(owner, other)`.
async fn owner_and_other<'r>(a: &'r TestServer, b: &'r TestServer, id: i64) -> (&'r TestServer, &'r TestServer) {
    let replica: String = eventually("the run to be claimed", Duration::from_secs(20), || async {
        a.run_json(id).await["replica"].as_str().map(str::to_string)
    })
    .await;
    if replica == "a" {
        (a, b)
    } else {
        (b, a)
    }
}

/// `(seq, text)` of each entry, in the order received.
fn lines(entries: &[Value]) -> Vec<(u64, String)> {
    entries.iter().map(|entry| (entry["seq"].as_u64().unwrap(), entry["text"].as_str().unwrap().to_string())).collect()
}

fn expected(from: u64, to: u64) -> Vec<(u64, String)> {
    (from..=to).map(|seq| (seq, format!("line {seq}"))).collect()
}

/// Long-polls a run to its end, each request to the next replica in turn (as a round-robin
/// load balancer would send them), from `after`; returns the entries received.
async fn long_poll_round_robin(replicas: &[&TestServer], id: i64, mut after: u64) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut turn = 0;
    loop {
        let replica = replicas[turn % replicas.len()];
        let (status, page) = replica.get(&format!("/api/v1/runs/{id}/log?after={after}&limit=7&wait=5")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        after = page["next"].as_u64().unwrap();
        if page["done"] == true {
            return entries;
        }
        turn += 1;
        assert!(turn < 10_000, "the run never ended");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_on_one_replica_is_followed_live_from_another_over_every_transport() {
    let database = oneoff_testpg::Postgres::shared().new_database();
    let (_a_process, a) = replica("a", &database);
    let (_b_process, b) = replica("b", &database);
    let id = a.start_run("drip", json!({})).await;
    // Every follower is on the replica where the run does not execute; they start while it runs.
    let (owner, b) = owner_and_other(&a, &b, id).await;
    let only_b = [b];
    let (ws, sse, polled) =
        tokio::join!(b.ws_follow(id, 0), b.sse_follow(id, None), long_poll_round_robin(&only_b, id, 0));
    let all = expected(1, LINES);
    assert_eq!(lines(&ws.entries), all, "WebSocket on B: every line once, in order");
    assert_eq!(ws.done.as_ref().map(|done| done["status"].clone()), Some(json!("succeeded")));
    assert_eq!(ws.close_code, Some(1000));
    assert_eq!(lines(&sse.entries()), all, "SSE on B");
    assert_eq!(sse.events.last().and_then(|event| event.event.as_deref()), Some("done"));
    assert_eq!(lines(&polled), all, "long-poll on B");
    assert!(ws.messages > 3, "followed live in several messages, not read at the end: {}", ws.messages);
    assert_eq!(owner.wait_final(id).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_resumes_on_the_other_replica_exactly_where_it_stopped() {
    let database = oneoff_testpg::Postgres::shared().new_database();
    let (_a_process, a) = replica("a", &database);
    let (_b_process, b) = replica("b", &database);
    let id = a.start_run("drip", json!({})).await;
    let (a, b) = owner_and_other(&a, &b, id).await;
    // Some lines read from the owner, then the rest from the other replica, while it runs.
    let first: Vec<Value> = eventually("the first lines on A", Duration::from_secs(20), || async {
        let (_, page) = a.get(&format!("/api/v1/runs/{id}/log?after=0&limit=20")).await;
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        (entries.len() == 20).then_some(entries)
    })
    .await;
    let alternate = [b, a];
    let (sse, ws, polled) = tokio::join!(
        b.sse_follow(id, Some(20)),
        b.ws_follow(id, 20),
        // Consecutive requests on alternate replicas.
        long_poll_round_robin(&alternate, id, 20),
    );
    assert_eq!(lines(&first), expected(1, 20));
    assert_eq!(lines(&sse.entries()), expected(21, LINES), "Last-Event-ID on B goes on exactly");
    assert_eq!(lines(&ws.entries), expected(21, LINES), "after= on B goes on exactly");
    assert_eq!(lines(&polled), expected(21, LINES), "alternating replicas, no gap, no duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_ticket_made_on_one_replica_works_once_on_any() {
    let database = oneoff_testpg::Postgres::shared().new_database();
    let (_a_process, a) = replica("a", &database);
    let (_b_process, b) = replica("b", &database);
    let id = a.start_run("slow", json!({ "n": 3 })).await;
    a.wait_final(id).await;
    let (status, issued) = a.post(&format!("/api/v1/runs/{id}/log/ticket"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let ticket = issued["ticket"].as_str().unwrap();
    let path = format!("/api/v1/runs/{id}/log.txt?ticket={ticket}");
    let (status, text) = b.get_text(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(String::from_utf8_lossy(&text), "line 1\nline 2\nline 3\n");
    for replica in [&b, &a] {
        let (status, body) = replica.get(&format!("/api/v1/runs/{id}/log?ticket={ticket}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "used up everywhere: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("already used"), "{body}");
    }
}

/// PostgreSQL stopped and started again while a run prints: the job waits for its lines to be
/// stored, readiness says the database is unreachable meanwhile, and afterwards every line is
/// stored once, in order, and the run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_outage_mid_run_holds_the_lines_and_stores_them_when_it_returns() {
    let postgres = oneoff_testpg::Postgres::start_new();
    let database = postgres.new_database();
    let server = TestServer::start_sqlite(&jobs(), &format!("database = {database:?}\nstore_wait = \"2m\"")).await;
    let id = server.start_run("slow", json!({ "n": 200 })).await;
    eventually("the first lines stored", Duration::from_secs(20), || async {
        (server.get(&format!("/api/v1/runs/{id}/log?after=0&limit=10")).await.1["entries"].as_array()?.len() == 10)
            .then_some(())
    })
    .await;
    postgres.stop();
    let ready: Value = eventually("readiness to see the outage", Duration::from_secs(30), || async {
        let (status, body) = server.get("/readyz").await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            Ok(body)
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
    assert_eq!(ready["status"], "storage_unavailable", "{ready}");
    postgres.start();
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let entries = server.entries(id).await;
    assert_eq!(lines(&entries), expected(1, 200), "every line stored once, in order");
    let (status, _) = server.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
}

/// PostgreSQL away for longer than `store_wait`: the run is stopped and fails, its stored lines
/// are a gapless prefix of what the job printed, and it says why (in a system line when the
/// database was back in time for it, in the run's error always); never `succeeded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_store_wait_a_postgres_outage_fails_the_run_and_says_why() {
    let postgres = oneoff_testpg::Postgres::start_new();
    let database = postgres.new_database();
    let endless = r#"
[[job]]
name = "endless"
command = ["sh", "-c", 'echo $$; i=2; while true; do echo "line $i"; i=$((i+1)); sleep 0.02; done']
"#;
    let server = TestServer::start_sqlite(endless, &format!("database = {database:?}\nstore_wait = \"1s\"")).await;
    let id = server.start_run("endless", json!({})).await;
    let pid: i32 = eventually("the job's pid stored", Duration::from_secs(20), || async {
        let (_, page) = server.get(&format!("/api/v1/runs/{id}/log?after=0&limit=1")).await;
        page["entries"].as_array()?.first()?["text"].as_str()?.parse().ok()
    })
    .await;
    postgres.stop();
    // The writer gives the lines up after store_wait and the job is stopped, database or not.
    eventually("the job stopped", Duration::from_secs(30), || async {
        (!crate::support::process_alive(pid)).then_some(())
    })
    .await;
    postgres.start();
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("could not be stored, so the run was stopped"), "{run}");
    let entries = server.entries(id).await;
    let (job_lines, system): (Vec<&Value>, Vec<&Value>) = entries.iter().partition(|entry| entry["stream"] == "stdout");
    for (entry, seq) in job_lines.iter().zip(1u64..) {
        assert_eq!(entry["seq"].as_u64(), Some(seq), "gapless: {entry}");
        if seq > 1 {
            assert_eq!(entry["text"].as_str(), Some(format!("line {seq}").as_str()));
        }
    }
    assert!(system.len() <= 1, "{system:?}");
    if let Some(note) = system.first() {
        assert_eq!(note["seq"].as_u64(), Some(job_lines.len() as u64 + 1), "the note follows the stored lines");
        assert!(note["text"].as_str().unwrap().contains("could not be stored"), "{note}");
    } else {
        assert!(error.contains("the log could not say so either"), "{run}");
    }
}

/// A replica stopped (SIGTERM, as in a rolling deploy) while its viewers follow a run of
/// another replica: WebSocket viewers get close 1001 naming the `after` to resume from, SSE
/// viewers an `error` event whose id is that position; resumed on the other replica from there,
/// they get the rest of the log, with no gap and no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_of_a_stopping_replica_resume_on_another_without_a_gap() {
    let database = oneoff_testpg::Postgres::shared().new_database();
    let (a_process, first) = replica("a", &database);
    let (b_process, second) = replica("b", &database);
    let id = first.start_run("drip", json!({})).await;
    // `a` runs it, `b` (the one stopped) only serves its viewers.
    let (a, b) = owner_and_other(&first, &second, id).await;
    let b_process = if std::ptr::eq(b, &second) { &b_process } else { &a_process };
    let stop_b = async {
        eventually("B's viewers to be under way", Duration::from_secs(20), || async {
            let (_, page) = b.get(&format!("/api/v1/runs/{id}/log?after=30&limit=1")).await;
            (!page["entries"].as_array()?.is_empty()).then_some(())
        })
        .await;
        let pid = nix::unistd::Pid::from_raw(b_process.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    };
    let (ws, sse, ()) = tokio::join!(b.ws_follow(id, 0), b.sse_follow(id, None), stop_b);

    assert_eq!(ws.close_code, Some(1001), "going away: {}", ws.close_reason);
    let ws_position = ws.entries.last().map_or(0, |entry| entry["seq"].as_u64().unwrap());
    assert!(ws.close_reason.ends_with(&format!("resume with after={ws_position}")), "{}", ws.close_reason);
    let closing = sse.events.last().expect("an event at the stop");
    assert_eq!(closing.event.as_deref(), Some("error"));
    assert!(closing.data.contains("shutting_down"), "{}", closing.data);
    let sse_position: u64 = closing.id.as_deref().expect("the stop event carries the position").parse().unwrap();
    let sse_entries = sse.entries();
    assert_eq!(sse_position, sse_entries.last().map_or(0, |entry| entry["seq"].as_u64().unwrap()));
    assert!(ws_position < LINES && sse_position < LINES, "stopped mid-run: {ws_position}, {sse_position}");

    let (ws_rest, sse_rest) = tokio::join!(a.ws_follow(id, ws_position), a.sse_follow(id, Some(sse_position)));
    let mut ws_all = ws.entries.clone();
    ws_all.extend(ws_rest.entries);
    assert_eq!(lines(&ws_all), expected(1, LINES), "WebSocket, B then A");
    let mut sse_all = sse_entries;
    sse_all.extend(sse_rest.entries());
    assert_eq!(lines(&sse_all), expected(1, LINES), "SSE, B then A");
}
