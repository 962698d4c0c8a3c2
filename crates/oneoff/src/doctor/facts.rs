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
    /// The probe surface refused the doctor (sign-in, access, missing endpoints): no probe
    /// beyond it was tried, as every one would be refused the same way.
    pub access: Option<Refusal>,
    /// Whether the doctor sent `Authorization` or `Cookie` (from `-H` or `ONEOFF_TOKEN`).
    pub credentials_sent: bool,
}

/// A probe answered with something other than its result: a status, and oneoff's error when
/// the body was one.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Refusal {
    pub path: String,
    pub status: u16,
    /// `Location` of a redirect (an SSO login page).
    pub location: Option<String>,
    /// oneoff's `error.code`, when the body was oneoff's error.
    pub code: Option<String>,
    /// oneoff's `error.message`, or the start of any other body.
    pub message: Option<String>,
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
    /// 401: a proxy or oneoff wants an identity even for the health check.
    Unauthorized {
        status: u16,
        snippet: String,
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
    /// `Location` of a redirect.
    pub location: Option<String>,
    /// The refusal body (oneoff's error and diagnosis) when it was JSON.
    pub body: Option<Value>,
    /// Any answer but 101, read as a refusal (a 401, a login redirect, a 426).
    pub refusal: Option<Refusal>,
    pub error: Option<String>,
}

/// What `/api/v1/probe/echo` (over HTTP, or as the first message of `/api/v1/probe/ws`)
/// says arrived, against what the doctor sent.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EchoFacts {
    pub available: bool,
    pub status: u16,
    /// Headers the doctor sent that did not arrive, by name.
    pub lost: Vec<String>,
    /// The hop headers as they arrived (Host, Origin, Upgrade, Connection, Via, X-Forwarded-*, ...).
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
    pub refusal: Option<Refusal>,
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
    pub refusal: Option<Refusal>,
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
    /// The probe was refused before it started (a status), so it measured nothing.
    #[serde(default)]
    pub refused: bool,
    pub detail: Option<String>,
}
