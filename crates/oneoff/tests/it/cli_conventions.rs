//! The CLI's conventions (docs/cli.md): global flags before or after the subcommand,
//! `--token`, `-o json` on every command that prints data with errors on stderr only, the
//! documented exit codes, and completions and man pages generated from the parser, held by
//! snapshots of `--help` and of the completion scripts.

use std::path::PathBuf;
use std::process::Output;

use serde_json::{json, Value};

use crate::support::{cli_command, stderr, stdout, TestServer};

const JOBS: &str = r#"
[[job]]
name = "greet"
command = ["sh", "-c", "echo hello; echo to-stderr >&2"]

[[job]]
name = "exit7"
command = ["sh", "-c", "exit 7"]

[[job]]
name = "slow"
command = ["sh", "-c", "echo tick; sleep 600"]
"#;

/// Every command, for the `--help` snapshot.
const COMMANDS: &[&[&str]] = &[
    &[],
    &["jobs"],
    &["run"],
    &["runs"],
    &["status"],
    &["logs"],
    &["cancel"],
    &["check-config"],
    &["serve"],
    &["token"],
    &["token", "create"],
    &["token", "list"],
    &["token", "revoke"],
    &["audit"],
    &["whoami"],
    &["replicas"],
    &["doctor"],
    &["migrate-store"],
    &["completions"],
    &["man"],
];

/// The CLI with no environment at all, so that no variable's value shows in `--help`.
fn bare(args: &[&str]) -> Output {
    let output = cli_command(args).env_clear().output().expect("run oneoff");
    assert!(output.status.success(), "oneoff {args:?}: {}", stderr(&output));
    output
}

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name)
}

/// `actual` must be the committed snapshot; `ONEOFF_UPDATE_SNAPSHOTS=1` writes it instead.
fn assert_snapshot(name: &str, actual: &str) {
    let path = snapshot_path(name);
    if std::env::var_os("ONEOFF_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let line = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(0) + 1;
        panic!(
            "{} differs from what the CLI prints now (first at line {line}); if the change is meant, \
             run the test with ONEOFF_UPDATE_SNAPSHOTS=1 and commit the file",
            path.display()
        );
    }
}

#[test]
fn help_of_every_command_matches_its_snapshot() {
    let mut all = String::new();
    for command in COMMANDS {
        let args = [command, &["--help"][..]].concat();
        all.push_str(&format!("$ oneoff {}\n", args.join(" ")));
        all.push_str(&stdout(&bare(&args)));
        all.push('\n');
    }
    assert_snapshot("help.txt", &all);
}

#[test]
fn completion_scripts_match_their_snapshots() {
    for shell in ["bash", "zsh", "fish"] {
        assert_snapshot(&format!("completions.{shell}"), &stdout(&bare(&["completions", shell])));
    }
    let output = cli_command(&["completions", "tcsh"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "an unknown shell is a usage error");
    assert!(stderr(&output).contains("[possible values: bash, elvish, fish, powershell, zsh]"), "{}", stderr(&output));
}

/// What bash offers after `words` (the last one being completed), with the generated script.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let script = stdout(&bare(&["completions", "bash"]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oneoff.bash");
    std::fs::write(&file, script).unwrap();
    let quoted: Vec<String> = words.iter().map(|word| format!("'{word}'")).collect();
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _oneoff oneoff '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        quoted.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let output = std::process::Command::new("bash").arg("-c").arg(program).output().expect("bash runs");
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output).lines().map(str::to_string).collect()
}

#[test]
fn bash_completes_commands_and_flags_with_the_generated_script() {
    assert_eq!(bash_completes(&["oneoff", "jo"]), ["jobs"]);
    assert!(bash_completes(&["oneoff", "run", "--fo"]).contains(&"--follow".to_string()));
    // A global flag, after the subcommand as well as before it.
    assert!(bash_completes(&["oneoff", "jobs", "--tok"]).contains(&"--token".to_string()));
    assert!(bash_completes(&["oneoff", "--ser"]).contains(&"--server".to_string()));
    assert_eq!(bash_completes(&["oneoff", "completions", "fi"]), ["fish"]);
}

#[test]
fn zsh_and_fish_read_their_completion_scripts() {
    for (shell, check) in [("zsh", &["-n"][..]), ("fish", &["--no-execute"])] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("oneoff");
        std::fs::write(&file, stdout(&bare(&["completions", shell]))).unwrap();
        let output = std::process::Command::new(shell)
            .args(check)
            .arg(&file)
            .output()
            .unwrap_or_else(|error| panic!("{shell} is needed (scripts/test installs it): {error}"));
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
    }
}

