//! The REST API under `/v1`: one router per resource, bearer auth, bounded bodies, and
//! `/v1/openapi.json`, `/metrics`, `/healthz`. [`app`] builds it without a socket.

pub mod access;
mod apps;
mod assertion_keys;
mod audit;
mod auth;
mod certificates;
mod domains;
mod error;
mod events;
mod gateways;
mod keys;
pub mod limits;
mod openapi;
mod openapi_operators;
mod operator_keys;
mod paging;
mod pool_health;
mod ready;
mod signin;
mod table;
pub use table::MAX_LONG_POLLS;
mod tenants;
mod traffic;
mod upstreams;

pub use auth::Tokens;
pub use error::ApiError;
pub use limits::ApiLimits;

use crate::compile::Compiled;
use crate::ids::TenantId;
use crate::metrics::Metrics;
use crate::push::Pusher;
use crate::service::{Control, ServiceError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tokio::sync::watch;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub control: Arc<Control>,
    pub pusher: Arc<Pusher>,
    pub tables: watch::Receiver<Option<Arc<Compiled>>>,
    pub metrics: Arc<Metrics>,
    pub tokens: Arc<Tokens>,
    pub max_body_bytes: usize,
    /// Key mints per caller ([`ApiLimits`]).
    pub mint_quota: Arc<limits::MintQuota>,
    /// Permits for requests in handlers at once ([`ApiLimits::max_concurrent_requests`]).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Permits for gateways waiting on `GET /v1/table?after=` (long polls hold no
    /// `in_flight` permit: a fleet waiting for a change must not starve the API).
    pub long_polls: Arc<tokio::sync::Semaphore>,
    /// The API is served over plain HTTP: the full table (with its secrets) goes only to a
    /// loopback peer.
    pub plain_http: bool,
    /// Console sign-in through the operators' realm (`operators.oidc`); `None`: bearer
    /// tokens only.
    pub operators: Option<Arc<crate::operators::Operators>>,
    /// Operator API keys (`Bearer rgo_…`), checked by [`access::gate`].
    pub operator_keys: Arc<crate::operators::keys::OperatorKeys>,
    /// What realmctl scraped from its gateways' `/metrics` (`GET /v1/traffic`).
    pub traffic: Arc<crate::traffic::Traffic>,
}

/// The whole API. Every route that reads a body sits behind an auth `route_layer`, which runs
/// before the handler's extractors: an unauthenticated request is answered 401 from its head
/// alone, its body never read. Requests in handlers at once are bounded (503 beyond). Every
/// `/v1` route goes through [`access::gate`] first: console sessions, roles, CSRF, audit.
pub fn app(state: AppState) -> Router {
    let operator = Router::new()
        .merge(tenants::router())
        .merge(upstreams::router())
        .merge(certificates::router())
        .merge(domains::router())
        .merge(gateways::router())
        .merge(assertion_keys::router())
        .merge(apps::router())
        .merge(audit::router())
        .merge(operator_keys::router())
        .merge(traffic::router())
        .route_layer(from_fn_with_state(state.clone(), auth::operator));
    let databases = apps::database_router()
        .route_layer(from_fn_with_state(state.clone(), auth::operator_or_app));
    let readers = table::router().route_layer(from_fn_with_state(state.clone(), auth::reader));
    let key_holders =
        keys::router().route_layer(from_fn_with_state(state.clone(), auth::operator_or_key));
    let api = Router::new()
        .merge(operator)
        .merge(readers)
        .merge(key_holders)
        .merge(databases)
        .merge(assertion_keys::public_router())
        .route_layer(from_fn_with_state(state.clone(), limits::concurrency));
    // What the gate reads a changed object back through (a GET of the same path).
    let read_back = access::ReadBack(api.clone().with_state(state.clone()));
    let api = api
        .route_layer(from_fn_with_state(state.clone(), access::gate))
        .layer(axum::Extension(read_back));
    Router::new()
        .merge(api)
        .merge(signin::router())
        .merge(crate::ui::router())
        .route("/v1/openapi.json", get(openapi::document))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(from_fn_with_state(state.clone(), count_request))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> Response {
    s.metrics
        .leader
        .set(i64::from(s.control.fence().is_leading()));
    s.control.observe_certificate_expiry(&s.metrics);
    s.metrics
        .set_audit_entries_lost(s.control.audit_entries_lost());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn count_request(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let resp = next.run(req).await;
    s.metrics
        .observe_request(method.as_str(), &route, resp.status().as_u16());
    resp
}

/// A request body within `max_body_bytes`; over it is 413 with a JSON error.
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge {
                limit: state.max_body_bytes,
            }),
            Err(rej) => Err(ApiError::BadRequest(rej.body_text())),
        }
    }
}

/// `If-Match: "3"` (a tenant revision); `*` or absent: no precondition.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || ApiError::BadRequest("If-Match must be a revision like \"3\" (or *)".into());
    let text = v.to_str().map_err(|_| bad())?.trim();
    if text == "*" {
        return Ok(None);
    }
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    inner.parse::<u64>().map(Some).map_err(|_| bad())
}

/// `"3"`: a tenant's revision as an entity tag.
fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}

/// A path segment that is not a tenant id names no tenant.
fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(raw).ok_or_else(|| {
        ApiError::Service(ServiceError::NotFound {
            kind: "tenant",
            name: raw.to_owned(),
        })
    })
}

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod apps_tests;
#[cfg(test)]
mod audit_tests;
#[cfg(test)]
mod cert_tests;
#[cfg(test)]
mod key_tests;
#[cfg(test)]
mod operator_key_tests;
#[cfg(test)]
mod paging_tests;
#[cfg(test)]
mod tests;
