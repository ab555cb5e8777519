//! A tenant's life from the console, in headless Chromium against a real realmctl (its
//! operators' realm and its tenants' realms in a real Keycloak), a real gateway and a real
//! upstream: an admin signed in through Keycloak creates a tenant from the form and watches
//! its provisioning steps change live (the page follows the tenant's event stream; what the
//! panel showed is recorded by a MutationObserver the test installs before the submit), opens
//! the tenant's traffic and sees its requests/s rise from 0 while a load runs through the
//! gateway (realmctl scrapes the gateway every 300 ms), deletes it and watches the removal to
//! its end; the audit view then lists the create and the delete. A step that fails (the DNS
//! zone is missing at PowerDNS) shows its error and a Retry; with the zone made, Retry from
//! the console finishes the tenant (signed in with the operator token, the page reads the
//! tenant each second: an EventSource cannot send a bearer token); that browser prefers the
//! dark colour scheme, so the console's dark colours are checked too. Each page is saved at
//! 1280×720 and 390×844 (`SCREENSHOT_DIR`) and checked by axe-core.
//!
//! Needs Keycloak (`REALMGATE_KEYCLOAK_URL`), PowerDNS (`REALMGATE_POWERDNS_*`), chromedriver
//! and axe-core (`tests/setup/axe.sh`); skips without them unless `REALMGATE_REQUIRE_*` says
//! not to.

mod common;
mod ui_support;

use common::acme::{dns, OwnerDns};
use common::provision::{services, wait_gone};
use common::*;
use realmgate_e2e::browser::Browser;
use realmgate_e2e::keycloak::{KcRealm, Keycloak};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use ui_support::console::{Console, PASSWORD};
use ui_support::{check_page, wait_audit, wait_js};

const WAIT: Duration = Duration::from_secs(30);
/// A tenant's realm in Keycloak, its database: made in seconds, on a shared machine in more.
const PROVISIONING: Duration = Duration::from_secs(120);
/// The table applied at the gateway, a scrape (300 ms) and a page refresh (3 s): a busy
/// machine takes longer.
const TRAFFIC: Duration = Duration::from_secs(60);
/// Put right after realmctl's `gateways:` section: scrape every 300 ms.
const FAST_SCRAPES: &str = "  traffic: {scrape_interval_ms: 300, timeout_ms: 250}\n";
/// Step states that are not finished.
const UNFINISHED: [&str; 3] = ["pending", "running", "failed"];

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

struct World {
    kc: Keycloak,
    realm: KcRealm,
    rc: Realmctl,
    base: String,
    gateway: SocketAddr,
    tenant: String,
    host: String,
    axe: Option<String>,
}

/// Requests to the tenant's host through the gateway, one after another, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(gw: SocketAddr, host: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !s.load(Ordering::Relaxed) {
                let _ = http
                    .get(format!("http://{gw}/"))
                    .header(reqwest::header::HOST, &host)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Load { stop, task }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}

/// Record every state the provisioning panel shows from now on: `window.progressSeen`, one
/// entry per change, `[panel state, where it came from, "step=state", …]`.
const RECORD_PROGRESS: &str = "
    window.progressSeen = [];
    const panel = document.getElementById('provisioning-view');
    const snap = () => window.progressSeen.push([panel.dataset.state || '', panel.dataset.via || '',
        ...[...panel.querySelectorAll('#provisioning-steps li')]
          .map((l) => l.dataset.step + '=' + l.dataset.state)]);
    new MutationObserver(snap).observe(panel,
        {subtree: true, childList: true, attributes: true, characterData: true});
    return true;";

async fn recorded(b: &Browser) -> Result<Vec<Vec<String>>, String> {
    let v = b
        .client
        .execute("return window.progressSeen", vec![])
        .await
        .map_err(err)?;
    serde_json::from_value(v).map_err(err)
}

/// Signed in as the admin `ada` through the operators' realm.
async fn sign_in(b: &Browser, w: &World) -> Result<(), String> {
    b.client.goto(&format!("{}/", w.base)).await.map_err(err)?;
    b.wait_id("sso").await?;
    b.click("#sso a").await?;
    b.wait_url(&format!("{}/realms/{}/", w.kc.url, w.realm.name), WAIT)
        .await?;
    b.keycloak_login("ada", PASSWORD).await?;
    b.wait_url(&format!("{}/", w.base), WAIT).await?;
    b.wait_text("#operator", "ada · admin").await?;
    Ok(())
}

