//! The HTTP API: catalog, starting runs, validation and every kind of bad request.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::TestServer;

const GREET: &str = r#"
[[job]]
name = "greet"
description = "Say hello"
command = ["echo", "hello", "{name}"]
timeout = "10m"
max_concurrent = 2

[[job.param]]
name = "name"
type = "string"
required = true
pattern = "^[a-z]+$"

[[job.param]]
name = "times"
type = "integer"
min = 1
max = 3
default = 1

[[job.param]]
name = "loud"
type = "boolean"
"#;

#[tokio::test]
async fn catalog_lists_jobs_with_their_param_schema() {
    let server = TestServer::start(GREET).await;
    let (status, body) = server.get("/api/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);
    let job = &body["jobs"][0];
    assert_eq!(job["name"], "greet");
    assert_eq!(job["command"], json!(["echo", "hello", "{name}"]));
    assert_eq!(job["timeout_seconds"], 600.0);
    assert_eq!(job["params"][0]["pattern"], "^[a-z]+$");
    assert_eq!(job["params"][0]["env"], "ONEOFF_PARAM_NAME");
    assert_eq!(job["params"][1]["default"], 1);

    let (status, one) = server.get("/api/v1/jobs/greet").await;
    assert_eq!((status, &one), (StatusCode::OK, job));
    let (status, missing) = server.get("/api/v1/jobs/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_run_starts_with_201_and_location_and_succeeds() {
    let server = TestServer::start(GREET).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/runs", server.url))
        .json(&json!({ "job": "greet", "params": { "name": "bob", "times": "2" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let run: serde_json::Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/runs/{}", run["id"]));
    assert_eq!(run["job"], "greet");
    assert_eq!(run["params"], json!({ "name": "bob", "times": 2 }), "text is coerced to the param's type");

    let done = server.wait_final(run["id"].as_i64().unwrap()).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["exit_code"], 0);
    assert_eq!(done["argv"], json!(["echo", "hello", "bob"]));
    assert!(done["duration_ms"].as_i64().unwrap() >= 0);
    assert_eq!(server.lines(run["id"].as_i64().unwrap(), "stdout").await, vec!["hello bob"]);
}

#[tokio::test]
async fn invalid_params_get_422_with_one_message_per_field() {
    let server = TestServer::start(GREET).await;
    let (status, body) = server
        .post(
            "/api/v1/runs",
            json!({ "job": "greet", "params": { "name": "Bob!", "times": 9, "loud": "maybe", "extra": 1 } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "invalid_params");
    let fields: Vec<(String, String)> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| (field["field"].as_str().unwrap().into(), field["message"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("name".into(), "must match the pattern ^[a-z]+$".into()),
            ("times".into(), "must be at most 3".into()),
            ("loud".into(), "must be true or false, not \"maybe\"".into()),
            ("extra".into(), "unknown parameter (known: name, times, loud)".into()),
        ]
    );

    let (status, body) = server.post("/api/v1/runs", json!({ "job": "greet", "params": { "times": 1.5 } })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let messages = body["error"]["message"].as_str().unwrap();
    assert!(messages.contains("name: is required"), "{messages}");
    assert!(messages.contains("times: must be an integer, not a number with a fraction"), "{messages}");

    let (_, runs) = server.get("/api/v1/runs").await;
    assert_eq!(runs["runs"], json!([]), "a rejected request creates no run");
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors() {
    let server = TestServer::start_with(GREET, "max_body_bytes = 2048").await;
    let cases = [
        (server.post_raw("/api/v1/runs", "application/json", "{\"job\": ").await, StatusCode::BAD_REQUEST),
        (server.post_raw("/api/v1/runs", "application/json", "{\"job\": 5}").await, StatusCode::UNPROCESSABLE_ENTITY),
        (
            server.post_raw("/api/v1/runs", "application/json", "{\"job\": \"greet\", \"params\": []}").await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (server.post_raw("/api/v1/runs", "text/plain", "job=greet").await, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            server.post_raw("/api/v1/runs", "application/json", format!("{{\"job\":\"{}\"}}", "x".repeat(5000))).await,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (server.post("/api/v1/runs", json!({ "job": "nope" })).await, StatusCode::NOT_FOUND),
        (server.get("/api/v1/runs/999").await, StatusCode::NOT_FOUND),
        (server.get("/api/v1/runs/abc").await, StatusCode::BAD_REQUEST),
        (server.get("/api/v1/runs?status=done").await, StatusCode::BAD_REQUEST),
        (server.get("/api/v1/runs?limit=lots").await, StatusCode::BAD_REQUEST),
        (server.get("/api/v1/runs/1/log?wait=-1").await, StatusCode::NOT_FOUND),
        (server.get("/api/v1/nothing/here").await, StatusCode::NOT_FOUND),
        (server.post("/api/v1/jobs", json!({})).await, StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (index, ((status, body), expected)) in cases.into_iter().enumerate() {
        assert_eq!(status, expected, "case {index}: {body}");
        assert!(body["error"]["code"].is_string(), "case {index}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty(), "case {index}: {body}");
    }
    // The server is still healthy after all of that.
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let id = server.start_run("greet", json!({ "name": "ok" })).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    let (status, body) = server.get(&format!("/api/v1/runs/{id}/log?wait=-1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn hostile_values_reach_the_program_as_one_literal_argument() {
    let jobs = r#"
[[job]]
name = "args"
command = ["sh", "-c", 'echo "argc=$#"; printf "[%s]\n" "$1"; [ "$1" = "$ONEOFF_PARAM_X" ] && echo env-matches', "args", "{x}"]
[[job.param]]
name = "x"
"#;
    let server = TestServer::start(jobs).await;
    for hostile in ["; rm -rf /", "$(id)", "`id` && echo pwned", "a b\tc", "'\"\\", "line1\nline2", "--help", "*"] {
        let id = server.start_run("args", json!({ "x": hostile })).await;
        assert_eq!(server.wait_final(id).await["status"], "succeeded");
        let output = server.lines(id, "stdout").await.join("\n");
        assert_eq!(output, format!("argc=1\n[{hostile}]\nenv-matches"), "value {hostile:?}");
    }
}

#[tokio::test]
async fn runs_list_filters_and_paginates() {
    let jobs = r#"
[[job]]
name = "ok"
command = ["true"]
[[job]]
name = "bad"
command = ["false"]
"#;
    let server = TestServer::start(jobs).await;
    let mut ids = Vec::new();
    for job in ["ok", "bad", "ok", "bad", "ok"] {
        let id = server.start_run(job, json!({})).await;
        server.wait_final(id).await;
        ids.push(id);
    }
    let (_, page) = server.get("/api/v1/runs?limit=2").await;
    let shown: Vec<i64> = page["runs"].as_array().unwrap().iter().map(|run| run["id"].as_i64().unwrap()).collect();
    assert_eq!(shown, vec![ids[4], ids[3]]);
    let next = page["next_before"].as_i64().unwrap();
    let (_, page) = server.get(&format!("/api/v1/runs?limit=2&before={next}")).await;
    let shown: Vec<i64> = page["runs"].as_array().unwrap().iter().map(|run| run["id"].as_i64().unwrap()).collect();
    assert_eq!(shown, vec![ids[2], ids[1]]);

    let (_, failed) = server.get("/api/v1/runs?status=failed").await;
    assert_eq!(failed["runs"].as_array().unwrap().len(), 2);
    assert!(failed["runs"].as_array().unwrap().iter().all(|run| run["job"] == "bad" && run["exit_code"] == 1));
    let (_, ok) = server.get("/api/v1/runs?job=ok&limit=10").await;
    assert_eq!(ok["runs"].as_array().unwrap().len(), 3);
    assert!(ok["next_before"].is_null());
}

#[tokio::test]
async fn health_endpoints_answer() {
    let server = TestServer::start("").await;
    assert_eq!(server.get("/healthz").await, (StatusCode::OK, json!({ "status": "ok" })));
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn secret_params_are_never_shown_or_stored_in_clear() {
    let jobs = r#"
[[job]]
name = "secret"
command = ["sh", "-c", 'echo "token is $ONEOFF_PARAM_TOKEN"; echo "via env: $API_TOKEN" >&2']
env = { API_TOKEN = "{token}" }
[[job.param]]
name = "token"
type = "secret"
required = true
"#;
    let server = TestServer::start(jobs).await;
    let id = server.start_run("secret", json!({ "token": "hunter2-s3cr3t" })).await;
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["params"]["token"], "********");
    assert_eq!(server.lines(id, "stdout").await, vec!["token is ********"]);
    assert_eq!(server.lines(id, "stderr").await, vec!["via env: ********"]);
    let stored = crate::support::stored_files(&server.dir.path().join("data"));
    // The masked line is found where the secret is looked for: the search reads the stored data.
    let masked = b"token is ********";
    assert!(stored.iter().any(|(_, bytes)| bytes.windows(masked.len()).any(|window| window == masked)));
    for (file, bytes) in stored {
        assert!(!bytes.windows(14).any(|window| window == b"hunter2-s3cr3t"), "the secret reached {file}");
    }
}

#[tokio::test]
async fn the_ui_is_served_with_security_headers_and_its_guides_as_text() {
    let server = TestServer::start("").await;
    let page = reqwest::get(format!("{}/runs/1", server.url)).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");

    let guide = reqwest::get(format!("{}/docs/deployment.md", server.url)).await.unwrap();
    assert_eq!(guide.status(), StatusCode::OK);
    assert_eq!(guide.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(guide.headers()["x-content-type-options"], "nosniff");
    assert!(guide.text().await.unwrap().contains("proxy_http_version 1.1"));

    for path in ["/docs/Cargo.toml", "/docs/..%2FCargo.toml", "/assets/deployment.md", "/docs/app.js"] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
}
