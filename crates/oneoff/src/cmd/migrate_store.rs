//! `oneoff migrate-store --from URL --to URL [--allow-live]`: copies a whole store (runs, logs,
//! tokens, the audit chain and its signed head) into a new, empty one, then reads both again
//! and proves the copy identical before it says so. Moving up from one machine is
//! `--from sqlite:PATH --to postgres://…`; the other way works the same.
//!
//! A URL may hold a password: it is shown as `***` in everything this command prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use oneoff_core::StoreUrl;
use oneoff_store::{CopyError, LiveRuns, PostgresOptions, Store, StoreContents};

use super::UsageError;
use crate::cli::MigrateStoreArgs;
use crate::output;

pub async fn run(args: MigrateStoreArgs) -> anyhow::Result<ExitCode> {
    let from = StoreUrl::parse(&args.from).map_err(|problem| UsageError(format!("--from: {problem}")))?;
    let to = StoreUrl::parse(&args.to).map_err(|problem| UsageError(format!("--to: {problem}")))?;
    if same_store(&from, &to) {
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
        StoreUrl::Postgres(url) => {
            Store::open_postgres(url.connect_text_with_password(), &PostgresOptions::default()).await?
        }
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

/// Whether both name the same database: the same file (by its real path), or the same
/// server and database name.
fn same_store(one: &StoreUrl, other: &StoreUrl) -> bool {
    match (one, other) {
        (StoreUrl::Sqlite(one), StoreUrl::Sqlite(other)) => real_path(one) == real_path(other),
        (StoreUrl::Postgres(one), StoreUrl::Postgres(other)) => {
            database_of(one.connect_text_with_password()) == database_of(other.connect_text_with_password())
        }
        _ => false,
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
    fn the_same_database_is_seen_through_different_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("oneoff.db");
        let dotted = dir.path().join("sub").join("..").join("oneoff.db");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let same =
            |one: String, other: String| same_store(&StoreUrl::parse(&one).unwrap(), &StoreUrl::parse(&other).unwrap());
        assert!(same(format!("sqlite:{}", file.display()), format!("sqlite:{}", dotted.display())));
        assert!(!same(format!("sqlite:{}", file.display()), format!("sqlite:{}.new", file.display())));
        let one = || "postgres://a:x@DB:5432/oneoff".to_string();
        assert!(same(one(), "postgresql://b@db/oneoff".into()));
        assert!(!same(one(), "postgres://a@db/other".into()));
        assert!(!same(one(), "postgres://a@db:5433/oneoff".into()));
    }
}
