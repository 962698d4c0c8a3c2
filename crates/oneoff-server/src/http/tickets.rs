//! Stream tickets: how a browser whose identity is an API token follows a log.
//!
//! `new WebSocket(url)` and `new EventSource(url)` cannot send an `Authorization` header,
//! and a long-lived token in a URL ends up in proxy logs and browser history. So the page
//! asks `POST /api/v1/runs/{id}/log/ticket` (with its token, like any request) for a ticket:
//! random, bound to that run and that principal, valid for `[auth] stream_ticket_ttl`, and
//! good for one connection. The log endpoints then take `?ticket=` as the identity.
//!
//! Tickets live in memory only, in a book with two bounds (`max_stream_tickets` in all,
//! `max_stream_tickets_per_user` per user), swept of expired ones as it is used, so a flood
//! of ticket requests is refused (503 / 429) rather than growing memory. Only a SHA-256 of
//! each ticket is kept. [`take_from_query`] moves the ticket out of the URL before anything
//! (the request trace, the handler's query parsing) sees it, so tickets are never logged.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{OriginalUri, Request, State};
use axum::http::uri::PathAndQuery;
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use oneoff_api::v1::{timestamp, StreamTicket};
use oneoff_core::auth::{token_hash, Principal, StreamTicketLimits};
use oneoff_core::RunId;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiPath;
use super::runs::visible_run;
use crate::clock::now_us;
use crate::state::AppState;

/// The query parameter that carries a ticket.
const QUERY_PARAMETER: &str = "ticket";
/// How often a full book may be swept, at most.
const MIN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Every ticket starts with this, so a leaked one is easy to recognise.
const TICKET_PREFIX: &str = "ticket_";

/// The tickets given out and not used yet.
pub struct StreamTickets {
    limits: StreamTicketLimits,
    book: Mutex<Book>,
}

struct Book {
    /// By SHA-256 of the ticket.
    tickets: HashMap<String, Ticket>,
    /// Unused tickets per user, to refuse one user's flood without refusing everyone.
    held_by_user: HashMap<String, usize>,
    swept_at: Instant,
}

struct Ticket {
    principal: Principal,
    run: RunId,
    expires: Instant,
}

/// Why no ticket was given.
#[derive(Debug, PartialEq, Eq)]
pub enum IssueRefusal {
    /// `max_stream_tickets` unused tickets exist already.
    Full(usize),
    /// This user holds `max_stream_tickets_per_user` unused tickets already.
    TooManyForUser(usize),
    /// The operating system's random generator failed.
    NoRandomness,
}

/// Why a presented ticket was not accepted. Every case is a 401.
#[derive(Debug, PartialEq, Eq)]
pub enum RedeemRefusal {
    /// Never issued, already used, or expired and swept: these cannot be told apart.
    Unknown,
    Expired,
    OtherRun {
        issued_for: RunId,
    },
}

impl StreamTickets {
    pub fn new(limits: StreamTicketLimits) -> StreamTickets {
        let book = Book { tickets: HashMap::new(), held_by_user: HashMap::new(), swept_at: Instant::now() };
        StreamTickets { limits, book: Mutex::new(book) }
    }

    pub fn ttl(&self) -> Duration {
        self.limits.ttl
    }

    /// A new ticket for `principal` to follow `run` once.
    pub fn issue(&self, principal: &Principal, run: RunId, now: Instant) -> Result<String, IssueRefusal> {
        let mut book = self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Sweeping costs a pass over the book: do it once per TTL, or when a bound is reached.
        if now.saturating_duration_since(book.swept_at) >= self.limits.ttl {
            book.sweep(now);
        }
        let held = |book: &Book| book.held_by_user.get(&principal.user).copied().unwrap_or(0);
        let at_a_bound =
            book.tickets.len() >= self.limits.max_outstanding || held(&book) >= self.limits.max_per_principal;
        // At a bound, a flood of refused requests must not each pay for a pass over the book.
        if at_a_bound && now.saturating_duration_since(book.swept_at) >= MIN_SWEEP_INTERVAL {
            book.sweep(now);
        }
        if book.tickets.len() >= self.limits.max_outstanding {
            return Err(IssueRefusal::Full(self.limits.max_outstanding));
        }
        if held(&book) >= self.limits.max_per_principal {
            return Err(IssueRefusal::TooManyForUser(self.limits.max_per_principal));
        }
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|_| IssueRefusal::NoRandomness)?;
        let ticket: String =
            TICKET_PREFIX.chars().chain(random.iter().flat_map(|byte| hex_digits(*byte))).collect::<String>();
        let expires = now + self.limits.ttl;
        book.tickets.insert(token_hash(&ticket), Ticket { principal: principal.clone(), run, expires });
        *book.held_by_user.entry(principal.user.clone()).or_insert(0) += 1;
        Ok(ticket)
    }

    /// Uses up `ticket` (whatever the outcome: a ticket is presented once) and returns
    /// its principal if it was issued for `run` and has not expired.
    pub fn redeem(&self, ticket: &str, run: RunId, now: Instant) -> Result<Principal, RedeemRefusal> {
        let mut book = self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = book.tickets.remove(&token_hash(ticket)).ok_or(RedeemRefusal::Unknown)?;
        book.release(&found.principal.user);
        if found.expires <= now {
            return Err(RedeemRefusal::Expired);
        }
        if found.run != run {
            return Err(RedeemRefusal::OtherRun { issued_for: found.run });
        }
        Ok(found.principal)
    }

    #[cfg(test)]
    fn outstanding(&self) -> usize {
        self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner).tickets.len()
    }
}

