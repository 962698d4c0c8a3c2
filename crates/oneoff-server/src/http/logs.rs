//! Log transports over the store's "read from SEQ, then follow": long-poll JSON and raw text,
//! and where every transport starts ([`start_after`]: `after`, or the last `tail` entries).
//! A long-poll page also reads backwards (`before`), for a viewer that opened at the end.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::{BufMut, Bytes, BytesMut};
use oneoff_api::v1::{Entry, ErrorBody, LogPage};
use oneoff_core::{LogEntry, LogStream, RunId};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::runs::{visible_run, RunIdParam};
use super::streams::Batches;
use crate::hub::read_or_wait;
use crate::state::AppState;

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;
/// Entries per chunk of the raw text download.
const TEXT_CHUNK_ENTRIES: u32 = 5000;
/// How long one step of a followed text stream waits before checking for shutdown again.
const FOLLOW_STEP: Duration = Duration::from_secs(20);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Entries after this sequence number (default 0: from the start).
    after: Option<u64>,
    /// Only entries before this sequence number, the last `limit` of them.
    before: Option<u64>,
    /// Start from the last N entries stored (not with `after` or `before`).
    tail: Option<u64>,
    /// Entries per page, 1 to 10000 (default 1000; out of range is clamped).
    limit: Option<u32>,
    /// Seconds to wait for new entries when there are none yet, at most `long_poll_max`
    /// (not with `before`).
    wait: Option<f64>,
}

/// Where a read of run `run`'s log starts, as the `after` to read from: `after` itself, or
/// with `tail=N` the last N entries stored now (`head - N`, from the start when the log is
/// shorter; `tail=0` is the head: only what follows). The one rule of every transport.
pub async fn start_after(state: &AppState, run: RunId, after: Option<u64>, tail: Option<u64>) -> Result<u64, ApiError> {
    match (after, tail) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give `after` or `tail`, not both: `after=SEQ` starts right after SEQ, `tail=N` with the last N entries",
        )),
        (None, Some(tail)) => Ok(state.store.last_seq(run).await?.saturating_sub(tail)),
        (after, None) => Ok(after.unwrap_or(0)),
    }
}

/// One page of a run's log, forward from `after` (or `tail`), or backward from `before`.
///
/// The page is bounded by its *encoded* size, `max_message_bytes`, as a stream message is
/// (JSON escapes can make an entry six times its raw bytes): the entries that do not fit are
/// left for the next page, and an entry whose JSON alone is larger travels alone.
#[utoipa::path(get, path = "/api/v1/runs/{id}/log", tag = "logs", operation_id = "read_log",
    params(RunIdParam, LogQuery),
    security(("bearer" = []), ("ticket" = [])),
    responses(
        (status = 200, description = "A page of the log", body = LogPage),
        (status = 404, description = "No such run (or one of a job the caller may not see)", body = ErrorBody),
    ))]
