//! Browser login end to end: headless Chromium opens a `session` route on a tenant host, is
//! sent to the real Keycloak login page, logs in, reaches the upstream as the right subject,
//! and logs out (the Keycloak session ends too). Screenshots of failures go to
//! `target/browser-screenshots/`.

use fantoccini::Locator;
use realmgate_e2e::browser::Browser;
use realmgate_e2e::keycloak::{KcRealm, Keycloak};
use realmgate_e2e::{Gateway, GatewayOpts, Table, Upstream};
use serde_json::json;
use std::time::Duration;

const PASSWORD: &str = "correct-horse-battery";

struct F {
    kc: Keycloak,
    gw: Gateway,
    _up: Upstream,
    realm: KcRealm,
    alice: String,
    base: String,
}

async fn fixture(kc: Keycloak, auth_yaml: &str) -> F {
    let up = Upstream::start("app").await;
    let key_dir = realmgate_e2e::TempDir::new("session-key");
    let key_file = key_dir.write("session-key", "ab".repeat(32));
    let gw = Gateway::start(GatewayOpts {
        gateway_yaml: format!(
            "  session_key_file: \"{}\"\n{auth_yaml}",
            key_file.display()
        ),
        ..GatewayOpts::default()
    })
    .await;
    let base = format!("http://acme.test:{}", gw.listen_addr().port());
    let realm = kc.create_realm("acme").await;
    kc.create_client(
        &realm,
        json!({
            "clientId": "realmgate", "publicClient": true, "standardFlowEnabled": true,
            "directAccessGrantsEnabled": false,
            "redirectUris": [format!("{base}/.realmgate/callback")],
            "attributes": {"pkce.code.challenge.method": "S256",
                           "post.logout.redirect.uris": format!("{base}/*")}
        }),
    )
    .await;
    let alice = kc.create_user(&realm, "alice", PASSWORD).await;
    let table = Table::new(1)
        .upstream("app", [up.addr()])
        // Another tenant with its own realm and login client: acme's cookie is worthless here.
        .tenant_json(json!({
            "id": "beta", "hosts": ["beta.test"],
            "realm": {"issuer": format!("{}/realms/beta-unused", kc.url), "audiences": ["realmgate"],
                      "client_id": "realmgate"},
            "routes": [{"prefix": "/", "upstream": "app", "auth": "session"}]}))
        .tenant_json(json!({
            "id": "acme", "hosts": ["acme.test"],
            "realm": {"issuer": realm.issuer, "audiences": ["realmgate"], "client_id": "realmgate"},
            "routes": [{"prefix": "/", "upstream": "app", "auth": "session"},
                       {"prefix": "/fwd/", "upstream": "app", "auth": "session", "forward_token": true}]}))
        .build();
    gw.push_ok(&table).await;
    // The key file must outlive the gateway's start only.
    drop(key_dir);
    F {
        kc,
        gw,
        _up: up,
        realm,
        alice,
        base,
    }
}

fn err(e: fantoccini::error::CmdError) -> String {
    e.to_string()
}

/// Open `/app/page?x=1`, log in on the Keycloak page, land back there.
async fn login(b: &Browser, f: &F) -> Result<(), String> {
    let c = &b.client;
    // 1. A navigation without a session goes to the realm's login page.
    c.goto(&format!("{}/app/page?x=1", f.base))
        .await
        .map_err(err)?;
    let login = format!("{}/realms/{}/", f.kc.url, f.realm.name);
    let url = b.wait_url(&login, Duration::from_secs(30)).await?;
    if !url.contains("code_challenge_method=S256") || !url.contains("nonce=") {
        return Err(format!("authorization request without PKCE/nonce: {url}"));
    }
    // 2. The real Keycloak login form.
    b.keycloak_login("alice", PASSWORD).await?;
    // 3. Back on the tenant host, at the page first asked for, proxied with the identity.
    b.wait_url(&format!("{}/app/page?x=1", f.base), Duration::from_secs(30))
        .await?;
    Ok(())
}

