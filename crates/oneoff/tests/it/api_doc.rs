//! docs/API.md tells the truth: every example exchange in it is sent to a real server and the
//! answer must have the example's shape; and the listing, filter and metric facts the doc
//! states about `/runs`, `/audit` and `/metrics` hold.
//!
//! The convention (also stated at the top of docs/API.md): a fenced block tagged `http` holds
//! one request, as on the wire: `METHOD /path?query`, header lines, and after a blank line a
//! body. The first fenced block after it is its answer, tagged `json`. The answer must have
//! the same keys and the same JSON types (null, boolean, number, string, array, object) as
//! the example, recursively; values may differ. An array's elements must each have the shape
//! of one of the example's elements, and an example that shows elements needs an answer that
//! has some. Keys in [`OPTIONAL_KEYS`] may be missing on either side.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{stdout, TestServer};

/// Keys an answer carries only sometimes, so an example need not show them.
/// `continues`: set on a log entry that continues the line of the entry before it.
const OPTIONAL_KEYS: &[&str] = &["continues"];

/// The catalog the examples are written against. No identity source is configured, so
/// anonymous callers are administrators (a single-user setup) and may make every example's
/// request, audit listings and runs of `greet` (whose `allow_run` shows an access list) too.
const EXAMPLE_CATALOG: &str = r#"
[[job]]
name = "greet"
description = "Say hello"
command = ["echo", "hello", "{name}"]
timeout = "10m"
max_concurrent = 2
grace = "10s"
allow_run = { users = ["ann"], groups = ["ops"] }
[[job.param]]
name = "name"
type = "string"
required = true
pattern = "^[a-z]+$"
"#;

/// One request of docs/API.md and the answer it shows.
#[derive(Debug)]
struct Example {
    /// `docs/API.md:LINE: GET /api/v1/...`, for failure messages.
    name: String,
    method: reqwest::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    answer: Value,
}

#[tokio::test]
async fn every_example_in_api_md_has_the_shape_of_the_real_answer() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/API.md")).expect("docs/API.md");
    let examples = parse_examples(&doc);
    assert!(
        examples.len() >= 10,
        "docs/API.md has only {} checked examples; did the convention change?",
        examples.len()
    );

    let server = TestServer::start(EXAMPLE_CATALOG).await;
    // The runs the examples talk about: run 1 and 2, finished, so a page of one has an older page.
    for id in [
        server.start_run("greet", json!({"name": "bob"})).await,
        server.start_run("greet", json!({"name": "ann"})).await,
    ] {
        assert_eq!(server.wait_final(id).await["status"], "succeeded");
    }
    // A token to list, made as the first administrator token is (anonymous callers may not).
    let config = server.dir.path().join("oneoff.toml");
    let config = config.to_str().expect("a UTF-8 path");
    let made = server
        .cli(&["token", "create", "--config", config, "--name", "ci", "--user", "ci-bot", "--group", "eng"])
        .await;
    assert!(made.status.success(), "{made:?}");

    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    for example in &examples {
        let mut request = http.request(example.method.clone(), format!("{}{}", server.url, example.path));
        for (name, value) in &example.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &example.body {
            request = request.body(body.clone());
        }
        let response = request.send().await.unwrap_or_else(|error| panic!("{}: request failed: {error}", example.name));
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        let Ok(answer) = serde_json::from_slice::<Value>(&bytes) else {
            failures.push(format!(
                "{} answered {status} with a body that is not JSON: {}",
                example.name,
                String::from_utf8_lossy(&bytes)
            ));
            continue;
        };
        let differences = shape_differences("$", &example.answer, &answer);
        if !differences.is_empty() {
            failures.push(format!(
                "{} (answered {status}) does not have the example's shape:\n  - {}\n  the real answer: {answer}",
                example.name,
                differences.join("\n  - ")
            ));
        }
    }
    assert!(failures.is_empty(), "docs/API.md is out of date:\n{}", failures.join("\n\n"));
}

