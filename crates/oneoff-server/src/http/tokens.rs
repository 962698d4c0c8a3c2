//! API tokens and `whoami`: create (shown once, stored as a hash), list, revoke.
//!
//! A token made with an API token is its child: it expires no later than its parent (a
//! longer or absent `expires_in` is capped), and revoking the parent revokes it. So a
//! short-lived or leaked token cannot be turned into a lasting one, and revoking it takes
//! everything made with it. Minting with a token is still allowed, since that is how the
//! CLI, with the bootstrap token from `oneoff token create --config`, makes tokens for CI;
//! tokens made through the SSO proxy (or on the server's host) have no parent.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use oneoff_api::v1::{timestamp, CreateToken, CreatedToken, ErrorBody, Token, TokenList, WhoAmI};
use oneoff_core::audit::{AuditAction, Denial};
use oneoff_core::auth::{token_hash, IdentitySource, TOKEN_PREFIX};
use oneoff_store::{NewToken, TokenRecord};
use serde_json::json;

use super::auth::{deny, record, Caller};
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use crate::clock::now_us;
use crate::state::AppState;

/// Who the server takes the caller for, and where that identity came from.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "identity", operation_id = "whoami",
    responses((status = 200, description = "The caller", body = WhoAmI)))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    let principal = caller.principal;
    Json(WhoAmI {
        user: principal.user,
        email: principal.email,
        groups: principal.groups,
        source: principal.source.describe(),
        admin: principal.admin,
    })
}

pub(crate) fn view(record: &TokenRecord) -> Token {
    Token {
        id: record.id,
        name: record.name.clone(),
        user: record.user.clone(),
        groups: record.groups.clone(),
        created_by: record.created_by.clone(),
        created_at: timestamp(record.created_at_us),
        expires_at: record.expires_at_us.map(timestamp),
        revoked_at: record.revoked_at_us.map(timestamp),
        last_used_at: record.last_used_us.map(timestamp),
        parent_id: record.parent_id,
    }
}

/// A new random token: the prefix and 256 bits from the OS's generator, in hex.
pub(crate) fn new_token() -> String {
    let random = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
    let hex: String = random.iter().map(|id| id.simple().to_string()).collect();
    format!("{TOKEN_PREFIX}{}", &hex[..64])
}

/// Makes an API token, shown only in this answer.
///
/// Made with an API token, it is that token's child (expires no later, revoked with it).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "identity", operation_id = "create_token",
    request_body = CreateToken,
    responses(
        (status = 201, description = "The new token, shown only here", body = CreatedToken),
        (status = 413, description = "The body is larger than `max_body_bytes`", body = ErrorBody),
        (status = 415, description = "The body is not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_body`: a body of the wrong shape", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<impl IntoResponse, ApiError> {
    let principal = &caller.principal;
    let for_other = body.user.as_ref().is_some_and(|user| *user != principal.user) || body.groups.is_some();
    if principal.source == IdentitySource::Anonymous && !principal.admin {
        return Err(deny(&state, &caller, Denial::TokenCreate, None, None).await);
    }
    if for_other && !principal.admin {
        return Err(deny(&state, &caller, Denial::TokenCreateForOthers, None, None).await);
    }
    let name = body.name.trim().to_string();
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::bad_request("a token needs a name of 1 to 64 characters"));
    }
    // PostgreSQL cannot store a NUL in text; refused on SQLite alike.
    let mut texts = vec![("name", body.name.as_str())];
    texts.extend(body.user.as_deref().map(|user| ("user", user)));
    texts.extend(body.groups.iter().flatten().map(|group| ("groups", group.as_str())));
    if let Some((field, _)) = texts.iter().find(|(_, text)| text.contains('\0')) {
        return Err(ApiError::bad_request(format!("the token's `{field}` contains a NUL character; remove it")));
    }
    let now = now_us();
    let requested_expiry_us = match body.expires_in.as_deref() {
        None => None,
        Some(text) => {
            let duration = humantime_duration(text)?;
            Some(now.saturating_add(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)))
        }
    };
    let parent =
        match &principal.source {
            IdentitySource::Token { id, .. } => Some(state.store.token(*id).await?.ok_or_else(|| {
                super::auth::unauthorized("the API token this request was made with no longer exists")
            })?),
            _ => None,
        };
    let parent_expiry_us = parent.as_ref().and_then(|parent| parent.expires_at_us);
    let expires_at_us = match (requested_expiry_us, parent_expiry_us) {
        (Some(requested), Some(cap)) => Some(requested.min(cap)),
        (requested, cap) => requested.or(cap),
    };
    let capped = parent_expiry_us.is_some() && expires_at_us != requested_expiry_us;
    let user = body.user.clone().unwrap_or_else(|| principal.user.clone());
    let groups =
        body.groups
            .clone()
            .unwrap_or_else(|| if user == principal.user { principal.groups.clone() } else { Vec::new() });
    let token = new_token();
    let new = NewToken {
        name: name.clone(),
        user: user.clone(),
        groups,
        hash: token_hash(&token),
        created_by: principal.user.clone(),
        created_at_us: now,
        expires_at_us,
        parent_id: parent.as_ref().map(|parent| parent.id),
    };
    let Some(stored) = state.store.insert_token(&new).await? else {
        let parent = parent.as_ref().map_or_else(String::new, |parent| format!(" `{}`", parent.name));
        return Err(super::auth::unauthorized(format!(
            "API token{parent} was revoked or expired while the new token was being made"
        )));
    };
    let detail = json!({
        "token_id": stored.id,
        "name": name,
        "user": user,
        "parent_id": stored.parent_id,
        "expiry_capped_at_parent": capped,
    });
    record(&state, &caller, AuditAction::TokenCreate, None, None, detail).await;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info: view(&stored) })))
}

