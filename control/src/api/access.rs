//! Who may call what, and the audit log: every `/v1` call passes here first. A console
//! session (cookie) is checked here — live session, role for the route ([`need`]), and on a
//! state-changing call its CSRF token and its origin — and so is an operator key (`Bearer
//! rgo_…`: live, role for the route); other bearer tokens go on to the per-resource checks
//! (`auth`). Every state-changing call that succeeds or is refused for auth is recorded.

use super::auth::{app_credential, bearer, digest, SessionCaller};
use super::{ApiError, AppState};
use crate::operators::keys::{KeyCaller, PREFIX as OPERATOR_KEY_PREFIX};
use crate::operators::session::{read_cookie, SessionView, SESSION_COOKIE};
use crate::operators::{Operators, Role};
use crate::service::audit::AuditEntry;
use crate::service::ServiceError;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// The CSRF token's header on a session's state-changing calls.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a route needs of a signed-in operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A viewer may.
    Read,
    /// Admin only: it reads secrets.
    Secret,
    /// Admin only: it changes something.
    Write,
}

/// `GET` routes a viewer may read. Every other `GET` route is admin-only until it is listed
/// here (the tests make each new one be classified, here or in [`SECRET_READS`]).
pub const VIEWER_READS: &[&str] = &[
    "/v1/tenants",
    "/v1/tenants/{id}",
    "/v1/tenants/{id}/events",
    "/v1/tenants/{id}/domains",
    "/v1/upstreams",
    "/v1/upstreams/{name}",
    // Redacted for everyone but gateways (`table`).
    "/v1/table",
    "/v1/gateways",
    "/v1/gateways/upstreams",
    "/v1/keys",
    "/v1/keys/{id}",
    "/v1/certificates",
    "/v1/certificates/{name}",
    "/v1/assertion-keys",
    "/v1/assertion-keys/status",
    "/v1/domains",
    "/v1/apps",
    "/v1/audit",
    "/v1/operator-keys",
    "/v1/operator-keys/{id}",
    "/v1/traffic",
];

/// Routes whose changes an operator key may not make, whatever its role: a leaked key must
/// not be able to mint itself successors or revoke the keys that would replace it.
pub const PEOPLE_ONLY_WRITES: &[&str] = &["/v1/operator-keys", "/v1/operator-keys/{id}"];

/// `GET` routes that answer with secrets: admin only.
pub const SECRET_READS: &[&str] = &[
    // The tenant database's URL and its token.
    "/v1/tenants/{id}/database",
];

pub fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// What `route` (the router's pattern) needs with `method`.
pub fn need(method: &Method, route: &str) -> Need {
    if !is_safe(method) {
        Need::Write
    } else if VIEWER_READS.contains(&route) {
        Need::Read
    } else {
        Need::Secret
    }
}

/// Who is calling, for the audit log; put in every `/v1` request's extensions by [`gate`].
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub kind: &'static str,
    pub subject: Option<String>,
    pub name: Option<String>,
    pub role: Option<Role>,
    /// Known credentials only: the body of an unknown caller's call is never read.
    pub known: bool,
}

impl Actor {
    pub fn session(v: &SessionView) -> Actor {
        Actor {
            kind: "session",
            subject: Some(v.subject.clone()),
            name: Some(v.name.clone()),
            role: Some(v.role),
            known: true,
        }
    }

    pub fn operator_key(k: &KeyCaller) -> Actor {
        Actor {
            kind: "operator_key",
            subject: Some(k.id.clone()),
            name: Some(k.name.clone()),
            role: Some(k.role),
            known: true,
        }
    }

    /// Who minted something, as the thing records it: `operator_token`, `session:<name>`,
    /// `operator_key:<id>`.
    pub fn minted_by(&self) -> String {
        match (self.kind, &self.name, &self.subject) {
            ("session", Some(name), _) => format!("session:{name}"),
            ("operator_key", _, Some(id)) => format!("operator_key:{id}"),
            (kind, _, _) => kind.to_owned(),
        }
    }

    fn anonymous() -> Actor {
        Actor {
            kind: "anonymous",
            ..Actor::default()
        }
    }

    /// The caller a bearer token names (the same checks `auth` makes).
    fn bearer(s: &AppState, headers: &HeaderMap) -> Actor {
        let known = |kind, subject: Option<String>, name: &str| Actor {
            kind,
            subject,
            name: Some(name.to_owned()),
            role: None,
            known: true,
        };
        if s.tokens.is_operator(headers) {
            return known("operator_token", None, "operator token");
        }
        if s.tokens.is_gateway(headers) {
            return known("gateway_token", None, "gateway token");
        }
        if let Some(a) = app_credential(s, headers) {
            return known("app", Some(a.id), "app credential");
        }
        let key = bearer(headers)
            .filter(|t| t.starts_with(b"rgk_"))
            .and_then(|t| s.control.key_caller(&digest(t)));
        match key {
            Some(k) => known("api_key", Some(k.id.to_string()), "API key"),
            None => Actor::anonymous(),
        }
    }
}

