//! The `ProxyHttp` implementation. Each phase only dispatches to the module where the request
//! meets it: `request` (host → tenant → route), `auth` (policies, login endpoints), `limits`
//! (rate limits), `shell` (app shell, injection, framing policy), `upstream` (peer choice,
//! retry), `headers`, `errors`, `metrics`.

use crate::acme;
use crate::auth::{self, Admission, Auth, AuthCtx, Grant, Refusal, Reply};
use crate::errors::{wants_html, GatewayError};
use crate::headers::{self, Forwarded, X_REQUEST_ID};
use crate::limits::{self, client::TrustedProxies, Over};
use crate::request::scheme::{self, Scheme};
use crate::request::{resolve, Resolved, ShellPart};
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
    pub auth: Arc<Auth>,
    /// Proxies whose `X-Forwarded-For` names the client for per-client rate limits, and whose
    /// `X-Forwarded-Proto` says whether the client used https.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// The gateway's public https port (`gateway.https_port`): where plain HTTP to a
    /// `redirect` tenant is sent (omitted from `Location` when 443).
    pub https_port: u16,
}

/// Per-request state: plain data, one table snapshot for the whole request.
#[derive(Default)]
pub struct Ctx {
    snapshot: Option<Arc<Snapshot>>,
    tenant: Option<TenantIdx>,
    /// The pool to proxy to; `None` once the gateway answered itself.
    pool: Option<PoolIdx>,
    target: Option<String>,
    request_id: Option<HeaderValue>,
    attempts: u8,
    avoid: Option<SocketAddr>,
    failure: Option<GatewayError>,
    upstream_start: Option<Instant>,
    /// When the request's head was read: its duration, by tenant, ends in `logging`.
    start: Option<Instant>,
    auth: AuthCtx,
    /// Who auth admitted the request as (public, a realm identity, or an API key).
    grant: Grant,
    /// A shell page from the tenant's shell upstream, on its way through the injector.
    shell: Option<Box<ShellState>>,
    /// An app response of a shell-enabled tenant: gets `frame-ancestors 'self'`.
    frame_guard: bool,
    /// How the client reached the gateway (TLS, https), decided once per request.
    scheme: Scheme,
    /// The tenant's `Strict-Transport-Security`, when the request is https: on every response.
    hsts: Option<HeaderValue>,
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

