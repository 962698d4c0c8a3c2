//! `oneoff migrate-store` end to end, with the real binary: a real server's SQLite store
//! (runs with binary output and lines in pieces, tokens made with tokens, a keyed audit
//! chain) is copied into a real PostgreSQL, which a server then serves, and from there into
//! a new SQLite file, which a server serves too: every `log.txt` is byte-identical,
//! `oneoff audit verify` passes with the audit key, and the old tokens still sign in. And the refusals: a target that is not
//! empty, a source with live runs (a server killed with -9), the same store twice; a
//! password in a URL is never printed.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use oneoff_store::{PostgresOptions, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{cli_command, sqlite_config_text, stderr, stdout, write_config, ServerProcess, TestServer};

const KEY: [u8; 32] = *b"an audit key of 32 bytes, random";

const AUTH: &str =
    "[auth]\nadmins = { users = [\"root\"] }\n[auth.trusted_headers]\ntrusted_cidrs = [\"127.0.0.1/32\"]\n";

const JOBS: &str = r#"
[[job]]
name = "binary"
command = ["printf", '\377\376abc\000def\r\nok\n']

[[job]]
name = "many"
command = ["sh", "-c", 'i=0; while [ $i -lt 3000 ]; do echo "line $i"; i=$((i+1)); done; echo err >&2; printf "no newline"']

[[job]]
name = "long-line"
command = ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; echo; echo after"]

[[job]]
name = "sleeper"
command = ["sleep", "60"]
"#;

fn catalog(key_file: &Path) -> String {
    format!("{AUTH}[audit]\nkey_file = {:?}\n{JOBS}", key_file.display().to_string())
}

