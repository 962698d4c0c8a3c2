//! Settings from the environment: `ONEOFF_<SECTION>__<KEY>` sets `[section] key` as if it
//! were written in the file, over the file's own value.
//!
//! Every setting of the file has one variable (a nested key adds its table:
//! `ONEOFF_AUTH__TRUSTED_HEADERS__USER_HEADER`); only the lists of tables, `[[job]]` and
//! `[[auth.jwt]]`, are the file's alone. A value is read as its setting's type (a string as
//! it is, a number, `true`/`false`, a list as TOML `["a", "b"]` or `a,b`), checked here, then
//! written as TOML into a copy of the file text: the file's own line for that key is blanked
//! (same length, so every position in the file stays where it was) and the setting inserted
//! under its table's header. The rest of validation then runs once over that text, and a
//! problem whose span falls in an inserted piece is reported with the variable's name
//! ([`Overlay::place`]) instead of a line and column.
//!
//! A variable whose name looks like a setting but is none (a typo, one underscore where two
//! belong, a key without its section) is refused with the one it likely meant, so that a
//! misspelt setting is never silently ignored; the other variables oneoff reads
//! ([`OWN_VARIABLES`]) and any unrelated `ONEOFF_` name are left alone.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::ops::Range;

use crate::suggest;

/// What a setting's value is, as the file's parser would read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A TOML string in the file: the variable's value as it is.
    Text,
    Boolean,
    /// A whole number from 0 to `max` (the file's `u32` or `usize`).
    Count {
        max: i64,
    },
    /// An array of strings.
    Texts,
}

const U32: Kind = Kind::Count { max: u32::MAX as i64 };
const USIZE: Kind = Kind::Count { max: i64::MAX };

/// One setting of the file: its table path and key, and its kind.
struct Setting {
    path: &'static [&'static str],
    kind: Kind,
}

const fn setting(path: &'static [&'static str], kind: Kind) -> Setting {
    Setting { path, kind }
}

/// Every setting of the file that a variable can set. A test checks it against the keys the
/// parser accepts, so a new key cannot be left without its variable.
const SETTINGS: &[Setting] = &[
    setting(&["server", "listen"], Kind::Text),
    setting(&["server", "data_dir"], Kind::Text),
    setting(&["server", "max_concurrent_runs"], U32),
    setting(&["server", "max_queued_runs"], U32),
    setting(&["server", "drain"], Kind::Text),
    setting(&["server", "retention"], Kind::Text),
    setting(&["server", "max_body_bytes"], USIZE),
    setting(&["server", "max_line_bytes"], USIZE),
    setting(&["server", "partial_line_flush"], Kind::Text),
    setting(&["server", "store_wait"], Kind::Text),
    setting(&["server", "long_poll_max"], Kind::Text),
    setting(&["server", "public_origins"], Kind::Texts),
    setting(&["server", "cgroup"], Kind::Text),
    setting(&["server", "database"], Kind::Text),
    setting(&["server", "replica"], Kind::Text),
    setting(&["server", "replica_timeout"], Kind::Text),
    setting(&["server", "database_pool"], U32),
    setting(&["server", "database_statement_timeout"], Kind::Text),
    setting(&["server", "log_format"], Kind::Text),
    setting(&["server", "base_path"], Kind::Text),
    setting(&["server", "metrics"], Kind::Text),
    setting(&["server", "metrics_cidrs"], Kind::Texts),
    setting(&["streams", "ws_ping_interval"], Kind::Text),
    setting(&["streams", "sse_ping_interval"], Kind::Text),
    setting(&["streams", "max_message_bytes"], USIZE),
    setting(&["streams", "max_viewer_buffer_bytes"], USIZE),
    setting(&["streams", "viewer_send_timeout"], Kind::Text),
    setting(&["streams", "max_viewers_per_run"], USIZE),
    setting(&["streams", "max_connections"], USIZE),
    setting(&["streams", "live_cache_bytes"], USIZE),
    setting(&["debug", "echo"], Kind::Boolean),
    setting(&["debug", "redact_headers"], Kind::Texts),
    setting(&["auth", "anonymous"], Kind::Boolean),
    setting(&["auth", "admins", "users"], Kind::Texts),
    setting(&["auth", "admins", "groups"], Kind::Texts),
    setting(&["auth", "trusted_headers", "trusted_cidrs"], Kind::Texts),
    setting(&["auth", "trusted_headers", "user_header"], Kind::Text),
    setting(&["auth", "trusted_headers", "email_header"], Kind::Text),
    setting(&["auth", "trusted_headers", "groups_header"], Kind::Text),
    setting(&["auth", "stream_ticket_ttl"], Kind::Text),
    setting(&["auth", "max_stream_tickets"], USIZE),
    setting(&["auth", "max_stream_tickets_per_user"], USIZE),
    setting(&["audit", "key_file"], Kind::Text),
    setting(&["audit", "checkpoint_interval"], Kind::Text),
    setting(&["audit", "denial_window"], Kind::Text),
];

