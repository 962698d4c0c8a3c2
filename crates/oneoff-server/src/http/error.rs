//! The one HTTP error type: every failure becomes `{"error":{"code","message"}}` with its status.
//!
//! 4xx messages are meant for the user. 5xx answers say only "internal error"; the cause is
//! logged once, here, so internals never leak to clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use oneoff_api::v1::{ErrorBody, ErrorDetail, FieldMessage};
use oneoff_core::params::FieldError;

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

impl From<oneoff_store::StoreError> for ApiError {
    fn from(error: oneoff_store::StoreError) -> ApiError {
        ApiError::Internal(error.to_string())
    }
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
