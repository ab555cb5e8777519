//! `/v1/table`: the compiled routing table, for operators and for gateways pulling it at
//! start (`realmgate --control-url`), which present their admin token. Only gateways get the
//! login client secrets of provisioned tenants and the certificates' private keys; operators
//! see them redacted. A gateway that names the version it serves (`?since=`) is answered
//! the delta from it when realmctl keeps one (`application/vnd.realmgate.delta+json`), the
//! full table otherwise.

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
/// Gateways waiting on `?after=` at once; beyond, 503 (the gateway retries with backoff).
pub const MAX_LONG_POLLS: usize = 4096;
/// How long a long poll waits at most, and by default.
const MAX_WAIT_S: u64 = 60;
const DEFAULT_WAIT_S: u64 = 25;

/// `GET /v1/table?after=…`: a gateway's long poll.
pub fn is_long_poll(uri: &axum::http::Uri) -> bool {
    uri.path() == "/v1/table"
        && uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("after=")))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/table", get(show))
}

#[derive(Deserialize)]
struct TableQuery {
    summary: Option<String>,
    /// Long poll: answer once the table is newer than this version, or `204` after `wait_s`
    /// seconds (default 25, at most 60). A gateway keeps one open to converge within a
    /// moment of a change even when a push does not reach it.
    after: Option<u64>,
    wait_s: Option<u64>,
    /// The version the gateway serves: answer the delta from it if one is kept (gateways
    /// only; others always get the full table).
    since: Option<u64>,
}

/// The table as of this request: a change acknowledged before it is always included.
async fn show(
    State(s): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    Query(q): Query<TableQuery>,
) -> Result<Response, ApiError> {
    let gateway = s.tokens.is_gateway(&headers);
    let table = match q.after {
        Some(after) => match newer_than(&s, after, q.wait_s).await? {
            Some(t) => t,
            None => {
                return Ok((
                    axum::http::StatusCode::NO_CONTENT,
                    [(
                        header::HeaderName::from_static("x-realmgate-table-version"),
                        after.to_string(),
                    )],
                )
                    .into_response())
            }
        },
        None => current(&s).await?,
    };
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
    let version_header = (
        header::HeaderName::from_static("x-realmgate-table-version"),
        table.version.to_string(),
    );
    if let Some(since) = q.since.filter(|_| gateway && !summary) {
        if since >= table.version {
            // Nothing newer than what the gateway serves.
            return Ok((axum::http::StatusCode::NO_CONTENT, [version_header]).into_response());
        }
        if let Some(d) = table.delta_from_async(since).await {
            return Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        realmgate_table::delta::DELTA_CONTENT_TYPE.to_owned(),
                    ),
                    version_header,
                    (
                        header::HeaderName::from_static("x-realmgate-table-base"),
                        d.base.to_string(),
                    ),
                ],
                d.body,
            )
                .into_response());
        }
    }
    // Written out now if nothing needed this version's full table before.
    let full = table
        .full_table_async()
        .await
        .map_err(|e| ApiError::Service(ServiceError::Internal(e.to_string())))?;
    let headers = [
        (header::ETAG, format!("\"{}\"", full.digest)),
        version_header,
    ];
    if summary {
        let summary = json!({
            "version": table.version,
            "digest": full.digest,
            "tenants": table.tenants,
            "bytes": full.body.len(),
        });
        return Ok((headers, Json(summary)).into_response());
    }
    if table.has_secrets && !gateway {
        let body = redacted(&full.body)
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
                (header::ETAG, format!("W/\"{}\"", full.digest)),
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
        full.body,
    )
        .into_response())
}

/// The table with every realm's `client_secret`, every certificate's `key_pem` and every
/// assertion key's `private_key_pem` replaced by `"(redacted)"`.
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
    if let Some(keys) = table
        .pointer_mut("/assertion/keys")
        .and_then(|k| k.as_array_mut())
    {
        for key in keys.iter_mut().filter_map(|k| k.get_mut("private_key_pem")) {
            *key = json!("(redacted)");
        }
    }
    serde_json::to_vec(&table)
}

/// The first compiled table newer than `after`, waiting up to `wait_s` seconds for it
/// (`None`: none came). Idle waiters cost a permit of [`MAX_LONG_POLLS`] and no CPU.
async fn newer_than(
    s: &AppState,
    after: u64,
    wait_s: Option<u64>,
) -> Result<Option<Arc<Compiled>>, ApiError> {
    let Ok(_permit) = s.long_polls.clone().try_acquire_owned() else {
        return Err(ApiError::Busy);
    };
    let wait = Duration::from_secs(wait_s.unwrap_or(DEFAULT_WAIT_S).clamp(1, MAX_WAIT_S));
    let mut rx = s.tables.clone();
    let newer = tokio::time::timeout(
        wait,
        rx.wait_for(|t| t.as_ref().is_some_and(|t| t.version > after)),
    )
    .await;
    match newer {
        Ok(Ok(t)) => Ok(t.as_ref().map(Arc::clone)),
        Ok(Err(_)) => Err(ApiError::TableNotReady),
        Err(_) => Ok(None),
    }
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
