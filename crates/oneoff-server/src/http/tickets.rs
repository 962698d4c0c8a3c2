//! Stream tickets: how a browser whose identity is an API token follows a log.
//!
//! `new WebSocket(url)` and `new EventSource(url)` cannot send an `Authorization` header,
//! and a long-lived token in a URL ends up in proxy logs and browser history. So the page
//! asks `POST /api/v1/runs/{id}/log/ticket` (with its token, like any request) for a ticket:
//! random, bound to that run and that principal, valid for `[auth] stream_ticket_ttl`, and
//! good for one connection. The log endpoints then take `?ticket=` as the identity.
//!
//! Tickets live in the store, so that a ticket asked of one replica opens the stream on whichever
//! replica the load balancer picks, and only once anywhere: only a SHA-256 of each ticket is
//! stored, and presenting it deletes it in the same statement that reads it. Both bounds
//! (`max_stream_tickets` in all, `max_stream_tickets_per_user` per user) are counted in the
//! database when a ticket is issued, after expired ones are swept, so a flood of ticket
//! requests is refused (503 / 429) rather than growing the table. [`take_from_query`] moves the
//! ticket out of the URL before anything (the request trace, the handler's query parsing) sees
//! it, so tickets are never logged. Expiry is by the replicas' wall clocks (keep them in sync).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{OriginalUri, Request, State};
use axum::http::uri::PathAndQuery;
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use oneoff_api::v1::{timestamp, ErrorBody, StreamTicket};
use oneoff_core::auth::{token_hash, Principal, StreamTicketLimits};
use oneoff_core::RunId;
use oneoff_store::{NewStreamTicket, Store, StoreError, TicketCaps, TicketRefusal};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiPath;
use super::runs::visible_run;
use crate::clock::now_us;
use crate::state::AppState;

/// The query parameter that carries a ticket.
const QUERY_PARAMETER: &str = "ticket";
/// Every ticket starts with this, so a leaked one is easy to recognise.
const TICKET_PREFIX: &str = "ticket_";

/// The tickets given out and not used yet, in the store every replica shares.
pub struct StreamTickets {
    limits: StreamTicketLimits,
    store: Store,
}

/// Why no ticket was given.
#[derive(Debug)]
pub enum IssueRefusal {
    /// `max_stream_tickets` unused tickets exist already.
    Full(usize),
    /// This user holds `max_stream_tickets_per_user` unused tickets already.
    TooManyForUser(usize),
    /// The operating system's random generator failed.
    NoRandomness,
    Store(StoreError),
}

/// Why a presented ticket was not accepted. Every case but the store's is a 401.
#[derive(Debug)]
pub enum RedeemRefusal {
    /// Never issued, already used, or expired and swept: these cannot be told apart.
    Unknown,
    Expired,
    OtherRun {
        issued_for: RunId,
    },
    Store(StoreError),
}

impl StreamTickets {
    pub fn new(limits: StreamTicketLimits, store: Store) -> StreamTickets {
        StreamTickets { limits, store }
    }

    pub fn ttl(&self) -> Duration {
        self.limits.ttl
    }

    /// A new ticket for `principal` to follow `run` once, valid from `now_us` for the TTL.
    pub async fn issue(&self, principal: &Principal, run: RunId, now_us: i64) -> Result<String, IssueRefusal> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|_| IssueRefusal::NoRandomness)?;
        let ticket: String =
            TICKET_PREFIX.chars().chain(random.iter().flat_map(|byte| hex_digits(*byte))).collect::<String>();
        let ttl_us = i64::try_from(self.limits.ttl.as_micros()).unwrap_or(i64::MAX);
        let new = NewStreamTicket {
            hash: token_hash(&ticket),
            run,
            principal: principal.clone(),
            expires_at_us: now_us.saturating_add(ttl_us),
        };
        let caps =
            TicketCaps { max_outstanding: self.limits.max_outstanding, max_per_user: self.limits.max_per_principal };
        match self.store.issue_stream_ticket(&new, caps, now_us).await.map_err(IssueRefusal::Store)? {
            Ok(()) => Ok(ticket),
            Err(TicketRefusal::Full(max)) => Err(IssueRefusal::Full(max)),
            Err(TicketRefusal::TooManyForUser(max)) => Err(IssueRefusal::TooManyForUser(max)),
        }
    }

    /// Uses up `ticket` (whatever the outcome: a ticket is presented once, on any replica)
    /// and returns its principal if it was issued for `run` and has not expired at `now_us`.
    pub async fn redeem(&self, ticket: &str, run: RunId, now_us: i64) -> Result<Principal, RedeemRefusal> {
        let found = self
            .store
            .take_stream_ticket(&token_hash(ticket))
            .await
            .map_err(RedeemRefusal::Store)?
            .ok_or(RedeemRefusal::Unknown)?;
        if found.expires_at_us <= now_us {
            return Err(RedeemRefusal::Expired);
        }
        if found.run != run {
            return Err(RedeemRefusal::OtherRun { issued_for: found.run });
        }
        Ok(found.principal)
    }
}

fn hex_digits(byte: u8) -> [char; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [char::from(HEX[usize::from(byte >> 4)]), char::from(HEX[usize::from(byte & 15)])]
}

/// Marks a route whose [`Caller`] may be proven by a ticket: the log transports only.
#[derive(Debug, Clone, Copy)]
pub struct TicketAccepted;

/// The ticket a request carried in its query, moved out of the URL by [`take_from_query`].
/// Not `Debug`: a ticket is a credential and must not reach a log line.
#[derive(Clone)]
pub struct PresentedTicket {
    pub value: String,
    /// More than one `ticket=` in the query: refused rather than guessed at.
    pub ambiguous: bool,
}

