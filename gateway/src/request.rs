//! The request-filter decision: host → tenant → route, against one table snapshot.

use crate::auth::{Endpoint, Policy};
use crate::errors::GatewayError;
use crate::route::{PoolIdx, RouteIdx};
use crate::snapshot::Snapshot;
use crate::tenant::{request_host, TenantIdx};
use pingora_http::RequestHeader;
use realmgate_table::host::HostBuf;
use realmgate_table::path::normalise_path;
use std::borrow::Cow;

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    pub tenant: TenantIdx,
    pub pool: PoolIdx,
    /// The route matched, for its auth policies and namespace.
    pub route: RouteIdx,
    /// The origin-form target to send upstream, when it differs from what the client sent
    /// (a normalised path, or an absolute-form target).
    pub target: Option<String>,
    pub policy: Policy,
    /// A gateway endpoint (`/.realmgate/...`) instead of a route.
    pub endpoint: Option<Endpoint>,
}

/// A refusal, with the tenant when it was already known (for metrics).
pub type Refusal = (Option<TenantIdx>, GatewayError);

pub fn resolve(snapshot: &Snapshot, req: &RequestHeader) -> Result<Resolved, Refusal> {
    let mut buf = HostBuf::default();
    let host = request_host(req, &mut buf).map_err(|e| (None, e))?;
    let tenant = snapshot
        .hosts
        .lookup(host)
        .ok_or((None, GatewayError::UnknownHost))?;
    let refuse = |e| (Some(tenant), e);
    if snapshot.tenant(tenant).suspended {
        return Err(refuse(GatewayError::TenantSuspended));
    }
    let raw = req.raw_path();
    if raw == b"*" {
        return Err(refuse(GatewayError::BadPath));
    }
    let path = normalise_path(req.uri.path()).map_err(|_| refuse(GatewayError::BadPath))?;
    if let Some(endpoint) = Endpoint::from_path(&path) {
        return Ok(Resolved {
            tenant,
            pool: 0,
            route: 0,
            target: None,
            policy: Policy::default(),
            endpoint: Some(endpoint),
        });
    }
    let routes = &snapshot.tenant(tenant).routes;
    let route_idx = routes
        .find_idx(&path)
        .ok_or(refuse(GatewayError::NoRoute))?;
    let route = routes.get(route_idx);
    let origin_form = raw.first() == Some(&b'/');
    let target = match (path, origin_form) {
        (Cow::Borrowed(_), true) => None,
        (path, _) => Some(match req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        }),
    };
    Ok(Resolved {
        tenant,
        pool: route.pool,
        route: route_idx,
        target,
        policy: route.policy,
        endpoint: None,
    })
}
