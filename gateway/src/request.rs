//! The request-filter decision: host → tenant → route, against one table snapshot; the
//! request's scheme and the TLS edge rules in [`scheme`].

pub mod scheme;

use crate::auth::Endpoint;
use crate::errors::GatewayError;
use crate::route::{Policy, PoolIdx, RouteIdx};
use crate::shell::{self, Asset, ShellPage};
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
    /// The pool to proxy to; `None` when the gateway answers itself (a login endpoint, a shell
    /// asset, the built-in shell page).
    pub pool: Option<PoolIdx>,
    /// The route matched, for its auth policies and namespace; `None` for gateway endpoints,
    /// shell assets, and shell pages outside every route.
    pub route: Option<RouteIdx>,
    /// The origin-form target to send upstream, when it differs from what the client sent
    /// (a normalised path, or an absolute-form target).
    pub target: Option<String>,
    pub policy: Policy,
    /// A gateway endpoint (`/.realmgate/...`) instead of a route.
    pub endpoint: Option<Endpoint>,
    /// The shell's part in the request.
    pub shell: ShellPart,
}

/// The shell's part in a request: what the gateway answers itself or shapes instead of a plain
/// proxied app response.
#[derive(Debug, PartialEq, Eq)]
pub enum ShellPart {
    /// None: the tenant has no shell. Proxied to the route's upstream as it is.
    NoShell,
    /// The shell page: built-in (answered by the gateway), or from `pool` (the tenant's shell
    /// upstream) with the context injected.
    Page { page: ShellPage, builtin: bool },
    /// One of the shell's static files.
    Asset(&'static Asset),
    /// An app of a shell-enabled tenant, proxied: its response gets the framing policy.
    FramedApp,
}

/// A refusal, with the tenant when it was already known (for metrics).
pub type Unresolved = (Option<TenantIdx>, GatewayError);

/// `https`: the request's scheme (see [`scheme::Scheme`]); plain HTTP to an https-only tenant
/// is refused or redirected here, after the path is normalised (so that no path reaches a
/// route by dressing up as an ACME challenge) and before route, auth or shell.
pub fn resolve(
    snapshot: &Snapshot,
    req: &RequestHeader,
    https: bool,
) -> Result<Resolved, Unresolved> {
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
    let rt = snapshot.tenant(tenant);
    scheme::check_plain_http(rt.https, https, &path).map_err(refuse)?;
    let mut part = ShellPart::NoShell;
    let mut shell_pool = None;
    if let Some(sh) = rt.shell.as_deref() {
        part = ShellPart::FramedApp;
        if let Some(page) = shell::decide(sh, req, &path) {
            part = ShellPart::Page {
                page,
                builtin: sh.upstream.is_none(),
            };
            shell_pool = sh.upstream;
        } else if path.starts_with(shell::ASSET_PREFIX)
            && (req.method == http::Method::GET || req.method == http::Method::HEAD)
        {
            if let Some(a) = shell::asset(&path) {
                part = ShellPart::Asset(a);
            }
        }
    }
    // The shell's own files are public; the rest of /.realmgate/ is the login flow.
    let endpoint = match part {
        ShellPart::Asset(_) => None,
        _ => Endpoint::from_path(&path),
    };
    if endpoint.is_some() || matches!(part, ShellPart::Asset(_)) {
        return Ok(Resolved {
            tenant,
            pool: None,
            route: None,
            target: None,
            policy: Policy::PUBLIC,
            endpoint,
            shell: part,
        });
    }
    let routes = &rt.routes;
    let found = routes.find_idx(&path);
    if routes.read_otherwise(&path, found) {
        return Err(refuse(GatewayError::AmbiguousPath));
    }
    // A shell page answers under the policy of the route its path falls in (a session
    // tenant's shell needs a login); with no such route it is public.
    let (pool, route_idx, policy) = match (&part, found) {
        (ShellPart::Page { .. }, Some(i)) => (shell_pool, Some(i), routes.get(i).policy),
        (ShellPart::Page { .. }, None) => (shell_pool, None, Policy::PUBLIC),
        (_, Some(i)) => (Some(routes.get(i).pool), Some(i), routes.get(i).policy),
        (_, None) => return Err(refuse(GatewayError::NoRoute)),
    };
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
        pool,
        route: route_idx,
        target,
        policy,
        endpoint: None,
        shell: part,
    })
}

#[cfg(test)]
mod tests;
