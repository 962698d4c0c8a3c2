//! Live log streams: WebSocket and Server-Sent Events, both pulling from one [`Cursor`].
//!
//! Each viewer reads from its own position ("read from SEQ, then follow"): from the hub's
//! memory near the head, from the store when behind. A viewer that does not read only
//! blocks its own task; a WebSocket viewer is dropped after `viewer_send_timeout` with a close
//! reason and can resume by sequence. An SSE body is polled by hyper only when the socket
//! takes more, so a stalled SSE viewer is cut below it, by the connection's write deadline
//! (twice `viewer_send_timeout`, [`crate::connection`]), and resumes with `Last-Event-ID`. Entries are sent in batches: whatever is available when the
//! viewer is ready goes out at once, so a firehose is few messages and a trickle has no
//! added latency.
//!
//! The messages are [`Frame`](crate::frames::Frame)s: at the head, the hub's, encoded once for
//! every viewer of the run; each viewer only queues them (a reference count, no copy into a
//! message) and writes one step's messages with one flush, so one wake-up of a viewer is one
//! write to its socket however many batches it catches up on. SSE bodies are those frames'
//! bytes as they are, with a keep-alive comment after each quiet `sse_ping_interval`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use oneoff_api::v1::{ErrorBody, ErrorDetail, HandshakeRefusal, StreamDone};
use oneoff_core::{RunId, RunRecord};
use serde::Deserialize;
use tokio::time::Instant;
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::handshake::{self, HandshakeProblem};
use super::logs::start_after;
use super::runs::{visible_run, RunIdParam};
pub use crate::frames::Batches;
use crate::hub::{Cursor, Frames, Step};
use crate::state::AppState;
use crate::viewers::{Transport, ViewerLimit, ViewerSlot};

/// The SSE keep-alive: a comment, which `EventSource` ignores.
const SSE_KEEP_ALIVE: &[u8] = b": ping\n\n";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Entries after this sequence number (default 0: from the start); the `next` last received, to resume.
    after: Option<u64>,
    /// Start from the last N entries stored (not with `after`).
    // The one rule of every transport: `start_after`.
    tail: Option<u64>,
}

/// The live log as a WebSocket.
///
/// Text messages `StreamBatch` (`{"entries":[...],"next":N}`), then one `StreamDone` and a
/// close frame 1000 when the run is final. Other close codes say how to resume: 1001 server
/// stopping, 1013 viewer too slow, 1011 internal error. OpenAPI cannot describe the messages
/// after the upgrade: see docs/API.md. Any request that is not a complete handshake, of any
/// method, gets the 426 diagnosis.
#[utoipa::path(get, path = "/api/v1/runs/{id}/log/ws", tag = "logs", operation_id = "stream_log_websocket",
    params(RunIdParam, StreamQuery),
    security(("bearer" = []), ("ticket" = [])),
    responses(
        (status = 101, description = "Switching protocols: the WebSocket session (messages `StreamBatch`, then `StreamDone`)"),
        (status = 403, description = "`origin_rejected` (the body adds a `diagnosis`, as `HandshakeRefusal`), or `forbidden`/`cross_site_request`", body = ErrorBody),
        (status = 404, description = "No such run (or one of a job the caller may not see)", body = ErrorBody),
        (status = 426, description = "Not a complete WebSocket handshake (or one a proxy damaged): the diagnosis says what \
            arrived and what is missing; `X-Oneoff-Diagnosis` names the cause", body = HandshakeRefusal,
            headers(("X-Oneoff-Diagnosis" = String, description = "The cause, e.g. `websocket-upgrade-stripped`"),
                ("Upgrade" = String, description = "`websocket`"),
                ("Sec-WebSocket-Version" = String, description = "`13`"))),
        (status = 503, description = "`viewer_limit`: `max_viewers_per_run` or `max_connections` reached; use the long-poll endpoint or try later", body = ErrorBody),
    ))]
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
    let base_path = &state.config.server.base_path;
    let fallbacks = vec![
        base_path.join(&format!("/api/v1/runs/{run}/log/sse")),
        base_path.join(&format!("/api/v1/runs/{run}/log")),
    ];
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
    let slot = acquire(&state, run, Transport::WebSocket)?;
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let problem = handshake::upgrade_unavailable(&rejection.body_text());
            return Ok(refuse(&state, &problem, parts.version, &parts.headers, peer, fallbacks));
        }
    };
    let streams = &state.config.streams;
    state.counters.ws_sessions.fetch_add(1, Ordering::Relaxed);
    // A step's messages (at most `max_message_bytes` in all) are queued, then written with one
    // flush; whatever is queued beyond `max_message_bytes` goes out at once.
    let upgrade = upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(streams.max_message_bytes)
        .max_write_buffer_size(streams.max_viewer_buffer_bytes.max(3 * streams.max_message_bytes))
        .max_message_size(streams.max_message_bytes)
        .max_frame_size(streams.max_message_bytes);
    Ok(upgrade.on_upgrade(move |socket| ws_session(socket, state, run, after, slot)))
}

