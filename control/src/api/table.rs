//! `/v1/table`: the compiled routing table, for operators and for gateways pulling it at
//! start (`realmgate --control-url`), which present their admin token. Only gateways get the
//! login client secrets of provisioned tenants and the certificates' private keys; operators
//! see them redacted.

use super::{ApiError, AppState};
use crate::compile::Compiled;
use crate::service::ServiceError;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, Extensions, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
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
    headers: HeaderMap,
    extensions: Extensions,
    Query(q): Query<TableQuery>,
) -> Result<Response, ApiError> {
    let gateway = s.tokens.is_gateway(&headers);
    let table = current(&s).await?;
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a);
    let in_clear_off_host = s.plain_http && peer.is_some_and(|a| !crate::tls::is_loopback(&a));
    let summary = q
        .summary
        .as_deref()
        .is_some_and(|v| v == "1" || v == "true");
    if gateway && table.has_secrets && in_clear_off_host && !summary {
        log::error!(
            "refused the table to a gateway at {}: it carries secrets and realmctl serves plain http; give realmctl `tls:` and the gateways an https control_url",
            peer.map_or_else(String::new, |a| a.to_string())
        );
        return Err(ApiError::InsecureChannel);
    }
    let headers = [
        (header::ETAG, format!("\"{}\"", table.digest)),
        (
            header::HeaderName::from_static("x-realmgate-table-version"),
            table.version.to_string(),
        ),
    ];
    if summary {
        let summary = json!({
            "version": table.version,
            "digest": table.digest,
            "tenants": table.tenants,
            "bytes": table.body.len(),
        });
        return Ok((headers, Json(summary)).into_response());
    }
    if table.has_secrets && !gateway {
        let body = redacted(&table.body)
            .map_err(|e| ApiError::Service(ServiceError::Internal(e.to_string())))?;
        return Ok((
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (
                    header::HeaderName::from_static("x-realmgate-redacted"),
                    "realm.client_secret, certificates.key_pem".to_owned(),
                ),
            ],
            [
                // Not the bytes the digest names.
                (header::ETAG, format!("W/\"{}\"", table.digest)),
                (
                    header::HeaderName::from_static("x-realmgate-table-version"),
                    table.version.to_string(),
                ),
            ],
            body,
        )
            .into_response());
    }
    Ok((
        [(header::CONTENT_TYPE, "application/json".to_owned())],
        headers,
        table.body.clone(),
    )
        .into_response())
}

/// The table with every realm's `client_secret` and every certificate's `key_pem` replaced
/// by `"(redacted)"`.
fn redacted(body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let mut table: serde_json::Value = serde_json::from_slice(body)?;
    if let Some(tenants) = table.get_mut("tenants").and_then(|t| t.as_array_mut()) {
        for secret in tenants
            .iter_mut()
            .filter_map(|t| t.pointer_mut("/realm/client_secret"))
        {
            *secret = json!("(redacted)");
        }
    }
    if let Some(certs) = table.get_mut("certificates").and_then(|t| t.as_array_mut()) {
        for key in certs.iter_mut().filter_map(|c| c.get_mut("key_pem")) {
            *key = json!("(redacted)");
        }
    }
    serde_json::to_vec(&table)
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
