//! Settings from the environment against the real binary: `ONEOFF_<SECTION>__<KEY>` takes
//! effect in a running server over the file and under the flags, survives a reload, and a
//! wrong or misspelt variable stops `serve` before it starts, with the same words from
//! `check-config`.

use serde_json::{json, Value};

use crate::support::{cli_command, config_text, stderr, stdout, write_config, ServerProcess};

const JOBS: &str = r#"
[[job]]
name = "greet"
command = ["echo", "hi"]

[[job]]
name = "env"
command = ["sh", "-c", "echo body=${ONEOFF_SERVER__MAX_BODY_BYTES:-none} echo=${ONEOFF_DEBUG__ECHO:-none} kept=${ONEOFF_TEST_KEPT:-none}"]
"#;

/// The settings one server takes from its environment (its file says otherwise).
const FROM_ENVIRONMENT: &[(&str, &str)] = &[
    ("ONEOFF_SERVER__MAX_BODY_BYTES", "2048"),
    // `--listen 127.0.0.1:0`, which the test server is started with, wins over this.
    ("ONEOFF_SERVER__LISTEN", "127.0.0.1:1"),
    ("ONEOFF_AUTH__ANONYMOUS", "false"),
    ("ONEOFF_AUTH__ADMINS__USERS", "alice"),
    ("ONEOFF_AUTH__TRUSTED_HEADERS__TRUSTED_CIDRS", "127.0.0.1/32"),
    ("ONEOFF_AUTH__TRUSTED_HEADERS__USER_HEADER", "X-Who"),
    ("ONEOFF_DEBUG__ECHO", "true"),
    ("ONEOFF_TEST_KEPT", "yes"),
];

fn file_text(data_dir: &std::path::Path) -> String {
    config_text(data_dir, "max_body_bytes = 1048576\n", &format!("[auth]\nanonymous = true\n\n{JOBS}"))
}

async fn send(method: reqwest::Method, url: &str, who: Option<&str>, body: Option<String>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url).header("content-type", "application/json");
    if let Some(who) = who {
        request = request.header("x-who", who);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_server_takes_its_settings_from_the_environment_over_the_file_and_keeps_them_through_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &file_text(&dir.path().join("data")));
    let server = ServerProcess::start_with_env(&path, FROM_ENVIRONMENT);
    assert_ne!(server.addr().port(), 1, "the flag wins over the variable");
    let api = format!("{}/api/v1", server.url);

    // [auth] from the environment: no anonymous access, an identity header, an admin.
    let get = reqwest::Method::GET;
    assert_eq!(send(get.clone(), &format!("{api}/jobs"), None, None).await.0, 401);
    let (status, me) = send(get.clone(), &format!("{api}/whoami"), Some("alice"), None).await;
    assert_eq!((status, &me["user"], &me["admin"]), (200, &json!("alice"), &json!(true)), "{me}");
    // [debug] echo from the environment.
    assert_eq!(send(get, &format!("{}/debug/echo", server.url), Some("alice"), None).await.0, 200);

    // [server] max_body_bytes: the variable's 2048, not the file's 1 MiB.
    let post = reqwest::Method::POST;
    let small = json!({ "job": "greet", "params": {} }).to_string();
    let padded = json!({ "job": "greet", "params": {}, "pad": "x".repeat(4096) }).to_string();
    assert_eq!(send(post.clone(), &format!("{api}/runs"), Some("alice"), Some(padded)).await.0, 413);
    let (status, run) = send(post.clone(), &format!("{api}/runs"), Some("alice"), Some(small)).await;
    assert!(status == 201 || status == 200, "{status} {run}");

    // A run does not inherit the settings' variables (a database password may be one), only
    // the rest of the server's environment.
    let body = json!({ "job": "env", "params": {} }).to_string();
    let (_, run) = send(post.clone(), &format!("{api}/runs"), Some("alice"), Some(body)).await;
    let log = reqwest::Client::new()
        .get(format!("{api}/runs/{}/log.txt?follow=true", run["id"]))
        .header("x-who", "alice")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(log, "body=none echo=none kept=yes\n");

    // A reload reads the file with the same environment: nothing outside the catalog differs.
    let (status, report) = send(post, &format!("{api}/admin/reload"), Some("alice"), None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["restart_needed"], json!([]), "{report}");
}

