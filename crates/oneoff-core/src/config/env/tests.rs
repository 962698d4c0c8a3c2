//! Tests of settings from the environment: every setting has a variable that works, the
//! order default < file < variable < flag holds, and every mistake names its variable.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::Duration;

use crate::config::{Config, ConfigErrors, Given, Overrides};

use super::{setting_paths, setting_variables, Environment};

const JOB: &str = "[[job]]\nname = \"greet\"\ncommand = [\"echo\", \"hi\"]\n";

fn environment(variables: &[(&str, &str)]) -> Environment {
    Environment::from_variables(variables.iter().map(|(name, value)| (OsString::from(name), OsString::from(value))))
}

fn load_with(text: &str, variables: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let overrides = Overrides { environment: environment(variables), ..Overrides::default() };
    Config::from_toml("oneoff.toml", text, Path::new("/etc/oneoff"), &overrides)
}

fn errors_with(text: &str, variables: &[(&str, &str)]) -> Vec<String> {
    match load_with(text, variables) {
        Ok(_) => panic!("{variables:?} was accepted"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

type Check = fn(&Config) -> bool;

/// One valid value for every setting's variable, and what it must change.
const EVERY_SETTING: &[(&str, &str, Check)] = &[
    ("ONEOFF_SERVER__LISTEN", "0.0.0.0:9999", |c| c.server.listen.port() == 9999),
    ("ONEOFF_SERVER__DATA_DIR", "/srv/oneoff", |c| c.server.data_dir == Path::new("/srv/oneoff")),
    ("ONEOFF_SERVER__MAX_CONCURRENT_RUNS", "3", |c| c.server.max_concurrent_runs == 3),
    ("ONEOFF_SERVER__MAX_QUEUED_RUNS", "7", |c| c.server.max_queued_runs == 7),
    ("ONEOFF_SERVER__DRAIN", "45s", |c| c.server.drain == Duration::from_secs(45)),
    ("ONEOFF_SERVER__RETENTION", "30d", |c| c.server.retention == Some(Duration::from_secs(30 * 86400))),
    ("ONEOFF_SERVER__MAX_BODY_BYTES", "2097152", |c| c.server.max_body_bytes == 2_097_152),
    ("ONEOFF_SERVER__MAX_LINE_BYTES", "4096", |c| c.server.max_line_bytes == 4096),
    ("ONEOFF_SERVER__PARTIAL_LINE_FLUSH", "1s", |c| c.server.partial_line_flush == Duration::from_secs(1)),
    ("ONEOFF_SERVER__STORE_WAIT", "5m", |c| c.server.store_wait == Duration::from_secs(300)),
    ("ONEOFF_SERVER__LONG_POLL_MAX", "10s", |c| c.server.long_poll_max == Duration::from_secs(10)),
    ("ONEOFF_SERVER__PUBLIC_ORIGINS", "https://a.example.com, https://b.example.com", |c| {
        c.server.public_origins == ["https://a.example.com", "https://b.example.com"]
    }),
    ("ONEOFF_SERVER__CGROUP", "off", |c| c.server.cgroup == crate::config::CgroupSetting::Off),
    ("ONEOFF_SERVER__DATABASE", "sqlite:/srv/x.db", |c| c.server.database.to_string().contains("/srv/x.db")),
    ("ONEOFF_SERVER__REPLICA", "web-2", |c| c.server.replica.as_ref().is_some_and(|r| r.as_str() == "web-2")),
    ("ONEOFF_SERVER__REPLICA_TIMEOUT", "40s", |c| c.server.replica_timeout == Duration::from_secs(40)),
    ("ONEOFF_SERVER__DATABASE_POOL", "20", |c| c.server.database_pool == 20),
    ("ONEOFF_SERVER__DATABASE_STATEMENT_TIMEOUT", "2m", |c| {
        c.server.database_statement_timeout == Duration::from_secs(120)
    }),
    ("ONEOFF_SERVER__LOG_FORMAT", "json", |c| c.server.log_format == crate::config::LogFormat::Json),
    ("ONEOFF_SERVER__BASE_PATH", "/tools/oneoff/", |c| c.server.base_path.as_str() == "/tools/oneoff"),
    ("ONEOFF_SERVER__METRICS", "token", |c| c.server.metrics.token),
    ("ONEOFF_SERVER__METRICS_CIDRS", "10.0.0.0/8,192.168.0.0/16", |c| c.server.metrics.cidrs.len() == 2),
    ("ONEOFF_STREAMS__WS_PING_INTERVAL", "7s", |c| c.streams.ws_ping_interval == Duration::from_secs(7)),
    ("ONEOFF_STREAMS__SSE_PING_INTERVAL", "8s", |c| c.streams.sse_ping_interval == Duration::from_secs(8)),
    ("ONEOFF_STREAMS__MAX_MESSAGE_BYTES", "131072", |c| c.streams.max_message_bytes == 131_072),
    ("ONEOFF_STREAMS__MAX_VIEWER_BUFFER_BYTES", "8388608", |c| c.streams.max_viewer_buffer_bytes == 8_388_608),
    ("ONEOFF_STREAMS__VIEWER_SEND_TIMEOUT", "9s", |c| c.streams.viewer_send_timeout == Duration::from_secs(9)),
    ("ONEOFF_STREAMS__MAX_VIEWERS_PER_RUN", "11", |c| c.streams.max_viewers_per_run == 11),
    ("ONEOFF_STREAMS__MAX_CONNECTIONS", "12", |c| c.streams.max_connections == 12),
    ("ONEOFF_STREAMS__LIVE_CACHE_BYTES", "65536", |c| c.streams.live_cache_bytes == 65536),
    ("ONEOFF_DEBUG__ECHO", "true", |c| c.debug.echo),
    ("ONEOFF_DEBUG__REDACT_HEADERS", r#"["x-api-key", "x-secret"]"#, |c| {
        c.debug.redact_headers == ["x-api-key", "x-secret"]
    }),
    ("ONEOFF_AUTH__ANONYMOUS", "false", |c| !c.auth.anonymous),
    ("ONEOFF_AUTH__ADMINS__USERS", "alice,bob", |c| c.auth.admins.users == ["alice", "bob"]),
    ("ONEOFF_AUTH__ADMINS__GROUPS", "ops", |c| c.auth.admins.groups == ["ops"]),
    ("ONEOFF_AUTH__TRUSTED_HEADERS__TRUSTED_CIDRS", "10.0.0.0/8,192.168.0.0/16", |c| {
        c.auth.trusted_headers.as_ref().is_some_and(|t| t.trusted_cidrs.len() == 2)
    }),
    ("ONEOFF_AUTH__TRUSTED_HEADERS__USER_HEADER", "X-Who", |c| {
        c.auth.trusted_headers.as_ref().is_some_and(|t| t.user_header.eq_ignore_ascii_case("x-who"))
    }),
    ("ONEOFF_AUTH__TRUSTED_HEADERS__EMAIL_HEADER", "X-Mail", |c| {
        c.auth.trusted_headers.as_ref().is_some_and(|t| t.email_header.eq_ignore_ascii_case("x-mail"))
    }),
    ("ONEOFF_AUTH__TRUSTED_HEADERS__GROUPS_HEADER", "X-Teams", |c| {
        c.auth.trusted_headers.as_ref().is_some_and(|t| t.groups_header.eq_ignore_ascii_case("x-teams"))
    }),
    ("ONEOFF_AUTH__STREAM_TICKET_TTL", "20s", |c| c.auth.stream_tickets.ttl == Duration::from_secs(20)),
    ("ONEOFF_AUTH__MAX_STREAM_TICKETS", "13", |c| c.auth.stream_tickets.max_outstanding == 13),
    ("ONEOFF_AUTH__MAX_STREAM_TICKETS_PER_USER", "5", |c| c.auth.stream_tickets.max_per_principal == 5),
    ("ONEOFF_AUDIT__KEY_FILE", "/run/secrets/audit.key", |c| {
        c.audit.key_file.as_deref() == Some(Path::new("/run/secrets/audit.key"))
    }),
    ("ONEOFF_AUDIT__CHECKPOINT_INTERVAL", "2h", |c| c.audit.checkpoint_interval == Duration::from_secs(7200)),
    ("ONEOFF_AUDIT__DENIAL_WINDOW", "5m", |c| c.audit.denial_window == Duration::from_secs(300)),
];

/// trusted_headers needs its CIDRs; every other setting stands alone.
fn needed_with(variable: &str) -> Vec<(&'static str, &'static str)> {
    if variable.starts_with("ONEOFF_AUTH__TRUSTED_HEADERS__") && !variable.ends_with("TRUSTED_CIDRS") {
        return vec![("ONEOFF_AUTH__TRUSTED_HEADERS__TRUSTED_CIDRS", "10.0.0.0/8")];
    }
    Vec::new()
}

#[test]
fn every_setting_of_the_file_can_be_set_by_its_variable_over_an_empty_file_and_over_a_full_one() {
    let listed: BTreeSet<String> = setting_variables().into_iter().map(|(variable, _)| variable).collect();
    let tested: BTreeSet<String> = EVERY_SETTING.iter().map(|(variable, _, _)| variable.to_string()).collect();
    assert_eq!(listed, tested, "every setting's variable is tested here");
    // The file sets every one of these keys already, with another value.
    let full = r#"
[server]
listen = "127.0.0.1:1"
data_dir = "/var/lib/x"
max_concurrent_runs = 1
max_queued_runs = 1
drain = "1s"
retention = "1d"
max_body_bytes = 1024
max_line_bytes = 2048
partial_line_flush = "300ms"
store_wait = "1s"
long_poll_max = "1s"
public_origins = ["https://old.example.com"]
cgroup = "auto"
database = "sqlite:/var/old.db"
replica = "old"
replica_timeout = "2s"
database_pool = 1
database_statement_timeout = "1s"
log_format = "text"
base_path = "/elsewhere"
metrics = "open"
metrics_cidrs = ["127.0.0.0/8"]

[streams]
ws_ping_interval = "1s"
sse_ping_interval = "1s"
max_message_bytes = 65536
max_viewer_buffer_bytes = 4194304
viewer_send_timeout = "1s"
max_viewers_per_run = 1
max_connections = 1
live_cache_bytes = 1024

[debug]
echo = false
redact_headers = ["x-old"]

[auth]
anonymous = true
stream_ticket_ttl = "1s"
max_stream_tickets = 1
max_stream_tickets_per_user = 1

[auth.admins]
users = ["old"]
groups = ["old"]

[auth.trusted_headers]
trusted_cidrs = ["127.0.0.1/32"]
user_header = "X-Old-User"
email_header = "X-Old-Email"
groups_header = "X-Old-Groups"

[audit]
key_file = "/old.key"
checkpoint_interval = "1h"
denial_window = "1m"
"#;
    for file in [JOB.to_string(), format!("{full}\n{JOB}")] {
        for (variable, value, check) in EVERY_SETTING {
            let mut variables = needed_with(variable);
            variables.push((variable, value));
            let config = load_with(&file, &variables).unwrap_or_else(|errors| panic!("{variable}: {errors}"));
            assert!(check(&config), "{variable}={value} did not take effect (file: {} bytes)", file.len());
        }
    }
}

/// The keys serde names in "unknown field `zz`, expected one of `a`, `b`" for a table.
fn keys_of(table: &str) -> Vec<String> {
    let text =
        if table.is_empty() { "zz_not_a_key = 1\n".to_string() } else { format!("[{table}]\nzz_not_a_key = 1\n") };
    let message = load_with(&text, &[]).unwrap_err().to_string();
    let expected = message.split_once("expected").map(|(_, rest)| rest).unwrap_or_default();
    expected.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

#[test]
fn the_settings_list_holds_every_key_the_parser_accepts_so_a_new_key_gets_its_variable() {
    let file_only = [vec!["job"], vec!["auth", "jwt"]];
    let tables = [vec!["auth", "admins"], vec!["auth", "trusted_headers"]];
    let mut parser_leaves: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(table) = pending.pop() {
        let keys = keys_of(&table.join("."));
        assert!(!keys.is_empty(), "no keys listed for [{}]", table.join("."));
        for key in keys {
            let mut path = table.clone();
            path.push(key);
            let as_str: Vec<&str> = path.iter().map(String::as_str).collect();
            if file_only.contains(&as_str) {
                continue;
            }
            if path.len() == 1 || tables.contains(&as_str) {
                pending.push(path);
            } else {
                parser_leaves.insert(path);
            }
        }
    }
    let listed: BTreeSet<Vec<String>> =
        setting_paths().into_iter().map(|path| path.into_iter().map(str::to_string).collect()).collect();
    assert_eq!(parser_leaves, listed, "the parser's keys and env.rs SETTINGS differ: add the new key's line there");
}

#[test]
fn a_variable_wins_over_the_file_and_a_flag_wins_over_the_variable() {
    let file = format!("[server]\nmax_body_bytes = 2048\nlisten = \"127.0.0.1:1000\"\n{JOB}");
    let default = load_with(JOB, &[]).unwrap();
    assert_eq!(default.server.max_body_bytes, 1024 * 1024);
    let from_file = load_with(&file, &[]).unwrap();
    assert_eq!(from_file.server.max_body_bytes, 2048);
    let variables = [("ONEOFF_SERVER__MAX_BODY_BYTES", "4096"), ("ONEOFF_SERVER__LISTEN", "127.0.0.1:2000")];
    let from_env = load_with(&file, &variables).unwrap();
    assert_eq!(from_env.server.max_body_bytes, 4096);
    assert_eq!(from_env.server.listen.port(), 2000);
    let overrides = Overrides {
        listen: Some(Given::new("127.0.0.1:3000", "--listen")),
        environment: environment(&variables),
        ..Overrides::default()
    };
    let from_flag = Config::from_toml("oneoff.toml", &file, Path::new("/etc"), &overrides).unwrap();
    assert_eq!(from_flag.server.listen.port(), 3000);
    assert_eq!(from_flag.server.max_body_bytes, 4096);
}

#[test]
fn a_value_is_read_as_if_written_in_the_file_so_a_relative_path_is_the_files_directorys() {
    let config =
        load_with(JOB, &[("ONEOFF_SERVER__DATA_DIR", "state"), ("ONEOFF_AUDIT__KEY_FILE", "audit.key")]).unwrap();
    assert_eq!(config.server.data_dir, Path::new("/etc/oneoff/state"));
    assert_eq!(config.audit.key_file.as_deref(), Some(Path::new("/etc/oneoff/audit.key")));
}

#[test]
fn a_wrong_value_is_reported_with_its_variable_what_is_wrong_and_the_fix() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "ONEOFF_SERVER__MAX_BODY_BYTES",
            "lots",
            "ONEOFF_SERVER__MAX_BODY_BYTES: `lots` is not a whole number: write digits",
        ),
        ("ONEOFF_SERVER__MAX_BODY_BYTES", "-5", "ONEOFF_SERVER__MAX_BODY_BYTES: -5 is out of range"),
        ("ONEOFF_SERVER__MAX_CONCURRENT_RUNS", "4294967296", "from 0 to 4294967295"),
        ("ONEOFF_SERVER__MAX_CONCURRENT_RUNS", "1.5", "`1.5` is not a whole number"),
        // In range for the type, out of range for the setting: the validation's own message.
        ("ONEOFF_SERVER__MAX_BODY_BYTES", "12", "ONEOFF_SERVER__MAX_BODY_BYTES: max_body_bytes must be at least 1024"),
        (
            "ONEOFF_SERVER__MAX_CONCURRENT_RUNS",
            "0",
            "ONEOFF_SERVER__MAX_CONCURRENT_RUNS: max_concurrent_runs must be at least 1",
        ),
        ("ONEOFF_SERVER__DRAIN", "soon", "ONEOFF_SERVER__DRAIN: `soon` is not a duration like 30s"),
        ("ONEOFF_SERVER__LISTEN", "everywhere", "ONEOFF_SERVER__LISTEN: listen address `everywhere` is not IP:PORT"),
        (
            "ONEOFF_SERVER__LOG_FORMAT",
            "jsn",
            "ONEOFF_SERVER__LOG_FORMAT: log_format `jsn` must be \"text\" or \"json\": did you mean `json`?",
        ),
        ("ONEOFF_SERVER__DATABASE", "mysql://x", "ONEOFF_SERVER__DATABASE: `mysql:` is not a database oneoff can use"),
        ("ONEOFF_DEBUG__ECHO", "yes", "ONEOFF_DEBUG__ECHO: `yes` is not a boolean: write true or false"),
        ("ONEOFF_SERVER__PUBLIC_ORIGINS", "[1, 2]", "ONEOFF_SERVER__PUBLIC_ORIGINS: `[1, 2]` is not a list of strings"),
        ("ONEOFF_SERVER__PUBLIC_ORIGINS", "[\"https://a", "is not a TOML array"),
        (
            "ONEOFF_SERVER__PUBLIC_ORIGINS",
            "example.com",
            "ONEOFF_SERVER__PUBLIC_ORIGINS: public origin `example.com` must look like https://host[:port]",
        ),
        (
            "ONEOFF_SERVER__LISTEN",
            "\"127.0.0.1:1",
            "ONEOFF_SERVER__LISTEN: `\"127.0.0.1:1` starts with a quote but is not a TOML string",
        ),
        (
            "ONEOFF_AUTH__TRUSTED_HEADERS__USER_HEADER",
            "X-User",
            "ONEOFF_AUTH__TRUSTED_HEADERS__USER_HEADER: missing field `trusted_cidrs`",
        ),
    ];
    for (variable, value, expected) in cases {
        let errors = errors_with(JOB, &[(variable, value)]);
        assert!(errors.iter().any(|error| error.contains(expected)), "{variable}={value}: {errors:?}");
        assert!(errors.iter().all(|error| !error.starts_with("oneoff.toml")), "{variable}={value}: {errors:?}");
    }
}