/// Open the create form (its pools loaded) and start recording the progress panel.
async fn open_create_form(b: &Browser) -> Result<(), String> {
    b.click("#create summary").await?;
    b.wait_text("#create-form select[name=upstream]", "app")
        .await?;
    b.client
        .execute(RECORD_PROGRESS, vec![])
        .await
        .map_err(err)?;
    Ok(())
}

/// Create the tenant from the form and watch its steps to `ready`.
async fn create_and_watch(b: &Browser, w: &World) -> Result<(), String> {
    open_create_form(b).await?;
    b.fill("#create-form input[name=id]", &w.tenant).await?;
    b.fill("#create-form input[name=display_name]", "Provisioned live")
        .await?;
    b.fill("#create-form input[name=host]", &w.host).await?;
    b.click("#create-form button[type=submit]").await?;
    b.wait_text("#provisioning-tenant", &w.tenant).await?;
    b.wait_text_within(
        "#provisioning-view[data-state=\"ready\"] #provisioning-state",
        "ready",
        PROVISIONING,
    )
    .await?;
    let seen = recorded(b).await?;
    let finished = |snap: &Vec<String>| {
        snap.len() > 2
            && snap[2..]
                .iter()
                .all(|s| s.ends_with("=done") || s.ends_with("=skipped"))
    };
    // A step not finished yet was shown, before every step was.
    let unfinished = seen.iter().position(|snap| {
        snap.iter()
            .skip(2)
            .any(|s| UNFINISHED.iter().any(|u| s.ends_with(&format!("={u}"))))
    });
    let first_done = seen.iter().position(finished);
    match (unfinished, first_done) {
        (Some(u), Some(d)) if u < d => {}
        _ => {
            return Err(format!(
                "the panel never showed a step progressing: {seen:#?}"
            ))
        }
    }
    // The end came as an event of the tenant's stream (under the page's strict policy, on
    // the session cookie), not from a read of the tenant.
    let last = seen.last().cloned().unwrap_or_default();
    if last.first().map(String::as_str) != Some("ready") || !finished(&last) {
        return Err(format!("the panel ends at {last:?}, not ready"));
    }
    if last.get(1).map(String::as_str) != Some("stream") {
        return Err(format!(
            "the last state did not come from the event stream: {seen:#?}"
        ));
    }
    // The keycloak step made the tenant's realm: realmctl agrees it is ready.
    let (s, t) =
        w.rc.api()
            .call(Method::GET, &format!("/v1/tenants/{}", w.tenant), None)
            .await;
    if s != StatusCode::OK || t["provisioning"]["state"] != "ready" {
        return Err(format!("realmctl shows the tenant as {s} {t}"));
    }
    check_page(b, "console-provisioning", w.axe.as_deref()).await
}

/// The rps chart's newest value for the tenant: None before it was drawn, Some(None) for
/// no data.
const RPS_NOW: &str =
    "const f = document.querySelector('#traffic-tenant-charts figure[data-field=\"rps\"]');
    if (!f || f.dataset.points === undefined) return null;
    return [f.dataset.now, Number(f.dataset.points)];";

/// The tenant's traffic chart moves from 0 to more while a load runs through the gateway.
async fn traffic_moves(b: &Browser, w: &World) -> Result<(), String> {
    b.click(&format!(
        "tr[data-tenant=\"{0}\"] button[aria-label=\"Traffic of {0}\"]",
        w.tenant
    ))
    .await?;
    b.wait_text("#traffic-tenant-title", &w.tenant).await?;
    let before = wait_js(b, RPS_NOW, WAIT, "the tenant's charts drawn").await?;
    let now = |v: &Value| {
        v[0].as_str()
            .unwrap_or_default()
            .parse::<f64>()
            .unwrap_or(0.0)
    };
    if now(&before) != 0.0 {
        return Err(format!("requests/s before any request: {before}"));
    }
    let load = Load::start(w.gateway, w.host.clone());
    let moved = wait_js(
        b,
        &format!("const v = (() => {{ {RPS_NOW} }})(); return v && Number(v[0]) > 0 && v[1] > 0 ? v : null;"),
        TRAFFIC,
        "the tenant's requests/s above 0",
    )
    .await;
    let shot = check_page(b, "console-traffic", w.axe.as_deref()).await;
    load.stop().await;
    let moved = moved?;
    shot?;
    if now(&moved) <= 0.0 {
        return Err(format!("requests/s under load: {moved}"));
    }
    Ok(())
}

