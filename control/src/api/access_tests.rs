//! The `/v1` gate through `app()`: a viewer session walks every documented route (writes
//! 403 and nothing changed, secrets 403, reads answered), an admin session's writes need the
//! CSRF token and the console's origin, a signed-out session is refused, bearer tokens need
//! neither, and the audit log records each change and refusal.

use super::access::{SECRET_READS, VIEWER_READS};
use super::tests::{call, send, tenant, GATEWAY, OPERATOR};
use super::*;
use crate::operators::config::{OidcSettings, SessionLimits};
use crate::operators::{Operators, Role};
use crate::push::PushSettings;
use crate::registry::Registry;
use crate::server::{assemble, Wiring};
use axum::body::Body as AxBody;
use axum::http::{Method, Request as HttpRequest};
use serde_json::{json, Value};
use tower::ServiceExt;

const ORIGIN: &str = "https://console.example.com";

pub(super) async fn app_with_sessions() -> (Router, Arc<Operators>) {
    let mut state = assemble(
        Registry::in_memory().await.expect("registry"),
        Wiring {
            operator_token: OPERATOR,
            gateway_token: Some(GATEWAY.into()),
            gateways: &[],
            gateway_trust: Default::default(),
            push: PushSettings::default(),
            max_body_bytes: 1 << 20,
            api: ApiLimits::default(),
            provision: None,
            assertion: Default::default(),
        },
    )
    .await
    .expect("assemble");
    let ops = Operators::new(OidcSettings {
        issuer: "https://sso.example.com/realms/ops".into(),
        client_id: "console".into(),
        client_secret: None,
        redirect_url: url::Url::parse(&format!("{ORIGIN}/auth/callback")).expect("url"),
        origin: ORIGIN.into(),
        roles_claim: vec!["roles".into()],
        sessions: SessionLimits::default(),
    });
    state.operators = Some(Arc::clone(&ops));
    let app = app(state);
    let (s, _) = call(
        &app,
        Method::PUT,
        "/v1/upstreams/app",
        Some(json!({"endpoints": ["127.0.0.1:9001"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/tenants",
        Some(tenant("acme", "acme.example.com")),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    (app, ops)
}

pub(super) struct Browser<'a> {
    pub(super) cookie: String,
    pub(super) csrf: String,
    pub(super) origin: Option<&'a str>,
}

impl Browser<'_> {
    pub(super) fn sign_in(ops: &Operators, role: Role) -> Browser<'static> {
        let (id, v) = ops.sessions.create(
            format!("sub-{}", role.name()),
            format!("{}-user", role.name()),
            role,
            "idt".into(),
        );
        Browser {
            cookie: format!("__Host-realmctl-session={id}"),
            csrf: v.csrf,
            origin: Some(ORIGIN),
        }
    }

    pub(super) fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> HttpRequest<AxBody> {
        let mut b = HttpRequest::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, &self.cookie)
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-csrf-token", &self.csrf);
        if let Some(o) = self.origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(body.map_or_else(AxBody::empty, |v| AxBody::from(v.to_string())))
            .expect("request")
    }
}

async fn status_only(app: &Router, req: HttpRequest<AxBody>) -> StatusCode {
    app.clone().oneshot(req).await.expect("infallible").status()
}

pub(super) async fn message(app: &Router, req: HttpRequest<AxBody>) -> (StatusCode, String) {
    let (s, _, body) = send(app, req).await;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (s, v["message"].as_str().unwrap_or("").to_owned())
}

/// Every documented operation under `/v1`, its path parameters filled in.
pub(super) fn operations() -> Vec<(Method, String, String)> {
    let doc = openapi::spec();
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/v1/") || path == "/v1/openapi.json" {
            continue;
        }
        let concrete = path
            .replace("{id}", "acme")
            .replace("{name}", "app")
            .replace("{kid}", "nokid")
            .replace("{domain}", "www.acme-corp.example");
        let methods = ops.as_object().expect("methods").keys();
        for m in methods.filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
        {
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).expect("method");
            out.push((method, path.clone(), concrete.clone()));
        }
    }
    out
}

#[test]
fn every_documented_read_is_classified() {
    let ops = operations();
    for (m, path, _) in &ops {
        if *m == Method::GET {
            assert!(
                VIEWER_READS.contains(&path.as_str()) ^ SECRET_READS.contains(&path.as_str()),
                "GET {path}: list it in access::VIEWER_READS or access::SECRET_READS (once)"
            );
        }
    }
    for listed in VIEWER_READS.iter().chain(SECRET_READS) {
        assert!(
            ops.iter().any(|(m, p, _)| *m == Method::GET && p == listed),
            "{listed} is classified but not a documented GET route"
        );
    }
}

