//! Messages that point at the real problem (issue 11, section 3): `check-config` reports a
//! broken parameter once, with the word it meant, and warns about what this host lacks;
//! the server warns about it at start; argv is shown so that pasting it runs the same
//! thing; the CLI's and the API's errors speak our words, never a library's.

use std::io::BufRead;
use std::process::{Output, Stdio};

use serde_json::{json, Value};

use crate::support::{cli_command, config_text, stderr, stdout, write_config, TestServer};

/// Runs the CLI with `env` set and no token but what the test gives it.
async fn cli_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().expect("temp home");
    let mut command = cli_command(args);
    command.env_remove("ONEOFF_TOKEN").env_remove("XDG_CONFIG_HOME").env("HOME", home.path());
    command.envs(env.iter().copied());
    tokio::process::Command::from(command).output().await.expect("run oneoff")
}

fn check_config(text: &str, extra: &[&str], env: &[(&str, &str)]) -> (Output, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), text);
    let path = path.to_str().expect("UTF-8 path").to_string();
    let mut args = vec!["check-config"];
    args.extend_from_slice(extra);
    args.push(&path);
    let output = cli_command(&args).envs(env.iter().copied()).output().expect("run oneoff");
    (output, path)
}

/// Issue 11's job: a parameter with `type = "int"`, one with a bad regex, one with a bad
/// default, each used by the command.
const BROKEN_PARAMS: &str = r#"[[job]]
name = "backfill"
command = ["sh", "-c", "echo {batch_size} {since} {count}"]

[[job.param]]
name = "batch_size"
type = "int"
min = 1
default = 100

[[job.param]]
name = "since"
pattern = "[0-9"

[[job.param]]
name = "count"
type = "integer"
default = "many"
"#;

#[test]
fn check_config_reports_each_broken_parameter_once_with_the_word_it_meant() {
    let (output, path) = check_config(BROKEN_PARAMS, &[], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let shown = stderr(&output);
    assert_eq!(
        shown.lines().collect::<Vec<_>>(),
        vec![
            format!("{path}:7:8: unknown parameter type `int`: did you mean `integer`? (the types are string, integer, boolean, choice and secret)"),
            format!("{path}:13:11: bad regex: error: unclosed character class"),
            format!("{path}:18:11: default must be an integer, not \"many\""),
        ],
        "no follow-on errors: no unknown placeholder, no `min` that does not apply"
    );
}

#[test]
fn check_config_suggests_keys_and_refuses_a_nul_in_an_argument() {
    let (output, path) = check_config("[[job]]\nname = \"a\"\ncommand = [\"true\"]\ntimout = \"1m\"\n", &[], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with(&format!("{path}:4:1: unknown field `timout`: did you mean `timeout`?")),
        "{}",
        stderr(&output)
    );

    let (output, path) = check_config("[[job]]\nname = \"a\"\ncommand = [\"echo\", \"a\\u0000b\"]\n", &[], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim_end(),
        format!("{path}:3:20: argument 2 of command contains a NUL character, which no program can receive (an argument ends at NUL)")
    );
}

const HOST_LACKS: &str = r#"[[job]]
name = "a"
command = ["/nonexistent/prog", "x"]

[[job]]
name = "b"
command = ["no-such-tool-i11"]

[[job]]
name = "c"
command = ["true"]
workdir = "/nonexistent/dir"
"#;

#[test]
fn check_config_warns_about_a_program_or_workdir_this_host_lacks() {
    let bin = tempfile::tempdir().expect("temp dir");
    let search_path = format!("{}:/usr/bin:/bin", bin.path().display());
    let (output, path) = check_config(HOST_LACKS, &[], &[("PATH", &search_path)]);
    assert_eq!(output.status.code(), Some(0), "warnings do not fail the check: {}", stderr(&output));
    assert_eq!(
        stderr(&output).lines().collect::<Vec<_>>(),
        vec![
            format!("{path}:3:12: warning: job `a`: program `/nonexistent/prog` does not exist on this host"),
            format!(
                "{path}:7:12: warning: job `b`: program `no-such-tool-i11` is not found in PATH ({search_path}) on this host: install it, or write its absolute path"
            ),
            format!("{path}:12:11: warning: job `c`: workdir /nonexistent/dir does not exist on this host"),
        ]
    );
    assert_eq!(stdout(&output).trim_end(), format!("{path}: ok (3 jobs), 3 warnings about this host"));

    let (output, _) = check_config(HOST_LACKS, &["--strict"], &[("PATH", &search_path)]);
    assert_eq!(output.status.code(), Some(1), "--strict fails on them: {}", stderr(&output));

    // Once the tool is installed, it is found on the PATH.
    let tool = bin.path().join("no-such-tool-i11");
    std::fs::write(&tool, "#!/bin/sh\n").expect("write tool");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (output, _) = check_config(HOST_LACKS, &[], &[("PATH", &search_path)]);
    assert!(!stderr(&output).contains("no-such-tool-i11"), "{}", stderr(&output));
}

#[test]
fn the_server_warns_at_start_about_what_the_host_lacks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), &config_text(&dir.path().join("data"), "", HOST_LACKS));
    let path = path.to_str().expect("UTF-8 path").to_string();
    let mut child = cli_command(&["serve", "--config", &path, "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oneoff serve");
    let mut announced = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut announced).expect("read");
    assert!(announced.starts_with("oneoff listening on "), "the server starts anyway: {announced:?}");
    let _ = child.kill();
    let output = child.wait_with_output().expect("wait");
    let log = stderr(&output);
    // The job lines sit after the [server] table that config_text adds: find them by content.
    let text = std::fs::read_to_string(&path).expect("read config");
    let line_of = |needle: &str| text.lines().position(|line| line.contains(needle)).expect("in the config") + 1;
    for expected in [
        format!(
            "{path}:{}:12: job `a`: program `/nonexistent/prog` does not exist on this host",
            line_of("/nonexistent/prog")
        ),
        format!(
            "{path}:{}:11: job `c`: workdir /nonexistent/dir does not exist on this host",
            line_of("/nonexistent/dir")
        ),
    ] {
        assert!(log.lines().any(|line| line.contains("WARN") && line.contains(&expected)), "{expected} not in:\n{log}");
    }
}

