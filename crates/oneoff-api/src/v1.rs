//! Version 1 of the API: request and response bodies, and their conversions from domain types.

use std::borrow::Cow;
use std::collections::BTreeMap;

use oneoff_core::catalog::{param_env_name, JobSpec};
use oneoff_core::params::{FieldError, ParamInput, ParamKind, ParamSpec, ParamValue};
use oneoff_core::{LogEntry, LogStream, RunRecord, RunStatus, StoredParam};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::ToSchema;

/// What a secret parameter's value is shown as.
pub const REDACTED: &str = "********";

/// The OpenAPI schema of a run's `status`: the names of [`RunStatus::ALL`], as sent.
pub fn run_status_schema() -> utoipa::openapi::Object {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(RunStatus::ALL.map(RunStatus::as_str))).build()
}

/// The OpenAPI schema of an entry's `stream`.
fn log_stream_schema() -> utoipa::openapi::Object {
    let streams = [LogStream::Stdout, LogStream::Stderr, LogStream::System];
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(streams.map(LogStream::as_str))).build()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Job {
    pub name: String,
    pub description: String,
    /// The argv template as configured, placeholders included.
    pub command: Vec<String>,
    pub params: Vec<Param>,
    pub timeout_seconds: Option<f64>,
    pub max_concurrent: Option<u32>,
    pub grace_seconds: f64,
    /// Who may run the job; absent: everyone who may use oneoff.
    pub allow_run: Option<AccessList>,
    /// Who may see its runs (besides those who may run it); absent: everyone.
    pub allow_view: Option<AccessList>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct AccessList {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl From<&oneoff_core::AccessList> for AccessList {
    fn from(list: &oneoff_core::AccessList) -> AccessList {
        AccessList { users: list.users.clone(), groups: list.groups.clone() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Param {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    pub description: String,
    /// The environment variable the job receives the value in.
    pub env: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
}

/// `POST /api/v1/runs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    pub job: String,
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Run {
    pub id: i64,
    pub job: String,
    #[schema(schema_with = run_status_schema)]
    pub status: String,
    /// Values as given (secrets shown as `********`).
    pub params: BTreeMap<String, Value>,
    pub argv: Vec<String>,
    pub requested_by: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// Wall time from start to finish, or to now while running.
    pub duration_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub signal_name: Option<String>,
    pub error: Option<String>,
    /// The replica that runs or ran it (absent while queued, and for runs from before replicas).
    #[serde(default)]
    pub replica: Option<String>,
}

/// `GET /api/v1/replicas`: the live replicas sharing this store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ReplicaList {
    pub replicas: Vec<Replica>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Replica {
    pub name: String,
    pub host: String,
    #[schema(format = DateTime)]
    pub started_at: String,
    /// By the database's clock.
    #[schema(format = DateTime)]
    pub last_heartbeat: String,
    /// How long ago the last heartbeat was, by the database's clock.
    pub heartbeat_age_ms: i64,
    /// Runs it is running now.
    pub running: u32,
    /// Stopping: it claims no more runs and lets its running ones finish.
    pub draining: bool,
}

/// `POST /api/v1/admin/reload` (and `kill -HUP`): what a reload of the catalog changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Reloaded {
    /// Jobs in the catalog now in force.
    pub jobs: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Jobs whose definition changed: runs in progress keep the one they started with.
    pub changed: Vec<String>,
    /// Sections of the file other than the jobs that differ from the ones in force: they take
    /// effect at the next start only.
    pub restart_needed: Vec<String>,
    /// What this host lacks for the new catalog (`file:line:column: ...`), as at start.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct LogPage {
    pub entries: Vec<Entry>,
    /// Pass as `after` to continue exactly after the last entry returned.
    pub next: u64,
    /// True when the run is final and no entry follows `next`.
    pub done: bool,
    #[schema(schema_with = run_status_schema)]
    pub status: String,
    /// The highest sequence number stored for the run when the page was read (0: none).
    /// Every log is numbered `1..=head` without gaps.
    #[serde(default)]
    pub head: u64,
    /// Pass as `before` to read the page before this one: the first entry's seq (on an
    /// empty page: `before`, or `after + 1` for a forward read). `prev <= 1`: nothing before.
    #[serde(default)]
    pub prev: u64,
}

/// A [`LogPage`] read without copying its entries' text out of the JSON (unless escaped):
/// for a reader of many pages, such as `oneoff logs` printing a long log.
#[derive(Debug, Deserialize)]
pub struct LogPageRef<'a> {
    #[serde(borrow)]
    pub entries: Vec<EntryRef<'a>>,
    pub next: u64,
    pub done: bool,
}

/// An [`Entry`] borrowing its strings; serializes to the same JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EntryRef<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    #[serde(borrow)]
    pub stream: Cow<'a, str>,
    #[serde(borrow)]
    pub text: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continues: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

impl<'a> From<&'a Entry> for EntryRef<'a> {
    fn from(entry: &'a Entry) -> EntryRef<'a> {
        EntryRef {
            seq: entry.seq,
            ts: Cow::Borrowed(&entry.ts),
            stream: Cow::Borrowed(&entry.stream),
            text: Cow::Borrowed(&entry.text),
            continues: entry.continues,
            partial: entry.partial,
        }
    }
}

/// `GET /api/v1/runs/{id}/log/search`: the matches of one bounded scan of the log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct SearchPage {
    pub matches: Vec<SearchMatch>,
    /// Pass as `after` to go on scanning where this request stopped.
    pub next: u64,
    /// True when the scan reached `before` or the stored head: nothing is left to scan.
    pub done: bool,
    /// The highest sequence number stored for the run when the scan started.
    pub head: u64,
}

/// A matching entry, with the entries around it when `context` was asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct SearchMatch {
    #[serde(flatten)]
    pub entry: Entry,
    /// The entries within `context` of the match (itself included), ascending; present only
    /// when `context` was more than 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<Entry>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Entry {
    pub seq: u64,
    #[schema(format = DateTime)]
    pub ts: String,
    #[schema(schema_with = log_stream_schema)]
    pub stream: String,
    /// The line as UTF-8; invalid bytes are shown as U+FFFD (the raw log keeps the bytes).
    pub text: String,
    /// This entry continues the line of the previous entry of the same stream: a partial
    /// line stored before its newline (a progress bar), or a line cut at `max_line_bytes`.
    /// Join the two (no newline between). Sent only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continues: bool,
    /// The line does not end with this entry: the next entry of the same stream continues
    /// it, unless the output ended without a newline. Sent only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// Per-field messages of a 422.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldMessage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct FieldMessage {
    pub field: String,
    pub message: String,
}

impl From<&FieldError> for FieldMessage {
    fn from(error: &FieldError) -> FieldMessage {
        FieldMessage { field: error.field.clone(), message: error.message.clone() }
    }
}

/// RFC 3339 with microseconds, in UTC.
pub fn timestamp(micros: i64) -> String {
    let nanos = i128::from(micros) * 1000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|moment| moment.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| micros.to_string())
}

