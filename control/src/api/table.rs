//! `/v1/table`: the compiled routing table, for operators and for gateways pulling it at
//! start (`realmgate --control-url`), which present their admin token.

use super::{ApiError, AppState};
use crate::compile::Compiled;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for the compiler to catch up with the registry before answering 503.
const COMPILE_WAIT: Duration = Duration::from_secs(10);

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/table", get(show))
}

#[derive(Deserialize)]
struct TableQuery {
    summary: Option<String>,
}

/// The table as of this request: a change acknowledged before it is always included.
async fn show(
    State(s): State<AppState>,
    Query(q): Query<TableQuery>,
) -> Result<Response, ApiError> {
    let table = current(&s).await?;
    let headers = [
        (header::ETAG, format!("\"{}\"", table.digest)),
        (
            header::HeaderName::from_static("x-realmgate-table-version"),
            table.version.to_string(),
        ),
    ];
    if q.summary
        .as_deref()
        .is_some_and(|v| v == "1" || v == "true")
    {
        let summary = json!({
            "version": table.version,
            "digest": table.digest,
            "tenants": table.tenants,
            "bytes": table.body.len(),
        });
        return Ok((headers, Json(summary)).into_response());
    }
    Ok((
        [(header::CONTENT_TYPE, "application/json".to_owned())],
        headers,
        table.body.clone(),
    )
        .into_response())
}

async fn current(s: &AppState) -> Result<Arc<Compiled>, ApiError> {
    let wanted = s.control.version();
    let mut rx = s.tables.clone();
    let ready = tokio::time::timeout(
        COMPILE_WAIT,
        rx.wait_for(|t| t.as_ref().is_some_and(|t| t.version >= wanted)),
    )
    .await;
    match ready {
        Ok(Ok(t)) => t.as_ref().map(Arc::clone).ok_or(ApiError::TableNotReady),
        _ => Err(ApiError::TableNotReady),
    }
}
