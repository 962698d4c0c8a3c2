//! Identity, permissions and audit: trusted SSO headers only from trusted peers, per-job
//! run and view lists on every endpoint and transport, API tokens, and the hash-chained trail.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{cli_command, stderr, stdout, TestServer};

const AUTH: &str = r#"
[auth]
anonymous = false
admins = { users = ["root"] }

[auth.trusted_headers]
trusted_cidrs = ["127.0.0.1/32"]

[[job]]
name = "backfill"
command = ["sh", "-c", "echo backfilling"]
allow_run = { groups = ["eng"], users = ["alice"] }
allow_view = { groups = ["support"] }

[[job]]
name = "open"
command = ["echo", "open to all"]
"#;

/// A request as `user` (with `groups`) through the trusted SSO proxy.
async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    user: Option<(&str, &str)>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.url));
    if let Some((user, groups)) = user {
        request = request.header("x-forwarded-user", user).header("x-forwarded-groups", groups);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn job_names(list: &Value) -> Vec<&str> {
    list["jobs"].as_array().unwrap().iter().map(|job| job["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn sso_headers_identify_users_and_access_lists_apply_everywhere() {
    let server = TestServer::start(AUTH).await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    // No identity: 401 everywhere but health.
    assert_eq!(call(&server, get.clone(), "/api/v1/jobs", None, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(server.get("/healthz").await.0, StatusCode::OK);

    // alice may run backfill; the run records her.
    let (status, list) = call(&server, get.clone(), "/api/v1/jobs", Some(("alice", "")), None).await;
    assert_eq!((status, job_names(&list)), (StatusCode::OK, vec!["backfill", "open"]));
    assert_eq!(
        list["jobs"][0]["allow_run"],
        json!({ "users": ["alice"], "groups": ["eng"] }),
        "the catalog says who may run"
    );
    assert!(list["jobs"][1]["allow_run"].is_null());
    let (status, run) =
        call(&server, post.clone(), "/api/v1/runs", Some(("alice", "")), Some(json!({ "job": "backfill" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert_eq!(run["requested_by"], "alice");
    let id = run["id"].as_i64().unwrap();
    for _ in 0..200 {
        let (_, run) = call(&server, get.clone(), &format!("/api/v1/runs/{id}"), Some(("alice", "")), None).await;
        if run["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

    // carol (support) may view but not run.
    let (_, list) = call(&server, get.clone(), "/api/v1/jobs", Some(("carol", "support")), None).await;
    assert_eq!(job_names(&list), vec!["backfill", "open"]);
    assert_eq!(
        call(&server, get.clone(), &format!("/api/v1/runs/{id}/log"), Some(("carol", "support")), None).await.0,
        StatusCode::OK
    );
    let (status, body) =
        call(&server, post.clone(), "/api/v1/runs", Some(("carol", "support")), Some(json!({ "job": "backfill" })))
            .await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));

    // mallory (sales) sees neither the job nor its runs, on any transport: they are 404, as
    // the job is, so not even its name leaks (issue 10).
    let (_, list) = call(&server, get.clone(), "/api/v1/jobs", Some(("mallory", "sales")), None).await;
    assert_eq!(job_names(&list), vec!["open"]);
    assert_eq!(
        call(&server, get.clone(), "/api/v1/jobs/backfill", Some(("mallory", "sales")), None).await.0,
        StatusCode::NOT_FOUND
    );
    for path in [
        format!("/api/v1/runs/{id}"),
        format!("/api/v1/runs/{id}/log"),
        format!("/api/v1/runs/{id}/log.txt"),
        format!("/api/v1/runs/{id}/log/sse"),
    ] {
        assert_eq!(
            call(&server, get.clone(), &path, Some(("mallory", "sales")), None).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let mut ws = format!("{}/api/v1/runs/{id}/log/ws", server.ws_url("")).into_client_request_with("mallory");
    ws.headers_mut().insert("x-forwarded-groups", "sales".parse().unwrap());
    match tokio_tungstenite::connect_async(ws).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("mallory's WebSocket was not refused: {other:?}"),
    }
    let (_, runs) = call(&server, get.clone(), "/api/v1/runs", Some(("mallory", "sales")), None).await;
    assert_eq!(runs["runs"], json!([]), "the listing hides runs of jobs she may not see");

    let (_, mine) = call(&server, get.clone(), "/api/v1/runs?requested_by=alice", Some(("root", "")), None).await;
    assert_eq!(mine["runs"].as_array().unwrap().len(), 1);
    let (_, others) = call(&server, get.clone(), "/api/v1/runs?requested_by=bob", Some(("root", "")), None).await;
    assert_eq!(others["runs"], json!([]));

    // The audit trail (admins only) has the start and the denials, and its chain holds.
    assert_eq!(call(&server, get.clone(), "/api/v1/audit", Some(("alice", "")), None).await.0, StatusCode::FORBIDDEN);
    let (status, audit) = call(&server, get.clone(), "/api/v1/audit?limit=100", Some(("root", "")), None).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<(String, String)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| (record["actor"].as_str().unwrap().to_string(), record["action"].as_str().unwrap().to_string()))
        .collect();
    assert!(actions.contains(&("alice".into(), "run.start".into())), "{actions:?}");
    assert!(actions.contains(&("carol".into(), "denied.run".into())), "{actions:?}");
    assert!(actions.contains(&("mallory".into(), "denied.view".into())), "{actions:?}");
    let start = audit["records"].as_array().unwrap().iter().find(|record| record["action"] == "run.start").unwrap();
    assert_eq!(start["detail"]["argv"], json!(["sh", "-c", "echo backfilling"]));
    assert!(start["client"].as_str().unwrap().starts_with("127.0.0.1"));
    let (_, verified) = call(&server, get, "/api/v1/audit/verify", Some(("root", "")), None).await;
    assert_eq!(verified["ok"], true, "{verified}");
}

trait IntoRequestAs {
    fn into_client_request_with(self, user: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request;
}

impl IntoRequestAs for String {
    fn into_client_request_with(self, user: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = self.into_client_request().unwrap();
        request.headers_mut().insert("x-forwarded-user", user.parse().unwrap());
        request
    }
}

#[tokio::test]
async fn identity_headers_from_an_untrusted_peer_are_ignored() {
    let jobs = AUTH.replace("trusted_cidrs = [\"127.0.0.1/32\"]", "trusted_cidrs = [\"10.0.0.0/8\"]");
    let server = TestServer::start(&jobs).await;
    let (status, body) = call(&server, reqwest::Method::GET, "/api/v1/jobs", Some(("root", "eng")), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(String::from_utf8(metrics).unwrap().contains("oneoff_untrusted_identity_headers_total 1"));
}

#[tokio::test]
async fn api_tokens_work_for_the_cli_until_revoked_and_are_stored_hashed() {
    let server = TestServer::start(AUTH).await;
    // The first administrator token is made on the server's host, from its config file.
    let config = server.dir.path().join("oneoff.toml");
    let command = cli_command(&[
        "token",
        "create",
        "--config",
        config.to_str().unwrap(),
        "--name",
        "bootstrap",
        "--user",
        "root",
    ]);
    // Not a blocking call: the server runs on this test's runtime (see hostile_auth), and a
    // write transaction of its own blocked midway would hold the file's lock against the CLI.
    let output = tokio::process::Command::from(command).output().await.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let admin_token = stdout(&output).trim().to_string();
    assert!(admin_token.starts_with("oneoff_"));

    let as_admin = |args: &[&str]| {
        let mut command = cli_command(args);
        command.env("ONEOFF_SERVER", &server.url).env("ONEOFF_TOKEN", &admin_token);
        tokio::process::Command::from(command).output()
    };
    let output = as_admin(&["whoami", "--json"]).await.unwrap();
    let me: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (me["user"].as_str(), me["source"].as_str(), me["admin"].as_bool()),
        (Some("root"), Some("token:bootstrap"), Some(true))
    );

    let output =
        as_admin(&["token", "create", "--name", "ci", "--user", "bot", "--group", "eng", "--expires", "30d", "--json"])
            .await
            .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    let ci_token = created["token"].as_str().unwrap().to_string();

    let mut command = cli_command(&["run", "backfill", "--follow"]);
    command.env("ONEOFF_SERVER", &server.url).env("ONEOFF_TOKEN", &ci_token);
    let output = tokio::process::Command::from(command).output().await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "backfilling\n");

    let id = created["info"]["id"].as_i64().unwrap().to_string();
    assert!(as_admin(&["token", "revoke", &id]).await.unwrap().status.success());
    let mut command = cli_command(&["jobs"]);
    command.env("ONEOFF_SERVER", &server.url).env("ONEOFF_TOKEN", &ci_token);
    let output = tokio::process::Command::from(command).output().await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("was revoked"), "{}", stderr(&output));

    let stored = crate::support::stored_files(&server.dir.path().join("data"));
    assert!(stored.iter().any(|(_, bytes)| !bytes.is_empty()), "no stored data found");
    for (file, bytes) in stored {
        assert!(
            !bytes.windows(ci_token.len()).any(|window| window == ci_token.as_bytes()),
            "a token reached {file} in clear"
        );
    }
    let output = as_admin(&["audit", "verify"]).await.unwrap();
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).contains("audit trail intact"), "{}", stdout(&output));
}

#[tokio::test]
async fn cross_site_state_changes_are_refused() {
    let jobs = "[server]\npublic_origins = [\"https://oneoff.example.com\"]\n".to_string();
    let server =
        TestServer::start_with("[[job]]\nname = \"open\"\ncommand = [\"true\"]\n", &jobs.replace("[server]\n", ""))
            .await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/runs", server.url))
        .header("origin", "https://evil.example")
        .json(&json!({ "job": "open" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "cross_site_request");
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/runs", server.url))
        .header("origin", "https://oneoff.example.com")
        .json(&json!({ "job": "open" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// Asks for a stream ticket for run `id` with an API token.
async fn ticket(server: &TestServer, token: &str, id: i64) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/runs/{id}/log/ticket", server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    if status == StatusCode::CREATED {
        assert_eq!(response.headers()["cache-control"], "no-store", "a ticket must not be cached");
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A token for `user` (with `groups`), made by that user through the SSO proxy.
async fn token_for(server: &TestServer, user: &str, groups: &str) -> String {
    let (status, created) =
        call(server, reqwest::Method::POST, "/api/v1/tokens", Some((user, groups)), Some(json!({ "name": "browser" })))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["token"].as_str().unwrap().to_string()
}

/// Opens the log WebSocket with only a ticket (as a browser does); Ok(entries) or Err(status, body).
async fn ws_with_ticket(server: &TestServer, id: i64, ticket: &str) -> Result<Vec<String>, (u16, Value)> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{Error, Message};
    let url = server.ws_url(&format!("/api/v1/runs/{id}/log/ws?after=0&ticket={ticket}"));
    let mut socket = match tokio_tungstenite::connect_async(url).await {
        Ok((socket, _)) => socket,
        Err(Error::Http(response)) => {
            let body = response.body().as_deref().and_then(|body| serde_json::from_slice(body).ok());
            return Err((response.status().as_u16(), body.unwrap_or(Value::Null)));
        }
        Err(other) => panic!("WebSocket failed: {other}"),
    };
    let mut lines = Vec::new();
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["done"] == true {
                    break;
                }
                lines.extend(
                    value["entries"].as_array().unwrap().iter().map(|e| e["text"].as_str().unwrap().to_string()),
                );
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    Ok(lines)
}

async fn get_with_ticket(server: &TestServer, path: &str) -> (StatusCode, String) {
    let response = reqwest::get(format!("{}{path}", server.url)).await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn finished_run(server: &TestServer, user: (&str, &str)) -> i64 {
    let (status, run) =
        call(server, reqwest::Method::POST, "/api/v1/runs", Some(user), Some(json!({ "job": "backfill" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let id = run["id"].as_i64().unwrap();
    for _ in 0..400 {
        let (_, run) = call(server, reqwest::Method::GET, &format!("/api/v1/runs/{id}"), Some(user), None).await;
        if run["status"] == "succeeded" {
            return id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("run {id} did not finish");
}

#[tokio::test]
async fn browsers_with_a_token_follow_logs_with_single_use_stream_tickets() {
    let server = TestServer::start(AUTH).await;
    let alice = token_for(&server, "alice", "").await;
    let first = finished_run(&server, ("alice", "")).await;
    let second = finished_run(&server, ("alice", "")).await;

    // token → ticket → WebSocket, with no other identity on the connection.
    let (status, issued) = ticket(&server, &alice, first).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    assert_eq!(issued["run"], first);
    assert!(issued["expires_at"].is_string(), "{issued}");
    let single = issued["ticket"].as_str().unwrap().to_string();
    assert_eq!(ws_with_ticket(&server, first, &single).await.unwrap(), vec!["backfilling"]);

    // Used once: refused, clearly.
    let (status, body) = ws_with_ticket(&server, first, &single).await.unwrap_err();
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("already used"), "{body}");

    // SSE, then its reuse.
    let sse_ticket = ticket(&server, &alice, first).await.1["ticket"].as_str().unwrap().to_string();
    let (status, text) = get_with_ticket(&server, &format!("/api/v1/runs/{first}/log/sse?ticket={sse_ticket}")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("backfilling") && text.contains("event: done"), "{text}");
    let (status, text) = get_with_ticket(&server, &format!("/api/v1/runs/{first}/log/sse?ticket={sse_ticket}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");

    // Long-poll and log.txt take tickets too, with their other query parameters intact.
    let poll_ticket = ticket(&server, &alice, first).await.1["ticket"].as_str().unwrap().to_string();
    let (status, text) =
        get_with_ticket(&server, &format!("/api/v1/runs/{first}/log?after=0&ticket={poll_ticket}&limit=5")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("backfilling"), "{text}");
    // However its name is spelled in the URL, a ticket is a ticket (and kept out of the logs).
    let encoded = ticket(&server, &alice, first).await.1["ticket"].as_str().unwrap().to_string();
    let (status, text) = get_with_ticket(&server, &format!("/api/v1/runs/{first}/log.txt?%74icket={encoded}")).await;
    assert_eq!((status, text.trim()), (StatusCode::OK, "backfilling"));

    // A ticket for one run does not open another, and is used up by trying.
    let for_first = ticket(&server, &alice, first).await.1["ticket"].as_str().unwrap().to_string();
    let (status, body) = ws_with_ticket(&server, second, &for_first).await.unwrap_err();
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(&format!("issued for run {first}")), "{body}");
    assert_eq!(ws_with_ticket(&server, first, &for_first).await.unwrap_err().0, 401);

    // Only the log endpoints take tickets; made-up tickets are refused.
    let stray = ticket(&server, &alice, first).await.1["ticket"].as_str().unwrap().to_string();
    let (status, text) = get_with_ticket(&server, &format!("/api/v1/runs/{first}?ticket={stray}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("only by the log endpoints"), "{text}");
    let (status, _) = get_with_ticket(&server, &format!("/api/v1/runs/{first}/log.txt?ticket=ticket_made_up")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get_with_ticket(&server, &format!("/api/v1/runs/{first}/log.txt?ticket={stray}&ticket=x")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // No identity, no ticket; no view permission: 404 at creation, as for no such run (and recorded).
    let response =
        reqwest::Client::new().post(format!("{}/api/v1/runs/{first}/log/ticket", server.url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let mallory = token_for(&server, "mallory", "sales").await;
    let (status, body) = ticket(&server, &mallory, first).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");
    assert_eq!(ticket(&server, &alice, 999_999).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn stream_tickets_expire_and_their_number_is_bounded() {
    let settings = "[auth]\nstream_ticket_ttl = \"1s\"\nmax_stream_tickets = 3\nmax_stream_tickets_per_user = 2\n";
    let server = TestServer::start(&AUTH.replacen("[auth]\n", settings, 1)).await;
    let alice = token_for(&server, "alice", "").await;
    let bob = token_for(&server, "bob", "eng").await;
    let carol = token_for(&server, "carol", "support").await;
    let id = finished_run(&server, ("alice", "")).await;

    let late = ticket(&server, &alice, id).await.1["ticket"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let (status, body) = ws_with_ticket(&server, id, &late).await.unwrap_err();
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");

    // A flood of unused tickets is refused, per user (429) and in all (503), not stored.
    assert_eq!(ticket(&server, &alice, id).await.0, StatusCode::CREATED);
    assert_eq!(ticket(&server, &alice, id).await.0, StatusCode::CREATED);
    let (status, body) = ticket(&server, &alice, id).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("ticket_limit")));
    assert_eq!(ticket(&server, &bob, id).await.0, StatusCode::CREATED);
    let (status, body) = ticket(&server, &carol, id).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("ticket_limit")));
    assert!(body["error"]["message"].as_str().unwrap().contains("max_stream_tickets"), "{body}");
    // Expired ones are swept: the server takes tickets again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(ticket(&server, &carol, id).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn a_mistyped_job_is_suggested_only_among_the_jobs_the_caller_may_see() {
    let server = TestServer::start(AUTH).await;
    let post = reqwest::Method::POST;
    let mistyped = Some(json!({ "job": "backfil" }));
    let (status, body) =
        call(&server, post.clone(), "/api/v1/runs", Some(("carol", "support")), mistyped.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["message"], "no job named `backfil`: did you mean `backfill`?");
    // bob may not see `backfill`: the answer is the one for a job that does not exist.
    let (status, body) = call(&server, post, "/api/v1/runs", Some(("bob", "")), mistyped).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["message"], "no job named `backfil`");
}
