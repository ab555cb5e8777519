//! The console's API keys, operator keys and gateways views in headless Chromium
//! (chromedriver, through `realmgate_e2e::browser`) against the real realmctl and a real
//! gateway: the gateway's applied version and lag; a tenant key minted from the form (the
//! API's problems beside each field first), its secret shown once, accepted by the gateway,
//! revoked from its row, and refused by the very first request after the gateway reports the
//! revocation's table version applied (within one table push, no retrying); an operator key
//! minted (HTML in its name shown as text), working, revoked, refused; the audit view lists
//! each mint and revocation with its before → after digests.
//! Screenshots: `target/browser-screenshots/operator-ui-{keys,gateways}.png`.
//!
//! Needs chromedriver (`REALMGATE_CHROMEDRIVER`); skips without it unless
//! `REALMGATE_REQUIRE_BROWSER=1`.

mod common;
mod ui_support;

use common::*;
use realmgate_e2e::browser::Browser;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

const PUSH: Duration = Duration::from_secs(30);

struct Parts<'a> {
    api: Api,
    url: String,
    gateway: String,
    gateway_listen: std::net::SocketAddr,
    gw: &'a Gateway,
}

/// `GET /` on the gateway for the tenant's host with `Bearer key`: the status.
async fn gateway_status(p: &Parts<'_>, key: &str) -> u16 {
    let r = reqwest::Client::new()
        .get(format!("http://{}/", p.gateway_listen))
        .header(reqwest::header::HOST, "keys.test")
        .bearer_auth(key)
        .send()
        .await;
    r.map(|r| r.status().as_u16()).unwrap_or(0)
}

