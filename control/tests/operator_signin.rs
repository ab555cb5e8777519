//! Operators sign in to the console through a real Keycloak's login page, in headless
//! Chromium, against a real realmctl whose operators' realm `realmctl operators bootstrap`
//! made: an admin creates a tenant from the console and finds it in the audit log (page and
//! API); a page on another origin cannot make a change with the session; the stolen cookie
//! is refused without the CSRF token or from a foreign Origin, and after sign-out at all; a
//! viewer sees no controls and every write of the API answers 403 with nothing changed; an
//! account with neither role cannot sign in; the operator token keeps working throughout.
//! Screenshots: `target/browser-screenshots/operator-signin-*.png`.
//!
//! Needs `REALMGATE_KEYCLOAK_URL` and chromedriver (`REALMGATE_CHROMEDRIVER`); skips without
//! them unless `REALMGATE_REQUIRE_*` says not to.

mod common;

use common::*;
use realmgate_e2e::browser::Browser;
use realmgate_e2e::keycloak::{KcRealm, Keycloak};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const CLIENT: &str = "realmctl-console";
const PASSWORD: &str = "operator-Passw0rd-e2e";
const SESSION: &str = "__Host-realmctl-session";
const WAIT: Duration = Duration::from_secs(30);

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

struct World {
    kc: Keycloak,
    realm: KcRealm,
    rc: Realmctl,
    api: Api,
    base: String,
    http: reqwest::Client,
}

/// A user of the operators' realm with `role` (none: `None`).
async fn operator(w: &World, name: &str, role: Option<&str>) {
    let id = w.kc.create_user(&w.realm, name, PASSWORD).await;
    if let Some(role) = role {
        let rep =
            w.kc.admin(
                Method::GET,
                &format!("/{}/roles/{role}", w.realm.name),
                None,
            )
            .await;
        w.kc.admin(
            Method::POST,
            &format!("/{}/users/{id}/role-mappings/realm", w.realm.name),
            Some(json!([rep])),
        )
        .await;
    }
}

/// Through the console's button and Keycloak's real login form, back to the console.
async fn sign_in(b: &Browser, w: &World, user: &str) -> Result<(), String> {
    b.client.goto(&format!("{}/", w.base)).await.map_err(err)?;
    b.wait_id("sso").await?;
    b.click("#sso a").await?;
    b.wait_url(&format!("{}/realms/{}/", w.kc.url, w.realm.name), WAIT)
        .await?;
    b.keycloak_login(user, PASSWORD).await?;
    b.wait_url(&format!("{}/", w.base), WAIT).await?;
    Ok(())
}

async fn session_cookie(b: &Browser) -> Result<String, String> {
    let cookies = b.client.get_all_cookies().await.map_err(err)?;
    let c = cookies
        .iter()
        .find(|c| c.name() == SESSION)
        .ok_or_else(|| format!("no {SESSION} cookie: {cookies:?}"))?;
    if c.http_only() != Some(true) || c.secure() != Some(true) {
        return Err(format!("session cookie attributes: {c:?}"));
    }
    if format!("{:?}", c.same_site()) != "Some(Strict)" {
        return Err(format!("session cookie not SameSite=Strict: {c:?}"));
    }
    Ok(format!("{SESSION}={}", c.value()))
}

