//! The config file: TOML text in, a validated [`Config`] out, with file:line:column errors.
//!
//! Parsing happens in two steps, as the style guide asks: serde reads the raw shape
//! (`Raw*` types, with spans), then [`Config::from_toml`] validates everything into the
//! types the rest of oneoff uses. Every problem in the file is reported, not just the first.
//! Reading the file and resolving flags and environment variables is the caller's job;
//! they arrive as [`Overrides`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::auth::{
    alb_arn_region, alb_key_url, Access, AccessList, AuthConfig, Cidr, JwtKind, JwtProvider, KeySource,
    StreamTicketLimits, TrustedHeaders,
};
use crate::base_path::BasePath;
use crate::catalog::{param_env_name, Catalog, JobName, JobSpec};
use crate::mask::MIN_SECRET_CHARS;
use crate::params::{ParamInput, ParamKind, ParamSpec, DEFAULT_MAX_LENGTH};
use crate::store_url::{ReplicaName, StoreUrl, SQLITE_FILE};
use crate::suggest;
use crate::template::{is_identifier, Template};

pub mod env;
pub use env::Environment;
use env::{Overlay, Place};

/// Server settings with every default applied.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Runs executing at once across all jobs; more wait in the FIFO queue.
    pub max_concurrent_runs: u32,
    /// Runs waiting for a slot; a request beyond this is refused with 503.
    pub max_queued_runs: u32,
    /// On SIGTERM, how long running jobs may go on before they are cancelled.
    pub drain: Duration,
    /// Finished runs older than this are deleted with their logs; `None` keeps everything.
    pub retention: Option<Duration>,
    pub max_body_bytes: usize,
    /// Longer output lines are cut into several log entries.
    pub max_line_bytes: usize,
    /// An unfinished line (a progress bar) is stored after this much quiet.
    pub partial_line_flush: Duration,
    /// How long a run's lines may wait for a store that refuses them (a full disk): the job
    /// blocks on its writes meanwhile; after this, the run is stopped and fails.
    pub store_wait: Duration,
    /// Upper bound of `wait` on the long-poll log endpoint.
    pub long_poll_max: Duration,
    /// Browser origins allowed to open WebSocket and SSE streams (`scheme://host[:port]`).
    /// Empty: any origin. Compared with the `Origin` header, never with `Host`.
    pub public_origins: Vec<String>,
    /// Where each run gets a cgroup of its own, so that nothing it starts outlives it.
    pub cgroup: CgroupSetting,
    /// Where everything is stored: `[server] database`, `ONEOFF_DATABASE` or `--database`;
    /// without any, the SQLite file `oneoff.db` in `data_dir`. A relative SQLite path in the
    /// file is resolved against the file's directory.
    pub database: StoreUrl,
    /// This replica's name in the store; `None`: the server uses the hostname
    /// (`store_url::default_replica_name`), which only it can read.
    pub replica: Option<ReplicaName>,
    /// A replica whose heartbeat is older than this is dead for the others, and its runs
    /// are lost. Each replica heartbeats every third of it ([`ServerConfig::replica_heartbeat`]),
    /// so that one or two missed beats (a pause, a slow statement) are not a death.
    pub replica_timeout: Duration,
    /// PostgreSQL: connections this replica keeps open at most (the pool's size).
    pub database_pool: u32,
    /// PostgreSQL: a statement that runs longer than this is cancelled by the database and
    /// fails, so that a lock or a stuck database costs a failed statement, not a hung replica.
    pub database_statement_timeout: Duration,
    /// How the server writes its own log to stderr: `[server] log_format`,
    /// `ONEOFF_LOG_FORMAT` or `--log-format`.
    pub log_format: LogFormat,
    /// The path prefix everything but the health endpoints is served under (`[server]
    /// base_path`); the root when empty.
    pub base_path: BasePath,
    /// Who may scrape `/metrics`: `[server] metrics` and `metrics_cidrs`.
    pub metrics: MetricsAccess,
}

/// `[server] metrics = "open" | "token"` and `metrics_cidrs`: who may scrape `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsAccess {
    /// `"token"`: a scrape must carry a valid API token (`Authorization: Bearer oneoff_…`).
    pub token: bool,
    /// When not empty, only peers in these networks may scrape.
    pub cidrs: Vec<Cidr>,
}

/// The server log's form: lines for people, or one JSON object per line for a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    /// `text` or `json`; the error names both.
    pub fn parse(text: &str) -> Result<LogFormat, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => {
                let hint = suggest::hint(other, &["text", "json"], LOG_FORMAT_ALIASES);
                Err(format!("log_format `{other}` must be \"text\" or \"json\"{hint}"))
            }
        }
    }
}

impl ServerConfig {
    /// How often this replica writes its heartbeat: a third of `replica_timeout`.
    pub fn replica_heartbeat(&self) -> Duration {
        self.replica_timeout / 3
    }
}

/// `[server] cgroup`: how runs are held together beyond their process group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupSetting {
    /// A cgroup per run under the server's own cgroup where cgroup v2 allows it; otherwise
    /// the process group only (the server says which at start).
    Auto,
    /// The process group only: a process that calls `setsid` can outlive its run.
    Off,
    /// A cgroup per run under this cgroup v2 directory; the server refuses to start without it.
    Under(PathBuf),
}

/// Live log streams (WebSocket and SSE) and their bounds.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// WebSocket ping period on a quiet stream; below the 60 s idle timeout of common proxies.
    pub ws_ping_interval: Duration,
    /// SSE `: ping` comment period on a quiet stream.
    pub sse_ping_interval: Duration,
    /// Largest WebSocket message the server sends (a batch of entries) or accepts.
    pub max_message_bytes: usize,
    /// Bytes the server may buffer for one viewer that does not read; beyond it the viewer is dropped.
    pub max_viewer_buffer_bytes: usize,
    /// A viewer that accepts nothing for this long is disconnected (it can resume by sequence).
    pub viewer_send_timeout: Duration,
    pub max_viewers_per_run: usize,
    /// Streaming connections (WebSocket and SSE) across all runs.
    pub max_connections: usize,
    /// Recent log bytes kept in memory per live run, so followers near the head never hit the store.
    pub live_cache_bytes: usize,
}

/// Diagnostics endpoints.
#[derive(Debug, Clone, Default)]
pub struct DebugConfig {
    /// Serve `/debug/echo`: what the app received, for debugging proxies.
    pub echo: bool,
    /// Header names whose values `/debug/echo` redacts, beyond Cookie and Authorization.
    pub redact_headers: Vec<String>,
}

