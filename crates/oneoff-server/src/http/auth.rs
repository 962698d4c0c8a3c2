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
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use oneoff_core::audit::{bound_client_chain, AuditAction, AuditEntry, Denial};
use oneoff_core::auth::{split_groups, token_hash, IdentitySource, Principal, TOKEN_PREFIX};
use oneoff_core::JobSpec;

use super::error::ApiError;
use super::handshake::same_authority;
use super::tickets::{self, PresentedTicket, StreamTickets, TicketAccepted};
use crate::clock::now_us;
use crate::state::AppState;

/// The principal of a request and where the request came from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The TCP peer, then the `X-Forwarded-For` chain as received.
    pub client: String,
    /// The host (and port) the browser sent the request to: what a page of this server has
    /// as its origin. See `own_authority`.
    pub own_authority: Option<String>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0);
        let client = client_chain(peer, &parts.headers);
        let proxy_trusted = peer.is_some_and(|peer| {
            state.config.auth.trusted_headers.as_ref().is_some_and(|trusted| trusted.trusts(peer.ip()))
        });
        let own = own_authority(parts, proxy_trusted);
        check_cross_site(&parts.method, &parts.headers, own.as_deref(), &state.config.server.public_origins)?;
        // A ticket in the URL is what a browser sends when it cannot send headers: it decides.
        let principal = match parts.extensions.get::<PresentedTicket>().cloned() {
            Some(presented) => from_ticket(parts, state, &presented).await?,
            None => identify(state, peer, &parts.headers).await?,
        };
        tracing::Span::current().record("user", principal.user.as_str());
        Ok(Caller { principal, client, own_authority: own })
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
    tickets::redeem(&book, presented, accepted_here, &run).await
}

fn client_chain(peer: Option<SocketAddr>, headers: &HeaderMap) -> String {
    let mut chain = peer.map(|peer| peer.ip().to_string()).unwrap_or_else(|| "unknown".into());
    if let Some(forwarded) = headers.get("x-forwarded-for").and_then(|value| value.to_str().ok()) {
        chain.push_str(" via ");
        chain.push_str(forwarded);
    }
    chain
}

/// Refuses a state change that a browser made on behalf of another site (CSRF), whatever
/// its content type: a form POST needs no preflight, and neither does a `POST .../cancel`
/// with no body.
///
/// What the browser says decides, as no page can forge it:
/// - an `Origin` listed in `public_origins` passes; with `public_origins` set, any other
///   `Origin` is refused;
/// - `Sec-Fetch-Site: same-origin` (our own page) or `none` (typed by the user) passes, and
///   `cross-site`, `same-site` (a sibling host, maybe someone else's) or anything else is
///   refused;
/// - from a browser too old to send `Sec-Fetch-Site`, `Origin` must name the server's own
///   host (see [`own_authority`]); `Origin: null` is refused;
/// - a request with neither header is not a page's (the CLI, curl, scripts) and passes.
fn check_cross_site(
    method: &Method,
    headers: &HeaderMap,
    own_authority: Option<&str>,
    public_origins: &[String],
) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let text = |name: header::HeaderName| {
        headers.get(name).map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_ascii_lowercase())
    };
    let origin = text(header::ORIGIN).map(|origin| origin.trim_end_matches('/').to_string());
    let fetch_site = text(header::HeaderName::from_static("sec-fetch-site"));
    if origin.as_ref().is_some_and(|origin| public_origins.contains(origin)) {
        return Ok(());
    }
    let refused = |why: String| ApiError::Client {
        status: StatusCode::FORBIDDEN,
        code: "cross_site_request",
        message: format!(
            "{why}: a page on another site may not change anything here. If this is the URL users open, \
             list it in [server] public_origins"
        ),
    };
    let shown_origin = origin.clone().unwrap_or_else(|| "(no Origin)".into());
    if let (Some(origin), false) = (&origin, public_origins.is_empty()) {
        return Err(refused(format!(
            "requests from {origin} are refused (not one of the server's public_origins: {})",
            public_origins.join(", ")
        )));
    }
    match fetch_site.as_deref() {
        Some("same-origin" | "none") => Ok(()),
        Some(site) => Err(refused(format!("the browser says this request from {shown_origin} is {site}"))),
        None => match &origin {
            None => Ok(()),
            Some(origin) if same_authority(origin, own_authority) => Ok(()),
            Some(origin) => Err(refused(format!(
                "requests from {origin} are refused (this server is {})",
                own_authority.unwrap_or("reached without a Host header")
            ))),
        },
    }
}