async fn login_and_logout(b: &Browser, f: &F) -> Result<(), String> {
    let c = &b.client;
    login(b, f).await?;
    let login = format!("{}/realms/{}/", f.kc.url, f.realm.name);
    let echo = b.body_json().await?;
    let headers = &echo["headers"];
    if headers["x-realmgate-subject"] != json!([f.alice]) {
        return Err(format!("subject: {headers}"));
    }
    if headers["x-realmgate-tenant"] != json!(["acme"]) {
        return Err(format!("tenant: {headers}"));
    }
    if headers.get("authorization").is_some() {
        return Err(format!("token forwarded without forward_token: {headers}"));
    }
    if headers["cookie"].to_string().contains("rg_session") {
        return Err(format!(
            "the session cookie reached the upstream: {headers}"
        ));
    }
    let cookies = c.get_all_cookies().await.map_err(err)?;
    let session = cookies
        .iter()
        .find(|k| k.name() == "rg_session")
        .ok_or_else(|| format!("no rg_session cookie: {cookies:?}"))?;
    if session.http_only() != Some(true) || format!("{:?}", session.same_site()) != "Some(Lax)" {
        return Err(format!("session cookie attributes: {session:?}"));
    }
    // The same cookies outside the browser: they open acme, and nothing on beta (sealed for
    // acme: the tenant is part of the AEAD's associated data).
    let jar = cookies
        .iter()
        .filter(|k| k.name().starts_with("rg_session"))
        .map(|k| format!("{}={}", k.name(), k.value()))
        .collect::<Vec<_>>()
        .join("; ");
    let on = |host: &str| {
        f.gw.fetch(
            f.gw.get(host, "/app/page")
                .header("cookie", jar.clone())
                .header("accept", "application/json"),
        )
    };
    let acme = on("acme.test").await;
    if acme.status != 200 {
        return Err(format!(
            "acme with its own cookie: {} {}",
            acme.status, acme.text
        ));
    }
    let beta = on("beta.test").await;
    if beta.status != 401 || !beta.text.contains("not valid here") {
        return Err(format!(
            "beta with acme's cookie: {} {}",
            beta.status, beta.text
        ));
    }
    // forward_token: the session's access token goes upstream.
    c.goto(&format!("{}/fwd/x", f.base)).await.map_err(err)?;
    let echo = b.body_json().await?;
    let auth = echo["headers"]["authorization"][0].as_str().unwrap_or("");
    if !auth.starts_with("Bearer ey") {
        return Err(format!("forward_token: {}", echo["headers"]));
    }
    // 4. Logout ends the Keycloak session too: the next visit shows the login form again
    //    instead of signing straight back in. A GET of the logout URL only asks to confirm
    //    (nothing ends yet); its form POSTs from this origin, which logs out.
    c.goto(&format!("{}/.realmgate/logout", f.base))
        .await
        .map_err(err)?;
    let confirm = b.wait_id("rg-logout").await?;
    let cookies = c.get_all_cookies().await.map_err(err)?;
    if !cookies.iter().any(|k| k.name() == "rg_session") {
        return Err(format!(
            "a GET of the logout URL ended the session: {cookies:?}"
        ));
    }
    confirm.click().await.map_err(err)?;
    b.wait_url(&login, Duration::from_secs(30)).await?;
    b.wait_id("username").await?;
    let cookies = c.get_all_cookies().await.map_err(err)?;
    if cookies.iter().any(|k| k.name().starts_with("rg_session")) {
        return Err(format!("session cookie left after logout: {cookies:?}"));
    }
    if c.find(Locator::Id("kc-login")).await.is_err() {
        return Err("no login form after logout".into());
    }
    Ok(())
}