pub async fn long_poll(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Response, ApiError> {
    let record = visible_run(&state, &caller, &id).await?;
    let run = record.id;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    // The first message a stream would send of these entries is this page, but for the
    // fields after `next`; their room is kept out of the budget.
    let budget_bytes = state.config.streams.max_message_bytes.saturating_sub(PAGE_TAIL_BYTES);
    if let Some(before) = query.before {
        if query.tail.is_some() {
            return Err(ApiError::bad_request(
                "give `before` or `tail`, not both: `tail=N` is the last N entries, `before=SEQ` those before SEQ",
            ));
        }
        if query.wait.is_some() {
            return Err(ApiError::bad_request(
                "`wait` waits for new entries after `after`; a page `before` a sequence number is already stored: drop `wait`",
            ));
        }
        return backward_page(&state, record, query.after.unwrap_or(0), before, limit, budget_bytes).await;
    }
    let after = start_after(&state, run, query.after, query.tail).await?;
    let wait = match query.wait {
        None => Duration::ZERO,
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Duration::from_secs_f64(seconds.min(state.config.server.long_poll_max.as_secs_f64()))
        }
        Some(_) => return Err(ApiError::bad_request("wait must be a number of seconds, 0 or more")),
    };
    let read = read_or_wait(&state.store, &state.hub, run, after, limit, wait, &state.shutdown)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run {run}")))?;
    let status = read.run.status.to_string();
    let last_read = read.entries.last().map(|entry| entry.seq);
    // Read after the entries, so the head is never below them.
    let head = state.store.last_seq(run).await?.max(last_read.unwrap_or(0));
    let Some(batch) = Batches::new(read.entries, budget_bytes).next() else {
        let page =
            LogPage { entries: Vec::new(), next: after, done: read.done, status, head, prev: after.saturating_add(1) };
        return Ok(Json(page).into_response());
    };
    // Done only when the page holds every entry read, and the read reached the end.
    let done = read.done && last_read == Some(batch.last_seq);
    let prev = after.saturating_add(1); // the first entry: entries follow `after` without a gap
    let mut body = batch.text;
    body.pop(); // the closing `}` of `{"entries":[...],"next":N}`
    let status = serde_json::Value::String(status);
    body.push_str(&format!(r#","done":{done},"status":{status},"head":{head},"prev":{prev}}}"#));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The page before `before` (and after `after`): the last `limit` entries that fit in
/// `budget_bytes` of JSON, so a page cut by size keeps the entries nearest `before`.
async fn backward_page(
    state: &AppState,
    record: oneoff_core::RunRecord,
    after: u64,
    before: u64,
    limit: u32,
    budget_bytes: usize,
) -> Result<Response, ApiError> {
    let run = record.id;
    // Head first: a run final before it has nothing after it, so `done` is never premature.
    let head = state.store.last_seq(run).await?;
    let entries = state.store.read_log_before(run, after, before, limit as usize, budget_bytes).await?;
    let head = head.max(entries.last().map_or(0, |entry| entry.seq));
    let mut kept: Vec<Entry> = Vec::with_capacity(entries.len());
    let mut page_bytes = 0usize;
    for entry in entries.iter().rev() {
        let entry = Entry::from(entry);
        let entry_bytes = serde_json::to_vec(&entry).map_or(0, |json| json.len()) + 1; // and its comma
        if !kept.is_empty() && page_bytes + entry_bytes > budget_bytes {
            break;
        }
        page_bytes += entry_bytes;
        kept.push(entry);
    }
    kept.reverse();
    let next = kept.last().map_or(after, |entry| entry.seq);
    let prev = kept.first().map_or(before, |entry| entry.seq);
    let done = record.status.is_final() && next >= head;
    let status = record.status.to_string();
    Ok(Json(LogPage { entries: kept, next, done, status, head, prev }).into_response())
}

/// Room for `,"done":false,"status":"...","head":N,"prev":N}` after a [`Batches`] message.
const PAGE_TAIL_BYTES: usize = 128;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TextQuery {
    /// Keep the response open and send what the run writes until it ends.
    #[serde(default)]
    follow: bool,
    /// Entries after this sequence number (default 0: from the start).
    after: Option<u64>,
    /// Start from the last N entries stored (not with `after`).
    tail: Option<u64>,
}

/// The raw log, as text.
///
/// Each entry's exact bytes, and a newline where its line ends (a partial entry, the piece
/// of a progress bar or of a cut line, gets none), so the pieces of a line join as the job
/// wrote them. With `follow=true`, a chunked stream that ends when the run does.
#[utoipa::path(get, path = "/api/v1/runs/{id}/log.txt", tag = "logs", operation_id = "download_log",
    params(RunIdParam, TextQuery),
    security(("bearer" = []), ("ticket" = [])),
    responses(
        (status = 200, description = "The raw log, stdout and stderr as the job wrote them (a chunked stream \
            with `follow=true`)", content_type = "text/plain; charset=utf-8", body = String),
        (status = 404, description = "No such run (or one of a job the caller may not see)", body = ErrorBody),
    ))]
pub async fn text(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TextQuery>,
) -> Result<Response, ApiError> {
    let run = visible_run(&state, &caller, &id).await?.id;
    let follow = query.follow;
    let after = start_after(&state, run, query.after, query.tail).await?;
    let start = TextStream { state, run, after, follow, finished: false, line_open: false };
    let stream = futures_util::stream::unfold(start, next_text_chunk);
    let disposition = format!("inline; filename=\"oneoff-run-{run}.log\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

struct TextStream {
    state: AppState,
    run: RunId,
    after: u64,
    follow: bool,
    finished: bool,
    /// The last entry sent did not end its line.
    line_open: bool,
}

impl TextStream {
    /// Appends `entry` as the job wrote it. Pieces of stdout and stderr follow each other as
    /// they were read (as `2>&1` into a file would have them); a line of oneoff's own starts
    /// on a line of its own.
    fn put(&mut self, chunk: &mut BytesMut, entry: &LogEntry) {
        if self.line_open && entry.stream == LogStream::System {
            chunk.put_u8(b'\n');
        }
        chunk.put_slice(&entry.bytes);
        if !entry.partial {
            chunk.put_u8(b'\n');
        }
        self.line_open = entry.partial;
    }
}

async fn next_text_chunk(mut stream: TextStream) -> Option<(Result<Bytes, std::io::Error>, TextStream)> {
    loop {
        if stream.finished || stream.state.shutdown.is_cancelled() {
            return None;
        }
        let wait = if stream.follow { FOLLOW_STEP } else { Duration::ZERO };
        let state = &stream.state;
        let read = match read_or_wait(
            &state.store,
            &state.hub,
            stream.run,
            stream.after,
            TEXT_CHUNK_ENTRIES,
            wait,
            &state.shutdown,
        )
        .await
        {
            Ok(Some(read)) => read,
            Ok(None) => return None,
            Err(error) => {
                tracing::error!(run = %stream.run, %error, "log download interrupted");
                return Some((Err(std::io::Error::other("store error")), TextStream { finished: true, ..stream }));
            }
        };
        let done = read.done;
        if read.entries.is_empty() {
            if done || !stream.follow {
                return None;
            }
            continue;
        }
        let mut chunk = BytesMut::new();
        for entry in &read.entries {
            stream.put(&mut chunk, entry);
        }
        stream.after = read.entries.last().map_or(stream.after, |entry| entry.seq);
        stream.finished = done;
        return Some((Ok(chunk.freeze()), stream));
    }
}