/// Refuse a session's state-changing call unless it comes from the console's own origin
/// (`Origin`, or without it `Sec-Fetch-Site: same-origin`) and carries its CSRF token.
pub fn check_session_write(
    ops: &Operators,
    headers: &HeaderMap,
    v: &SessionView,
) -> Result<(), String> {
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let fetch_site = headers.get("sec-fetch-site").and_then(|o| o.to_str().ok());
    let same_origin = match (origin, fetch_site) {
        (_, Some(site)) if site != "same-origin" => false,
        (Some(o), _) => o == ops.origin(),
        (None, Some(_)) => true,
        (None, None) => false,
    };
    if !same_origin {
        return Err(format!(
            "cross-origin request refused: a signed-in console's changes must come from {} (Origin {:?}, Sec-Fetch-Site {:?})",
            ops.origin(),
            origin.unwrap_or("absent"),
            fetch_site.unwrap_or("absent")
        ));
    }
    let presented = headers
        .get(CSRF_HEADER)
        .map(|h| h.as_bytes())
        .unwrap_or_default();
    if !v.csrf_matches(presented) {
        return Err(format!(
            "missing or wrong {CSRF_HEADER}: a signed-in console's changes carry the CSRF token GET /auth/session gave"
        ));
    }
    Ok(())
}

fn forbidden(msg: String) -> ApiError {
    ApiError::Service(ServiceError::Forbidden(msg))
}

/// The session of a cookie-carrying request without a bearer token: `Ok(None)` when there
/// is none to check, the refusal when it may not make this call.
fn session_of(
    s: &AppState,
    req: &Request,
    route: &str,
) -> Result<Option<SessionView>, Box<(Actor, ApiError)>> {
    let Some(ops) = &s.operators else {
        return Ok(None);
    };
    let Some(id) = read_cookie(req.headers(), SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(v) = ops.sessions.get(id) else {
        return Err(Box::new((Actor::anonymous(), ApiError::SessionEnded)));
    };
    let actor = Actor::session(&v);
    let method = req.method();
    if !is_safe(method) {
        check_session_write(ops, req.headers(), &v)
            .map_err(|m| Box::new((actor.clone(), forbidden(m))))?;
    }
    role_allows(v.role, method, route, "in the operators' realm")
        .map_err(|m| Box::new((actor, forbidden(m))))?;
    Ok(Some(v))
}

/// Whether `role` may make this call; the refusal says what it needs (`where_` the admin
/// role is had).
fn role_allows(role: Role, method: &Method, route: &str, where_: &str) -> Result<(), String> {
    match (need(method, route), role) {
        (_, Role::Admin) | (Need::Read, Role::Viewer) => Ok(()),
        (Need::Write, Role::Viewer) => Err(format!(
            "the viewer role reads but changes nothing: {method} {route} needs the admin role {where_}"
        )),
        (Need::Secret, Role::Viewer) => Err(format!(
            "the viewer role does not read secrets: {method} {route} needs the admin role {where_}"
        )),
    }
}

/// The operator key a request presents (`Bearer rgo_…`): `Ok(None)` when it presents none
/// that is live (the per-resource checks then answer 401), the refusal when its role may
/// not make this call.
fn operator_key_of(
    s: &AppState,
    req: &Request,
    route: &str,
) -> Result<Option<Actor>, Box<(Actor, ApiError)>> {
    let Some(k) = bearer(req.headers())
        .filter(|t| t.starts_with(OPERATOR_KEY_PREFIX.as_bytes()))
        .and_then(|t| s.operator_keys.caller(t))
    else {
        return Ok(None);
    };
    let actor = Actor::operator_key(&k);
    let method = req.method();
    if !is_safe(method) && PEOPLE_ONLY_WRITES.contains(&route) {
        return Err(Box::new((
            actor,
            forbidden(format!(
                "an operator key cannot mint or revoke operator keys ({method} {route}): use the operator token, or sign in to the console as an admin"
            )),
        )));
    }
    role_allows(k.role, method, route, "(an admin operator key)")
        .map_err(|m| Box::new((actor.clone(), forbidden(m))))?;
    Ok(Some(actor))
}

fn hex_digest(bytes: &[u8]) -> String {
    hex::encode(digest(bytes))
}

pub fn peer(req: &Request) -> Option<String> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.to_string())
}

/// An audit entry for a call.
pub fn entry(actor: &Actor, action: String, target: String, status: StatusCode) -> AuditEntry {
    AuditEntry {
        actor: actor.kind.to_owned(),
        subject: actor.subject.clone(),
        name: actor.name.clone(),
        role: actor.role.map(|r| r.name().to_owned()),
        action,
        target,
        status: status.as_u16(),
        outcome: if status.is_success() || status.is_redirection() {
            "ok"
        } else {
            "refused"
        }
        .into(),
        ..AuditEntry::default()
    }
}

