//! Health endpoints for load balancers and orchestrators.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use oneoff_core::StoreUrl;
use serde_json::{json, Value};

use super::error::storage_fault;
use crate::state::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The store answers and accepts writes; the server can take runs. A full disk, a read-only,
/// damaged or unreachable database is a 503 whose `status` names it and whose `reason` says what to fix;
/// it turns ready by itself once the store can write again.
///
/// From the moment a stop begins it is a 503 `draining`: the balancer takes the replica out of
/// rotation while its running jobs finish and its viewers are still served.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "shutting_down" })));
    }
    if !state.executor.is_accepting() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining", "reason": "this replica is stopping; its running jobs are draining" })),
        );
    }
    let writable = match state.executor.store_refusal() {
        Some(fault) => Err(fault),
        None => state.store.check_writable().await,
    };
    match writable {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready", "live_runs": state.hub.live_runs() }))),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            let (status, reason) = match storage_fault(&error) {
                Some((code, _)) => match &state.config.server.database {
                    StoreUrl::Sqlite(path) => (code, format!("{error}; the database file is {}", path.display())),
                    // The URL without its password: where an operator must look.
                    StoreUrl::Postgres(url) => (code, format!("{error}; the database is {url}")),
                },
                None => ("store_unreachable", error.to_string()),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": status, "reason": reason })))
        }
    }
}
