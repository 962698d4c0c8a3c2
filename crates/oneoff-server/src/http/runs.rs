//! Runs: start, list, show, cancel.

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use oneoff_api::v1::{param_input, CreateRun, ErrorBody, Run, RunList};
use oneoff_core::audit::{AuditAction, Denial};
use oneoff_core::{RunId, RunRecord, RunStatus};
use oneoff_store::RunFilter;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::auth::{deny, record as record_audit, Caller};
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::paging;
use crate::clock::now_us;
use crate::executor::CancelOutcome;
use crate::state::AppState;

const DEFAULT_PAGE: u32 = 50;

/// The `{id}` of every run endpoint, for the OpenAPI document (the handlers take it as text,
/// so that a bad id gets our own 400).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // never built: it only describes the parameter
pub struct RunIdParam {
    /// The run's id, a whole number from 1.
    #[param(minimum = 1, example = 1)]
    id: i64,
}
const MAX_PAGE: u32 = 500;

/// Queues a run of a job with its parameters; `Location` names the new run.
#[utoipa::path(post, path = "/api/v1/runs", tag = "runs", operation_id = "create_run",
    request_body = CreateRun,
    responses(
        (status = 201, description = "Queued", body = Run,
            headers(("Location" = String, description = "The run's URL, /api/v1/runs/{id}"))),
        (status = 404, description = "No such job (or one the caller may not see)", body = ErrorBody),
        (status = 413, description = "The body is larger than `max_body_bytes`", body = ErrorBody),
        (status = 415, description = "The body is not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_params` (with `fields`), or a body of the wrong shape (`invalid_body`)", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateRun>,
) -> Result<impl IntoResponse, ApiError> {
    let catalog = state.catalogs.current();
    let job = catalog.get(&body.job).filter(|job| job.access.may_view(&caller.principal));
    let Some(job) = job else {
        // Suggested only among the jobs this caller may see, so the hint leaks nothing.
        let visible: Vec<&str> = catalog
            .jobs()
            .iter()
            .filter(|job| job.access.may_view(&caller.principal))
            .map(|job| job.name.as_str())
            .collect();
        let hint = oneoff_core::suggest::hint(&body.job, &visible, &[]);
        return Err(ApiError::not_found(format!("no job named `{}`{hint}", body.job)));
    };
    if !job.access.may_run(&caller.principal) {
        return Err(deny(&state, &caller, Denial::Run, Some(job), None).await);
    }
    let inputs: BTreeMap<_, _> =
        body.params.into_iter().filter_map(|(name, value)| param_input(value).map(|input| (name, input))).collect();
    let record = state.executor.start_run(&body.job, inputs, Some(caller.principal.user.clone())).await?;
    tracing::info!(run = %record.id, job = %record.job, "run queued");
    let run = Run::from_record(&record, now_us());
    let detail = json!({ "params": run.params, "argv": run.argv });
    record_audit(&state, &caller, AuditAction::RunStart, Some(&record.job), Some(record.id.0), detail).await;
    let location = state.config.server.base_path.join(&format!("/api/v1/runs/{}", record.id));
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(run)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only runs of this job.
    job: Option<String>,
    /// Only runs in this state.
    #[param(schema_with = oneoff_api::v1::run_status_schema)]
    status: Option<String>,
    /// Only runs this user asked for.
    requested_by: Option<String>,
    /// Runs per page, 1 to 500 (default 50; out of range is clamped).
    limit: Option<u32>,
    /// Only runs older than this id: the `next_before` of the previous page.
    before: Option<i64>,
}

/// The runs the caller may see, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", operation_id = "list_runs", params(ListQuery),
    responses((status = 200, description = "A page of runs", body = RunList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    let status = query.status.as_deref().map(RunStatus::from_str).transpose().map_err(ApiError::bad_request)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    // Administrators see every run, even of jobs no longer in the catalog.
    let jobs_in = (!caller.principal.admin).then(|| {
        let catalog = state.catalogs.current();
        let visible = catalog.jobs().iter().filter(|job| job.access.may_view(&caller.principal));
        visible.map(|job| job.name.to_string()).collect()
    });
    let filter = RunFilter {
        job: query.job,
        status,
        requested_by: query.requested_by,
        jobs_in,
        before: query.before.map(RunId),
        limit,
    };
    let records = state.store.list_runs(&RunFilter { limit: paging::rows_to_fetch(limit), ..filter }).await?;
    let (records, next_before) = paging::page(records, limit, |run| run.id.0);
    let now = now_us();
    Ok(Json(RunList { runs: records.iter().map(|record| Run::from_record(record, now)).collect(), next_before }))
}

/// One run.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", operation_id = "show_run", params(RunIdParam),
    responses(
        (status = 200, description = "The run", body = Run),
        (status = 404, description = "No such run (or one of a job the caller may not see)", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Run>, ApiError> {
    let record = visible_run(&state, &caller, &id).await?;
    Ok(Json(Run::from_record(&record, now_us())))
}

/// Cancels a queued or running run.
///
/// A queued run ends at once, a running one gets SIGTERM,
/// then SIGKILL after its job's grace period.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs", operation_id = "cancel_run", params(RunIdParam),
    responses(
        (status = 202, description = "Cancelled (queued) or signalled (running)", body = Run),
        (status = 404, description = "No such run (or one of a job the caller may not see)", body = ErrorBody),
        (status = 409, description = "The run already finished", body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let record = visible_run(&state, &caller, &id).await?;
    let catalog = state.catalogs.current();
    let job = catalog.get(&record.job);
    if !caller.principal.admin && !job.is_some_and(|job| job.access.may_run(&caller.principal)) {
        return Err(deny(&state, &caller, Denial::Cancel, job, Some(record.id.0)).await);
    }
    if record.status.is_final() {
        return Err(ApiError::conflict(format!("run {} already finished ({})", record.id, record.status)));
    }
    match state.executor.cancel(record.id, &record.job).await? {
        CancelOutcome::AlreadyFinished => {
            let now = state.store.run(record.id).await?.map_or(record.status, |run| run.status);
            Err(ApiError::conflict(format!("run {} already finished ({now})", record.id)))
        }
        CancelOutcome::CancelledWhileQueued | CancelOutcome::Signalled | CancelOutcome::EndedLost => {
            record_audit(&state, &caller, AuditAction::RunCancel, Some(&record.job), Some(record.id.0), json!({}))
                .await;
            let record = find_run(&state, &id).await?;
            Ok((StatusCode::ACCEPTED, Json(Run::from_record(&record, now_us()))))
        }
    }
}

/// Loads a run the caller may see. A run of a job hidden from the caller is answered
/// exactly like a run that does not exist (404, no job name), as the job itself is; the
/// attempt is still recorded in the audit trail.
pub async fn visible_run(state: &AppState, caller: &Caller, id: &str) -> Result<RunRecord, ApiError> {
    let record = find_run(state, id).await?;
    let catalog = state.catalogs.current();
    let job = catalog.get(&record.job);
    if caller.principal.admin || job.is_some_and(|job| job.access.may_view(&caller.principal)) {
        return Ok(record);
    }
    // Only the record is wanted from the denial; its 403 would name the job.
    let _recorded = deny(state, caller, Denial::View, job, Some(record.id.0)).await;
    Err(no_such_run(record.id))
}

fn no_such_run(id: RunId) -> ApiError {
    ApiError::not_found(format!("no run {id}"))
}

/// Parses a run id from the path and loads the run, or answers 400/404.
pub async fn find_run(state: &AppState, id: &str) -> Result<RunRecord, ApiError> {
    let id = RunId::from_str(id).map_err(ApiError::bad_request)?;
    state.store.run(id).await?.ok_or_else(|| no_such_run(id))
}
