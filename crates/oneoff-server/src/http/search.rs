//! `GET /api/v1/runs/{id}/log/search`: finds the lines of a run's log that hold a text, as
//! the reader sees them (escape sequences removed, case ignored: [`LineMatcher`]).
//!
//! The scan runs on the server so it covers the whole log without the browser holding it.
//! One request scans forward from `after` and stops at `limit` matches or after a fixed budget
//! of log output, whichever first, so every request stays bounded in time however large the
//! log; `next` says where to go on. A secret is masked before it is stored, so no search can
//! find one. The same permission as reading the log (`visible_run`). A stream ticket does not
//! open search (the ticket middleware accepts tickets only on the log transports): a ticket is
//! for one stream connection, and search is a plain request with the caller's own credentials.

use std::collections::VecDeque;

use axum::extract::State;
use axum::Json;
use oneoff_api::v1::{Entry, ErrorBody, SearchMatch, SearchPage};
use oneoff_core::search::{LineMatcher, MAX_QUERY_BYTES};
use oneoff_core::LogEntry;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::runs::{visible_run, RunIdParam};
use crate::state::AppState;

const DEFAULT_MATCHES: u32 = 100;
const MAX_MATCHES: u32 = 1000;
const MAX_CONTEXT: u32 = 10;
/// The log output one request scans at most. An entry counts its bytes plus
/// [`ENTRY_SCAN_COST`], so a log of empty lines is bounded too.
pub const SCAN_BUDGET_BYTES: usize = 16 * 1024 * 1024;
const ENTRY_SCAN_COST: usize = 16;
/// The text of matches and their context one answer carries at most (long lines, context).
const ANSWER_BUDGET_BYTES: usize = 4 * 1024 * 1024;
/// Entries and bytes per store read of the scan.
const READ_ENTRIES: usize = 20_000;
const READ_BYTES: usize = 1024 * 1024;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The text to find, case ignored, in the lines as shown (escape sequences removed).
    // Optional for serde, so that its absence gets our own words.
    #[param(required = true, value_type = String, min_length = 1)]
    q: Option<String>,
    /// Scan the entries after this sequence number (default 0: from the start).
    after: Option<u64>,
    /// Scan only the entries before this sequence number.
    before: Option<u64>,
    /// Matches per answer, 1 to 1000 (default 100; out of range is clamped).
    limit: Option<u32>,
    /// Entries shown on each side of a match, 0 to 10 (default 0).
    #[param(maximum = 10)] // MAX_CONTEXT
    context: Option<u32>,
}

/// A match found, with its context gathered as the scan goes.
struct Found {
    entry: LogEntry,
    context: Vec<LogEntry>,
}

/// Finds the entries of a run's log that hold a text.
///
/// One request scans forward from `after` and stops at `limit` matches or after a fixed
/// budget of log output, whichever first; `next` says where to go on.
#[utoipa::path(get, path = "/api/v1/runs/{id}/log/search", tag = "logs", operation_id = "search_log",
    params(RunIdParam, SearchQuery),
    responses(
        (status = 200, description = "The matches of one bounded scan; go on from `next`", body = SearchPage),
        (status = 404, description = "No such run (or one of a job the caller may not see)", body = ErrorBody),
    ))]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<SearchPage>, ApiError> {
    let run = visible_run(&state, &caller, &id).await?.id;
    let text = query.q.unwrap_or_default();
    if text.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!(
            "the search text `q` is {} bytes; search for at most {MAX_QUERY_BYTES}",
            text.len()
        )));
    }
    let mut matcher = LineMatcher::new(&text).ok_or_else(|| {
        ApiError::bad_request(
            "give the text to search for as `q` (escape sequences and control characters alone find nothing)",
        )
    })?;
    let context = query.context.unwrap_or(0);
    if context > MAX_CONTEXT {
        return Err(ApiError::bad_request(format!(
            "`context` is the number of entries shown on each side of a match, 0 to {MAX_CONTEXT}, not {context}"
        )));
    }
    let context = context as u64;
    let limit = query.limit.unwrap_or(DEFAULT_MATCHES).clamp(1, MAX_MATCHES) as usize;
    let after = query.after.unwrap_or(0);
    let store = &state.store;
    let head = store.last_seq(run).await?;
    // The scan covers `after < seq < end`.
    let end = query.before.map_or(head.saturating_add(1), |before| before.min(head.saturating_add(1)));

    // The entries just before the scan, for the context of its first matches.
    let mut recent: VecDeque<LogEntry> = VecDeque::new();
    if context > 0 && after > 0 && after < end {
        let window = store.read_log_before(run, 0, after + 1, context as usize, usize::MAX).await?;
        recent.extend(window);
    }
    let mut found: Vec<Found> = Vec::new();
    let (mut position, mut scanned_bytes, mut answer_bytes) = (after, 0usize, 0usize);
    'scan: while position.saturating_add(1) < end
        && found.len() < limit
        && scanned_bytes < SCAN_BUDGET_BYTES
        && answer_bytes < ANSWER_BUDGET_BYTES
    {
        let entries = store.read_log(run, position, READ_ENTRIES, READ_BYTES).await?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            if entry.seq >= end {
                break 'scan;
            }
            position = entry.seq;
            scanned_bytes += entry.bytes.len() + ENTRY_SCAN_COST;
            add_to_contexts(&mut found, &entry, context, &mut answer_bytes);
            if matcher.matches(&entry.bytes) {
                let mut around: Vec<LogEntry> = if context > 0 { recent.iter().cloned().collect() } else { Vec::new() };
                answer_bytes += entry.bytes.len() + around.iter().map(|entry| entry.bytes.len()).sum::<usize>();
                if context > 0 {
                    around.push(entry.clone());
                }
                found.push(Found { entry: entry.clone(), context: around });
            }
            if context > 0 {
                if recent.len() as u64 >= context {
                    recent.pop_front();
                }
                recent.push_back(entry);
            }
            if found.len() >= limit || scanned_bytes >= SCAN_BUDGET_BYTES || answer_bytes >= ANSWER_BUDGET_BYTES {
                break 'scan;
            }
        }
    }
    let done = position.saturating_add(1) >= end;
    // The context after the last matches, beyond where the scan stopped.
    if context > 0 && found.last().is_some_and(|last| last.entry.seq + context > position) {
        for entry in store.read_log(run, position, context as usize, usize::MAX).await? {
            add_to_contexts(&mut found, &entry, context, &mut answer_bytes);
        }
    }
    let matches = found
        .iter()
        .map(|found| SearchMatch {
            entry: Entry::from(&found.entry),
            context: (context > 0).then(|| found.context.iter().map(Entry::from).collect()),
        })
        .collect();
    Ok(Json(SearchPage { matches, next: position, done, head }))
}

/// Gives `entry` to the context of each match within `context` before it.
fn add_to_contexts(found: &mut [Found], entry: &LogEntry, context: u64, answer_bytes: &mut usize) {
    if context == 0 {
        return;
    }
    for found in found.iter_mut().rev() {
        if found.entry.seq + context < entry.seq {
            break;
        }
        if found.entry.seq < entry.seq {
            *answer_bytes += entry.bytes.len();
            found.context.push(entry.clone());
        }
    }
}
