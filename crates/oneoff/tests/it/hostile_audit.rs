//! The audit trail under attack: someone with write access to the SQLite file cuts its tail
//! or edits a record and re-hashes the chain after it (each anchor's verdict is checked),
//! an authenticated user floods denied requests with a huge `X-Forwarded-For` (the database
//! stays small and the trail still says who was refused what, how often), and records carry
//! stable action codes, including records written before the codes existed.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use oneoff_core::audit::{chain_hash, AuditAction, AuditEntry, AuditKey, ChainHead, RecordFormat, GENESIS};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;

use crate::support::{cli_command, stdout, TestServer};

const OPEN_JOB: &str = "[[job]]\nname = \"open\"\ncommand = [\"true\"]\n";
const KEY: [u8; 32] = *b"an audit key of 32 bytes, random";

/// A server with an audit key in a file (outside its data directory), or without one.
async fn server_with_key(key: Option<&Path>) -> TestServer {
    TestServer::start(&keyed_catalog(key)).await
}

/// As [`server_with_key`], on SQLite whatever the suite's store, for the [`attacker`].
async fn sqlite_server_with_key(key: Option<&Path>) -> TestServer {
    TestServer::start_sqlite(&keyed_catalog(key), "").await
}

fn keyed_catalog(key: Option<&Path>) -> String {
    let audit = key.map(|path| format!("[audit]\nkey_file = {:?}\n", path.display().to_string())).unwrap_or_default();
    format!("{audit}{OPEN_JOB}")
}

fn key_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.key");
    std::fs::write(&path, KEY).unwrap();
    (dir, path)
}

fn database(server: &TestServer) -> PathBuf {
    server.dir.path().join("data").join("oneoff.db")
}

/// A second connection to the server's database file, as an attacker with the file has. The
/// tests that tamper through it start their server on SQLite whatever the suite's store
/// (`sqlite_server_with_key`, `TestServer::start_sqlite`): the attack is on the SQLite file.
async fn attacker(server: &TestServer) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(database(server));
    sqlx::SqlitePool::connect_with(options).await.unwrap()
}

/// Five records (run starts), then the verdict as a checkpoint: `(records, head)`.
async fn five_records_and_a_checkpoint(server: &TestServer) -> (i64, String) {
    for _ in 0..5 {
        server.start_run("open", json!({})).await;
    }
    let (status, verdict) = server.get("/api/v1/audit/verify").await;
    assert_eq!((status, &verdict["ok"]), (StatusCode::OK, &json!(true)), "{verdict}");
    (verdict["records"].as_i64().unwrap(), verdict["head"].as_str().unwrap().to_string())
}

async fn verify(server: &TestServer, query: &str) -> Value {
    let (status, verdict) = server.get(&format!("/api/v1/audit/verify{query}")).await;
    assert_eq!(status, StatusCode::OK, "{verdict}");
    verdict
}

