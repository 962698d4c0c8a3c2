//! The HTTP layer: the whole route table on one screen, and the middleware around it.
//!
//! Only this module knows HTTP status codes and JSON. Handlers extract, call one function
//! of the store or the executor, and map the result; they never spawn processes or write SQL.

mod admin;
mod audit;
mod auth;
mod echo;
mod error;
mod extract;
mod handshake;
mod health;
mod jobs;
mod logs;
mod metrics;
mod openapi;
mod paging;
mod probe;
mod replicas;
mod request_id;
mod runs;
mod search;
mod streams;
mod tickets;
pub(crate) mod tokens;
mod ui;

use std::any::Any;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.config.server.max_body_bytes;
    let stream_tickets =
        Arc::new(tickets::StreamTickets::new(state.config.auth.stream_tickets.clone(), state.store.clone()));
    // The log transports also take `?ticket=` as the identity (see tickets.rs).
    let ticket = || Extension(tickets::TicketAccepted);
    let api = Router::new()
        .route("/jobs", get(jobs::list))
        .route("/jobs/{name}", get(jobs::show))
        .route("/runs", post(runs::create).get(runs::list))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/log", get(logs::long_poll).layer(ticket()))
        .route("/runs/{id}/log.txt", get(logs::text).layer(ticket()))
        .route("/runs/{id}/log/ws", any(streams::websocket).layer(ticket()))
        .route("/runs/{id}/log/sse", get(streams::sse).layer(ticket()))
        .route("/runs/{id}/log/search", get(search::search))
        .route("/runs/{id}/log/ticket", post(tickets::create))
        .route("/replicas", get(replicas::list))
        .route("/whoami", get(tokens::whoami))
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/admin/reload", axum::routing::post(admin::reload))
        .route("/audit", get(audit::list))
        .route("/audit/verify", get(audit::verify))
        .route("/probe/echo", get(probe::echo))
        .route("/probe/ws", any(probe::probe_websocket))
        .route("/probe/sse", get(probe::probe_sse))
        .route("/probe/poll", get(probe::probe_poll))
        .route("/openapi.json", get(openapi::document));
    let index = ui::IndexPage::new(&state.config.server.base_path);
    let mut router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(ui::router(index.clone()))
        .nest("/api/v1", api);
    if state.config.debug.echo {
        router = router
            .route("/debug/echo", any(echo::echo))
            .route("/debug/echo/{*rest}", any(echo::echo))
            .route("/debug/stream", get(probe::sse))
            .route("/debug/stream/ws", any(probe::websocket))
            .route("/debug/poll", get(probe::poll));
    }
    let base_path = &state.config.server.base_path;
    if !base_path.is_root() {
        // Everything under the prefix; the health endpoints at the root as well, for probes
        // that know nothing of it. `/PREFIX/` is the catalog page, as `/PREFIX` is.
        router = Router::new()
            .route("/healthz", get(health::healthz))
            .route("/readyz", get(health::readyz))
            .route(&base_path.join("/"), ui::page_route(index))
            .nest(base_path.as_str(), router);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(Extension(stream_tickets))
        .layer(Extension(probe::ProbeStreams::new(probe::MAX_PROBE_STREAMS)))
        .layer(axum::middleware::from_fn_with_state(state.clone(), known_host))
        // Inside the trace layer, so that the caller's user is recorded into this span.
        .layer(axum::middleware::from_fn(request_id::with_request_id))
        .layer(TraceLayer::new_for_http())
        // Outermost, so not even the request trace sees a ticket in a URL.
        .layer(axum::middleware::from_fn(tickets::take_from_query))
        .with_state(state)
}

/// Refuses a request whose `Host` a loopback server does not know (DNS rebinding; see
/// `handshake::check_host`), before any handler or identity source sees it.
async fn known_host(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let server = &state.config.server;
    // Borrowed, not copied: this runs for every request.
    let host = match request.headers().get(axum::http::header::HOST) {
        Some(value) => Some(String::from_utf8_lossy(value.as_bytes())),
        None => request.uri().authority().map(|authority| std::borrow::Cow::Borrowed(authority.as_str())),
    };
    match handshake::check_host(host.as_deref(), server.listen, &server.public_origins) {
        Ok(()) => next.run(request).await,
        Err(message) => {
            tracing::warn!(host = host.as_deref().unwrap_or(""), "request for a host this server does not know");
            ApiError::Client { status: StatusCode::FORBIDDEN, code: "unknown_host", message }.into_response()
        }
    }
}

async fn not_found(axum::extract::State(state): axum::extract::State<AppState>, uri: Uri) -> ApiError {
    let base_path = &state.config.server.base_path;
    let path = uri.path();
    let inside = base_path.is_root() || path == base_path.as_str() || path.starts_with(&base_path.join("/"));
    if !inside {
        return ApiError::not_found(format!(
            "no such endpoint: {path}. This server is served under {base_path}/ (`base_path`): the API is at {}",
            base_path.join("/api/v1")
        ));
    }
    ApiError::not_found(format!("no such endpoint: {path}"))
}

async fn method_not_allowed() -> ApiError {
    ApiError::Client {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "method not allowed on this endpoint".into(),
    }
}

/// A panic in a handler is a bug: answer 500 like any internal error and keep serving.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    ApiError::Internal(format!("handler panicked: {detail}")).into_response()
}
