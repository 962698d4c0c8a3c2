//! Request ids: every request gets one, and every line the server logs while serving it
//! carries it (with the caller's user, once known), so that one request can be followed
//! through the log and matched with what a proxy logged.
//!
//! A proxy's `X-Request-Id` is kept when it looks like an id (it is only a label, but it goes
//! into the log, so a hostile one is not); otherwise the server makes one. The answer carries
//! it back in `X-Request-Id`.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longer ids are made anew: room for a UUID, a trace id or a load balancer's `Root=...` id.
const MAX_ID_CHARS: usize = 128;

/// Gives the request its id and serves it inside a span that names it.
pub async fn with_request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| looks_like_an_id(value))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        user = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

/// Letters, digits and `-_.:=;/+`, at most [`MAX_ID_CHARS`]: what ids are made of, and
/// nothing that could fake a log line or a field.
fn looks_like_an_id(value: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&value.len())
        && value.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_.:=;/+".contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::looks_like_an_id;

    #[test]
    fn ids_from_proxies_are_kept_and_anything_else_is_not() {
        for kept in ["0190c4e2-7c1b-7f3a-9d2e-3f4a5b6c7d8e", "Root=1-67891233-abcdef012345678912345678", "abc"] {
            assert!(looks_like_an_id(kept), "{kept}");
        }
        let long = "a".repeat(129);
        for refused in ["", "two words", "line\nbreak", "quote\"", "tab\t", long.as_str(), "é"] {
            assert!(!looks_like_an_id(refused), "{refused:?}");
        }
    }
}
