//! `GET /v1/audit?after=&limit=`: the audit log, oldest first within a page; without
//! `after`, the newest page. `next_after` continues from the last entry shown.

use super::{ApiError, AppState};
use crate::service::audit::MAX_PAGE;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

/// Entries in a page without `limit`.
const DEFAULT_LIMIT: u32 = 50;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/audit", get(page))
}

/// `after` and `limit`, each a number; anything else is named in a 400.
fn parse(query: Option<&str>) -> Result<(Option<u64>, u32), ApiError> {
    let (mut after, mut limit) = (None, DEFAULT_LIMIT);
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "after" => {
                after = Some(v.parse::<u64>().map_err(|_| {
                    ApiError::BadRequest(format!("after: {v:?} is not an entry number (seq)"))
                })?)
            }
            "limit" => {
                limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=MAX_PAGE).contains(l))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "limit: {v:?} is not a number from 1 to {MAX_PAGE}"
                        ))
                    })?
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "{other}: unknown parameter (after, limit)"
                )))
            }
        }
    }
    Ok((after, limit))
}

async fn page(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (after, limit) = parse(q.as_deref())?;
    let entries = s.control.audit_page(after, limit).await?;
    let next_after = entries.last().map(|e| e.seq).or(after);
    let shown: Vec<_> = entries
        .iter()
        .map(|e| {
            let mut v = json!(e);
            v["at"] = json!(crate::time::rfc3339(e.at_ms));
            v
        })
        .collect();
    Ok(Json(json!({"entries": shown, "next_after": next_after})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_parameters() {
        assert_eq!(parse(None).ok(), Some((None, DEFAULT_LIMIT)));
        assert_eq!(parse(Some("after=7&limit=3")).ok(), Some((Some(7), 3)));
        for bad in ["after=x", "limit=0", "limit=501", "limit=-1", "page=2"] {
            assert!(parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