/// Refresh on every request (the margin exceeds the token lifetime): each visit gets a new
/// access token from the realm, and the session cookie is re-sealed.
async fn refresh_each_visit(b: &Browser, f: &F) -> Result<(), String> {
    login(b, f).await?;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        b.client
            .goto(&format!("{}/fwd/x", f.base))
            .await
            .map_err(err)?;
        let echo = b.body_json().await?;
        if echo["headers"]["x-realmgate-subject"] != json!([f.alice]) {
            return Err(format!("subject after refresh: {}", echo["headers"]));
        }
        tokens.push(echo["headers"]["authorization"][0].to_string());
    }
    if tokens[0] == tokens[1] {
        return Err("the access token did not change across a refresh".into());
    }
    Ok(())
}

/// Run a browser scenario; on failure keep a screenshot and show the gateway log.
macro_rules! run {
    ($name:expr, $f:expr, $scenario:ident) => {{
        let Some(browser) = Browser::start().await else {
            return;
        };
        let result = $scenario(&browser, &$f).await;
        if let Err(e) = &result {
            let seen = browser.failure_report(&format!("{}-failure", $name)).await;
            panic!("{e}\n{seen}\ngateway log:\n{}", $f.gw.logs());
        }
        browser.close().await;
    }};
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_logs_in_through_keycloak_reaches_a_session_route_and_logs_out() {
    let Some(kc) = Keycloak::from_env().await else {
        return;
    };
    let f = fixture(kc, "").await;
    run!("login_logout", f, login_and_logout);
    let m = f.gw.metrics().await;
    assert_eq!(m.value("realmgate_logins_total", &[("result", "ok")]), 1.0);
    assert_eq!(m.value("realmgate_logouts_total", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_calls_without_a_session_get_401_and_bad_callbacks_400() {
    let Some(kc) = Keycloak::from_env().await else {
        return;
    };
    let f = fixture(kc, "").await;
    // Not a navigation: 401 JSON, no redirect.
    let r =
        f.gw.fetch(
            f.gw.get("acme.test", "/app/data")
                .header("accept", "application/json"),
        )
        .await;
    r.assert_error(401, "unauthorized");
    // A navigation: 302 to the realm with PKCE, and a login cookie on the callback path.
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r =
        f.gw.fetch(
            no_redirects
                .get(f.gw.url("/app/"))
                .header("host", "acme.test")
                .header("accept", "text/html")
                .header("sec-fetch-dest", "document"),
        )
        .await;
    assert_eq!(r.status, 302, "{}", r.text);
    let location = r.header("location").unwrap_or("");
    assert!(location.starts_with(&f.realm.issuer), "{location}");
    let cookie = r.header("set-cookie").unwrap_or("");
    assert!(
        cookie.starts_with("rg_tx_")
            && cookie.contains("Path=/.realmgate/callback")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // A forged or stale session cookie is no session.
    let r =
        f.gw.fetch(
            f.gw.get("acme.test", "/app/")
                .header("accept", "application/json")
                .header(
                    "cookie",
                    "rg_session=1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                ),
        )
        .await;
    r.assert_error(401, "unauthorized");
    // Callback without the login cookie, or with an unknown state.
    let r =
        f.gw.request("acme.test", "/.realmgate/callback?code=abc&state=nope")
            .await;
    r.assert_error(400, "invalid_request");
    let r = f.gw.request("acme.test", "/.realmgate/unknown").await;
    r.assert_error(404, "no_route");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_refreshed_before_the_access_token_expires() {
    let Some(kc) = Keycloak::from_env().await else {
        return;
    };
    let f = fixture(kc, "  auth:\n    session_refresh_margin_s: 3600\n").await;
    run!("refresh", f, refresh_each_visit);
    let m = f.gw.metrics().await;
    assert!(m.value("realmgate_session_refreshes_total", &[("result", "ok")]) >= 2.0);
    assert_eq!(
        m.value("realmgate_session_refreshes_total", &[("result", "failed")]),
        0.0
    );
}
