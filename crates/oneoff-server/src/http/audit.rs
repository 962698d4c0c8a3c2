//! The audit trail over HTTP, for administrators: a filtered listing and a chain check.

use axum::extract::State;
use axum::Json;
use oneoff_api::v1::{AuditList, AuditRecord, AuditVerification};
use oneoff_store::AuditFilter;
use serde::Deserialize;

use super::auth::{deny, Caller};
use super::error::ApiError;
use super::extract::ApiQuery;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    job: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    if !caller.principal.admin {
        return Err(deny(&state, &caller, "read the audit trail", None, None).await);
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let filter = AuditFilter { actor: query.actor, action: query.action, job: query.job, before: query.before, limit };
    let records = state.store.list_audit(&filter).await?;
    let next_before = (records.len() == limit as usize).then(|| records.last().map(|record| record.id)).flatten();
    Ok(Json(AuditList { records: records.iter().map(AuditRecord::from).collect(), next_before }))
}

pub async fn verify(State(state): State<AppState>, caller: Caller) -> Result<Json<AuditVerification>, ApiError> {
    if !caller.principal.admin {
        return Err(deny(&state, &caller, "verify the audit trail", None, None).await);
    }
    let chain = state.store.audit_chain().await?;
    Ok(Json(match oneoff_core::audit::verify(&chain) {
        Ok(records) => AuditVerification { ok: true, records, broken_at: None, reason: None },
        Err(broken) => AuditVerification {
            ok: false,
            records: chain.iter().take_while(|record| record.id < broken.id).count(),
            broken_at: Some(broken.id),
            reason: Some(broken.reason),
        },
    }))
}