/// Middleware, outermost: moves `ticket=` from the query into a [`PresentedTicket`], so the
/// request trace, access logs and the handlers' strict query parsing never see it.
pub async fn take_from_query(mut request: Request, next: Next) -> Response {
    let Some(query) = request.uri().query() else { return next.run(request).await };
    // Names are compared decoded: `%74icket=` is a ticket too, and must not reach the trace.
    fn decoded(pair: &str) -> Option<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
        form_urlencoded::parse(pair.as_bytes()).next()
    }
    let is_ticket = |pair: &&str| decoded(pair).is_some_and(|(name, _)| name == QUERY_PARAMETER);
    if !query.split('&').any(|pair| is_ticket(&pair)) {
        return next.run(request).await;
    }
    let (tickets, rest): (Vec<&str>, Vec<&str>) = query.split('&').partition(is_ticket);
    let presented = PresentedTicket {
        value: decoded(tickets[0]).map(|(_, value)| value.into_owned()).unwrap_or_default(),
        ambiguous: tickets.len() > 1,
    };
    let path = request.uri().path();
    let path_and_query =
        if rest.iter().all(|pair| pair.is_empty()) { path.to_string() } else { format!("{path}?{}", rest.join("&")) };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = PathAndQuery::from_str(&path_and_query).ok();
    match Uri::from_parts(parts) {
        Ok(uri) => {
            // The router keeps the URI as received for handlers that ask for it: not with the ticket.
            if let Some(original) = request.extensions_mut().get_mut::<OriginalUri>() {
                original.0 = uri.clone();
            }
            *request.uri_mut() = uri;
        }
        // Cannot happen (a subset of a valid query is valid), but never pass the ticket on.
        Err(_) => return ApiError::bad_request("the request URL cannot be read").into_response(),
    }
    request.extensions_mut().insert(presented);
    next.run(request).await
}

/// The principal a presented ticket stands for, if `route_run` is the run it was issued for.
pub async fn redeem(
    tickets: &StreamTickets,
    presented: &PresentedTicket,
    accepted_here: bool,
    route_run: &str,
) -> Result<Principal, ApiError> {
    if !accepted_here {
        return Err(super::auth::unauthorized(
            "stream tickets are accepted only by the log endpoints (log, log.txt, log/ws, log/sse)",
        ));
    }
    if presented.ambiguous {
        return Err(super::auth::unauthorized("more than one `ticket` in the URL"));
    }
    let run = RunId::from_str(route_run).map_err(ApiError::bad_request)?;
    tickets.redeem(&presented.value, run, now_us()).await.map_err(|refusal| {
        let ask = format!("ask POST /api/v1/runs/{run}/log/ticket for a new one");
        let message = match refusal {
            // The database is away: a 503 the UI retries, not a verdict on the ticket.
            RedeemRefusal::Store(error) => return ApiError::from(error),
            RedeemRefusal::Unknown => format!("the stream ticket is unknown or already used (single use: {ask})"),
            RedeemRefusal::Expired => {
                format!("the stream ticket has expired (valid for {}s: {ask})", tickets.ttl().as_secs())
            }
            RedeemRefusal::OtherRun { issued_for } => {
                format!("the stream ticket was issued for run {issued_for}, not run {run}")
            }
        };
        tracing::info!(%run, reason = %message, "stream ticket refused");
        super::auth::unauthorized(message)
    })
}

/// A ticket for one log connection to a run the caller may view.
///
/// For a browser whose identity is an API token: WebSocket and EventSource cannot send
/// `Authorization`. Single use, within `[auth] stream_ticket_ttl`.
#[utoipa::path(post, path = "/api/v1/runs/{id}/log/ticket", tag = "logs", operation_id = "create_stream_ticket",
    params(super::runs::RunIdParam),
    responses(
        (status = 201, description = "A single-use ticket for `?ticket=` on one log transport of this run", body = StreamTicket),
        (status = 404, description = "No such run (or one of a job the caller may not see)", body = ErrorBody),
        (status = 429, description = "`ticket_limit`: the caller holds `max_stream_tickets_per_user` unused tickets", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Extension(tickets): Extension<Arc<StreamTickets>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let run = visible_run(&state, &caller, &id).await?.id;
    let issued_at_us = now_us();
    let ticket = tickets.issue(&caller.principal, run, issued_at_us).await.map_err(|refusal| match refusal {
        IssueRefusal::Full(max) => {
            tracing::warn!(max, "stream tickets refused: max_stream_tickets unused tickets exist");
            ApiError::Client {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "ticket_limit",
                message: format!(
                    "the server already holds {max} unused stream tickets (max_stream_tickets); try again in {}s",
                    tickets.ttl().as_secs()
                ),
            }
        }
        IssueRefusal::TooManyForUser(max) => ApiError::Client {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "ticket_limit",
            message: format!(
                "{} already holds {max} unused stream tickets (max_stream_tickets_per_user); use them or wait {}s",
                caller.principal.user,
                tickets.ttl().as_secs()
            ),
        },
        IssueRefusal::NoRandomness => ApiError::Internal("the system's random generator failed".into()),
        IssueRefusal::Store(error) => ApiError::from(error),
    })?;
    let ttl_us = i64::try_from(tickets.ttl().as_micros()).unwrap_or(i64::MAX);
    let body = StreamTicket { ticket, run: run.0, expires_at: timestamp(issued_at_us.saturating_add(ttl_us)) };
    // A credential: no cache may keep it.
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}