/// The audit trail's anchors and bounds (see `audit::anchor` and `audit::denials`).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The file holding the audit key (`ONEOFF_AUDIT_KEY` wins over it); read at start.
    pub key_file: Option<PathBuf>,
    /// How often the chain's head is written to the server log, when it moved.
    pub checkpoint_interval: Duration,
    /// Repeated denials of one caller, action and job within this are summarised.
    pub denial_window: Duration,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub streams: StreamConfig,
    pub debug: DebugConfig,
    pub auth: AuthConfig,
    pub audit: AuditConfig,
    pub catalog: Catalog,
    /// What the jobs need from the host (programs, directories), for the IO side to check.
    pub host_needs: Vec<HostNeed>,
}

/// Something a job needs from the host that runs it. Core does no IO: `oneoff check-config`
/// and the server at start check these and report each at the place it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNeed {
    pub job: String,
    pub file: String,
    /// 1-based line and column of the value in the file.
    pub position: (usize, usize),
    pub need: Need,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// The command's program: a path (it holds a `/`, and a relative one is taken from the
    /// job's workdir), or a name looked up in `search_path`, the job's own `PATH` when its
    /// `env` sets one (`None`: the server's).
    Program { program: String, search_path: Option<String>, workdir: Option<PathBuf> },
    /// The job's `workdir`.
    Directory(PathBuf),
}

impl HostNeed {
    /// `message` about this need, placed where the file states it.
    pub fn problem(&self, message: impl Into<String>) -> ConfigError {
        ConfigError { file: self.file.clone(), position: Some(self.position), message: message.into() }
    }
}

/// Values from flags or environment variables, which win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<Given>,
    pub data_dir: Option<PathBuf>,
    /// A [`StoreUrl`]'s text; it may hold a password, which `Debug` does not show.
    pub database: Option<Given>,
    pub replica: Option<Given>,
    pub log_format: Option<Given>,
    pub base_path: Option<Given>,
    /// The `ONEOFF_` variables: `ONEOFF_<SECTION>__<KEY>` sets any setting, over the file
    /// and under the fields above (see [`env`]).
    pub environment: Environment,
}

/// A setting's value from outside the file, with where it came from (`--database`,
/// `ONEOFF_DATABASE`): an error about it names that place, as one in the file names its
/// line and column.
#[derive(Clone, PartialEq, Eq)]
pub struct Given {
    pub value: String,
    pub source: String,
}

impl Given {
    pub fn new(value: impl Into<String>, source: impl Into<String>) -> Given {
        Given { value: value.into(), source: source.into() }
    }
}

impl fmt::Debug for Given {
    /// The value is left out: a database URL may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Given").field("source", &self.source).finish_non_exhaustive()
    }
}