#[test]
fn an_empty_variable_counts_as_unset_as_for_the_single_variables() {
    let file = format!("[server]\nmax_body_bytes = 2048\n{JOB}");
    let config = load_with(&file, &[("ONEOFF_SERVER__MAX_BODY_BYTES", ""), ("ONEOFF_SERVER__DRAIN", "  ")]).unwrap();
    assert_eq!(config.server.max_body_bytes, 2048);
    assert_eq!(config.server.drain, Duration::from_secs(30));
}

#[test]
fn a_value_that_is_not_utf8_is_refused_by_name() {
    let overrides = Overrides {
        environment: Environment::from_variables([(
            OsString::from("ONEOFF_SERVER__REPLICA"),
            OsString::from_vec(b"web\xff1".to_vec()),
        )]),
        ..Overrides::default()
    };
    let errors = Config::from_toml("oneoff.toml", JOB, Path::new("/"), &overrides).unwrap_err().to_string();
    assert!(errors.contains("ONEOFF_SERVER__REPLICA: the value is not UTF-8 text"), "{errors}");
    // A name that is not UTF-8 and looks like a setting's is refused too; another is left alone.
    let overrides = Overrides {
        environment: Environment::from_variables([
            (OsString::from_vec(b"ONEOFF_SERVER__DR\xffIN".to_vec()), OsString::from("1s")),
            (OsString::from_vec(b"ONEOFF_PR\xffXY".to_vec()), OsString::from("1s")),
        ]),
        ..Overrides::default()
    };
    let errors = Config::from_toml("oneoff.toml", JOB, Path::new("/"), &overrides).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(errors.to_string().contains("name is not UTF-8"), "{errors}");
}