#[tokio::test]
async fn a_full_last_page_of_runs_or_audit_records_has_no_next_before() {
    let server = TestServer::start(EXAMPLE_CATALOG).await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c", "d"] {
        ids.push(server.start_run("greet", json!({ "name": name })).await);
    }
    for id in &ids {
        server.wait_final(*id).await;
    }

    let (status, first) = server.get("/api/v1/runs?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(run_ids(&first), [ids[3], ids[2]]);
    assert_eq!(first["next_before"], ids[2], "an older page exists: {first}");
    let (_, last) = server.get(&format!("/api/v1/runs?limit=2&before={}", ids[2])).await;
    assert_eq!(run_ids(&last), [ids[1], ids[0]]);
    assert!(last["next_before"].is_null(), "the last page is full, but nothing is older: {last}");
    let (_, exact) = server.get("/api/v1/runs?limit=4").await;
    assert_eq!(run_ids(&exact).len(), 4);
    assert!(exact["next_before"].is_null(), "one page holds every run: {exact}");

    // The audit trail has one `run.start` per run, and is paged the same way.
    let (status, audit) = server.get("/api/v1/audit?action=run.start&limit=2").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let before = audit["next_before"].as_i64().unwrap_or_else(|| panic!("an older page exists: {audit}"));
    let (_, older) = server.get(&format!("/api/v1/audit?action=run.start&limit=2&before={before}")).await;
    assert_eq!(older["records"].as_array().map(Vec::len), Some(2), "{older}");
    assert!(older["next_before"].is_null(), "the last audit page is full, but nothing is older: {older}");
}

#[tokio::test]
async fn oneoff_runs_user_lists_only_the_runs_that_user_requested() {
    let catalog = r#"
[auth]
anonymous = true
trusted_headers = { trusted_cidrs = ["127.0.0.1/32"] }

[[job]]
name = "greet"
command = ["echo", "hello", "{name}"]
[[job.param]]
name = "name"
type = "string"
"#;
    let server = TestServer::start(catalog).await;
    let anonymous_run = server.start_run("greet", json!({"name": "bob"})).await;
    let (status, ann_run) = post_as(&server, "ann", json!({"job": "greet", "params": {"name": "ann"}})).await;
    assert_eq!(status, StatusCode::CREATED, "{ann_run}");
    assert_eq!(ann_run["requested_by"], "ann");
    server.wait_final(anonymous_run).await;
    let ann_run = ann_run["id"].as_i64().expect("run id");
    server.wait_final(ann_run).await;

    let output = server.cli(&["runs", "--user", "ann", "--json"]).await;
    assert!(output.status.success(), "{output:?}");
    let listed: Value = serde_json::from_str(&stdout(&output)).expect("--json prints JSON");
    assert_eq!(run_ids(&listed), [ann_run], "{listed}");
    let output = server.cli(&["runs", "--user", "anonymous"]).await;
    let table = stdout(&output);
    assert!(table.lines().any(|line| line.starts_with(&format!("{anonymous_run} "))), "{table}");
    assert!(!table.lines().any(|line| line.starts_with(&format!("{ann_run} "))), "{table}");
    let (_, body) = server.get("/api/v1/runs?requested_by=nobody").await;
    assert_eq!(body, json!({"runs": [], "next_before": null}));
}

#[tokio::test]
async fn a_refused_plain_request_is_counted_under_its_api_code() {
    let server = TestServer::start(EXAMPLE_CATALOG).await;
    let id = server.start_run("greet", json!({"name": "bob"})).await;
    let (status, body) = server.get(&format!("/api/v1/runs/{id}/log/ws")).await;
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED, "{body}");
    assert_eq!(body["error"]["code"], "websocket_required");
    let (_, metrics) = server.get_text("/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("oneoff_websocket_handshakes_refused_total{reason=\"websocket_required\"} 1"),
        "the metric's reason is the API's code: {metrics}"
    );
    for code in ["websocket_upgrade_stripped", "websocket_upgrade_impossible_http10", "origin_rejected"] {
        assert!(metrics.contains(&format!("{{reason=\"{code}\"}} 0")), "every reason is listed, at 0 too: {metrics}");
    }
    assert!(!metrics.contains("not_websocket"), "{metrics}");
}