/// One problem in the config, with its place when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line and column.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    streams: RawStreams,
    #[serde(default)]
    debug: RawDebug,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default, rename = "job")]
    jobs: Vec<RawJob>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    data_dir: Option<String>,
    max_concurrent_runs: Option<Spanned<u32>>,
    max_queued_runs: Option<Spanned<u32>>,
    drain: Option<Spanned<String>>,
    retention: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<usize>>,
    max_line_bytes: Option<Spanned<usize>>,
    partial_line_flush: Option<Spanned<String>>,
    store_wait: Option<Spanned<String>>,
    long_poll_max: Option<Spanned<String>>,
    #[serde(default)]
    public_origins: Vec<Spanned<String>>,
    cgroup: Option<Spanned<String>>,
    database: Option<Spanned<String>>,
    replica: Option<Spanned<String>>,
    replica_timeout: Option<Spanned<String>>,
    database_pool: Option<Spanned<u32>>,
    database_statement_timeout: Option<Spanned<String>>,
    log_format: Option<Spanned<String>>,
    base_path: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
    metrics_cidrs: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStreams {
    ws_ping_interval: Option<Spanned<String>>,
    sse_ping_interval: Option<Spanned<String>>,
    max_message_bytes: Option<Spanned<usize>>,
    max_viewer_buffer_bytes: Option<Spanned<usize>>,
    viewer_send_timeout: Option<Spanned<String>>,
    max_viewers_per_run: Option<usize>,
    max_connections: Option<usize>,
    live_cache_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    anonymous: Option<bool>,
    #[serde(default)]
    admins: RawAccessList,
    trusted_headers: Option<RawTrustedHeaders>,
    #[serde(default)]
    jwt: Vec<RawJwt>,
    stream_ticket_ttl: Option<Spanned<String>>,
    max_stream_tickets: Option<Spanned<usize>>,
    max_stream_tickets_per_user: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    kind: Spanned<String>,
    jwks_url: Option<Spanned<String>>,
    /// ALB: the base URL of the per-key-id PEM keys.
    key_url: Option<Spanned<String>>,
    /// ALB: the load balancer's ARN.
    signer_arn: Option<Spanned<String>>,
    header: Option<String>,
    issuer: Option<String>,
    audience: Option<Spanned<String>>,
    algorithms: Option<Spanned<Vec<String>>>,
    user_claim: Option<String>,
    groups_claim: Option<String>,
    /// How often the keys are fetched again at most (an unknown key id asks for them).
    key_refetch_interval: Option<Spanned<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawAccessList {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

impl From<RawAccessList> for AccessList {
    fn from(raw: RawAccessList) -> AccessList {
        AccessList { users: raw.users, groups: raw.groups }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrustedHeaders {
    trusted_cidrs: Spanned<Vec<String>>,
    user_header: Option<String>,
    email_header: Option<String>,
    groups_header: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    key_file: Option<String>,
    checkpoint_interval: Option<Spanned<String>>,
    denial_window: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDebug {
    #[serde(default)]
    echo: bool,
    #[serde(default)]
    redact_headers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    command: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    workdir: Option<Spanned<String>>,
    #[serde(default, rename = "param", alias = "params")]
    params: Vec<RawParam>,
    timeout: Option<Spanned<String>>,
    max_concurrent: Option<Spanned<u32>>,
    grace: Option<Spanned<String>>,
    nice: Option<Spanned<i64>>,
    allow_run: Option<RawAccessList>,
    allow_view: Option<RawAccessList>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    #[serde(default)]
    required: bool,
    default: Option<Spanned<toml::Value>>,
    #[serde(default)]
    description: String,
    pattern: Option<Spanned<String>>,
    max_length: Option<Spanned<usize>>,
    min: Option<Spanned<i64>>,
    max: Option<Spanned<i64>>,
    choices: Option<Spanned<Vec<String>>>,
}

/// Collects errors with positions computed from byte spans of one source text.
struct Problems<'a> {
    file: &'a str,
    text: &'a str,
    /// The environment's settings laid over `text`, which the spans are into when present.
    overlay: Option<&'a Overlay>,
    errors: Vec<ConfigError>,
    host_needs: Vec<HostNeed>,
}

impl<'a> Problems<'a> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let error = match self.place(span.start) {
            Place::File(offset) => ConfigError {
                file: self.file.to_string(),
                position: Some(line_column(self.text, offset)),
                message: message.into(),
            },
            Place::Variable(variable) => {
                ConfigError { file: variable.to_string(), position: None, message: message.into() }
            }
        };
        self.errors.push(error);
    }

    /// Where `offset` (into the text that was parsed) is: in the file, or in a variable's value.
    fn place(&self, offset: usize) -> Place<'a> {
        match self.overlay {
            Some(overlay) => overlay.place(offset),
            None => Place::File(offset),
        }
    }

    fn need(&mut self, job: &str, span: Range<usize>, need: Need) {
        // Jobs come from the file only.
        let offset = match self.place(span.start) {
            Place::File(offset) => offset,
            Place::Variable(_) => span.start,
        };
        let position = line_column(self.text, offset);
        self.host_needs.push(HostNeed { job: job.to_string(), file: self.file.to_string(), position, need });
    }

    /// A problem with a value given outside the file, named by where it came from.
    fn given(&mut self, given: &Given, message: impl Into<String>) {
        self.errors.push(ConfigError { file: given.source.clone(), position: None, message: message.into() });
    }

    fn nowhere(&mut self, message: impl Into<String>) {
        self.errors.push(ConfigError { file: self.file.to_string(), position: None, message: message.into() });
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    (line, before[line_start..].chars().count() + 1)
}

impl Config {
    /// Validates config text. `file` names it in errors; relative paths in it are resolved
    /// against `base_dir` (the file's directory); `overrides` win over the file.
    pub fn from_toml(file: &str, text: &str, base_dir: &Path, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        let (overlay, environment_problems) = env::lay_over(text, &overrides.environment);
        let mut problems =
            Problems { file, text, overlay: overlay.as_ref(), errors: Vec::new(), host_needs: Vec::new() };
        for (variable, message) in environment_problems {
            problems.errors.push(ConfigError { file: variable, position: None, message });
        }
        let parsed = overlay.as_ref().map_or(text, |overlay| overlay.text.as_str());
        let raw: RawConfig = match toml::from_str(parsed) {
            Ok(raw) => raw,
            Err(error) => {
                let message = with_key_suggestion(&error.message().trim().replace('\n', "; "));
                match error.span() {
                    Some(span) => problems.at(span, message),
                    None => problems.nowhere(message),
                }
                return Err(ConfigErrors(problems.errors));
            }
        };
        let line_span = raw.server.max_line_bytes.as_ref().map(Spanned::span);
        let server = validate_server(raw.server, base_dir, overrides, &mut problems);
        let streams = validate_streams(raw.streams, &mut problems);
        if let (Some(server), Some(streams)) = (&server, &streams) {
            check_line_fits_a_message(server.max_line_bytes, streams.max_message_bytes, line_span, &mut problems);
        }
        let debug = DebugConfig { echo: raw.debug.echo, redact_headers: raw.debug.redact_headers };
        let auth = validate_auth(raw.auth, &mut problems);
        let audit = validate_audit(raw.audit, base_dir, &mut problems);
        let mut jobs: Vec<JobSpec> = Vec::new();
        let mut seen_names = HashSet::new();
        for raw_job in raw.jobs {
            if !seen_names.insert(raw_job.name.get_ref().clone()) {
                problems.at(raw_job.name.span(), format!("duplicate job `{}`", raw_job.name.get_ref()));
                continue;
            }
            if let Some(job) = validate_job(raw_job, base_dir, &mut problems) {
                jobs.push(job);
            }
        }
        match (server, streams, problems.errors.is_empty()) {
            (Some(server), Some(streams), true) => {
                let host_needs = problems.host_needs;
                Ok(Config { server, streams, debug, auth, audit, catalog: Catalog::new(jobs), host_needs })
            }
            _ => Err(ConfigErrors(problems.errors)),
        }
    }
}

const JWT_KINDS: &[&str] = &["cloudflare", "pomerium", "generic", "alb"];
const JWT_KIND_ALIASES: &[(&str, &str)] = &[
    ("aws", "alb"),
    ("elb", "alb"),
    ("cf", "cloudflare"),
    ("cloudflare-access", "cloudflare"),
    ("access", "cloudflare"),
    ("oidc", "generic"),
    ("jwks", "generic"),
    ("jwt", "generic"),
];
const LOG_FORMAT_ALIASES: &[(&str, &str)] =
    &[("plain", "text"), ("pretty", "text"), ("human", "text"), ("ndjson", "json"), ("jsonl", "json")];
const CGROUP_ALIASES: &[(&str, &str)] =
    &[("on", "auto"), ("true", "auto"), ("yes", "auto"), ("none", "off"), ("false", "off"), ("no", "off")];
/// Names of keys people reach for, mapped to ours (only suggested where ours is expected).
const KEY_ALIASES: &[(&str, &str)] = &[
    ("parameter", "param"),
    ("parameters", "param"),
    ("args", "command"),
    ("argv", "command"),
    ("cmd", "command"),
    ("cwd", "workdir"),
    ("dir", "workdir"),
    ("working_dir", "workdir"),
    ("working_directory", "workdir"),
    ("environment", "env"),
    ("jobs", "job"),
    ("regex", "pattern"),
    ("options", "choices"),
    ("values", "choices"),
    ("kind", "type"),
    ("db", "database"),
    ("dsn", "database"),
    ("database_url", "database"),
    ("pool_size", "database_pool"),
    ("statement_timeout", "database_statement_timeout"),
    ("replica_name", "replica"),
    ("heartbeat_timeout", "replica_timeout"),
];

/// serde's "unknown field `timout`, expected one of `name`, `timeout`, …" with the key it
/// most likely meant in front: "unknown field `timout`: did you mean `timeout`?".
fn with_key_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return message.to_string() };
    let Some((unknown, expected)) = rest.split_once("`, expected ") else { return message.to_string() };
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match suggest::did_you_mean(unknown, &known, KEY_ALIASES) {
        Some(found) => format!("unknown field `{unknown}`: did you mean `{found}`? (expected {expected})"),
        None => message.to_string(),
    }
}

fn duration(value: &Option<Spanned<String>>, default: Option<Duration>, problems: &mut Problems) -> Option<Duration> {
    match value {
        None => default,
        Some(text) => match humantime::parse_duration(text.get_ref().trim()) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                problems
                    .at(text.span(), format!("`{}` is not a duration like 30s, 10m or 2h ({error})", text.get_ref()));
                default
            }
        },
    }
}

