//! `[server] base_path`: everything (the UI, the API, the streams, `/metrics`, the guides)
//! under the prefix, as an ingress that does not rewrite paths passes it on; the health
//! endpoints at the root as well; every path the server hands out (a `Location`, a 426's
//! fallbacks, the page's links) under the prefix; and a request outside it told where to go.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{stderr, write_config, TestServer};

const JOBS: &str = r#"
[[job]]
name = "hello"
command = ["sh", "-c", "echo one; echo two"]
"#;

async fn prefixed() -> (TestServer, String) {
    let server = TestServer::start_with(JOBS, "base_path = \"/tools/oneoff/\"").await;
    let root = server.url.strip_suffix("/tools/oneoff").expect("the URL names the prefix").to_string();
    (server, root)
}

#[tokio::test]
async fn the_api_the_streams_and_the_ui_are_served_under_the_prefix() {
    let (server, root) = prefixed().await;
    let id = server.start_run("hello", json!({})).await;
    assert_eq!(server.wait_final(id).await["status"], "succeeded");
    assert_eq!(server.lines(id, "stdout").await, ["one", "two"]);
    let ws = server.ws_follow(id, 0).await;
    assert_eq!(ws.entries.len(), 2, "WebSocket under the prefix");
    let sse = server.sse_follow(id, None).await;
    assert_eq!(sse.entries().len(), 2, "SSE under the prefix");
    let (status, text) = server.get_text(&format!("/api/v1/runs/{id}/log.txt")).await;
    assert_eq!((status, String::from_utf8_lossy(&text).into_owned()), (StatusCode::OK, "one\ntwo\n".to_string()));

    for page in ["", "/", "/runs", &format!("/runs/{id}"), "/jobs/hello"] {
        let (status, body) = server.get_text(page).await;
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(body.contains(r#"src="/tools/oneoff/assets/app.js""#), "{page}: {body}");
        assert!(body.contains(r#"href="/tools/oneoff/runs""#), "{page}: {body}");
    }
    for asset in ["/assets/app.js", "/assets/paths.js", "/docs/deployment.md", "/metrics", "/healthz", "/readyz"] {
        assert_eq!(server.get_text(asset).await.0, StatusCode::OK, "{asset} under the prefix");
    }
    // Probes that know nothing of the prefix still find the health endpoints.
    for health in ["/healthz", "/readyz"] {
        assert_eq!(reqwest::get(format!("{root}{health}")).await.unwrap().status(), StatusCode::OK, "{health}");
    }
}

#[tokio::test]
async fn every_path_the_server_hands_out_is_under_the_prefix() {
    let (server, _) = prefixed().await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/runs", server.url))
        .json(&json!({ "job": "hello" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let run: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/tools/oneoff/api/v1/runs/{}", run["id"]));
    // A WebSocket handshake that lost its upgrade headers names fallbacks a browser can use.
    let (status, refusal) = server.get(&format!("/api/v1/runs/{}/log/ws", run["id"])).await;
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED, "{refusal}");
    let fallbacks = refusal["diagnosis"]["fallbacks"].as_array().expect("fallbacks");
    let fallbacks: Vec<&str> = fallbacks.iter().filter_map(Value::as_str).collect();
    assert!(!fallbacks.is_empty(), "{refusal}");
    for fallback in fallbacks {
        assert!(fallback.starts_with("/tools/oneoff/api/v1/runs/"), "{fallback}");
    }
}

#[tokio::test]
async fn a_request_outside_the_prefix_is_told_where_oneoff_is() {
    let (server, root) = prefixed().await;
    for outside in ["/", "/api/v1/jobs", "/assets/app.js", "/tools", "/tools/oneoffx/api/v1/jobs", "/metrics"] {
        let response = reqwest::get(format!("{root}{outside}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{outside}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("served under /tools/oneoff/"), "{outside}: {message}");
        assert!(message.contains("/tools/oneoff/api/v1"), "{message}");
    }
    // Inside it, a wrong path is an ordinary 404.
    let (status, body) = server.get("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body["error"]["message"].as_str().unwrap().contains("served under"), "{body}");
}

#[tokio::test]
async fn the_cli_works_with_a_server_url_that_has_the_prefix() {
    let (server, _) = prefixed().await;
    let output = server.cli(&["run", "hello", "--follow"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "one\ntwo\n");
}

#[test]
fn a_base_path_that_is_no_clean_prefix_is_refused_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[server]\nbase_path = \"oneoff/../x\"\n");
    let output = crate::support::cli_command(&["check-config", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let expected = format!("{}:2:13: base_path `oneoff/../x` must start with `/`", path.display());
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));
}

/// `ONEOFF_BASE_PATH` and `--base-path` set it too (the flag winning), checked as the file's is.
#[tokio::test]
async fn the_environment_and_the_flag_set_the_prefix_and_the_flag_wins() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &crate::support::sqlite_config_text(dir.path(), "", JOBS));
    let server = crate::support::ServerProcess::start_with_env(&config, &[("ONEOFF_BASE_PATH", "/from-env/")]);
    assert!(server.url.ends_with("/from-env"), "{}", server.url);
    assert_eq!(reqwest::get(format!("{}/api/v1/jobs", server.url)).await.unwrap().status(), StatusCode::OK);
    drop(server);
    let output = crate::support::cli_command(&["serve", "--config", config.to_str().unwrap(), "--base-path", "x"])
        .env("ONEOFF_BASE_PATH", "/from-env")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--base-path: base_path `x` must start with `/`"), "{}", stderr(&output));
}

/// The OpenAPI document served under a prefix names it in `servers`, so a client resolving
/// its paths reaches this server; its paths stay those of the committed document.
#[tokio::test]
async fn the_openapi_document_names_the_prefix_as_its_server() {
    let (server, _) = prefixed().await;
    let (status, document) = server.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["servers"], json!([{ "url": "/tools/oneoff" }]), "{}", document["servers"]);
    assert!(document["paths"]["/api/v1/runs"].is_object());
}

/// `oneoff doctor` given the URL with the prefix finds every transport of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doctor_checks_the_server_under_its_prefix() {
    let (server, _) = prefixed().await;
    let mut command = crate::support::cli_command(&["doctor", &server.url]);
    command.env_remove("ONEOFF_SERVER");
    let output = tokio::process::Command::from(command).output().await.expect("run oneoff doctor");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}{}", stderr(&output));
    assert!(printed.contains("every check passes"), "{printed}");
}
