//! Where the store is: a SQLite file or a PostgreSQL URL, and the name of this replica.
//!
//! `[server] database`, `ONEOFF_DATABASE` and `--database` are parsed here into a
//! [`StoreUrl`], and checked before anything connects, so that a mistake is reported in our
//! words at start instead of as a driver's error later. A PostgreSQL URL may hold a password:
//! nothing here shows it. `Display`, `Debug` and every error message give the URL with the
//! password as `***`; only [`PostgresUrl::connect_text_with_password`] gives the full text,
//! for the driver and nothing else.
//!
//! [`ReplicaName`] is the name a replica goes by in the store (`[server] replica`); when none
//! is configured the server derives one from the hostname with [`default_replica_name`].

use std::fmt;
use std::path::PathBuf;

use url::Url;

use crate::suggest;

/// The database file's name inside `data_dir` when no `database` is configured.
pub const SQLITE_FILE: &str = "oneoff.db";

/// What goes in place of a password wherever a URL is shown.
const PASSWORD_MASK: &str = "***";

/// The database a replica stores everything in.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An embedded SQLite database in this file, for one machine.
    Sqlite(PathBuf),
    /// A PostgreSQL database, which several replicas can share.
    Postgres(PostgresUrl),
}

/// A checked `postgres://` URL, kept exactly as written for the driver.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    text: String,
    /// The same URL with any password replaced by `***`, computed once.
    redacted: String,
}

/// The query parameters the PostgreSQL driver (sqlx) understands. Any other one it would
/// ignore with a warning in the log, so that a typo such as `sslmod=require` would silently
/// drop the demand for TLS: it is refused instead.
const POSTGRES_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];
/// Parameters whose value is a secret, masked like the password of the authority.
const SECRET_PARAMETERS: &[&str] = &["password"];
const SSL_MODES: &[&str] = &["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];
const SSL_MODE_ALIASES: &[(&str, &str)] =
    &[("true", "require"), ("on", "require"), ("false", "disable"), ("off", "disable"), ("verify", "verify-full")];

const SCHEMES_HINT: &str = "the database URL must start with postgres:// (PostgreSQL) or sqlite: (a SQLite file); \
                            without `database`, oneoff uses SQLite in data_dir";
const POSTGRES_SHAPE: &str = "postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE";

impl StoreUrl {
    /// Parses `sqlite:PATH`, `sqlite://PATH`, `postgres://…` or `postgresql://…`. A relative
    /// SQLite path is returned as written; the caller resolves it. The error never holds the
    /// password, nor any part of the URL that could be one.
    pub fn parse(text: &str) -> Result<StoreUrl, String> {
        let text = text.trim();
        let Some((scheme, rest)) = text.split_once(':') else { return Err(SCHEMES_HINT.to_string()) };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => parse_sqlite(rest).map(StoreUrl::Sqlite),
            "postgres" | "postgresql" => PostgresUrl::parse(text).map(StoreUrl::Postgres),
            // Only a word can be quoted back: text before a `:` may be a user name and a
            // password written without a scheme.
            other
                if !other.is_empty()
                    && other.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"+.-".contains(&byte)) =>
            {
                Err(format!("`{other}:` is not a database oneoff can use: {SCHEMES_HINT}"))
            }
            _ => Err(SCHEMES_HINT.to_string()),
        }
    }

    /// The URL for logs and messages: a PostgreSQL password shows as `***`.
    pub fn redacted(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreUrl::Postgres(url) => url.fmt(f),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreUrl::Postgres(url) => f.debug_tuple("Postgres").field(url).finish(),
        }
    }
}

