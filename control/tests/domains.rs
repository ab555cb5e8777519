//! Custom domains across processes, with the real PowerDNS as the domain owner's DNS (the
//! test publishes the customer's zone, its A record and its TXT record through the API) and
//! as realmctl's resolver, a real Pebble and a real realmgate: a wrong TXT value keeps the
//! domain pending (then failed) with what was found; the right one verifies it, it enters
//! the tenant's hosts, gets a certificate of its own and is served over https; another
//! tenant cannot take it, nor anyone a name under the platform's zone; removing it takes
//! the host out and its certificate away.
//!
//! Needs the `REALMGATE_POWERDNS_*` environment tests/run sets; skips without it.

mod common;

use common::acme::*;
use common::provision::wait_state;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_domain_is_checked_verified_certified_served_and_removed() {
    let Some(d) = dns("a_custom_domain_is_checked") else {
        return;
    };
    let dir = TempDir::new("domains");
    let up = Upstream::start("domains-app").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    let pebble = Pebble::start(&dir, &d.server, gw.listen.port(), 0);
    let proxy = FaultProxy::start(&pebble).await;
    let yaml = format!(
        "{}domains:\n  resolver: \"{}\"\n  check_for_ms: 8000\n  check_initial_ms: 200\n  check_max_ms: 1000\n",
        acme_yaml(&dir, &d, &pebble, &proxy.directory_url),
        d.server
    );
    let rc = Realmctl::start_with(&dir, &[&gw], &yaml, &[]).await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let pid = std::process::id();
    let id = format!("cd{pid}");
    let host = format!("{id}.{}", d.zone);
    create_tenant(&api, &id, &host).await;
    wait_state(&api, &id, "ready", Duration::from_secs(90)).await;
    let other = format!("ce{pid}");
    create_tenant(&api, &other, &format!("{other}.{}", d.zone)).await;

    // The customer's zone, with the name pointed at the edge (the gateway on loopback).
    let owner = OwnerDns::create(&d, &format!("cust{pid}.example")).await;
    let domain = format!("app.cust{pid}.example");
    let wrong = format!("wrong.cust{pid}.example");
    owner.set(&domain, "A", "127.0.0.1").await;

    let (st, v) = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{id}/domains"),
            Some(json!({"domain": domain.to_uppercase()})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["domain"], domain.as_str(), "normalised: {v}");
    assert_eq!(v["state"], "pending");
    assert_eq!(v["txt"]["name"], format!("_realmgate-challenge.{domain}"));
    let token = v["txt"]["value"].as_str().expect("value").to_owned();
    assert!(token.len() >= 32, "{token}");
    let (st, w) = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{id}/domains"),
            Some(json!({"domain": wrong})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{w}");
    assert_ne!(w["txt"]["value"], token.as_str(), "a value per domain");

    // Wrong values: pending, saying what was found (never the expected value); the one left
    // wrong fails at the deadline.
    owner
        .set(
            &format!("_realmgate-challenge.{domain}"),
            "TXT",
            "\"not-it\"",
        )
        .await;
    owner
        .set(
            &format!("_realmgate-challenge.{wrong}"),
            "TXT",
            "\"not-it-either\"",
        )
        .await;
    let pending = eventually(
        Duration::from_secs(20),
        "the wrong value reported",
        || async {
            let d = domain_of(&api, &id, &domain).await;
            d["reason"]
                .as_str()
                .is_some_and(|r| r.contains("\"not-it\""))
                .then_some(d)
        },
    )
    .await;
    assert_eq!(pending["state"], "pending", "{pending}");
    assert!(!pending["reason"]
        .as_str()
        .unwrap_or_default()
        .contains(&token));
    let (_, t) = api
        .call(Method::GET, &format!("/v1/tenants/{id}"), None)
        .await;
    assert!(
        !t["hosts"]
            .as_array()
            .is_some_and(|h| h.contains(&json!(domain))),
        "{t}"
    );
    let failed = eventually(Duration::from_secs(30), "the wrong one failed", || async {
        let d = domain_of(&api, &id, &wrong).await;
        (d["state"] == "failed").then_some(d)
    })
    .await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not-it-either"),
        "{failed}"
    );

    // The right value: verified, among the tenant's hosts, a certificate of its own, served.
    // (Both domains passed the short deadline meanwhile: adding it again checks anew, with
    // the value already handed out.)
    owner
        .set(
            &format!("_realmgate-challenge.{domain}"),
            "TXT",
            &format!("\"{token}\""),
        )
        .await;
    let (st, v) = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{id}/domains"),
            Some(json!({"domain": domain})),
        )
        .await;
    assert!(st == StatusCode::CREATED || st == StatusCode::OK, "{v}");
    assert_eq!(v["txt"]["value"], token.as_str(), "the same value: {v}");
    eventually(Duration::from_secs(20), "verified", || async {
        (domain_of(&api, &id, &domain).await["state"] == "verified").then_some(())
    })
    .await;
    let cert = eventually(
        Duration::from_secs(120),
        "the domain's certificate",
        || async {
            let (st, c) = api
                .call(Method::GET, &format!("/v1/certificates/{domain}"), None)
                .await;
            (st == StatusCode::OK && c["acme"]["state"] == "valid").then_some(c)
        },
    )
    .await;
    assert_eq!(cert["hosts"], json!([domain]));
    let (_, t) = api
        .call(Method::GET, &format!("/v1/tenants/{id}"), None)
        .await;
    assert!(
        t["hosts"]
            .as_array()
            .is_some_and(|h| h.contains(&json!(domain))),
        "{t}"
    );
    rc.wait_in_sync(
        cert["table_version"].as_u64().expect("version"),
        Duration::from_secs(20),
    )
    .await;
    let root = pebble.root_pem().await;
    let (status, _) = eventually(Duration::from_secs(20), "https for the domain", || async {
        https_get(&gw, &domain, &root)
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(status, 200);
    // The platform host kept its own certificate.
    assert_eq!(https_get(&gw, &host, &root).await.map(|(s, _)| s), Ok(200));

    // Another tenant cannot take it; nobody adds a name under the platform's zone.
    let (st, v) = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{other}/domains"),
            Some(json!({"domain": domain})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "domain_taken");
    assert!(
        v["message"].as_str().unwrap_or_default().contains(&id),
        "{v}"
    );
    let (st, v) = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{other}/domains"),
            Some(json!({"domain": format!("x.{}", d.zone)})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("platform's own zone"), "{v}");

    // Removal: the host leaves the table, then the certificate goes.
    let (st, v) = api
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{id}/domains/{domain}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, t) = api
        .call(Method::GET, &format!("/v1/tenants/{id}"), None)
        .await;
    assert!(
        !t["hosts"]
            .as_array()
            .is_some_and(|h| h.contains(&json!(domain))),
        "{t}"
    );
    eventually(
        Duration::from_secs(60),
        "the domain's certificate deleted",
        || async {
            let (st, _) = api
                .call(Method::GET, &format!("/v1/certificates/{domain}"), None)
                .await;
            (st == StatusCode::NOT_FOUND).then_some(())
        },
    )
    .await;
    assert!(domain_of(&api, &id, &domain).await.is_null());
    let v = rc.api().call(Method::GET, "/v1/table", None).await.1;
    rc.wait_in_sync(v["version"].as_u64().unwrap_or(0), Duration::from_secs(20))
        .await;
    assert!(
        https_get(&gw, &domain, &root).await.is_err(),
        "no certificate for it any more"
    );
    assert_eq!(https_get(&gw, &host, &root).await.map(|(s, _)| s), Ok(200));
    assert!(
        !rc.proc.log_text().contains(&token),
        "the TXT value is not logged"
    );
    owner.delete().await;
}