/// A request as `user` (trusted header) or with an API token.
async fn request(
    server_url: &str,
    method: reqwest::Method,
    path: &str,
    who: Who<'_>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new().request(method, format!("{server_url}{path}"));
    request = match who {
        Who::User(user) => request.header("x-forwarded-user", user),
        Who::Token(token) => request.bearer_auth(token),
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

#[derive(Clone, Copy)]
enum Who<'a> {
    User(&'a str),
    Token(&'a str),
}

async fn json_request(
    server_url: &str,
    method: reqwest::Method,
    path: &str,
    who: Who<'_>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let response = request(server_url, method, path, who, body).await;
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

async fn start_run(server_url: &str, job: &str) -> i64 {
    let (status, body) =
        json_request(server_url, reqwest::Method::POST, "/api/v1/runs", Who::User("root"), Some(json!({ "job": job })))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().expect("run id")
}

async fn wait_status(server_url: &str, id: i64, accept: impl Fn(&str) -> bool) {
    crate::support::eventually(&format!("run {id} reaches the expected status"), Duration::from_secs(30), || async {
        let (_, run) =
            json_request(server_url, reqwest::Method::GET, &format!("/api/v1/runs/{id}"), Who::User("root"), None)
                .await;
        accept(run["status"].as_str().unwrap_or_default()).then_some(())
    })
    .await
}

async fn log_text(server_url: &str, id: i64, who: Who<'_>) -> Vec<u8> {
    let response = request(server_url, reqwest::Method::GET, &format!("/api/v1/runs/{id}/log.txt"), who, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.expect("log.txt").to_vec()
}

/// Makes a token with the caller's identity; returns the token and its id.
async fn make_token(server_url: &str, name: &str, who: Who<'_>) -> (String, i64) {
    let (status, body) =
        json_request(server_url, reqwest::Method::POST, "/api/v1/tokens", who, Some(json!({ "name": name }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (body["token"].as_str().expect("token").to_string(), body["info"]["id"].as_i64().expect("id"))
}

async fn migrate(args: &[&str]) -> Output {
    let mut all = vec!["migrate-store"];
    all.extend_from_slice(args);
    tokio::process::Command::from(cli_command(&all)).output().await.expect("run oneoff migrate-store")
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

/// The value of a `name:  value` line of the summary.
fn summary_value(summary: &str, name: &str) -> String {
    let line = summary
        .lines()
        .find(|line| line.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {summary}"));
    line[name.len() + 1..].trim().to_string()
}

/// `oneoff audit verify` against a server, as the administrator's token.
async fn audit_verify_passes(server_url: &str, token: &str) {
    let mut verify = cli_command(&["audit", "verify"]);
    verify.env("ONEOFF_SERVER", server_url).env("ONEOFF_TOKEN", token);
    let output = tokio::process::Command::from(verify).output().await.unwrap();
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("audit trail intact"), "{}", stdout(&output));
    assert!(stdout(&output).contains("checked with the server's audit key"), "{}", stdout(&output));
}

fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("audit.key");
    std::fs::write(&path, KEY).unwrap();
    path
}

#[tokio::test]
async fn a_servers_store_moves_to_postgres_and_back_with_every_log_byte_and_the_audit_chain() {
    let keys = tempfile::tempdir().unwrap();
    let catalog = catalog(&key_file(keys.path()));
    // The store being moved is a SQLite file, whatever store the suite runs on.
    let mut first = TestServer::start_sqlite(&catalog, "").await;
    let mut runs = Vec::new();
    for job in ["binary", "many", "long-line", "binary"] {
        let id = start_run(&first.url, job).await;
        wait_status(&first.url, id, |status| status == "succeeded").await;
        runs.push(id);
    }
    // Three generations: a token made with a token is its child.
    let (parent, parent_id) = make_token(&first.url, "parent", Who::User("root")).await;
    let (child, child_id) = make_token(&first.url, "child", Who::Token(&parent)).await;
    let (_, grandchild_id) = make_token(&first.url, "grandchild", Who::Token(&child)).await;
    let mut logs = Vec::new();
    for &id in &runs {
        logs.push(log_text(&first.url, id, Who::User("root")).await);
    }
    assert!(logs[0].starts_with(b"\xff\xfeabc\x00def"), "binary output: {:?}", &logs[0][..10]);
    first.stop().await;
    let source_path = first.dir.path().join("data").join("oneoff.db");
    let source = Store::open_sqlite(&source_path).await.unwrap();
    let source_head = source.audit_tail().await.unwrap();
    source.close().await;

    let postgres_url = oneoff_testpg::Postgres::shared().new_database();
    let output = migrate(&["--from", &sqlite_url(&source_path), "--to", &postgres_url]).await;
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    let summary = stdout(&output);
    assert_eq!(summary_value(&summary, "runs"), "4", "{summary}");
    assert_eq!(summary_value(&summary, "tokens"), "3", "{summary}");
    assert_eq!(summary_value(&summary, "audit records"), source_head.records.to_string(), "{summary}");
    assert_eq!(summary_value(&summary, "audit head"), source_head.hash, "{summary}");
    assert_eq!(summary_value(&summary, "signed head"), "copied", "{summary}");
    assert!(summary_value(&summary, "log lines").parse::<u64>().unwrap() > 3000, "{summary}");
    assert!(summary.contains("verified:"), "{summary}");

    // A server on the PostgreSQL store serves every log byte for byte, verifies the chain with
    // the audit key, and takes the old tokens.
    let mut on_postgres = TestServer::start_sqlite(&catalog, &format!("database = {postgres_url:?}")).await;
    for (&id, log) in runs.iter().zip(&logs) {
        assert!(
            log_text(&on_postgres.url, id, Who::Token(&child)).await == *log,
            "log.txt of run {id} is byte-identical"
        );
    }
    audit_verify_passes(&on_postgres.url, &parent).await;
    on_postgres.stop().await;
    let postgres = Store::open_postgres(&postgres_url, &PostgresOptions::default()).await.unwrap();
    let tokens = postgres.list_tokens(None).await.unwrap();
    let parents: Vec<_> = tokens.iter().map(|token| (token.id, token.parent_id)).collect();
    assert_eq!(parents, vec![(parent_id, None), (child_id, Some(parent_id)), (grandchild_id, Some(child_id))]);
    let postgres_head = postgres.audit_tail().await.unwrap();
    postgres.close().await;

    // And on to a new SQLite file, which a server serves.
    let second_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(second_dir.path().join("data")).unwrap();
    let back_path = second_dir.path().join("data").join("oneoff.db");
    let output = migrate(&["--from", &postgres_url, "--to", &sqlite_url(&back_path)]).await;
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    assert_eq!(summary_value(&stdout(&output), "audit head"), postgres_head.hash);
    let second = TestServer::start_in(second_dir, &catalog, "").await;
    for (&id, log) in runs.iter().zip(&logs) {
        assert!(log_text(&second.url, id, Who::Token(&child)).await == *log, "log.txt of run {id} is byte-identical");
    }
    audit_verify_passes(&second.url, &parent).await;
    // The next run's id goes on after the copied ones.
    let next = start_run(&second.url, "binary").await;
    assert_eq!(next, runs.last().unwrap() + 1);
}

#[tokio::test]
async fn a_used_target_the_same_store_and_a_bad_url_are_refused_and_no_password_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.db");
    let source = Store::open_sqlite(&source_path).await.unwrap();
    let token = oneoff_store::NewToken {
        name: "ci".into(),
        user: "bot".into(),
        groups: vec![],
        hash: "abc".into(),
        created_by: "root".into(),
        created_at_us: 1,
        expires_at_us: None,
        parent_id: None,
    };
    source.insert_token(&token).await.unwrap();
    source.close().await;
    let password = "pw-Zq81-never-shown";
    let target = oneoff_testpg::Postgres::shared().new_database_with_password(password);
    let from = sqlite_url(&source_path);
    let printed = |output: &Output| format!("{}{}", stdout(output), stderr(output));

    let output = migrate(&["--from", &from, "--to", &target]).await;
    assert!(output.status.success(), "{}", printed(&output));
    assert!(stdout(&output).contains(":***@127.0.0.1"), "{}", printed(&output));
    assert!(!printed(&output).contains(password), "{}", printed(&output));

    let again = migrate(&["--from", &from, "--to", &target]).await;
    assert_eq!(again.status.code(), Some(2), "{}", printed(&again));
    let message = stderr(&again);
    assert!(message.contains("is not empty (it holds 0 runs, 1 tokens and 0 audit records)"), "{message}");
    assert!(message.contains("new, empty database"), "{message}");
    assert!(message.contains(":***@") && !message.contains(password), "{message}");

    let wrong = target.replace(password, "wrong-Pw-also-secret");
    let refused = migrate(&["--from", &from, "--to", &wrong]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", printed(&refused));
    assert!(stderr(&refused).contains("cannot open the target store"), "{}", printed(&refused));
    assert!(!printed(&refused).contains("wrong-Pw-also-secret"), "{}", printed(&refused));

    let no_host = migrate(&["--from", &from, "--to", &format!("postgres://u:{password}@/db")]).await;
    assert_eq!(no_host.status.code(), Some(2), "{}", printed(&no_host));
    assert!(
        stderr(&no_host).contains("--to: the PostgreSQL URL is not a valid URL (empty host)"),
        "{}",
        printed(&no_host)
    );
    assert!(!printed(&no_host).contains(password), "{}", printed(&no_host));

    let same = migrate(&[
        "--from",
        &from,
        "--to",
        &format!("sqlite:{}/../{}/source.db", dir.path().display(), dir.path().file_name().unwrap().to_string_lossy()),
    ])
    .await;
    assert_eq!(same.status.code(), Some(2), "{}", printed(&same));
    assert!(stderr(&same).contains("are the same store"), "{}", printed(&same));

    let missing =
        migrate(&["--from", &sqlite_url(&dir.path().join("typo.db")), "--to", &sqlite_url(&dir.path().join("new.db"))])
            .await;
    assert_eq!(missing.status.code(), Some(2), "{}", printed(&missing));
    assert!(stderr(&missing).contains("there is no SQLite database at"), "{}", printed(&missing));
    assert!(!dir.path().join("typo.db").exists() && !dir.path().join("new.db").exists(), "nothing was created");

    let nowhere =
        migrate(&["--from", &from, "--to", &sqlite_url(&dir.path().join("no-such-dir").join("new.db"))]).await;
    assert_eq!(nowhere.status.code(), Some(2), "{}", printed(&nowhere));
    assert!(stderr(&nowhere).contains("no-such-dir does not exist"), "{}", printed(&nowhere));
}

#[tokio::test]
async fn a_source_with_live_runs_is_refused_unless_allowed() {
    let keys = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), &sqlite_config_text(&data, "", &catalog(&key_file(keys.path()))));
    let mut server = ServerProcess::start(&config);
    let running = start_run(&server.url, "sleeper").await;
    wait_status(&server.url, running, |status| status == "running").await;
    // A server that dies leaves its run `running` in the store.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let from = sqlite_url(&data.join("oneoff.db"));
    let target = oneoff_testpg::Postgres::shared().new_database();

    let refused = migrate(&["--from", &from, "--to", &target]).await;
    assert_eq!(refused.status.code(), Some(2), "{}{}", stdout(&refused), stderr(&refused));
    let message = stderr(&refused);
    assert!(message.contains("has 1 running and 0 queued runs"), "{message}");
    assert!(message.contains("stop the server") && message.contains("--allow-live"), "{message}");
    let postgres = Store::open_postgres(&target, &PostgresOptions::default()).await.unwrap();
    assert!(postgres.list_runs(&oneoff_store::RunFilter { limit: 10, ..Default::default() }).await.unwrap().is_empty());

    let allowed = migrate(&["--from", &from, "--to", &target, "--allow-live"]).await;
    assert!(allowed.status.success(), "{}{}", stdout(&allowed), stderr(&allowed));
    let copied = postgres.run(oneoff_core::RunId(running)).await.unwrap().expect("the live run is copied");
    assert_eq!(copied.status, oneoff_core::RunStatus::Running, "as it was");
    postgres.close().await;
}
