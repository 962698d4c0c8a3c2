//! Tests of config validation: every error names its line and column.

use std::path::Path;

use super::*;
use crate::params::{ParamValue, ResolvedParams};
use crate::run::RunId;
use crate::store_url::{ReplicaName, StoreUrl};

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml("jobs.toml", text, Path::new("/etc/oneoff"), &Overrides::default())
}

fn errors(text: &str) -> Vec<String> {
    load(text).unwrap_err().0.iter().map(ToString::to_string).collect()
}

#[test]
fn the_issue_example_loads() {
    let config = load(
        r#"
[server]
listen = "127.0.0.1:8080"
data_dir = "./data"

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
"#,
    )
    .unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.server.data_dir, Path::new("/etc/oneoff/./data"));
    let job = config.catalog.get("greet").unwrap();
    assert_eq!(job.timeout, Some(Duration::from_secs(600)));
    assert_eq!(job.max_concurrent, Some(2));
    let params = ResolvedParams::from_values(vec![("name".into(), ParamValue::Text("$(id); rm -rf /".into()))]);
    let launch = job.launch(RunId(7), &params);
    assert_eq!(launch.argv, vec!["echo", "hello", "$(id); rm -rf /"]);
    assert!(launch.env.contains(&("ONEOFF_PARAM_NAME".into(), "$(id); rm -rf /".into())));
    assert!(launch.env.contains(&("ONEOFF_RUN_ID".into(), "7".into())));
}

#[test]
fn syntax_errors_have_line_and_column() {
    assert_eq!(errors("[server]\nlisten = \n"), vec!["jobs.toml:2:10: invalid string; expected `\"`, `'`"]);
}

#[test]
fn unknown_keys_are_rejected() {
    let shown = errors("[[job]]\nname = \"a\"\ncommand = [\"true\"]\ntimout = \"1m\"\n");
    assert_eq!(shown.len(), 1);
    assert!(shown[0].starts_with("jobs.toml:4:1: unknown field `timout`"), "{shown:?}");
}

#[test]
fn semantic_errors_are_all_reported_with_positions() {
    let shown = errors(
        r#"[[job]]
name = "a"
command = ["echo", "{nope}"]

[[job]]
name = "a"
command = ["true"]

[[job]]
name = "b"
command = ["echo", "{token}"]
timeout = "soon"
[[job.param]]
name = "token"
type = "secret"
[[job.param]]
name = "re"
pattern = "[a-"
[[job.param]]
name = "kind"
type = "colour"
"#,
    );
    assert_eq!(shown.len(), 6, "{shown:#?}");
    assert!(shown[0].starts_with("jobs.toml:3:20: unknown placeholder `{nope}`"), "{shown:#?}");
    assert!(shown.iter().any(|e| e.starts_with("jobs.toml:6:8: duplicate job `a`")), "{shown:#?}");
    assert!(
        shown.iter().any(|e| e.starts_with("jobs.toml:11:20: secret parameter `token` cannot appear in command")),
        "{shown:#?}"
    );
    assert!(shown.iter().any(|e| e.starts_with("jobs.toml:12:11: `soon` is not a duration")), "{shown:#?}");
    assert!(shown.iter().any(|e| e.starts_with("jobs.toml:18:11: bad regex")), "{shown:#?}");
    assert!(shown.iter().any(|e| e.starts_with("jobs.toml:21:8: unknown parameter type `colour`")), "{shown:#?}");
}

#[test]
fn a_secret_too_short_to_mask_is_a_config_error() {
    let shown = errors(
        "[[job]]\nname = \"a\"\ncommand = [\"true\"]\n[[job.param]]\nname = \"pin\"\ntype = \"secret\"\nmax_length = 3\n",
    );
    assert_eq!(
        shown,
        vec![
            "jobs.toml:7:14: max_length 3 leaves no valid secret: a secret must be at least 4 characters, so that masking it does not mangle the log"
        ]
    );
}

#[test]
fn defaults_are_checked_against_the_type() {
    let shown = errors(
        "[[job]]\nname = \"a\"\ncommand = [\"true\"]\n[[job.param]]\nname = \"n\"\ntype = \"integer\"\nmax = 5\ndefault = 9\n",
    );
    assert_eq!(shown, vec!["jobs.toml:8:11: default must be at most 5"]);
}

