//! The probe surface `oneoff doctor` uses, always on and safe in production: it needs no
//! run and no `[debug]` switch, so the doctor checks a chain against the server as it runs.
//!
//! - `GET /api/v1/probe/echo`: the facts of what arrived ([`ProbeFacts`]): the HTTP version,
//!   `Upgrade`/`Connection`, and the hop headers with their values, but the names only of
//!   everything else, so no cookie, credential or identity assertion is ever echoed.
//! - `/api/v1/probe/ws`: a WebSocket handshake target. A complete handshake gets the facts as
//!   its first message, then the schedule below; an incomplete one gets the same 426
//!   diagnosis a log stream gives (what was missing, which hops it passed).
//! - `GET /api/v1/probe/sse`: Server-Sent Events on the schedule below.
//! - `GET /api/v1/probe/poll?wait_ms=`: answers after `wait_ms`, like a long-poll that found nothing.
//!
//! The schedule: `count` events `interval_ms` apart, then, when `quiet_ms` is set, silence
//! that long (no pings) and one last event: a connection that survives carried a quiet
//! period of that length. Each event is `{"n":N,"server_ms":T}` with the server's clock.
//!
//! The probes follow the auth of the log endpoints: a caller who may view some job (or an
//! administrator); anonymous only when anonymous access is on. They are cheap and bounded:
//! counts, intervals and quiet periods have maxima, and at most [`MAX_PROBE_STREAMS`]
//! streams and polls are served at once, beyond which the answer is 503. The old
//! `/debug/stream`, `/debug/stream/ws` and `/debug/poll` are the same handlers, still only
//! with `[debug] echo = true`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use oneoff_api::v1::{EchoWebSocket, ErrorBody, HandshakeRefusal, ProbeFacts, ProbeWaited};
use oneoff_core::Config;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::IntoParams;

use super::auth::{is_credential_header, Caller};
use super::error::ApiError;
use super::extract::ApiQuery;
use super::handshake::{self, HandshakeProblem};
use crate::state::AppState;

const MAX_COUNT: u32 = 100;
const MAX_INTERVAL_MS: u64 = 10_000;
/// Long enough to find the idle timeouts that matter (AWS: 60 s, nginx: 60 s).
const MAX_QUIET_MS: u64 = 300_000;
/// Probe streams and polls served at once. `oneoff doctor --idle` opens 12 per URL.
pub const MAX_PROBE_STREAMS: usize = 64;
/// A hop header's value is cut to this many bytes in the facts.
const MAX_VALUE_BYTES: usize = 1024;

/// Headers whose values the facts show: what a proxy adds, drops or rewrites, none a secret.
const SHOWN_HEADERS: [&str; 14] = [
    "host",
    "origin",
    "upgrade",
    "connection",
    "via",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
    "cf-ray",
    "x-amzn-trace-id",
];

/// The places for probe streams and polls; a permit is held until the stream ends.
#[derive(Debug, Clone)]
pub struct ProbeStreams(Arc<Semaphore>);

impl ProbeStreams {
    pub fn new(max: usize) -> ProbeStreams {
        ProbeStreams(Arc::new(Semaphore::new(max)))
    }

    fn acquire(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.0.clone().try_acquire_owned().map_err(|_| ApiError::Client {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "probe_limit",
            message: format!(
                "the server already serves {MAX_PROBE_STREAMS} probe streams; try again when other doctors are done"
            ),
        })
    }
}

/// Probing shows how to reach the log streams, so it takes what viewing a log takes.
fn may_probe(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    let principal = &caller.principal;
    if principal.admin || state.catalogs.current().jobs().iter().any(|job| job.access.may_view(principal)) {
        return Ok(());
    }
    Err(ApiError::Client {
        status: StatusCode::FORBIDDEN,
        code: "forbidden",
        message: format!("{} may not view any job, so may not probe the log transports either", principal.user),
    })
}

