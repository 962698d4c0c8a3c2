//! What `oneoff doctor` observed at each URL, gathered first and judged later.
//!
//! Every field is a plain observation (a status, a time, the headers that arrived), never
//! a conclusion; `checks.rs` turns these facts into verdicts. `--json` prints them as-is.

use serde::Serialize;
use serde_json::Value;

/// Everything observed through one URL (one hop of the chain).
#[derive(Debug, Clone, Serialize, Default)]
pub struct HopFacts {
    pub url: String,
    pub reach: Reach,
    pub websocket: Option<HandshakeFacts>,
    pub echo_http: Option<EchoFacts>,
    pub echo_ws: Option<EchoFacts>,
    pub sse: Option<SseFacts>,
    pub long_poll: Option<PollFacts>,
    pub idle: Option<IdleFacts>,
    pub origin: Option<HandshakeFacts>,
}

/// Whether a oneoff server answered at the URL at all.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reach {
    /// `/healthz` answered oneoff's `{"status":"ok"}`.
    Oneoff {
        elapsed_ms: u64,
    },
    /// A redirect, typically to an SSO login page.
    Redirect {
        status: u16,
        location: String,
    },
    /// Something answered, but not oneoff.
    NotOneoff {
        status: u16,
        server: Option<String>,
        snippet: String,
    },
    TlsError {
        message: String,
    },
    Unreachable {
        message: String,
    },
    #[default]
    NotProbed,
}

/// A raw WebSocket handshake and what came back.
#[derive(Debug, Clone, Serialize, Default)]
pub struct HandshakeFacts {
    pub path: String,
    pub origin: Option<String>,
    /// The status line's code; 0 when no response came back.
    pub status: u16,
    pub elapsed_ms: u64,
    pub upgraded: bool,
    /// `X-Oneoff-Diagnosis` of a refusal.
    pub diagnosis_header: Option<String>,
    /// The refusal body (oneoff's error and diagnosis) when it was JSON.
    pub body: Option<Value>,
    pub error: Option<String>,
}

/// What `/debug/echo` says it received, against what the doctor sent.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EchoFacts {
    pub available: bool,
    pub status: u16,
    /// Headers the doctor sent that did not arrive, by name.
    pub lost: Vec<String>,
    /// Headers of interest as they arrived (Host, Origin, Upgrade, Connection, X-Forwarded-*, Via).
    pub arrived: Vec<(String, String)>,
    pub http_version: Option<String>,
    pub error: Option<String>,
}

/// An SSE stream of events sent `interval_ms` apart.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SseFacts {
    pub status: u16,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub interval_ms: u64,
    pub expected_events: usize,
    /// Arrival time of each event, in milliseconds after the request was sent.
    pub arrivals_ms: Vec<u64>,
    pub error: Option<String>,
}

/// A request the server holds for `wait_ms` before answering.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PollFacts {
    pub path: String,
    pub wait_ms: u64,
    pub status: u16,
    pub elapsed_ms: u64,
    pub ok: bool,
    pub error: Option<String>,
}

/// Quiet periods each transport carried, from a stream that goes silent on purpose.
#[derive(Debug, Clone, Serialize, Default)]
pub struct IdleFacts {
    pub websocket: Vec<QuietProbe>,
    pub sse: Vec<QuietProbe>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuietProbe {
    pub quiet_s: u64,
    pub survived: bool,
    pub detail: Option<String>,
}