/// Edits record `id`'s actor and recomputes every hash from it on, as a careful attacker would.
async fn edit_and_rechain(pool: &sqlx::SqlitePool, id: i64, actor: &str) {
    let rows = sqlx::query(
        "SELECT id, at_us, actor, source, client, action, message, job, run_id, detail, hash FROM audit ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut previous = GENESIS.to_string();
    for row in rows {
        let record_id: i64 = row.get("id");
        if record_id < id {
            previous = row.get("hash");
            continue;
        }
        let mut entry = AuditEntry {
            at_us: row.get("at_us"),
            actor: row.get("actor"),
            source: row.get("source"),
            client: row.get("client"),
            action: AuditAction::decode(row.get("action")),
            message: row.get("message"),
            job: row.get("job"),
            run_id: row.get("run_id"),
            detail: row.get("detail"),
        };
        if record_id == id {
            entry.actor = actor.to_string();
        }
        let hash = chain_hash(record_id, &entry, &RecordFormat::Coded, &previous);
        sqlx::query("UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE id = ?")
            .bind(&entry.actor)
            .bind(&previous)
            .bind(&hash)
            .bind(record_id)
            .execute(pool)
            .await
            .unwrap();
        previous = hash;
    }
}

#[tokio::test]
async fn a_cut_tail_passes_the_bare_chain_but_not_a_checkpoint_nor_the_signed_head() {
    let (_key_dir, key_path) = key_file();
    for keyed in [false, true] {
        // The attacker edits the SQLite file: on SQLite whatever the suite's store.
        let server = sqlite_server_with_key(keyed.then_some(key_path.as_path())).await;
        let (records, head) = five_records_and_a_checkpoint(&server).await;
        // With a key, the first record is the anchor that says the chain is signed.
        assert_eq!(records, if keyed { 6 } else { 5 });

        sqlx::query("DELETE FROM audit WHERE id > 3").execute(&attacker(&server).await).await.unwrap();

        let bare = verify(&server, "").await;
        assert_eq!(bare["broken_at"], Value::Null, "the remaining hashes still chain: {bare}");
        assert_eq!(bare["keyed"], json!(keyed));
        if keyed {
            assert_eq!(bare["ok"], false, "the signed head sees the cut: {bare}");
            assert!(
                bare["reason"].as_str().unwrap().contains(&format!("says {records} records but the chain has 3")),
                "{bare}"
            );
        } else {
            assert_eq!(bare["ok"], true, "a hash chain alone cannot see its end cut off: {bare}");
        }

        let checked = verify(&server, &format!("?head={head}&count={records}")).await;
        assert_eq!(checked["ok"], false, "{checked}");
        assert_eq!(checked["checkpoint"]["at_record"], Value::Null);
        assert!(
            checked["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("has 3 records; the checkpoint was taken at {records}")),
            "{checked}"
        );

        // The CLI says the same, and fails.
        let output = server.cli(&["audit", "verify", "--head", &head, "--count", &records.to_string()]).await;
        assert!(!output.status.success(), "{}", stdout(&output));
        assert!(
            stdout(&output).contains("checkpoint") && stdout(&output).contains("NOT in the chain"),
            "{}",
            stdout(&output)
        );
    }
}

#[tokio::test]
async fn an_edit_rechained_passes_the_bare_chain_but_not_a_checkpoint_nor_the_signed_head() {
    let (_key_dir, key_path) = key_file();
    for keyed in [false, true] {
        // The attacker edits the SQLite file: on SQLite whatever the suite's store.
        let server = sqlite_server_with_key(keyed.then_some(key_path.as_path())).await;
        let (records, head) = five_records_and_a_checkpoint(&server).await;

        edit_and_rechain(&attacker(&server).await, 2, "mallory").await;
        let (_, listing) = server.get("/api/v1/audit?limit=10").await;
        assert!(listing["records"].as_array().unwrap().iter().any(|record| record["actor"] == "mallory"));

        let bare = verify(&server, "").await;
        assert_eq!(bare["broken_at"], Value::Null, "every hash was recomputed: {bare}");
        assert_eq!(bare["ok"], json!(!keyed), "only the key can tell: {bare}");
        if keyed {
            assert!(bare["reason"].as_str().unwrap().contains("rewritten and re-hashed"), "{bare}");
        }

        let checked = verify(&server, &format!("?head={head}&count={records}")).await;
        assert_eq!(checked["ok"], false, "{checked}");
        assert!(
            checked["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("record {records} does not have the checkpoint's hash")),
            "{checked}"
        );
        // The records after the checkpoint are still there: the chain was not merely cut.
        assert_eq!(checked["records"], records);
    }
}

#[tokio::test]
async fn checkpoints_hold_on_an_intact_chain_and_their_mac_is_checked_with_the_key() {
    let (_key_dir, key_path) = key_file();
    let server = server_with_key(Some(&key_path)).await;
    let (records, head) = five_records_and_a_checkpoint(&server).await;
    server.start_run("open", json!({})).await;

    // The MAC a checkpoint line in the server log carries.
    let key = AuditKey::new(&KEY, "test").unwrap();
    let mac = key.sign_checkpoint(&ChainHead { records, hash: head.clone() });
    let held = verify(&server, &format!("?head={head}&count={records}&mac={mac}")).await;
    assert_eq!(held["ok"], true, "{held}");
    assert_eq!(records, 6, "the anchor, then five run starts");
    assert_eq!(held["checkpoint"], json!({ "head": head, "records": 6, "at_record": 6, "signed": true }));
    assert_eq!(held["records"], 7, "the chain went on after the checkpoint");

    let other_key = AuditKey::new(&[b'x'; 32], "test").unwrap();
    let forged = other_key.sign_checkpoint(&ChainHead { records, hash: head.clone() });
    let refused = verify(&server, &format!("?head={head}&count={records}&mac={forged}")).await;
    assert_eq!((refused["ok"].clone(), refused["checkpoint"]["signed"].clone()), (json!(false), json!(false)));

    let (status, body) = server.get("/api/v1/audit/verify?count=5").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("give its `head`"), "{body}");

    let output = server.cli(&["audit", "verify", "--head", &head, "--count", "6"]).await;
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).contains("held, at record 6"), "{}", stdout(&output));
    assert!(stdout(&output).contains("checked with the server's audit key"), "{}", stdout(&output));
}