/// Lists of tables: only the file holds them (a catalog is no environment variable).
const FILE_ONLY: &[&[&str]] = &[&["job"], &["auth", "jwt"]];

/// The variables oneoff reads besides the settings: never refused, whatever they look like.
pub const OWN_VARIABLES: &[&str] = &[
    "ONEOFF_CONFIG",
    "ONEOFF_LISTEN",
    "ONEOFF_DATA_DIR",
    "ONEOFF_DATABASE",
    "ONEOFF_REPLICA",
    "ONEOFF_LOG_FORMAT",
    "ONEOFF_BASE_PATH",
    "ONEOFF_AUDIT_KEY",
    "ONEOFF_LOG",
    "ONEOFF_SERVER",
    "ONEOFF_TOKEN",
    // Set by the server for every run, so a job may call oneoff itself.
    "ONEOFF_RUN_ID",
    "ONEOFF_JOB",
];

/// The single variables that set a `[server]` setting too (through their flag's argument):
/// one of them and the setting's own variable with different values is a mistake.
const SINGLE_VARIABLES: &[(&str, &str)] = &[
    ("ONEOFF_LISTEN", "listen"),
    ("ONEOFF_DATA_DIR", "data_dir"),
    ("ONEOFF_DATABASE", "database"),
    ("ONEOFF_REPLICA", "replica"),
    ("ONEOFF_LOG_FORMAT", "log_format"),
    ("ONEOFF_BASE_PATH", "base_path"),
];

const PREFIX: &str = "ONEOFF_";

impl Setting {
    fn variable(&self) -> String {
        format!("{PREFIX}{}", self.path.join("__").to_ascii_uppercase())
    }

    /// `[server] listen`, `[auth.trusted_headers] user_header`.
    fn label(&self) -> String {
        let (key, table) = self.path.split_last().unwrap_or((&"", &[]));
        format!("[{}] {key}", table.join("."))
    }
}

/// The `ONEOFF_` variables of the process, as the caller read them (core does no IO).
#[derive(Clone, Default)]
pub struct Environment {
    variables: Vec<(OsString, OsString)>,
}

impl fmt::Debug for Environment {
    /// Names only: a value may be a database URL with its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.variables.iter().map(|(name, _)| name)).finish()
    }
}

impl Environment {
    /// Keeps the variables whose name starts with `ONEOFF_` (of `std::env::vars_os()`).
    pub fn from_variables(variables: impl IntoIterator<Item = (OsString, OsString)>) -> Environment {
        let mut variables: Vec<(OsString, OsString)> =
            variables.into_iter().filter(|(name, _)| name.as_encoded_bytes().starts_with(PREFIX.as_bytes())).collect();
        variables.sort();
        Environment { variables }
    }

    /// The settings the environment sets, as `(variable, "[server] listen")`, for
    /// `check-config` to show (never their values). Only well-formed, non-empty ones.
    pub fn settings_given(&self) -> Vec<(String, String)> {
        let read = self.read();
        let mut given: Vec<(String, String)> =
            read.values.iter().map(|value| (value.variable.clone(), value.setting.label())).collect();
        for (name, value) in &self.variables {
            let Some(name) = name.to_str() else { continue };
            let Some((_, key)) = SINGLE_VARIABLES.iter().find(|(single, _)| *single == name) else { continue };
            if !value.to_string_lossy().trim().is_empty() {
                given.push((name.to_string(), format!("[server] {key}")));
            }
        }
        given.sort();
        given
    }