/// A call with a (stolen) session cookie, outside the browser.
async fn with_cookie(
    w: &World,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    origin: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = w
        .http
        .request(method, format!("{}{path}", w.base))
        .header("cookie", cookie);
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("realmctl reachable");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn audit(w: &World) -> Vec<Value> {
    let (s, v) = w.api.call(Method::GET, "/v1/audit?limit=500", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["entries"].as_array().cloned().unwrap_or_default()
}

async fn admin_flow(b: &Browser, w: &World) -> Result<(), String> {
    sign_in(b, w, "alice").await?;
    b.wait_text("#operator", "alice · admin").await?;
    b.screenshot("operator-signin-admin").await;

    // A change from the console: a tenant, created through the form.
    b.click("#create summary").await?;
    b.fill("#create-form input[name=id]", "signin-acme").await?;
    b.fill("#create-form input[name=host]", "signin-acme.example.test")
        .await?;
    b.click("#create-form button[type=submit]").await?;
    b.wait_text("tr[data-tenant=\"signin-acme\"]", "active")
        .await?;
    b.wait_text("#audit", "POST /v1/tenants").await?;
    b.wait_text("#audit", "alice (admin)").await?;
    b.screenshot("operator-signin-audit").await;
    let entries = audit(w).await;
    let created = entries
        .iter()
        .find(|e| e["action"] == "POST /v1/tenants" && e["outcome"] == "ok")
        .ok_or_else(|| format!("no audit entry for the tenant: {entries:?}"))?;
    if created["name"] != "alice" || created["role"] != "admin" || created["status"] != 201 {
        return Err(format!("audit entry: {created}"));
    }
    if !created["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:"))
    {
        return Err(format!("audit entry without the peer: {created}"));
    }
    if !entries
        .iter()
        .any(|e| e["action"] == "sign-in" && e["name"] == "alice")
    {
        return Err("the sign-in is not in the audit log".into());
    }

    // Another origin's page (no CSP of its own) tries a change with the browser's cookies.
    let keys_before = w.api.call(Method::GET, "/v1/keys", None).await.1["keys"]
        .as_array()
        .map_or(0, Vec::len);
    let port = w.rc.addr.port();
    b.client
        .goto(&format!("http://evil.test:{port}/healthz"))
        .await
        .map_err(err)?;
    let js = format!(
        "const done = arguments[0]; fetch('{}/v1/keys', {{method: 'POST', mode: 'no-cors', \
         credentials: 'include', headers: {{'Content-Type': 'text/plain'}}, \
         body: '{{\"namespaces\": [\"*\"]}}'}}).then(() => done('sent'), (e) => done(String(e)));",
        w.base
    );
    b.client.execute_async(&js, vec![]).await.map_err(err)?;
    let keys_after = w.api.call(Method::GET, "/v1/keys", None).await.1["keys"]
        .as_array()
        .map_or(0, Vec::len);
    if keys_after != keys_before {
        return Err("a cross-origin page minted a key".into());
    }
    let refused = audit(w)
        .await
        .into_iter()
        .rev()
        .find(|e| e["action"] == "POST /v1/keys");
    if !refused.as_ref().is_some_and(|e| e["outcome"] == "refused") {
        return Err(format!(
            "the cross-origin attempt is not in the audit log as refused: {refused:?}"
        ));
    }

    // The cookie outside the browser: refused without the CSRF token or from a foreign origin.
    b.client.goto(&format!("{}/", w.base)).await.map_err(err)?;
    b.wait_text("#operator", "alice · admin").await?;
    let cookie = session_cookie(b).await?;
    let (_, who) = with_cookie(w, Method::GET, "/auth/session", &cookie, None, None, None).await;
    let csrf = who["csrf_token"]
        .as_str()
        .ok_or("no csrf token")?
        .to_owned();
    let patch = || Some(json!({"display_name": "changed"}));
    let path = "/v1/tenants/signin-acme";
    let base = w.base.as_str();
    for (what, token, origin) in [
        ("no CSRF token", None, Some(base)),
        ("a wrong CSRF token", Some("forged"), Some(base)),
        (
            "a foreign Origin",
            Some(csrf.as_str()),
            Some("http://evil.test"),
        ),
        ("no Origin", Some(csrf.as_str()), None),
    ] {
        let (s, v) = with_cookie(w, Method::PATCH, path, &cookie, token, origin, patch()).await;
        if s != StatusCode::FORBIDDEN {
            return Err(format!("{what}: {s} {v}"));
        }
    }
    let (_, t) = w.api.call(Method::GET, path, None).await;
    if t["display_name"] == "changed" {
        return Err("a refused call changed the tenant".into());
    }
    let (s, v) = with_cookie(
        w,
        Method::PATCH,
        path,
        &cookie,
        Some(&csrf),
        Some(base),
        patch(),
    )
    .await;
    if s != StatusCode::OK {
        return Err(format!("the session's own call: {s} {v}"));
    }

    // Sign out (here and at Keycloak); the old cookie is refused from then on.
    sign_out(b, w).await?;
    let (s, v) = with_cookie(w, Method::GET, "/v1/tenants", &cookie, None, None, None).await;
    if s != StatusCode::UNAUTHORIZED || v["error"] != "session_ended" {
        return Err(format!("the cookie replayed after sign-out: {s} {v}"));
    }
    let (s, _) = with_cookie(
        w,
        Method::DELETE,
        path,
        &cookie,
        Some(&csrf),
        Some(base),
        None,
    )
    .await;
    if s != StatusCode::UNAUTHORIZED {
        return Err(format!("a write with the old cookie: {s}"));
    }
    if !audit(w)
        .await
        .iter()
        .any(|e| e["action"] == "sign-out" && e["name"] == "alice")
    {
        return Err("the sign-out is not in the audit log".into());
    }
    Ok(())
}

async fn viewer_flow(b: &Browser, w: &World) -> Result<(), String> {
    sign_in(b, w, "victor").await?;
    b.wait_text("#operator", "victor · viewer").await?;
    b.wait_text("tr[data-tenant=\"signin-acme\"]", "signin-acme")
        .await?;
    let create_shown = b
        .client
        .execute(
            "return getComputedStyle(document.getElementById('create')).display",
            vec![],
        )
        .await
        .map_err(err)?;
    if create_shown != "none" {
        return Err(format!("a viewer is shown the tenant form: {create_shown}"));
    }
    // Nor the key forms, the operator keys, or a revoke button (keys.js's views).
    let shown = b
        .client
        .execute(
            "return ['key-create', 'operator-key-create', 'operator-keys-view'].map((id) => getComputedStyle(document.getElementById(id)).display).concat([...document.querySelectorAll('#keys button')].filter((x) => x.offsetParent).length)",
            vec![],
        )
        .await
        .map_err(err)?;
    if shown != serde_json::json!(["none", "none", "none", 0]) {
        return Err(format!("a viewer is shown key controls: {shown}"));
    }
    b.screenshot("operator-signin-viewer").await;
    let cookie = session_cookie(b).await?;
    let (_, who) = with_cookie(w, Method::GET, "/auth/session", &cookie, None, None, None).await;
    let csrf = who["csrf_token"]
        .as_str()
        .ok_or("no csrf token")?
        .to_owned();

    // Every write the API documents, with the viewer's own token and origin: 403, nothing changed.
    let (_, before) = w.api.call(Method::GET, "/v1/table?summary=1", None).await;
    let (_, doc) = w.api.call(Method::GET, "/v1/openapi.json", None).await;
    let mut walked = 0;
    for (path, ops) in doc["paths"].as_object().ok_or("no paths")? {
        let concrete = path
            .replace("{id}", "signin-acme")
            .replace("{name}", "app")
            .replace("{kid}", "nokid")
            .replace("{domain}", "www.signin.example");
        for m in ["post", "put", "patch", "delete"] {
            if ops.get(m).is_none() {
                continue;
            }
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).map_err(err)?;
            let (s, v) = with_cookie(
                w,
                method,
                &concrete,
                &cookie,
                Some(&csrf),
                Some(&w.base),
                Some(json!({})),
            )
            .await;
            if s != StatusCode::FORBIDDEN
                || !v["message"].as_str().unwrap_or("").contains("viewer role")
            {
                return Err(format!("{m} {path} as a viewer: {s} {v}"));
            }
            walked += 1;
        }
    }
    if walked < 15 {
        return Err(format!("only {walked} writes walked"));
    }
    let (s, _) = with_cookie(
        w,
        Method::GET,
        "/v1/tenants/signin-acme/database",
        &cookie,
        None,
        None,
        None,
    )
    .await;
    if s != StatusCode::FORBIDDEN {
        return Err(format!("a viewer read a database secret: {s}"));
    }
    let (_, after) = w.api.call(Method::GET, "/v1/table?summary=1", None).await;
    if before["version"] != after["version"] {
        return Err(format!("the viewer changed the table: {before} → {after}"));
    }
    let (s, _) = with_cookie(w, Method::GET, "/v1/audit", &cookie, None, None, None).await;
    if s != StatusCode::OK {
        return Err(format!("a viewer reads the audit log: {s}"));
    }
    sign_out(b, w).await
}

