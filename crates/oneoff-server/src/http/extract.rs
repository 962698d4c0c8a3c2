//! Extractors whose rejections speak the API's JSON error format instead of plain text.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::{code_for, ApiError};

/// `Json<T>` with JSON errors: 400 syntax, 415 content type, 413 size, 422 shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "send the body as JSON with `Content-Type: application/json`".to_string()
        }
        JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than the server accepts (max_body_bytes)".to_string()
        }
        _ => rejection.body_text(),
    };
    ApiError::Client { status, code: code_for(status), message }
}

/// `Query<T>` with a 400 JSON error naming the bad parameter, what it must be and what came.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Decodes a query string as axum's `Query` does, keeping the name of the key that failed.
fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    // No name, filter or search text holds a NUL, and PostgreSQL cannot take one in text:
    // refused here for every query alike, so that both stores give the same 400.
    let mut pairs = form_urlencoded::parse(query.as_bytes());
    if let Some((key, _)) = pairs.find(|(key, value)| key.contains('\0') || value.contains('\0')) {
        return Err(ApiError::bad_request(format!(
            "query parameter `{}` contains a NUL character (%00); remove it",
            key.escape_default()
        )));
    }
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = error.path().to_string();
        let reason = error.inner().to_string();
        ApiError::bad_request(query_problem(query, &key, &reason))
    })
}

/// A sentence for one bad query parameter, in place of serde's words.
fn query_problem(query: &str, key: &str, reason: &str) -> String {
    let values: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == key)
        .map(|(_, value)| value.into_owned())
        .collect();
    let value = values.first().map(String::as_str).unwrap_or_default();
    let shown: String = value.chars().take(40).collect();
    if let Some(field) = reason.strip_prefix("duplicate field `").and_then(|rest| rest.split('`').next()) {
        return format!("query parameter `{field}` is given more than once; give it once");
    }
    if reason == "invalid digit found in string" || reason == "cannot parse integer from empty string" {
        // Digits with a minus sign fail only for a type without negative numbers.
        if value.parse::<i64>().is_ok() {
            return format!("query parameter `{key}` must be a whole number of 0 or more, not `{shown}`");
        }
        return format!("query parameter `{key}` must be a whole number, not `{shown}`");
    }
    if reason == "number too large to fit in target type" || reason == "number too small to fit in target type" {
        return format!("query parameter `{key}` is out of range: `{shown}`");
    }
    if reason.starts_with("provided string was not `true` or `false`") {
        return format!("query parameter `{key}` must be true or false, not `{shown}`");
    }
    if key.is_empty() || key == "." {
        return format!("bad query string: {reason}");
    }
    format!("query parameter `{key}`: {reason}")
}

/// `Path<T>` with a JSON error.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Query {
        limit: Option<u32>,
        before: Option<i64>,
        follow: Option<bool>,
    }

    fn message(query: &str) -> String {
        match parse_query::<Query>(query) {
            Ok(parsed) => panic!("{query} parsed as {parsed:?}"),
            Err(ApiError::Client { message, .. }) => message,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_query_parameter_is_named_with_what_it_must_be() {
        assert_eq!(message("limit=abc"), "query parameter `limit` must be a whole number, not `abc`");
        assert_eq!(message("limit=-1"), "query parameter `limit` must be a whole number of 0 or more, not `-1`");
        assert_eq!(message("limit="), "query parameter `limit` must be a whole number, not ``");
        assert_eq!(
            message("before=99999999999999999999"),
            "query parameter `before` is out of range: `99999999999999999999`"
        );
        assert_eq!(message("follow=maybe"), "query parameter `follow` must be true or false, not `maybe`");
        assert_eq!(message("limit=1&limit=2"), "query parameter `limit` is given more than once; give it once");
        assert!(parse_query::<Query>("limit=5&before=-3&other=x").is_ok());
        assert_eq!(message("other=a%00b"), "query parameter `other` contains a NUL character (%00); remove it");
        assert_eq!(message("a%00=1"), "query parameter `a\\u{0}` contains a NUL character (%00); remove it");
    }
}
