//! `/debug/echo`: shows what the app received — the tool for finding the hop that changed a
//! request. Over plain HTTP it answers with the report; a WebSocket handshake to it is
//! accepted and gets the same report as its first message (then its messages echoed back).
//!
//! Only administrators get a report (it shows what proxies add, which is the point), and
//! never a credential in it: cookies, `Authorization`, API keys, every configured assertion
//! header and the well-known ones of SSO proxies and load balancers are `<redacted>`.

use std::net::SocketAddr;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use oneoff_api::v1::{EchoReport, EchoWebSocket};
use oneoff_core::audit::Denial;

use super::auth::{deny, is_credential_header, Caller};
use super::handshake;
use crate::state::AppState;

pub async fn echo(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    request: Request,
) -> Response {
    if !caller.principal.admin {
        return deny(&state, &caller, Denial::DebugEcho, None, None).await.into_response();
    }
    let (mut parts, _body) = request.into_parts();
    let report = report(&state, &parts, peer);
    if report.websocket.complete {
        if let Ok(upgrade) = WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            let max = state.config.streams.max_message_bytes;
            return upgrade
                .max_message_size(max)
                .on_upgrade(move |socket| echo_session(socket, report))
                .into_response();
        }
    }
    Json(report).into_response()
}

fn report(state: &AppState, parts: &Parts, peer: SocketAddr) -> EchoReport {
    // Header names arrive lower-cased.
    let redacted = |name: &str| is_credential_header(&state.config, name);
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let shown = if redacted(name.as_str()) {
                "<redacted>".to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.to_string(), shown)
        })
        .collect();
    let check = handshake::check(&parts.method, parts.version, &parts.headers);
    EchoReport {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        http_version: format!("{:?}", parts.version),
        peer: peer.to_string(),
        headers,
        websocket: EchoWebSocket {
            looks_like_handshake: handshake::looks_like_handshake(&parts.headers),
            complete: check.is_ok(),
            missing: check.err().map(|problem| problem.missing).unwrap_or_default(),
        },
    }
}

async fn echo_session(socket: WebSocket, report: EchoReport) {
    let (mut sink, mut incoming) = socket.split();
    let first = serde_json::to_string(&report).unwrap_or_default();
    if sink.send(Message::Text(first.into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = incoming.next().await {
        match message {
            Message::Text(_) | Message::Binary(_) => {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}
