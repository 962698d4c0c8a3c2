//! Copying a whole store into another, and proving the copy equal (`oneoff migrate-store`).
//!
//! Every table is read in pages in its key order and written into the target in one
//! transaction per page, with its ids, so memory and transaction size stay bounded whatever
//! the store holds. Rows travel as plain [`Value`]s, never through the domain types: a log
//! chunk is copied as the bytes it is stored as, never decoded and encoded again, and a
//! column is one line of [`TABLES`]. The backends only read and write pages of rows
//! (`sqlite/copy.rs`, `postgres/copy.rs`); everything else, the refusals and the
//! verification, is here, so both directions are the same code.
//!
//! [`Store::compare_copy`] reads both stores again, independently: counts and a digest of
//! every table, a digest of each run's stored chunks, and the audit chain verified on the
//! target with the source's head.

use oneoff_core::audit::{verify, ChainHead, SignedHead};
use oneoff_core::RunId;
use sha2::{Digest, Sha256};

use crate::{dispatch, Store, StoreError};

/// How a column's values are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// INTEGER in SQLite, BIGINT in PostgreSQL.
    Int,
    /// TEXT in both.
    Text,
    /// BLOB in SQLite, BYTEA in PostgreSQL.
    Blob,
}

/// One stored value, as it is in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// A table as the copy sees it: its columns and the key it is paged by.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    /// Every column the copy carries; a new column of the schema is one line here.
    pub(crate) columns: &'static [(&'static str, Kind)],
    /// The columns (a prefix of `columns`) that order the rows and tell them apart.
    pub(crate) key: usize,
    /// Rows per page (and per target transaction) at most.
    pub(crate) page_rows: usize,
    /// A column of large values whose sizes bound a page too.
    pub(crate) large: Option<LargeColumn>,
}

/// A BLOB column that bounds a page by bytes: a page holds rows up to `page_bytes` of it (at
/// least one row, however large), sized from the column's lengths before any value is read.
#[derive(Debug)]
pub(crate) struct LargeColumn {
    pub(crate) name: &'static str,
    pub(crate) page_bytes: i64,
}

impl Table {
    pub(crate) fn key_columns(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.columns[..self.key].iter().map(|(name, _)| *name)
    }
}

pub(crate) const RUNS: Table = Table {
    name: "runs",
    columns: &[
        ("id", Kind::Int),
        ("job", Kind::Text),
        ("status", Kind::Text),
        ("params", Kind::Text),
        ("argv", Kind::Text),
        ("requested_by", Kind::Text),
        ("created_at_us", Kind::Int),
        ("started_at_us", Kind::Int),
        ("finished_at_us", Kind::Int),
        ("exit_code", Kind::Int),
        ("signal", Kind::Int),
        ("error", Kind::Text),
        ("cgroup", Kind::Text),
        ("process_group", Kind::Int),
        ("leader_start_ticks", Kind::Int),
        ("boot_id", Kind::Text),
        ("replica", Kind::Text),
        ("held_by", Kind::Text),
        ("cancel_requested_at_us", Kind::Int),
    ],
    key: 1,
    page_rows: page_rows(500),
    large: None,
};

/// A chunk is one line of a trickle or up to 256 KiB of a firehose (or one longer line): pages
/// are bounded by bytes as well as by rows.
pub(crate) const LOG_CHUNKS: Table = Table {
    name: "log_chunks",
    columns: &[("run_id", Kind::Int), ("first_seq", Kind::Int), ("last_seq", Kind::Int), ("entries", Kind::Blob)],
    key: 2,
    page_rows: page_rows(1_000),
    large: Some(LargeColumn { name: "entries", page_bytes: if cfg!(test) { 300_000 } else { 8 << 20 } }),
};

/// In id order, so that a token's parent (always older) is written before it.
pub(crate) const TOKENS: Table = Table {
    name: "tokens",
    columns: &[
        ("id", Kind::Int),
        ("name", Kind::Text),
        ("user", Kind::Text),
        ("groups", Kind::Text),
        ("hash", Kind::Text),
        ("created_by", Kind::Text),
        ("created_at_us", Kind::Int),
        ("expires_at_us", Kind::Int),
        ("revoked_at_us", Kind::Int),
        ("last_used_us", Kind::Int),
        ("parent_id", Kind::Int),
    ],
    key: 1,
    page_rows: page_rows(500),
    large: None,
};

