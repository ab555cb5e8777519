//! The console's sign-in over HTTP: `GET /auth/login` (to the operators' realm),
//! `GET /auth/callback` (code → verified ID token → session cookie), `GET /auth/session`
//! (who is signed in, and the CSRF token), `POST /auth/logout` (ends the session, and
//! returns the realm's logout URL). Sign-ins and sign-outs are in the audit log.

use super::access::{check_session_write, entry, peer, Actor};
use super::{ApiError, AppState};
use crate::operators::session::{
    clear_cookie, login_cookie, read_cookie, session_cookie, LOGIN_COOKIE, SESSION_COOKIE,
};
use crate::operators::{Operators, Role};
use crate::service::ServiceError;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/session", get(session))
        .route("/auth/logout", post(logout))
}

/// A plain-text page for a sign-in that cannot go on; nothing from the request is echoed
/// but realm error codes, as text.
fn page(status: StatusCode, text: &str) -> Response {
    let mut r = (status, format!("{text}\n\nBack to the console: /\n")).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    r
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn configured(s: &AppState) -> Result<&Arc<Operators>, Box<Response>> {
    s.operators.as_ref().ok_or_else(|| {
        Box::new(page(
            StatusCode::NOT_FOUND,
            "Sign-in through Keycloak is not configured (operators.oidc in realmctl's configuration); use the operator token.",
        ))
    })
}

async fn login(State(s): State<AppState>) -> Response {
    let ops = match configured(&s) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let provider = match ops.oidc.provider(false).await {
        Ok(p) => p,
        Err(e) => {
            log::error!("operators' realm: {e}");
            return page(
                StatusCode::BAD_GATEWAY,
                "The operators' realm cannot be reached; realmctl's log says why.",
            );
        }
    };
    let (state, nonce, verifier, binding) = ops.pending.start();
    let url = ops
        .oidc
        .authorization_url(&provider, &state, &nonce, &verifier);
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(loc) = HeaderValue::from_str(url.as_str()) {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    r.headers_mut()
        .append(header::SET_COOKIE, login_cookie(&binding));
    no_store(r)
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(State(s): State<AppState>, Query(q): Query<Callback>, req: Request) -> Response {
    let ops = match configured(&s) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let from = peer(&req);
    let pending = q.state.as_deref().and_then(|st| ops.pending.take(st));
    let Some(pending) = pending else {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in is unknown or has expired (or was used already): start again from the console.",
        );
    };
    let bound = read_cookie(req.headers(), LOGIN_COOKIE).is_some_and(|c| pending.bound_to(c));
    if !bound {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in was started in another browser: start again from the console.",
        );
    }
    if let Some(err) = q.error {
        let code: String = err
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return page(
            StatusCode::UNAUTHORIZED,
            &format!("The operators' realm refused the sign-in: {code}."),
        );
    }
    let Some(code) = q.code else {
        return page(
            StatusCode::BAD_REQUEST,
            "The callback carries no code: start again from the console.",
        );
    };
    let identity = async {
        let p = ops.oidc.provider(false).await?;
        let id_token = ops.oidc.exchange(&p, &code, &pending.verifier).await?;
        let who = ops.oidc.verify(p, &id_token, &pending.nonce).await?;
        Ok::<_, String>((who, id_token))
    }
    .await;
    let (who, id_token) = match identity {
        Ok(x) => x,
        Err(e) => {
            log::warn!("operator sign-in failed: {e}");
            return page(StatusCode::BAD_GATEWAY, &format!("Sign-in failed: {e}"));
        }
    };
    let mut actor = Actor {
        kind: "session",
        subject: Some(who.subject.clone()),
        name: Some(who.name.clone()),
        role: None,
        known: true,
    };
    let Some(role) = Role::from_roles(&who.roles) else {
        let mut e = entry(
            &actor,
            "sign-in".into(),
            "/auth/callback".into(),
            StatusCode::FORBIDDEN,
        );
        e.peer = from;
        e.detail = Some("neither the viewer nor the admin role".into());
        s.control.record_audit(e);
        return page(
            StatusCode::FORBIDDEN,
            &format!(
                "{} has neither the viewer nor the admin role in the operators' realm; ask an admin to grant one.",
                who.name
            ),
        );
    };
    actor.role = Some(role);
    let (id, view) = ops.sessions.create(who.subject, who.name, role, id_token);
    let mut e = entry(
        &actor,
        "sign-in".into(),
        "/auth/callback".into(),
        StatusCode::OK,
    );
    e.peer = from;
    s.control.record_audit(e);
    let lifetime = Duration::from_millis(view.expires_at_ms.saturating_sub(crate::time::now_ms()));
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/"));
    h.append(header::SET_COOKIE, session_cookie(&id, lifetime));
    h.append(header::SET_COOKIE, clear_cookie(LOGIN_COOKIE, "Lax"));
    no_store(r)
}

/// Who is signed in (with the CSRF token for the page's writes), or that nobody is and
/// whether sign-in through the realm is offered.
async fn session(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let view = s
        .operators
        .as_ref()
        .and_then(|ops| read_cookie(&headers, SESSION_COOKIE).and_then(|id| ops.sessions.get(id)));
    let body = match view {
        Some(v) => json!({
            "signed_in": true, "subject": v.subject, "name": v.name, "role": v.role,
            "csrf_token": v.csrf, "expires_at": crate::time::rfc3339(v.expires_at_ms),
        }),
        None => json!({"signed_in": false, "sign_in_available": s.operators.is_some()}),
    };
    no_store(Json(body).into_response())
}

async fn logout(State(s): State<AppState>, req: Request) -> Response {
    let Some(ops) = s.operators.clone() else {
        return ApiError::NoRoute.into_response();
    };
    let from = peer(&req);
    let cookie = read_cookie(req.headers(), SESSION_COOKIE).map(str::to_owned);
    let Some(v) = cookie.as_deref().and_then(|id| ops.sessions.get(id)) else {
        let mut r = ApiError::SessionEnded.into_response();
        r.headers_mut()
            .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE, "Strict"));
        return r;
    };
    let actor = Actor::session(&v);
    if let Err(m) = check_session_write(&ops, req.headers(), &v) {
        let refusal = ApiError::Service(ServiceError::Forbidden(m.clone()));
        let mut e = entry(
            &actor,
            "sign-out".into(),
            "/auth/logout".into(),
            StatusCode::FORBIDDEN,
        );
        e.peer = from;
        e.detail = Some(m);
        s.control.record_audit(e);
        return refusal.into_response();
    }
    let id_token = cookie.as_deref().and_then(|id| ops.sessions.remove(id));
    let mut e = entry(
        &actor,
        "sign-out".into(),
        "/auth/logout".into(),
        StatusCode::OK,
    );
    e.peer = from;
    s.control.record_audit(e);
    // RP-initiated logout at the realm, when it offers one (its SSO session ends too).
    let end_session = match (id_token, ops.oidc.provider(false).await) {
        (Some(t), Ok(p)) => ops.oidc.end_session_url(&p, &t).map(|u| u.to_string()),
        _ => None,
    };
    let mut r = Json(json!({"signed_out": true, "end_session_url": end_session})).into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE, "Strict"));
    no_store(r)
}