    /// The head is in: its deadline is over, the body and send timeouts start.
    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        ctx.start = Some(Instant::now());
        crate::connection::head_read(session.as_downstream_mut());
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        headers::host_from_authority(session.req_header_mut());
        // The client's id, or none yet: a fresh one is made when first needed.
        ctx.request_id = headers::client_request_id(session.req_header());
        let edge = self
            .edge(session)
            .and_then(|e| headers::check_framing(session.req_header()).map(|()| e));
        let from_proxy = match edge {
            Ok((scheme, from_proxy)) => {
                ctx.scheme = scheme;
                from_proxy
            }
            Err(e) => return respond(session, ctx, e).await,
        };
        headers::strip_owned_headers(session.req_header_mut(), from_proxy);
        let Some(snapshot) = self.store.current() else {
            return respond(session, ctx, GatewayError::NoTable).await;
        };
        // ACME http-01 answers come before tenant lookup, auth and https redirects.
        if let Some(answer) = acme::answer(&snapshot.acme, session.req_header(), auth::unix_now()) {
            ctx.snapshot = Some(snapshot);
            return match acme::reply(answer) {
                Ok(reply) => send(session, ctx, reply).await,
                Err(e) => respond(session, ctx, e).await,
            };
        }
        let decision = resolve(&snapshot, session.req_header(), ctx.scheme.https);
        let tenant = match &decision {
            Ok(r) => Some(r.tenant),
            Err((t, _)) => *t,
        };
        ctx.hsts =
            tenant.and_then(|t| scheme::hsts(ctx.scheme, snapshot.tenant(t).hsts.as_deref()));
        ctx.snapshot = Some(snapshot);
        match decision {
            Ok(mut r) => {
                ctx.tenant = Some(r.tenant);
                ctx.pool = r.pool;
                ctx.target = r.target.take();
                let shell_part = std::mem::replace(&mut r.shell, ShellPart::NoShell);
                if self.admit(session, ctx, &r).await? {
                    return Ok(true);
                }
                shell_part_of(session, ctx, shell_part).await
            }
            Err((_, err)) => {
                ctx.tenant = tenant;
                refuse(session, ctx, err, self.https_port).await
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let pool = ctx
            .snapshot
            .as_ref()
            .zip(ctx.pool)
            .map(|(s, pool)| Arc::clone(s.pool(pool)))
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
            .zip(ctx.pool)
            .is_some_and(|(s, pool)| s.pool(pool).endpoint_count() > 1);
        let retry = ctx.attempts < 2 && others;
        if retry {
            ctx.avoid = peer._address.as_inet().copied();
        }
        e.set_retry(retry);
        e
    }

    /// An idempotent request whose upstream failed before any response reached the client
    /// (a reset, a closed connection, a timeout) goes once more, to another endpoint when the
    /// pool has one — nginx's `proxy_next_upstream error timeout`. Other requests are never
    /// sent twice.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && session.response_written().is_none();
        let others = ctx
            .snapshot
            .as_ref()
            .zip(ctx.pool)
            .is_some_and(|(s, pool)| s.pool(pool).endpoint_count() > 1);
        let retry = replayable && ctx.attempts < 2 && (others || client_reused);
        if retry && others {
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
        // First: it takes `up` over and makes room for everything written below.
        let forwarded = Forwarded {
            client: client_ip(session),
            https: ctx.scheme.https,
            host: session.req_header().headers.get(http::header::HOST),
        };
        headers::upstream(up, &forwarded, ctx.request_id())?;
        if let Some(target) = ctx.target.as_deref() {
            up.set_raw_path(target.as_bytes())?;
        }
        let tenant = ctx
            .snapshot
            .as_deref()
            .zip(ctx.tenant)
            .map(|(s, t)| (&s.tenant(t).header, &s.keys));
        auth::upstream_identity(up, tenant, &ctx.grant, &ctx.auth)?;
        let target = assertion_target(ctx.snapshot.as_deref(), ctx.tenant, ctx.pool);
        let assertions = &self.auth.assertions;
        auth::assertion::upstream_assertion(up, target, &ctx.grant, &ctx.auth, assertions)?;
        if let Some(state) = ctx.shell.as_deref() {
            state.upstream_request(up)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        auth::upstream_response(resp)?;
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
        for cookie in ctx.auth.set_cookies.drain(..) {
            resp.append_header(http::header::SET_COOKIE, cookie)?;
        }
        if ctx.frame_guard {
            shell::frame::guard_app_response(resp)?;
        } else if let (Some(state), Some(sh)) = (
            ctx.shell.as_deref_mut(),
            shell_of(ctx.snapshot.as_ref(), ctx.tenant),
        ) {
            state.response(sh, session.req_header(), resp, user(&ctx.auth).as_ref())?;
        }
        match &ctx.hsts {
            Some(hsts) => {
                resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone())?;
            }
            // RFC 6797 §7.2: never over plain HTTP, not even an app's own.
            None if !ctx.scheme.https => {
                resp.remove_header(&http::header::STRICT_TRANSPORT_SECURITY);
            }
            None => {}
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
            if let Err(e) = state.body(body, end_of_stream) {
                // The tenant's shell upstream sent what cannot be injected (over a bound,
                // corrupt gzip): its fault, answered 502 when nothing was sent yet.
                ctx.failure = Some(GatewayError::UpstreamError);
                return Err(e);
            }
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
        let (mut head, body) = err.response(html, ctx.request_id());
        if let Some(hsts) = &ctx.hsts {
            let _ = head.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
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
        let seconds = ctx.start.map(|t| t.elapsed().as_secs_f64());
        match (ctx.snapshot.as_ref(), ctx.tenant) {
            (Some(s), Some(t)) => s.tenant(t).counters.count(status, seconds),
            _ => self.store.metrics().unresolved.count(status, seconds),
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
    /// The TLS edge, before anything else reads the request: SNI and Host agree (or 421),
    /// then the request's scheme — the connection's, or a trusted proxy's word, read before
    /// the owned headers go. With it, whether the peer is a trusted proxy (whose
    /// `X-Forwarded-For` then names the client for per-client limits).
    fn edge(&self, session: &Session) -> Result<(Scheme, bool), GatewayError> {
        let tls = headers::is_tls(session.digest());
        let conn = crate::tls::conn_tls(session.digest());
        scheme::check_connection_host(session.req_header(), tls, conn)?;
        let from_proxy = client_ip(session).is_some_and(|ip| self.trusted_proxies.is_trusted(ip));
        let scheme = Scheme::of(tls, from_proxy, &session.req_header().headers);
        Ok((scheme, from_proxy))
    }

    /// Auth (`auth::admit`), then rate limits, for a resolved request. Only requests that pass
    /// auth count against rate limits. `Ok(true)` when a response was written instead of
    /// proxying.
    async fn admit(&self, session: &mut Session, ctx: &mut Ctx, r: &Resolved) -> Result<bool> {
        ctx.request_id();
        let https = ctx.scheme.https;
        let Ctx {
            snapshot: Some(snapshot),
            request_id: Some(request_id),
            auth: actx,
            target,
            ..
        } = &mut *ctx
        else {
            return respond(session, ctx, GatewayError::Internal).await;
        };
        let snapshot = Arc::clone(snapshot);
        let req = session.req_header();
        let tenant = snapshot.tenant(r.tenant);
        let request = auth::Request {
            req,
            https,
            tenant: &tenant.id,
            realm: tenant.realm.as_ref(),
            request_id,
        };
        let admission = Admission {
            policy: r.policy,
            endpoint: r.endpoint,
            tenant: r.tenant,
            namespace: r
                .route
                .and_then(|i| tenant.routes.get(i).namespace.as_ref()),
            keys: &snapshot.keys,
            jwks: snapshot.assertion.as_deref().map(|s| &s.jwks),
            path: target.as_deref().unwrap_or(req.uri.path()),
        };
        let grant = match self.auth.admit(&request, &admission, actx).await {
            Ok(grant) => grant,
            Err(Refusal::Gateway(e)) => return respond(session, ctx, e).await,
            Err(Refusal::Reply(reply)) => return send(session, ctx, reply).await,
        };
        let key = match &grant {
            Grant::ApiKey(k) => snapshot.key_limit(k.key),
            Grant::Identity | Grant::Public => None,
        };
        // Per-client limits count public requests only.
        let public = matches!(grant, Grant::Public);
        ctx.grant = grant;
        let peer = client_ip(session).filter(|_| public);
        let headers = &session.req_header().headers;
        let client = || peer.map(|ip| self.trusted_proxies.client(ip, headers));
        match limits::check(&tenant.limits, key, client) {
            Ok(()) => Ok(false),
            Err(over) => respond_limited(session, ctx, &over).await,
        }
    }
}

/// The shell's part of the request filter: answer the built-in shell or an asset here, or mark
/// the request for the response filters. `Ok(true)`: answered.
async fn shell_part_of(session: &mut Session, ctx: &mut Ctx, part: ShellPart) -> Result<bool> {
    match part {
        ShellPart::NoShell => Ok(false),
        ShellPart::FramedApp => {
            ctx.frame_guard = true;
            Ok(false)
        }
        ShellPart::Asset(asset) => {
            let rid = ctx.request_id().clone();
            shell::serve::serve_asset(session, asset, &rid, ctx.hsts.as_ref()).await
        }
        ShellPart::Page { page, builtin } => {
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
                .serve_builtin(
                    session,
                    sh,
                    user(&ctx.auth).as_ref(),
                    &rid,
                    ctx.hsts.as_ref(),
                )
                .await
        }
    }
}

/// The signed-in user for the shell, borrowed from the verified identity (nothing allocated).
fn user(a: &AuthCtx) -> Option<User<'_>> {
    a.identity.as_deref().map(|id| User {
        subject: id.subject.to_str().unwrap_or_default(),
        name: id.name.as_deref(),
    })
}

/// What the identity assertion names: the signer, the tenant and the pool (`None` without
/// an assertion section, or when the gateway answers itself).
fn assertion_target(
    s: Option<&Snapshot>,
    tenant: Option<TenantIdx>,
    pool: Option<PoolIdx>,
) -> Option<auth::assertion::Target<'_>> {
    let (s, tenant, pool) = (s?, tenant?, pool?);
    Some(auth::assertion::Target {
        signer: s.assertion.as_deref()?,
        tenant: &s.tenant(tenant).id,
        pool: &s.pool(pool).name,
        keys: &s.keys,
    })
}

fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// 429 with `Retry-After` and `RateLimit-*` headers.
async fn respond_limited(session: &mut Session, ctx: &mut Ctx, over: &Over) -> Result<bool> {
    respond_with(session, ctx, GatewayError::RateLimited, |h| {
        over.write_headers(h)
    })
    .await
}

fn shell_of(
    snapshot: Option<&Arc<Snapshot>>,
    tenant: Option<TenantIdx>,
) -> Option<&shell::ShellRt> {
    snapshot?.tenant(tenant?).shell.as_deref()
}

/// A refusal of the request filter; plain HTTP to a `redirect` tenant gets its https
/// `Location`.
async fn refuse(
    session: &mut Session,
    ctx: &mut Ctx,
    err: GatewayError,
    https_port: u16,
) -> Result<bool> {
    if err != GatewayError::HttpsRedirect {
        return respond(session, ctx, err).await;
    }
    let Some(location) = scheme::https_location(session.req_header(), https_port) else {
        return respond(session, ctx, GatewayError::BadHost).await;
    };
    respond_with(session, ctx, err, |h| {
        let _ = h.insert_header(http::header::LOCATION, location);
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
    if let Some(hsts) = &ctx.hsts {
        head.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone())?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session.write_response_header(head, head_only).await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(true)
}

/// Write a response auth produced (refusal, redirect, login endpoint).
async fn send(session: &mut Session, ctx: &mut Ctx, mut reply: Reply) -> Result<bool> {
    reply
        .head
        .insert_header(X_REQUEST_ID, ctx.request_id().clone())?;
    if let Some(hsts) = &ctx.hsts {
        reply
            .head
            .insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone())?;
    }
    let head_only = session.req_header().method == http::Method::HEAD || reply.body.is_empty();
    session.write_response_header(reply.head, head_only).await?;
    if !head_only {
        session.write_response_body(Some(reply.body), true).await?;
    }
    Ok(true)
}

/// Map a proxy error to our response; `None` when the client is gone.
pub(crate) fn classify(e: &Error) -> Option<GatewayError> {
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