fn validate_server(
    raw: RawServer,
    base_dir: &Path,
    overrides: &Overrides,
    problems: &mut Problems,
) -> Option<ServerConfig> {
    let listen = match (&overrides.listen, &raw.listen) {
        (Some(given), _) => given
            .value
            .parse()
            .map_err(|_| problems.given(given, format!("listen address `{}` is not IP:PORT", given.value)))
            .ok(),
        (None, Some(text)) => text
            .get_ref()
            .parse()
            .map_err(|_| problems.at(text.span(), format!("listen address `{}` is not IP:PORT", text.get_ref())))
            .ok(),
        (None, None) => Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
    };
    let data_dir = match (&overrides.data_dir, &raw.data_dir) {
        (Some(flag), _) => flag.clone(),
        (None, Some(dir)) => base_dir.join(dir),
        (None, None) => base_dir.join("data"),
    };
    let store = validate_store(&raw, base_dir, &data_dir, overrides, problems);
    let max_concurrent_runs = match raw.max_concurrent_runs {
        Some(value) if *value.get_ref() == 0 => {
            problems.at(value.span(), "max_concurrent_runs must be at least 1");
            1
        }
        Some(value) => value.into_inner(),
        None => 16,
    };
    let max_queued_runs = raw.max_queued_runs.map_or(1000, Spanned::into_inner);
    let drain = duration(&raw.drain, Some(Duration::from_secs(30)), problems);
    let retention = duration(&raw.retention, None, problems);
    let partial_line_flush = duration(&raw.partial_line_flush, Some(Duration::from_millis(200)), problems);
    let long_poll_max = duration(&raw.long_poll_max, Some(Duration::from_secs(30)), problems);
    let store_wait = duration(&raw.store_wait, Some(Duration::from_secs(60)), problems);
    let positive = |value: Option<Spanned<usize>>, default: usize, what: &str, problems: &mut Problems| match value {
        Some(value) if *value.get_ref() < 1024 => {
            problems.at(value.span(), format!("{what} must be at least 1024"));
            default
        }
        Some(value) => value.into_inner(),
        None => default,
    };
    let max_body_bytes = positive(raw.max_body_bytes, 1024 * 1024, "max_body_bytes", problems);
    let max_line_bytes = positive(raw.max_line_bytes, 64 * 1024, "max_line_bytes", problems);
    let mut public_origins = Vec::new();
    for origin in raw.public_origins {
        let text = origin.get_ref().trim_end_matches('/').to_ascii_lowercase();
        let well_formed = (text.starts_with("https://") || text.starts_with("http://"))
            && !text.split_once("://").is_some_and(|(_, rest)| rest.is_empty() || rest.contains('/'));
        if well_formed {
            public_origins.push(text);
        } else {
            problems
                .at(origin.span(), format!("public origin `{}` must look like https://host[:port]", origin.get_ref()));
        }
    }
    let cgroup = match raw.cgroup {
        None => CgroupSetting::Auto,
        Some(text) => match text.get_ref().as_str() {
            "auto" => CgroupSetting::Auto,
            "off" => CgroupSetting::Off,
            path if Path::new(path).is_absolute() => CgroupSetting::Under(PathBuf::from(path)),
            other => {
                let hint = suggest::hint(other, &["auto", "off"], CGROUP_ALIASES);
                problems.at(
                    text.span(),
                    format!(
                        "cgroup `{other}` must be \"auto\", \"off\" or the absolute path of a cgroup v2 \
                         directory (such as /sys/fs/cgroup/oneoff){hint}"
                    ),
                );
                CgroupSetting::Auto
            }
        },
    };
    let log_format = match (&overrides.log_format, &raw.log_format) {
        (Some(given), _) => LogFormat::parse(&given.value).map_err(|message| problems.given(given, message)).ok(),
        (None, Some(text)) => {
            LogFormat::parse(text.get_ref()).map_err(|message| problems.at(text.span(), message)).ok()
        }
        (None, None) => Some(LogFormat::Text),
    };
    let base_path = match (&overrides.base_path, &raw.base_path) {
        (Some(given), _) => BasePath::parse(&given.value).map_err(|message| problems.given(given, message)).ok(),
        (None, Some(text)) => BasePath::parse(text.get_ref()).map_err(|message| problems.at(text.span(), message)).ok(),
        (None, None) => Some(BasePath::default()),
    };
    let metrics_token = match raw.metrics.as_ref().map(|text| (text.get_ref().trim(), text.span())) {
        None | Some(("open", _)) => false,
        Some(("token", _)) => true,
        Some((other, span)) => {
            let hint = suggest::hint(other, &["open", "token"], &[]);
            problems.at(span, format!("metrics `{other}` must be \"open\" (anyone may scrape /metrics) or \"token\" (a scrape needs an API token){hint}"));
            false
        }
    };
    let mut metrics_cidrs = Vec::new();
    if let Some(texts) = &raw.metrics_cidrs {
        for text in texts.get_ref() {
            match Cidr::parse(text) {
                Ok(cidr) => metrics_cidrs.push(cidr),
                Err(message) => problems.at(texts.span(), format!("metrics_cidrs: {message}")),
            }
        }
    }
    Some(ServerConfig {
        metrics: MetricsAccess { token: metrics_token, cidrs: metrics_cidrs },
        log_format: log_format?,
        base_path: base_path?,
        listen: listen?,
        data_dir,
        max_concurrent_runs,
        max_queued_runs,
        drain: drain?,
        retention,
        max_body_bytes,
        max_line_bytes,
        partial_line_flush: partial_line_flush?,
        store_wait: store_wait?,
        long_poll_max: long_poll_max?,
        public_origins,
        cgroup,
        database: store.database?,
        replica: store.replica,
        replica_timeout: store.replica_timeout,
        database_pool: store.database_pool,
        database_statement_timeout: store.database_statement_timeout,
    })
}

/// The `[server]` settings about the store and the replicas, before they join [`ServerConfig`].
struct StoreSettings {
    /// `None` when it is wrong (reported).
    database: Option<StoreUrl>,
    replica: Option<ReplicaName>,
    replica_timeout: Duration,
    database_pool: u32,
    database_statement_timeout: Duration,
}

const MAX_DATABASE_POOL: u32 = 1000;

