//! Live log streams: WebSocket and Server-Sent Events, both pulling from one [`Cursor`].
//!
//! Each viewer reads from its own position ("read from SEQ, then follow"): from the hub's
//! memory near the head, from the store when behind. A viewer that does not read only
//! blocks its own task; after `viewer_send_timeout` it is dropped with a close reason and
//! can resume by sequence. Entries are sent in batches: whatever is available when the
//! viewer is ready goes in one message, so a firehose is few messages and a trickle has no
//! added latency.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use oneoff_api::v1::{timestamp, ErrorBody, ErrorDetail, StreamDone};
use oneoff_core::{LogEntry, RunId, RunRecord};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::handshake::{self, HandshakeProblem};
use super::logs::start_after;
use super::runs::visible_run;
use crate::hub::{Cursor, Step};
use crate::state::AppState;
use crate::viewers::{ViewerLimit, ViewerSlot};

/// Entries read per step (its output is bounded by `max_message_bytes` too); a step's
/// entries are then encoded into messages one at a time.
const STEP_ENTRIES: usize = 20_000;
/// How long an SSE step waits; the keep-alive comments are sent independently.
const SSE_STEP: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    after: Option<u64>,
    /// Start from the last N entries stored (see [`start_after`]).
    tail: Option<u64>,
}

pub async fn websocket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<StreamQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let run = visible_run(&state, &caller, &id).await?.id;
    let (mut parts, _body) = request.into_parts();
    let fallbacks = vec![format!("/api/v1/runs/{run}/log/sse"), format!("/api/v1/runs/{run}/log")];
    let own_authority = caller.own_authority.as_deref();
    if let Err(problem) = handshake::check(&parts.method, parts.version, &parts.headers)
        .and_then(|()| handshake::check_origin(&parts.headers, &state.config.server.public_origins, own_authority))
    {
        let problem =
            probed_origin_refusal(&problem, &parts.headers, &state.config.server.public_origins, own_authority)
                .unwrap_or(problem);
        return Ok(refuse(&state, &problem, parts.version, &parts.headers, peer, fallbacks));
    }
    let after = start_after(&state, run, query.after, query.tail).await?;
    let slot = acquire(&state, run)?;
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let problem = handshake::upgrade_unavailable(&rejection.body_text());
            return Ok(refuse(&state, &problem, parts.version, &parts.headers, peer, fallbacks));
        }
    };
    let streams = &state.config.streams;
    state.counters.ws_sessions.fetch_add(1, Ordering::Relaxed);
    let upgrade = upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(streams.max_viewer_buffer_bytes.max(2 * streams.max_message_bytes))
        .max_message_size(streams.max_message_bytes)
        .max_frame_size(streams.max_message_bytes);
    Ok(upgrade.on_upgrade(move |socket| ws_session(socket, state, run, after, slot)))
}

fn acquire(state: &AppState, run: RunId) -> Result<ViewerSlot, ApiError> {
    state.viewers.acquire(run).map_err(|limit| {
        state.counters.viewers_refused.fetch_add(1, Ordering::Relaxed);
        let message = match limit {
            ViewerLimit::PerRun(max) => format!("run {run} already has {max} live viewers (max_viewers_per_run); use the long-poll endpoint or try later"),
            ViewerLimit::Total(max) => format!("the server already serves {max} live streams (max_connections); use the long-poll endpoint or try later"),
        };
        ApiError::Client { status: StatusCode::SERVICE_UNAVAILABLE, code: "viewer_limit", message }
    })
}

/// The web UI's probe after a failed handshake is a plain `fetch`, which carries no `Origin`
/// (the browser sends none on a same-origin GET), so its 426 alone would blame the upgrade
/// headers even when the handshake was refused for its origin (a proxy that rewrites `Host`,
/// e.g. nginx's `$host` without the port). The probe names its page's origin in
/// `X-Oneoff-Probe-Origin`; the origin refusal the handshake would have met is the answer then.
/// It streams nothing: it only says which of the two refusals the browser hid.
fn probed_origin_refusal(
    problem: &HandshakeProblem,
    headers: &HeaderMap,
    public_origins: &[String],
    own_authority: Option<&str>,
) -> Option<HandshakeProblem> {
    if problem.code != handshake::WEBSOCKET_REQUIRED || !headers.contains_key("x-oneoff-probe") {
        return None;
    }
    let origin = headers.get("x-oneoff-probe-origin")?.clone();
    let mut as_handshake = HeaderMap::new();
    as_handshake.insert(axum::http::header::ORIGIN, origin);
    handshake::check_origin(&as_handshake, public_origins, own_authority).err()
}

