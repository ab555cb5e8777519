//! `GET /v1/traffic[?tenant=<id>]`: the last hour of requests/s, 5xx share and p95 latency
//! that realmctl scraped from its gateways (`crate::traffic`), for the fleet or one tenant.
//! A viewer may read it; the answer is bounded (points by the window, tenants by
//! [`crate::traffic::TOP_TENANTS`]).

use super::{tenant_id, ApiError, AppState};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/traffic", get(series))
}

/// The tenant a query names (`None`: the fleet).
fn parse(q: Option<&str>) -> Result<Option<String>, ApiError> {
    let mut tenant = None;
    for (k, v) in url::form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "tenant" if tenant.is_none() => tenant = Some(v.into_owned()),
            "tenant" => return Err(ApiError::BadRequest("tenant: given twice".into())),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "{other}: unknown parameter (tenant)"
                )))
            }
        }
    }
    Ok(tenant)
}

async fn series(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let body = match parse(q.as_deref())? {
        None => s.traffic.fleet(),
        Some(raw) => {
            // 404 for a tenant the registry does not hold, as everywhere else.
            let id = tenant_id(&raw)?;
            s.control.tenant(&id)?;
            s.traffic.tenant(id.as_str())
        }
    };
    Ok(Json(body).into_response())
}

/// Its entry in the OpenAPI document.
pub fn document(doc: &mut Value) {
    let point = json!({"type": "object", "required": ["t", "rps", "error_rate"],
        "properties": {
            "t": {"type": "integer", "description": "Unix seconds of the scrape round"},
            "rps": {"type": ["number", "null"], "description": "Requests per second, summed over the gateways; null: a gap (no gateway answered, or the first scrape)"},
            "error_rate": {"type": ["number", "null"], "description": "Share of 5xx answers, 0 to 1"},
            "p95_ms": {"type": ["number", "null"], "description": "p95 of the request durations at the gateways (head read to end of answer), milliseconds: the tenant's, or for the fleet every request's; null: no request in the round"},
            "gateways": {"type": "integer", "description": "Fleet only: gateways whose rates are in this point"}}});
    let traffic = json!({"type": "object", "required": ["scope", "points", "gateways"],
        "properties": {
            "scope": {"type": "string", "enum": ["fleet", "tenant"]},
            "tenant": {"type": "string"},
            "step_seconds": {"type": ["number", "null"], "description": "gateways.traffic.scrape_interval_ms; null: scraping is off"},
            "window_seconds": {"type": "integer"},
            "points": {"type": "array", "items": {"$ref": "#/components/schemas/TrafficPoint"}},
            "gateways": {"type": "array", "items": {"type": "object", "properties": {
                "url": {"type": "string"}, "state": {"type": "string", "enum": ["ok", "pending", "failing"]},
                "last_success_at": {"type": ["string", "null"], "format": "date-time"},
                "last_error": {"type": ["string", "null"]}, "consecutive_failures": {"type": "integer"}}}},
            "tenants": {"type": "array", "description": "Fleet only: the most active tenants (at most 100), most requests first",
                "items": {"type": "object", "properties": {"id": {"type": "string"},
                    "rps": {"type": ["number", "null"]}, "error_rate": {"type": ["number", "null"]},
                    "requests": {"type": "number", "description": "About how many over the window"}}}},
            "tenants_tracked": {"type": "integer"},
            "tenants_dropped": {"type": "integer", "description": "Times a least-active tenant was dropped beyond gateways.traffic.max_tenants"}}});
    let err = |d: &str| {
        json!({"description": d,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    };
    doc["paths"]["/v1/traffic"] = json!({"get": {
        "summary": "The last hour of traffic scraped from the gateways' /metrics: requests/s, 5xx share, p95 latency; for the fleet, or one tenant with `tenant`",
        "parameters": [{"name": "tenant", "in": "query", "required": false, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The series", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Traffic"}}}},
                      "400": err("An unknown parameter, or tenant given twice"),
                      "401": err("Missing or wrong bearer token"),
                      "404": err("No such tenant")}}});
    doc["components"]["schemas"]["Traffic"] = traffic;
    doc["components"]["schemas"]["TrafficPoint"] = point;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters() {
        assert_eq!(parse(None).ok(), Some(None));
        assert_eq!(parse(Some("")).ok(), Some(None));
        assert_eq!(parse(Some("tenant=acme")).ok(), Some(Some("acme".into())));
        for bad in ["tenant=a&tenant=b", "t=acme", "limit=3"] {
            assert!(parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
