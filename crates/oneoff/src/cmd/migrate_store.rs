//! `oneoff migrate-store --from URL --to URL [--allow-live]`: copies a whole store (runs, logs,
//! tokens, the audit chain and its signed head) into a new, empty one, then reads both again
//! and proves the copy identical before it says so. Moving up from one machine is
//! `--from sqlite:PATH --to postgres://…`; the other way works the same.
//!
//! A URL may hold a password: it is shown as `***` in everything this command prints.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use oneoff_store::{CopyError, LiveRuns, PostgresOptions, Store, StoreContents};

use super::UsageError;
use crate::cli::MigrateStoreArgs;
use crate::output;

pub async fn run(args: MigrateStoreArgs) -> anyhow::Result<ExitCode> {
    let from = StoreUrl::parse(&args.from).map_err(|problem| UsageError(format!("--from: {problem}")))?;
    let to = StoreUrl::parse(&args.to).map_err(|problem| UsageError(format!("--to: {problem}")))?;
    if from.same_store(&to) {
        return Err(UsageError(format!(
            "--from and --to are the same store ({from}): give a new, empty database as --to"
        ))
        .into());
    }
    if let StoreUrl::Sqlite(path) = &from {
        // Opening would create an empty file, and the copy of nothing would succeed.
        if !path.is_file() {
            return Err(UsageError(format!("--from: there is no SQLite database at {}", path.display())).into());
        }
    }
    if let StoreUrl::Sqlite(path) = &to {
        let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(UsageError(format!(
                "--to: the directory {} does not exist: create it, or give a path in an existing directory",
                dir.display()
            ))
            .into());
        }
    }
    let started = Instant::now();
    let source = open(&from).await.with_context(|| format!("cannot open the source store {from}"))?;
    let target = open(&to).await.with_context(|| format!("cannot open the target store {to}"))?;
    let live_runs = if args.allow_live { LiveRuns::Copy } else { LiveRuns::Refuse };
    let copied = copy(&source, &target, live_runs, &from, &to).await;
    source.close().await;
    target.close().await;
    let contents = copied?;
    output::stdout(&summary(&from, &to, &contents, started.elapsed().as_secs_f64()))?;
    Ok(ExitCode::SUCCESS)
}

async fn copy(
    source: &Store,
    target: &Store,
    live_runs: LiveRuns,
    from: &StoreUrl,
    to: &StoreUrl,
) -> anyhow::Result<StoreContents> {
    const START_OVER: &str = "the target is partly written: start over with a new, empty database";
    // A large store takes minutes each way: say what is going on (stderr, so the summary stays alone on stdout).
    output::stderr_line(&format!("oneoff: copying {from} to {to}"));
    match source.copy_into(target, live_runs).await {
        Ok(()) => {}
        Err(CopyError::TargetNotEmpty { runs, tokens, audit_records }) => {
            return Err(UsageError(format!(
                "the target {to} is not empty (it holds {runs} runs, {tokens} tokens and {audit_records} audit \
                 records): migrate-store copies only into an empty store, so that nothing is mixed or overwritten. \
                 Start over with a new, empty database (PostgreSQL: `createdb NAME`; SQLite: the path of a file \
                 that does not exist yet)"
            ))
            .into())
        }
        Err(CopyError::LiveRuns { running, queued }) => {
            return Err(UsageError(format!(
                "the source {from} has {running} running and {queued} queued runs, so a server may still be using \
                 it: stop the server (every replica) first, then run migrate-store again. With --allow-live they \
                 are copied as they are: the new store's first start marks the running ones lost and starts the \
                 queued ones"
            ))
            .into())
        }
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!("the copy into {to} stopped; {START_OVER}")))
        }
    }
    output::stderr_line("oneoff: copied; reading both stores again to verify the copy");
    match source.compare_copy(target).await {
        Ok(contents) => Ok(contents),
        Err(CopyError::SourceChainBroken { record, reason }) => Err(anyhow::anyhow!(
            "the source's audit chain is broken at record {record} ({reason}); it was copied as it is, and \
             `oneoff audit verify` on the new store will report the same break. Find out what happened to the \
             source before you use the copy"
        )),
        Err(CopyError::Mismatch(difference)) => Err(anyhow::anyhow!(
            "the copy in {to} is NOT identical to the source: {difference}. Do not use it: was a server still \
             writing to the source? Stop it, then start over with a new, empty database"
        )),
        Err(error) => Err(anyhow::Error::new(error).context(format!("cannot check the copy in {to}"))),
    }
}

async fn open(url: &StoreUrl) -> anyhow::Result<Store> {
    Ok(match url {
        StoreUrl::Sqlite(path) => Store::open_sqlite(path).await?,
        StoreUrl::Postgres { url, .. } => Store::open_postgres(url, &PostgresOptions::default()).await?,
    })
}