#[tokio::test]
async fn a_chain_written_without_a_key_is_adopted_once_and_says_so() {
    let (_key_dir, key_path) = key_file();
    let mut server = server_with_key(None).await;
    five_records_and_a_checkpoint(&server).await;
    let keyed = format!("[audit]\nkey_file = {:?}\n{OPEN_JOB}", key_path.display().to_string());
    server.restart(&keyed, "").await;
    let (_, listing) = server.get("/api/v1/audit?action=audit.anchor").await;
    let anchors = listing["records"].as_array().unwrap();
    assert_eq!(anchors.len(), 1, "{listing}");
    assert!(anchors[0]["message"].as_str().unwrap().contains("signed the chain of 5 records"), "{listing}");
    assert_eq!(verify(&server, "").await["ok"], true);

    // A second start with the key checks the head instead of adopting again.
    server.restart(&keyed, "").await;
    let (_, listing) = server.get("/api/v1/audit?action=audit.anchor").await;
    assert_eq!(listing["records"].as_array().unwrap().len(), 1);

    // A token made on the host from the same config signs its record with the same key.
    let config = server.dir.path().join("oneoff.toml");
    // Not a blocking call: the server runs on this test's runtime (see hostile_auth).
    let command =
        cli_command(&["token", "create", "--config", config.to_str().unwrap(), "--name", "ops", "--user", "root"]);
    let output = tokio::process::Command::from(command).output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let after_token = verify(&server, "").await;
    assert_eq!((after_token["ok"].clone(), after_token["records"].clone()), (json!(true), json!(7)), "{after_token}");

    // The key is never stored in the database.
    server.stop().await;
    let stored = crate::support::stored_files(&server.dir.path().join("data"));
    assert!(stored.iter().any(|(_, bytes)| !bytes.is_empty()), "no stored data found");
    for (file, bytes) in stored {
        assert!(!bytes.windows(KEY.len()).any(|window| window == KEY), "the audit key reached {file}");
    }
}

#[tokio::test]
async fn a_cut_tail_with_the_signed_head_deleted_is_tampering_not_a_new_key() {
    let (_key_dir, key_path) = key_file();
    // The attacker edits the SQLite file: on SQLite whatever the suite's store.
    let mut server = sqlite_server_with_key(Some(&key_path)).await;
    for _ in 0..8 {
        server.start_run("open", json!({})).await;
    }
    assert_eq!(verify(&server, "").await["records"], 9, "the anchor and eight run starts");

    // The attacker cuts the last two records and deletes the head that would show it.
    let pool = attacker(&server).await;
    sqlx::query("DELETE FROM audit WHERE id > 7").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM audit_head").execute(&pool).await.unwrap();
    pool.close().await;
    let keyed = format!("[audit]\nkey_file = {:?}\n{OPEN_JOB}", key_path.display().to_string());
    server.restart(&keyed, "").await;

    let (_, listing) = server.get("/api/v1/audit?action=audit.anchor").await;
    assert_eq!(listing["records"].as_array().unwrap().len(), 1, "not adopted again: {listing}");
    let verdict = verify(&server, "").await;
    assert_eq!((verdict["ok"].clone(), verdict["records"].clone()), (json!(false), json!(7)), "{verdict}");
    let reason = verdict["reason"].as_str().unwrap();
    assert!(reason.contains("the signed head was deleted: records may have been cut from the end"), "{verdict}");

    // Work goes on and is recorded, but nothing signs the cut chain.
    server.start_run("open", json!({})).await;
    let after = verify(&server, "").await;
    assert_eq!((after["ok"].clone(), after["records"].clone()), (json!(false), json!(8)), "{after}");
    assert!(after["reason"].as_str().unwrap().contains("the signed head was deleted"), "{after}");
    let output = server.cli(&["audit", "verify"]).await;
    assert!(!output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).contains("the signed head was deleted"), "{}", stdout(&output));

    // A restart does not launder it either.
    server.restart(&keyed, "").await;
    assert_eq!(verify(&server, "").await["ok"], false);
}

