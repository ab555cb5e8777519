//! Bearer-token checks: SHA-256 digests compared in constant time, so neither the token's
//! content nor its length leaks through timing. Tokens are never logged. On `/v1/keys` an
//! API key (`Bearer rgk_…`) is also accepted: it is found by the SHA-256 digest of what was
//! presented, so the lookup is constant-time in the secret too.

use super::{error::ApiError, AppState};
use crate::service::apps::DbCaller;
use crate::service::keys::Caller;
use crate::service::ServiceError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Digests of the tokens the API accepts.
pub struct Tokens {
    operator: [u8; 32],
    gateway: Option<[u8; 32]>,
}

impl Tokens {
    pub fn new(operator: &str, gateway: Option<&str>) -> Tokens {
        Tokens {
            operator: digest(operator.as_bytes()),
            gateway: gateway.map(|g| digest(g.as_bytes())),
        }
    }

    fn presented(headers: &HeaderMap) -> Option<[u8; 32]> {
        bearer(headers).map(digest)
    }

    pub fn is_operator(&self, headers: &HeaderMap) -> bool {
        Self::presented(headers).is_some_and(|d| bool::from(d.ct_eq(&self.operator)))
    }

    /// A gateway pulling its table (with its secrets).
    pub fn is_gateway(&self, headers: &HeaderMap) -> bool {
        let presented = Self::presented(headers);
        self.gateway
            .zip(presented)
            .is_some_and(|(g, d)| bool::from(d.ct_eq(&g)))
    }

    /// The operator, or a gateway pulling its table.
    pub fn is_reader(&self, headers: &HeaderMap) -> bool {
        Self::presented(headers).is_some_and(|d| {
            let gateway = self.gateway.map_or(Choice::from(0), |g| d.ct_eq(&g));
            bool::from(d.ct_eq(&self.operator) | gateway)
        })
    }
}

/// The bearer token of `Authorization`, with the gateway's semantics (RFC 9110 §11.1): the
/// scheme compared case-insensitively, then one or more spaces, then the token (surrounding
/// whitespace trimmed).
pub(super) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) || rest.first() != Some(&b' ') {
        return None;
    }
    Some(rest.trim_ascii())
}

pub(super) fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A live app credential (`Bearer rga_…`), found by the digest of what was presented.
pub(super) fn app_credential(s: &AppState, headers: &HeaderMap) -> Option<crate::model::AppRecord> {
    bearer(headers)
        .filter(|t| t.starts_with(b"rga_"))
        .and_then(|t| s.control.app_caller(&digest(t)))
}

/// The answer to a request that is not allowed in: 403 for an app credential (it is
/// known, and may only read its tenants' database locations), 401 for anything else.
fn refused(s: &AppState, headers: &HeaderMap) -> Response {
    if app_credential(s, headers).is_some() {
        return ApiError::Service(ServiceError::Forbidden(
            "an app credential may only read GET /v1/tenants/{id}/database".into(),
        ))
        .into_response();
    }
    ApiError::Unauthorized.into_response()
}

/// A signed-in operator (session, role, CSRF token, origin) or an operator key (`rgo_…`, its
/// role), which `api::access` checked; put in the request's extensions by it alone.
#[derive(Clone)]
pub struct SessionCaller;

fn signed_in(req: &Request) -> bool {
    req.extensions().get::<SessionCaller>().is_some()
}

pub async fn operator(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if s.tokens.is_operator(req.headers()) || signed_in(&req) {
        next.run(req).await
    } else {
        refused(&s, req.headers())
    }
}

/// The operator token, or a live app credential (`GET /v1/tenants/{id}/database` only):
/// the caller is put in the request's extensions.
pub async fn operator_or_app(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = if s.tokens.is_operator(req.headers()) || signed_in(&req) {
        Some(DbCaller::Operator)
    } else {
        app_credential(&s, req.headers()).map(|a| DbCaller::App(Box::new(a)))
    };
    match caller {
        Some(c) => {
            req.extensions_mut().insert(c);
            next.run(req).await
        }
        None => ApiError::Unauthorized.into_response(),
    }
}

/// The operator token, or a live API key: the caller is put in the request's extensions.
pub async fn operator_or_key(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = if s.tokens.is_operator(req.headers()) || signed_in(&req) {
        Some(Caller::Operator)
    } else {
        bearer(req.headers())
            .filter(|t| t.starts_with(b"rgk_"))
            .and_then(|t| s.control.key_caller(&digest(t)))
            .map(|k| Caller::Key(Box::new(k)))
    };
    match caller {
        Some(c) => {
            req.extensions_mut().insert(c);
            next.run(req).await
        }
        None => refused(&s, req.headers()),
    }
}

pub async fn reader(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if s.tokens.is_reader(req.headers()) || signed_in(&req) {
        next.run(req).await
    } else {
        refused(&s, req.headers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(v).expect("header"),
        );
        h
    }

    #[test]
    fn bearer_tokens() {
        let t = Tokens::new("operator-token-123", Some("gateway-token-456"));
        assert!(t.is_operator(&headers("Bearer operator-token-123")));
        assert!(t.is_operator(&headers("bearer operator-token-123")));
        assert!(t.is_operator(&headers("BEARER   operator-token-123")));
        assert!(t.is_operator(&headers("bEaReR operator-token-123")));
        assert!(!t.is_operator(&headers("Bearer operator-token-123 x")));
        assert!(!t.is_operator(&headers("Bearer  ")));
        assert!(!t.is_operator(&headers("Bearerx operator-token-123")));
        assert!(!t.is_operator(&headers("Bearer\toperator-token-123")));
        assert!(!t.is_operator(&headers("Bearer operator-token-12")));
        assert!(!t.is_operator(&headers("Bearer gateway-token-456")));
        assert!(!t.is_operator(&headers("Basic operator-token-123")));
        assert!(!t.is_operator(&headers("Bearer")));
        assert!(!t.is_operator(&HeaderMap::new()));
        assert!(t.is_reader(&headers("Bearer gateway-token-456")));
        assert!(t.is_reader(&headers("Bearer operator-token-123")));
        assert!(!t.is_reader(&headers("Bearer nope")));
        let no_gw = Tokens::new("operator-token-123", None);
        assert!(!no_gw.is_reader(&headers("Bearer gateway-token-456")));
    }
}