fn summary(from: &StoreUrl, to: &StoreUrl, contents: &StoreContents, seconds: f64) -> String {
    let signed = match &contents.signed_head {
        Some(_) => "copied",
        None => "none (the source's server had no audit key)",
    };
    format!(
        "copied {from} to {to}\n\
         runs:          {}\n\
         log chunks:    {}\n\
         log lines:     {}\n\
         log bytes:     {} (as stored)\n\
         tokens:        {}\n\
         audit records: {}\n\
         audit head:    {}\n\
         signed head:   {signed}\n\
         time:          {seconds:.2} s\n\
         verified: every table's rows, every run's stored log byte for byte, and the audit chain, which verifies \
         on the target with the source's head\n",
        contents.runs,
        contents.log_chunks,
        contents.log_lines,
        contents.log_bytes,
        contents.tokens,
        contents.audit_records,
        contents.audit_head.hash,
    )
}

/// Where a store is: `sqlite:PATH` or a `postgres://` URL, whose password is never shown.
// A stand-in until `oneoff_core::StoreUrl` (the config's parser) is in main.
#[derive(Debug)]
enum StoreUrl {
    Sqlite(PathBuf),
    Postgres { url: String, shown: String },
}

impl StoreUrl {
    /// The error never holds the text: a password in it would be shown.
    fn parse(text: &str) -> Result<StoreUrl, String> {
        const SHAPE: &str = "write sqlite:PATH or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE";
        let text = text.trim();
        let (scheme, rest) = text.split_once(':').ok_or_else(|| format!("not a store URL: {SHAPE}"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() || path.contains('?') || path.starts_with(":memory:") {
                    return Err(format!("a SQLite URL is sqlite: and a database file's path: {SHAPE}"));
                }
                Ok(StoreUrl::Sqlite(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => {
                let mut parsed = url::Url::parse(text)
                    .map_err(|error| format!("the PostgreSQL URL is not a valid URL ({error}): {SHAPE}"))?;
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(format!("the PostgreSQL URL has no host: {SHAPE}"));
                }
                if parsed.path().trim_start_matches('/').is_empty() {
                    return Err(format!("the PostgreSQL URL names no database: {SHAPE}"));
                }
                if parsed.password().is_some() {
                    // Cannot fail: the URL has a host.
                    let _ = parsed.set_password(Some("***"));
                }
                Ok(StoreUrl::Postgres { url: text.to_string(), shown: parsed.to_string() })
            }
            _ => Err(format!("not a store URL: {SHAPE}")),
        }
    }

    /// Whether both name the same database: the same file (by its real path), or the same
    /// server and database name.
    fn same_store(&self, other: &StoreUrl) -> bool {
        match (self, other) {
            (StoreUrl::Sqlite(one), StoreUrl::Sqlite(other)) => real_path(one) == real_path(other),
            (StoreUrl::Postgres { url: one, .. }, StoreUrl::Postgres { url: other, .. }) => {
                database_of(one) == database_of(other)
            }
            _ => false,
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreUrl::Postgres { shown, .. } => f.write_str(shown),
        }
    }
}

/// The file's path with links and `..` resolved, for a file that may not exist yet too.
fn real_path(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.join(path.file_name().unwrap_or_default())
}

/// Host, port and database name: what makes two PostgreSQL URLs one database.
fn database_of(text: &str) -> Option<(String, u16, String)> {
    let url = url::Url::parse(text).ok()?;
    Some((url.host_str()?.to_ascii_lowercase(), url.port().unwrap_or(5432), url.path().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_never_shown_nor_in_an_error() {
        let url = StoreUrl::parse("postgres://oneoff:hunter2@db.internal:6432/oneoff?sslmode=require").unwrap();
        assert_eq!(url.to_string(), "postgres://oneoff:***@db.internal:6432/oneoff?sslmode=require");
        for broken in
            ["postgres://oneoff:hunter2@/oneoff", "postgres://oneoff:hunter2@db", "postgres://oneoff:hunter2@db:x/a"]
        {
            let problem = StoreUrl::parse(broken).unwrap_err();
            assert!(!problem.contains("hunter2"), "{problem}");
        }
        assert_eq!(
            StoreUrl::parse("sqlite:/var/lib/oneoff/oneoff.db").unwrap().to_string(),
            "sqlite:/var/lib/oneoff/oneoff.db"
        );
        assert!(StoreUrl::parse("mysql://a@b/c").is_err());
        assert!(StoreUrl::parse("sqlite:").is_err());
    }

    #[test]
    fn the_same_database_is_seen_through_different_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("oneoff.db");
        let dotted = dir.path().join("sub").join("..").join("oneoff.db");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let parse = |text: String| StoreUrl::parse(&text).unwrap();
        assert!(parse(format!("sqlite:{}", file.display())).same_store(&parse(format!("sqlite:{}", dotted.display()))));
        assert!(
            !parse(format!("sqlite:{}", file.display())).same_store(&parse(format!("sqlite:{}.new", file.display())))
        );
        let one = parse("postgres://a:x@DB:5432/oneoff".into());
        assert!(one.same_store(&parse("postgresql://b@db/oneoff".into())));
        assert!(!one.same_store(&parse("postgres://a@db/other".into())));
        assert!(!one.same_store(&parse("postgres://a@db:5433/oneoff".into())));
    }
}