/// A refused handshake: logged once as a warning, counted, and answered with the diagnosis.
fn refuse(
    state: &AppState,
    problem: &HandshakeProblem,
    version: Version,
    headers: &HeaderMap,
    peer: SocketAddr,
    fallbacks: Vec<String>,
) -> Response {
    let diagnosis = handshake::diagnosis(problem, version, headers, fallbacks);
    // The web UI asks on purpose (`X-Oneoff-Probe`) after a failed handshake: answer, but
    // do not count or log its question as another refusal.
    let probe = headers.contains_key("x-oneoff-probe")
        && !handshake::looks_like_handshake(headers)
        && (problem.code == handshake::WEBSOCKET_REQUIRED || problem.code == handshake::ORIGIN_REJECTED);
    if !probe {
        state.counters.count_refusal(problem.code);
        tracing::warn!(
            code = problem.code,
            %peer,
            missing = ?diagnosis.missing,
            http_version = %diagnosis.http_version,
            hops = ?diagnosis.hops,
            likely_cause = %diagnosis.likely_cause,
            "WebSocket handshake refused"
        );
    }
    handshake::refusal_response(problem, diagnosis)
}

async fn ws_session(socket: WebSocket, state: AppState, run: RunId, after: u64, _slot: ViewerSlot) {
    let (mut sink, mut incoming) = socket.split();
    let mut cursor = Cursor::new(state.store.clone(), state.hub.clone(), run, after);
    let streams = state.config.streams.clone();
    loop {
        let after_sent = cursor.position();
        let deadline = Instant::now() + streams.ws_ping_interval;
        let step = tokio::select! {
            step = cursor.next(STEP_ENTRIES, deadline, &state.shutdown) => step,
            message = incoming.next() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                // Pings are answered by the library; anything else from the viewer is ignored.
                Some(Ok(_)) => continue,
            },
        };
        let (close_code, reason) = match step {
            Ok(Step::Entries(entries)) => {
                // What the viewer has been sent: the cursor is already past the whole step.
                let mut sent = after_sent;
                for batch in Batches::new(entries, streams.max_message_bytes) {
                    let send = sink.send(Message::Text(batch.text.into()));
                    match tokio::time::timeout(streams.viewer_send_timeout, send).await {
                        Ok(Ok(())) => sent = batch.last_seq,
                        Ok(Err(_)) => return,
                        Err(_) => {
                            state.counters.viewers_too_slow.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(run = %run, "dropping a WebSocket viewer that stopped reading");
                            let reason = format!("viewer too slow; resume with after={sent}");
                            let _ = tokio::time::timeout(Duration::from_secs(1), close(&mut sink, 1013, reason)).await;
                            return;
                        }
                    }
                }
                continue;
            }
            Ok(Step::Finished(record)) => {
                let done = done_message(&record, cursor.position());
                if sink.send(Message::Text(done.into())).await.is_err() {
                    return;
                }
                (1000, "run finished".to_string())
            }
            Ok(Step::Quiet) if state.shutdown.is_cancelled() => {
                (1001, format!("server stopping; resume with after={}", cursor.position()))
            }
            Ok(Step::Quiet) => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(Step::Gone) => (1000, "run deleted".to_string()),
            Err(error) => {
                tracing::error!(run = %run, %error, "WebSocket log stream failed");
                (1011, format!("internal error; resume with after={}", cursor.position()))
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), close(&mut sink, close_code, reason)).await;
        return;
    }
}

async fn close(sink: &mut futures_util::stream::SplitSink<WebSocket, Message>, code: u16, reason: String) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = sink.send(Message::Close(Some(frame))).await;
    let _ = sink.close().await;
}

/// One step's entries as `{"entries":[...],"next":N}` messages of at most `max_bytes` each
/// (one entry may exceed it alone), each the JSON of [`StreamBatch`](oneoff_api::v1::StreamBatch).
///
/// Messages are encoded one at a time, when the viewer is ready for the next, and the entries
/// of a message are freed once it is encoded, so a viewer holds one message and what is left
/// of its step, never a step's worth of JSON. This is the hot path of every stream: entries
/// are written straight into the message, and a timestamp shared by the lines of one read is
/// formatted once.
pub struct Batches {
    entries: std::vec::IntoIter<LogEntry>,
    max_bytes: usize,
    /// The encoded entry that did not fit in the previous message, and its sequence number.
    carried: Option<(Vec<u8>, u64)>,
    formatted: Option<(i64, String)>,
}