#[tokio::test]
async fn a_run_whose_workdir_is_missing_names_the_workdir() {
    let server =
        TestServer::start("[[job]]\nname = \"c\"\ncommand = [\"true\"]\nworkdir = \"/nonexistent/dir\"\n").await;
    let id = server.start_run("c", json!({})).await;
    let run = server.wait_final(id).await;
    assert_eq!(run["status"], "failed");
    let error = run["error"].as_str().expect("an error");
    assert!(error.starts_with("cannot start `true`: its workdir /nonexistent/dir is not a directory"), "{error}");
}

/// A multi-line `sh -c` script and arguments a shell would read otherwise.
const SCRIPT_JOB: &str = r#"
[[job]]
name = "multi"
command = ["sh", "-c", "since=\"$1\"; batch=\"$2\"\necho \"$since\" \"$batch\"", "sh", "two words", "it's", "", "\u001b[31mred", "José", "$HOME"]
"#;

#[tokio::test]
async fn status_shows_argv_that_runs_the_same_thing_when_pasted() {
    let server = TestServer::start(SCRIPT_JOB).await;
    let id = server.start_run("multi", json!({})).await;
    let run = server.wait_final(id).await;
    let argv: Vec<String> = serde_json::from_value(run["argv"].clone()).expect("argv");
    let output = server.cli(&["status", &id.to_string()]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "no raw control character: {text:?}");
    let line = text.lines().find_map(|line| line.strip_prefix("argv:")).expect("an argv line").trim();
    assert!(line.starts_with(r#"sh -c $'since="$1"; batch="$2"\necho "$since" "$batch"' sh"#), "{line}");
    // Pasted into a shell, it is the same argv, word for word.
    let printed =
        std::process::Command::new("bash").arg("-c").arg(format!("printf '%s\\0' {line}")).output().expect("run bash");
    let words: Vec<String> = String::from_utf8(printed.stdout)
        .expect("UTF-8")
        .split('\0')
        .map(str::to_string)
        .collect::<Vec<_>>()
        .split_last()
        .expect("ends with NUL")
        .1
        .to_vec();
    assert_eq!(words, argv);
    // The run page quotes it with the same rules (web/test/shell.test.js holds them).
    let (status, body) = server.get_text("/assets/shell.js").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("export function commandLine"));
    let (_, app) = server.get_text("/assets/app.js").await;
    assert!(String::from_utf8_lossy(&app).contains("commandLine(run.argv)"));
}

#[tokio::test]
async fn a_server_url_without_a_scheme_is_named_with_the_fix() {
    let server = TestServer::start("").await;
    let bare = server.url.trim_start_matches("http://").to_string();
    let output = cli_with_env(&["jobs", "--server", &bare], &[]).await;
    assert_eq!(output.status.code(), Some(2), "a usage mistake");
    assert_eq!(
        stderr(&output).trim_end(),
        format!(
            "oneoff: the server URL `{bare}` needs a scheme: write http://{bare} (or https:// where TLS is set up)"
        )
    );
}

#[tokio::test]
async fn https_to_a_plain_http_server_says_so() {
    let server = TestServer::start("").await;
    let https = server.url.replace("http://", "https://");
    let output = cli_with_env(&["jobs", "--server", &https], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let shown = stderr(&output);
    assert_eq!(
        shown.trim_end(),
        format!(
            "oneoff: cannot reach {https}/api/v1/jobs: the server does not speak TLS there (it answered in plain HTTP); try http:// instead of https://"
        )
    );
    assert!(!shown.contains("InvalidContentType"), "{shown}");
}

const SIGNED_IN_ONLY: &str = "[auth]\nanonymous = false\n";

#[tokio::test]
async fn a_bogus_token_is_told_what_a_token_looks_like_and_where_it_came_from() {
    let server = TestServer::start(SIGNED_IN_ONLY).await;
    let output = cli_with_env(&["jobs", "--server", &server.url], &[("ONEOFF_TOKEN", "bogus")]).await;
    assert_eq!(output.status.code(), Some(1));
    let shown = stderr(&output);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines[0],
        "oneoff: the Authorization header does not hold an API token: send `Authorization: Bearer oneoff_` followed by 64 hex digits; create a token on the web UI's Tokens page (once signed in) or with `oneoff token create`"
    );
    assert!(
        lines[1].starts_with("hint: the token sent is ONEOFF_TOKEN's; replace it with a valid one, or unset it"),
        "{shown}"
    );
    assert!(!shown.contains("bogus"), "a credential is never echoed: {shown}");

    // The same token from the token file: the hint names the file.
    let home = tempfile::tempdir().expect("temp home");
    let token_dir = home.path().join(".config/oneoff");
    std::fs::create_dir_all(&token_dir).expect("mkdir");
    let token_file = token_dir.join("token");
    std::fs::write(&token_file, "bogus\n").expect("write token");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut command = cli_command(&["jobs", "--server", &server.url]);
    command.env_remove("ONEOFF_TOKEN").env_remove("XDG_CONFIG_HOME").env("HOME", home.path());
    let output = tokio::process::Command::from(command).output().await.expect("run oneoff");
    assert!(
        stderr(&output).contains(&format!("hint: the token sent is the one in {}", token_file.display())),
        "{}",
        stderr(&output)
    );

    // A token with characters no token has is refused before sending, not dropped silently.
    let output = cli_with_env(&["jobs", "--server", &server.url], &[("ONEOFF_TOKEN", "tök")]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).starts_with("oneoff: the API token holds characters no token has"), "{}", stderr(&output));
}

