//! Renewal across processes: a real Pebble issuing certificates that live under a minute
//! (`PEBBLE_VALIDITY_S`), the real PowerDNS, realmctl's renewal scheduler and a real
//! realmgate serving traffic on its TLS listener the whole time. The certificate is renewed
//! in the background (no step re-run), the served serial changes, and not one request fails.
//! A rate-limited CA (the fault proxy answers one new-order with 429, a `rateLimited`
//! problem and `Retry-After`) shows as `failed` with the CA's problem, then is retried and
//! renewed while the old certificate keeps serving.
//!
//! Needs the `REALMGATE_POWERDNS_*` environment tests/run sets; skips without it.

mod common;

use common::acme::*;
use common::provision::wait_state;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

/// How long Pebble's certificates live: renewed about 30 s in.
const VALIDITY_S: u64 = 45;

/// The status, and the serial (hex) of the certificate the gateway serves for `host`.
async fn served(
    tls: std::net::SocketAddr,
    host: &str,
    root_pem: &str,
) -> Result<(u16, String), String> {
    let s = https_served(tls, host, root_pem).await?;
    let (_, cert) = X509Certificate::from_der(&s.certificate).map_err(|e| e.to_string())?;
    Ok((s.status, cert.raw_serial_as_string()))
}

/// Requests through the gateway's TLS listener until stopped: successes, failures (with the
/// first few reasons), and every serial seen.
struct Traffic {
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    serials: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Traffic {
    fn start(gw: &Gateway, host: &str, root: &str) -> Traffic {
        let t = Traffic {
            ok: Arc::default(),
            failed: Arc::default(),
            serials: Arc::default(),
            stop: Arc::default(),
        };
        let (ok, failed, serials, stop) = (
            Arc::clone(&t.ok),
            Arc::clone(&t.failed),
            Arc::clone(&t.serials),
            Arc::clone(&t.stop),
        );
        let (tls, host, root) = (
            gw.tls.expect("a TLS listener"),
            host.to_owned(),
            root.to_owned(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match served(tls, &host, &root).await {
                    Ok((200, serial)) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                        let mut s = serials.lock().expect("serials");
                        if s.last() != Some(&serial) {
                            s.push(serial);
                        }
                    }
                    Ok((status, _)) => failed.lock().expect("failed").push(format!("{status}")),
                    Err(e) => failed.lock().expect("failed").push(e),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        t
    }

    fn serials(&self) -> Vec<String> {
        self.serials.lock().expect("serials").clone()
    }

    fn failures(&self) -> Vec<String> {
        self.failed.lock().expect("failed").clone()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn cert(api: &Api, id: &str) -> Value {
    let (st, c) = api
        .call(Method::GET, &format!("/v1/certificates/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    c
}

async fn metrics_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_renew_in_the_background_with_traffic_flowing_and_no_request_failing() {
    let Some(d) = dns("certificates_renew_in_the_background") else {
        return;
    };
    let dir = TempDir::new("acme-renew");
    let up = Upstream::start("renew-app").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    let pebble = Pebble::start_with(&dir, &d.server, gw.listen.port(), 0, Some(VALIDITY_S));
    let proxy = FaultProxy::start(&pebble).await;
    let yaml = acme_yaml_with(
        &dir,
        &d,
        &pebble,
        &proxy.directory_url,
        "    renew_check_ms: 500\n    retry_initial_ms: 500\n    retry_max_ms: 5000\n",
    );
    let rc = Realmctl::start_with(&dir, &[&gw], &yaml, &[]).await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let id = format!("rn{}", std::process::id());
    let host = format!("{id}.{}", d.zone);
    create_tenant(&api, &id, &host).await;
    let t = wait_state(&api, &id, "ready", Duration::from_secs(90)).await;
    assert_eq!(step(&t, "certificate")["state"], "done", "{t}");
    let c = cert(&api, &id).await;
    // (Valid, or already renewing: Pebble's renewal window is the whole lifetime.)
    assert!(
        matches!(c["acme"]["state"].as_str(), Some("valid" | "renewing")),
        "{c}"
    );
    assert_eq!(c["acme"]["hosts"], serde_json::json!([host]));
    assert!(
        c["issuer"].as_str().unwrap_or_default().contains("Pebble"),
        "the issuer is Pebble's intermediate: {c}"
    );
    rc.wait_in_sync(
        c["table_version"].as_u64().expect("version"),
        Duration::from_secs(20),
    )
    .await;
    let root = pebble.root_pem().await;
    let first = eventually(Duration::from_secs(20), "https 200", || async {
        served(gw.tls.expect("a TLS listener"), &host, &root)
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
            .map(|(_, serial)| serial)
    })
    .await;

    // Pebble offers ARI: the scheduler reads the CA's window for the certificate. Pebble's
    // window is the whole lifetime, so the point drawn in it is the CA's (`ari`) or, when it
    // falls after two thirds of the lifetime, our own schedule's (`lifetime`); which one is
    // chance (lifecycle's unit tests pin the rule down).
    eventually(
        Duration::from_secs(20),
        "the CA's renewal window read",
        || async { (proxy.renewal_infos.load(Ordering::SeqCst) > 0).then_some(()) },
    )
    .await;
    let c = cert(&api, &id).await;
    assert!(c["acme"]["renew_at"].is_string(), "{c}");
    assert!(
        matches!(c["acme"]["renew_source"].as_str(), Some("ari" | "lifetime")),
        "{c}"
    );

    // Both programs export the seconds left, per certificate.
    let rc_metrics = metrics_text(&format!("{}/metrics", rc.url())).await;
    let left = rc_metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "realmctl_certificate_expiry_seconds{{certificate=\"{id}\"}} "
            ))
        })
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("realmctl_certificate_expiry_seconds in:\n{rc_metrics}"));
    assert!(left > 0 && left <= VALIDITY_S as i64, "{left}");
    let gw_metrics = metrics_text(&format!("{}/metrics", gw.admin_url())).await;
    assert!(
        gw_metrics.contains(&format!(
            "realmgate_certificate_expiry_seconds{{certificate=\"{id}\"}}"
        )),
        "{gw_metrics}"
    );

    // Traffic all along; the scheduler renews in the background.
    let traffic = Traffic::start(&gw, &host, &root);
    let renewed = eventually(
        Duration::from_secs(90),
        "a renewed certificate served",
        || async {
            let s = traffic.serials();
            (s.len() >= 2).then(|| s[1].clone())
        },
    )
    .await;
    assert_ne!(renewed, first);
    assert!(proxy.new_orders.load(Ordering::SeqCst) >= 2);
    let c = cert(&api, &id).await;
    assert!(
        matches!(c["acme"]["state"].as_str(), Some("valid" | "renewing")),
        "{c}"
    );

    // The CA rate-limits the next renewal: failed, with the CA's problem and a retry time;
    // then renewed once the CA takes orders again. The old certificate serves meanwhile.
    proxy.rate_limit_orders.store(1, Ordering::SeqCst);
    let failed = eventually(
        Duration::from_secs(90),
        "a rate-limited renewal",
        || async {
            let c = cert(&api, &id).await;
            (c["acme"]["state"] == "failed").then_some(c)
        },
    )
    .await;
    assert_eq!(
        failed["acme"]["problem"]["type"], "urn:ietf:params:acme:error:rateLimited",
        "{failed}"
    );
    assert!(failed["acme"]["next_attempt_at"].is_string(), "{failed}");
    let (_, list) = api.call(Method::GET, "/v1/certificates", None).await;
    assert!(list["certificates"].as_array().is_some_and(|l| l
        .iter()
        .any(|c| c["name"] == id.as_str() && c["acme"]["state"] == "failed")));
    let before = traffic.serials().len();
    eventually(
        Duration::from_secs(60),
        "renewed after the rate limit",
        || async { (traffic.serials().len() > before).then_some(()) },
    )
    .await;
    let c = eventually(Duration::from_secs(20), "valid again", || async {
        let c = cert(&api, &id).await;
        (c["acme"]["state"] == "valid").then_some(c)
    })
    .await;
    assert!(c["acme"]["problem"].is_null(), "{c}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    traffic.stop.store(true, Ordering::SeqCst);
    let failures = traffic.failures();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        failures.len() + traffic.ok.load(Ordering::SeqCst),
        &failures[..failures.len().min(5)]
    );
    assert!(traffic.ok.load(Ordering::SeqCst) > 20);
    assert!(!rc.proc.log_text().contains("PRIVATE KEY"));
}
