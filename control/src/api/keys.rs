//! `/v1/keys`: mint (the secret is in the answer, once), list and revoke API keys. Callers
//! are the operator token or an API key (`Authorization: Bearer rgk_…`), which may only act
//! within its own tenant and namespaces.

use super::paging::{self, Page, RawPage};
use super::{ApiError, AppState, Body};
use crate::service::keys::Caller;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", get(list).post(create))
        .route("/v1/keys/{id}", get(show).delete(revoke))
}

async fn create(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    // Every attempt counts, so a caller cannot probe the rules at speed either.
    s.mint_quota
        .take(&caller.name())
        .map_err(|wait| ApiError::TooManyRequests {
            retry_after_s: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
        })?;
    let k = s.control.create_key(&caller, &body).await?;
    let location = format!("/v1/keys/{}", k.view.id);
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

/// `GET /v1/keys?after=&limit=`: a page of the keys the caller may see, in id order.
async fn list(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<RawPage>, QueryRejection>,
) -> Result<Response, ApiError> {
    let page = Page::parse(q)?;
    let (keys, next) = s
        .control
        .list_keys_page(&caller, page.after.as_deref(), page.limit);
    Ok(Json(paging::answer("keys", keys, next, Default::default())?).into_response())
}

async fn show(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(s.control.key(&caller, &id)?).into_response())
}

async fn revoke(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(s.control.revoke_key(&caller, &id).await?).into_response())
}