async fn until_status(p: &Parts<'_>, key: &str, want: u16) -> Result<(), String> {
    let deadline = std::time::Instant::now() + PUSH;
    loop {
        let got = gateway_status(p, key).await;
        if got == want {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the gateway answers {got} with the key, not {want}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scenario(b: &Browser, p: &Parts<'_>) -> Result<(), String> {
    b.client.goto(&p.url).await.map_err(|e| e.to_string())?;
    b.fill("#token", OPERATOR_TOKEN).await?;
    b.click("#login-form button").await?;

    // The gateway: the version realmctl pushes is applied, no lag, where it came from.
    let grow = format!("#gateways tr[data-gateway=\"{}\"]", p.gateway);
    b.wait_text(&format!("{grow} .lag"), "0").await?;
    let text = b.wait_text(&grow, "configured").await?;
    if !text.contains("yes") {
        return Err(format!("the gateway's row: {text:?}"));
    }
    b.wait_text("#gateways-status", "every gateway serves it")
        .await?;
    b.screenshot("operator-ui-gateways").await;

    // A tenant key: the API's problems beside each field, nothing minted.
    b.click("#key-create summary").await?;
    b.fill("#key-tenant", "nope").await?;
    b.fill("#key-namespaces", "*").await?;
    b.fill("#key-expires", "tomorrow").await?;
    b.click("#key-form button[type=submit]").await?;
    b.wait_text("#key-tenant-problems", "no tenant").await?;
    // Both come from the same answer: the tenant's problem shown, the expiry's is too.
    let expiry_problem = b.text("#key-expires-problems").await.unwrap_or_default();
    if expiry_problem.is_empty() {
        return Err("no problem shown beside the expiry".into());
    }
    let (_, keys) = p.api.call(Method::GET, "/v1/keys", None).await;
    if keys["keys"].as_array().is_some_and(|k| !k.is_empty()) {
        return Err(format!("a bad form minted a key: {keys}"));
    }
    // Minted: the secret once, which the gateway then accepts.
    b.fill("#key-tenant", "keys").await?;
    b.fill("#key-expires", "").await?;
    b.click("#key-form button[type=submit]").await?;
    let secret = b.wait_text("#key-secret-value", "rgk_").await?;
    if !b
        .text("#key-tenant-problems")
        .await
        .unwrap_or_default()
        .is_empty()
    {
        return Err("old problems stayed beside the tenant field".into());
    }
    until_status(p, &secret, 200).await?;
    b.screenshot("operator-ui-keys").await;
    b.click("#key-secret-done").await?;
    if !b
        .text("#key-secret-value")
        .await
        .unwrap_or_default()
        .is_empty()
    {
        return Err("the secret stayed on the page".into());
    }
    // Revoked from its row: the gateway refuses it once it applies the next table.
    let (_, keys) = p.api.call(Method::GET, "/v1/keys", None).await;
    let id = keys["keys"][0]["id"].as_str().unwrap_or("").to_owned();
    let krow = format!("#keys tr[data-key=\"{id}\"]");
    b.click(&format!("{krow} button")).await?;
    b.accept_dialog().await?;
    b.wait_text(&krow, "revoked").await?;
    // The table version realmctl published the revocation in; once the gateway says it
    // serves that version, the very next request with the key is refused.
    let (_, key) = p
        .api
        .call(Method::GET, &format!("/v1/keys/{id}"), None)
        .await;
    let revoked_in = key["table_version"]
        .as_u64()
        .ok_or_else(|| format!("the revoked key has no table version: {key}"))?;
    let deadline = std::time::Instant::now() + PUSH;
    loop {
        let applied = p.gw.version().await;
        if applied.is_some_and(|v| v >= revoked_in) {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the gateway serves {applied:?}, never {revoked_in} (the revocation)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = gateway_status(p, &secret).await;
    if status != 401 {
        return Err(format!(
            "with table {revoked_in} applied, the revoked key is answered {status}, not 401"
        ));
    }

    // An operator key: problems beside the name, then one whose name is markup.
    b.click("#operator-key-create summary").await?;
    b.fill("#operator-key-name", "").await?;
    b.click("#operator-key-form button[type=submit]").await?;
    b.wait_text("#operator-key-name-problems", "characters")
        .await?;
    let markup = "<img src=x onerror=alert(1)>";
    b.fill("#operator-key-name", markup).await?;
    b.fill("#operator-key-expires", "2099-01-01T00:00:00Z")
        .await?;
    b.click("#operator-key-form button[type=submit]").await?;
    let operator_secret = b.wait_text("#operator-key-secret-value", "rgo_").await?;
    let (_, list) = p.api.call(Method::GET, "/v1/operator-keys", None).await;
    let key_id = list["operator_keys"][0]["id"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let orow = format!("#operator-keys tr[data-operator-key=\"{key_id}\"]");
    let shown = b.wait_text(&orow, "live").await?;
    if !shown.contains(markup) {
        return Err(format!("the name is not shown as text: {shown:?}"));
    }
    let with_key = Api {
        token: operator_secret.clone(),
        ..p.api.clone()
    };
    let (s, _) = with_key.call(Method::GET, "/v1/tenants", None).await;
    if s != StatusCode::OK {
        return Err(format!("the minted viewer key reads tenants: {s}"));
    }
    b.click(&format!("{orow} button")).await?;
    b.accept_dialog().await?;
    b.wait_text(&orow, "revoked").await?;
    let (s, _) = with_key.call(Method::GET, "/v1/tenants", None).await;
    if s != StatusCode::UNAUTHORIZED {
        return Err(format!("the revoked operator key: {s}"));
    }

    // The audit log: each mint and revocation, the revocations with the key before and after.
    let (key_path, operator_key_path) = (
        format!("/v1/keys/{id}"),
        format!("/v1/operator-keys/{key_id}"),
    );
    let rows = ui_support::wait_audit(
        b,
        "operator token",
        &[
            ("POST /v1/keys", "/v1/keys"),
            ("DELETE /v1/keys/{id}", &key_path),
            ("POST /v1/operator-keys", "/v1/operator-keys"),
            ("DELETE /v1/operator-keys/{id}", &operator_key_path),
        ],
    )
    .await?;
    for revoked in [&rows[1], &rows[3]] {
        if !revoked.digests.contains('→') || revoked.digests.contains("— → —") {
            return Err(format!("the audit row lacks its digests: {revoked:?}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_mints_and_revokes_keys_and_shows_the_gateways() {
    let dir = TempDir::new("ui-keys");
    let up = Upstream::start("ui-keys-app").await;
    let gw = Gateway::start(&dir, "gw", None).await;
    let rc = Realmctl::start(&dir, &[&gw]).await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": "keys", "hosts": ["keys.test"],
                        "routes": [{"prefix": "/", "upstream": "app", "auth": "api_key"}]})),
        )
        .await;
    assert!(s.is_success(), "{v}");
    rc.wait_in_sync(v["table_version"].as_u64().expect("version"), PUSH)
        .await;

    let Some(browser) = Browser::start().await else {
        return;
    };
    let parts = Parts {
        api,
        url: format!("{}/", rc.url()),
        gateway: gw.admin_url(),
        gateway_listen: gw.listen,
        gw: &gw,
    };
    let result = tokio::time::timeout(Duration::from_secs(180), scenario(&browser, &parts)).await;
    if !matches!(result, Ok(Ok(()))) {
        let seen = browser.failure_report("operator-ui-keys-failure").await;
        panic!("{result:?}\n{seen}\nrealmctl log:\n{}", rc.proc.log_text());
    }
    browser.close().await;
}
