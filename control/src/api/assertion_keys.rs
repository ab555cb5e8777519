//! `/v1/assertion-keys`: the fleet's public keys as a JWKS (no auth: apps fetch it), and
//! for operators their states, a rotation and a retirement. Never a private key.

use super::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

/// The JWKS, for anyone.
pub fn public_router() -> Router<AppState> {
    Router::new().route("/v1/assertion-keys", get(jwks))
}

/// States, rotation, retirement: operators only.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/assertion-keys/status", get(status))
        .route("/v1/assertion-keys/rotate", post(rotate))
        .route("/v1/assertion-keys/{kid}/retire", post(retire))
}

async fn jwks(State(s): State<AppState>) -> Response {
    (
        [(header::CACHE_CONTROL, "max-age=300")],
        Json(s.control.assertion_jwks()),
    )
        .into_response()
}

async fn status(State(s): State<AppState>) -> Response {
    Json(s.control.assertion_keys()).into_response()
}

async fn rotate(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(s.control.rotate_assertion_key().await?).into_response())
}

async fn retire(State(s): State<AppState>, Path(kid): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(s.control.retire_assertion_key(&kid).await?).into_response())
}