/// One message of [`Batches`].
pub struct Batch {
    pub text: String,
    /// The sequence number of its last entry (where a viewer resumes after it).
    pub last_seq: u64,
}

impl Batches {
    pub fn new(entries: Vec<LogEntry>, max_bytes: usize) -> Batches {
        Batches { entries: entries.into_iter(), max_bytes, carried: None, formatted: None }
    }

    /// Appends the entry's JSON to `out`.
    fn write_entry(&mut self, out: &mut Vec<u8>, entry: &LogEntry) -> serde_json::Result<()> {
        let ts = match &self.formatted {
            Some((ts_us, text)) if *ts_us == entry.ts_us => text.as_str(),
            _ => &self.formatted.insert((entry.ts_us, timestamp(entry.ts_us))).1,
        };
        let json = EntryJson {
            seq: entry.seq,
            ts,
            stream: entry.stream.as_str(),
            text: entry.text(),
            continues: entry.continues,
            partial: entry.partial,
        };
        serde_json::to_writer(out, &json)
    }
}

impl Iterator for Batches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        const HEAD: &[u8] = br#"{"entries":["#;
        const TAIL_BYTES: usize = 32; // `],"next":` and the number
        let mut message = HEAD.to_vec();
        let mut last_seq = None;
        if let Some((json, seq)) = self.carried.take() {
            message.extend_from_slice(&json);
            last_seq = Some(seq);
        }
        while let Some(entry) = self.entries.next() {
            let before = message.len();
            if last_seq.is_some() {
                message.push(b',');
            }
            let start = message.len();
            if self.write_entry(&mut message, &entry).is_err() {
                message.truncate(before); // cannot happen when writing to memory; never send half an entry
                continue;
            }
            if let Some(seq) = last_seq.filter(|_| message.len() + TAIL_BYTES > self.max_bytes) {
                // This entry starts the next message.
                self.carried = Some((message.split_off(start), entry.seq));
                message.truncate(before); // its comma
                return Some(finish_message(message, seq));
            }
            last_seq = Some(entry.seq);
        }
        last_seq.map(|seq| finish_message(message, seq))
    }
}

/// An [`Entry`](oneoff_api::v1::Entry) that borrows what it can: the same JSON, fewer copies.
#[derive(Serialize)]
struct EntryJson<'a> {
    seq: u64,
    ts: &'a str,
    stream: &'a str,
    text: Cow<'a, str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    continues: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    partial: bool,
}