fn parse_sqlite(rest: &str) -> Result<PathBuf, String> {
    // `sqlite:///abs/path` and `sqlite://rel/path` as sqlx writes them, `sqlite:path` as well.
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.is_empty() {
        return Err("a SQLite URL needs the database file's path, e.g. sqlite:/var/lib/oneoff/oneoff.db".to_string());
    }
    if path == ":memory:" || path.starts_with("file::memory:") {
        return Err("an in-memory SQLite database would lose every run at stop: give a file's path, \
                    e.g. sqlite:/var/lib/oneoff/oneoff.db"
            .to_string());
    }
    if path.contains('?') {
        return Err("a SQLite URL takes no parameters (`?…`): write sqlite:PATH, oneoff sets the options".to_string());
    }
    if path.contains('\0') {
        return Err("the SQLite path contains a NUL character, which no path can hold".to_string());
    }
    Ok(PathBuf::from(path))
}

impl PostgresUrl {
    fn parse(text: &str) -> Result<PostgresUrl, String> {
        let url = Url::parse(text).map_err(|error| {
            // The parser's message names no part of the text, so it cannot give away a password.
            format!("the PostgreSQL URL is not a valid URL ({error}); write {POSTGRES_SHAPE}")
        })?;
        if url.fragment().is_some() {
            // What follows a `#` is cut off the URL, often the rest of a password.
            return Err("the PostgreSQL URL holds a `#`: write it as %23 in a password".to_string());
        }
        let mut host_parameter = false;
        let mut database_parameter = false;
        for (key, value) in url.query_pairs() {
            let known = POSTGRES_PARAMETERS.contains(&key.as_ref()) || is_options_entry(&key);
            if !known {
                return Err(unknown_parameter(&url, &key));
            }
            match key.as_ref() {
                // The driver reads the mode in any case.
                "sslmode" | "ssl-mode" if !SSL_MODES.contains(&value.to_ascii_lowercase().as_str()) => {
                    return Err(format!(
                        "sslmode `{value}` is not one of {}{}",
                        SSL_MODES.join(", "),
                        suggest::hint(&value, SSL_MODES, SSL_MODE_ALIASES)
                    ))
                }
                "port" if value.parse::<u16>().is_err() => {
                    return Err("the PostgreSQL URL's `port` parameter is not a port number".to_string())
                }
                "hostaddr" if value.parse::<std::net::IpAddr>().is_err() => {
                    return Err("the PostgreSQL URL's `hostaddr` parameter is not an IP address".to_string())
                }
                "statement-cache-capacity" if value.parse::<usize>().is_err() => {
                    return Err("the PostgreSQL URL's `statement-cache-capacity` is not a number".to_string())
                }
                "host" | "hostaddr" if !value.is_empty() => host_parameter = true,
                "dbname" if !value.is_empty() => database_parameter = true,
                _ => {}
            }
        }
        // A host is either in the authority or, for a Unix socket directory, a parameter.
        if url.host_str().is_none_or(str::is_empty) && !host_parameter {
            return Err(format!(
                "the PostgreSQL URL has no host: write {POSTGRES_SHAPE} (or ?host=/run/postgresql for a Unix socket)"
            ));
        }
        let path = url.path().trim_start_matches('/');
        if path.contains('/') {
            return Err(format!("the PostgreSQL URL's path must be only the database name: write {POSTGRES_SHAPE}"));
        }
        if path.is_empty() && !database_parameter {
            return Err(format!(
                "the PostgreSQL URL names no database: write {POSTGRES_SHAPE}, e.g. postgres://oneoff@db/oneoff"
            ));
        }
        Ok(PostgresUrl { text: text.to_string(), redacted: redact(&url) })
    }

    /// The whole URL, password included, to hand to the driver. Never log or show it: use
    /// `Display` or [`StoreUrl::redacted`] for that.
    pub fn connect_text_with_password(&self) -> &str {
        &self.text
    }