#[test]
fn a_value_cannot_break_out_of_its_setting() {
    // A newline and TOML in the value stay inside the one string.
    let errors = errors_with(JOB, &[("ONEOFF_SERVER__REPLICA", "web\n[debug]\necho = true")]);
    assert!(errors.iter().all(|error| error.starts_with("ONEOFF_SERVER__REPLICA: replica name")), "{errors:?}");
    let config = load_with(JOB, &[("ONEOFF_SERVER__CGROUP", "off\"\necho = true\n#")]);
    assert!(config.unwrap_err().to_string().starts_with("ONEOFF_SERVER__CGROUP: cgroup"));
    let injected = "https://a.example.com\"]\n[debug]\necho = true\n#";
    if let Ok(config) = load_with(JOB, &[("ONEOFF_SERVER__PUBLIC_ORIGINS", injected)]) {
        assert!(!config.debug.echo);
        assert_eq!(config.server.public_origins.len(), 1);
    }
}

#[test]
fn a_number_may_have_toml_underscores() {
    let config = load_with(JOB, &[("ONEOFF_SERVER__MAX_BODY_BYTES", "2_097_152")]).unwrap();
    assert_eq!(config.server.max_body_bytes, 2_097_152);
}

#[test]
fn a_quoted_value_is_read_as_a_toml_string_with_its_escapes() {
    let config = load_with(JOB, &[("ONEOFF_SERVER__REPLICA", "\"web\\u002d3\"")]).unwrap();
    assert_eq!(config.server.replica.unwrap().as_str(), "web-3");
}