#[test]
fn bad_job_names_and_empty_commands_are_rejected() {
    let shown = errors("[[job]]\nname = \"Bad Name\"\ncommand = []\n");
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(shown[0].contains("job name `Bad Name`"));
    assert!(shown[1].contains("command must be a non-empty array"));
}

#[test]
fn overrides_win_over_the_file() {
    let overrides = Overrides {
        listen: Some(Given::new("0.0.0.0:9999", "--listen")),
        data_dir: Some("/var/lib/oneoff".into()),
        ..Overrides::default()
    };
    let config = Config::from_toml("f", "[server]\nlisten = \"127.0.0.1:1\"\n", Path::new("/x"), &overrides).unwrap();
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:9999");
    assert_eq!(config.server.data_dir, Path::new("/var/lib/oneoff"));
}

#[test]
fn empty_file_is_a_valid_empty_catalog() {
    let config = load("").unwrap();
    assert!(config.catalog.jobs().is_empty());
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn stream_and_debug_settings_load_with_defaults() {
    let config = load("[server]\npublic_origins = [\"https://Oneoff.example.com/\"]\n[debug]\necho = true\n").unwrap();
    assert_eq!(config.server.public_origins, vec!["https://oneoff.example.com"]);
    assert!(config.debug.echo);
    assert_eq!(config.streams.ws_ping_interval, Duration::from_secs(20));
    assert_eq!(config.streams.sse_ping_interval, Duration::from_secs(15));
    let shown = errors("[server]\npublic_origins = [\"oneoff.example.com\"]\n[streams]\nws_ping_interval = \"1ms\"\n");
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(shown[0].starts_with("jobs.toml:2:19: public origin `oneoff.example.com` must look like"), "{shown:#?}");
    assert!(shown[1].starts_with("jobs.toml:4:20: ws_ping_interval must be at least 100ms"), "{shown:#?}");
}

#[test]
fn auth_settings_and_job_access_lists_load() {
    let config = load(
        r#"
[auth]
anonymous = false
admins = { groups = ["platform"] }

[auth.trusted_headers]
trusted_cidrs = ["10.0.0.0/8", "127.0.0.1/32"]

[[job]]
name = "backfill"
command = ["true"]
allow_run = { groups = ["eng"], users = ["alice"] }
allow_view = { groups = ["eng", "support"] }
"#,
    )
    .unwrap();
    assert!(!config.auth.anonymous);
    let trusted = config.auth.trusted_headers.as_ref().unwrap();
    assert_eq!(trusted.user_header, "X-Forwarded-User");
    assert!(trusted.trusts("127.0.0.1".parse().unwrap()));
    assert!(!trusted.trusts("192.168.1.1".parse().unwrap()));
    let job = config.catalog.get("backfill").unwrap();
    assert_eq!(job.access.run.as_ref().unwrap().users, vec!["alice"]);
    assert!(load("").unwrap().auth.anonymous, "anonymous by default when no identity source is configured");
    let shown = errors("[auth.trusted_headers]\ntrusted_cidrs = [\"10.0.0.0/40\"]\n");
    assert!(shown[0].starts_with("jobs.toml:2:17: `10.0.0.0/40`: the prefix length"), "{shown:?}");
}

#[test]
fn alb_providers_need_a_signer_arn_and_derive_their_key_url_from_it() {
    let arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/oneoff/50dc6c495c0c9188";
    let config = load(&format!("[[auth.jwt]]\nkind = \"alb\"\nsigner_arn = \"{arn}\"\n")).unwrap();
    let alb = &config.auth.jwt[0];
    assert_eq!(alb.kind, JwtKind::Alb);
    assert_eq!(alb.header, "X-Amzn-Oidc-Data");
    assert_eq!(
        alb.keys,
        KeySource::PemPerKeyId { base_url: "https://public-keys.auth.elb.eu-west-1.amazonaws.com".into() }
    );
    assert_eq!((alb.algorithms.clone(), alb.user_claim.as_str()), (vec!["ES256".to_string()], "email"));
    assert_eq!(alb.signer_arn.as_deref(), Some(arn));
    assert!(!config.auth.anonymous);

    let local = load(&format!(
        "[[auth.jwt]]\nkind = \"alb\"\nsigner_arn = \"{arn}\"\nkey_url = \"http://127.0.0.1:9/keys/\"\nuser_claim = \"sub\"\n"
    ))
    .unwrap();
    assert_eq!(local.auth.jwt[0].keys, KeySource::PemPerKeyId { base_url: "http://127.0.0.1:9/keys".into() });
    assert_eq!(local.auth.jwt[0].user_claim, "sub");

    let shown = errors("[[auth.jwt]]\nkind = \"alb\"\n");
    assert!(shown[0].starts_with("jobs.toml:2:8: an alb provider needs `signer_arn`"), "{shown:?}");
    let shown = errors("[[auth.jwt]]\nkind = \"alb\"\nsigner_arn = \"arn:aws:s3:::bucket\"\n");
    assert!(shown[0].contains("is not a load balancer ARN"), "{shown:?}");
    let shown = errors(&format!(
        "[[auth.jwt]]\nkind = \"alb\"\nsigner_arn = \"{arn}\"\njwks_url = \"https://x\"\naudience = \"a\"\nalgorithms = [\"RS256\"]\n"
    ));
    assert_eq!(shown.len(), 3, "{shown:#?}");
    assert!(shown.iter().any(|error| error.contains("use `key_url`")), "{shown:#?}");
    assert!(shown.iter().any(|error| error.contains("has no audience")), "{shown:#?}");
    assert!(shown.iter().any(|error| error.contains("always signs with ES256")), "{shown:#?}");
    let gov = "arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:1:loadbalancer/app/a/b";
    assert!(errors(&format!("[[auth.jwt]]\nkind = \"alb\"\nsigner_arn = \"{gov}\"\n"))[0].contains("set `key_url`"));
    let shown =
        errors(&format!("[[auth.jwt]]\nkind = \"pomerium\"\njwks_url = \"https://x\"\nsigner_arn = \"{arn}\"\n"));
    assert!(shown[0].contains("`signer_arn` applies only to kind = \"alb\""), "{shown:?}");
    assert!(errors("[[auth.jwt]]\nkind = \"pomerium\"\n")[0].contains("needs `jwks_url`"));
}

#[test]
fn stream_ticket_settings_have_defaults_and_bounds() {
    let defaults = load("").unwrap().auth.stream_tickets;
    assert_eq!(defaults, StreamTicketLimits::default());
    assert_eq!(defaults.ttl, Duration::from_secs(30));
    let config =
        load("[auth]\nstream_ticket_ttl = \"2s\"\nmax_stream_tickets = 5\nmax_stream_tickets_per_user = 2\n").unwrap();
    assert_eq!(
        config.auth.stream_tickets,
        StreamTicketLimits { ttl: Duration::from_secs(2), max_outstanding: 5, max_per_principal: 2 }
    );
    let shown = errors("[auth]\nstream_ticket_ttl = \"1h\"\nmax_stream_tickets = 0\n");
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(shown[0].starts_with("jobs.toml:2:21: stream_ticket_ttl must be between 1s and 5m"), "{shown:#?}");
    assert!(shown[1].contains("max_stream_tickets must be at least 1"), "{shown:#?}");
}

#[test]
fn nice_is_a_lower_priority_or_nothing() {
    let config =
        load("[[job]]\nname = \"a\"\ncommand = [\"true\"]\nnice = 19\n[[job]]\nname = \"b\"\ncommand = [\"true\"]\n")
            .unwrap();
    assert_eq!(config.catalog.get("a").unwrap().nice, 19);
    assert_eq!(config.catalog.get("b").unwrap().nice, 0, "normal priority by default");
    for bad in ["-5", "20"] {
        let shown = errors(&format!("[[job]]\nname = \"a\"\ncommand = [\"true\"]\nnice = {bad}\n"));
        assert_eq!(shown, vec!["jobs.toml:4:8: nice must be between 0 (normal priority) and 19 (lowest)"]);
    }
}

#[test]
fn a_line_must_fit_in_one_message_to_viewers() {
    let shown = errors("[server]\nmax_line_bytes = 4194304\n");
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert!(
        shown[0].starts_with(
            "jobs.toml:2:18: max_line_bytes (4194304) is larger than [streams] max_message_bytes (1048576)"
        ),
        "{shown:#?}"
    );
    assert!(shown[0].contains("lower max_line_bytes") && shown[0].contains("raise max_message_bytes"), "{shown:#?}");
    let config = load("[server]\nmax_line_bytes = 4194304\n[streams]\nmax_message_bytes = 4194304\n").unwrap();
    assert_eq!(config.server.max_line_bytes, 4_194_304);
}

#[test]
fn audit_settings_load_with_defaults_and_bad_ones_are_named() {
    let defaults = load("").unwrap().audit;
    assert_eq!(defaults.key_file, None);
    assert_eq!(
        (defaults.checkpoint_interval, defaults.denial_window),
        (Duration::from_secs(3600), Duration::from_secs(60))
    );
    let set = load("[audit]\nkey_file = \"audit.key\"\ncheckpoint_interval = \"10m\"\ndenial_window = \"5s\"\n")
        .unwrap()
        .audit;
    assert_eq!(set.key_file.as_deref(), Some(Path::new("/etc/oneoff/audit.key")), "relative to the file");
    assert_eq!((set.checkpoint_interval, set.denial_window), (Duration::from_secs(600), Duration::from_secs(5)));
    assert_eq!(
        errors("[audit]\ndenial_window = \"10ms\"\ncheckpoint_interval = \"soon\"\n"),
        vec![
            "jobs.toml:3:23: `soon` is not a duration like 30s, 10m or 2h (expected number at 0)".to_string(),
            "jobs.toml:2:17: denial_window must be at least 1s".to_string(),
        ]
    );
}

#[test]
fn cgroup_is_auto_off_or_an_absolute_path() {
    let cgroup = |value: &str| load(&format!("[server]\ncgroup = {value:?}\n")).map(|config| config.server.cgroup);
    assert_eq!(load("").unwrap().server.cgroup, CgroupSetting::Auto);
    assert_eq!(cgroup("auto").unwrap(), CgroupSetting::Auto);
    assert_eq!(cgroup("off").unwrap(), CgroupSetting::Off);
    assert_eq!(cgroup("/sys/fs/cgroup/oneoff").unwrap(), CgroupSetting::Under("/sys/fs/cgroup/oneoff".into()));
    let shown = errors("[server]\ncgroup = \"oneoff\"\n");
    assert_eq!(shown.len(), 1);
    assert!(
        shown[0].starts_with("jobs.toml:2:10: cgroup `oneoff` must be \"auto\", \"off\" or the absolute path"),
        "{shown:?}"
    );
}

/// The job of issue 11: each broken parameter is used by the command.
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
default = "2026"

[[job.param]]
name = "count"
type = "integer"
default = "many"
"#;

#[test]
fn a_broken_parameter_reports_its_own_mistake_and_stays_known() {
    assert_eq!(
        errors(BROKEN_PARAMS),
        vec![
            "jobs.toml:7:8: unknown parameter type `int`: did you mean `integer`? (the types are string, integer, boolean, choice and secret)",
            "jobs.toml:13:11: bad regex: error: unclosed character class",
            "jobs.toml:19:11: default must be an integer, not \"many\"",
        ]
    );
}

#[test]
fn a_broken_secret_still_may_not_appear_in_argv() {
    let shown = errors(
        "[[job]]\nname = \"a\"\ncommand = [\"login\", \"{token}\"]\n[[job.param]]\nname = \"token\"\ntype = \"secret\"\nmax_length = 2\n",
    );
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(shown[0].starts_with("jobs.toml:7:14: max_length 2 leaves no valid secret"), "{shown:#?}");
    assert!(shown[1].starts_with("jobs.toml:3:21: secret parameter `token` cannot appear in command"), "{shown:#?}");
}

#[test]
fn a_duplicate_parameter_is_reported_once_even_when_broken() {
    let shown = errors(
        "[[job]]\nname = \"a\"\ncommand = [\"echo\", \"{n}\"]\n[[job.param]]\nname = \"n\"\ntype = \"int\"\n[[job.param]]\nname = \"n\"\n",
    );
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(shown[0].starts_with("jobs.toml:6:8: unknown parameter type `int`: did you mean `integer`?"), "{shown:#?}");
    assert!(shown[1].starts_with("jobs.toml:8:8: duplicate parameter `n`"), "{shown:#?}");
}

#[test]
fn typos_in_closed_vocabularies_get_a_suggestion() {
    let shown = errors("[[job]]\nname = \"a\"\ncommand = [\"true\"]\ntimout = \"1m\"\n");
    assert!(
        shown[0].starts_with("jobs.toml:4:1: unknown field `timout`: did you mean `timeout`? (expected one of"),
        "{shown:?}"
    );
    let shown = errors("[[job]]\nname = \"a\"\ncommand = [\"true\"]\ncwd = \"/tmp\"\n");
    assert!(shown[0].contains("unknown field `cwd`: did you mean `workdir`?"), "{shown:?}");
    let shown = errors("[servr]\nlisten = \"127.0.0.1:1\"\n");
    assert!(shown[0].contains("unknown field `servr`: did you mean `server`?"), "{shown:?}");
    let shown = errors("[[job]]\nname = \"a\"\ncommand = [\"true\"]\nzzzz = 1\n");
    assert!(shown[0].starts_with("jobs.toml:4:1: unknown field `zzzz`, expected one of"), "no guess: {shown:?}");
    let shown = errors("[[auth.jwt]]\nkind = \"aws\"\n");
    assert_eq!(
        shown,
        vec!["jobs.toml:2:8: unknown jwt kind `aws`: did you mean `alb`? (cloudflare, pomerium, generic or alb)"]
    );
    let shown = errors("[server]\ncgroup = \"of\"\n");
    assert!(shown[0].ends_with("(such as /sys/fs/cgroup/oneoff): did you mean `off`?"), "{shown:?}");
    let shown =
        errors("[[job]]\nname = \"a\"\ncommand = [\"echo\", \"{batchsize}\"]\n[[job.param]]\nname = \"batch_size\"\n");
    assert!(
        shown[0].contains("unknown placeholder `{batchsize}`: no parameter of that name; did you mean `{batch_size}`?"),
        "{shown:?}"
    );
    let shown = errors("[[job]]\nname = \"a\"\ncommand = [\"true\"]\n[[job.param]]\nname = \"b\"\ntype = \"boolen\"\n");
    assert!(shown[0].contains("unknown parameter type `boolen`: did you mean `boolean`?"), "{shown:?}");
}

#[test]
fn a_nul_in_an_argument_env_or_workdir_is_an_error() {
    let shown = errors(
        "[[job]]\nname = \"a\"\ncommand = [\"echo\", \"a\\u0000b\"]\nenv = { X = \"1\\u0000\" }\nworkdir = \"/tmp\\u0000x\"\n",
    );
    assert_eq!(
        shown,
        vec![
            "jobs.toml:3:20: argument 2 of command contains a NUL character, which no program can receive (an argument ends at NUL)",
            "jobs.toml:4:13: env `X` contains a NUL character, which no environment can hold",
            "jobs.toml:5:11: workdir contains a NUL character, which no path can hold",
        ]
    );
}

#[test]
fn host_needs_name_the_program_and_workdir_where_they_are_written() {
    let config = load(
        r#"[[job]]
name = "a"
command = ["/nonexistent/prog", "x"]
workdir = "work"
[[job]]
name = "b"
command = ["backup-tool"]
env = { PATH = "/opt/tools/bin" }
[[job]]
name = "c"
command = ["{tool}"]
[[job.param]]
name = "tool"
"#,
    )
    .unwrap();
    assert_eq!(
        config.host_needs,
        vec![
            HostNeed {
                job: "a".into(),
                file: "jobs.toml".into(),
                position: (3, 12),
                need: Need::Program {
                    program: "/nonexistent/prog".into(),
                    search_path: None,
                    workdir: Some("/etc/oneoff/work".into())
                },
            },
            HostNeed {
                job: "a".into(),
                file: "jobs.toml".into(),
                position: (4, 11),
                need: Need::Directory("/etc/oneoff/work".into()),
            },
            HostNeed {
                job: "b".into(),
                file: "jobs.toml".into(),
                position: (7, 12),
                need: Need::Program {
                    program: "backup-tool".into(),
                    search_path: Some("/opt/tools/bin".into()),
                    workdir: None
                },
            },
        ],
        "a program chosen by a parameter is known only at run time"
    );
    assert_eq!(config.host_needs[1].problem("gone").to_string(), "jobs.toml:4:11: gone");
}

#[test]
fn the_store_and_replica_settings_have_defaults() {
    let server = load("").unwrap().server;
    assert_eq!(server.database, StoreUrl::Sqlite("/etc/oneoff/data/oneoff.db".into()), "SQLite in data_dir, as before");
    assert_eq!(server.replica, None, "the server fills in the hostname");
    assert_eq!(server.replica_timeout, Duration::from_secs(15));
    assert_eq!(server.replica_heartbeat(), Duration::from_secs(5));
    assert_eq!(server.database_pool, 10);
    assert_eq!(server.database_statement_timeout, Duration::from_secs(30));
    let moved = load("[server]\ndata_dir = \"/srv/oneoff\"\n").unwrap().server;
    assert_eq!(moved.database, StoreUrl::Sqlite("/srv/oneoff/oneoff.db".into()), "the file follows data_dir");
}

#[test]
fn the_store_and_replica_settings_load_from_the_file() {
    let server = load(
        "[server]\ndatabase = \"postgres://oneoff:pw@db/oneoff?sslmode=verify-full\"\nreplica = \"web-1\"\n\
         replica_timeout = \"30s\"\ndatabase_pool = 25\ndatabase_statement_timeout = \"1m\"\n",
    )
    .unwrap()
    .server;
    let StoreUrl::Postgres(url) = &server.database else { panic!("{:?}", server.database) };
    assert_eq!(url.connect_text_with_password(), "postgres://oneoff:pw@db/oneoff?sslmode=verify-full");
    assert_eq!(server.replica.as_ref().map(ReplicaName::as_str), Some("web-1"));
    assert_eq!(server.replica_timeout, Duration::from_secs(30));
    assert_eq!(server.replica_heartbeat(), Duration::from_secs(10));
    assert_eq!(server.database_pool, 25);
    assert_eq!(server.database_statement_timeout, Duration::from_secs(60));
    // A relative SQLite path is the file's, like data_dir and workdir.
    let server = load("[server]\ndatabase = \"sqlite:state/oneoff.db\"\n").unwrap().server;
    assert_eq!(server.database, StoreUrl::Sqlite("/etc/oneoff/state/oneoff.db".into()));
    let server = load("[server]\ndatabase = \"sqlite:///var/lib/o.db\"\n").unwrap().server;
    assert_eq!(server.database, StoreUrl::Sqlite("/var/lib/o.db".into()));
}

#[test]
fn bad_store_and_replica_settings_are_named_where_they_are_written() {
    let shown = errors(
        "[server]\ndatabase = \"mysql://oneoff@db/oneoff\"\nreplica = \"-web 1\"\nreplica_timeout = \"500ms\"\n\
         database_pool = 0\ndatabase_statement_timeout = \"0s\"\n",
    );
    assert_eq!(
        shown,
        [
            "jobs.toml:2:12: `mysql:` is not a database oneoff can use: the database URL must start with \
             postgres:// (PostgreSQL) or sqlite: (a SQLite file); without `database`, oneoff uses SQLite in data_dir",
            "jobs.toml:3:11: replica name `-web 1` must be 1 to 63 characters of letters, digits, `.`, `_` and `-`, \
             starting with a letter or a digit",
            "jobs.toml:4:19: replica_timeout must be at least 1s",
            "jobs.toml:5:17: database_pool must be between 1 and 1000 (connections per replica; PostgreSQL's \
             max_connections must hold every replica's pool)",
            "jobs.toml:6:30: database_statement_timeout must be at least 1s",
        ]
    );
    let shown = errors("[server]\ndatabase_pool = 1001\nreplica_timeout = \"soon\"\n");
    assert!(shown[0].starts_with("jobs.toml:3:19: `soon` is not a duration"), "{shown:#?}");
    assert!(shown[1].starts_with("jobs.toml:2:17: database_pool must be between 1 and 1000"), "{shown:#?}");
    assert!(load("[server]\ndatabase_pool = 1000\nreplica_timeout = \"1s\"\n").is_ok());
    let shown = errors("[server]\ndatabse = \"sqlite:x.db\"\n");
    assert!(shown[0].contains("unknown field `databse`: did you mean `database`?"), "{shown:#?}");
    let shown = errors("[server]\nstatement_timeout = \"5s\"\n");
    assert!(shown[0].contains("did you mean `database_statement_timeout`?"), "{shown:#?}");
}

#[test]
fn database_and_replica_overrides_win_and_their_errors_name_where_they_came_from() {
    let file = "[server]\ndatabase = \"sqlite:file.db\"\nreplica = \"from-file\"\n";
    let overrides = Overrides {
        database: Some(Given::new("sqlite:relative.db", "ONEOFF_DATABASE")),
        replica: Some(Given::new("from-env\n", "ONEOFF_REPLICA")),
        ..Overrides::default()
    };
    let server = Config::from_toml("f", file, Path::new("/x"), &overrides).unwrap().server;
    // As the shell that gave it sees it: the working directory's, not the file's.
    assert_eq!(server.database, StoreUrl::Sqlite("relative.db".into()));
    assert_eq!(server.replica.as_ref().map(ReplicaName::as_str), Some("from-env"));

    let overrides = Overrides {
        listen: Some(Given::new("nowhere", "--listen")),
        database: Some(Given::new("mysql://oneoff:hunter2-Sekret@db/oneoff", "ONEOFF_DATABASE")),
        replica: Some(Given::new("a b", "--replica")),
        ..Overrides::default()
    };
    let shown: Vec<String> = Config::from_toml("f", file, Path::new("/x"), &overrides)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shown,
        [
            "--listen: listen address `nowhere` is not IP:PORT",
            "ONEOFF_DATABASE: `mysql:` is not a database oneoff can use: the database URL must start with \
             postgres:// (PostgreSQL) or sqlite: (a SQLite file); without `database`, oneoff uses SQLite in data_dir",
            "--replica: replica name `a b` must be 1 to 63 characters of letters, digits, `.`, `_` and `-`, \
             starting with a letter or a digit",
        ]
    );
}

