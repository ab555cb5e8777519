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

    /// This page of `items` (by `id`, ascending) and the `next` cursor.
    pub fn of<T>(&self, mut items: Vec<T>, id: impl Fn(&T) -> &str) -> (Vec<T>, Option<String>) {
        // The lists come in id order already; sorting keeps the cursor right if one does not.
        if !items.is_sorted_by(|a, b| id(a) <= id(b)) {
            items.sort_by(|a, b| id(a).cmp(id(b)));
        }
        let start = self
            .after
            .as_deref()
            .map_or(0, |after| items.partition_point(|x| id(x) <= after));
        let more = items.len() > start + self.limit;
        items.truncate(start + self.limit);
        let page: Vec<T> = items.drain(start..).collect();
        let next = more
            .then(|| page.last().map(|x| id(x).to_owned()))
            .flatten();
        (page, next)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn page(after: Option<&str>, limit: usize) -> Page {
        Page {
            after: after.map(str::to_owned),
            limit,
            q: None,
        }
    }

    #[test]
    fn pages_follow_the_cursor_to_the_end() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let (p, next) = page(None, 2).of(items.clone(), |s| s);
        assert_eq!(
            (p, next.as_deref()),
            (vec!["a".into(), "b".into()], Some("b"))
        );
        let (p, next) = page(Some("b"), 2).of(items.clone(), |s| s);
        assert_eq!(
            (p, next.as_deref()),
            (vec!["c".into(), "d".into()], Some("d"))
        );
        let (p, next) = page(Some("d"), 2).of(items.clone(), |s| s);
        assert_eq!((p, next), (vec!["e".into()], None));
        // An exact fit has no next page; a cursor between ids or past the end still works.
        assert_eq!(page(None, 5).of(items.clone(), |s| s).1, None);
        assert_eq!(page(Some("bb"), 1).of(items.clone(), |s| s).0, ["c"]);
        assert!(page(Some("z"), 3).of(items, |s| s).0.is_empty());
    }
}
