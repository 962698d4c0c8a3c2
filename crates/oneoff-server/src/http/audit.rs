//! The audit trail over HTTP, for administrators: a filtered listing and a check of the
//! chain, of its signed head (with an audit key) and of a checkpoint taken earlier.

use axum::extract::State;
use axum::Json;
use oneoff_api::v1::{AuditList, AuditRecord, AuditVerification, CheckpointCheck};
use oneoff_core::audit::anchor::{check_checkpoint, check_signed_head, was_signed};
use oneoff_core::audit::{AuditAction, AuditKey, ChainHead, Denial};
use oneoff_store::AuditFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{deny, Caller};
use super::error::ApiError;
use super::extract::ApiQuery;
use super::paging;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only records of this actor.
    actor: Option<String>,
    /// Only records with this action code (`run.start`, `denied.audit.read`, ...).
    action: Option<String>,
    /// Only records about this job.
    job: Option<String>,
    /// Only records older than this id: the `next_before` of the previous page.
    before: Option<i64>,
    /// RFC 3339 with a zone: records at or after this time (before `until`).
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339 with a zone: records before this time.
    #[param(format = DateTime)]
    until: Option<String>,
    /// Records per page, 1 to 1000 (default 100; out of range is clamped).
    limit: Option<u32>,
}

/// The audit trail, newest first (administrators).
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", operation_id = "list_audit", params(AuditQuery),
    responses((status = 200, description = "A page of audit records", body = AuditList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    if !caller.principal.admin {
        return Err(deny(&state, &caller, Denial::AuditRead, None, None).await);
    }
    state.audit.flush_denials().await;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let action = query.action.as_deref().map(AuditAction::decode);
    let since_us = query.since.as_deref().map(|text| time_bound("since", text)).transpose()?;
    let until_us = query.until.as_deref().map(|text| time_bound("until", text)).transpose()?;
    if let (Some(since), Some(until), Some(since_us), Some(until_us)) = (&query.since, &query.until, since_us, until_us)
    {
        if since_us >= until_us {
            return Err(ApiError::bad_request(format!(
                "`since` ({since}) is not before `until` ({until}): no record can match; swap them or widen the window"
            )));
        }
    }
    let filter =
        AuditFilter { actor: query.actor, action, job: query.job, before: query.before, since_us, until_us, limit };
    let records = state.store.list_audit(&AuditFilter { limit: paging::rows_to_fetch(limit), ..filter }).await?;
    let (records, next_before) = paging::page(records, limit, |record| record.id);
    Ok(Json(AuditList { records: records.iter().map(AuditRecord::from).collect(), next_before }))
}

/// `?since=` or `?until=` as µs since the epoch, or a 400 that shows the form wanted.
fn time_bound(name: &str, text: &str) -> Result<i64, ApiError> {
    oneoff_api::v1::parse_timestamp(text).ok_or_else(|| {
        // A `+01:00` typed into a URL arrives as " 01:00": a query string decodes `+` as a space.
        let plus = if text.contains(' ') { "; in a URL, write the `+` of an offset as %2B" } else { "" };
        ApiError::bad_request(format!(
            "`{name}` must be an RFC 3339 time with a zone, such as 2026-12-01T09:30:00Z or \
             2026-12-01T10:30:00+01:00 (got `{text}`){plus}"
        ))
    })
}

/// `?head=HASH[&count=N][&mac=MAC]`: a checkpoint from the server log to check.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// A checkpoint's hash to check against the chain.
    head: Option<String>,
    /// The record count the checkpoint was taken at (with `head`).
    count: Option<i64>,
    /// The checkpoint's MAC, to check it is this server's (with `head` and `count`).
    mac: Option<String>,
}

/// Checks the audit chain, its signed head (with an audit key) and a checkpoint (administrators).
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "admin", operation_id = "verify_audit", params(VerifyQuery),
    responses((status = 200, description = "The verdict; `ok` is false when the chain or a check fails", body = AuditVerification)))]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<VerifyQuery>,
) -> Result<Json<AuditVerification>, ApiError> {
    if !caller.principal.admin {
        return Err(deny(&state, &caller, Denial::AuditVerify, None, None).await);
    }
    if query.head.is_none() && (query.count.is_some() || query.mac.is_some()) {
        return Err(ApiError::bad_request("`count` and `mac` describe a checkpoint: give its `head` hash too"));
    }
    if query.mac.is_some() && query.count.is_none() {
        return Err(ApiError::bad_request("a checkpoint's `mac` signs its `count` and `head`: give `count` too"));
    }
    state.audit.flush_denials().await;
    let (chain, stored_head) = state.store.audit_snapshot().await?;
    let keyed = state.audit.key().is_some();
    let head = match oneoff_core::audit::verify(&chain) {
        Ok(head) => head,
        Err(broken) => {
            return Ok(Json(AuditVerification {
                ok: false,
                records: chain.iter().take_while(|record| record.id < broken.id).count(),
                broken_at: Some(broken.id),
                reason: Some(broken.reason),
                head: None,
                keyed,
                checkpoint: None,
            }))
        }
    };
    let mut problems = Vec::new();
    if let Some(key) = state.audit.key() {
        problems.extend(check_signed_head(key, stored_head.as_ref(), &head, was_signed(&chain)).err());
    }
    let checkpoint = query.head.map(|hash| {
        let (checked, problem) = checkpoint_check(&chain, hash, query.count, query.mac.as_deref(), state.audit.key());
        problems.extend(problem);
        checked
    });
    Ok(Json(AuditVerification {
        ok: problems.is_empty(),
        records: usize::try_from(head.records).unwrap_or_default(),
        broken_at: None,
        reason: (!problems.is_empty()).then(|| problems.join("; ")),
        head: Some(head.hash),
        keyed,
        checkpoint,
    }))
}

/// Whether a verified chain still holds a checkpoint, and whether its MAC is ours.
fn checkpoint_check(
    chain: &[oneoff_core::audit::AuditRecord],
    hash: String,
    records: Option<i64>,
    mac: Option<&str>,
    key: Option<&AuditKey>,
) -> (CheckpointCheck, Option<String>) {
    let held = check_checkpoint(chain, records, &hash);
    let signed = match (mac, records, key) {
        (Some(mac), Some(records), Some(key)) => {
            Some(key.checkpoint_is_signed(&ChainHead { records, hash: hash.trim().to_ascii_lowercase() }, mac))
        }
        _ => None,
    };
    let at_record = held.as_ref().ok().copied();
    let problem = match (held, signed) {
        (Err(reason), _) => Some(reason),
        (Ok(_), Some(false)) => {
            Some("the checkpoint's MAC was not made by this server's audit key: it is not one of ours".to_string())
        }
        (Ok(_), _) => None,
    };
    (CheckpointCheck { head: hash, records, at_record, signed }, problem)
}
