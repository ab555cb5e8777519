//! The operator UI's certificates and custom domains in headless Chromium (chromedriver,
//! through `realmgate_e2e::browser`), with real parts behind it: realmctl ordering from a
//! real Pebble, http-01 answered by a real realmgate, the domain owner's TXT record in the
//! real PowerDNS. A tenant's certificate shows `valid` with its hosts and expiry; a domain
//! added through the form shows `pending` and the TXT record to publish; published (from
//! what the page shows), it turns `verified` and gets its certificate; removed from its
//! row, it is gone. Bad names get the API's problems beside the field.
//! Screenshot: `target/browser-screenshots/operator-ui-domains.png`.
//!
//! Needs the `REALMGATE_POWERDNS_*` environment tests/run sets, and chromedriver
//! (`REALMGATE_CHROMEDRIVER`); skips without them unless `REALMGATE_REQUIRE_*` says not to.

mod common;

use common::acme::*;
use common::provision::wait_state;
use common::*;
use realmgate_e2e::browser::Browser;
use reqwest::{Method, StatusCode};
use std::time::Duration;

/// A CA issuing, a DNS check: bounded waits for what the page shows.
const ISSUING: Duration = Duration::from_secs(120);

struct Parts<'a> {
    api: Api,
    url: String,
    dns: &'a Dns,
    tenant: String,
    host: String,
    zone: String,
}

async fn scenario(b: &Browser, p: &Parts<'_>) -> Result<(), String> {
    let (id, host) = (&p.tenant, &p.host);
    b.client.goto(&p.url).await.map_err(|e| e.to_string())?;
    b.fill("#token", OPERATOR_TOKEN).await?;
    b.click("#login-form button").await?;

    // The tenant's certificate: valid, its hosts, its expiry, Pebble as the issuer.
    let row = format!("#certificates tr[data-cert=\"{id}\"]");
    let text = b.wait_text_within(&row, "valid", ISSUING).await?;
    for want in [host.as_str(), "days left", "Pebble"] {
        if !text.contains(want) {
            return Err(format!("{row}: {text:?} lacks {want:?}"));
        }
    }

    // The tenant's domains; names the API refuses get its problems beside the field.
    b.click(&format!(
        "tr[data-tenant=\"{id}\"] button[aria-label=\"Custom domains of {id}\"]"
    ))
    .await?;
    b.wait_text("#domains-title", id).await?;
    for (bad, why) in [
        ("bad..name", "domain: "),
        (&*format!("x.{}", p.dns.zone), "platform's own zone"),
    ] {
        b.fill("#domain-input", bad).await?;
        b.click("#domain-form button[type=submit]").await?;
        b.wait_text("#domain-problems", why).await?;
    }
    let invalid = b
        .client
        .execute(
            "return document.getElementById('domain-input').getAttribute('aria-invalid')",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    if invalid != "true" {
        return Err(format!("the field is not marked invalid: {invalid}"));
    }

    // A domain: pending, with the exact record to publish.
    let domain = format!("www.{}", p.zone);
    b.fill("#domain-input", &domain).await?;
    b.click("#domain-form button[type=submit]").await?;
    let drow = format!("#domains tr[data-domain=\"{domain}\"]");
    b.wait_text(&drow, "pending").await?;
    if !b
        .text("#domain-problems")
        .await
        .unwrap_or_default()
        .is_empty()
    {
        return Err("the old problems stayed beside the field".into());
    }
    let name = b
        .text(&format!("{drow} .txt-name"))
        .await
        .unwrap_or_default();
    let value = b
        .text(&format!("{drow} .txt-value"))
        .await
        .unwrap_or_default();
    let listed = domain_of(&p.api, id, &domain).await;
    if name != format!("_realmgate-challenge.{domain}") || listed["txt"]["value"] != value.as_str()
    {
        return Err(format!(
            "the page shows {name} TXT {value:?}; the API: {listed}"
        ));
    }

    // The owner publishes what the page said: verified, then its own certificate.
    let owner = OwnerDns::create(p.dns, &p.zone).await;
    owner.set(&domain, "A", "127.0.0.1").await;
    owner.set(&name, "TXT", &format!("\"{value}\"")).await;
    let shown = async {
        b.wait_text_within(&drow, "verified", ISSUING).await?;
        b.wait_text_within(&format!("{drow} .domain-cert"), "valid", ISSUING)
            .await?;
        let crow = format!("#certificates tr[data-cert=\"{domain}\"]");
        b.wait_text(&crow, "days left").await?;
        b.screenshot("operator-ui-domains").await;

        // Removed from its row, after confirming: gone from the page and from the API.
        b.click(&format!("{drow} button")).await?;
        b.accept_dialog().await?;
        b.wait_gone(&drow, Duration::from_secs(30)).await?;
        b.wait_gone(&crow, ISSUING).await?;
        Ok::<_, String>(())
    }
    .await;
    owner.delete().await;
    shown?;
    if !domain_of(&p.api, id, &domain).await.is_null() {
        return Err("the API still lists the removed domain".into());
    }
    let (st, _) = p
        .api
        .call(Method::GET, &format!("/v1/certificates/{domain}"), None)
        .await;
    if st != StatusCode::NOT_FOUND {
        return Err(format!("the removed domain's certificate: {st}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_ui_shows_certificates_and_walks_a_custom_domain_through() {
    let Some(d) = dns("the_operator_ui_shows_certificates") else {
        return;
    };
    let dir = TempDir::new("ui-certificates");
    let up = Upstream::start("ui-app").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    let pebble = Pebble::start(&dir, &d.server, gw.listen.port(), 0);
    let yaml = domains_yaml(&dir, &d, &pebble, &pebble.directory_url);
    let rc = Realmctl::start_with(&dir, &[&gw], &yaml, &[]).await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let pid = std::process::id();
    let tenant = format!("ui{pid}");
    let host = format!("{tenant}.{}", d.zone);
    create_tenant(&api, &tenant, &host).await;
    wait_state(&api, &tenant, "ready", Duration::from_secs(90)).await;

    let Some(browser) = Browser::start().await else {
        return;
    };
    let parts = Parts {
        api,
        url: format!("{}/", rc.url()),
        dns: &d,
        tenant,
        host,
        zone: format!("uicust{pid}.example"),
    };
    let result = tokio::time::timeout(Duration::from_secs(400), scenario(&browser, &parts)).await;
    if !matches!(result, Ok(Ok(()))) {
        let seen = browser.failure_report("operator-ui-domains-failure").await;
        panic!("{result:?}\n{seen}\nrealmctl log:\n{}", rc.proc.log_text());
    }
    browser.close().await;
}
