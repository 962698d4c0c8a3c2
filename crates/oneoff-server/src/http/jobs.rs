//! `GET /api/v1/jobs` and `GET /api/v1/jobs/{name}`: the catalog with parameter schemas.

use axum::extract::State;
use axum::Json;
use oneoff_api::v1::{Job, JobList};

use super::error::ApiError;
use super::extract::ApiPath;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>) -> Json<JobList> {
    Json(JobList { jobs: state.config.catalog.jobs().iter().map(Job::from).collect() })
}

pub async fn show(State(state): State<AppState>, ApiPath(name): ApiPath<String>) -> Result<Json<Job>, ApiError> {
    let job = state.config.catalog.get(&name).ok_or_else(|| ApiError::not_found(format!("no job named `{name}`")))?;
    Ok(Json(Job::from(job)))
}