/// The server's own origin as the browser sees it: the host (and port) it sent the request
/// to. That is `Host` (or HTTP/2's `:authority`), unless a trusted proxy (a peer in
/// `trusted_cidrs`) says otherwise in `X-Forwarded-Host`, since proxies often rewrite
/// `Host` to the upstream's address. Anyone else's `X-Forwarded-Host` is ignored.
fn own_authority(parts: &Parts, proxy_trusted: bool) -> Option<String> {
    let first = |name: &str| {
        let value = parts.headers.get(name)?.to_str().ok()?;
        value.split(',').next().map(|value| value.trim().to_ascii_lowercase()).filter(|value| !value.is_empty())
    };
    proxy_trusted
        .then(|| first("x-forwarded-host"))
        .flatten()
        .or_else(|| first("host"))
        .or_else(|| parts.uri.authority().map(|authority| authority.as_str().to_ascii_lowercase()))
}

/// Headers whose values never leave the server in a report (`/debug/echo`, the probe
/// facts): credentials, and the signed identity assertions and access tokens that SSO
/// proxies and load balancers add (replayable).
const CREDENTIAL_HEADERS: [&str; 17] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "cf-access-jwt-assertion",
    "x-pomerium-jwt-assertion",
    "x-jwt-assertion",
    "x-forwarded-access-token",
    "x-auth-request-access-token",
    "x-goog-iap-jwt-assertion",
    "x-auth-token",
    "x-amz-security-token",
    "x-vouch-idp-accesstoken",
    "x-vouch-idp-idtoken",
    "cf-access-token",
    "sec-websocket-protocol",
];

/// Families of credential headers: AWS ALB's `x-amzn-oidc-*` (data, access token, identity)
/// and Azure App Service's `x-ms-token-*` and `x-ms-client-principal*`.
const CREDENTIAL_PREFIXES: [&str; 3] = ["x-amzn-oidc-", "x-ms-token-", "x-ms-client-principal"];

/// True for a credential header (lower-cased name): the fixed lists, every configured
/// assertion header, and `[debug] redact_headers`.
pub(super) fn is_credential_header(config: &oneoff_core::Config, name: &str) -> bool {
    CREDENTIAL_HEADERS.contains(&name)
        || CREDENTIAL_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
        || config.auth.jwt.iter().any(|provider| provider.header.eq_ignore_ascii_case(name))
        || config.debug.redact_headers.iter().any(|header| header.eq_ignore_ascii_case(name))
}

