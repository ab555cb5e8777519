//! The `ProxyHttp` implementation. Each phase only dispatches to the module where the request
//! meets it: `request` (host → tenant → route), `upstream` (peer choice, retry), `headers`,
//! `errors`, `metrics`, `auth` (route policies: `api_key`) and `limits` (rate limits).

use crate::auth::{self, api_key, Grant};
use crate::errors::{wants_html, GatewayError};
use crate::headers::{
    self, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REALMGATE_KEY_ID,
    X_REALMGATE_NAMESPACE, X_REALMGATE_TENANT, X_REQUEST_ID,
};
use crate::limits::{self, client::TrustedProxies, Over};
use crate::request::resolve;
use crate::route::{PoolIdx, RouteIdx};
use crate::snapshot::{Snapshot, Store};
use crate::tenant::TenantIdx;
use async_trait::async_trait;
use http::HeaderValue;
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub struct Gateway {
    pub store: Arc<Store>,
    /// Proxies whose `X-Forwarded-For` names the client for per-client rate limits.
    pub trusted_proxies: Arc<TrustedProxies>,
}

/// Per-request state: plain data, one table snapshot for the whole request.
#[derive(Default)]
pub struct Ctx {
    snapshot: Option<Arc<Snapshot>>,
    tenant: Option<TenantIdx>,
    pool: PoolIdx,
    target: Option<String>,
    request_id: Option<HeaderValue>,
    attempts: u8,
    avoid: Option<SocketAddr>,
    failure: Option<GatewayError>,
    upstream_start: Option<Instant>,
    /// Who auth admitted the request as (an API key and its namespace, or public).
    grant: Grant,
}

