//! `GET /api/v1/jobs` and `GET /api/v1/jobs/{name}`: the catalog with parameter schemas,
//! limited to the jobs the caller may see.

use axum::extract::State;
use axum::Json;
use oneoff_api::v1::{ErrorBody, Job, JobList};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiPath;
use crate::state::AppState;

/// The jobs of the catalog the caller may see, with their parameters.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", operation_id = "list_jobs",
    responses((status = 200, description = "The jobs the caller may see", body = JobList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Json<JobList> {
    let jobs = state
        .catalogs
        .current()
        .jobs()
        .iter()
        .filter(|job| job.access.may_view(&caller.principal))
        .map(Job::from)
        .collect();
    Json(JobList { jobs })
}

/// One job; a job the caller may not see is answered as one that does not exist.
#[utoipa::path(get, path = "/api/v1/jobs/{name}", tag = "jobs", operation_id = "show_job",
    params(("name" = String, Path, description = "The job's name")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 404, description = "No such job (or one the caller may not see)", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Job>, ApiError> {
    // A job the caller may not see is as absent here as in the listing.
    let catalog = state.catalogs.current();
    let job = catalog
        .get(&name)
        .filter(|job| job.access.may_view(&caller.principal))
        .ok_or_else(|| ApiError::not_found(format!("no job named `{name}`")))?;
    Ok(Json(Job::from(job)))
}