pub(crate) const AUDIT: Table = Table {
    name: "audit",
    columns: &[
        ("id", Kind::Int),
        ("at_us", Kind::Int),
        ("actor", Kind::Text),
        ("source", Kind::Text),
        ("client", Kind::Text),
        ("action", Kind::Text),
        ("message", Kind::Text),
        ("job", Kind::Text),
        ("run_id", Kind::Int),
        ("detail", Kind::Text),
        ("prev_hash", Kind::Text),
        ("hash", Kind::Text),
    ],
    key: 1,
    page_rows: page_rows(500),
    large: None,
};

/// Pages of a few rows in the tests, so that every table's paging is crossed many times.
const fn page_rows(rows: usize) -> usize {
    if cfg!(test) {
        3
    } else {
        rows
    }
}

/// Every table copied, in the order they are written. The signed head (`audit_head`, one row)
/// is copied after them.
pub(crate) const TABLES: &[&Table] = &[&RUNS, &LOG_CHUNKS, &TOKENS, &AUDIT];

/// The tables whose ids a backend hands out itself: the target must go on after the source's
/// highest id ever given, not only the highest left (retention deletes runs, and the audit
/// trail still names them).
pub(crate) const GENERATED_IDS: &[&Table] = &[&RUNS, &TOKENS];

/// Whether the copy may start while the source has `queued` or `running` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveRuns {
    /// Refuse: a server is probably still using the source.
    Refuse,
    /// Copy them as they are; the target's first start recovers the running ones as lost
    /// and starts the queued ones.
    Copy,
}

/// Why a copy did not start, did not finish, or is not equal to its source.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target already holds data; a copy only goes into an empty store.
    #[error("the target holds {runs} runs, {tokens} tokens and {audit_records} audit records")]
    TargetNotEmpty { runs: i64, tokens: i64, audit_records: i64 },
    /// The source has runs that a server may still be writing.
    #[error("the source has {running} running and {queued} queued runs")]
    LiveRuns { running: i64, queued: i64 },
    /// The source's own audit chain does not verify: it was copied as it is.
    #[error("the source's audit chain is broken at record {record}: {reason}")]
    SourceChainBroken { record: i64, reason: String },
    /// The target differs from the source after the copy (what differs first).
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a store holds, as counted by a full read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreContents {
    pub runs: u64,
    pub log_chunks: u64,
    /// Log entries (stored lines and pieces of lines).
    pub log_lines: u64,
    /// Bytes of the stored chunks, as stored (encoded).
    pub log_bytes: u64,
    pub tokens: u64,
    pub audit_records: u64,
    /// The verified chain's length and last hash.
    pub audit_head: ChainHead,
    /// The signed head, if the source's server had an audit key.
    pub signed_head: Option<SignedHead>,
}

impl Store {
    /// Copies everything in this store into `target`, which must be empty, keeping every id;
    /// then sets the target's id generators past the source's. Check the result with
    /// [`Store::compare_copy`]. On an error the target is left partly written: start again
    /// with a new, empty one.
    pub async fn copy_into(&self, target: &Store, live_runs: LiveRuns) -> Result<(), CopyError> {
        let held = target.counts().await?;
        if held.runs + held.log_chunks + held.tokens + held.audit_records > 0 || target.audit_head().await?.is_some() {
            return Err(CopyError::TargetNotEmpty {
                runs: held.runs,
                tokens: held.tokens,
                audit_records: held.audit_records,
            });
        }
        let (running, queued) = dispatch!(self, store => store.count_live_runs().await)?;
        if live_runs == LiveRuns::Refuse && running + queued > 0 {
            return Err(CopyError::LiveRuns { running, queued });
        }
        for table in TABLES {
            let mut after: Option<Vec<Value>> = None;
            loop {
                let rows = dispatch!(self, store => store.read_page(table, after.as_deref()).await)?;
                let Some(last) = rows.last() else { break };
                after = Some(last[..table.key].to_vec());
                dispatch!(target, store => store.write_page(table, rows).await)?;
            }
        }
        if let Some(head) = self.audit_head().await? {
            dispatch!(target, store => store.write_audit_head(&head).await)?;
        }
        for table in GENERATED_IDS {
            let highest = dispatch!(self, store => store.highest_id(table).await)?;
            dispatch!(target, store => store.raise_next_id(table, highest).await)?;
        }
        Ok(())
    }

