//! Who is calling: the [`Caller`] extractor finds the principal of every request that needs
//! one — a stream ticket (log endpoints only), a signed assertion, an API token
//! (`Authorization: Bearer`), SSO proxy headers from a trusted peer, or anonymous when
//! allowed — and refuses cross-site state changes from browsers.
//!
//! Identity headers from a peer outside `trusted_cidrs` are ignored (logged and counted),
//! never believed: anyone can send `X-Forwarded-User`. A credential that is present but
//! bad (a ticket, an assertion, a token) is refused with 401, never skipped in favour of
//! another identity.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use oneoff_core::audit::{bound_client_chain, AuditAction, AuditEntry, Denial};
use oneoff_core::auth::{split_groups, token_hash, IdentitySource, Principal, TOKEN_PREFIX};
use oneoff_core::JobSpec;

use super::error::ApiError;
use super::tickets::{self, PresentedTicket, StreamTickets, TicketAccepted};
use crate::clock::now_us;
use crate::state::AppState;

/// The principal of a request and where the request came from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The TCP peer, then the `X-Forwarded-For` chain as received.
    pub client: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0);
        let client = client_chain(peer, &parts.headers);
        check_cross_site(&parts.method, &parts.headers, &state.config.server.public_origins)?;
        // A ticket in the URL is what a browser sends when it cannot send headers: it decides.
        let principal = match parts.extensions.get::<PresentedTicket>().cloned() {
            Some(presented) => from_ticket(parts, state, &presented).await?,
            None => identify(state, peer, &parts.headers).await?,
        };
        Ok(Caller { principal, client })
    }
}

async fn from_ticket(parts: &mut Parts, state: &AppState, presented: &PresentedTicket) -> Result<Principal, ApiError> {
    let Some(book) = parts.extensions.get::<Arc<StreamTickets>>().cloned() else {
        return Err(ApiError::Internal("the stream ticket book is not installed on this router".into()));
    };
    let accepted_here = parts.extensions.get::<TicketAccepted>().is_some();
    let mut run = String::new();
    if accepted_here {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        run = params.iter().find(|(name, _)| *name == "id").map(|(_, value)| value.to_string()).unwrap_or_default();
    }
    tickets::redeem(&book, presented, accepted_here, &run)
}

fn client_chain(peer: Option<SocketAddr>, headers: &HeaderMap) -> String {
    let mut chain = peer.map(|peer| peer.ip().to_string()).unwrap_or_else(|| "unknown".into());
    if let Some(forwarded) = headers.get("x-forwarded-for").and_then(|value| value.to_str().ok()) {
        chain.push_str(" via ");
        chain.push_str(forwarded);
    }
    chain
}

/// State-changing requests that carry a browser `Origin` must come from a public origin.
fn check_cross_site(method: &Method, headers: &HeaderMap, public_origins: &[String]) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || public_origins.is_empty() {
        return Ok(());
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()) else { return Ok(()) };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    if public_origins.contains(&origin) {
        return Ok(());
    }
    Err(ApiError::Client {
        status: StatusCode::FORBIDDEN,
        code: "cross_site_request",
        message: format!(
            "requests from {origin} may not change anything here (not one of the server's public_origins)"
        ),
    })
}

