//! EXPERIMENT, not the product (issue 16, item 2): a minimal proxy loop on `pingora-core`'s
//! HTTP/1 server session, connector and connection pool, without `pingora-proxy`'s state
//! machine, to measure how much of the routed request's cost that machine is.
//!
//! It serves only the public routed path of HTTP/1.1 requests without a body: host → tenant →
//! route → pool with realmgate's own functions (`Store`, `request::resolve`,
//! `headers::upstream`, `auth::upstream_identity`, `limits::check`, the tenant counters), one
//! upstream exchange on a pooled connection, `x-request-id` on the response, both connections
//! kept for reuse. Everything else (a body, an upgrade, a login endpoint, a shell, a route
//! with auth) is answered with the gateway's 500 `internal` error page, and an HTTP/2 stream
//! is dropped: see `benches/LEAN-LOOP.md` for what a real replacement must cover. Client connections go through realmgate's own `connection::Edge` (limits,
//! head deadline, idle timeout), as the gateway's do, so the two differ only in how the
//! request is driven.
//!
//! ```text
//! cargo build --release -p realmgate --example lean_loop
//! target/release/examples/lean_loop --conf realmgate.yaml --table table.json
//! ```
//!
//! `--conf` is a realmgate configuration (`pingora:` server settings, `gateway.listen`,
//! `gateway.client`, `gateway.state_dir`); `--table` a routing table JSON file, applied once
//! at start (there is no admin listener). `--no-edge` serves through Pingora's own HTTP/1
//! connection loop instead of realmgate's `Edge` (no connection limits, no head deadline):
//! to measure what `Edge` costs per request.

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Method, StatusCode, Version};
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora_core::connectors::http::Connector;
use pingora_core::connectors::ConnectorOptions;
use pingora_core::protocols::http::client::HttpSession as ClientSession;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamH1;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::listening::Service;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use pingora_error::{Error, ErrorType, RetryType};
use pingora_http::{RequestHeader, ResponseHeader};
use realmgate::auth::{self, AuthCtx, Grant};
use realmgate::config::{Config, Overrides};
use realmgate::connection::{Edge, PlainEdge};
use realmgate::errors::{wants_html, GatewayError};
use realmgate::headers::{self, Forwarded, X_REQUEST_ID_NAME};
use realmgate::limits::{self, client::TrustedProxies};
use realmgate::metrics::Metrics;
use realmgate::request::scheme::Scheme;
use realmgate::request::{resolve, ShellPart};
use realmgate::route::Policy;
use realmgate::snapshot::{Snapshot, Store};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The lean application: one table store, one upstream connector (pingora-core's pool).
struct Lean {
    store: Arc<Store>,
    connector: Connector,
    trusted: Arc<TrustedProxies>,
}

/// How a request ended for the downstream connection.
enum Outcome {
    /// The whole response was written: the connection may serve the next request.
    Reusable,
    /// Close it (a response cut short, an error page after a failed exchange).
    Close,
}

/// What went wrong with one upstream attempt, and whether anything reached the client.
struct Failed {
    error: Box<Error>,
    /// Something was written downstream: no retry, no error page, only a close.
    written: bool,
}

#[async_trait]
impl HttpServerApp for Lean {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                if e.etype() == &ErrorType::InvalidHTTPHeader {
                    let _ = session.respond_error(400).await;
                }
                return None;
            }
        }
        realmgate::connection::head_read(&mut session);
        let ServerSession::H1(ds) = &mut session else {
            // HTTP/2 downstream: out of the experiment's scope.
            return None;
        };
        match self.serve(ds).await {
            Outcome::Close => None,
            Outcome::Reusable => {
                let settings = HttpPersistentSettings::for_session(&session);
                let reusable = session.finish().await.ok().flatten()?;
                Some(ReusedHttpStream::from_reusable_stream(reusable, settings))
            }
        }
    }
}

