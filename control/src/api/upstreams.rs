//! `/v1/upstreams`: create, replace, list, show and delete upstream pools.

use super::paging::{self, Page, RawPage};
use super::{ApiError, AppState, Body};
use crate::ids::UpstreamName;
use crate::service::ServiceError;
use crate::views::Deleted;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/upstreams", get(list))
        .route("/v1/upstreams/{name}", get(show).put(put).delete(remove))
}

/// `GET /v1/upstreams?after=&limit=`: a page of pools in name order.
async fn list(
    State(s): State<AppState>,
    q: Result<Query<RawPage>, QueryRejection>,
) -> Result<Response, ApiError> {
    let page = Page::parse(q)?;
    let (pools, next) = s.control.list_upstreams(page.after.as_deref(), page.limit);
    Ok(Json(paging::answer(
        "upstreams",
        pools,
        next,
        Default::default(),
    )?)
    .into_response())
}

async fn show(State(s): State<AppState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(s.control.upstream(&name(&raw)?)?).into_response())
}

async fn put(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let (view, created) = s.control.put_upstream(&raw, &body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

async fn remove(State(s): State<AppState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let name = name(&raw)?;
    let version = s.control.delete_upstream(&name).await?;
    Ok(Json(Deleted {
        deleted: name.to_string(),
        table_version: version,
    })
    .into_response())
}

fn name(raw: &str) -> Result<UpstreamName, ApiError> {
    UpstreamName::parse(raw).ok_or_else(|| {
        ApiError::Service(ServiceError::NotFound {
            kind: "upstream",
            name: raw.to_owned(),
        })
    })
}
