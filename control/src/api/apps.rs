//! `/v1/apps` (the operator mints, lists and revokes app credentials) and
//! `GET /v1/tenants/{id}/database` (the operator, or an app credential of the tenant's pool).

use super::paging::{self, Page, RawPage};
use super::{tenant_id, ApiError, AppState, Body};
use crate::service::apps::DbCaller;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/apps", get(list).post(create))
        .route("/v1/apps/{id}", delete(revoke))
}

pub fn database_router() -> Router<AppState> {
    Router::new().route("/v1/tenants/{id}/database", get(database))
}

async fn create(State(s): State<AppState>, Body(body): Body) -> Result<Response, ApiError> {
    let a = s.control.create_app(&body).await?;
    let location = format!("/v1/apps/{}", a.view.id);
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            // The answer carries a secret: keep it out of every cache.
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Json(a),
    )
        .into_response())
}

/// `GET /v1/apps?after=&limit=`: a page of app credentials in id order.
async fn list(
    State(s): State<AppState>,
    q: Result<Query<RawPage>, QueryRejection>,
) -> Result<Response, ApiError> {
    let page = Page::parse(q)?;
    let (apps, next) = s.control.list_apps_page(page.after.as_deref(), page.limit);
    Ok(Json(paging::answer("apps", apps, next, Default::default())?).into_response())
}

async fn revoke(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(s.control.revoke_app(&id).await?).into_response())
}

async fn database(
    State(s): State<AppState>,
    Extension(caller): Extension<DbCaller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = match (tenant_id(&id), &caller) {
        (Ok(id), _) => id,
        // An app learns nothing about names that are not its tenants'.
        (Err(_), DbCaller::App(_)) => {
            return Err(ApiError::Service(crate::service::ServiceError::Forbidden(
                "this app credential reads the databases of its own pool's tenants only".into(),
            )))
        }
        (Err(e), DbCaller::Operator) => return Err(e),
    };
    let loc = s.control.tenant_database(&caller, &id)?;
    // A remote location carries a token.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(loc)).into_response())
}