impl Lean {
    /// The routed path: the gateway's request filter for a public route, then the exchange.
    async fn serve(&self, ds: &mut DownstreamH1) -> Outcome {
        let start = Instant::now();
        let req = ds.req_header_mut();
        headers::host_from_authority(req);
        let client_id = headers::client_request_id(req);
        let client = ds.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let from_proxy = client.is_some_and(|ip| self.trusted.is_trusted(ip));
        let req = ds.req_header_mut();
        if let Err(e) = headers::check_framing(req) {
            return answer(ds, e, client_id, None).await;
        }
        let scheme = Scheme::of(false, from_proxy, &req.headers);
        headers::strip_owned_headers(req, from_proxy);
        let Some(snapshot) = self.store.current() else {
            return answer(ds, GatewayError::NoTable, client_id, None).await;
        };
        let r = match resolve(&snapshot, ds.req_header(), scheme.https) {
            Ok(r) => r,
            Err((tenant, e)) => return answer(ds, e, client_id, count(&snapshot, tenant)).await,
        };
        let tenant = snapshot.tenant(r.tenant);
        let counters = Some(&*tenant.counters);
        let in_scope = r.policy == Policy::PUBLIC
            && r.endpoint.is_none()
            && r.shell == ShellPart::NoShell
            && ds.is_body_empty()
            && !ds.is_upgrade_req();
        let Some(pool_idx) = r.pool.filter(|_| in_scope) else {
            return answer(ds, GatewayError::Internal, client_id, counters).await;
        };
        let headers_in = &ds.req_header().headers;
        let limited = limits::check(&tenant.limits, None, || {
            client.map(|ip| self.trusted.client(ip, headers_in))
        });
        if limited.is_err() {
            return answer(ds, GatewayError::RateLimited, client_id, counters).await;
        }
        let rid = client_id.unwrap_or_else(headers::new_request_id);
        let pool = Arc::clone(snapshot.pool(pool_idx));
        // A shared handle on the client's `Host` value (no copy): the head stays borrowable.
        let host = ds.req_header().headers.get(HOST).cloned();
        let forwarded = Forwarded {
            client,
            https: scheme.https,
            host: host.as_ref(),
        };
        let target = r.target.as_deref();
        let mut avoid = None;
        let mut attempt = 0u8;
        let outcome = loop {
            attempt += 1;
            let Some(peer) = pool.select(avoid) else {
                break Err(GatewayError::NoHealthyUpstream);
            };
            let up = match upstream_request(
                ds.req_header(),
                &forwarded,
                &rid,
                target,
                &snapshot,
                r.tenant,
            ) {
                Ok(up) => up,
                Err(_) => break Err(GatewayError::Internal),
            };
            let upstream_start = Instant::now();
            match self.exchange(ds, &peer, up, &rid, upstream_start).await {
                Ok(outcome) => break Ok(outcome),
                Err(f) if f.written => break Ok(Outcome::Close),
                Err(f) => {
                    let idempotent = ds.req_header().method.is_idempotent();
                    let others = pool.endpoint_count() > 1;
                    let reused_only = matches!(f.error.retry, RetryType::ReusedOnly);
                    if attempt < 2 && idempotent && (others || reused_only) {
                        if others {
                            avoid = peer._address.as_inet().copied();
                        }
                        continue;
                    }
                    break Err(classify(&f.error));
                }
            }
        };
        let status = ds.response_written().map_or(0, |h| h.status.as_u16());
        tenant
            .counters
            .count(status, Some(start.elapsed().as_secs_f64()));
        match outcome {
            Ok(o) => o,
            Err(e) => {
                answer(ds, e, Some(rid), None).await;
                Outcome::Close
            }
        }
    }