fn validate_store(
    raw: &RawServer,
    base_dir: &Path,
    data_dir: &Path,
    overrides: &Overrides,
    problems: &mut Problems,
) -> StoreSettings {
    let database = match (&overrides.database, &raw.database) {
        // Relative to the working directory, as the shell that gave it sees it.
        (Some(given), _) => StoreUrl::parse(&given.value).map_err(|message| problems.given(given, message)).ok(),
        (None, Some(text)) => match StoreUrl::parse(text.get_ref()) {
            Ok(StoreUrl::Sqlite(path)) => Some(StoreUrl::Sqlite(base_dir.join(path))),
            Ok(url) => Some(url),
            Err(message) => {
                problems.at(text.span(), message);
                None
            }
        },
        (None, None) => Some(StoreUrl::Sqlite(data_dir.join(SQLITE_FILE))),
    };
    let replica = match (&overrides.replica, &raw.replica) {
        (Some(given), _) => {
            ReplicaName::parse(given.value.trim()).map_err(|message| problems.given(given, message)).ok()
        }
        (None, Some(text)) => {
            ReplicaName::parse(text.get_ref().trim()).map_err(|message| problems.at(text.span(), message)).ok()
        }
        (None, None) => None,
    };
    let at_least_a_second =
        |value: &Option<Spanned<String>>, default: Duration, name: &str, problems: &mut Problems| {
            let parsed = duration(value, Some(default), problems).unwrap_or(default);
            match value.as_ref().filter(|_| parsed < Duration::from_secs(1)) {
                Some(value) => {
                    problems.at(value.span(), format!("{name} must be at least 1s"));
                    default
                }
                None => parsed,
            }
        };
    let replica_timeout = at_least_a_second(&raw.replica_timeout, Duration::from_secs(15), "replica_timeout", problems);
    let database_pool = match &raw.database_pool {
        Some(value) if !(1..=MAX_DATABASE_POOL).contains(value.get_ref()) => {
            problems.at(
                value.span(),
                format!(
                    "database_pool must be between 1 and {MAX_DATABASE_POOL} (connections per replica; \
                     PostgreSQL's max_connections must hold every replica's pool)"
                ),
            );
            10
        }
        Some(value) => *value.get_ref(),
        None => 10,
    };
    let database_statement_timeout = at_least_a_second(
        &raw.database_statement_timeout,
        Duration::from_secs(30),
        "database_statement_timeout",
        problems,
    );
    StoreSettings { database, replica, replica_timeout, database_pool, database_statement_timeout }
}

/// A viewer holds at most one message, and a message carries at least one whole line: a line
/// longer than a message would make a viewer hold the line instead.
fn check_line_fits_a_message(
    max_line_bytes: usize,
    max_message_bytes: usize,
    line_span: Option<Range<usize>>,
    problems: &mut Problems,
) {
    if max_line_bytes <= max_message_bytes {
        return;
    }
    let message = format!(
        "max_line_bytes ({max_line_bytes}) is larger than [streams] max_message_bytes ({max_message_bytes}): \
         a log line must fit in one message to viewers; lower max_line_bytes (longer lines are stored \
         as several entries) or raise max_message_bytes"
    );
    match line_span {
        Some(span) => problems.at(span, message),
        None => problems.nowhere(message),
    }
}

fn validate_auth(raw: RawAuth, problems: &mut Problems) -> AuthConfig {
    let trusted_headers = raw.trusted_headers.map(|trusted| {
        let mut cidrs = Vec::new();
        for text in trusted.trusted_cidrs.get_ref() {
            match Cidr::parse(text) {
                Ok(cidr) => cidrs.push(cidr),
                Err(message) => problems.at(trusted.trusted_cidrs.span(), message),
            }
        }
        if trusted.trusted_cidrs.get_ref().is_empty() {
            problems.at(trusted.trusted_cidrs.span(), "trusted_cidrs must list the addresses of the SSO proxy");
        }
        TrustedHeaders {
            trusted_cidrs: cidrs,
            user_header: trusted.user_header.unwrap_or_else(|| "X-Forwarded-User".into()),
            email_header: trusted.email_header.unwrap_or_else(|| "X-Forwarded-Email".into()),
            groups_header: trusted.groups_header.unwrap_or_else(|| "X-Forwarded-Groups".into()),
        }
    });
    let jwt: Vec<JwtProvider> = raw.jwt.into_iter().filter_map(|raw| validate_jwt(raw, problems)).collect();
    // Anonymous access is the default only when nothing can identify anyone.
    let anonymous = raw.anonymous.unwrap_or(trusted_headers.is_none() && jwt.is_empty());
    let defaults = StreamTicketLimits::default();
    let mut ttl = duration(&raw.stream_ticket_ttl, Some(defaults.ttl), problems).unwrap_or(defaults.ttl);
    if let Some(text) = &raw.stream_ticket_ttl {
        // Long enough for a slow handshake, short enough that a ticket seen in a URL is stale.
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&ttl) {
            problems.at(text.span(), "stream_ticket_ttl must be between 1s and 5m");
            ttl = defaults.ttl;
        }
    }
    let stream_tickets = StreamTicketLimits {
        ttl,
        max_outstanding: at_least_one(raw.max_stream_tickets, defaults.max_outstanding, "max_stream_tickets", problems),
        max_per_principal: at_least_one(
            raw.max_stream_tickets_per_user,
            defaults.max_per_principal,
            "max_stream_tickets_per_user",
            problems,
        ),
    };
    AuthConfig { anonymous, trusted_headers, jwt, admins: raw.admins.into(), stream_tickets }
}

fn at_least_one(value: Option<Spanned<usize>>, default: usize, name: &str, problems: &mut Problems) -> usize {
    match value {
        Some(value) if *value.get_ref() == 0 => {
            problems.at(value.span(), format!("{name} must be at least 1"));
            default
        }
        Some(value) => value.into_inner(),
        None => default,
    }
}