/// True for a header whose value must never leave the server in the probe facts: every
/// credential header, and the trusted identity headers too (the probe is not for admins).
fn is_secret(config: &Config, name: &str) -> bool {
    is_credential_header(config, name)
        || config.auth.trusted_headers.as_ref().is_some_and(|trusted| {
            [&trusted.user_header, &trusted.email_header, &trusted.groups_header]
                .iter()
                .any(|header| header.eq_ignore_ascii_case(name))
        })
}

fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> =
        headers.get_all(name).iter().map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()).collect();
    if values.is_empty() {
        return None;
    }
    let mut text = values.join(", ");
    if text.len() > MAX_VALUE_BYTES {
        let mut end = MAX_VALUE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    Some(text)
}

/// What arrived, with values only for the headers in [`SHOWN_HEADERS`] that are not secret.
pub fn facts(config: &Config, parts: &Parts) -> ProbeFacts {
    let headers = &parts.headers;
    let shown = |name: &str| if is_secret(config, name) { None } else { joined(headers, name) };
    let mut header_names: Vec<String> = Vec::new();
    for name in headers.keys() {
        if !header_names.iter().any(|known| known == name.as_str()) {
            header_names.push(name.as_str().to_string());
        }
    }
    let hop_headers = header_names
        .iter()
        .filter(|name| SHOWN_HEADERS.contains(&name.as_str()))
        .filter_map(|name| shown(name).map(|value| (name.clone(), value)))
        .collect();
    let check = handshake::check(&parts.method, parts.version, headers);
    ProbeFacts {
        method: parts.method.to_string(),
        // Nested under /api/v1, the router's URI lost its prefix; show what the client asked for.
        path: parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.path().to_string(), |original| original.path().to_string()),
        http_version: format!("{:?}", parts.version),
        upgrade: shown("upgrade"),
        connection: shown("connection"),
        websocket: EchoWebSocket {
            looks_like_handshake: handshake::looks_like_handshake(headers),
            complete: check.is_ok(),
            missing: check.err().map(|problem| problem.missing).unwrap_or_default(),
        },
        hop_headers,
        header_names,
    }
}

/// What reached the server.
///
/// The HTTP version, `Upgrade`/`Connection` and the hop headers with their values; every
/// other header by name only.
#[utoipa::path(get, path = "/api/v1/probe/echo", tag = "probes", operation_id = "probe_echo",
    responses((status = 200, description = "The facts of the request as it arrived", body = ProbeFacts)))]
pub async fn echo(State(state): State<AppState>, caller: Caller, request: Request) -> Result<Response, ApiError> {
    may_probe(&state, &caller)?;
    let (parts, _body) = request.into_parts();
    let mut response = Json(facts(&state.config, &parts)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Events to send, 1 to 100 (default 5).
    #[param(minimum = 1, maximum = 100)]
    count: Option<u32>,
    /// Milliseconds between events, at most 10000 (default 200).
    #[param(maximum = 10_000)]
    interval_ms: Option<u64>,
    /// After the events, silence this long (no pings), then one last event; at most 300000.
    #[param(maximum = 300_000)]
    quiet_ms: Option<u64>,
}

struct Schedule {
    count: u32,
    interval: Duration,
    quiet: Option<Duration>,
}

fn schedule(query: &StreamQuery) -> Result<Schedule, ApiError> {
    let count = query.count.unwrap_or(5);
    let interval_ms = query.interval_ms.unwrap_or(200);
    if count == 0
        || count > MAX_COUNT
        || interval_ms > MAX_INTERVAL_MS
        || query.quiet_ms.is_some_and(|quiet| quiet > MAX_QUIET_MS)
    {
        return Err(ApiError::bad_request(format!(
            "count must be 1..={MAX_COUNT}, interval_ms at most {MAX_INTERVAL_MS}, quiet_ms at most {MAX_QUIET_MS}"
        )));
    }
    Ok(Schedule {
        count,
        interval: Duration::from_millis(interval_ms),
        quiet: query.quiet_ms.map(Duration::from_millis),
    })
}

fn payload(n: u32) -> String {
    let server_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis());
    json!({ "n": n, "server_ms": server_ms }).to_string()
}