/// The inverse of [`timestamp`]: an RFC 3339 time with any offset (`2026-12-01T10:00:00Z`,
/// `…+01:00`, fractions of a second) as µs since the epoch; `None` when it is not one.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let moment = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(moment.unix_timestamp_nanos() / 1000).ok()
}

fn param_value_json(value: &ParamValue) -> Value {
    match value {
        ParamValue::Text(text) => Value::String(text.clone()),
        ParamValue::Integer(number) => Value::from(*number),
        ParamValue::Boolean(flag) => Value::Bool(*flag),
        ParamValue::Secret(_) => Value::String(REDACTED.into()),
    }
}

impl From<&ParamSpec> for Param {
    fn from(spec: &ParamSpec) -> Param {
        let mut param = Param {
            name: spec.name.clone(),
            kind: spec.kind.type_name().to_string(),
            required: spec.required,
            default: spec.default.as_ref().map(param_value_json),
            description: spec.description.clone(),
            env: param_env_name(&spec.name),
            pattern: None,
            max_length: None,
            min: None,
            max: None,
            choices: None,
        };
        match &spec.kind {
            ParamKind::String { max_length, pattern } => {
                param.max_length = Some(*max_length);
                param.pattern = pattern.as_ref().map(|regex| regex.as_str().to_string());
            }
            ParamKind::Secret { max_length } => param.max_length = Some(*max_length),
            ParamKind::Integer { min, max } => (param.min, param.max) = (*min, *max),
            ParamKind::Choice { choices } => param.choices = Some(choices.clone()),
            ParamKind::Boolean => {}
        }
        param
    }
}

impl From<&JobSpec> for Job {
    fn from(spec: &JobSpec) -> Job {
        Job {
            name: spec.name.to_string(),
            description: spec.description.clone(),
            command: spec.command_text.clone(),
            params: spec.params.iter().map(Param::from).collect(),
            timeout_seconds: spec.timeout.map(|timeout| timeout.as_secs_f64()),
            max_concurrent: spec.max_concurrent,
            grace_seconds: spec.grace.as_secs_f64(),
            allow_run: spec.access.run.as_ref().map(AccessList::from),
            allow_view: spec.access.view.as_ref().map(AccessList::from),
        }
    }
}

