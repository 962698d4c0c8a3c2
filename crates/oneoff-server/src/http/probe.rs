//! Diagnostic streams for `oneoff doctor`: events on a fixed schedule, so a client can tell
//! a buffering, compressing or idle-cutting proxy from a healthy one.
//!
//! `/debug/stream` (SSE) and `/debug/stream/ws` (WebSocket) send `count` events
//! `interval_ms` apart, then, when `quiet_ms` is set, stay silent that long (no pings)
//! and send one last event: a connection that survives carried a quiet period of that
//! length. `/debug/poll` answers after `wait_ms`, like a long-poll that found nothing.
//! Each event is `{"n":N,"server_ms":T}` with the server's clock, so gaps can be measured.
//! All bounded, and served only with `[debug] echo = true`.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::ApiQuery;
use crate::state::AppState;

const MAX_COUNT: u32 = 100;
const MAX_INTERVAL_MS: u64 = 10_000;
/// Long enough to find the idle timeouts that matter (AWS: 60 s, nginx: 60 s).
const MAX_QUIET_MS: u64 = 300_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    count: Option<u32>,
    interval_ms: Option<u64>,
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

pub async fn sse(State(state): State<AppState>, ApiQuery(query): ApiQuery<StreamQuery>) -> Result<Response, ApiError> {
    let delays = delays(&schedule(&query)?);
    let shutdown = state.shutdown.clone();
    let events = futures_util::stream::unfold((0u32, delays), move |(n, delays)| {
        let shutdown = shutdown.clone();
        async move {
            let delay = *delays.get(n as usize)?;
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return None,
            }
            let event = Event::default().id(n.to_string()).data(payload(n));
            Some((Ok::<_, Infallible>(event), (n + 1, delays)))
        }
    });
    // No keep-alive on purpose: the quiet period must be really quiet.
    let mut response = Sse::new(events).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollQuery {
    wait_ms: Option<u64>,
}

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
    Ok(Json(json!({ "waited_ms": wait_ms })))
}