#[tokio::test]
async fn a_viewer_session_walks_every_route_and_changes_nothing() {
    let (app, ops) = app_with_sessions().await;
    let viewer = Browser::sign_in(&ops, Role::Viewer);
    let before = super::tests::table(&app).await;
    let (_, tenants_before) = call(&app, Method::GET, "/v1/tenants", None).await;
    let mut writes = 0;
    for (method, path, concrete) in operations() {
        let req = viewer.request(method.clone(), &concrete, Some(json!({})));
        if method == Method::GET && path.ends_with("/events") {
            // A stream: its status is enough (its body never ends).
            assert_eq!(status_only(&app, req).await, StatusCode::OK, "GET {path}");
            continue;
        }
        let (status, msg) = message(&app, req).await;
        if method == Method::GET && VIEWER_READS.contains(&path.as_str()) {
            assert!(
                !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "GET {path}: a viewer reads it, got {status} {msg}"
            );
        } else if method == Method::GET {
            assert_eq!(status, StatusCode::FORBIDDEN, "GET {path}: {msg}");
            assert!(msg.contains("does not read secrets"), "{msg}");
        } else {
            writes += 1;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {msg}");
            assert!(
                msg.contains("the viewer role reads but changes nothing")
                    && msg.contains("admin role"),
                "{method} {path}: {msg}"
            );
        }
    }
    assert!(writes >= 15, "only {writes} writes walked");
    assert_eq!(super::tests::table(&app).await, before, "nothing changed");
    let (_, tenants_after) = call(&app, Method::GET, "/v1/tenants", None).await;
    assert_eq!(tenants_after, tenants_before);
    // Each refused write is in the audit log, with who tried.
    let (_, audit) = call(&app, Method::GET, "/v1/audit?limit=500", None).await;
    let refused: Vec<&Value> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["outcome"] == "refused" && e["actor"] == "session")
        .collect();
    assert_eq!(refused.len(), writes);
    assert!(refused
        .iter()
        .all(|e| e["name"] == "viewer-user" && e["role"] == "viewer"));
}

