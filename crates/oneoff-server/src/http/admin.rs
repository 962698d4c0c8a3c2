//! `POST /api/v1/admin/reload`: administrators reload the catalog from the config file, as
//! `kill -HUP` does (see [`crate::reload`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use oneoff_api::v1::{ErrorBody, Reloaded};
use oneoff_core::audit::{bound_client_chain, Denial};

use super::auth::{deny, Caller};
use super::error::ApiError;
use crate::reload::{ReloadError, ReloadedBy};
use crate::state::AppState;

/// Re-reads the catalog from the config file (administrators), as `kill -HUP` does.
///
/// Runs in progress keep the job definition they started with.
#[utoipa::path(post, path = "/api/v1/admin/reload", tag = "admin", operation_id = "reload_catalog",
    responses(
        (status = 200, description = "What the reload changed", body = Reloaded),
        (status = 409, description = "`no_config_file`: the server was started without a config file", body = ErrorBody),
        (status = 422, description = "`invalid_config` or `config_unreadable`: the catalog in force stays", body = ErrorBody),
    ))]
pub async fn reload(State(state): State<AppState>, caller: Caller) -> Result<Json<Reloaded>, ApiError> {
    if !caller.principal.admin {
        return Err(deny(&state, &caller, Denial::Reload, None, None).await);
    }
    let by = ReloadedBy {
        actor: caller.principal.user.clone(),
        source: caller.principal.source.describe(),
        client: bound_client_chain(&caller.client),
    };
    state.reloader.reload(by).await.map(Json).map_err(|error| {
        let (status, code, message) = match &error {
            ReloadError::Invalid(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_config",
                format!("the config file is not valid, so the catalog in force stays; fix these and reload:\n{errors}"),
            ),
            ReloadError::Unreadable(why) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "config_unreadable", format!("{why}; the catalog in force stays"))
            }
            ReloadError::NoFile => (StatusCode::CONFLICT, "no_config_file", error.to_string()),
        };
        ApiError::Client { status, code, message }
    })
}