/// `roff` rendered for a terminal by groff, as `man` would.
fn render(roff: &[u8]) -> String {
    use std::io::Write;
    let mut groff = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff is needed (scripts/test installs it)");
    groff.stdin.take().unwrap().write_all(roff).unwrap();
    let output = groff.wait_with_output().unwrap();
    assert!(output.status.success() && output.stderr.is_empty(), "groff: {}", stderr(&output));
    stdout(&output)
}

#[test]
fn the_man_pages_render_and_name_every_command() {
    let page = render(&bare(&["man"]).stdout);
    assert!(page.contains("oneoff - Run predefined one-off jobs"), "{page}");
    for command in COMMANDS.iter().filter(|command| command.len() == 1) {
        assert!(page.contains(&format!("oneoff-{}(1)", command[0])), "{} missing:\n{page}", command[0]);
    }
    assert!(page.contains("Exit status: 0 done"), "{page}");

    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    bare(&["man", "--dir", pages.to_str().unwrap()]);
    let run = render(&std::fs::read(pages.join("oneoff-run.1")).unwrap());
    assert!(run.contains("oneoff-run") && run.contains("--follow"), "{run}");
    let create = render(&std::fs::read(pages.join("oneoff-token-create.1")).unwrap());
    assert!(create.contains("--expires"), "{create}");
}

