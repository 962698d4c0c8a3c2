//! Stream tickets in the store, so that a ticket made on one replica opens a log stream on any
//! other, once.
//!
//! Only a hash of each ticket is stored, with the run and the principal it stands for and its
//! expiry. Taking a ticket deletes its row and returns it in one statement (`DELETE …
//! RETURNING`), so of two replicas presented the same ticket at once exactly one gets it.
//! Issuing counts the unused tickets, in all and of the user, in the transaction that adds the
//! new one (under a lock: SQLite's write lock, PostgreSQL's advisory lock), so the caps hold
//! across replicas; it deletes expired rows first, so they never count and never pile up.

use oneoff_core::auth::{IdentitySource, Principal};
use oneoff_core::RunId;
use serde_json::{json, Value};

use crate::{dispatch, Store, StoreError};

/// A ticket to store: its hash (never the ticket), what it opens, and for whom.
#[derive(Debug, Clone)]
pub struct NewStreamTicket {
    pub hash: String,
    pub run: RunId,
    pub principal: Principal,
    pub expires_at_us: i64,
}

/// A ticket taken out of the store: it is gone from it now, whatever the caller decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTicketRecord {
    pub run: RunId,
    pub principal: Principal,
    pub expires_at_us: i64,
}

/// The bounds on unused tickets (`max_stream_tickets`, `max_stream_tickets_per_user`).
#[derive(Debug, Clone, Copy)]
pub struct TicketCaps {
    pub max_outstanding: usize,
    pub max_per_user: usize,
}

/// Why a ticket was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketRefusal {
    /// `max_outstanding` unused tickets exist already.
    Full(usize),
    /// The user holds `max_per_user` unused tickets already.
    TooManyForUser(usize),
}

impl Store {
    /// Stores a new ticket unless a cap is reached; tickets expired at `now_us` are deleted first.
    pub async fn issue_stream_ticket(
        &self,
        ticket: &NewStreamTicket,
        caps: TicketCaps,
        now_us: i64,
    ) -> Result<Result<(), TicketRefusal>, StoreError> {
        dispatch!(self, store => store.issue_stream_ticket(ticket, caps, now_us).await)
    }

    /// Takes the ticket with this hash out of the store (it can be taken once, by one replica),
    /// or `None` if no such ticket is stored (never issued, already taken, or swept).
    pub async fn take_stream_ticket(&self, hash: &str) -> Result<Option<StreamTicketRecord>, StoreError> {
        dispatch!(self, store => store.take_stream_ticket(hash).await)
    }
}

/// Whether a cap is reached, from the counts of unused tickets in all and of the user.
pub(crate) fn refusal(caps: TicketCaps, outstanding: i64, of_user: i64) -> Option<TicketRefusal> {
    let reached = |count: i64, cap: usize| usize::try_from(count).unwrap_or(usize::MAX) >= cap;
    if reached(outstanding, caps.max_outstanding) {
        return Some(TicketRefusal::Full(caps.max_outstanding));
    }
    if reached(of_user, caps.max_per_user) {
        return Some(TicketRefusal::TooManyForUser(caps.max_per_user));
    }
    None
}

/// The principal as stored with its ticket (domain types are not `Serialize`: by hand).
pub(crate) fn encode_principal(principal: &Principal) -> String {
    let source = match &principal.source {
        IdentitySource::Token { id, name } => json!({ "token": { "id": id, "name": name } }),
        IdentitySource::TrustedHeaders => json!("trusted_headers"),
        IdentitySource::Jwt(header) => json!({ "jwt": header }),
        IdentitySource::Anonymous => json!("anonymous"),
    };
    json!({
        "user": principal.user,
        "email": principal.email,
        "groups": principal.groups,
        "source": source,
        "admin": principal.admin,
    })
    .to_string()
}

pub(crate) fn decode_principal(text: &str) -> Result<Principal, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("stream ticket principal {text:?}"));
    let value: Value = serde_json::from_str(text).map_err(|_| corrupt())?;
    let string = |value: &Value| value.as_str().map(str::to_string);
    let source = match &value["source"] {
        Value::String(kind) if kind == "trusted_headers" => IdentitySource::TrustedHeaders,
        Value::String(kind) if kind == "anonymous" => IdentitySource::Anonymous,
        source if source["token"].is_object() => IdentitySource::Token {
            id: source["token"]["id"].as_i64().ok_or_else(corrupt)?,
            name: string(&source["token"]["name"]).ok_or_else(corrupt)?,
        },
        source => IdentitySource::Jwt(string(&source["jwt"]).ok_or_else(corrupt)?),
    };
    let groups = value["groups"].as_array().ok_or_else(corrupt)?;
    Ok(Principal {
        user: string(&value["user"]).ok_or_else(corrupt)?,
        email: string(&value["email"]),
        groups: groups.iter().map(|group| string(group).ok_or_else(corrupt)).collect::<Result<_, _>>()?,
        source,
        admin: value["admin"].as_bool().ok_or_else(corrupt)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_principal_round_trips() {
        let sources = [
            IdentitySource::Token { id: 7, name: "laptop \"x\"".into() },
            IdentitySource::TrustedHeaders,
            IdentitySource::Jwt("X-Amzn-Oidc-Data".into()),
            IdentitySource::Anonymous,
        ];
        for (index, source) in sources.into_iter().enumerate() {
            let principal = Principal {
                user: "alice".into(),
                email: (index % 2 == 0).then(|| "alice@example.com".into()),
                groups: vec!["eng".into(), "ops".into()],
                source,
                admin: index == 1,
            };
            assert_eq!(decode_principal(&encode_principal(&principal)).unwrap(), principal);
        }
        assert!(matches!(decode_principal("{}"), Err(StoreError::Corrupt(_))));
    }
}