    /// Every name and value checked: the settings to lay over the file, and the mistakes.
    fn read(&self) -> Read {
        let mut read = Read::default();
        for (name, value) in &self.variables {
            let Some(name) = name.to_str() else {
                let shown = name.to_string_lossy();
                if shown.contains("__") {
                    read.problem(&shown, "the variable's name is not UTF-8 text, so it names no setting: unset it");
                }
                continue;
            };
            let Some(setting) = setting_named(name, &mut read) else { continue };
            let Some(value) = value.to_str() else {
                read.problem(name, "the value is not UTF-8 text: give it as UTF-8");
                continue;
            };
            // As for ONEOFF_LISTEN and the others: an empty variable is an unset one.
            if value.trim().is_empty() {
                continue;
            }
            match toml_value(setting.kind, value) {
                Ok(toml) => read.values.push(Value { variable: name.to_string(), setting, toml }),
                Err(message) => read.problem(name, message),
            }
        }
        for value in &read.values {
            let [table, key] = value.setting.path else { continue };
            if *table != "server" {
                continue;
            }
            let Some((single, _)) = SINGLE_VARIABLES.iter().find(|(_, single_key)| single_key == key) else {
                continue;
            };
            let other = self.variables.iter().find(|(name, _)| name.to_str() == Some(single));
            let Some(other) = other.and_then(|(_, other)| other.to_str()).filter(|other| !other.trim().is_empty())
            else {
                continue;
            };
            if toml_value(Kind::Text, other).ok().as_deref() != Some(value.toml.as_str()) {
                let message = format!("{single} sets {key} too, to another value: unset one of them");
                read.problems.push((value.variable.clone(), message));
            }
        }
        read
    }
}

#[derive(Default)]
struct Read {
    values: Vec<Value>,
    /// `(variable, message)`.
    problems: Vec<(String, String)>,
}

impl Read {
    fn problem(&mut self, variable: &str, message: impl Into<String>) {
        self.problems.push((variable.to_string(), message.into()));
    }
}

/// A setting from a variable, as the TOML text of its value.
struct Value {
    variable: String,
    setting: &'static Setting,
    toml: String,
}

/// The setting `name` sets; `None` for a name that is no setting (a mistake is noted in `read`).
fn setting_named(name: &str, read: &mut Read) -> Option<&'static Setting> {
    if OWN_VARIABLES.contains(&name) || name.starts_with("ONEOFF_PARAM_") {
        return None;
    }
    let rest = name.strip_prefix(PREFIX)?;
    let variables: Vec<String> = SETTINGS.iter().map(Setting::variable).collect();
    let known: Vec<&str> = variables.iter().map(String::as_str).collect();
    if rest.contains("__") {
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if let Some(found) = SETTINGS.iter().find(|setting| setting.path == path.as_slice()) {
            if rest.chars().any(|c| c.is_ascii_lowercase()) {
                let message = format!("setting variables are upper case: write {}", found.variable());
                read.problem(name, message);
                return None;
            }
            return Some(found);
        }
        let within = |table: &&&[&str]| table.len() <= path.len() && table.iter().zip(&path).all(|(a, b)| a == b);
        if let Some(table) = FILE_ONLY.iter().find(within) {
            let message = format!(
                "[[{}]] comes only from the config file (a list of tables has no variable): write it there",
                table.join(".")
            );
            read.problem(name, message);
            return None;
        }
        let message = match suggest::did_you_mean(name, &known, &[]) {
            Some(meant) => format!("no such setting: did you mean {meant}?"),
            None => "no such setting: a setting's variable is ONEOFF_<SECTION>__<KEY>, such as \
                     ONEOFF_SERVER__MAX_BODY_BYTES (docs/configuration.md lists them all); unset it"
                .to_string(),
        };
        read.problem(name, message);
        return None;
    }
    // One underscore where two belong, or a key without its section: refused only when it
    // is exactly a setting's name that way, so an unrelated ONEOFF_ variable stays fine.
    let lowered = rest.to_ascii_lowercase();
    let meant = SETTINGS.iter().find(|setting| {
        let joined = setting.path.join("_");
        joined == lowered || setting.path.last() == Some(&lowered.as_str())
    });
    if let Some(meant) = meant {
        read.problem(name, format!("no such variable: did you mean {}?", meant.variable()));
    }
    None
}

