//! Full management from the console, in headless Chromium against a real realmctl (its
//! operators' realm and its tenants' realms in a real Keycloak), a real gateway and a real
//! upstream: a route's auth policy edited from public to jwt in the tenant's settings, and
//! the gateway then refusing a request without a token (401); every form sent with bad
//! values shows each of the API's 422 problems beside its field and changes nothing; HTML in
//! a display name is shown as text; a pool made from the pool form, with its endpoints'
//! health as the gateway reports it; the audit view lists the settings saved and the pool
//! made; a viewer signed in through Keycloak is shown no control that changes anything, and
//! a write from the viewer's session is refused (403) with nothing changed. Each page is saved at 1280×720 and 390×844 (`SCREENSHOT_DIR`), never
//! scrolls sideways, and axe-core finds no serious or critical violation on it.
//!
//! Needs Keycloak (`REALMGATE_KEYCLOAK_URL`), chromedriver and axe-core (`tests/setup/axe.sh`);
//! skips without them unless `REALMGATE_REQUIRE_*` says not to.

mod common;
mod ui_support;

use common::provision::{services, wait_state};
use common::*;
use realmgate_e2e::browser::Browser;
use realmgate_e2e::keycloak::{KcRealm, Keycloak};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use ui_support::check_page;
use ui_support::console::{Console, PASSWORD};

const WAIT: Duration = Duration::from_secs(30);
const MARKUP: &str = "<img src=x onerror=alert(1)><b>Acme</b>";

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

struct World {
    kc: Keycloak,
    realm: KcRealm,
    rc: Realmctl,
    api: Api,
    base: String,
    gateway: std::net::SocketAddr,
    tenant: String,
    host: String,
    axe: Option<String>,
}

