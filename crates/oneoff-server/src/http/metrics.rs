//! `/metrics`: Prometheus text exposition of the server's counters and gauges.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::handshake::REFUSAL_CODES;
use crate::state::AppState;

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let counters = &state.counters;
    let mut text = String::new();
    let mut counter = |name: &str, help: &str, labels: &[(&str, u64)]| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
        for (label, value) in labels {
            let _ = writeln!(text, "{name}{label} {value}");
        }
    };
    let load = |value: &std::sync::atomic::AtomicU64| value.load(Ordering::Relaxed);
    let refusals: Vec<(String, u64)> =
        REFUSAL_CODES.iter().map(|code| (format!("{{reason=\"{code}\"}}"), counters.refused(code))).collect();
    let refusals: Vec<(&str, u64)> = refusals.iter().map(|(label, value)| (label.as_str(), *value)).collect();
    counter(
        "oneoff_websocket_handshakes_refused_total",
        "WebSocket handshakes refused, by reason: the error code of the answer.",
        &refusals,
    );
    counter(
        "oneoff_log_streams_total",
        "Live log streams opened, by transport.",
        &[
            ("{transport=\"websocket\"}", load(&counters.ws_sessions)),
            ("{transport=\"sse\"}", load(&counters.sse_sessions)),
        ],
    );
    counter(
        "oneoff_untrusted_identity_headers_total",
        "Requests whose identity headers were ignored because the peer is not a trusted proxy.",
        &[("", load(&counters.untrusted_identity_headers))],
    );
    counter(
        "oneoff_viewers_refused_total",
        "Viewers refused by a viewer limit.",
        &[("", load(&counters.viewers_refused))],
    );
    counter(
        "oneoff_viewers_dropped_slow_total",
        "Viewers dropped for not reading.",
        &[("", load(&counters.viewers_too_slow))],
    );
    let _ = writeln!(text, "# HELP oneoff_log_viewers Live log streams open now.\n# TYPE oneoff_log_viewers gauge");
    let _ = writeln!(text, "oneoff_log_viewers {}", state.viewers.total());
    let _ = writeln!(text, "# HELP oneoff_live_runs Runs queued or running.\n# TYPE oneoff_live_runs gauge");
    let _ = writeln!(text, "oneoff_live_runs {}", state.hub.live_runs());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