#[test]
fn a_database_password_shows_in_no_error_and_no_debug_output() {
    const PASSWORD: &str = "hunter2-Sekret";
    let good = format!("postgres://oneoff:{PASSWORD}@db/oneoff");
    let config = load(&format!("[server]\ndatabase = \"{good}\"\n")).unwrap();
    assert!(!format!("{config:?}").contains(PASSWORD), "Debug of the config");
    assert!(format!("{:?}", config.server).contains("postgres://oneoff:***@db/oneoff"));
    let overrides = Overrides { database: Some(Given::new(good.clone(), "--database")), ..Overrides::default() };
    assert!(!format!("{overrides:?}").contains(PASSWORD), "Debug of the overrides");
    for bad in [
        format!("postgres://oneoff:{PASSWORD}@db"),
        format!("postgres://oneoff:{PASSWORD}@db/oneoff?sslmod=require"),
        format!("postgres://oneoff:{PASSWORD}/@db/oneoff"),
        format!("oneoff:{PASSWORD}@db/oneoff"),
    ] {
        let from_file = errors(&format!("[server]\ndatabase = \"{bad}\"\n")).join("\n");
        let overrides =
            Overrides { database: Some(Given::new(bad.clone(), "ONEOFF_DATABASE")), ..Overrides::default() };
        let from_env = Config::from_toml("f", "", Path::new("/x"), &overrides).unwrap_err().to_string();
        for shown in [from_file, from_env] {
            assert!(!shown.is_empty() && !shown.contains(PASSWORD), "{bad}: {shown}");
        }
    }
}