fn validate_jwt(raw: RawJwt, problems: &mut Problems) -> Option<JwtProvider> {
    let (kind, header, algorithms, user_claim) = match raw.kind.get_ref().as_str() {
        "cloudflare" => (JwtKind::Cloudflare, "Cf-Access-Jwt-Assertion", vec!["RS256"], "email"),
        "pomerium" => (JwtKind::Pomerium, "X-Pomerium-Jwt-Assertion", vec!["ES256"], "email"),
        "generic" => (JwtKind::Generic, "Authorization", vec!["RS256", "ES256"], "sub"),
        "alb" => (JwtKind::Alb, "X-Amzn-Oidc-Data", vec!["ES256"], "email"),
        other => {
            let hint = suggest::hint(other, JWT_KINDS, JWT_KIND_ALIASES);
            problems.at(
                raw.kind.span(),
                format!("unknown jwt kind `{other}`{hint} (cloudflare, pomerium, generic or alb)"),
            );
            return None;
        }
    };
    let errors_before = problems.errors.len();
    let http_url = |url: &Spanned<String>, name: &str, problems: &mut Problems| {
        let text = url.get_ref().trim().to_string();
        if !(text.starts_with("https://") || text.starts_with("http://")) {
            problems.at(url.span(), format!("{name} `{}` must be an http(s) URL", url.get_ref()));
        }
        text
    };
    let keys = if kind == JwtKind::Alb {
        validate_alb(&raw, problems).map(|base_url| {
            // The key id is appended as `/{kid}`.
            let base_url = http_url(&base_url, "key_url", problems).trim_end_matches('/').to_string();
            KeySource::PemPerKeyId { base_url }
        })
    } else {
        for (present, name) in [(raw.key_url.as_ref(), "key_url"), (raw.signer_arn.as_ref(), "signer_arn")] {
            if let Some(value) = present {
                problems.at(value.span(), format!("`{name}` applies only to kind = \"alb\""));
            }
        }
        match &raw.jwks_url {
            Some(url) => Some(KeySource::Jwks { url: http_url(url, "jwks_url", problems) }),
            None => {
                problems.at(raw.kind.span(), format!("a {} provider needs `jwks_url`", raw.kind.get_ref()));
                None
            }
        }
    };
    let algorithms = match raw.algorithms {
        Some(list) if kind == JwtKind::Alb && list.get_ref().iter().any(|alg| alg != "ES256") => {
            problems.at(list.span(), "an AWS ALB always signs with ES256; leave `algorithms` out");
            Vec::new()
        }
        Some(list) => {
            const ASYMMETRIC: [&str; 9] =
                ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];
            if let Some(bad) = list.get_ref().iter().find(|alg| !ASYMMETRIC.contains(&alg.as_str())) {
                problems.at(
                    list.span(),
                    format!("algorithm `{bad}` is not allowed: only asymmetric ones ({})", ASYMMETRIC.join(", ")),
                );
            }
            list.into_inner()
        }
        None => algorithms.into_iter().map(str::to_string).collect(),
    };
    let key_refetch_interval =
        duration(&raw.key_refetch_interval, Some(DEFAULT_KEY_REFETCH_INTERVAL), problems).unwrap_or_default();
    if let Some(value) = raw.key_refetch_interval.as_ref().filter(|_| key_refetch_interval < MIN_KEY_REFETCH_INTERVAL) {
        problems.at(value.span(), "key_refetch_interval must be at least 100ms: it is what keeps forged key ids from hammering the key server");
    }
    if kind == JwtKind::Cloudflare && raw.audience.is_none() {
        problems.at(raw.kind.span(), "a cloudflare provider needs `audience`: the Access application's AUD tag");
    }
    if problems.errors.len() > errors_before {
        return None;
    }
    Some(JwtProvider {
        kind,
        header: raw.header.unwrap_or_else(|| header.to_string()),
        keys: keys?,
        issuer: raw.issuer,
        audience: raw.audience.map(Spanned::into_inner),
        algorithms,
        user_claim: raw.user_claim.unwrap_or_else(|| user_claim.to_string()),
        groups_claim: raw.groups_claim.unwrap_or_else(|| "groups".to_string()),
        signer_arn: raw.signer_arn.map(|arn| arn.into_inner().trim().to_string()),
        key_refetch_interval,
    })
}

/// How often a provider's keys are fetched again at most, unless configured.
pub const DEFAULT_KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
const MIN_KEY_REFETCH_INTERVAL: Duration = Duration::from_millis(100);

const ALB_ARN_SHAPE: &str = "arn:aws:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/app/NAME/ID";

/// Checks the ALB-only settings; returns the key base URL (given, or derived from the ARN).
fn validate_alb(raw: &RawJwt, problems: &mut Problems) -> Option<Spanned<String>> {
    if let Some(url) = &raw.jwks_url {
        problems.at(url.span(), "an AWS ALB publishes one PEM key per key id, not a JWKS: use `key_url`");
    }
    if let Some(audience) = &raw.audience {
        problems.at(audience.span(), "an ALB assertion has no audience: `signer_arn` pins it to your load balancer");
    }
    let Some(arn) = &raw.signer_arn else {
        // Every ALB of a region signs with the same keys: only the signer tells ours apart.
        problems.at(raw.kind.span(), "an alb provider needs `signer_arn`: the ARN of your load balancer");
        return None;
    };
    let region = alb_arn_region(arn.get_ref().trim());
    if region.is_none() {
        problems
            .at(arn.span(), format!("signer_arn `{}` is not a load balancer ARN like {ALB_ARN_SHAPE}", arn.get_ref()));
    }
    match (&raw.key_url, region) {
        (Some(url), _) => Some(url.clone()),
        (None, Some((region, true))) => Some(Spanned::new(arn.span(), alb_key_url(region))),
        (None, Some((_, false))) => {
            problems
                .at(arn.span(), "outside the standard `aws` partition, set `key_url` to the region's ALB key server");
            None
        }
        (None, None) => None,
    }
}

fn validate_streams(raw: RawStreams, problems: &mut Problems) -> Option<StreamConfig> {
    let ws_ping_interval = duration(&raw.ws_ping_interval, Some(Duration::from_secs(20)), problems);
    let sse_ping_interval = duration(&raw.sse_ping_interval, Some(Duration::from_secs(15)), problems);
    let viewer_send_timeout = duration(&raw.viewer_send_timeout, Some(Duration::from_secs(30)), problems);
    for (value, name) in [(&raw.ws_ping_interval, "ws_ping_interval"), (&raw.sse_ping_interval, "sse_ping_interval")] {
        if let Some(value) = value {
            if humantime::parse_duration(value.get_ref().trim()).is_ok_and(|parsed| parsed < Duration::from_millis(100))
            {
                problems.at(value.span(), format!("{name} must be at least 100ms"));
            }
        }
    }
    let at_least = |value: Option<Spanned<usize>>,
                    default: usize,
                    minimum: usize,
                    name: &str,
                    problems: &mut Problems| {
        match value {
            Some(value) if *value.get_ref() < minimum => {
                problems.at(value.span(), format!("{name} must be at least {minimum}"));
                default
            }
            Some(value) => value.into_inner(),
            None => default,
        }
    };
    let max_message_bytes = at_least(raw.max_message_bytes, 1024 * 1024, 64 * 1024, "max_message_bytes", problems);
    let max_viewer_buffer_bytes =
        at_least(raw.max_viewer_buffer_bytes, 2 * 1024 * 1024, 64 * 1024, "max_viewer_buffer_bytes", problems);
    Some(StreamConfig {
        ws_ping_interval: ws_ping_interval?,
        sse_ping_interval: sse_ping_interval?,
        max_message_bytes,
        max_viewer_buffer_bytes,
        viewer_send_timeout: viewer_send_timeout?,
        max_viewers_per_run: raw.max_viewers_per_run.unwrap_or(10_000),
        max_connections: raw.max_connections.unwrap_or(20_000),
        live_cache_bytes: raw.live_cache_bytes.unwrap_or(4 * 1024 * 1024),
    })
}