/// The value as TOML text of the setting's kind, or what is wrong with it.
fn toml_value(kind: Kind, value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    let toml = match kind {
        Kind::Text if trimmed.starts_with('"') || trimmed.starts_with('\'') => {
            match trimmed.parse::<toml_edit::Value>() {
                Ok(toml_edit::Value::String(text)) => toml::Value::String(text.value().clone()),
                _ => {
                    return Err(format!(
                        "`{value}` starts with a quote but is not a TOML string: close the quotes, or leave them out \
                     (the value is taken as it is)"
                    ))
                }
            }
        }
        Kind::Text => toml::Value::String(value.to_string()),
        Kind::Boolean => match trimmed.to_ascii_lowercase().as_str() {
            "true" => toml::Value::Boolean(true),
            "false" => toml::Value::Boolean(false),
            _ => return Err(format!("`{value}` is not a boolean: write true or false")),
        },
        Kind::Count { max } => {
            let number = match trimmed.parse::<toml_edit::Value>() {
                Ok(toml_edit::Value::Integer(number)) => *number.value(),
                _ => return Err(format!("`{value}` is not a whole number: write digits only, such as 1048576")),
            };
            if !(0..=max).contains(&number) {
                return Err(format!("{number} is out of range: write a whole number from 0 to {max}"));
            }
            toml::Value::Integer(number)
        }
        Kind::Texts if trimmed.starts_with('[') => {
            let items = match trimmed.parse::<toml_edit::Value>() {
                Ok(toml_edit::Value::Array(items)) => items,
                _ => return Err(format!("`{value}` is not a TOML array: write [\"a\", \"b\"], or a,b")),
            };
            let texts: Option<Vec<toml::Value>> =
                items.iter().map(|item| item.as_str().map(|text| toml::Value::String(text.to_string()))).collect();
            match texts {
                Some(texts) => toml::Value::Array(texts),
                None => return Err(format!("`{value}` is not a list of strings: write [\"a\", \"b\"], or a,b")),
            }
        }
        Kind::Texts => toml::Value::Array(
            trimmed
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_string()))
                .collect(),
        ),
    };
    Ok(toml.to_string())
}

/// The file text with the environment's settings laid over it, and where each piece came from.
pub(super) struct Overlay {
    pub text: String,
    /// Inserted pieces, in order, each with the variable it holds.
    pieces: Vec<(Range<usize>, String)>,
}

/// Where a span of the overlaid text came from.
pub(super) enum Place<'a> {
    /// A byte offset in the file's own text.
    File(usize),
    Variable(&'a str),
}

impl Overlay {
    pub fn place(&self, offset: usize) -> Place<'_> {
        let mut inserted_before = 0;
        for (range, variable) in &self.pieces {
            if range.contains(&offset) {
                return Place::Variable(variable);
            }
            if range.end <= offset {
                inserted_before += range.len();
            }
        }
        Place::File(offset - inserted_before)
    }
}

