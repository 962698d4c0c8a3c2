//! The one HTTP error type: every failure becomes `{"error":{"code","message"}}` with its status.
//!
//! 4xx messages are meant for the user. 5xx answers say only "internal error"; the cause is
//! logged once, here, so internals never leak to clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use oneoff_api::v1::{ErrorBody, ErrorDetail, FieldMessage};
use oneoff_core::params::FieldError;
use oneoff_store::StoreError;

use crate::executor::StartError;

#[derive(Debug)]
pub enum ApiError {
    /// A status with a stable machine-readable code and a message for people.
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    InvalidParams(Vec<FieldError>),
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::Client { status: StatusCode::BAD_REQUEST, code: "bad_request", message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::Client { status: StatusCode::NOT_FOUND, code: "not_found", message: message.into() }
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::Client { status: StatusCode::CONFLICT, code: "conflict", message: message.into() }
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::Client { status: StatusCode::SERVICE_UNAVAILABLE, code: "unavailable", message: message.into() }
    }
}

impl From<StoreError> for ApiError {
    /// A store that cannot write (full, read-only, damaged) is a 503 that says so: the request
    /// was fine and can be repeated once an operator has fixed the disk.
    fn from(error: StoreError) -> ApiError {
        match storage_fault(&error) {
            Some((code, advice)) => {
                tracing::warn!(%error, "refused a request: the store cannot write");
                ApiError::Client { status: StatusCode::SERVICE_UNAVAILABLE, code, message: advice.to_string() }
            }
            None => ApiError::Internal(error.to_string()),
        }
    }
}

/// For a fault of the disk or the database file: a stable code and what an operator must do.
pub fn storage_fault(error: &StoreError) -> Option<(&'static str, &'static str)> {
    Some(match error {
        StoreError::Full(_) => (
            "storage_full",
            // docs/API.md and docs/security.md quote "free space in its data directory".
            "storage full: the server's database has no disk space left; free space in its data directory \
             (`data_dir`, for the embedded SQLite) or on the PostgreSQL server's disk. Runs waiting for \
             the store go on by themselves once there is space.",
        ),
        StoreError::ReadOnly(_) => (
            "storage_read_only",
            "the server's database is read-only: make its data directory (`data_dir`) and the \
             database file in it writable for the server, or point `database` at a PostgreSQL \
             primary that accepts writes",
        ),
        StoreError::Damaged(_) => (
            "storage_damaged",
            "the server's database file is damaged; an operator must restore it (see the server log)",
        ),
        StoreError::Io(_) => {
            ("storage_io_error", "the server cannot read or write its database (disk I/O error; see the server log)")
        }
        StoreError::Unavailable(_) | StoreError::Tls(_) => (
            "storage_unavailable",
            "the server cannot reach its database (see the server log). Runs waiting for the store go \
             on by themselves once it is back.",
        ),
        _ => return None,
    })
}

impl From<StartError> for ApiError {
    fn from(error: StartError) -> ApiError {
        match error {
            StartError::UnknownJob(_) => ApiError::not_found(error.to_string()),
            StartError::InvalidParams(fields) => ApiError::InvalidParams(fields),
            StartError::ShuttingDown | StartError::QueueFull(_) => ApiError::unavailable(error.to_string()),
            StartError::Store(store) => store.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, detail) = match self {
            ApiError::Client { status, code, message } => {
                (status, ErrorDetail { code: code.into(), message, fields: Vec::new() })
            }
            ApiError::InvalidParams(fields) => {
                let summary: Vec<String> = fields.iter().map(ToString::to_string).collect();
                let detail = ErrorDetail {
                    code: "invalid_params".into(),
                    message: format!("invalid parameters: {}", summary.join("; ")),
                    fields: fields.iter().map(FieldMessage::from).collect(),
                };
                (StatusCode::UNPROCESSABLE_ENTITY, detail)
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error answering a request");
                let detail = ErrorDetail {
                    code: "internal".into(),
                    message: "internal error; see the server log".into(),
                    fields: Vec::new(),
                };
                (StatusCode::INTERNAL_SERVER_ERROR, detail)
            }
        };
        (status, Json(ErrorBody { error: detail })).into_response()
    }
}

/// The stable code for an error status produced outside our handlers (extractors, middleware).
pub fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        _ if status.is_server_error() => "internal",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_faults_are_503s_in_our_words_and_other_store_errors_stay_internal() {
        type Fault = fn(String) -> StoreError;
        let faults: [(Fault, &str, &str); 5] = [
            (StoreError::Full, "storage_full", "storage full"),
            (StoreError::ReadOnly, "storage_read_only", "the server's database is read-only"),
            (StoreError::Damaged, "storage_damaged", "the server's database file is damaged"),
            (StoreError::Io, "storage_io_error", "the server cannot read or write"),
            (StoreError::Unavailable, "storage_unavailable", "the server cannot reach its database"),
        ];
        for (fault, expected_code, opening) in faults {
            let sqlite_words = "SQLite's own words";
            match ApiError::from(fault(sqlite_words.into())) {
                ApiError::Client { status, code, message } => {
                    assert_eq!((status, code), (StatusCode::SERVICE_UNAVAILABLE, expected_code));
                    assert!(message.starts_with(opening), "{message}");
                    assert!(!message.contains(sqlite_words), "they stay in the server log: {message}");
                }
                other => panic!("{expected_code}: {other:?}"),
            }
        }
        let bug = StoreError::Sequence { run: oneoff_core::RunId(1), expected: 2, found: 5 };
        assert!(matches!(ApiError::from(bug), ApiError::Internal(_)));
    }
}