/// Sign out with the button: the session ends at realmctl, and the page goes on to the
/// realm's logout, which sends the browser back to the console — a new document (without
/// the mark set here). Until then the realm would sign the next login in as the same user.
async fn sign_out(b: &Browser, w: &World) -> Result<(), String> {
    b.client
        .execute("window.beforeSignOut = true; return true", vec![])
        .await
        .map_err(err)?;
    b.click("#sign-out").await?;
    let deadline = std::time::Instant::now() + WAIT;
    let back = format!("{}/", w.base);
    loop {
        let url = b.client.current_url().await.map_err(err)?.to_string();
        let fresh = b
            .client
            .execute("return window.beforeSignOut === undefined", vec![])
            .await
            .map_err(err)?;
        if url.starts_with(&back) && fresh == json!(true) {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "after sign-out, still at {url} (the same page: {fresh})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.wait_id("sso").await?;
    Ok(())
}

async fn no_role_flow(b: &Browser, w: &World) -> Result<(), String> {
    b.client.goto(&format!("{}/", w.base)).await.map_err(err)?;
    b.wait_id("sso").await?;
    b.click("#sso a").await?;
    b.keycloak_login("nora", PASSWORD).await?;
    b.wait_text("body", "neither the viewer nor the admin role")
        .await?;
    b.screenshot("operator-signin-no-role").await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_sign_in_through_keycloak_with_roles_csrf_and_an_audit_log() {
    let Some(kc) = Keycloak::from_env().await else {
        return;
    };
    let dir = TempDir::new("operator-signin");
    let realm_name = format!("ops-{:08x}", fastrand::u32(..));
    let yaml = format!(
        "operators:\n  oidc:\n    issuer_url: {}/realms/{realm_name}\n    client_id: {CLIENT}\n    redirect_url: http://{REALMCTL_ADDR}/auth/callback\n",
        kc.url
    );
    let rc = Realmctl::start_with(&dir, &[], &yaml, &[]).await;
    let base = rc.url();
    // The operators' realm, made by realmctl itself; a first admin with it.
    let out = common::operators::bootstrap(
        &dir,
        &kc.url,
        "realmgate-e2e-admin",
        &realm_name,
        CLIENT,
        &base,
        ("alice", PASSWORD),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("realm {realm_name} ready")),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("redirect_url: {base}/auth/callback")),
        "{text}"
    );
    let w = World {
        realm: KcRealm {
            issuer: format!("{}/realms/{realm_name}", kc.url),
            name: realm_name,
        },
        kc,
        api: rc.api(),
        rc,
        base,
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
    };
    operator(&w, "victor", Some("viewer")).await;
    operator(&w, "nora", None).await;
    let up = Upstream::start("signin-app").await;
    w.api.put_pool("app", up.addr).await;

    let Some(browser) = Browser::start().await else {
        return;
    };
    let result = tokio::time::timeout(Duration::from_secs(300), async {
        admin_flow(&browser, &w)
            .await
            .map_err(|e| format!("admin: {e}"))?;
        viewer_flow(&browser, &w)
            .await
            .map_err(|e| format!("viewer: {e}"))?;
        no_role_flow(&browser, &w)
            .await
            .map_err(|e| format!("no role: {e}"))
    })
    .await;
    if !matches!(result, Ok(Ok(()))) {
        let seen = browser.failure_report("operator-signin-failure").await;
        panic!(
            "{result:?}\n{seen}\nrealmctl log:\n{}",
            w.rc.proc.log_text()
        );
    }
    browser.close().await;
    // The operator token kept working throughout, and still does.
    let (s, v) = w
        .api
        .call(
            Method::PATCH,
            "/v1/tenants/signin-acme",
            Some(json!({"display_name": "by token"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let last = audit(&w).await.pop().expect("an entry");
    assert_eq!(last["actor"], "operator_token", "{last}");
}