/// The environment's settings laid over `text`: `Ok(None)` when it sets none (or the file is
/// not valid TOML, which the caller reports as it always has); the mistakes as
/// `(variable, message)`.
pub(super) fn lay_over(text: &str, environment: &Environment) -> (Option<Overlay>, Vec<(String, String)>) {
    let mut read = environment.read();
    if read.values.is_empty() {
        return (None, read.problems);
    }
    let Ok(document) = toml_edit::ImDocument::parse(text) else { return (None, read.problems) };
    let mut blanked = text.as_bytes().to_vec();
    // (offset in the file, text, variable); a table the file lacks is appended at the end.
    let mut inserts: Vec<(usize, String, String)> = Vec::new();
    let mut appended: BTreeMap<Vec<&str>, Vec<(String, String)>> = BTreeMap::new();
    for value in &read.values {
        let Some((key, table_path)) = value.setting.path.split_last() else { continue };
        let line = format!("{key} = {}", value.toml);
        match find_table(document.as_table(), table_path) {
            Err(problem) => {
                let message = format!(
                    "the config file writes [{}] {problem}; write it as a [{}] section so that a variable can set its keys",
                    table_path.join("."),
                    table_path.join(".")
                );
                read.problems.push((value.variable.clone(), message));
            }
            Ok(None) => appended.entry(table_path.to_vec()).or_default().push((line, value.variable.clone())),
            Ok(Some(table)) => {
                if let Some((file_key, item)) = table.get_key_value(key) {
                    match (file_key.span(), item.span(), item.is_value()) {
                        (Some(key_span), Some(value_span), true) => {
                            for byte in &mut blanked[key_span.start..value_span.end] {
                                if *byte != b'\n' {
                                    *byte = b' ';
                                }
                            }
                        }
                        _ => {
                            let message = format!(
                                "the config file writes {} as a table, not a value: write it as `{key} = ...`",
                                value.setting.label()
                            );
                            read.problems.push((value.variable.clone(), message));
                            continue;
                        }
                    }
                }
                match table.span().filter(|_| !table.is_implicit()) {
                    Some(header) => inserts.push((header.end, format!("\n{line}"), value.variable.clone())),
                    None => appended.entry(table_path.to_vec()).or_default().push((line, value.variable.clone())),
                }
            }
        }
    }
    for (table_path, lines) in appended {
        let mut first = true;
        for (line, variable) in lines {
            let header = if first { format!("\n[{}]", table_path.join(".")) } else { String::new() };
            first = false;
            inserts.push((text.len(), format!("{header}\n{line}"), variable));
        }
    }
    // Blanking replaced whole characters with spaces, so the bytes are still UTF-8.
    let blanked = String::from_utf8_lossy(&blanked).into_owned();
    inserts.sort_by_key(|(offset, _, _)| *offset);
    let mut overlaid = String::with_capacity(blanked.len() + 256);
    let mut pieces = Vec::new();
    let mut copied = 0;
    for (offset, piece, variable) in inserts {
        overlaid.push_str(&blanked[copied..offset]);
        copied = offset;
        let start = overlaid.len();
        overlaid.push_str(&piece);
        pieces.push((start..overlaid.len(), variable));
    }
    overlaid.push_str(&blanked[copied..]);
    (Some(Overlay { text: overlaid, pieces }), read.problems)
}

/// The file's table at `path`: `None` when the file does not have it (or only implicitly,
/// through a sub-table); an error for one written inline or with dotted keys, which no
/// header can extend.
fn find_table<'a>(root: &'a toml_edit::Table, path: &[&str]) -> Result<Option<&'a toml_edit::Table>, &'static str> {
    let mut table = root;
    for name in path {
        match table.get(name) {
            None => return Ok(None),
            Some(toml_edit::Item::Table(inner)) if inner.is_dotted() => return Err("with dotted keys"),
            Some(toml_edit::Item::Table(inner)) => table = inner,
            Some(toml_edit::Item::Value(toml_edit::Value::InlineTable(_))) => return Err("as an inline table"),
            Some(_) => return Err("as something other than a table"),
        }
    }
    Ok(Some(table))
}

/// Whether `name` is a setting's variable (`ONEOFF_SERVER__DATABASE`): the server keeps
/// these from the runs' environment, as it keeps `ONEOFF_AUDIT_KEY`.
pub fn is_setting_variable(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|name| SETTINGS.iter().any(|setting| setting.variable() == name))
}

/// Every variable a setting has, with the setting it sets: `("ONEOFF_SERVER__LISTEN", "[server] listen")`.
pub fn setting_variables() -> Vec<(String, String)> {
    SETTINGS.iter().map(|setting| (setting.variable(), setting.label())).collect()
}

#[cfg(test)]
pub(super) fn setting_paths() -> Vec<Vec<&'static str>> {
    SETTINGS.iter().map(|setting| setting.path.to_vec()).collect()
}

#[cfg(test)]
mod tests;