/// alice may run `backfill`, carol only see it, root is the admin; all through the SSO proxy.
const GUARDED: &str = r#"
[auth]
anonymous = false
admins = { users = ["root"] }
trusted_headers = { trusted_cidrs = ["127.0.0.1/32"] }

[[job]]
name = "backfill"
command = ["true"]
allow_run = { users = ["alice"] }
allow_view = { users = ["carol"] }
"#;

async fn as_user(server: &TestServer, method: reqwest::Method, path: &str, user: &str) -> (StatusCode, Value) {
    let request =
        reqwest::Client::new().request(method, format!("{}{path}", server.url)).header("x-forwarded-user", user);
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

/// The size of everything the store keeps: the SQLite files, or the PostgreSQL database's.
fn database_bytes(server: &TestServer) -> u64 {
    let stored = crate::support::stored_files(&server.dir.path().join("data"));
    stored.iter().map(|(_, bytes)| bytes.len() as u64).sum()
}

#[tokio::test]
async fn a_flood_of_denials_with_huge_forwarded_chains_stays_small_and_is_still_on_record() {
    const DENIALS: usize = 5000;
    let server = TestServer::start(GUARDED).await;
    let post = reqwest::Method::POST;
    let (status, run) = {
        let request = reqwest::Client::new()
            .post(format!("{}/api/v1/runs", server.url))
            .header("x-forwarded-user", "alice")
            .json(&json!({ "job": "backfill" }));
        let response = request.send().await.unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let cancel = format!("/api/v1/runs/{}/cancel", run["id"]);
    let (status, body) = as_user(&server, post.clone(), &cancel, "carol").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["message"], "carol may not cancel job `backfill`");
    let before = database_bytes(&server);

    // 13.8 KB of X-Forwarded-For on every request, as in the attack.
    let forwarded: Vec<String> = (0..1250).map(|index| format!("10.{}.{}.1", index / 250, index % 250)).collect();
    let forwarded = forwarded.join(", ");
    assert!(forwarded.len() > 13_000);
    let client = reqwest::Client::new();
    let statuses: Vec<StatusCode> = futures_util::stream::iter(1..DENIALS)
        .map(|_| {
            let request = client
                .post(format!("{}{cancel}", server.url))
                .header("x-forwarded-user", "carol")
                .header("x-forwarded-for", &forwarded);
            async move { request.send().await.unwrap().status() }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|status| *status == StatusCode::FORBIDDEN));

    let grown = database_bytes(&server).saturating_sub(before);
    assert!(grown < 1024 * 1024, "{DENIALS} denials grew the database by {grown} bytes");

    // The trail still says who was refused what, and how many times.
    let (status, listing) =
        as_user(&server, reqwest::Method::GET, "/api/v1/audit?actor=carol&action=denied.cancel&limit=1000", "root")
            .await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let records = listing["records"].as_array().unwrap();
    assert!(records.len() < 20, "{} records for one caller's flood", records.len());
    let counted: u64 =
        records.iter().map(|record| record["detail"]["repeated"].as_u64().map_or(1, |repeated| repeated)).sum();
    assert_eq!(counted, DENIALS as u64, "every denial is counted: {listing}");
    for record in records {
        assert_eq!(record["action"], "denied.cancel");
        assert!(record["message"].as_str().unwrap().starts_with("carol may not cancel job `backfill`"), "{record}");
        let client = record["client"].as_str().unwrap();
        assert!(client.starts_with("127.0.0.1") && client.len() <= 512, "{client}");
    }
    assert!(
        records.iter().any(|record| record["client"]
            .as_str()
            .unwrap()
            .contains("earlier hops) 10.4.246.1, 10.4.247.1, 10.4.248.1, 10.4.249.1")),
        "the summary keeps the hops nearest the server: {listing}"
    );
    assert_eq!(as_user(&server, reqwest::Method::GET, "/api/v1/audit/verify", "root").await.1["ok"], true);
}

#[tokio::test]
async fn actions_are_stable_codes_with_the_message_apart_and_old_prose_still_reads() {
    // It writes a legacy record into the SQLite file: on SQLite whatever the suite's store.
    let mut server = TestServer::start_sqlite(GUARDED, "").await;
    let get = reqwest::Method::GET;
    assert_eq!(as_user(&server, get.clone(), "/api/v1/audit", "alice").await.0, StatusCode::FORBIDDEN);
    assert_eq!(as_user(&server, get.clone(), "/api/v1/audit/verify", "alice").await.0, StatusCode::FORBIDDEN);

    // A record as versions before action codes wrote it: prose in the action, no message.
    server.stop().await;
    let pool = attacker(&server).await;
    let (last_id, last_hash): (i64, String) =
        sqlx::query_as("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetch_one(&pool).await.unwrap();
    let legacy = AuditEntry {
        at_us: 1,
        actor: "bob".into(),
        source: "trusted_headers".into(),
        client: "127.0.0.1".into(),
        action: AuditAction::decode("denied.read the audit trail"),
        message: String::new(),
        job: None,
        run_id: None,
        detail: "{}".into(),
    };
    let format = RecordFormat::Legacy { stored_action: "denied.read the audit trail".into() };
    let hash = chain_hash(last_id + 1, &legacy, &format, &last_hash);
    sqlx::query(
        "INSERT INTO audit (id, at_us, actor, source, client, action, job, run_id, detail, prev_hash, hash) \
         VALUES (?, 1, 'bob', 'trusted_headers', '127.0.0.1', 'denied.read the audit trail', NULL, NULL, '{}', ?, ?)",
    )
    .bind(last_id + 1)
    .bind(&last_hash)
    .bind(&hash)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    server.restart(GUARDED, "").await;

    let (_, listing) = as_user(&server, get.clone(), "/api/v1/audit?action=denied.audit.read", "root").await;
    let found: Vec<(&str, &str, &str)> = listing["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            (record["actor"].as_str().unwrap(), record["action"].as_str().unwrap(), record["message"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("bob", "denied.audit.read", "bob may not read the audit trail"),
            ("alice", "denied.audit.read", "alice may not read the audit trail"),
        ]
    );
    let (_, verified) = as_user(&server, get.clone(), "/api/v1/audit?action=denied.audit.verify", "root").await;
    assert_eq!(verified["records"][0]["message"], "alice may not verify the audit trail");
    assert_eq!(as_user(&server, get, "/api/v1/audit/verify", "root").await.1["ok"], true, "old and new records chain");
}

#[tokio::test]
async fn a_missing_or_short_audit_key_stops_the_start_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.key");
    std::fs::write(&short, "secret\n").unwrap();
    for (key_file, expected) in [
        ("missing.key", "cannot read the audit key file"),
        ("short.key", "has 6 bytes; it needs at least 32 random bytes"),
    ] {
        let text = crate::support::config_text(
            &dir.path().join("data"),
            "",
            &format!("[audit]\nkey_file = {key_file:?}\n{OPEN_JOB}"),
        );
        let path = crate::support::write_config(dir.path(), &text);
        let config = oneoff_server::load_config(&path, &Default::default()).unwrap();
        let error = match oneoff_server::start(config).await {
            Ok(_) => panic!("started with {key_file}"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(expected), "{error}");
        assert!(!error.contains("secret"), "the key reached the message: {error}");
    }
}

/// A job inherits the server's environment, but not the audit key in it: a job that could
/// print the key could sign a rewritten chain.
#[tokio::test]
async fn jobs_never_see_the_audit_key() {
    let dir = tempfile::tempdir().unwrap();
    let job = "[[job]]\nname = \"env\"\ncommand = [\"sh\", \"-c\", \"echo key=${ONEOFF_AUDIT_KEY:-none} other=${ONEOFF_TEST_KEPT:-none}\"]\n";
    let config = crate::support::write_config(dir.path(), &crate::support::config_text(dir.path(), "", job));
    let key = std::str::from_utf8(&KEY).unwrap();
    let server = crate::support::ServerProcess::start_with_env(
        &config,
        &[("ONEOFF_AUDIT_KEY", key), ("ONEOFF_TEST_KEPT", "yes")],
    );
    let api = TestServer::remote(server.url.clone(), dir);
    let id = api.start_run("env", json!({})).await;
    assert_eq!(api.wait_final(id).await["status"], "succeeded");
    let log = api.lines(id, "stdout").await;
    assert_eq!(log, vec!["key=none other=yes".to_string()], "the rest of the environment is inherited");
    let (_, keyed) = api.get("/api/v1/audit/verify").await;
    assert_eq!(keyed["keyed"], true, "the server did take the key: {keyed}");
    drop(server); // before its data directory goes with `api`
}
