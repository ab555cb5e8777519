//! The `ProxyHttp` implementation. Each phase only dispatches to the module where the request
//! meets it: `request` (host → tenant → route), `shell` (app shell, injection, framing policy),
//! `upstream` (peer choice, retry), `headers`, `errors`, `metrics`.

use crate::errors::{wants_html, GatewayError};
use crate::headers::{
    self, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REALMGATE_TENANT, X_REQUEST_ID,
};
use crate::request::{resolve, Local};
use crate::route::PoolIdx;
use crate::shell::{self, ShellState, User};
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
    /// A shell page from the tenant's shell upstream, on its way through the injector.
    shell: Option<Box<ShellState>>,
    /// An app response of a shell-enabled tenant: gets `frame-ancestors 'self'`.
    frame_guard: bool,
    /// The signed-in user once session login (issue 3) sets it; `None` on public routes.
    user: Option<User>,
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
                local(session, ctx, r.local).await
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
        if let Some(state) = ctx.shell.as_deref() {
            state.upstream_request(up)?;
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
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if ctx.frame_guard {
            shell::frame::guard_app_response(resp)?;
        } else if let (Some(state), Some(sh)) = (
            ctx.shell.as_deref_mut(),
            shell_of(ctx.snapshot.as_ref(), ctx.tenant),
        ) {
            state.response(sh, session.req_header(), resp, ctx.user.as_ref())?;
        }
        resp.insert_header(X_REQUEST_ID, ctx.request_id().clone())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(state) = ctx.shell.as_deref_mut() {
            state.body(body, end_of_stream)?;
        }
        Ok(None)
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

/// The shell's part of the request filter: answer the built-in shell or an asset here, or mark
/// the request for the response filters. `Ok(true)`: answered.
async fn local(session: &mut Session, ctx: &mut Ctx, local: Local) -> Result<bool> {
    match local {
        Local::None => Ok(false),
        Local::App => {
            ctx.frame_guard = true;
            Ok(false)
        }
        Local::Asset(asset) => shell::serve::serve_asset(session, asset, ctx.request_id()).await,
        Local::Shell { page, builtin } => {
            let state = ShellState::new(page);
            if !builtin {
                ctx.shell = Some(Box::new(state));
                return Ok(false);
            }
            let rid = ctx.request_id().clone();
            let Some(sh) = shell_of(ctx.snapshot.as_ref(), ctx.tenant) else {
                return respond(session, ctx, GatewayError::Internal).await;
            };
            state
                .serve_builtin(session, sh, ctx.user.as_ref(), &rid)
                .await
        }
    }
}

fn shell_of(
    snapshot: Option<&Arc<Snapshot>>,
    tenant: Option<TenantIdx>,
) -> Option<&shell::ShellRt> {
    snapshot?.tenant(tenant?).shell.as_deref()
}

/// Write one of our own error responses from the request filter (HEAD gets no body).
async fn respond(session: &mut Session, ctx: &mut Ctx, err: GatewayError) -> Result<bool> {
    let html = wants_html(session.req_header().headers.get(http::header::ACCEPT));
    let (head, body) = err.response(html, ctx.request_id());
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
