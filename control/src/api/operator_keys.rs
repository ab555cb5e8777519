//! `/v1/operator-keys`: mint (the secret is in the answer, once), list, show and revoke
//! operator API keys. Who may is decided by `access::gate`: the operator token or an admin
//! signed in to the console; an operator key itself may not mint or revoke one.

use super::access::Actor;
use super::{ApiError, AppState, Body};
use crate::operators::keys::OperatorKeyList;
use crate::service::ServiceError;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/operator-keys", get(list).post(create))
        .route("/v1/operator-keys/{id}", get(show).delete(revoke))
}

async fn create(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let k = s
        .operator_keys
        .mint(&s.control, &body, actor.minted_by())
        .await?;
    let location = format!("/v1/operator-keys/{}", k.view.id);
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            // The answer carries a secret: keep it out of every cache.
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Json(k),
    )
        .into_response())
}

async fn list(State(s): State<AppState>) -> Response {
    Json(OperatorKeyList {
        operator_keys: s.operator_keys.list(),
    })
    .into_response()
}

async fn show(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let found = s.operator_keys.list().into_iter().find(|k| k.id == id);
    match found {
        Some(k) => Ok(Json(k).into_response()),
        None => Err(ServiceError::NotFound {
            kind: "operator key",
            name: id,
        }
        .into()),
    }
}

async fn revoke(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(s.operator_keys.revoke(&s.control, &id).await?).into_response())
}
