//! The OpenAPI 3.1 document of `/api/v1`, served at `GET /api/v1/openapi.json` and committed
//! as docs/openapi.json (a test keeps the two equal).
//!
//! It is derived from the wire types of `oneoff_api::v1`, the query types of the handlers and
//! each handler's `#[utoipa::path]`, so a field added to a body is in the document without a
//! second edit. What any operation can answer whatever it does (an identity refused, a store
//! that cannot write, a bug) is added here once, by [`CommonErrors`], not on every handler.
//!
//! The document is the same for every server of a build and says nothing about the
//! deployment (no job, no user, no setting), so it is served without an identity, like the
//! health endpoints: tools fetch it before they hold a token.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use oneoff_api::v1;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::error::ApiError;
use super::{admin, audit, jobs, logs, probe, replicas, runs, search, streams, tickets, tokens};
use crate::state::AppState;

const DESCRIPTION: &str = "\
oneoff runs the predefined jobs of its catalog on request and keeps their logs. \
docs/API.md describes every endpoint in prose, with examples.

**Identity.** Every operation needs a caller, except this document. The caller is, in this order:
- a stream ticket, `?ticket=...`, only on the four log transports of the run it was issued for \
  (`log`, `log.txt`, `log/ws`, `log/sse`; scheme `ticket`, from `POST /api/v1/runs/{id}/log/ticket`), \
  for browsers that cannot send `Authorization` on a WebSocket or EventSource;
- an API token, `Authorization: Bearer oneoff_...` (scheme `bearer`; `oneoff token create` or \
  `POST /api/v1/tokens`);
- a signed identity assertion of an SSO proxy, in the header of its `[[auth.jwt]]` provider \
  (e.g. `Cf-Access-Jwt-Assertion`, `X-Pomerium-Jwt-Assertion`, `X-Amzn-Oidc-Data`);
- the identity headers of an SSO proxy, `[auth.trusted_headers]` (by default `X-Forwarded-User`, \
  `X-Forwarded-Email`, `X-Forwarded-Groups`), believed only from a peer in its `trusted_cidrs`;
- no credential at all, as user `anonymous`, when `[auth] anonymous` is on.

A credential that is present but bad is refused with 401, never skipped for another identity. \
A state change (`POST`, `DELETE`) that a browser makes for another site is refused with 403.

**Errors** are `{\"error\":{\"code\",\"message\"}}` (`ErrorBody`), with `fields` for `invalid_params`; \
the message says what was wrong and how to fix it. A 5xx says only `internal error`, or names the \
store's fault (`storage_full`, `storage_unavailable`, ...), and can be repeated.";

#[derive(OpenApi)]
#[openapi(
    info(title = "oneoff", description = DESCRIPTION),
    paths(
        jobs::list,
        jobs::show,
        runs::create,
        runs::list,
        runs::show,
        runs::cancel,
        logs::long_poll,
        logs::text,
        streams::websocket,
        streams::sse,
        search::search,
        tickets::create,
        replicas::list,
        tokens::whoami,
        tokens::create,
        tokens::list,
        tokens::revoke,
        admin::reload,
        audit::list,
        audit::verify,
        probe::echo,
        probe::probe_websocket,
        probe::probe_sse,
        probe::probe_poll,
        document,
    ),
    // The messages of the log streams: no operation answers them as a body, so listed here.
    components(schemas(v1::StreamBatch, v1::StreamDone)),
    modifiers(&Security, &CommonErrors),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "The catalog"),
        (name = "runs", description = "Starting, listing and cancelling runs"),
        (name = "logs", description = "A run's log: long-poll pages, raw text, live streams, search"),
        (name = "identity", description = "Who the caller is, and API tokens"),
        (name = "admin", description = "Replicas, the audit trail, reloading the catalog"),
        (name = "probes", description = "What `oneoff doctor` uses to check the way to the server"),
        (name = "meta", description = "This document"),
    ),
)]
pub struct ApiDoc;

/// The credentials a client can present in the request itself (the SSO proxies' headers are
/// the proxies' business, so they are described in the document's description).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("oneoff_ followed by 64 hex digits".into());
        bearer.description = Some("An API token: `oneoff token create`, or `POST /api/v1/tokens`.".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "ticket",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "ticket",
                "A stream ticket from `POST /api/v1/runs/{id}/log/ticket`: one connection to one log \
                 transport of that run, within `[auth] stream_ticket_ttl`.",
            ))),
        );
    }
}

