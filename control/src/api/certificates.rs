//! `/v1/certificates`: add or replace, list, show and remove the certificates gateways serve
//! by SNI. Answers never carry a private key.

use super::paging::{self, Page, RawPage};
use super::{ApiError, AppState, Body};
use crate::views::{CertList, Deleted};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/certificates", get(list))
        .route("/v1/certificates/{name}", get(show).put(put).delete(remove))
}

/// `GET /v1/certificates?after=&limit=`: a page of certificates in name order; the ones
/// still being ordered (`ordering`, few) come with the first page only.
async fn list(
    State(s): State<AppState>,
    q: Result<Query<RawPage>, QueryRejection>,
) -> Result<Response, ApiError> {
    let page = Page::parse(q)?;
    let (list, next): (CertList, _) = s
        .control
        .certificate_page(page.after.as_deref(), page.limit)
        .await?;
    let mut extra = serde_json::Map::new();
    if !list.ordering.is_empty() {
        let ordering = serde_json::to_value(list.ordering).map_err(|e| {
            ApiError::Service(crate::service::ServiceError::Internal(format!(
                "certificate list: {e}"
            )))
        })?;
        extra.insert("ordering".into(), ordering);
    }
    Ok(Json(paging::answer(
        "certificates",
        list.certificates,
        next,
        extra,
    )?)
    .into_response())
}

async fn show(State(s): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(s.control.certificate_shown(&name).await?).into_response())
}

async fn put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let (view, created) = s.control.put_certificate(&name, &body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

async fn remove(State(s): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let version = s.control.delete_certificate(&name).await?;
    Ok(Json(Deleted {
        deleted: name,
        table_version: version,
    })
    .into_response())
}
