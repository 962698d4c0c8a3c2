//! Log transports over the store's "read from SEQ, then follow": long-poll JSON and raw text.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::{BufMut, Bytes, BytesMut};
use oneoff_api::v1::LogPage;
use oneoff_core::{LogEntry, LogStream, RunId};
use serde::Deserialize;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::runs::visible_run;
use super::streams::Batches;
use crate::hub::read_or_wait;
use crate::state::AppState;

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;
/// Entries per chunk of the raw text download.
const TEXT_CHUNK_ENTRIES: u32 = 5000;
/// How long one step of a followed text stream waits before checking for shutdown again.
const FOLLOW_STEP: Duration = Duration::from_secs(20);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    after: Option<u64>,
    limit: Option<u32>,
    /// Seconds to wait for new entries when there are none yet.
    wait: Option<f64>,
}

/// One page of a run's log as [`LogPage`] JSON. The page is bounded by its *encoded* size,
/// `max_message_bytes`, as a stream message is (JSON escapes can make an entry six times its
/// raw bytes): the entries that do not fit are left for the next page, and an entry whose
/// JSON alone is larger travels alone.
pub async fn long_poll(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Response, ApiError> {
    let run = visible_run(&state, &caller, &id).await?.id;
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
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
    // The first message a stream would send of these entries is this page, but for its
    // `done` and `status`; their room is kept out of the budget.
    let budget_bytes = state.config.streams.max_message_bytes.saturating_sub(PAGE_TAIL_BYTES);
    let Some(batch) = Batches::new(read.entries, budget_bytes).next() else {
        return Ok(Json(LogPage { entries: Vec::new(), next: after, done: read.done, status }).into_response());
    };
    // Done only when the page holds every entry read, and the read reached the end.
    let done = read.done && last_read == Some(batch.last_seq);
    let mut body = batch.text;
    body.pop(); // the closing `}` of `{"entries":[...],"next":N}`
    body.push_str(&format!(r#","done":{done},"status":{}}}"#, serde_json::Value::String(status)));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Room for `,"done":false,"status":"..."}` after a [`Batches`] message.
const PAGE_TAIL_BYTES: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextQuery {
    #[serde(default)]
    follow: bool,
    after: Option<u64>,
}

/// The raw log: each entry's exact bytes, and a newline where its line ends (a partial entry,
/// the piece of a progress bar or of a cut line, gets none), so the pieces of a line join
/// as the job wrote them. With `follow=true`, a chunked stream that ends when the run does.
pub async fn text(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TextQuery>,
) -> Result<Response, ApiError> {
    let run = visible_run(&state, &caller, &id).await?.id;
    let follow = query.follow;
    let after = query.after.unwrap_or(0);
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
