//! The request-filter decision: host → tenant → route, against one table snapshot.

use crate::errors::GatewayError;
use crate::route::PoolIdx;
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
    pub pool: PoolIdx,
    /// The origin-form target to send upstream, when it differs from what the client sent
    /// (a normalised path, or an absolute-form target).
    pub target: Option<String>,
    /// What the gateway answers itself or shapes, instead of a plain proxied app response.
    pub local: Local,
}

/// The shell's part in a request (shell-enabled tenants only).
#[derive(Debug, PartialEq, Eq)]
pub enum Local {
    /// Proxied to the route's upstream as it is.
    None,
    /// The shell page: built-in (answered by the gateway), or from `pool` (the tenant's shell
    /// upstream) with the context injected.
    Shell { page: ShellPage, builtin: bool },
    /// One of the shell's static files.
    Asset(&'static Asset),
    /// An app response of a shell-enabled tenant: gets the framing policy.
    App,
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
    let rt = snapshot.tenant(tenant);
    let mut local = Local::None;
    let mut shell_pool = None;
    if let Some(sh) = rt.shell.as_deref() {
        local = Local::App;
        if let Some(page) = shell::decide(sh, req, &path) {
            local = Local::Shell {
                page,
                builtin: sh.upstream.is_none(),
            };
            shell_pool = sh.upstream;
        } else if path.starts_with(shell::ASSET_PREFIX)
            && (req.method == http::Method::GET || req.method == http::Method::HEAD)
        {
            if let Some(a) = shell::asset(&path) {
                local = Local::Asset(a);
            }
        }
    }
    let pool = match (&local, shell_pool) {
        (Local::Shell { .. } | Local::Asset(_), pool) => pool.unwrap_or(0),
        _ => {
            rt.routes
                .find(&path)
                .ok_or(refuse(GatewayError::NoRoute))?
                .pool
        }
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
        target,
        local,
    })
}
