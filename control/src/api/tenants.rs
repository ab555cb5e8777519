//! `/v1/tenants`: create, list, show, patch (including suspend) and delete tenants.

use super::{etag, if_match, tenant_id, ApiError, AppState, Body};
use crate::views::{Deleted, TenantView};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

pub const DEFAULT_PAGE: usize = 1000;
pub const MAX_PAGE: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", get(list).post(create))
        .route("/v1/tenants/{id}", get(show).patch(update).delete(remove))
        .route("/v1/tenants/{id}/retry", post(retry))
        .route("/v1/tenants/{id}/events", get(super::events::stream))
        .route("/v1/tenants/{id}/credentials", post(credentials))
}

/// `POST /v1/tenants/{id}/retry`: run a failed step now (or every step again, on a ready
/// tenant); 202 with the tenant.
async fn retry(State(s): State<AppState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let t = s.control.retry_provisioning(&tenant_id(&raw)?).await?;
    Ok((StatusCode::ACCEPTED, Json(t)).into_response())
}

/// `POST /v1/tenants/{id}/credentials`: the first admin's temporary password and the API
/// client's secret, once; then 410.
async fn credentials(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let v = s.control.claim_credentials(&tenant_id(&raw)?).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(v)).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(s): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!("limit must be 1-{MAX_PAGE}")));
    }
    Ok(Json(s.control.list_tenants(q.after.as_deref(), limit)).into_response())
}

async fn create(State(s): State<AppState>, Body(body): Body) -> Result<Response, ApiError> {
    let t = s.control.create_tenant(&body).await?;
    let location = format!("/v1/tenants/{}", t.id);
    // 202 while the steps run: the tenant is routed once they are done.
    let status = match &t.provisioning {
        Some(p) if p.state != crate::provision::TenantState::Ready => StatusCode::ACCEPTED,
        _ => StatusCode::CREATED,
    };
    Ok((
        status,
        [
            (header::LOCATION, location),
            (header::ETAG, etag(t.revision)),
        ],
        Json(t),
    )
        .into_response())
}

async fn show(State(s): State<AppState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let t = s.control.tenant(&tenant_id(&raw)?)?;
    Ok(with_etag(t))
}

async fn update(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let id = tenant_id(&raw)?;
    let t = s
        .control
        .update_tenant(&id, &body, if_match(&headers)?)
        .await?;
    Ok(with_etag(t))
}

async fn remove(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = tenant_id(&raw)?;
    let version = s.control.delete_tenant(&id, if_match(&headers)?).await?;
    // With provisioning, the tenant is out of the table now and gone once its steps'
    // removes ran: 202.
    let status = if s.control.plan().active() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Deleted {
            deleted: id.to_string(),
            table_version: version,
        }),
    )
        .into_response())
}

fn with_etag(t: TenantView) -> Response {
    ([(header::ETAG, etag(t.revision))], Json(t)).into_response()
}