fn acquire(state: &AppState, run: RunId, transport: Transport) -> Result<ViewerSlot, ApiError> {
    state.viewers.acquire(run, transport).map_err(|limit| {
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
            step = cursor.next_frames(deadline, &state.shutdown) => step,
            message = incoming.next() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                // Pings are answered by the library; anything else from the viewer is ignored.
                Some(Ok(_)) => continue,
            },
        };
        let (close_code, reason) = match step {
            Ok(Step::Entries(frames)) => {
                // What the viewer will have received once it reads on: every message queued
                // (a close frame goes out behind them). The cursor is already past the step.
                let mut queued = after_sent;
                let send = async {
                    for frame in frames {
                        let last_seq = frame.last_seq;
                        sink.feed(Message::Text(frame.ws_text())).await?;
                        queued = last_seq;
                    }
                    sink.flush().await
                };
                match tokio::time::timeout(streams.viewer_send_timeout, send).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) => return,
                    Err(_) => {
                        state.counters.viewers_too_slow.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(run = %run, "dropping a WebSocket viewer that stopped reading");
                        let reason = format!("viewer too slow; resume with after={queued}");
                        let _ = tokio::time::timeout(Duration::from_secs(1), close(&mut sink, 1013, reason)).await;
                        return;
                    }
                }
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

/// The live log as Server-Sent Events.
///
/// `data` events carrying a `StreamBatch` with the last sequence number as `id`, `: ping` comments on a quiet stream, and a final `event: done`
/// carrying a `StreamDone` (or `event: error` with an `ErrorBody`). A reconnect's
/// `Last-Event-ID` wins over `after` and `tail`.
#[utoipa::path(get, path = "/api/v1/runs/{id}/log/sse", tag = "logs", operation_id = "stream_log_sse",
    params(RunIdParam, StreamQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this sequence number (sent by `EventSource` on reconnect)")),
    security(("bearer" = []), ("ticket" = [])),
    responses(
        (status = 200, description = "The event stream, until the run is final", content_type = "text/event-stream", body = super::openapi::LogEvent),
        (status = 403, description = "`origin_rejected` (the body adds a `diagnosis`, as `HandshakeRefusal`), or `forbidden`/`cross_site_request`", body = ErrorBody),
        (status = 404, description = "No such run (or one of a job the caller may not see)", body = ErrorBody),
        (status = 503, description = "`viewer_limit`: `max_viewers_per_run` or `max_connections` reached; use the long-poll endpoint or try later", body = ErrorBody),
    ))]
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
    let slot = acquire(&state, run, Transport::Sse)?;
    state.counters.sse_sessions.fetch_add(1, Ordering::Relaxed);
    let cursor = Cursor::new(state.store.clone(), state.hub.clone(), run, after);
    let keep_alive_at = Instant::now() + state.config.streams.sse_ping_interval;
    let start = SseState { cursor, pending: None, keep_alive_at, state, _slot: slot };
    let mut response = Response::new(Body::from_stream(futures_util::stream::unfold(Some(start), next_event)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

struct SseState {
    cursor: Cursor,
    /// The messages of the last step not sent yet.
    pending: Option<Frames>,
    /// When the keep-alive comment is due if nothing else is sent before.
    keep_alive_at: Instant,
    state: AppState,
    _slot: ViewerSlot,
}

/// The next piece of the SSE body: an event or a keep-alive comment.
async fn next_event(sse: Option<SseState>) -> Option<(Result<Bytes, Infallible>, Option<SseState>)> {
    let mut sse = sse?;
    let ping = sse.state.config.streams.sse_ping_interval;
    loop {
        if let Some(frame) = sse.pending.as_mut().and_then(Iterator::next) {
            // Each event's id is its last entry, so Last-Event-ID resumes right after it.
            sse.keep_alive_at = Instant::now() + ping;
            return Some((Ok(frame.sse_event()), Some(sse)));
        }
        sse.pending = None;
        let step = sse.cursor.next_frames(sse.keep_alive_at, &sse.state.shutdown).await;
        let position = sse.cursor.position();
        let event = match step {
            Ok(Step::Entries(frames)) => {
                sse.pending = Some(frames);
                continue;
            }
            Ok(Step::Finished(record)) => event_bytes(Some("done"), Some(position), &done_message(&record, position)),
            // With the position as its id, so that a reconnect (to any replica) sends it as
            // Last-Event-ID even when no entry was sent on this connection.
            Ok(Step::Quiet) if sse.state.shutdown.is_cancelled() => error_event(
                "shutting_down",
                format!("server stopping; reconnect to resume after {position}"),
                Some(position),
            ),
            Ok(Step::Quiet) => {
                sse.keep_alive_at = Instant::now() + ping;
                return Some((Ok(Bytes::from_static(SSE_KEEP_ALIVE)), Some(sse)));
            }
            Ok(Step::Gone) => error_event("not_found", "the run was deleted".into(), None),
            Err(error) => {
                tracing::error!(%error, "SSE log stream failed");
                error_event("internal", format!("internal error; reconnect to resume after {position}"), Some(position))
            }
        };
        return Some((Ok(event), None));
    }
}

fn error_event(code: &str, message: String, id: Option<u64>) -> Bytes {
    let body = ErrorBody { error: ErrorDetail { code: code.into(), message, fields: Vec::new() } };
    event_bytes(Some("error"), id, &serde_json::to_string(&body).unwrap_or_default())
}

/// One Server-Sent Event; each line of `data` becomes a `data:` field.
fn event_bytes(event: Option<&str>, id: Option<u64>, data: &str) -> Bytes {
    let mut text = String::with_capacity(data.len() + 48);
    if let Some(event) = event {
        text.push_str(&format!("event: {event}\n"));
    }
    if let Some(id) = id {
        text.push_str(&format!("id: {id}\n"));
    }
    for line in data.split('\n') {
        text.push_str("data: ");
        text.push_str(line.trim_end_matches('\r'));
        text.push('\n');
    }
    text.push('\n');
    Bytes::from(text)
}
