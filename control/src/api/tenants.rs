//! `/v1/tenants`: create, list, show, patch (including suspend) and delete tenants.

use super::paging::{self, Page, RawPage};
use super::{etag, if_match, tenant_id, ApiError, AppState, Body};
use crate::views::{Deleted, TenantView};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value};
use std::ops::Bound;

/// Tenants looked at by one search request at most: a rare match among a million tenants is
/// found over several pages (each `next` continues the scan where it stopped), and no
/// request costs more than this.
pub const SEARCH_SCAN: usize = 50_000;

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

/// `GET /v1/tenants?after=&limit=&q=`: a page of tenants in id order; with `q`, only those
/// whose id or one of whose hosts contains it.
async fn list(
    State(s): State<AppState>,
    q: Result<Query<RawPage>, QueryRejection>,
) -> Result<Response, ApiError> {
    let page = Page::parse(q)?;
    let body = match page.q.as_deref() {
        Some(q) => search(&s, &page, q)?,
        None => {
            let p = s.control.list_tenants(page.after.as_deref(), page.limit);
            paging::answer("tenants", p.tenants, p.next, Map::new())?
        }
    };
    Ok(Json(body).into_response())
}

/// Up to `page.limit` tenants after `page.after` matching `q`, looking at no more than
/// [`SEARCH_SCAN`] of them; `next` is where the scan stopped, when there is more to look at.
fn search(s: &AppState, page: &Page, q: &str) -> Result<Value, ApiError> {
    let (ids, next) = s.control.with_model(|m| {
        let start = page
            .after
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let mut found = Vec::new();
        let mut last = None;
        let mut next = None;
        for (scanned, (id, r)) in m
            .tenants
            .range::<str, _>((start, Bound::Unbounded))
            .enumerate()
        {
            if found.len() == page.limit || scanned == SEARCH_SCAN {
                next = last.map(|l: &crate::ids::TenantId| l.to_string());
                break;
            }
            last = Some(id);
            if id.as_str().contains(q) || r.wire.hosts.iter().any(|h| h.contains(q)) {
                found.push(id.clone());
            }
        }
        (found, next)
    });
    // A tenant deleted meanwhile is left out.
    let tenants: Vec<TenantView> = ids
        .iter()
        .filter_map(|id| s.control.tenant(id).ok())
        .collect();
    paging::answer("tenants", tenants, next, Map::new())
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
