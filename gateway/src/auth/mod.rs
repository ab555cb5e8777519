//! Route auth, the third step of the request filter: which policies a route accepts and
//! whether the request satisfies one of them. This branch implements `public` and `api_key`;
//! the JWT/session branch adds its policies next to them (see `check`).

pub mod api_key;

use crate::errors::GatewayError;
use crate::route::Route;
use crate::snapshot::Snapshot;
use crate::tenant::TenantIdx;
use api_key::{KeyIdx, PathNamespace};
use http::HeaderValue;
use pingora_http::RequestHeader;

/// The policies a route accepts, meaning "any of".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policies {
    pub public: bool,
    pub api_key: bool,
}

impl Policies {
    /// From the table's validated names; unknown names cannot reach here.
    pub fn from_names(names: &[String]) -> Policies {
        let mut p = Policies::default();
        for name in names {
            match name.as_str() {
                "public" => p.public = true,
                "api_key" => p.api_key = true,
                _ => {}
            }
        }
        p
    }
}

/// Who the request was admitted as; plain data kept in the request CTX.
#[derive(Debug, Default)]
pub enum Grant {
    /// Admitted by the `public` policy: no identity (per-client rate limit applies).
    #[default]
    Public,
    /// Admitted by an API key, for this namespace (if the path or route names one).
    ApiKey {
        key: KeyIdx,
        namespace: Option<HeaderValue>,
    },
}

/// Decide whether the request may use `route` of `tenant`. `path` is the normalised path
/// the route was matched on (a query after `?` is ignored).
///
/// Order: a key that is presented on an `api_key` route is always checked, even when the
/// route is also `public`, so a bad or revoked key is refused rather than silently ignored.
pub fn check(
    snapshot: &Snapshot,
    tenant: TenantIdx,
    route: &Route,
    req: &RequestHeader,
    path: &str,
) -> Result<Grant, GatewayError> {
    if !route.policies.api_key {
        // Public-only route (validation guarantees at least one known policy).
        return Ok(Grant::Public);
    }
    let Some(secret) = api_key::presented(req)? else {
        return if route.policies.public {
            Ok(Grant::Public)
        } else {
            Err(GatewayError::MissingApiKey)
        };
    };
    let key = snapshot
        .keys
        .authenticate(secret, api_key::now_secs())
        .ok_or(GatewayError::InvalidApiKey)?;
    let namespace = match &route.namespace {
        Some(ns) => PathNamespace::Route(ns),
        None => api_key::path_namespace(path)?,
    };
    snapshot.keys.authorize(key, tenant, &namespace)?;
    Ok(Grant::ApiKey {
        key,
        namespace: namespace.header(),
    })
}