/// The nginx fix for a proxy that strips upgrades is one recommendation: the 426 body, the
/// doctor's guide and the deployment guide all say `Connection $connection_upgrade`, which
/// needs the `map` of docs/deployment.md; none gives the other form, `Connection "upgrade"`.
#[tokio::test]
async fn the_426_body_and_the_guides_give_the_same_nginx_fix() {
    const FIX: &str = "proxy_set_header Connection $connection_upgrade;";
    let server = TestServer::start(EXAMPLE_CATALOG).await;
    let id = server.start_run("greet", json!({"name": "bob"})).await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{id}/log/ws", server.url))
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    let body: Value = response.json().await.expect("JSON");
    let cause = body["diagnosis"]["likely_cause"].as_str().expect("likely_cause");
    assert!(cause.contains(FIX) && cause.contains("map $http_upgrade $connection_upgrade"), "{cause}");
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
    for guide in ["deployment.md", "doctor.md", "API.md"] {
        let text = std::fs::read_to_string(format!("{docs}/{guide}")).expect("guide");
        assert!(text.contains(FIX), "docs/{guide} does not give `{FIX}`");
        assert!(!text.contains("Connection \"upgrade\""), "docs/{guide} gives another nginx fix");
    }
}

/// docs/configuration.md: `listen` and `data_dir` (and the config file) come from the
/// environment, over the file.
#[test]
fn the_environment_sets_the_config_file_listen_and_data_dir() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    let file_data = dir.path().join("file-data");
    let env_data = dir.path().join("env-data");
    let text = format!("[server]\nlisten = \"127.0.0.2:0\"\ndata_dir = {:?}\n", file_data.display().to_string());
    let config = crate::support::write_config(dir.path(), &text);
    let child = crate::support::cli_command(&["serve"])
        .env("ONEOFF_CONFIG", &config)
        .env("ONEOFF_LISTEN", "127.0.0.1:0")
        .env("ONEOFF_DATA_DIR", &env_data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start oneoff serve");
    let mut server = crate::support::ServerProcess { child, url: String::new() };
    let mut announced = String::new();
    let stdout = server.child.stdout.take().expect("piped stdout");
    std::io::BufReader::new(stdout).read_line(&mut announced).expect("read the server's first line");
    assert!(
        announced.starts_with("oneoff listening on http://127.0.0.1:"),
        "ONEOFF_LISTEN wins over the file: {announced}"
    );
    assert!(env_data.join("oneoff.db").exists(), "ONEOFF_DATA_DIR wins over the file");
    assert!(!file_data.exists(), "the file's data_dir is not used");
}

#[test]
fn a_shape_difference_names_the_key_and_the_types() {
    let example = json!({"run": {"requested_by": null, "argv": ["echo"], "id": 1}, "next": 1});
    let answer = json!({"run": {"requested_by": "anonymous", "argv": [], "id": 7, "extra": true}});
    let differences = shape_differences("$", &example, &answer);
    assert_eq!(
        differences,
        [
            "$.next: the example has it, the answer does not",
            "$.run.argv: the example shows elements, the answer has none (the test's catalog should make some)",
            "$.run.requested_by: the example has null, the answer has a string (\"anonymous\")",
            "$.run: the answer has `extra`, the example does not",
        ]
    );
    assert!(shape_differences("$", &json!({"a": [1, "x"], "continues": true}), &json!({"a": ["y", 2, 3]})).is_empty());
    assert_eq!(
        shape_differences("$", &json!({"a": [1]}), &json!({"a": [1, {"b": 2}]})),
        ["$.a[1]: the example has a number, the answer has an object"]
    );
}

#[test]
fn examples_are_read_from_http_blocks_and_the_json_block_after_them() {
    let doc = "# T\n\n```http\nPOST /api/v1/runs\nContent-Type: application/json\n\n{\"job\": \"greet\"}\n```\n\nprose\n\n```json\n{\"id\": 1}\n```\n\n```json\n{\"not\": \"checked\"}\n```\n";
    let examples = parse_examples(doc);
    assert_eq!(examples.len(), 1, "{examples:?}");
    let example = &examples[0];
    assert_eq!(example.name, "docs/API.md:3: POST /api/v1/runs");
    assert_eq!((example.method.as_str(), example.path.as_str()), ("POST", "/api/v1/runs"));
    assert_eq!(example.headers, [("Content-Type".to_string(), "application/json".to_string())]);
    assert_eq!(example.body.as_deref(), Some("{\"job\": \"greet\"}"));
    assert_eq!(example.answer, json!({"id": 1}));
}

fn run_ids(list: &Value) -> Vec<i64> {
    list["runs"].as_array().expect("runs").iter().map(|run| run["id"].as_i64().expect("id")).collect()
}

async fn post_as(server: &TestServer, user: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/runs", server.url))
        .header("x-forwarded-user", user)
        .json(&body)
        .send()
        .await
        .expect("POST");
    (response.status(), response.json().await.expect("JSON"))
}