impl Run {
    /// `now_us` gives the running duration of a run that has not finished.
    pub fn from_record(record: &RunRecord, now_us: i64) -> Run {
        let params = record
            .params
            .iter()
            .map(|(name, value)| {
                let json = match value {
                    StoredParam::Text(text) => Value::String(text.clone()),
                    StoredParam::Integer(number) => Value::from(*number),
                    StoredParam::Boolean(flag) => Value::Bool(*flag),
                    StoredParam::Redacted => Value::String(REDACTED.into()),
                };
                (name.clone(), json)
            })
            .collect();
        let duration_ms =
            record.started_at_us.map(|started| (record.finished_at_us.unwrap_or(now_us) - started).max(0) / 1000);
        Run {
            id: record.id.0,
            job: record.job.clone(),
            status: record.status.to_string(),
            params,
            argv: record.argv.clone(),
            requested_by: record.requested_by.clone(),
            created_at: timestamp(record.created_at_us),
            started_at: record.started_at_us.map(timestamp),
            finished_at: record.finished_at_us.map(timestamp),
            duration_ms,
            exit_code: record.exit_code,
            signal: record.signal,
            signal_name: record.signal.map(signal_name),
            error: record.error.clone(),
            replica: record.replica.clone(),
        }
    }
}

/// The conventional name of a Linux signal number.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

impl From<&LogEntry> for Entry {
    fn from(entry: &LogEntry) -> Entry {
        Entry {
            seq: entry.seq,
            ts: timestamp(entry.ts_us),
            stream: entry.stream.as_str().to_string(),
            text: entry.text().into_owned(),
            continues: entry.continues,
            partial: entry.partial,
        }
    }
}

/// A JSON value as parameter input; `null` means "not given".
pub fn param_input(value: Value) -> Option<ParamInput> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(ParamInput::Text(text)),
        Value::Bool(flag) => Some(ParamInput::Boolean(flag)),
        Value::Number(number) => Some(match number.as_i64() {
            Some(integer) => ParamInput::Integer(integer),
            None => ParamInput::Unsupported("a number with a fraction or out of range"),
        }),
        Value::Array(_) => Some(ParamInput::Unsupported("an array")),
        Value::Object(_) => Some(ParamInput::Unsupported("an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(1_767_225_600_123_456), "2026-01-01T00:00:00.123456Z");
    }

    #[test]
    fn timestamps_parse_back_with_any_offset() {
        assert_eq!(parse_timestamp("2026-01-01T00:00:00.123456Z"), Some(1_767_225_600_123_456));
        assert_eq!(parse_timestamp(&timestamp(42)), Some(42));
        assert_eq!(parse_timestamp("2026-01-01T01:00:00+01:00"), Some(1_767_225_600_000_000));
        assert_eq!(parse_timestamp("2026-01-01"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn json_values_map_to_param_inputs() {
        assert_eq!(param_input(Value::Null), None);
        assert_eq!(param_input(serde_json::json!(5)), Some(ParamInput::Integer(5)));
        assert_eq!(
            param_input(serde_json::json!(1.5)),
            Some(ParamInput::Unsupported("a number with a fraction or out of range"))
        );
        assert_eq!(param_input(serde_json::json!([1])), Some(ParamInput::Unsupported("an array")));
    }
}

/// A WebSocket text message or SSE `data` carrying entries; `next` is the resume position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct StreamBatch {
    pub entries: Vec<Entry>,
    pub next: u64,
}

/// The last message of a stream: the run is final and every entry was sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct StreamDone {
    pub done: bool,
    #[schema(schema_with = run_status_schema)]
    pub status: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub next: u64,
}

/// Why a WebSocket handshake was refused, and what the request looked like when it arrived.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct HandshakeDiagnosis {
    /// The request headers a WebSocket handshake needs that did not arrive (or arrived wrong).
    pub missing: Vec<String>,
    pub http_version: String,
    /// What arrived in the headers that matter: Upgrade, Connection, Sec-WebSocket-Version, Origin.
    pub received: BTreeMap<String, String>,
    /// Proxy headers present on the request (X-Forwarded-For, Via, CF-Ray, ...), showing the hops it passed.
    pub hops: BTreeMap<String, String>,
    pub likely_cause: String,
    /// Transports that work without an upgrade, for this run.
    pub fallbacks: Vec<String>,
}

/// The body of a refused WebSocket handshake: the usual error plus the diagnosis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct HandshakeRefusal {
    pub error: ErrorDetail,
    pub diagnosis: HandshakeDiagnosis,
}

/// What `/debug/echo` received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EchoReport {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub http_version: String,
    pub peer: String,
    /// Every header in arrival order; secret values are replaced by `<redacted>`.
    pub headers: Vec<(String, String)>,
    pub websocket: EchoWebSocket,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct EchoWebSocket {
    /// True when the request carries a `Sec-WebSocket-Key` or an `Upgrade: websocket`.
    pub looks_like_handshake: bool,
    /// True when it is a complete handshake the server can accept.
    pub complete: bool,
    pub missing: Vec<String>,
}