/// The answers every operation can give whatever it does. Operations open to everyone
/// (`security: []`) can meet only the host check and a bug.
struct CommonErrors;

const COMMON_ERRORS: [(&str, &str, bool); 5] = [
    (
        "400",
        "A bad path or query parameter, or an identity header sent twice (`repeated_identity_header`) or not \
         UTF-8 (`bad_identity_header`)",
        true,
    ),
    ("401", "`unauthorized`: no identity, or a credential that was refused (the message says why)", true),
    (
        "403",
        "`forbidden` (the caller may not; recorded in the audit trail), `cross_site_request`, or `unknown_host` \
         (a loopback server reached under a name it does not know)",
        false,
    ),
    ("500", "`internal`: a bug; the cause is in the server log", false),
    (
        "503",
        "The store cannot write or cannot be reached (`storage_full`, `storage_unavailable`, ...), a full \
         queue or a server stopping (`unavailable`): repeat later",
        true,
    ),
];

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.post, &mut item.delete, &mut item.put, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let public = operation.security.as_ref().is_some_and(|security| {
                    security.iter().all(|requirement| *requirement == SecurityRequirement::default())
                });
                for (status, description, needs_caller) in COMMON_ERRORS {
                    if public && needs_caller {
                        continue;
                    }
                    let error = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
                    let response = ResponseBuilder::new().description(description).content("application/json", error);
                    operation.responses.responses.entry(status.to_string()).or_insert_with(|| response.build().into());
                }
            }
        }
    }
}

/// One event of a log's Server-Sent Events stream (the schema of each event, as OpenAPI 3.2's
/// `itemSchema` has it; 3.1 has no better place than the stream's `schema`).
pub struct LogEvent;

impl PartialSchema for LogEvent {
    fn schema() -> RefOr<Schema> {
        sse_event(
            &["message", "done", "error"],
            "JSON: a `StreamBatch` in a `message` event, a `StreamDone` in the `done` event, an `ErrorBody` in an \
             `error` event",
        )
    }
}

impl ToSchema for LogEvent {}

/// One event of the probe's Server-Sent Events stream.
pub struct ProbeEvent;

impl PartialSchema for ProbeEvent {
    fn schema() -> RefOr<Schema> {
        sse_event(&["message"], "JSON: `{\"n\":N,\"server_ms\":T}`, the event's number and the server's clock")
    }
}

impl ToSchema for ProbeEvent {}

/// An event as an SSE parser gives it: its `event` type (`message` when the stream names none),
/// its `id`, a sequence number, and its `data`.
fn sse_event(events: &[&str], data: &str) -> RefOr<Schema> {
    let event = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(events.iter().copied()));
    let id = ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9]+$"));
    let data =
        ObjectBuilder::new().schema_type(Type::String).content_media_type("application/json").description(Some(data));
    let object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("event", event)
        .property("id", id)
        .property("data", data)
        .required("data");
    RefOr::T(Schema::Object(object.build()))
}

/// The document as served: rendered once, the same bytes for every request.
fn rendered() -> &'static Result<String, String> {
    static RENDERED: OnceLock<Result<String, String>> = OnceLock::new();
    RENDERED.get_or_init(|| ApiDoc::openapi().to_pretty_json().map_err(|error| error.to_string()))
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", operation_id = "openapi",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of /api/v1", content_type = "application/json")))]
pub async fn document(State(state): State<AppState>) -> Result<Response, ApiError> {
    let base_path = &state.config.server.base_path;
    let json = if base_path.is_root() {
        rendered().clone()
    } else {
        // Under a prefix the paths are the same and the server's URL carries the prefix, so a
        // client resolving them against the document's `servers` reaches this server.
        let mut document = ApiDoc::openapi();
        document.servers = Some(vec![utoipa::openapi::Server::new(base_path.as_str())]);
        document.to_pretty_json().map_err(|error| error.to_string())
    };
    match json {
        Ok(json) => Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], json).into_response()),
        Err(error) => Err(ApiError::Internal(format!("the OpenAPI document cannot be rendered: {error}"))),
    }
}