/// The fenced blocks of a Markdown text: (line of the opening fence, info string, content).
fn fenced_blocks(doc: &str) -> Vec<(usize, String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, Vec<&str>)> = None;
    for (index, line) in doc.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (open.take(), fence) {
            (None, Some(info)) => open = Some((index + 1, info.trim().to_string(), Vec::new())),
            (None, None) => {}
            (Some((start, info, content)), Some(_)) => blocks.push((start, info, content.join("\n"))),
            (Some((start, info, mut content)), None) => {
                content.push(line);
                open = Some((start, info, content));
            }
        }
    }
    blocks
}

/// Each `http` block with the `json` block after it; panics naming the line of a malformed one.
fn parse_examples(doc: &str) -> Vec<Example> {
    let blocks = fenced_blocks(doc);
    let mut examples = Vec::new();
    for (index, (line, info, request)) in blocks.iter().enumerate() {
        if info != "http" {
            continue;
        }
        let mut lines = request.lines().map(str::trim);
        let request_line = lines.next().unwrap_or_default();
        let name = format!("docs/API.md:{line}: {request_line}");
        let (method, path) = request_line
            .split_once(' ')
            .unwrap_or_else(|| panic!("{name}: the first line of an `http` block is `METHOD /path`"));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|_| panic!("{name}: bad method"));
        let mut headers = Vec::new();
        for header in lines.by_ref() {
            if header.is_empty() {
                break;
            }
            let (header_name, value) =
                header.split_once(':').unwrap_or_else(|| panic!("{name}: `{header}` is not a `Name: value` header"));
            headers.push((header_name.trim().to_string(), value.trim().to_string()));
        }
        let body = lines.collect::<Vec<_>>().join("\n");
        let Some((answer_line, answer_info, answer)) = blocks.get(index + 1) else {
            panic!("{name}: no fenced block follows; its answer is a ```json block")
        };
        assert_eq!(
            answer_info, "json",
            "{name}: the block after it (line {answer_line}) must be its answer, tagged json"
        );
        let answer = serde_json::from_str(answer)
            .unwrap_or_else(|error| panic!("{name}: its answer (line {answer_line}) is not valid JSON: {error}"));
        examples.push(Example {
            name,
            method,
            path: path.trim().to_string(),
            headers,
            body: (!body.is_empty()).then_some(body),
            answer,
        });
    }
    examples
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where `answer` does not have the shape of `example`, each as `PATH: what differs`.
fn shape_differences(path: &str, example: &Value, answer: &Value) -> Vec<String> {
    match (example, answer) {
        (Value::Object(example), Value::Object(answer)) => {
            let mut differences = Vec::new();
            for (key, example_value) in example {
                match answer.get(key) {
                    Some(answer_value) => {
                        differences.extend(shape_differences(&format!("{path}.{key}"), example_value, answer_value))
                    }
                    None if OPTIONAL_KEYS.contains(&key.as_str()) => {}
                    None => differences.push(format!("{path}.{key}: the example has it, the answer does not")),
                }
            }
            for key in answer.keys() {
                if !example.contains_key(key) && !OPTIONAL_KEYS.contains(&key.as_str()) {
                    differences.push(format!("{path}: the answer has `{key}`, the example does not"));
                }
            }
            differences.sort();
            differences
        }
        (Value::Array(example), Value::Array(answer)) => {
            if !example.is_empty() && answer.is_empty() {
                return vec![format!(
                    "{path}: the example shows elements, the answer has none (the test's catalog should make some)"
                )];
            }
            let mut differences = Vec::new();
            for (index, element) in answer.iter().enumerate() {
                let element_path = format!("{path}[{index}]");
                let closest = example
                    .iter()
                    .map(|example_element| shape_differences(&element_path, example_element, element))
                    .min_by_key(Vec::len)
                    .unwrap_or_default();
                differences.extend(closest);
            }
            differences
        }
        _ if std::mem::discriminant(example) == std::mem::discriminant(answer) => Vec::new(),
        _ => {
            let shown = match answer {
                Value::Object(_) | Value::Array(_) | Value::Null => String::new(),
                scalar => format!(" ({scalar})"),
            };
            vec![format!("{path}: the example has {}, the answer has {}{shown}", type_name(example), type_name(answer))]
        }
    }
}