async fn identify(state: &AppState, peer: Option<SocketAddr>, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let auth = &state.config.auth;
    // A signed assertion, when present, decides: a bad one is refused, never ignored.
    for (index, provider) in state.jwt.providers() {
        let Some(value) = headers.get(provider.header.as_str()).and_then(|value| value.to_str().ok()) else { continue };
        let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        if provider.header.eq_ignore_ascii_case("authorization") && token.starts_with(TOKEN_PREFIX) {
            continue; // an API token, handled below
        }
        return match state.jwt.verify(index, token).await {
            Ok(claims) => Ok(auth.principal(
                claims.user,
                claims.email,
                claims.groups,
                IdentitySource::Jwt(provider.header.clone()),
            )),
            Err(reason) => {
                tracing::warn!(header = %provider.header, %reason, "identity assertion refused");
                Err(unauthorized(format!("{} refused: {reason}", provider.header)))
            }
        };
    }
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()) {
        return from_token(state, value).await;
    }
    if let Some(trusted) = &auth.trusted_headers {
        let user = headers.get(trusted.user_header.as_str()).and_then(|value| value.to_str().ok()).map(str::trim);
        if let Some(user) = user.filter(|user| !user.is_empty()) {
            match peer {
                Some(peer) if trusted.trusts(peer.ip()) => {
                    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
                    let groups = text(&trusted.groups_header).map(|value| split_groups(&value)).unwrap_or_default();
                    return Ok(auth.principal(
                        user.to_string(),
                        text(&trusted.email_header),
                        groups,
                        IdentitySource::TrustedHeaders,
                    ));
                }
                _ => {
                    state.counters.untrusted_identity_headers.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = ?peer, header = %trusted.user_header, "identity header from an untrusted peer ignored");
                }
            }
        }
    }
    if auth.anonymous {
        return Ok(auth.anonymous_principal());
    }
    Err(unauthorized("sign in through the SSO proxy, or send an API token as `Authorization: Bearer ...`"))
}

async fn from_token(state: &AppState, value: &str) -> Result<Principal, ApiError> {
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim);
    let Some(token) = token.filter(|token| token.starts_with(TOKEN_PREFIX)) else {
        return Err(unauthorized("the Authorization header must be `Bearer oneoff_...`"));
    };
    let now = now_us();
    let record = state.store.use_token(&token_hash(token), now).await?;
    let Some(record) = record else { return Err(unauthorized("unknown API token")) };
    if record.revoked_at_us.is_some() {
        return Err(unauthorized(format!("API token `{}` was revoked", record.name)));
    }
    if record.expires_at_us.is_some_and(|expires| expires <= now) {
        return Err(unauthorized(format!("API token `{}` has expired", record.name)));
    }
    Ok(state.config.auth.principal(record.user, None, record.groups, IdentitySource::Token(record.name)))
}

pub fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::Client { status: StatusCode::UNAUTHORIZED, code: "unauthorized", message: message.into() }
}

/// Records a denied attempt in the audit trail (repeats are summarised) and answers 403.
pub async fn deny(
    state: &AppState,
    caller: &Caller,
    denial: Denial,
    job: Option<&JobSpec>,
    run_id: Option<i64>,
) -> ApiError {
    let job = job.map(|job| job.name.as_str());
    let message = denial.sentence(&caller.principal.user, job);
    let entry = audit_entry(caller, AuditAction::Denied(denial), message.clone(), job, run_id, "{}".into());
    state.audit.deny(denial, entry).await;
    ApiError::Client { status: StatusCode::FORBIDDEN, code: "forbidden", message }
}

/// Appends to the audit trail; a failure is logged loudly but does not undo the action.
pub async fn record(
    state: &AppState,
    caller: &Caller,
    action: AuditAction,
    job: Option<&str>,
    run_id: Option<i64>,
    detail: serde_json::Value,
) {
    let message = action.sentence(&caller.principal.user, job, run_id);
    state.audit.append(audit_entry(caller, action, message, job, run_id, detail.to_string())).await;
}

fn audit_entry(
    caller: &Caller,
    action: AuditAction,
    message: String,
    job: Option<&str>,
    run_id: Option<i64>,
    detail: String,
) -> AuditEntry {
    AuditEntry {
        at_us: now_us(),
        actor: caller.principal.user.clone(),
        source: caller.principal.source.describe(),
        // Bounded here already, so a denial counted in memory holds no more than a record.
        client: bound_client_chain(&caller.client),
        action,
        message,
        job: job.map(str::to_string),
        run_id,
        detail,
    }
}