#[test]
fn a_misspelt_variable_is_refused_with_the_one_it_likely_meant() {
    let cases: &[(&str, &str)] = &[
        ("ONEOFF_SERVER__MAX_BODY_BYTE", "no such setting: did you mean ONEOFF_SERVER__MAX_BODY_BYTES?"),
        ("ONEOFF_SEVER__DRAIN", "did you mean ONEOFF_SERVER__DRAIN?"),
        ("ONEOFF_SERVER_DRAIN", "no such variable: did you mean ONEOFF_SERVER__DRAIN?"),
        ("ONEOFF_MAX_CONCURRENT_RUNS", "did you mean ONEOFF_SERVER__MAX_CONCURRENT_RUNS?"),
        ("ONEOFF_AUTH__TRUSTED_HEADERS_USER_HEADER", "did you mean ONEOFF_AUTH__TRUSTED_HEADERS__USER_HEADER?"),
        ("ONEOFF_server__drain", "setting variables are upper case: write ONEOFF_SERVER__DRAIN"),
        ("ONEOFF_NOPE__NOTHING", "no such setting: a setting's variable is ONEOFF_<SECTION>__<KEY>"),
        ("ONEOFF_JOB__NAME", "[[job]] comes only from the config file"),
        ("ONEOFF_AUTH__JWT", "[[auth.jwt]] comes only from the config file"),
        ("ONEOFF_AUTH__JWT__ISSUER", "[[auth.jwt]] comes only from the config file"),
    ];
    for (variable, expected) in cases {
        let errors = errors_with(JOB, &[(variable, "1s")]);
        assert_eq!(errors.len(), 1, "{variable}: {errors:?}");
        assert!(errors[0].starts_with(&format!("{variable}: ")), "{errors:?}");
        assert!(errors[0].contains(expected), "{variable}: {errors:?}");
    }
}