impl Book {
    fn sweep(&mut self, now: Instant) {
        let mut released = Vec::new();
        self.tickets.retain(|_, ticket| {
            let live = ticket.expires > now;
            if !live {
                released.push(ticket.principal.user.clone());
            }
            live
        });
        for user in released {
            self.release(&user);
        }
        self.swept_at = now;
    }

    fn release(&mut self, user: &str) {
        if let Some(held) = self.held_by_user.get_mut(user) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.held_by_user.remove(user);
            }
        }
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
pub fn redeem(
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
    tickets.redeem(&presented.value, run, Instant::now()).map_err(|refusal| {
        tracing::info!(%run, ?refusal, "stream ticket refused");
        let ask = format!("ask POST /api/v1/runs/{run}/log/ticket for a new one");
        super::auth::unauthorized(match refusal {
            RedeemRefusal::Unknown => format!("the stream ticket is unknown or already used (single use: {ask})"),
            RedeemRefusal::Expired => {
                format!("the stream ticket has expired (valid for {}s: {ask})", tickets.ttl().as_secs())
            }
            RedeemRefusal::OtherRun { issued_for } => {
                format!("the stream ticket was issued for run {issued_for}, not run {run}")
            }
        })
    })
}

/// `POST /api/v1/runs/{id}/log/ticket`: a ticket for one log connection to a run one may view.
pub async fn create(
    State(state): State<AppState>,
    Extension(tickets): Extension<Arc<StreamTickets>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let run = visible_run(&state, &caller, &id).await?.id;
    let ticket = tickets.issue(&caller.principal, run, Instant::now()).map_err(|refusal| match refusal {
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
    })?;
    let ttl_us = i64::try_from(tickets.ttl().as_micros()).unwrap_or(i64::MAX);
    let body = StreamTicket { ticket, run: run.0, expires_at: timestamp(now_us().saturating_add(ttl_us)) };
    // A credential: no cache may keep it.
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use oneoff_core::auth::IdentitySource;

    use super::*;

    fn person(user: &str) -> Principal {
        Principal {
            user: user.into(),
            email: None,
            groups: vec!["eng".into()],
            source: IdentitySource::Token { id: 1, name: "laptop".into() },
            admin: false,
        }
    }

    fn book(max_outstanding: usize, max_per_principal: usize) -> StreamTickets {
        StreamTickets::new(StreamTicketLimits { ttl: Duration::from_secs(30), max_outstanding, max_per_principal })
    }

    #[test]
    fn a_ticket_is_random_and_good_once_for_its_run() {
        let tickets = book(10, 10);
        let now = Instant::now();
        let ticket = tickets.issue(&person("alice"), RunId(7), now).unwrap();
        assert!(ticket.starts_with(TICKET_PREFIX) && ticket.len() == TICKET_PREFIX.len() + 64, "{ticket}");
        assert_ne!(ticket, tickets.issue(&person("alice"), RunId(7), now).unwrap());
        assert_eq!(tickets.redeem(&ticket, RunId(7), now).unwrap(), person("alice"));
        assert_eq!(tickets.redeem(&ticket, RunId(7), now), Err(RedeemRefusal::Unknown), "single use");
        assert_eq!(tickets.redeem("ticket_forged", RunId(7), now), Err(RedeemRefusal::Unknown));
    }

    #[test]
    fn expired_and_other_run_tickets_are_refused_and_used_up() {
        let tickets = book(10, 10);
        let now = Instant::now();
        let late = tickets.issue(&person("alice"), RunId(1), now).unwrap();
        assert_eq!(tickets.redeem(&late, RunId(1), now + Duration::from_secs(30)), Err(RedeemRefusal::Expired));
        let elsewhere = tickets.issue(&person("alice"), RunId(1), now).unwrap();
        assert_eq!(tickets.redeem(&elsewhere, RunId(2), now), Err(RedeemRefusal::OtherRun { issued_for: RunId(1) }));
        assert_eq!(tickets.redeem(&elsewhere, RunId(1), now), Err(RedeemRefusal::Unknown), "presented once");
        assert_eq!(tickets.outstanding(), 0);
    }

    #[test]
    fn the_book_is_bounded_in_all_and_per_user_and_sweeps_expired_tickets() {
        let tickets = book(3, 2);
        let now = Instant::now();
        tickets.issue(&person("alice"), RunId(1), now).unwrap();
        tickets.issue(&person("alice"), RunId(1), now).unwrap();
        assert_eq!(tickets.issue(&person("alice"), RunId(1), now), Err(IssueRefusal::TooManyForUser(2)));
        tickets.issue(&person("bob"), RunId(1), now).unwrap();
        assert_eq!(tickets.issue(&person("carol"), RunId(1), now), Err(IssueRefusal::Full(3)));
        assert_eq!(tickets.outstanding(), 3);
        // Once they expire, the bounds free up without anyone redeeming them.
        let later = now + Duration::from_secs(31);
        tickets.issue(&person("carol"), RunId(1), later).unwrap();
        tickets.issue(&person("alice"), RunId(1), later).unwrap();
        tickets.issue(&person("alice"), RunId(1), later).unwrap();
        assert_eq!(tickets.outstanding(), 3);
    }
}