impl Ctx {
    fn request_id(&mut self) -> &HeaderValue {
        self.request_id.get_or_insert_with(headers::new_request_id)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    /// No downstream modules: each one costs every request a call.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.request_id = Some(headers::request_id(session.req_header()));
        headers::strip_identity_headers(session.req_header_mut());
        let Some(snapshot) = self.store.current() else {
            return respond(session, ctx, GatewayError::NoTable).await;
        };
        let decision = resolve(&snapshot, session.req_header());
        ctx.snapshot = Some(snapshot);
        match decision {
            Ok(r) => {
                ctx.tenant = Some(r.tenant);
                ctx.pool = r.pool;
                ctx.target = r.target;
                self.admit(session, ctx, r.tenant, r.route).await
            }
            Err((tenant, err)) => {
                ctx.tenant = tenant;
                respond(session, ctx, err).await
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let pool = ctx
            .snapshot
            .as_ref()
            .map(|s| Arc::clone(s.pool(ctx.pool)))
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        ctx.attempts += 1;
        match pool.select(ctx.avoid) {
            Some(peer) => {
                ctx.upstream_start = Some(Instant::now());
                Ok(peer)
            }
            None => {
                if ctx.attempts == 1 {
                    ctx.failure = Some(GatewayError::NoHealthyUpstream);
                }
                Error::e_explain(ErrorType::ConnectNoRoute, "no healthy upstream endpoint")
            }
        }
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // One retry, on another endpoint, when the pool has one.
        let others = ctx
            .snapshot
            .as_ref()
            .is_some_and(|s| s.pool(ctx.pool).endpoint_count() > 1);
        let retry = ctx.attempts < 2 && others;
        if retry {
            ctx.avoid = peer._address.as_inet().copied();
        }
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(target) = ctx.target.as_deref() {
            up.set_raw_path(target.as_bytes())?;
        }
        if let (Some(s), Some(t)) = (ctx.snapshot.as_ref(), ctx.tenant) {
            up.insert_header(X_REALMGATE_TENANT, s.tenant(t).header.clone())?;
            if let Grant::ApiKey { key, namespace } = &ctx.grant {
                up.insert_header(X_REALMGATE_KEY_ID, s.keys.get(*key).id.clone())?;
                if let Some(ns) = namespace {
                    up.insert_header(X_REALMGATE_NAMESPACE, ns.clone())?;
                }
                // The secret stays at the edge: upstreams get the key id instead.
                up.remove_header(&api_key::X_API_KEY);
                if is_key_bearer(up) {
                    up.remove_header(&http::header::AUTHORIZATION);
                }
            }
        }
        if let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            up.insert_header(X_FORWARDED_FOR, headers::ip_header(ip))?;
        }
        up.insert_header(X_FORWARDED_PROTO, HeaderValue::from_static("http"))?;
        if let Some(host) = session.req_header().headers.get(http::header::HOST) {
            up.insert_header(X_FORWARDED_HOST, host.clone())?;
        }
        up.insert_header(X_REQUEST_ID, ctx.request_id().clone())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(start) = ctx.upstream_start.take() {
            self.store
                .metrics()
                .upstream_latency
                .observe(start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        resp.insert_header(X_REQUEST_ID, ctx.request_id().clone())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let err = ctx.failure.take().or_else(|| classify(e));
        let Some(err) = err else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        let html = wants_html(session.req_header().headers.get(http::header::ACCEPT));
        let (head, body) = err.response(html, ctx.request_id());
        if let Err(write) = session
            .as_downstream_mut()
            .write_error_response(*head, body)
            .await
        {
            log::debug!("could not send error response: {write}");
        }
        FailToProxy {
            error_code: err.status(),
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        match (ctx.snapshot.as_ref(), ctx.tenant) {
            (Some(s), Some(t)) => s.tenant(t).counters.count(status),
            _ => self.store.metrics().unresolved.count(status),
        }
    }

    /// What an error log line says about the request: never the query, which may carry
    /// credentials.
    fn request_summary(&self, session: &Session, _ctx: &Ctx) -> String {
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        format!("{} {} Host: {host}", req.method, req.uri.path())
    }
}

impl Gateway {
    /// Auth, then rate limits, for a resolved request (issue 4: `api_key`; the JWT/session
    /// policies plug into `auth::check`). Only requests that pass auth are counted.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        tenant: TenantIdx,
        route: RouteIdx,
    ) -> Result<bool> {
        let Some(snapshot) = ctx.snapshot.clone() else {
            return respond(session, ctx, GatewayError::Internal).await;
        };
        let req = session.req_header();
        let path = ctx.target.as_deref().unwrap_or(req.uri.path());
        let route = snapshot.tenant(tenant).routes.get(route);
        match auth::check(&snapshot, tenant, route, req, path) {
            Ok(grant) => ctx.grant = grant,
            Err(e) => return respond(session, ctx, e).await,
        }
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let client = || peer.map(|ip| self.trusted_proxies.client(ip, &req.headers));
        match limits::check(&snapshot, tenant, &ctx.grant, client) {
            Ok(()) => Ok(false),
            Err(over) => respond_limited(session, ctx, &over).await,
        }
    }
}

/// Is the request's `Authorization` a bearer API key (and not, say, a JWT)?
fn is_key_bearer(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| {
            v.as_bytes().len() > 7
                && v.as_bytes()[..7].eq_ignore_ascii_case(b"bearer ")
                && v.as_bytes()[7..]
                    .trim_ascii()
                    .starts_with(api_key::KEY_PREFIX)
        })
}

/// 429 with `Retry-After` and `RateLimit-*` headers.
async fn respond_limited(session: &mut Session, ctx: &mut Ctx, over: &Over) -> Result<bool> {
    respond_with(session, ctx, GatewayError::RateLimited, |h| {
        over.write_headers(h)
    })
    .await
}

/// Write one of our own error responses from the request filter (HEAD gets no body).
async fn respond(session: &mut Session, ctx: &mut Ctx, err: GatewayError) -> Result<bool> {
    respond_with(session, ctx, err, |_| {}).await
}

async fn respond_with(
    session: &mut Session,
    ctx: &mut Ctx,
    err: GatewayError,
    extra: impl FnOnce(&mut ResponseHeader),
) -> Result<bool> {
    let html = wants_html(session.req_header().headers.get(http::header::ACCEPT));
    let (mut head, body) = err.response(html, ctx.request_id());
    extra(&mut head);
    let head_only = session.req_header().method == http::Method::HEAD;
    session.write_response_header(head, head_only).await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(true)
}

/// Map a proxy error to our response; `None` when the client is gone.
fn classify(e: &Error) -> Option<GatewayError> {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => None,
        (ErrorSource::Downstream, _) => Some(GatewayError::BadRequest),
        (_, ConnectTimedout | ReadTimedout | WriteTimedout) => Some(GatewayError::UpstreamTimeout),
        (ErrorSource::Upstream, _) => Some(GatewayError::UpstreamError),
        (_, ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure) => {
            Some(GatewayError::UpstreamError)
        }
        _ => Some(GatewayError::Internal),
    }
}
