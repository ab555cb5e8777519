//! `/v1/tenants/{id}/domains`: a tenant's custom domains (add: pending until its TXT record
//! is seen; list; remove: the host leaves the table first), and `/v1/domains`: every
//! tenant's.

use super::paging::{self, Page, RawPage};
use super::{tenant_id, ApiError, AppState, Body};
use crate::views::DomainView;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/domains", get(all))
        .route("/v1/tenants/{id}/domains", get(list).post(add))
        .route("/v1/tenants/{id}/domains/{domain}", delete(remove))
}

/// `GET /v1/domains?after=&limit=`: a page of every tenant's domains, in domain order.
async fn all(
    State(s): State<AppState>,
    q: Result<Query<RawPage>, QueryRejection>,
) -> Result<Response, ApiError> {
    let page = Page::parse(q)?;
    paged(
        s.control
            .list_domains_page(None, page.after.as_deref(), page.limit)?,
    )
}

/// `GET /v1/tenants/{id}/domains?after=&limit=`: a page of one tenant's domains.
async fn list(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<RawPage>, QueryRejection>,
) -> Result<Response, ApiError> {
    let page = Page::parse(q)?;
    let id = tenant_id(&id)?;
    paged(
        s.control
            .list_domains_page(Some(&id), page.after.as_deref(), page.limit)?,
    )
}

fn paged((domains, next): (Vec<DomainView>, Option<String>)) -> Result<Response, ApiError> {
    Ok(Json(paging::answer(
        "domains",
        domains,
        next,
        Default::default(),
    )?)
    .into_response())
}

async fn add(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let id = tenant_id(&id)?;
    let (view, added) = s.control.add_domain(&id, &body).await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

async fn remove(
    State(s): State<AppState>,
    Path((id, domain)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = tenant_id(&id)?;
    Ok(Json(s.control.remove_domain(&id, &domain).await?).into_response())
}