impl World {
    async fn tenant(&self) -> Value {
        let (s, t) = self
            .api
            .call(Method::GET, &format!("/v1/tenants/{}", self.tenant), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{t}");
        t
    }

    /// `GET /` of the tenant's host at the gateway, without a token: the status.
    async fn gateway_status(&self) -> u16 {
        reqwest::Client::new()
            .get(format!("http://{}/", self.gateway))
            .header(reqwest::header::HOST, &self.host)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    async fn until_gateway(&self, want: u16) -> Result<(), String> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let got = self.gateway_status().await;
            if got == want {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("the gateway answers {got}, not {want}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn page(&self, b: &Browser, name: &str) -> Result<(), String> {
        check_page(b, name, self.axe.as_deref()).await
    }
}

/// Run `js` in the page (its own functions, e.g. `api`), awaiting the promise it returns.
async fn in_page(b: &Browser, js: &str) -> Result<Value, String> {
    let script = format!(
        "const done = arguments[0]; Promise.resolve().then(() => {js}).then((v) => done(v), (e) => done({{error: e.status || String(e)}}));"
    );
    b.client.execute_async(&script, vec![]).await.map_err(err)
}

/// The texts of the problems shown in `scope`, and of its form-wide list `rest`.
async fn shown_problems(
    b: &Browser,
    scope: &str,
    rest: &str,
) -> Result<(Vec<String>, Vec<String>), String> {
    let v = b
        .client
        .execute(
            &format!(
                "return [[...document.querySelectorAll('{scope} ul.problems[data-for] li')].map((l) => l.textContent), \
                 [...document.querySelectorAll('#{rest} li')].map((l) => l.textContent)]"
            ),
            vec![],
        )
        .await
        .map_err(err)?;
    let list = |i: usize| -> Vec<String> {
        v[i].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok((list(0), list(1)))
}

/// After the form was sent with `body`: every problem the API gives for that body is shown
/// beside a field of `scope` (none left over for the form-wide list).
async fn problems_by_field(
    b: &Browser,
    w: &World,
    scope: &str,
    rest: &str,
    call: (Method, &str, Value),
) -> Result<(), String> {
    let (method, path, body) = call;
    let (s, v) = w.api.call(method, path, Some(body)).await;
    if s != StatusCode::UNPROCESSABLE_ENTITY {
        return Err(format!("{path}: the API answers {s} {v}, not 422"));
    }
    let problems = v["problems"].as_array().cloned().unwrap_or_default();
    if problems.len() < 2 {
        return Err(format!("{path}: too few problems to test with: {v}"));
    }
    let mut last = (Vec::new(), Vec::new());
    for _ in 0..100 {
        last = shown_problems(b, scope, rest).await?;
        if !last.0.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (by_field, left) = last;
    if !left.is_empty() {
        return Err(format!("{path}: problems not beside a field: {left:?}"));
    }
    for p in &problems {
        let message = p["message"].as_str().unwrap_or_default();
        if !by_field.iter().any(|t| t.ends_with(message)) {
            return Err(format!(
                "{path}: {p} is not shown beside a field; shown: {by_field:?}"
            ));
        }
    }
    Ok(())
}

/// Open the tenant's settings from its row. A save re-provisions the tenant (its realm's
/// display name), and the row re-renders while that runs: wait until it has settled, and
/// click again (three times at most) when a re-render took the click.
async fn open_settings(b: &Browser, w: &World) -> Result<(), String> {
    let row = format!("tr[data-tenant=\"{}\"]", w.tenant);
    b.wait_gone(&format!("{row} button.progress"), WAIT).await?;
    let mut opened = Err(String::new());
    for _ in 0..3 {
        b.click(&format!("{row} button.settings")).await?;
        opened = b
            .wait_text_within("#tenant-editor-id", &w.tenant, Duration::from_secs(5))
            .await;
        if opened.is_ok() {
            break;
        }
    }
    opened.map(drop)
}

async fn admin_flow(b: &Browser, w: &World) -> Result<(), String> {
    b.client.goto(&format!("{}/", w.base)).await.map_err(err)?;
    b.wait_id("sso").await?;
    w.page(b, "console-sign-in").await?;
    b.fill("#token", OPERATOR_TOKEN).await?;
    b.click("#login-form button").await?;
    let row = format!("tr[data-tenant=\"{}\"]", w.tenant);
    b.wait_text(&row, "active").await?;
    b.wait_text(
        "#upstreams tr[data-pool=\"app\"] .pool-health",
        "1/1 healthy at",
    )
    .await?;
    w.page(b, "console-admin").await?;

    // The new-tenant form: each of the API's problems beside its field, nothing created.
    b.click("#create summary").await?;
    b.fill("#create-form input[name=id]", "Bad_Id").await?;
    b.fill("#create-form input[name=host]", "not a host")
        .await?;
    b.click("#create-form button[type=submit]").await?;
    let bad_create = json!({"id": "Bad_Id", "hosts": ["not a host"],
        "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]});
    problems_by_field(
        b,
        w,
        "#create-form",
        "create-form-problems",
        (Method::POST, "/v1/tenants", bad_create),
    )
    .await?;
    let (_, list) = w.api.call(Method::GET, "/v1/tenants", None).await;
    if list["tenants"].as_array().map_or(0, Vec::len) != 1 {
        return Err(format!("a bad form created a tenant: {list}"));
    }
    b.click("#create summary").await?;

    // HTML in the display name: saved, and shown as text in the list and the editor.
    open_settings(b, w).await?;
    b.fill("#te-display-name", MARKUP).await?;
    b.click("#tenant-form button[type=submit]").await?;
    b.wait_text(&row, MARKUP).await?;
    let planted = b
        .client
        .execute("return document.querySelectorAll('#tenants img, #tenants b, dialog img, dialog b').length", vec![])
        .await
        .map_err(err)?;
    if planted != json!(0) {
        return Err(format!(
            "the display name became markup: {planted} elements"
        ));
    }
    if w.tenant().await["display_name"] != MARKUP {
        return Err("the display name was not saved as typed".into());
    }

    // Bad values in every part of the settings: each problem by its field, nothing changed.
    let before = w.tenant().await;
    open_settings(b, w).await?;
    b.wait_text("#shell-preview", "Shell off").await?;
    b.fill("#te-hosts", "not a host\nok.example.test").await?;
    b.fill("#te-hsts-max-age", "99999999999").await?;
    b.fill("#te-routes .route .r-prefix", "no-slash").await?;
    b.fill("#te-limits [data-limit=tenant] .l-requests", "0")
        .await?;
    b.click("#te-app-add").await?;
    b.fill("#te-catalog .app .a-path", "relative").await?;
    b.click("#te-shell-enabled").await?;
    b.fill("#te-shell-excludes", "nope").await?;
    b.wait_text("#shell-preview", "built-in shell").await?;
    w.page(b, "console-tenant-settings").await?;
    b.click("#tenant-form button[type=submit]").await?;
    let bad_patch = json!({
        "display_name": MARKUP, "hosts": ["not a host", "ok.example.test"], "https": "off",
        "hsts": {"max_age": 99_999_999_999_u64},
        "routes": [{"prefix": "no-slash", "upstream": "app", "auth": "public"}],
        "rate_limits": {"tenant": {"requests": 0}},
        "catalog": [{"name": "", "title": "", "path": "relative"}],
        "shell": {"enabled": true, "excludes": ["nope"]}});
    let path = format!("/v1/tenants/{}", w.tenant);
    problems_by_field(
        b,
        w,
        "#tenant-form",
        "tenant-form-problems",
        (Method::PATCH, &path, bad_patch),
    )
    .await?;
    if w.tenant().await["revision"] != before["revision"] {
        return Err("a refused save changed the tenant".into());
    }
    // Escape closes the dialog; focus goes back to the row's Settings button.
    b.client
        .active_element()
        .await
        .map_err(err)?
        // WebDriver's Escape key.
        .send_keys("\u{E00C}")
        .await
        .map_err(err)?;
    // The dialog's `close` event (a task after the key) puts the focus back.
    let mut focused = Value::Null;
    for _ in 0..50 {
        focused = b
            .client
            .execute("return [document.getElementById('tenant-editor').open, document.activeElement.className, document.activeElement.outerHTML.slice(0, 200)]", vec![])
            .await
            .map_err(err)?;
        if focused[0] == json!(false) && focused[1] == json!("settings") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if focused[0] != json!(false) || focused[1] != json!("settings") {
        return Err(format!("after Escape: {focused}"));
    }

    // The route's auth policy, public → jwt: the gateway then wants a token.
    w.until_gateway(200).await?;
    open_settings(b, w).await?;
    b.click("#te-routes .route input.r-auth[value=public]")
        .await?;
    b.click("#te-routes .route input.r-auth[value=jwt]").await?;
    b.click("#tenant-form button[type=submit]").await?;
    b.wait_gone("#tenant-editor[open]", WAIT).await?;
    if w.tenant().await["routes"][0]["auth"] != "jwt" {
        return Err("the route's policy was not saved".into());
    }
    w.until_gateway(401).await?;

    // The pool form: the API's problems by each field, nothing made; then a pool made.
    b.click("#pool-new").await?;
    b.fill("#pe-name", "spare").await?;
    b.fill("#pe-endpoints", "not-an-address\n127.0.0.1:99999")
        .await?;
    b.fill("#pe-health-path", "no-slash").await?;
    w.page(b, "console-pool").await?;
    b.click("#pool-form button[type=submit]").await?;
    let bad_pool = json!({"endpoints": ["not-an-address", "127.0.0.1:99999"],
        "health_check": {"http_path": "no-slash"}});
    problems_by_field(
        b,
        w,
        "#pool-form",
        "pool-form-problems",
        (Method::PUT, "/v1/upstreams/spare", bad_pool),
    )
    .await?;
    if w.api.call(Method::GET, "/v1/upstreams/spare", None).await.0 != StatusCode::NOT_FOUND {
        return Err("a bad pool form made a pool".into());
    }
    let endpoint = w.tenant_pool_endpoint().await;
    b.fill("#pe-endpoints", &endpoint).await?;
    b.fill("#pe-health-path", "").await?;
    b.click("#pool-form button[type=submit]").await?;
    b.wait_text("#upstreams tr[data-pool=\"spare\"]", &endpoint)
        .await?;
    b.wait_text(
        "#upstreams tr[data-pool=\"spare\"] .pool-health",
        "1/1 healthy at",
    )
    .await?;
    // The audit view lists the changes: the settings saved (the policy edit), the pool made.
    ui_support::wait_audit(
        b,
        "operator token",
        &[
            ("PATCH /v1/tenants/{id}", &path),
            ("PUT /v1/upstreams/{name}", "/v1/upstreams/spare"),
        ],
    )
    .await?;
    Ok(())
}

impl World {
    async fn tenant_pool_endpoint(&self) -> String {
        let (_, pool) = self.api.call(Method::GET, "/v1/upstreams/app", None).await;
        pool["endpoints"][0].as_str().unwrap_or_default().to_owned()
    }
}

async fn viewer_flow(b: &Browser, w: &World) -> Result<(), String> {
    b.client.goto(&format!("{}/", w.base)).await.map_err(err)?;
    // The admin's token tab is gone with a new page load? It is kept per tab: forget it.
    b.client
        .execute("sessionStorage.clear(); return true", vec![])
        .await
        .map_err(err)?;
    b.client.goto(&format!("{}/", w.base)).await.map_err(err)?;
    b.wait_id("sso").await?;
    b.click("#sso a").await?;
    b.wait_url(&format!("{}/realms/{}/", w.kc.url, w.realm.name), WAIT)
        .await?;
    b.keycloak_login("vera", PASSWORD).await?;
    b.wait_url(&format!("{}/", w.base), WAIT).await?;
    b.wait_text("#operator", "vera · viewer").await?;
    let row = format!("tr[data-tenant=\"{}\"]", w.tenant);
    b.wait_text(&row, MARKUP).await?;
    // Only buttons that read: nothing visible that would change anything.
    let writes = b
        .client
        .execute(
            "const reads = ['Settings', 'Progress', 'Domains', 'Traffic', 'Show tenant', 'Fleet only', 'Charts', 'Search', 'Previous', 'Next', 'Older', 'Sign out'];
             return [...document.querySelectorAll('button, summary, input, select, textarea')]
               .filter((e) => e.offsetParent !== null && !e.closest('dialog') && !e.closest('#tenant-search') && !e.closest('#traffic-form'))
               .filter((e) => !reads.some((r) => e.textContent.trim() === r || e.textContent.trim().startsWith(r + ' of ')))
               .map((e) => e.outerHTML.slice(0, 80));",
            vec![],
        )
        .await
        .map_err(err)?;
    if writes != json!([]) {
        return Err(format!(
            "a viewer is shown controls that change things: {writes}"
        ));
    }
    w.page(b, "console-viewer").await?;
    // The settings, read-only: every field disabled, no Save.
    open_settings(b, w).await?;
    let editable = b
        .client
        .execute(
            "const d = document.getElementById('tenant-editor');
             return [...d.querySelectorAll('input, select, textarea, button')]
               .filter((e) => e.offsetParent !== null && !e.matches(':disabled') && e.id !== 'tenant-editor-close')
               .map((e) => e.outerHTML.slice(0, 80));",
            vec![],
        )
        .await
        .map_err(err)?;
    if editable != json!([]) {
        return Err(format!("a viewer may edit settings: {editable}"));
    }
    w.page(b, "console-viewer-settings").await?;
    b.click("#tenant-editor-close").await?;
    // A write from the viewer's own session (cookie and CSRF token): 403, nothing changed.
    let before = w.tenant().await;
    let refused = in_page(
        b,
        &format!(
            "api('PATCH', '/v1/tenants/{}', {{display_name: 'by a viewer'}}).then(() => 'changed')",
            w.tenant
        ),
    )
    .await?;
    if refused != json!({"error": 403}) {
        return Err(format!("a viewer's PATCH: {refused}"));
    }
    let refused = in_page(
        b,
        "api('PUT', '/v1/upstreams/viewer', {endpoints: ['127.0.0.1:1']}).then(() => 'made')",
    )
    .await?;
    if refused != json!({"error": 403}) {
        return Err(format!("a viewer's PUT of a pool: {refused}"));
    }
    let after = w.tenant().await;
    if after["revision"] != before["revision"] || after["display_name"] != MARKUP {
        return Err(format!("the viewer changed the tenant: {after}"));
    }
    if w.api
        .call(Method::GET, "/v1/upstreams/viewer", None)
        .await
        .0
        != StatusCode::NOT_FOUND
    {
        return Err("the viewer made a pool".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_manages_tenants_routes_and_pools_for_admins_only() {
    let Some(kc) = Keycloak::from_env().await else {
        return;
    };
    let Some(svc) = services("ui_manage") else {
        return;
    };
    let dir = TempDir::new("ui-manage");
    let suffix = format!("{:06x}", fastrand::u32(..0xff_ffff));
    let realm_name = format!("ops-ui-{suffix}");
    let tenant = format!("uim{suffix}");
    let Console {
        realm,
        up,
        gw,
        rc,
        base,
    } = Console::start(&dir, &kc, &svc, &realm_name, "ui-manage-app", "", "").await;
    let vera = kc.create_user(&realm, "vera", PASSWORD).await;
    let role = kc
        .admin(Method::GET, &format!("/{}/roles/viewer", realm.name), None)
        .await;
    kc.admin(
        Method::POST,
        &format!("/{}/users/{vera}/role-mappings/realm", realm.name),
        Some(json!([role])),
    )
    .await;

    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let host = format!("{tenant}.example.test");
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": tenant, "hosts": [host],
            "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]})),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let ready = wait_state(&api, &tenant, "ready", Duration::from_secs(120)).await;
    rc.wait_in_sync(ready["table_version"].as_u64().expect("version"), WAIT)
        .await;

    let Some(browser) = Browser::start().await else {
        return;
    };
    let w = World {
        kc,
        realm,
        api,
        base,
        gateway: gw.listen,
        tenant: tenant.clone(),
        host,
        axe: ui_support::axe_source(),
        rc,
    };
    let result = tokio::time::timeout(Duration::from_secs(300), async {
        admin_flow(&browser, &w)
            .await
            .map_err(|e| format!("admin: {e}"))?;
        viewer_flow(&browser, &w)
            .await
            .map_err(|e| format!("viewer: {e}"))
    })
    .await;
    if !matches!(result, Ok(Ok(()))) {
        let seen = browser.failure_report("console-manage-failure").await;
        panic!(
            "{result:?}\n{seen}\nrealmctl log:\n{}",
            w.rc.proc.log_text()
        );
    }
    browser.close().await;
    // The tenant and its realm go (the shared Keycloak keeps no leftovers of this test).
    let (s, v) = w
        .api
        .call(Method::DELETE, &format!("/v1/tenants/{tenant}"), None)
        .await;
    assert!(s.is_success(), "{v}");
    w.kc.admin(Method::DELETE, &format!("/{}", w.realm.name), None)
        .await;
}