fn validate_job(raw: RawJob, base_dir: &Path, problems: &mut Problems) -> Option<JobSpec> {
    let errors_before = problems.errors.len();
    let name = JobName::parse(raw.name.get_ref()).map_err(|message| problems.at(raw.name.span(), message)).ok();

    let mut params: Vec<ParamSpec> = Vec::new();
    // Every parameter with a name, valid or not: a placeholder naming a broken parameter is
    // not a second mistake, and reporting it as unknown would point away from the first.
    let mut known: Vec<CheckedParam> = Vec::new();
    let mut env_names = HashSet::new();
    for raw_param in raw.params {
        let span = raw_param.name.span();
        let checked = validate_param(raw_param, problems);
        if known.iter().any(|existing| existing.name == checked.name) {
            problems.at(span, format!("duplicate parameter `{}`", checked.name));
            continue;
        }
        if !env_names.insert(param_env_name(&checked.name)) {
            problems.at(
                span,
                format!("parameter `{}` clashes with another one in {}", checked.name, param_env_name(&checked.name)),
            );
        }
        if let Some(spec) = &checked.spec {
            params.push(spec.clone());
        }
        known.push(checked);
    }

    let command_span = raw.command.span();
    let command_text: Vec<String> = raw.command.get_ref().iter().map(|arg| arg.get_ref().clone()).collect();
    if command_text.first().is_none_or(|program| program.trim().is_empty()) {
        problems.at(
            command_span,
            "command must be a non-empty array whose first element is the program, e.g. [\"echo\", \"hello\"]",
        );
    }
    // A PATH set with a placeholder is only known at run time.
    let job_search_path = raw.env.get("PATH").map(|value| value.get_ref().clone());
    let program_is_checkable = raw.command.get_ref().first().is_some_and(|program| {
        Template::parse(program.get_ref()).placeholders().next().is_none()
            && !program.get_ref().trim().is_empty()
            && job_search_path.as_ref().is_none_or(|path| Template::parse(path).placeholders().next().is_none())
    });
    let program_span = raw.command.get_ref().first().map(Spanned::span);
    let mut command = Vec::new();
    for (index, arg) in raw.command.into_inner().into_iter().enumerate() {
        if arg.get_ref().contains('\0') {
            problems.at(
                arg.span(),
                format!(
                    "argument {} of command contains a NUL character, which no program can receive (an argument ends at NUL)",
                    index + 1
                ),
            );
        }
        let template = Template::parse(arg.get_ref());
        for placeholder in template.placeholders() {
            match known.iter().find(|param| param.name == placeholder) {
                None => {
                    let names: Vec<&str> = known.iter().map(|param| param.name.as_str()).collect();
                    let meant = suggest::did_you_mean(placeholder, &names, &[])
                        .map_or_else(String::new, |name| format!("; did you mean `{{{name}}}`?"));
                    problems.at(
                        arg.span(),
                        format!(
                            "unknown placeholder `{{{placeholder}}}`: no parameter of that name{meant} (write `{{{{` for a literal brace)"
                        ),
                    )
                }
                Some(param) if param.secret => problems.at(
                    arg.span(),
                    format!(
                        "secret parameter `{placeholder}` cannot appear in command (argv is visible to every local user); the job receives it as {}",
                        param_env_name(placeholder)
                    ),
                ),
                Some(_) => {}
            }
        }
        command.push(template);
    }

    let mut env = Vec::new();
    for (key, value) in raw.env {
        if !is_identifier(&key) {
            problems.at(value.span(), format!("environment variable name `{key}` is not a valid name"));
        } else if key.starts_with("ONEOFF_") {
            problems.at(
                value.span(),
                format!("environment variable `{key}`: names starting with ONEOFF_ are set by oneoff"),
            );
        }
        if value.get_ref().contains('\0') {
            problems.at(value.span(), format!("env `{key}` contains a NUL character, which no environment can hold"));
        }
        let template = Template::parse(value.get_ref());
        for placeholder in template.placeholders() {
            if !known.iter().any(|param| param.name == placeholder) {
                problems.at(value.span(), format!("unknown placeholder `{{{placeholder}}}` in env `{key}`"));
            }
        }
        env.push((key, template));
    }

    let timeout = duration(&raw.timeout, None, problems);
    if let (Some(text), Some(Duration::ZERO)) = (&raw.timeout, timeout) {
        problems.at(text.span(), "timeout must be longer than zero");
    }
    let grace = duration(&raw.grace, Some(Duration::from_secs(10)), problems);
    let max_concurrent = match raw.max_concurrent {
        Some(value) if *value.get_ref() == 0 => {
            problems.at(value.span(), "max_concurrent must be at least 1");
            None
        }
        other => other.map(Spanned::into_inner),
    };
    let nice = match raw.nice {
        None => 0,
        Some(value) => match u8::try_from(*value.get_ref()) {
            Ok(nice) if nice <= 19 => nice,
            _ => {
                // Below 0 would need privileges and would let a job starve the server.
                problems.at(value.span(), "nice must be between 0 (normal priority) and 19 (lowest)");
                0
            }
        },
    };

    let workdir = raw.workdir.as_ref().map(|dir| base_dir.join(dir.get_ref()));
    if let Some(dir) = raw.workdir.as_ref().filter(|dir| dir.get_ref().contains('\0')) {
        problems.at(dir.span(), "workdir contains a NUL character, which no path can hold");
    }
    if problems.errors.len() > errors_before {
        return None;
    }
    let job_name = raw.name.get_ref().as_str();
    if let (true, Some(span), Some(program)) = (program_is_checkable, program_span, command_text.first()) {
        let need = Need::Program { program: program.clone(), search_path: job_search_path, workdir: workdir.clone() };
        problems.need(job_name, span, need);
    }
    if let (Some(dir), Some(raw_dir)) = (&workdir, &raw.workdir) {
        problems.need(job_name, raw_dir.span(), Need::Directory(dir.clone()));
    }
    let access = Access { run: raw.allow_run.map(AccessList::from), view: raw.allow_view.map(AccessList::from) };
    Some(JobSpec {
        access,
        name: name?,
        description: raw.description,
        command_text,
        command,
        env,
        workdir,
        params,
        timeout,
        max_concurrent,
        grace: grace?,
        nice,
    })
}

/// A parameter as the rest of its job sees it: known by name even when it is broken, so that
/// only its own first mistake is reported, not the placeholders that use it.
struct CheckedParam {
    name: String,
    /// Declared `type = "secret"`, valid or not: it still must not appear in argv.
    secret: bool,
    /// `None` when the parameter has a problem (already reported).
    spec: Option<ParamSpec>,
}