/// The moments to send at: `count` events, then one more after the quiet period.
fn delays(schedule: &Schedule) -> Vec<Duration> {
    let mut delays: Vec<Duration> =
        (0..schedule.count).map(|n| if n == 0 { Duration::ZERO } else { schedule.interval }).collect();
    if let Some(quiet) = schedule.quiet {
        delays.push(quiet);
    }
    delays
}

/// Server-Sent Events on a schedule.
///
/// `count` events `interval_ms` apart, each `{"n":N,"server_ms":T}`, then after `quiet_ms`
/// of silence one more. Authorised, and holding one of the probe places until it ends.
#[utoipa::path(get, path = "/api/v1/probe/sse", tag = "probes", operation_id = "probe_sse", params(StreamQuery),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = super::openapi::ProbeEvent),
        (status = 403, description = "`origin_rejected` (the body adds a `diagnosis`, as `HandshakeRefusal`), or `forbidden`", body = ErrorBody),
        (status = 503, description = "`probe_limit`: the server already serves its maximum of probe streams", body = ErrorBody),
    ))]
pub async fn probe_sse(
    State(state): State<AppState>,
    Extension(streams): Extension<ProbeStreams>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    query: ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    may_probe(&state, &caller)?;
    // As for a log stream: a page on another site may not take the probe places.
    let own = caller.own_authority.as_deref();
    if let Err(problem) = handshake::check_origin(&headers, &state.config.server.public_origins, own) {
        let diagnosis = handshake::diagnosis(&problem, axum::http::Version::HTTP_11, &headers, Vec::new());
        return Ok(handshake::refusal_response(&problem, diagnosis));
    }
    let permit = streams.acquire()?;
    sse_stream(state, query, Some(permit))
}

/// `/debug/stream`, only with `[debug] echo = true`.
pub async fn sse(State(state): State<AppState>, query: ApiQuery<StreamQuery>) -> Result<Response, ApiError> {
    sse_stream(state, query, None)
}

fn sse_stream(
    state: AppState,
    ApiQuery(query): ApiQuery<StreamQuery>,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<Response, ApiError> {
    let delays = delays(&schedule(&query)?);
    let shutdown = state.shutdown.clone();
    // The permit travels with the stream, so the place is given back when the stream ends.
    let events = futures_util::stream::unfold((0u32, delays, permit), move |(n, delays, permit)| {
        let shutdown = shutdown.clone();
        async move {
            let delay = *delays.get(n as usize)?;
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return None,
            }
            let event = Event::default().id(n.to_string()).data(payload(n));
            Some((Ok::<_, Infallible>(event), (n + 1, delays, permit)))
        }
    });
    // No keep-alive on purpose: the quiet period must be really quiet.
    let mut response = Sse::new(events).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// A WebSocket handshake target.
///
/// The facts of the handshake request (`ProbeFacts`) as the first text message, then the
/// schedule of `probe/sse` as text messages. An incomplete handshake gets the 426 diagnosis,
/// a foreign `Origin` the 403 a log stream would give.
#[utoipa::path(get, path = "/api/v1/probe/ws", tag = "probes", operation_id = "probe_websocket", params(StreamQuery),
    responses(
        (status = 101, description = "Switching protocols: the WebSocket session"),
        (status = 403, description = "`origin_rejected` (the body adds a `diagnosis`, as `HandshakeRefusal`), or `forbidden`", body = ErrorBody),
        (status = 426, description = "Not a complete WebSocket handshake: the diagnosis says what arrived and what is missing",
            body = HandshakeRefusal),
    ))]