fn humantime_duration(text: &str) -> Result<std::time::Duration, ApiError> {
    let seconds = parse_duration_seconds(text.trim())
        .ok_or_else(|| ApiError::bad_request(format!("`{text}` is not a duration like 12h, 30d or 1y")))?;
    Ok(std::time::Duration::from_secs(seconds))
}

/// `90s`, `15m`, `12h`, `30d`, `8w`, `1y`.
pub(crate) fn parse_duration_seconds(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok().filter(|number| *number > 0)?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return None,
    };
    number.checked_mul(unit_seconds)
}

/// The caller's tokens (every token, for administrators).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "identity", operation_id = "list_tokens",
    responses((status = 200, description = "The tokens", body = TokenList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<TokenList>, ApiError> {
    let user = (!caller.principal.admin).then_some(caller.principal.user.as_str());
    let tokens = state.store.list_tokens(user).await?;
    Ok(Json(TokenList { tokens: tokens.iter().map(view).collect() }))
}

/// Revokes a token and, recursively, every token made with it.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "identity", operation_id = "revoke_token",
    params(("id" = i64, Path, description = "The token's id")),
    responses(
        (status = 200, description = "The revoked token", body = Token),
        (status = 404, description = "No such token (or another user's)", body = ErrorBody),
        (status = 409, description = "Already revoked", body = ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Token>, ApiError> {
    let token = state.store.token(id).await?.ok_or_else(|| ApiError::not_found(format!("no token {id}")))?;
    if !caller.principal.admin && token.user != caller.principal.user {
        // Recorded, but answered as a token that does not exist: whose ids exist is not theirs to know.
        let _recorded = deny(&state, &caller, Denial::TokenRevoke, None, None).await;
        return Err(ApiError::not_found(format!("no token {id}")));
    }
    let revoked = state.store.revoke_token(id, now_us()).await?;
    if revoked.is_empty() {
        return Err(ApiError::conflict(format!("token {id} is already revoked")));
    }
    // The tokens made with it (and with those) went with it.
    let descendants = &revoked[1..];
    let detail = json!({ "token_id": id, "name": token.name, "user": token.user, "also_revoked": descendants });
    record(&state, &caller, AuditAction::TokenRevoke, None, None, detail).await;
    let token = state.store.token(id).await?.ok_or_else(|| ApiError::not_found(format!("no token {id}")))?;
    Ok(Json(view(&token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_durations_parse() {
        assert_eq!(parse_duration_seconds("30d"), Some(30 * 86_400));
        assert_eq!(parse_duration_seconds("12h"), Some(43_200));
        assert_eq!(parse_duration_seconds("0d"), None);
        assert_eq!(parse_duration_seconds("soon"), None);
        assert_eq!(parse_duration_seconds("5x"), None);
    }

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let (first, second) = (new_token(), new_token());
        assert!(first.starts_with(TOKEN_PREFIX) && first.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(first, second);
    }
}