#[tokio::test]
async fn global_flags_work_before_and_after_the_subcommand() {
    let server = TestServer::start(JOBS).await;
    let mut outputs = Vec::new();
    for args in [
        &["--server", &server.url, "jobs", "-o", "json"][..],
        &["jobs", "--server", &server.url, "--output", "json"],
        &["-o", "json", "jobs", "--server", &server.url],
        &["--json", "--server", &server.url, "jobs"],
        &["jobs", "--json", "--server", &server.url],
    ] {
        // No ONEOFF_SERVER: only the flag can name the server.
        let output = tokio::process::Command::from(cli_command(args)).output().await.unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let jobs: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{args:?}: JSON"));
        outputs.push(jobs);
    }
    assert!(outputs.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(outputs[0]["jobs"][0]["name"], "greet");
    // Two levels down.
    let output = server.cli(&["--output", "json", "token", "list"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice::<Value>(&output.stdout).expect("JSON");
    // `--json` and `--output text` say different things.
    let output = server.cli(&["jobs", "--json", "--output", "text"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("'--json' cannot be used with '--output <FORMAT>'"), "{}", stderr(&output));
}

#[tokio::test]
async fn output_json_prints_only_json_on_stdout_for_every_command_that_prints_data_and_errors_only_on_stderr() {
    let server = TestServer::start(JOBS).await;
    let json_of = |output: &Output, what: &str| -> Value {
        assert!(output.status.success(), "{what}: {}", stderr(output));
        assert_eq!(stderr(output), "", "{what}: nothing but data, and on stdout");
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{what}: {}", stdout(output)))
    };
    let run = json_of(&server.cli(&["-o", "json", "run", "greet"]).await, "run");
    let id = run["id"].as_i64().unwrap().to_string();
    server.wait_final(run["id"].as_i64().unwrap()).await;
    json_of(&server.cli(&["-o", "json", "jobs"]).await, "jobs");
    json_of(&server.cli(&["-o", "json", "runs"]).await, "runs");
    json_of(&server.cli(&["-o", "json", "status", &id]).await, "status");
    json_of(&server.cli(&["-o", "json", "whoami"]).await, "whoami");
    json_of(&server.cli(&["-o", "json", "replicas"]).await, "replicas");
    json_of(&server.cli(&["-o", "json", "audit"]).await, "audit");
    json_of(&server.cli(&["-o", "json", "audit", "verify"]).await, "audit verify");
    let token = json_of(&server.cli(&["-o", "json", "token", "create", "--name", "ci"]).await, "token create");
    json_of(&server.cli(&["-o", "json", "token", "list"]).await, "token list");
    let token_id = token["info"]["id"].as_i64().unwrap().to_string();
    json_of(&server.cli(&["-o", "json", "token", "revoke", &token_id]).await, "token revoke");
    let slow = json_of(&server.cli(&["-o", "json", "run", "slow"]).await, "run slow");
    let slow_id = slow["id"].as_i64().unwrap();
    server.wait_status(slow_id, |status| status == "running").await;
    json_of(&server.cli(&["-o", "json", "cancel", &slow_id.to_string()]).await, "cancel");

    // A log: one JSON entry per line; the job's stderr is data too, so it stays on stdout.
    let output = server.cli(&["-o", "json", "logs", &id]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let entries: Vec<Value> = stdout(&output).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(entries.len(), 2, "{entries:?}");

    // A failure: nothing on stdout, the message on stderr, in text and in JSON mode alike.
    for args in [&["-o", "json", "status", "999999"][..], &["status", "999999"], &["run", "nope", "-o", "json"]] {
        let output = server.cli(args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&output), "", "{args:?}");
        assert!(stderr(&output).starts_with("oneoff: "), "{args:?}: {}", stderr(&output));
    }
}

#[tokio::test]
async fn exit_codes_are_the_documented_ones() {
    let server = TestServer::start(JOBS).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let nowhere = format!("http://{closed}");
    let slow = server.start_run("slow", json!({})).await;
    server.wait_status(slow, |status| status == "running").await;
    let finished = server.start_run("greet", json!({})).await;
    server.wait_final(finished).await;
    let finished = finished.to_string();
    // (arguments, exit code), in the order of docs/cli.md's table.
    let cases: &[(&[&str], i32)] = &[
        (&["jobs"], 0),
        (&["cancel", &slow.to_string()], 0),
        (&["jobs", "--server", &nowhere], 1),
        (&["cancel", &finished], 1),
        (&["jobs", "--no-such-flag"], 2),
        (&["run"], 2),
        (&["run", "nope"], 2),
        (&["status", "999999"], 2),
        (&["jobs", "--server", "127.0.0.1:8080"], 2),
        (&["run", "greet", "-f"], 0),
        (&["run", "exit7", "-f"], 7),
        (&["run", "nope", "-f"], 125),
        (&["run", "greet", "-f", "--server", &nowhere], 125),
    ];
    for (args, code) in cases {
        let output = server.cli(args).await;
        assert_eq!(output.status.code(), Some(*code), "oneoff {args:?}: {}", stderr(&output));
        if *code == 2 || *code == 125 || (*code == 1) {
            assert!(
                stderr(&output).contains("error") || stderr(&output).starts_with("oneoff: "),
                "{args:?}: {}",
                stderr(&output)
            );
        }
    }
}

const AUTH: &str = r#"
[auth]
anonymous = false
admins = { users = ["root"] }

[auth.trusted_headers]
trusted_cidrs = ["127.0.0.1/32"]

[[job]]
name = "greet"
command = ["echo", "hi"]
"#;

#[tokio::test]
async fn the_token_flag_is_sent_wins_over_the_variable_is_warned_about_and_never_echoed() {
    let server = TestServer::start(AUTH).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/tokens", server.url))
        .header("x-forwarded-user", "root")
        .json(&json!({ "name": "cli" }))
        .send()
        .await
        .unwrap();
    let created: Value = response.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let no_token_file = tempfile::tempdir().unwrap();
    let cli = |args: &[&str], variable: Option<&str>| {
        let mut command = cli_command(args);
        command.env("ONEOFF_SERVER", &server.url).env("XDG_CONFIG_HOME", no_token_file.path());
        match variable {
            Some(value) => command.env("ONEOFF_TOKEN", value),
            None => command.env_remove("ONEOFF_TOKEN"),
        };
        async move { tokio::process::Command::from(command).output().await.unwrap() }
    };
    for output in [
        cli(&["whoami", "--token", &token], None).await,
        cli(&["--token", &token, "whoami"], None).await,
        cli(&["--token", &token, "whoami"], Some("not-the-token-0000")).await,
    ] {
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(stdout(&output).contains("root"), "{}", stdout(&output));
        assert!(
            stderr(&output).contains("warning: --token is visible to every user of this host (ps)"),
            "{}",
            stderr(&output)
        );
        assert!(!stdout(&output).contains(&token) && !stderr(&output).contains(&token));
    }
    // The variable alone: no warning.
    let output = cli(&["whoami"], Some(&token)).await;
    assert!(output.status.success() && stderr(&output).is_empty(), "{}", stderr(&output));
    // A refused flag: the hint names it, and never shows it.
    let wrong = "oneoff_wrong_token_value_1234";
    let output = cli(&["whoami", "--token", wrong], None).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("the token sent is --token's"), "{}", stderr(&output));
    assert!(!stderr(&output).contains(wrong), "{}", stderr(&output));
    // Help shows neither the variable's value.
    let output = cli(&["whoami", "--help"], Some(&token)).await;
    assert!(output.status.success());
    assert!(stdout(&output).contains("[env: ONEOFF_TOKEN]") && !stdout(&output).contains(&token));
}