    /// One exchange with the upstream on a pooled (or new) connection: request header out,
    /// response header in, the client's response header out, the body streamed through from
    /// the upstream's read buffer to the client's writer (no copy in between), then both
    /// connections released.
    async fn exchange(
        &self,
        ds: &mut DownstreamH1,
        peer: &HttpPeer,
        up: Box<RequestHeader>,
        rid: &HeaderValue,
        upstream_start: Instant,
    ) -> Result<Outcome, Failed> {
        let fail = |error: Box<Error>, written: bool| Failed { error, written };
        let (session, reused) = self
            .connector
            .get_http_session(peer)
            .await
            .map_err(|e| fail(e, false))?;
        let ClientSession::H1(mut us) = session else {
            let e = Error::explain(ErrorType::InternalError, "HTTP/2 upstream: out of scope");
            return Err(fail(e, false));
        };
        us.read_timeout = peer.options.read_timeout;
        us.write_timeout = peer.options.write_timeout;
        let retry_reused = |mut e: Box<Error>| {
            if reused {
                e.retry = RetryType::ReusedOnly;
            }
            e
        };
        us.write_request_header(up)
            .await
            .map_err(|e| fail(retry_reused(e), false))?;
        // Informational responses (other than 101, refused above) are not passed on.
        loop {
            us.read_response()
                .await
                .map_err(|e| fail(retry_reused(e), false))?;
            match us.get_status() {
                Some(s) if s.is_informational() => continue,
                _ => break,
            }
        }
        let Some(upstream_head) = us.resp_header() else {
            return Err(fail(Error::new(ErrorType::InvalidHTTPHeader), false));
        };
        let head = client_response(upstream_head, rid, ds.req_header().method == Method::HEAD)
            .map_err(|e| fail(e, false))?;
        let body_done = us.is_body_done();
        ds.write_response_header(head)
            .await
            .map_err(|e| fail(e, true))?;
        self.store
            .metrics()
            .upstream_latency
            .observe(upstream_start.elapsed().as_secs_f64());
        if !body_done {
            loop {
                match us.read_body_ref().await {
                    Ok(Some(chunk)) => {
                        ds.write_body(chunk).await.map_err(|e| fail(e, true))?;
                    }
                    Ok(None) => break,
                    Err(e) => return Err(fail(e, true)),
                }
                if us.is_body_done() {
                    break;
                }
            }
        }
        ds.finish_body().await.map_err(|e| fail(e, true))?;
        self.connector
            .release_http_session(ClientSession::H1(us), peer, peer.idle_timeout())
            .await;
        Ok(Outcome::Reusable)
    }
}

/// Hop-by-hop request headers (RFC 9110 §7.6.1) that never go upstream, looked for in one
/// pass over the names (a request usually has none).
const HOP_BY_HOP: [HeaderName; 7] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
];

/// The upstream request: the client's head without its case map or hop-by-hop headers, as
/// HTTP/1.1, with realmgate's forwarded headers, target and identity headers.
fn upstream_request(
    down: &RequestHeader,
    forwarded: &Forwarded<'_>,
    rid: &HeaderValue,
    target: Option<&str>,
    snapshot: &Snapshot,
    tenant: realmgate::tenant::TenantIdx,
) -> pingora_error::Result<Box<RequestHeader>> {
    let mut up = Box::new(RequestHeader::from(down.as_owned_parts()));
    if up.headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        for name in &HOP_BY_HOP {
            up.remove_header(name);
        }
    }
    up.set_version(Version::HTTP_11);
    headers::upstream(&mut up, forwarded, rid)?;
    if let Some(target) = target {
        up.set_raw_path(target.as_bytes())?;
    }
    let t = snapshot.tenant(tenant);
    let identity = Some((&t.header, &snapshot.keys));
    auth::upstream_identity(&mut up, identity, &Grant::Public, &AuthCtx::default())?;
    Ok(up)
}

/// Room made in the client's response header map at once: `x-request-id`, and the `Date`
/// and `Connection` the HTTP/1 writer sets.
const RESPONSE_HEADERS: usize = 3;