#[test]
fn serve_and_check_config_refuse_a_wrong_or_misspelt_variable_in_the_same_words_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &file_text(&dir.path().join("data")));
    let path = path.to_str().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("ONEOFF_SERVER__MAX_BODY_BYTES", "lots", "ONEOFF_SERVER__MAX_BODY_BYTES: `lots` is not a whole number"),
        ("ONEOFF_SERVER__MAX_BODY_BYTES", "12", "ONEOFF_SERVER__MAX_BODY_BYTES: max_body_bytes must be at least 1024"),
        ("ONEOFF_STREAMS__MAX_MESSAGE_BYTES", "-1", "ONEOFF_STREAMS__MAX_MESSAGE_BYTES: -1 is out of range"),
        ("ONEOFF_AUTH__ANONYMOUS", "nope", "ONEOFF_AUTH__ANONYMOUS: `nope` is not a boolean: write true or false"),
        ("ONEOFF_SERVER__DRAN", "1s", "ONEOFF_SERVER__DRAN: no such setting: did you mean ONEOFF_SERVER__DRAIN?"),
        ("ONEOFF_SERVER_DRAIN", "1s", "ONEOFF_SERVER_DRAIN: no such variable: did you mean ONEOFF_SERVER__DRAIN?"),
        ("ONEOFF_JOB__COMMAND", "x", "ONEOFF_JOB__COMMAND: [[job]] comes only from the config file"),
    ];
    for (variable, value, expected) in cases {
        let serve = cli_command(&["serve", "--config", path]).env(variable, value).output().unwrap();
        assert_eq!(serve.status.code(), Some(2), "{variable}={value}: {}", stderr(&serve));
        assert!(stderr(&serve).contains(expected), "{variable}={value}: {}", stderr(&serve));
        assert!(!stdout(&serve).contains("listening"), "nothing started: {}", stdout(&serve));

        let check = cli_command(&["check-config", path]).env(variable, value).output().unwrap();
        assert_eq!(check.status.code(), Some(1), "{variable}={value}: {}", stderr(&check));
        assert_eq!(stderr(&check), stderr(&serve), "check-config says what serve says");
        // --no-env checks the file alone.
        let alone = cli_command(&["check-config", "--no-env", path]).env(variable, value).output().unwrap();
        assert!(alone.status.success(), "{}", stderr(&alone));
    }
}

#[test]
fn a_value_that_is_not_utf8_is_refused_by_its_name() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &file_text(&dir.path().join("data")));
    let value = std::ffi::OsStr::from_bytes(b"web\xff1");
    for command in [&["serve", "--config"][..], &["check-config"]] {
        let output = cli_command(&[command, &[path.to_str().unwrap()]].concat())
            .env("ONEOFF_SERVER__REPLICA", value)
            .output()
            .unwrap();
        assert!(!output.status.success());
        assert!(stderr(&output).contains("ONEOFF_SERVER__REPLICA: the value is not UTF-8 text"), "{}", stderr(&output));
    }
}

#[test]
fn check_config_names_the_settings_the_environment_sets_never_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &file_text(&dir.path().join("data")));
    let output = cli_command(&["check-config", path.to_str().unwrap()])
        .env("ONEOFF_SERVER__DATABASE", "sqlite:state/x.db")
        .env("ONEOFF_SERVER__DRAIN", "45s")
        .env("ONEOFF_REPLICA", "web-7")
        // Empty: unset.
        .env("ONEOFF_SERVER__RETENTION", "")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let shown = stdout(&output);
    assert!(shown.contains("ONEOFF_SERVER__DATABASE sets [server] database\n"), "{shown}");
    assert!(shown.contains("ONEOFF_SERVER__DRAIN sets [server] drain\n"), "{shown}");
    assert!(shown.contains("ONEOFF_REPLICA sets [server] replica\n"), "{shown}");
    assert!(!shown.contains("RETENTION") && !shown.contains("x.db") && !shown.contains("45s"), "{shown}");
}

/// `oneoff token create --config` reads the settings' variables as `serve` does, so the token
/// lands in the database the server uses.
#[test]
fn token_create_offline_reads_the_settings_variables_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &file_text(&dir.path().join("data")));
    let output = cli_command(&["token", "create", "--name", "ci", "--config", path.to_str().unwrap()])
        .env("ONEOFF_SERVER__DATABASE", "mysql://oneoff:hunter2-Sekret@db/oneoff")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let shown = stderr(&output);
    assert!(shown.contains("ONEOFF_SERVER__DATABASE: `mysql:` is not a database oneoff can use"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
