//! `GET /api/v1/jobs` and `GET /api/v1/jobs/{name}`: the catalog with parameter schemas,
//! limited to the jobs the caller may see.

use axum::extract::State;
use axum::Json;
use oneoff_api::v1::{Job, JobList};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiPath;
use crate::state::AppState;

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