const PARAM_TYPES: &[&str] = &["string", "integer", "boolean", "choice", "secret"];
/// What people coming from other languages and schemas write for our types.
const PARAM_TYPE_ALIASES: &[(&str, &str)] = &[
    ("int", "integer"),
    ("i64", "integer"),
    ("number", "integer"),
    ("num", "integer"),
    ("str", "string"),
    ("text", "string"),
    ("bool", "boolean"),
    ("flag", "boolean"),
    ("enum", "choice"),
    ("select", "choice"),
    ("choices", "choice"),
    ("password", "secret"),
    ("token", "secret"),
];

fn validate_param(raw: RawParam, problems: &mut Problems) -> CheckedParam {
    let errors_before = problems.errors.len();
    let name = raw.name.get_ref().clone();
    if !is_identifier(&name) || name.len() > 64 {
        problems.at(raw.name.span(), format!("parameter name `{name}` must be an identifier (letters, digits, `_`)"));
    }
    let type_name = raw.kind.as_ref().map_or("string", |kind| kind.get_ref().as_str());
    let type_span = raw.kind.as_ref().map_or(raw.name.span(), Spanned::span);
    let secret = type_name == "secret";
    let broken = || CheckedParam { name: name.clone(), secret, spec: None };
    if !PARAM_TYPES.contains(&type_name) {
        // The keys that apply and the default depend on the type: with no type, any further
        // message would be a guess.
        problems.at(
            type_span,
            format!(
                "unknown parameter type `{type_name}`{} (the types are string, integer, boolean, choice and secret)",
                suggest::hint(type_name, PARAM_TYPES, PARAM_TYPE_ALIASES)
            ),
        );
        return broken();
    }
    let max_length = raw.max_length.as_ref().map_or(DEFAULT_MAX_LENGTH, |value| *value.get_ref());
    let kind = match type_name {
        "string" => {
            let pattern = raw.pattern.as_ref().and_then(|pattern| {
                Regex::new(pattern.get_ref())
                    .map_err(|error| {
                        problems.at(pattern.span(), format!("bad regex: {}", first_line(&error.to_string())))
                    })
                    .ok()
            });
            Some(ParamKind::String { max_length, pattern })
        }
        "integer" => {
            let (min, max) = (raw.min.as_ref().map(|v| *v.get_ref()), raw.max.as_ref().map(|v| *v.get_ref()));
            if let (Some(low), Some(high), Some(span)) = (min, max, raw.min.as_ref().map(Spanned::span)) {
                if low > high {
                    problems.at(span, format!("min {low} is greater than max {high}"));
                }
            }
            Some(ParamKind::Integer { min, max })
        }
        "boolean" => Some(ParamKind::Boolean),
        "choice" => match &raw.choices {
            Some(choices) if !choices.get_ref().is_empty() => {
                let unique: HashSet<&String> = choices.get_ref().iter().collect();
                if unique.len() != choices.get_ref().len() {
                    problems.at(choices.span(), "choices must be distinct");
                }
                Some(ParamKind::Choice { choices: choices.get_ref().clone() })
            }
            Some(choices) => {
                problems.at(choices.span(), "choices must not be empty");
                None
            }
            None => {
                problems.at(type_span, "a choice parameter needs `choices = [\"a\", \"b\"]`");
                None
            }
        },
        _ => {
            if let Some(default) = &raw.default {
                problems.at(
                    default.span(),
                    "a secret parameter cannot have a default (it would sit in clear in this file)",
                );
            }
            if max_length < MIN_SECRET_CHARS {
                if let Some(span) = raw.max_length.as_ref().map(Spanned::span) {
                    problems.at(
                        span,
                        format!(
                            "max_length {max_length} leaves no valid secret: a secret must be at least {MIN_SECRET_CHARS} characters, so that masking it does not mangle the log"
                        ),
                    );
                }
            }
            Some(ParamKind::Secret { max_length })
        }
    };
    let misplaced = [
        ("pattern", raw.pattern.as_ref().map(Spanned::span), type_name == "string"),
        ("max_length", raw.max_length.as_ref().map(Spanned::span), matches!(type_name, "string" | "secret")),
        ("min", raw.min.as_ref().map(Spanned::span), type_name == "integer"),
        ("max", raw.max.as_ref().map(Spanned::span), type_name == "integer"),
        ("choices", raw.choices.as_ref().map(Spanned::span), type_name == "choice"),
    ];
    for (key, span, allowed) in misplaced {
        if let (Some(span), false) = (span, allowed) {
            problems.at(span, format!("`{key}` does not apply to a {type_name} parameter"));
        }
    }
    let Some(kind) = kind else { return broken() };
    let mut spec =
        ParamSpec { name: name.clone(), kind, required: raw.required, default: None, description: raw.description };
    // A secret's default is refused above; checking it as a value would say the same twice.
    if let Some(default) = raw.default.filter(|_| !secret) {
        let input = match default.get_ref() {
            toml::Value::String(text) => ParamInput::Text(text.clone()),
            toml::Value::Integer(number) => ParamInput::Integer(*number),
            toml::Value::Boolean(flag) => ParamInput::Boolean(*flag),
            toml::Value::Float(_) => ParamInput::Unsupported("a number with a fraction"),
            toml::Value::Datetime(_) => ParamInput::Unsupported("a date (quote it to make it a string)"),
            toml::Value::Array(_) => ParamInput::Unsupported("an array"),
            toml::Value::Table(_) => ParamInput::Unsupported("a table"),
        };
        match spec.check(input) {
            Ok(value) => spec.default = Some(value),
            Err(message) => problems.at(default.span(), format!("default {message}")),
        }
    }
    let valid = problems.errors.len() == errors_before;
    CheckedParam { name, secret, spec: valid.then_some(spec) }
}

fn first_line(text: &str) -> String {
    text.lines().rfind(|line| !line.trim().is_empty()).unwrap_or(text).trim().to_string()
}

#[cfg(test)]
mod tests;

fn validate_audit(raw: RawAudit, base_dir: &Path, problems: &mut Problems) -> AuditConfig {
    let at_least_a_second =
        |value: &Option<Spanned<String>>, default: Duration, name: &str, problems: &mut Problems| {
            let parsed = duration(value, Some(default), problems).unwrap_or(default);
            if let Some(value) = value.as_ref().filter(|_| parsed < Duration::from_secs(1)) {
                problems.at(value.span(), format!("{name} must be at least 1s"));
            }
            parsed
        };
    AuditConfig {
        key_file: raw.key_file.map(|file| base_dir.join(file)),
        checkpoint_interval: at_least_a_second(
            &raw.checkpoint_interval,
            Duration::from_secs(3600),
            "checkpoint_interval",
            problems,
        ),
        denial_window: at_least_a_second(&raw.denial_window, Duration::from_secs(60), "denial_window", problems),
    }
}
