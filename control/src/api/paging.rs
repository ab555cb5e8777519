//! Paging of the list endpoints: `?after=<id>&limit=<n>` (default 100, at most 1000) gives the
//! entries after `after` in id order, and the answer's `next` is the `after` of the next page
//! (`null` on the last one). Lists keep their field (`{"keys": [...], "next": ...}`).

use super::ApiError;
use crate::service::ServiceError;
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Longest `q` (a tenant search), in characters.
pub const MAX_QUERY: usize = 100;

/// The paging parameters as they arrive; unknown ones are ignored.
#[derive(Deserialize)]
pub struct RawPage {
    after: Option<String>,
    limit: Option<String>,
    q: Option<String>,
}

/// The paging parameters, checked.
#[derive(Debug, Clone)]
pub struct Page {
    pub after: Option<String>,
    pub limit: usize,
    /// The tenant search (lower-cased), where the endpoint takes one.
    pub q: Option<String>,
}

impl Page {
    /// Check `?after=&limit=&q=`: a limit that is not a number from 1 to [`MAX_LIMIT`], an
    /// empty `after`, or a `q` longer than [`MAX_QUERY`] is a 400.
    pub fn parse(q: Result<Query<RawPage>, QueryRejection>) -> Result<Page, ApiError> {
        let Query(raw) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let limit = match raw.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "limit: {l:?} is not a number from 1 to {MAX_LIMIT}"
                    ))
                })?,
        };
        if raw.after.as_deref() == Some("") {
            return Err(ApiError::BadRequest(
                "after: empty; pass the `next` of the previous page, or leave it out for the first"
                    .into(),
            ));
        }
        let q = match raw.q {
            Some(q) if q.chars().count() > MAX_QUERY => {
                return Err(ApiError::BadRequest(format!(
                    "q: longer than {MAX_QUERY} characters"
                )))
            }
            Some(q) if q.is_empty() => None,
            q => q.map(|q| q.to_lowercase()),
        };
        Ok(Page {
            after: raw.after,
            limit,
            q,
        })
    }
}

/// `{"<field>": items, "next": next}`, plus any `extra` fields.
pub fn answer<T: Serialize>(
    field: &str,
    items: Vec<T>,
    next: Option<String>,
    extra: Map<String, Value>,
) -> Result<Value, ApiError> {
    let items = serde_json::to_value(items)
        .map_err(|e| ApiError::Service(ServiceError::Internal(format!("list answer: {e}"))))?;
    let mut body = extra;
    body.insert(field.to_owned(), items);
    body.insert("next".to_owned(), next.map_or(Value::Null, Value::String));
    Ok(Value::Object(body))
}

/// The list endpoints and the field their entries are in.
pub const LISTS: [(&str, &str); 7] = [
    ("/v1/tenants", "tenants"),
    ("/v1/keys", "keys"),
    ("/v1/domains", "domains"),
    ("/v1/tenants/{id}/domains", "domains"),
    ("/v1/certificates", "certificates"),
    ("/v1/apps", "apps"),
    ("/v1/upstreams", "upstreams"),
];

/// Document the paging of every list in the OpenAPI document: the parameters, the 400, and
/// `next` in each answer.
pub fn document(doc: &mut Value) {
    let params = serde_json::json!([
        {"name": "after", "in": "query", "schema": {"type": "string", "minLength": 1},
         "description": "Start after this id (name, domain): the previous page's `next`"},
        {"name": "limit", "in": "query",
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
         "description": "Entries per page"}
    ]);
    let search = serde_json::json!({"name": "q", "in": "query",
        "schema": {"type": "string", "maxLength": MAX_QUERY},
        "description": "Only tenants whose id or a host contains this (case-insensitive). One page looks at a bounded stretch of the registry: a page may hold fewer than `limit` (even none) and still have a `next` to look further"});
    let next = serde_json::json!({"type": ["string", "null"],
        "description": "The `after` of the next page; null on the last"});
    let bad = serde_json::json!({"description": "A `limit` that is not 1-1000, an empty `after`, a `q` over 100 characters",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    for (path, field) in LISTS {
        let op = &mut doc["paths"][path]["get"];
        if !op.is_object() {
            continue;
        }
        let mut p = params.clone();
        if path == "/v1/tenants" {
            if let Some(list) = p.as_array_mut() {
                list.push(search.clone());
            }
        }
        op["parameters"] = p;
        if let Some(summary) = op["summary"].as_str() {
            op["summary"] = Value::String(format!(
                "{summary}; in id order, a page at a time (`?after=&limit=`, `next`)"
            ));
        }
        op["responses"]["400"] = bad.clone();
        let schema = &mut op["responses"]["200"]["content"]["application/json"]["schema"];
        let target = match schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
            Some(name) => name.to_owned(),
            None => {
                schema["properties"]["next"] = next.clone();
                continue;
            }
        };
        let component = &mut doc["components"]["schemas"][target.as_str()];
        component["properties"]["next"] = next.clone();
        debug_assert!(
            component["properties"][field].is_object(),
            "{target}.{field}"
        );
    }
}