    /// Reads this store and `copy` again and checks that they hold the same: the same rows
    /// in every table (counts and a digest of each), byte-identical stored chunks for every
    /// run's log, the same signed head, and an audit chain that verifies on the copy with
    /// the head it has here. Returns what the copy holds.
    pub async fn compare_copy(&self, copy: &Store) -> Result<StoreContents, CopyError> {
        for table in [&RUNS, &TOKENS, &AUDIT] {
            let (source_rows, source_digest) = self.table_digest(table).await?;
            let (copied_rows, copied_digest) = copy.table_digest(table).await?;
            if source_rows != copied_rows {
                return Err(CopyError::Mismatch(format!(
                    "the source has {source_rows} rows in {}, the target {copied_rows}",
                    table.name
                )));
            }
            if source_digest != copied_digest {
                return Err(CopyError::Mismatch(format!(
                    "the rows of {} differ between source and target",
                    table.name
                )));
            }
        }
        let (log_chunks, log_lines, log_bytes) = compare_logs(self, copy).await?;
        let signed_head = self.audit_head().await?;
        if copy.audit_head().await? != signed_head {
            return Err(CopyError::Mismatch("the signed audit head differs between source and target".into()));
        }
        // The source first: a chain broken there is broken the same way in a faithful copy.
        let source_chain = self.audit_chain().await?;
        let source_head = verify(&source_chain)
            .map_err(|broken| CopyError::SourceChainBroken { record: broken.id, reason: broken.reason })?;
        drop(source_chain);
        let copied_chain = copy.audit_chain().await?;
        let copied_head = verify(&copied_chain).map_err(|broken| {
            CopyError::Mismatch(format!(
                "the target's audit chain is broken at record {}: {}",
                broken.id, broken.reason
            ))
        })?;
        if copied_head != source_head {
            return Err(CopyError::Mismatch(format!(
                "the target's audit chain ends at record {} ({}), the source's at record {} ({})",
                copied_head.records, copied_head.hash, source_head.records, source_head.hash
            )));
        }
        let counts = copy.counts().await?;
        Ok(StoreContents {
            runs: counts.runs.max(0) as u64,
            log_chunks,
            log_lines,
            log_bytes,
            tokens: counts.tokens.max(0) as u64,
            audit_records: counts.audit_records.max(0) as u64,
            audit_head: copied_head,
            signed_head,
        })
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        Ok(Counts {
            runs: dispatch!(self, store => store.count_rows(&RUNS).await)?,
            log_chunks: dispatch!(self, store => store.count_rows(&LOG_CHUNKS).await)?,
            tokens: dispatch!(self, store => store.count_rows(&TOKENS).await)?,
            audit_records: dispatch!(self, store => store.count_rows(&AUDIT).await)?,
        })
    }

    /// The number of rows of a table and a SHA-256 over all of them in key order.
    async fn table_digest(&self, table: &Table) -> Result<(u64, [u8; 32]), StoreError> {
        let mut pages = Pages::new(self, table);
        let (mut rows, mut digest) = (0u64, Sha256::new());
        while let Some(row) = pages.next().await? {
            rows += 1;
            digest_row(&mut digest, &row);
        }
        Ok((rows, digest.finalize().into()))
    }
}

#[derive(Debug)]
struct Counts {
    runs: i64,
    log_chunks: i64,
    tokens: i64,
    audit_records: i64,
}

/// Compares the logs of both stores run by run, each side's stored chunks folded into one
/// digest per run. Returns the chunks, entries and stored bytes of all logs.
async fn compare_logs(source: &Store, copy: &Store) -> Result<(u64, u64, u64), CopyError> {
    let (mut source_logs, mut copied_logs) = (RunLogs::new(source), RunLogs::new(copy));
    let (mut chunks, mut lines, mut bytes) = (0u64, 0u64, 0u64);
    loop {
        match (source_logs.next().await?, copied_logs.next().await?) {
            (None, None) => return Ok((chunks, lines, bytes)),
            (Some(log), None) => {
                return Err(CopyError::Mismatch(format!("the log of run {} is missing in the target", log.run)))
            }
            (None, Some(log)) => {
                return Err(CopyError::Mismatch(format!("the target has a log for run {}, the source none", log.run)))
            }
            (Some(source_log), Some(copied_log)) => {
                if source_log.run != copied_log.run {
                    let missing = source_log.run.0.min(copied_log.run.0);
                    return Err(CopyError::Mismatch(format!("the log of run {missing} is in only one of the stores")));
                }
                if source_log != copied_log {
                    return Err(CopyError::Mismatch(format!(
                        "the log of run {} differs: the source stores {} chunks ({} lines, {} bytes), the target {} \
                         chunks ({} lines, {} bytes){}",
                        source_log.run,
                        source_log.chunks,
                        source_log.lines,
                        source_log.bytes,
                        copied_log.chunks,
                        copied_log.lines,
                        copied_log.bytes,
                        if source_log.bytes == copied_log.bytes { ", with different bytes" } else { "" }
                    )));
                }
                chunks += copied_log.chunks;
                lines += copied_log.lines;
                bytes += copied_log.bytes;
            }
        }
    }
}