#[test]
fn the_variables_oneoff_reads_otherwise_and_unrelated_ones_are_left_alone() {
    let variables = [
        ("ONEOFF_SERVER", "http://127.0.0.1:8080"),
        ("ONEOFF_TOKEN", "abc"),
        ("ONEOFF_CONFIG", "/etc/oneoff.toml"),
        ("ONEOFF_LOG", "debug"),
        ("ONEOFF_AUDIT_KEY", "k"),
        ("ONEOFF_RUN_ID", "3"),
        ("ONEOFF_JOB", "greet"),
        ("ONEOFF_PARAM_DRAIN", "x"),
        ("ONEOFF_PARAM_SERVER_DRAIN", "x"),
        ("ONEOFF_TEST_DATABASE", "postgres"),
        ("ONEOFF_BENCH_ROUNDS", "3"),
        ("ONEOFF_SERVER_URL", "http://x"),
        ("ONEOFF_LISTEN", "127.0.0.1:1"),
    ];
    load_with(JOB, &variables).unwrap();
}

#[test]
fn a_single_variable_and_the_settings_variable_must_agree() {
    let errors = errors_with(JOB, &[("ONEOFF_LISTEN", "127.0.0.1:1"), ("ONEOFF_SERVER__LISTEN", "127.0.0.1:2")]);
    assert_eq!(errors, ["ONEOFF_SERVER__LISTEN: ONEOFF_LISTEN sets listen too, to another value: unset one of them"]);
    load_with(JOB, &[("ONEOFF_LISTEN", "127.0.0.1:1"), ("ONEOFF_SERVER__LISTEN", "127.0.0.1:1")]).unwrap();
}