async fn identify(state: &AppState, peer: Option<SocketAddr>, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let auth = &state.config.auth;
    // An API token comes first: a bad one is refused, never ignored for another identity.
    if let Some(value) = single_header(headers, "Authorization")? {
        let value = credential_text("Authorization", value)?;
        if value.strip_prefix("Bearer ").unwrap_or(value).trim().starts_with(TOKEN_PREFIX) {
            return from_token(state, value).await;
        }
    }
    // Then a signed assertion, when present, decides: a bad one is refused, never ignored.
    for (index, provider) in state.jwt.providers() {
        let Some(value) = single_header(headers, &provider.header)? else { continue };
        let value = credential_text(&provider.header, value)?;
        let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
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
    if let Some(value) = single_header(headers, "Authorization")? {
        return from_token(state, credential_text("Authorization", value)?).await;
    }
    if let Some(trusted) = &auth.trusted_headers {
        let user_present = headers.get(trusted.user_header.as_str()).is_some_and(|value| !value.is_empty());
        if user_present {
            match peer {
                Some(peer) if trusted.trusts(peer.ip()) => {
                    let user = identity_text(headers, &trusted.user_header)?.unwrap_or_default();
                    let email = identity_text(headers, &trusted.email_header)?;
                    let groups = identity_text(headers, &trusted.groups_header)?;
                    let user = user.trim();
                    if user.is_empty() {
                        return Err(ApiError::bad_request(format!(
                            "the {} header is blank; the SSO proxy must send the user's name",
                            trusted.user_header
                        )));
                    }
                    return Ok(auth.principal(
                        user.to_string(),
                        email.map(|email| email.trim().to_string()),
                        groups.map(|groups| split_groups(&groups)).unwrap_or_default(),
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

/// The one value of an identity or credential header. Sent twice, it is refused: a proxy
/// that appends its value instead of replacing the client's would otherwise let whichever
/// comes first decide who is calling.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::Client {
            status: StatusCode::BAD_REQUEST,
            code: "repeated_identity_header",
            message: format!(
                "the {name} header was sent more than once; send it once (a proxy in front of oneoff may be \
                 appending it instead of replacing the client's)"
            ),
        });
    }
    Ok(first)
}

/// A credential (a token, a signed assertion) is ASCII. One that is not is refused, never
/// skipped in favour of another identity.
fn credential_text<'a>(name: &str, value: &'a HeaderValue) -> Result<&'a str, ApiError> {
    value.to_str().map_err(|_| unauthorized(format!("{name} refused: it holds bytes that are not ASCII text")))
}

/// A trusted proxy's identity header, taken as the UTF-8 text it sent (names such as
/// `José` arrive as raw UTF-8 bytes; nothing is percent-decoded). Bytes that are not
/// UTF-8 are refused with 400, never read as if the header were absent.
fn identity_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    let Some(value) = single_header(headers, name)? else { return Ok(None) };
    match std::str::from_utf8(value.as_bytes()) {
        Ok(text) => Ok(Some(text.to_string())),
        Err(_) => Err(ApiError::Client {
            status: StatusCode::BAD_REQUEST,
            code: "bad_identity_header",
            message: format!("the {name} header is not UTF-8 text; the SSO proxy must send names as UTF-8"),
        }),
    }
}

pub(super) async fn from_token(state: &AppState, value: &str) -> Result<Principal, ApiError> {
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim);
    let Some(token) = token.filter(|token| token.starts_with(TOKEN_PREFIX)) else {
        // The value is not echoed: whatever it is, it may be somebody's credential.
        return Err(unauthorized(format!(
            "the Authorization header does not hold an API token: send `Authorization: Bearer {TOKEN_PREFIX}` \
             followed by 64 hex digits; create a token on the web UI's Tokens page (once signed in) or \
             with `oneoff token create`"
        )));
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
    Ok(state.config.auth.principal(
        record.user,
        None,
        record.groups,
        IdentitySource::Token { id: record.id, name: record.name },
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (header::HeaderName::from_static(name), HeaderValue::from_static(value)))
            .collect()
    }

    #[test]
    fn own_origin_is_compared_by_host_and_port() {
        assert!(same_authority("https://oneoff.example.com", Some("oneoff.example.com")));
        assert!(same_authority("https://oneoff.example.com", Some("oneoff.example.com:443")));
        assert!(same_authority("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(same_authority("http://[::1]:8080", Some("[::1]:8080")));
        assert!(!same_authority("http://[::1]:8080", Some("[::1]:9090")));
        assert!(!same_authority("https://evil.example", Some("oneoff.example.com")));
        assert!(!same_authority("https://oneoff.example.com:8443", Some("oneoff.example.com")));
        assert!(!same_authority("null", Some("oneoff.example.com")));
        assert!(!same_authority("https://oneoff.example.com", None));
    }

    #[test]
    fn browsers_may_change_state_only_from_our_own_pages() {
        let check = |pairs: &[(&'static str, &'static str)], public: &[&str]| {
            let public: Vec<String> = public.iter().map(|origin| origin.to_string()).collect();
            check_cross_site(&Method::POST, &headers(pairs), Some("oneoff.example.com"), &public).is_ok()
        };
        assert!(check(&[], &[]), "the CLI sends neither header");
        assert!(check(&[("origin", "https://oneoff.example.com")], &[]));
        assert!(check(&[("sec-fetch-site", "same-origin"), ("origin", "https://oneoff.example.com")], &[]));
        assert!(check(&[("sec-fetch-site", "none")], &[]));
        assert!(!check(&[("origin", "https://evil.example")], &[]));
        assert!(!check(&[("origin", "null")], &[]));
        assert!(!check(&[("sec-fetch-site", "cross-site")], &[]));
        assert!(!check(&[("sec-fetch-site", "same-site"), ("origin", "https://evil.example.com")], &[]));
        assert!(!check(&[("sec-fetch-site", "cross-site"), ("origin", "https://oneoff.example.com")], &[]));
        assert!(check(&[("sec-fetch-site", "cross-site"), ("origin", "https://ui.example")], &["https://ui.example"]));
        assert!(!check(&[("origin", "https://oneoff.example.com")], &["https://ui.example"]));
        let get = check_cross_site(&Method::GET, &headers(&[("sec-fetch-site", "cross-site")]), None, &[]);
        assert!(get.is_ok(), "reads are not state changes");
    }

    #[test]
    fn identity_headers_are_single_and_utf8() {
        let mut repeated = headers(&[("x-forwarded-user", "mallory")]);
        repeated.append("x-forwarded-user", HeaderValue::from_static("root"));
        assert!(matches!(
            identity_text(&repeated, "x-forwarded-user"),
            Err(ApiError::Client { code: "repeated_identity_header", .. })
        ));
        let mut utf8 = HeaderMap::new();
        utf8.insert("x-forwarded-user", HeaderValue::from_bytes("José".as_bytes()).unwrap());
        assert_eq!(identity_text(&utf8, "x-forwarded-user").unwrap().as_deref(), Some("José"));
        utf8.insert("x-forwarded-user", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert!(identity_text(&utf8, "x-forwarded-user").is_err());
        assert_eq!(identity_text(&utf8, "x-forwarded-email").unwrap(), None);
    }
}