/// The client's response head, built once with room for what is added (no regrowth, no
/// case map: names go out as HTTP/2 sends them): the upstream's status, reason and headers,
/// `x-request-id`, and chunked framing for a close-delimited body.
fn client_response(
    upstream: &ResponseHeader,
    rid: &HeaderValue,
    head_request: bool,
) -> pingora_error::Result<Box<ResponseHeader>> {
    let mut map = HeaderMap::with_capacity(upstream.headers.len() + RESPONSE_HEADERS);
    for (name, value) in &upstream.headers {
        map.append(name.clone(), value.clone());
    }
    let _ = map.try_insert(X_REQUEST_ID_NAME, rid.clone());
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = upstream.status;
    parts.version = upstream.version;
    parts.headers = map;
    let mut head = ResponseHeader::from(parts);
    head.set_reason_phrase(upstream.get_reason_phrase())?;
    auth::upstream_response(&mut head)?;
    let no_body = head_request
        || matches!(
            head.status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        );
    let framed = head.headers.contains_key(http::header::CONTENT_LENGTH)
        || head.headers.contains_key(http::header::TRANSFER_ENCODING);
    if !no_body && !framed {
        head.set_version(Version::HTTP_11);
        head.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    Ok(Box::new(head))
}

/// The tenant's counters, or the unresolved ones.
fn count(
    snapshot: &Snapshot,
    tenant: Option<realmgate::tenant::TenantIdx>,
) -> Option<&realmgate::metrics::TenantCounters> {
    tenant.map(|t| &*snapshot.tenant(t).counters)
}

/// One of the gateway's own answers (404 unknown host, 500 out of the experiment's scope,
/// 502/504 after a failed exchange).
async fn answer(
    ds: &mut DownstreamH1,
    err: GatewayError,
    rid: Option<HeaderValue>,
    counters: Option<&realmgate::metrics::TenantCounters>,
) -> Outcome {
    let rid = rid.unwrap_or_else(headers::new_request_id);
    let html = wants_html(ds.req_header().headers.get(http::header::ACCEPT));
    let (head, body) = err.response(html, &rid);
    let status = head.status.as_u16();
    let head_only = ds.req_header().method == Method::HEAD;
    if let Some(c) = counters {
        c.count(status, None);
    }
    if ds.write_response_header(head).await.is_err() {
        return Outcome::Close;
    }
    if !head_only && ds.write_body(&body).await.is_err() {
        return Outcome::Close;
    }
    match ds.finish_body().await {
        Ok(_) => Outcome::Reusable,
        Err(_) => Outcome::Close,
    }
}

/// A failed exchange as the gateway maps it (`proxy::classify`).
fn classify(e: &Error) -> GatewayError {
    use ErrorType::*;
    match e.etype() {
        ConnectTimedout | ReadTimedout | WriteTimedout => GatewayError::UpstreamTimeout,
        _ => GatewayError::UpstreamError,
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut conf: Option<PathBuf> = None;
    let mut table: Option<PathBuf> = None;
    let mut edge = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--conf" => conf = args.next().map(PathBuf::from),
            "--table" => table = args.next().map(PathBuf::from),
            "--no-edge" => edge = false,
            other => {
                eprintln!(
                    "usage: lean_loop --conf FILE --table FILE [--no-edge] (unknown: {other})"
                );
                return ExitCode::from(2);
            }
        }
    }
    let (Some(conf), Some(table)) = (conf, table) else {
        eprintln!("usage: lean_loop --conf FILE --table FILE [--no-edge]");
        return ExitCode::from(2);
    };
    let config = match Config::load(Some(&conf), &Overrides::default()) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("error: {problems:?}");
            return ExitCode::from(2);
        }
    };
    let metrics = match Metrics::new(config.metrics_tenant_labels) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("error: metrics: {e}");
            return ExitCode::from(1);
        }
    };
    let store = Arc::new(Store::new(config.state_dir.clone(), metrics));
    let raw = match std::fs::read(&table) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            eprintln!("error: {}: {e}", table.display());
            return ExitCode::from(1);
        }
    };
    if let Err(e) = store.apply(raw) {
        eprintln!("error: table: {}", realmgate::snapshot::describe(&e));
        return ExitCode::from(1);
    }
    let mut server = Server::new_with_opt_and_conf(None, config.server);
    server.bootstrap();
    let options = ConnectorOptions::from_server_conf(&server.configuration);
    let trusted = Arc::new(config.trusted_proxies.clone());
    let lean = Lean {
        store,
        connector: Connector::new(Some(options)),
        trusted: Arc::clone(&trusted),
    };
    let listen = config.listen.to_string();
    if edge {
        let edge = Arc::new(Edge::new(lean, config.client, trusted));
        let mut service = Service::new("lean-loop".to_string(), PlainEdge(edge));
        service.add_tcp(&listen);
        server.add_service(service);
    } else {
        let mut service = Service::new("lean-loop".to_string(), lean);
        service.add_tcp(&listen);
        server.add_service(service);
    }
    eprintln!("lean_loop (experiment) listening on {}", config.listen);
    server.run_forever()
}