#[tokio::test]
async fn session_writes_need_the_csrf_token_and_the_console_origin() {
    let (app, ops) = app_with_sessions().await;
    let admin = Browser::sign_in(&ops, Role::Admin);
    let patch = || Some(json!({"display_name": "Acme Inc"}));
    type Variant<'a> = (&'a str, Browser<'a>, Vec<(&'a str, &'a str)>);
    let variants: Vec<Variant> = vec![
        (
            "no CSRF token",
            Browser {
                csrf: String::new(),
                ..Browser::sign_in(&ops, Role::Admin)
            },
            vec![],
        ),
        (
            "a wrong CSRF token",
            Browser {
                csrf: "forged".into(),
                ..Browser::sign_in(&ops, Role::Admin)
            },
            vec![],
        ),
        (
            "another session's token",
            Browser {
                csrf: Browser::sign_in(&ops, Role::Admin).csrf,
                ..Browser::sign_in(&ops, Role::Admin)
            },
            vec![],
        ),
        (
            "a foreign Origin",
            Browser {
                origin: Some("https://evil.example"),
                ..Browser::sign_in(&ops, Role::Admin)
            },
            vec![],
        ),
        (
            "a foreign Origin, same-site",
            Browser {
                origin: Some("https://other.console.example.com"),
                ..Browser::sign_in(&ops, Role::Admin)
            },
            vec![("sec-fetch-site", "same-site")],
        ),
        (
            "cross-site fetch",
            Browser {
                origin: None,
                ..Browser::sign_in(&ops, Role::Admin)
            },
            vec![("sec-fetch-site", "cross-site")],
        ),
        (
            "neither Origin nor Sec-Fetch-Site",
            Browser {
                origin: None,
                ..Browser::sign_in(&ops, Role::Admin)
            },
            vec![],
        ),
    ];
    for (what, b, extra) in &variants {
        let mut req = b.request(Method::PATCH, "/v1/tenants/acme", patch());
        for (k, v) in extra {
            req.headers_mut().insert(*k, v.parse().expect("value"));
        }
        let (status, msg) = message(&app, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {msg}");
        assert!(
            msg.contains("x-csrf-token") || msg.contains("cross-origin"),
            "{what}: {msg}"
        );
    }
    let (_, t) = call(&app, Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!(t["display_name"], "acme", "no variant changed anything");
    // The real thing: the console's origin and the session's token.
    let (status, msg) = message(
        &app,
        admin.request(Method::PATCH, "/v1/tenants/acme", patch()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{msg}");
    // Without an Origin a same-origin fetch passes too.
    let b = Browser {
        origin: None,
        ..Browser::sign_in(&ops, Role::Admin)
    };
    let mut req = b.request(
        Method::PATCH,
        "/v1/tenants/acme",
        Some(json!({"display_name": "Acme"})),
    );
    req.headers_mut()
        .insert("sec-fetch-site", "same-origin".parse().expect("value"));
    assert_eq!(message(&app, req).await.0, StatusCode::OK);
    // A bearer token needs neither (it is not sent by browsers on their own).
    let (s, _) = call(
        &app,
        Method::PATCH,
        "/v1/tenants/acme",
        Some(json!({"display_name": "A"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // The audit log: the refusals, then the admin's change with its digests, then the token's.
    let (_, audit) = call(&app, Method::GET, "/v1/audit", None).await;
    let entries = audit["entries"].as_array().expect("entries");
    let ok: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "PATCH /v1/tenants/{id}" && e["outcome"] == "ok")
        .collect();
    assert_eq!(ok.len(), 3, "{audit}");
    assert_eq!(ok[0]["actor"], "session");
    assert_eq!(ok[0]["subject"], "sub-admin");
    assert_eq!(ok[0]["name"], "admin-user");
    assert_eq!(ok[0]["target"], "/v1/tenants/acme");
    assert_eq!(ok[0]["request_digest"].as_str().map(str::len), Some(64));
    assert_eq!(ok[0]["response_digest"].as_str().map(str::len), Some(64));
    // The tenant as GET showed it just before and just after the session's change.
    assert_eq!(ok[0]["before_digest"].as_str().map(str::len), Some(64));
    assert_eq!(ok[0]["after_digest"].as_str().map(str::len), Some(64));
    assert_ne!(ok[0]["before_digest"], ok[0]["after_digest"]);
    assert_eq!(ok[1]["before_digest"], ok[0]["after_digest"]);
    assert_eq!(ok[2]["actor"], "operator_token");
    let refused = entries
        .iter()
        .filter(|e| e["outcome"] == "refused" && e["action"] == "PATCH /v1/tenants/{id}")
        .count();
    assert_eq!(refused, variants.len());
    assert!(entries.iter().all(|e| e["at"].is_string()));
}

#[tokio::test]
async fn a_signed_out_session_is_refused_and_secrets_never_reach_the_log() {
    let (app, ops) = app_with_sessions().await;
    let admin = Browser::sign_in(&ops, Role::Admin);
    let (s, _) = message(&app, admin.request(Method::GET, "/v1/tenants", None)).await;
    assert_eq!(s, StatusCode::OK);
    // A key minted by the session: its secret is in the answer, never in the audit log.
    let (s, _, body) = send(
        &app,
        admin.request(Method::POST, "/v1/keys", Some(json!({"namespaces": ["*"]}))),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let minted: Value = serde_json::from_slice(&body).expect("json");
    let secret = minted["key"].as_str().expect("key").to_owned();
    let (_, audit) = call(&app, Method::GET, "/v1/audit", None).await;
    assert!(!audit.to_string().contains(&secret));
    assert!(!audit.to_string().contains(OPERATOR));
    // Sign-out: the cookie replayed afterwards is refused, reads and writes alike.
    let id = admin.cookie.split_once('=').expect("cookie").1;
    assert!(ops.sessions.remove(id).is_some());
    let (s, msg) = message(&app, admin.request(Method::GET, "/v1/tenants", None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(msg.contains("sign in again"), "{msg}");
    let (s, _) = message(
        &app,
        admin.request(Method::DELETE, "/v1/tenants/acme", None),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&app, Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!(s, StatusCode::OK, "still there");
    // No cookie and no token: 401 as before.
    let req = HttpRequest::get("/v1/tenants")
        .body(AxBody::empty())
        .expect("request");
    assert_eq!(status_only(&app, req).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_session_endpoint_gives_the_csrf_token_to_its_own_page_only() {
    let (app, ops) = app_with_sessions().await;
    let viewer = Browser::sign_in(&ops, Role::Viewer);
    let (s, h, body) = send(&app, viewer.request(Method::GET, "/auth/session", None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    assert!(
        h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
        "no other origin reads it"
    );
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["role"], "viewer");
    assert_eq!(v["csrf_token"], viewer.csrf.as_str());
    let req = HttpRequest::get("/auth/session")
        .body(AxBody::empty())
        .expect("request");
    let (_, _, body) = send(&app, req).await;
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v, json!({"signed_in": false, "sign_in_available": true}));
    // Logout is a state-changing call: the token and the origin are checked there too.
    let forged = Browser {
        csrf: "x".into(),
        ..Browser::sign_in(&ops, Role::Viewer)
    };
    let (s, _) = message(&app, forged.request(Method::POST, "/auth/logout", None)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