#[tokio::test]
async fn no_identity_from_the_cli_is_told_about_tokens_not_only_sso() {
    let server = TestServer::start(SIGNED_IN_ONLY).await;
    let output = cli_with_env(&["jobs", "--server", &server.url], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let shown = stderr(&output);
    let hint = shown.lines().find(|line| line.starts_with("hint: ")).unwrap_or_else(|| panic!("a hint: {shown}"));
    for needed in
        ["sent no API token", "ONEOFF_TOKEN", "~/.config/oneoff/token", "`oneoff token create`", "Tokens page"]
    {
        assert!(hint.contains(needed), "{needed:?} missing from {hint}");
    }
}

#[tokio::test]
async fn a_bad_query_parameter_is_named_with_the_type_it_must_have() {
    let server = TestServer::start("[[job]]\nname = \"a\"\ncommand = [\"true\"]\n").await;
    let id = server.start_run("a", json!({})).await;
    server.wait_final(id).await;
    let cases = [
        ("/api/v1/runs?limit=abc", "query parameter `limit` must be a whole number, not `abc`"),
        ("/api/v1/runs?limit=-5", "query parameter `limit` must be a whole number of 0 or more, not `-5`"),
        (&*format!("/api/v1/runs/{id}/log?after=x"), "query parameter `after` must be a whole number, not `x`"),
        ("/api/v1/runs?limit=1&limit=2", "query parameter `limit` is given more than once; give it once"),
    ];
    for (path, message) in cases {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        assert_eq!(body["error"]["message"], Value::from(message), "{path}");
    }
}