/// The `/v1` gate (see the module doc).
pub async fn gate(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |m| m.as_str().to_owned());
    let changing = !is_safe(req.method());
    let action = format!("{} {route}", req.method());
    let target = req.uri().path().to_owned();
    let peer = peer(&req);
    let has_bearer = req.headers().contains_key(header::AUTHORIZATION);
    // A session or an operator key, checked here, is let through the per-resource checks.
    let vouched = if has_bearer {
        operator_key_of(&s, &req, &route)
    } else {
        session_of(&s, &req, &route).map(|v| v.as_ref().map(Actor::session))
    };
    let (actor, mut req) = match vouched {
        Ok(Some(actor)) => {
            let mut req = req;
            req.extensions_mut().insert(SessionCaller);
            (actor, req)
        }
        Ok(None) if has_bearer => (Actor::bearer(&s, req.headers()), req),
        Ok(None) => (Actor::anonymous(), req),
        Err(refused) => {
            let (actor, refusal) = *refused;
            let detail = refusal_text(&refusal);
            let resp = refusal.into_response();
            if changing {
                let mut e = entry(&actor, action, target, resp.status());
                e.peer = peer;
                e.detail = Some(detail);
                s.control.record_audit(e);
            }
            return resp;
        }
    };
    req.extensions_mut().insert(actor.clone());
    if !changing {
        return next.run(req).await;
    }
    // The body is read (bounded) only for a known caller, to record its digest; the object
    // it changes is read back through the same route, before and after.
    let mut request_digest = None;
    let mut read_backs = None;
    if actor.known {
        let (parts, body) = req.into_parts();
        if reads_back(&parts.method) {
            read_backs = Some((read_back(&parts), read_back(&parts)));
        }
        let bytes = match axum::body::to_bytes(body, s.max_body_bytes).await {
            Ok(b) => b,
            Err(_) => {
                return ApiError::TooLarge {
                    limit: s.max_body_bytes,
                }
                .into_response()
            }
        };
        request_digest = Some(hex_digest(&bytes));
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let (before_read, after_read) = read_backs.unzip();
    let before = object_digest(before_read.flatten()).await;
    let resp = next.run(req).await;
    let status = resp.status();
    let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    if !status.is_success() && !refused {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut e = entry(&actor, action, target, status);
    e.peer = peer;
    e.request_digest = request_digest;
    e.response_digest = status.is_success().then(|| hex_digest(&bytes));
    if status.is_success() {
        e.before_digest = before;
        e.after_digest = match after_read {
            Some(r) => object_digest(r).await,
            // A POST creates (or acts): what it answered is the object after.
            None => e.response_digest.clone(),
        };
    }
    if refused {
        e.detail = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned));
    }
    // Queued before the answer goes out, committed with the next batch (`service::audit`):
    // the call does not wait for a second commit.
    s.control.record_audit(e);
    Response::from_parts(parts, Body::from(bytes))
}

/// Whether a change's object is its own path (PUT, PATCH, DELETE): then it is read back with
/// a GET of that path before and after. A POST's path is a collection or an action.
fn reads_back(m: &Method) -> bool {
    matches!(*m, Method::PUT | Method::PATCH | Method::DELETE)
}

/// A GET of the path a change is made to, as the same caller (its headers, and what this
/// gate vouched for; no body, no preconditions), and the routes to send it through.
fn read_back(parts: &axum::http::request::Parts) -> Option<(ReadBack, Request)> {
    let routes = parts.extensions.get::<ReadBack>()?.clone();
    let mut r = Request::new(Body::empty());
    *r.uri_mut() = parts.uri.path().parse().ok()?;
    let mut headers = parts.headers.clone();
    for h in [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::TRANSFER_ENCODING,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
    ] {
        headers.remove(h);
    }
    *r.headers_mut() = headers;
    // Not every extension: the router adds the path's parameters to those already there.
    let ext = r.extensions_mut();
    if let Some(v) = parts.extensions.get::<SessionCaller>() {
        ext.insert(v.clone());
    }
    if let Some(v) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        ext.insert(*v);
    }
    Some((routes, r))
}

/// The API's routes without this gate, put in each request's extensions by `api::app`: a
/// change's object is read back through them. (The gate's own `next` is the one method's
/// handler of the route, not the route: a GET sent there would run the change again.)
#[derive(Clone)]
pub struct ReadBack(pub axum::Router);

/// The hex SHA-256 of what the path's GET answers, when it answers 200: the object as the
/// API shows it. `None`: there is none (not yet, or no more), or the route has no GET.
async fn object_digest(read: Option<(ReadBack, Request)>) -> Option<String> {
    use tower::ServiceExt;
    let (routes, req) = read?;
    let resp = routes.0.oneshot(req).await.ok()?;
    if resp.status() != StatusCode::OK {
        return None;
    }
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .ok()?;
    Some(hex_digest(&bytes))
}

fn refusal_text(e: &ApiError) -> String {
    match e {
        ApiError::Service(ServiceError::Forbidden(m)) => m.clone(),
        other => other.to_string(),
    }
}