/// One run's stored log, summed up.
#[derive(Debug, PartialEq, Eq)]
struct RunLog {
    run: RunId,
    chunks: u64,
    lines: u64,
    bytes: u64,
    /// SHA-256 over the run's chunk rows (sequence numbers and stored bytes) in order.
    digest: [u8; 32],
}

/// Every run's log in run order, one at a time, from pages of chunks.
struct RunLogs<'a> {
    pages: Pages<'a>,
    /// The first chunk of the next run, read while finishing the previous one.
    pending: Option<Vec<Value>>,
}

impl<'a> RunLogs<'a> {
    fn new(store: &'a Store) -> RunLogs<'a> {
        RunLogs { pages: Pages::new(store, &LOG_CHUNKS), pending: None }
    }

    async fn next(&mut self) -> Result<Option<RunLog>, StoreError> {
        let first = match self.pending.take() {
            Some(row) => row,
            None => match self.pages.next().await? {
                Some(row) => row,
                None => return Ok(None),
            },
        };
        let run = chunk_run(&first)?;
        let mut log = RunLog { run, chunks: 0, lines: 0, bytes: 0, digest: [0; 32] };
        let mut digest = Sha256::new();
        let mut row = Some(first);
        while let Some(chunk) = row {
            if chunk_run(&chunk)? != run {
                self.pending = Some(chunk);
                break;
            }
            let (Value::Int(first_seq), Value::Int(last_seq), Value::Blob(entries)) = (&chunk[1], &chunk[2], &chunk[3])
            else {
                return Err(StoreError::Corrupt(format!("a log chunk of run {run} has an empty column")));
            };
            log.chunks += 1;
            log.lines += (last_seq - first_seq + 1).max(0) as u64;
            log.bytes += entries.len() as u64;
            digest_row(&mut digest, &chunk);
            row = self.pages.next().await?;
        }
        log.digest = digest.finalize().into();
        Ok(Some(log))
    }
}

fn chunk_run(chunk: &[Value]) -> Result<RunId, StoreError> {
    match chunk.first() {
        Some(Value::Int(run)) => Ok(RunId(*run)),
        _ => Err(StoreError::Corrupt("a log chunk without its run".into())),
    }
}

/// The rows of a table in key order, read a page at a time.
struct Pages<'a> {
    store: &'a Store,
    table: &'a Table,
    page: std::vec::IntoIter<Vec<Value>>,
    after: Option<Vec<Value>>,
    done: bool,
}

impl<'a> Pages<'a> {
    fn new(store: &'a Store, table: &'a Table) -> Pages<'a> {
        Pages { store, table, page: Vec::new().into_iter(), after: None, done: false }
    }

    async fn next(&mut self) -> Result<Option<Vec<Value>>, StoreError> {
        if let Some(row) = self.page.next() {
            return Ok(Some(row));
        }
        if self.done {
            return Ok(None);
        }
        let table = self.table;
        let rows = dispatch!(self.store, store => store.read_page(table, self.after.as_deref()).await)?;
        self.done = rows.is_empty();
        self.after = rows.last().map(|last| last[..table.key].to_vec());
        self.page = rows.into_iter();
        Ok(self.page.next())
    }
}

/// How many of the first rows, of these sizes, fit in `page_bytes`: at least one, so a
/// page always makes progress.
pub(crate) fn rows_within(sizes: &[i64], page_bytes: i64) -> i64 {
    let mut total = 0i64;
    let mut rows = 0i64;
    for &size in sizes {
        total = total.saturating_add(size.max(0));
        if rows > 0 && total > page_bytes {
            break;
        }
        rows += 1;
    }
    rows
}

/// Feeds one row into a digest, each value tagged and length-prefixed, so that no two
/// different rows feed the same bytes.
fn digest_row(digest: &mut Sha256, row: &[Value]) {
    for value in row {
        match value {
            Value::Null => digest.update([0]),
            Value::Int(number) => {
                digest.update([1]);
                digest.update(number.to_le_bytes());
            }
            Value::Text(text) => {
                digest.update([2]);
                digest.update((text.len() as u64).to_le_bytes());
                digest.update(text.as_bytes());
            }
            Value::Blob(bytes) => {
                digest.update([3]);
                digest.update((bytes.len() as u64).to_le_bytes());
                digest.update(bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests;