/// `GET /api/v1/probe/echo`, and the first message of `/api/v1/probe/ws`: what reached the
/// server, for `oneoff doctor`. Always served, so it never carries a secret: values are shown
/// only for `Host`, `Origin`, `Upgrade`, `Connection` and the headers proxies add; every other
/// header (cookies, credentials, identity assertions) is reported by name only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ProbeFacts {
    pub method: String,
    pub path: String,
    /// `HTTP/1.0`, `HTTP/1.1`, `HTTP/2.0`: what the last hop spoke to the server.
    pub http_version: String,
    /// The `Upgrade` header as it arrived, when it did.
    pub upgrade: Option<String>,
    /// The `Connection` header as it arrived, when it did.
    pub connection: Option<String>,
    pub websocket: EchoWebSocket,
    /// `Host`, `Origin` and the hop headers (`Via`, `Forwarded`, `X-Forwarded-For`,
    /// `-Proto`, `-Host`, `-Port`, `-Prefix`, `X-Real-IP`, `CF-Ray`, `X-Amzn-Trace-Id`) with
    /// the values that arrived, in arrival order.
    pub hop_headers: Vec<(String, String)>,
    /// The lowercase name of every header that arrived, values withheld.
    pub header_names: Vec<String>,
}

/// `GET /api/v1/probe/poll`: the answer after the wait.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ProbeWaited {
    pub waited_ms: u64,
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct WhoAmI {
    pub user: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// `token:NAME`, `trusted_headers` or `anonymous`.
    pub source: String,
    pub admin: bool,
}

/// `POST /api/v1/runs/{id}/log/ticket`: a credential for one log connection to one run, for
/// browsers that cannot put a token in a WebSocket or EventSource request. Use it as
/// `?ticket=` on `log/ws`, `log/sse`, `log` or `log.txt` of that run, once, before `expires_at`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct StreamTicket {
    pub ticket: String,
    pub run: i64,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// 1 to 64 characters, not counting spaces around them.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// A duration such as `30d`; absent: never expires.
    #[serde(default)]
    pub expires_in: Option<String>,
    /// Admins only: whom the token identifies (default: the caller).
    #[serde(default)]
    pub user: Option<String>,
    /// Admins only: the token's groups (default: the caller's, or none for another user).
    #[serde(default)]
    pub groups: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub user: String,
    pub groups: Vec<String>,
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    /// The API token this one was made with: it expires no later, and is revoked with it.
    #[serde(default)]
    pub parent_id: Option<i64>,
}

/// The answer to a token creation: the only time the token itself is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct CreatedToken {
    pub token: String,
    pub info: Token,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    #[schema(format = DateTime)]
    pub at: String,
    pub actor: String,
    pub source: String,
    pub client: String,
    /// A stable code (docs/API.md lists them): `run.start`, `denied.audit.read`, …
    pub action: String,
    /// What happened, in a sentence for people.
    pub message: String,
    pub job: Option<String>,
    pub run_id: Option<i64>,
    pub detail: Value,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct AuditList {
    pub records: Vec<AuditRecord>,
    pub next_before: Option<i64>,
}

/// `GET /api/v1/audit/verify`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct AuditVerification {
    pub ok: bool,
    /// Records checked (up to the break).
    pub records: usize,
    /// The first record that does not chain; `None` when the chain holds (an anchor may
    /// still fail: see `reason`).
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
    /// The hash of the last record when the chain holds: with `records`, a checkpoint to
    /// keep outside the server.
    #[serde(default)]
    pub head: Option<String>,
    /// Whether the server holds an audit key and checked the chain against its signed head.
    #[serde(default)]
    pub keyed: bool,
    /// The checkpoint given as `?head=&count=&mac=`, when one was.
    #[serde(default)]
    pub checkpoint: Option<CheckpointCheck>,
}

/// A checkpoint checked against the chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct CheckpointCheck {
    pub head: String,
    /// The record count the checkpoint was taken at, as given.
    pub records: Option<i64>,
    /// The record that has the checkpoint's hash; `None` when no record has it any more.
    pub at_record: Option<i64>,
    /// Whether its MAC is this server's (only with a MAC and an audit key).
    pub signed: Option<bool>,
}

impl From<&oneoff_core::audit::AuditRecord> for AuditRecord {
    fn from(record: &oneoff_core::audit::AuditRecord) -> AuditRecord {
        let entry = &record.entry;
        AuditRecord {
            id: record.id,
            at: timestamp(entry.at_us),
            actor: entry.actor.clone(),
            source: entry.source.clone(),
            client: entry.client.clone(),
            action: entry.action.code(),
            message: entry.message.clone(),
            job: entry.job.clone(),
            run_id: entry.run_id,
            detail: serde_json::from_str(&entry.detail).unwrap_or(Value::String(entry.detail.clone())),
            hash: record.hash.clone(),
        }
    }
}
