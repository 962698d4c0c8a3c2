//! Health endpoints for load balancers and orchestrators.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The store answers; the server can take runs.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "shutting_down" })));
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready", "live_runs": state.hub.live_runs() }))),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "store_unreachable" })))
        }
    }
}