#[test]
fn the_files_own_errors_keep_their_line_and_column_around_inserted_settings() {
    let file = "[server] # the server\nmax_body_bytes = 1\ndrain = \"x\"\n\n[streams]\nmax_message_bytes = 5\n";
    let errors = errors_with(
        &format!("{file}{JOB}"),
        &[
            ("ONEOFF_SERVER__MAX_BODY_BYTES", "4096"),
            ("ONEOFF_SERVER__RETENTION", "1d"),
            ("ONEOFF_STREAMS__WS_PING_INTERVAL", "x"),
        ],
    );
    assert!(
        errors
            .contains(&"oneoff.toml:3:9: `x` is not a duration like 30s, 10m or 2h (expected number at 0)".to_string()),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|error| error.starts_with("oneoff.toml:6:21: max_message_bytes must be at least")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|error| error.starts_with("ONEOFF_STREAMS__WS_PING_INTERVAL: `x` is not a duration")),
        "{errors:?}"
    );
    // The file's own max_body_bytes = 1 is replaced, so it is no error any more.
    assert!(errors.iter().all(|error| !error.contains("max_body_bytes")), "{errors:?}");
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[test]
fn a_table_the_file_writes_inline_cannot_take_a_variable_and_says_how_to_write_it() {
    let file = format!("server = {{ drain = \"1s\" }}\n{JOB}");
    let errors = errors_with(&file, &[("ONEOFF_SERVER__DRAIN", "2s")]);
    assert_eq!(
        errors,
        ["ONEOFF_SERVER__DRAIN: the config file writes [server] as an inline table; write it as a [server] section so that a variable can set its keys"]
    );
    let file = format!("server.drain = \"1s\"\n{JOB}");
    let errors = errors_with(&file, &[("ONEOFF_SERVER__DRAIN", "2s")]);
    assert!(errors[0].contains("writes [server] with dotted keys; write it as a [server] section"), "{errors:?}");
    // A table the file knows only through its sub-table gets its own header.
    let file = format!("[auth.admins]\nusers = [\"a\"]\n{JOB}");
    let config = load_with(&file, &[("ONEOFF_AUTH__ANONYMOUS", "false")]).unwrap();
    assert!(!config.auth.anonymous);
    assert_eq!(config.auth.admins.users, ["a"]);
}

#[test]
fn debug_shows_the_names_never_the_values() {
    let shown = format!("{:?}", environment(&[("ONEOFF_SERVER__DATABASE", "postgres://u:hunter2@db/x")]));
    assert!(shown.contains("ONEOFF_SERVER__DATABASE") && !shown.contains("hunter2"), "{shown}");
}