fn finish_message(mut message: Vec<u8>, last_seq: u64) -> Batch {
    message.extend_from_slice(format!(r#"],"next":{last_seq}}}"#).as_bytes());
    // serde_json writes UTF-8 and the frame is ASCII, so this never falls back.
    let text =
        String::from_utf8(message).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
    Batch { text, last_seq }
}

fn done_message(record: &RunRecord, next: u64) -> String {
    let done = StreamDone {
        done: true,
        status: record.status.to_string(),
        exit_code: record.exit_code,
        signal: record.signal,
        next,
    };
    serde_json::to_string(&done).unwrap_or_default()
}

pub async fn sse(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let run = visible_run(&state, &caller, &id).await?.id;
    if let Err(problem) =
        handshake::check_origin(&headers, &state.config.server.public_origins, caller.own_authority.as_deref())
    {
        return Ok(refuse(&state, &problem, Version::HTTP_11, &headers, peer, vec![]));
    }
    // EventSource sends Last-Event-ID on reconnect while the URL keeps its first `after` (or
    // `tail`): the header wins, so a reconnect resumes exactly.
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| u64::from_str(text.trim()).ok())
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a sequence number"))?,
        None => start_after(&state, run, query.after, query.tail).await?,
    };
    let slot = acquire(&state, run)?;
    state.counters.sse_sessions.fetch_add(1, Ordering::Relaxed);
    let ping = state.config.streams.sse_ping_interval;
    let cursor = Cursor::new(state.store.clone(), state.hub.clone(), run, after);
    let events = futures_util::stream::unfold(Some(SseState { cursor, pending: None, state, _slot: slot }), next_event);
    let mut response = Sse::new(events).keep_alive(KeepAlive::new().interval(ping).text("ping")).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

struct SseState {
    cursor: Cursor,
    /// The messages of the last step not sent yet, encoded one per event.
    pending: Option<Batches>,
    state: AppState,
    _slot: ViewerSlot,
}

async fn next_event(sse: Option<SseState>) -> Option<(Result<Event, Infallible>, Option<SseState>)> {
    let mut sse = sse?;
    loop {
        if let Some(batch) = sse.pending.as_mut().and_then(Iterator::next) {
            // Each event's id is its last entry, so Last-Event-ID resumes right after it.
            let event = Event::default().id(batch.last_seq.to_string()).data(batch.text);
            return Some((Ok(event), Some(sse)));
        }
        sse.pending = None;
        let deadline = Instant::now() + SSE_STEP;
        let step = sse.cursor.next(STEP_ENTRIES, deadline, &sse.state.shutdown).await;
        let position = sse.cursor.position();
        let event = match step {
            Ok(Step::Entries(entries)) => {
                sse.pending = Some(Batches::new(entries, sse.state.config.streams.max_message_bytes));
                continue;
            }
            Ok(Step::Finished(record)) => {
                Event::default().event("done").id(position.to_string()).data(done_message(&record, position))
            }
            // With the position as its id, so that a reconnect (to any replica) sends it as
            // Last-Event-ID even when no entry was sent on this connection.
            Ok(Step::Quiet) if sse.state.shutdown.is_cancelled() => {
                error_event("shutting_down", format!("server stopping; reconnect to resume after {position}"))
                    .id(position.to_string())
            }
            Ok(Step::Quiet) => continue,
            Ok(Step::Gone) => error_event("not_found", "the run was deleted".into()),
            Err(error) => {
                tracing::error!(%error, "SSE log stream failed");
                error_event("internal", format!("internal error; reconnect to resume after {position}"))
                    .id(position.to_string())
            }
        };
        return Some((Ok(event), None));
    }
}

fn error_event(code: &str, message: String) -> Event {
    let body = ErrorBody { error: ErrorDetail { code: code.into(), message, fields: Vec::new() } };
    Event::default().event("error").data(serde_json::to_string(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use oneoff_api::v1::{Entry, StreamBatch};
    use oneoff_core::{LogEntry, LogStream};

    use super::{Batch, Batches};

    fn encode_batches(entries: &[LogEntry], max_bytes: usize) -> Vec<String> {
        Batches::new(entries.to_vec(), max_bytes).map(|batch: Batch| batch.text).collect()
    }

    fn entry(seq: u64, ts_us: i64, bytes: &[u8]) -> LogEntry {
        LogEntry {
            seq,
            ts_us,
            stream: if seq.is_multiple_of(2) { LogStream::Stderr } else { LogStream::Stdout },
            bytes: bytes.to_vec(),
            continues: seq == 3,
            partial: seq == 2,
        }
    }

    #[test]
    fn batches_are_the_api_messages_cut_by_size_in_order() {
        let entries: Vec<LogEntry> = (1..=100)
            .map(|seq| {
                entry(seq, 1_767_225_600_000_000 + (seq as i64 / 10), format!("line \"{seq}\" \u{1b}[1m").as_bytes())
            })
            .chain([entry(101, 5, &[0xff, b'x', 0x00])])
            .collect();
        let messages = encode_batches(&entries, 1000);
        assert!(messages.len() > 5, "cut by size: {}", messages.len());
        let mut decoded = Vec::new();
        for message in &messages {
            assert!(message.len() <= 1000, "{} bytes", message.len());
            let batch: StreamBatch = serde_json::from_str(message).expect("a StreamBatch");
            assert_eq!(batch.next, batch.entries.last().unwrap().seq, "next is the last sequence it carries");
            decoded.extend(batch.entries);
        }
        let expected: Vec<Entry> = entries.iter().map(Entry::from).collect();
        assert_eq!(decoded, expected, "every entry once, in order, as the API type says");
    }

    #[test]
    fn an_entry_larger_than_the_bound_travels_alone() {
        let big = vec![b'x'; 5000];
        let entries = [entry(1, 0, b"a"), entry(2, 0, &big), entry(3, 0, b"b")];
        let messages = encode_batches(&entries, 1000);
        let counts: Vec<usize> =
            messages.iter().map(|m| serde_json::from_str::<StreamBatch>(m).unwrap().entries.len()).collect();
        assert_eq!(counts, vec![1, 1, 1]);
        assert!(encode_batches(&[], 1000).is_empty());
    }
}