    /// The URL with its password as `***`, for logs and messages.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The file `sslrootcert` (or `ssl-root-cert`, `ssl-ca`) names: the CA certificate the
    /// database server's certificate is checked against. The last one wins, as in the driver.
    pub fn root_certificate(&self) -> Option<PathBuf> {
        let url = Url::parse(&self.text).ok()?;
        let names = ["sslrootcert", "ssl-root-cert", "ssl-ca"];
        let root = url.query_pairs().filter(|(key, _)| names.contains(&key.as_ref())).last();
        root.map(|(_, path)| PathBuf::from(path.as_ref()))
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({:?})", self.redacted)
    }
}

/// The error for a parameter the driver would ignore. Its name is quoted only when it looks
/// like a name written as `name=value`: `?hunter2` may be a password in the wrong place.
fn unknown_parameter(url: &Url, key: &str) -> String {
    let written_as_pair = url.query().unwrap_or_default().split('&').any(|pair| pair.starts_with(&format!("{key}=")));
    let looks_like_a_name =
        key.len() <= 32 && key.bytes().all(|byte| byte.is_ascii_lowercase() || b"_-".contains(&byte));
    let known = POSTGRES_PARAMETERS.join(", ");
    if written_as_pair && looks_like_a_name {
        let hint = suggest::hint(key, POSTGRES_PARAMETERS, &[("ssl", "sslmode"), ("database", "dbname")]);
        format!(
            "the PostgreSQL URL has a parameter `{key}` that oneoff's driver does not know{hint} (it knows {known})"
        )
    } else {
        format!("the PostgreSQL URL has a parameter that oneoff's driver does not know (it knows {known})")
    }
}

/// `options[statement_timeout]=…` style entries, which the driver passes to the server.
fn is_options_entry(key: &str) -> bool {
    key.strip_prefix("options[").is_some_and(|rest| rest.ends_with(']'))
}

fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only fails for URLs that cannot have a password, and this one has one.
        let _ = shown.set_password(Some(PASSWORD_MASK));
    }
    if url.query_pairs().any(|(key, _)| SECRET_PARAMETERS.contains(&key.as_ref())) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if SECRET_PARAMETERS.contains(&key.as_ref()) { PASSWORD_MASK.into() } else { value.into() };
                (key.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// A replica's name: 1 to 63 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or a
/// digit (a hostname's label fits, so does a Kubernetes pod name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaName(String);

/// The longest replica name: a DNS label's limit, so every pod name fits.
pub const MAX_REPLICA_NAME_CHARS: usize = 63;

impl ReplicaName {
    pub fn parse(text: &str) -> Result<ReplicaName, String> {
        let shape = "1 to 63 characters of letters, digits, `.`, `_` and `-`, starting with a letter or a digit";
        let valid = (1..=MAX_REPLICA_NAME_CHARS).contains(&text.len())
            && text.bytes().all(is_replica_name_byte)
            && text.bytes().next().is_some_and(|first| first.is_ascii_alphanumeric());
        if valid {
            Ok(ReplicaName(text.to_string()))
        } else if text.is_empty() {
            Err(format!("the replica name is empty: give {shape}, or leave it out to use the hostname"))
        } else {
            // Only a bounded, printable piece of the text is quoted back.
            let quoted: String = text.chars().take(80).map(|c| if c.is_control() { '?' } else { c }).collect();
            Err(format!("replica name `{quoted}` must be {shape}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_replica_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"._-".contains(&byte)
}

/// The replica name for a host when none is configured: the hostname with every character
/// a name cannot hold replaced by `-`, anything before its first letter or digit dropped,
/// cut to 63 characters; `oneoff` if nothing is left.
pub fn default_replica_name(hostname: &str) -> ReplicaName {
    let replaced: String = hostname
        .trim()
        .chars()
        .map(|c| if c.is_ascii() && is_replica_name_byte(c as u8) { c } else { '-' })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(MAX_REPLICA_NAME_CHARS)
        .collect();
    let name = if replaced.is_empty() { "oneoff".to_string() } else { replaced };
    ReplicaName(name)
}

#[cfg(test)]
mod tests;
