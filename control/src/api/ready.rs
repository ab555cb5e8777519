//! `GET /readyz`: whether this realmctl may write. Unauthenticated, like `/healthz` (a
//! readiness probe carries no token): 200 `ready` when it holds the Lease or none is
//! configured, 503 with the reason otherwise (who holds the Lease, or why Kubernetes could
//! not be asked). The reason names no secret.

use super::AppState;
use crate::leadership::Leadership;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub async fn readyz(State(s): State<AppState>) -> Response {
    match s.control.fence().state() {
        Leadership::Leading => "ready\n".into_response(),
        Leadership::NotLeading { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "error": "not_leader", "reason": reason})),
        )
            .into_response(),
    }
}