pub async fn probe_websocket(
    State(state): State<AppState>,
    Extension(streams): Extension<ProbeStreams>,
    caller: Caller,
    ApiQuery(query): ApiQuery<StreamQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    may_probe(&state, &caller)?;
    let delays = delays(&schedule(&query)?);
    let (mut parts, _body) = request.into_parts();
    let facts = facts(&state.config, &parts);
    if let Err(problem) = handshake::check(&parts.method, parts.version, &parts.headers).and_then(|()| {
        handshake::check_origin(&parts.headers, &state.config.server.public_origins, caller.own_authority.as_deref())
    }) {
        return Ok(refuse(&problem, &parts, &state.config.server.base_path));
    }
    let permit = streams.acquire()?;
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let problem = handshake::upgrade_unavailable(&rejection.body_text());
            return Ok(refuse(&problem, &parts, &state.config.server.base_path));
        }
    };
    let first = serde_json::to_string(&facts).unwrap_or_default();
    Ok(upgrade.max_message_size(64 * 1024).on_upgrade(move |socket| async move {
        let _permit = permit;
        let mut socket = socket;
        if socket.send(Message::Text(first.into())).await.is_ok() {
            send_schedule(socket, delays, state).await;
        }
    }))
}

/// A refused probe handshake. Not counted in `/metrics` nor logged as a warning: the
/// doctor provokes these on purpose, and a log stream's refusals are what operators watch.
fn refuse(problem: &HandshakeProblem, parts: &Parts, base_path: &oneoff_core::BasePath) -> Response {
    let fallbacks = vec![base_path.join("/api/v1/probe/sse"), base_path.join("/api/v1/probe/poll")];
    let diagnosis = handshake::diagnosis(problem, parts.version, &parts.headers, fallbacks);
    tracing::debug!(code = problem.code, missing = ?diagnosis.missing, "probe handshake refused");
    handshake::refusal_response(problem, diagnosis)
}

/// `/debug/stream/ws`, only with `[debug] echo = true`.
pub async fn websocket(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let delays = delays(&schedule(&query)?);
    Ok(upgrade.on_upgrade(move |socket| send_schedule(socket, delays, state)))
}

async fn send_schedule(mut socket: WebSocket, delays: Vec<Duration>, state: AppState) {
    for (n, delay) in delays.into_iter().enumerate() {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = state.shutdown.cancelled() => return,
        }
        if socket.send(Message::Text(payload(n as u32).into())).await.is_err() {
            return;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// Milliseconds to wait before answering, at most 300000 (default 1000).
    #[param(maximum = 300_000)]
    wait_ms: Option<u64>,
}

/// Answers `{"waited_ms":N}` after `wait_ms`, like a long-poll that found nothing.
///
/// Authorised, and holding one of the probe places while it waits.
#[utoipa::path(get, path = "/api/v1/probe/poll", tag = "probes", operation_id = "probe_poll", params(PollQuery),
    responses(
        (status = 200, description = "The wait is over", body = ProbeWaited),
        (status = 503, description = "`probe_limit`: the server already serves its maximum of probe streams", body = ErrorBody),
    ))]
pub async fn probe_poll(
    State(state): State<AppState>,
    Extension(streams): Extension<ProbeStreams>,
    caller: Caller,
    query: ApiQuery<PollQuery>,
) -> Result<Response, ApiError> {
    may_probe(&state, &caller)?;
    let _permit = streams.acquire()?;
    poll(State(state), query).await.map(IntoResponse::into_response)
}

/// `/debug/poll` (only with `[debug] echo = true`), and the body of the probe long-poll.
pub async fn poll(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PollQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let wait_ms = query.wait_ms.unwrap_or(1000);
    if wait_ms > MAX_QUIET_MS {
        return Err(ApiError::bad_request(format!("wait_ms must be at most {MAX_QUIET_MS}")));
    }
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
        () = state.shutdown.cancelled() => {}
    }
    Ok(Json(ProbeWaited { waited_ms: wait_ms }))
}