/// Delete the tenant from its row and watch the removal to its end.
async fn delete_and_watch(b: &Browser, w: &World) -> Result<(), String> {
    b.click(&format!("tr[data-tenant=\"{}\"] button.danger", w.tenant))
        .await?;
    b.accept_dialog().await?;
    b.wait_text_within(
        "#provisioning-view[data-state=\"deleted\"] #provisioning-state",
        "Deleted",
        PROVISIONING,
    )
    .await?;
    let (s, _) =
        w.rc.api()
            .call(Method::GET, &format!("/v1/tenants/{}", w.tenant), None)
            .await;
    if s != StatusCode::NOT_FOUND {
        return Err(format!("the deleted tenant still answers {s}"));
    }
    Ok(())
}

async fn scenario(b: &Browser, w: &World) -> Result<(), String> {
    sign_in(b, w).await?;
    create_and_watch(b, w)
        .await
        .map_err(|e| format!("create: {e}"))?;
    traffic_moves(b, w)
        .await
        .map_err(|e| format!("traffic: {e}"))?;
    delete_and_watch(b, w)
        .await
        .map_err(|e| format!("delete: {e}"))?;
    // The audit view lists each change, by the admin who made it.
    let target = format!("/v1/tenants/{}", w.tenant);
    let rows = wait_audit(
        b,
        "ada (admin)",
        &[
            ("POST /v1/tenants", "/v1/tenants"),
            ("DELETE /v1/tenants/{id}", &target),
        ],
    )
    .await?;
    if rows[0].digests.is_empty() {
        return Err(format!("the create's row lacks its digest: {:?}", rows[0]));
    }
    check_page(b, "console-audit", w.axe.as_deref()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_provisioning_live_traffic_moving_and_the_audit() {
    let Some(kc) = Keycloak::from_env().await else {
        return;
    };
    let Some(svc) = services("ui_provisioning") else {
        return;
    };
    let dir = TempDir::new("ui-provisioning");
    let suffix = format!("{:06x}", fastrand::u32(..0xff_ffff));
    let realm_name = format!("ops-uip-{suffix}");
    let tenant = format!("uip{suffix}");
    let Console {
        realm,
        up,
        gw,
        rc,
        base,
    } = Console::start(
        &dir,
        &kc,
        &svc,
        &realm_name,
        "ui-provisioning-app",
        FAST_SCRAPES,
        "  database: {provider: libsql}\n",
    )
    .await;
    rc.api().put_pool("app", up.addr).await;

    let Some(browser) = Browser::start().await else {
        return;
    };
    let w = World {
        realm,
        kc,
        rc,
        base,
        gateway: gw.listen,
        host: format!("{tenant}.example.test"),
        tenant,
        axe: ui_support::axe_source(),
    };
    let result = tokio::time::timeout(Duration::from_secs(400), scenario(&browser, &w)).await;
    if !matches!(result, Ok(Ok(()))) {
        let seen = browser.failure_report("console-provisioning-failure").await;
        // Whatever the test left: the tenant (its realm with it) and the operators' realm.
        let _ =
            w.rc.api()
                .call(Method::DELETE, &format!("/v1/tenants/{}", w.tenant), None)
                .await;
        w.kc.admin(Method::DELETE, &format!("/{}", w.realm.name), None)
            .await;
        panic!(
            "{result:?}\n{seen}\nrealmctl log:\n{}",
            w.rc.proc.log_text()
        );
    }
    browser.close().await;
    w.kc.admin(Method::DELETE, &format!("/{}", w.realm.name), None)
        .await;
}

/// A tenant whose DNS step fails (its zone does not exist at PowerDNS): the error and Retry
/// shown; the zone made, Retry from the console runs the step again and the tenant is ready.
async fn failure_and_retry(
    b: &Browser,
    rc: &Realmctl,
    d: &common::acme::Dns,
    (tenant, zone): (&str, &str),
    axe: Option<&str>,
) -> Result<(), String> {
    b.client
        .goto(&format!("{}/", rc.url()))
        .await
        .map_err(err)?;
    let dark = b
        .client
        .execute(
            "return [matchMedia('(prefers-color-scheme: dark)').matches, getComputedStyle(document.body).backgroundColor]",
            vec![],
        )
        .await
        .map_err(err)?;
    if dark[0] != Value::Bool(true) || dark[1] == "rgb(255, 255, 255)" {
        return Err(format!("the page is not in its dark scheme: {dark}"));
    }
    b.fill("#token", OPERATOR_TOKEN).await?;
    b.click("#login-form button").await?;
    open_create_form(b).await?;
    b.fill("#create-form input[name=id]", tenant).await?;
    b.fill("#create-form input[name=host]", &format!("app.{zone}"))
        .await?;
    b.click("#create-form button[type=submit]").await?;
    let failed = "#provisioning-view[data-state=\"failed\"]";
    b.wait_text_within(
        &format!(
            "{failed} #provisioning-steps li[data-step=\"dns\"][data-state=\"failed\"] .step-error"
        ),
        zone,
        PROVISIONING,
    )
    .await?;
    let error = b.text("#provisioning-error").await.unwrap_or_default();
    if error.is_empty() {
        return Err("the failed tenant's error is not shown".into());
    }
    b.wait_text("#provisioning-retry", "Retry").await?;
    check_page(b, "console-provisioning-failed", axe).await?;
    let (_, t) = rc
        .api()
        .call(Method::GET, &format!("/v1/tenants/{tenant}"), None)
        .await;
    let attempts = |t: &Value| {
        t["provisioning"]["steps"]
            .as_array()
            .and_then(|steps| steps.iter().find(|s| s["step"] == "dns"))
            .and_then(|s| s["attempts"].as_u64())
            .unwrap_or(0)
    };
    let before = attempts(&t);

    // The cause removed, Retry runs the step now (its own backoff is ten minutes).
    let owner = OwnerDns::create(d, zone).await;
    b.click("#provisioning-retry").await?;
    let ready = b
        .wait_text_within(
            "#provisioning-view[data-state=\"ready\"] #provisioning-state",
            "ready",
            PROVISIONING,
        )
        .await;
    let (_, t) = rc
        .api()
        .call(Method::GET, &format!("/v1/tenants/{tenant}"), None)
        .await;
    let outcome = (|| {
        ready?;
        if t["provisioning"]["state"] != "ready" || attempts(&t) <= before {
            return Err(format!("after Retry, realmctl shows {t}"));
        }
        Ok(())
    })();
    let audit = wait_audit(
        b,
        "operator token",
        &[(
            "POST /v1/tenants/{id}/retry",
            &format!("/v1/tenants/{tenant}/retry"),
        )],
    )
    .await;
    // The tenant (its DNS records with it), then the zone.
    let (s, v) = rc
        .api()
        .call(Method::DELETE, &format!("/v1/tenants/{tenant}"), None)
        .await;
    if s.is_success() {
        wait_gone(&rc.api(), tenant, PROVISIONING).await;
    }
    owner.delete().await;
    outcome?;
    audit?;
    if !s.is_success() {
        return Err(format!("deleting the tenant: {s} {v}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_step_shows_its_error_and_retry_from_the_console_finishes_it() {
    let Some(d) = dns("ui_provisioning") else {
        return;
    };
    let dir = TempDir::new("ui-provisioning-retry");
    let suffix = format!("{:06x}", fastrand::u32(..0xff_ffff));
    let zone = format!("uipf{suffix}.test");
    let tenant = format!("uipf{suffix}");
    let key = dir.write(
        "secrets.key",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    );
    // A failed step is tried again in ten minutes: only Retry runs it within the test.
    let yaml = format!(
        "provision:\n  secrets_key_file: {}\n  initial_backoff_ms: 600000\n  max_backoff_ms: 600000\n\
         \x20 dns: {{provider: powerdns, api_url: \"{}\", api_key_file: {}, zone: {zone}, ttl: 60, addresses: [\"127.0.0.7\"]}}\n",
        key.display(),
        d.api_url,
        d.key_file
    );
    let up = Upstream::start("ui-provisioning-retry-app").await;
    let gw = Gateway::start(&dir, "gw", None).await;
    let rc = Realmctl::start_with(&dir, &[&gw], &yaml, &[]).await;
    rc.api().put_pool("app", up.addr).await;
    // This browser prefers the dark scheme: the console's dark colours get axe-core's checks
    // (contrast among them) here, the light ones in the other test.
    let dark = ["--blink-settings=preferredColorScheme=0".to_owned()];
    let Some(browser) = Browser::start_with(&dark).await else {
        return;
    };
    let axe = ui_support::axe_source();
    let result = tokio::time::timeout(
        Duration::from_secs(300),
        failure_and_retry(&browser, &rc, &d, (&tenant, &zone), axe.as_deref()),
    )
    .await;
    if !matches!(result, Ok(Ok(()))) {
        let seen = browser
            .failure_report("console-provisioning-retry-failure")
            .await;
        panic!("{result:?}\n{seen}\nrealmctl log:\n{}", rc.proc.log_text());
    }
    browser.close().await;
}
