//! `GET /api/v1/replicas`: the live replicas sharing the store, for any signed-in caller.

use axum::extract::State;
use axum::Json;
use oneoff_api::v1::{timestamp, Replica, ReplicaList};

use super::auth::Caller;
use super::error::ApiError;
use crate::state::AppState;

/// The live replicas sharing this server's store.
#[utoipa::path(get, path = "/api/v1/replicas", tag = "admin", operation_id = "list_replicas",
    responses((status = 200, description = "The replicas", body = ReplicaList)))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<ReplicaList>, ApiError> {
    let replicas = state
        .store
        .list_replicas()
        .await?
        .into_iter()
        .map(|replica| Replica {
            name: replica.name,
            host: replica.host,
            started_at: timestamp(replica.started_at_us),
            last_heartbeat: timestamp(replica.heartbeat_at_us),
            heartbeat_age_ms: replica.heartbeat_age_ms.max(0),
            running: replica.running,
            draining: replica.draining,
        })
        .collect();
    Ok(Json(ReplicaList { replicas }))
}
