//! The TLS listeners, through the real gateway: the certificate per SNI over h1 and h2
//! (curl, `--resolve`, a test CA), unknown names refused at the handshake, bad ClientHellos
//! and wrong protocols on each port, a certificate swap under load, the apply rules for
//! certificates in time, redaction in admin GETs (HTTP/2 abuse: tls_h2.rs).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use realmgate_e2e::tls::fixtures::{all_certs, certs, entry, table, tls_gateway};
use realmgate_e2e::tls::{
    client_hello, curl, https_client, peer_fingerprint, pem_fingerprint, probe,
};
use realmgate_e2e::{TempDir, Upstream};
use realmgate_table::test_certs::{KeyKind, TestCa, Validity};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn each_host_gets_its_certificate_over_h1_and_h2_and_unknown_names_fail() {
    let c = certs();
    let up = Upstream::start("app").await;
    let gw = tls_gateway("").await;
    gw.push_ok(&table(1, &up, all_certs(&c))).await;
    let addr = gw.tls_addr();
    for h2 in [false, true] {
        for (host, cn) in [
            ("acme.test", "acme.test"),
            ("x.beta.test", "*.beta.test"),
            ("www.beta.test", "www.beta.test"),
        ] {
            let r = curl(addr, host, "/hello", &c.ca_file, h2).await;
            assert_eq!(
                (r.exit, r.status),
                (0, 200),
                "{host} h2={h2}: {}\n{}",
                r.stderr,
                gw.logs()
            );
            assert_eq!(r.http_version, if h2 { "2" } else { "1.1" }, "{host}");
            let subject = r.subject.clone().unwrap_or_default();
            assert!(
                subject.contains(&format!("CN={cn}")) || subject.contains(&format!("CN = {cn}")),
                "{host}: {subject}"
            );
            let echo: Value = serde_json::from_str(&r.body).expect("echo JSON");
            assert_eq!(echo["path"], "/hello", "{host}: {}", r.body);
        }
        // Names no certificate covers: the table routes a.b.beta.test (host pattern
        // *.beta.test), but the wildcard certificate covers one label only.
        for host in ["unknown.test", "a.b.beta.test", "beta.test"] {
            let r = curl(addr, host, "/", &c.ca_file, h2).await;
            assert_ne!(r.exit, 0, "{host}: handshake must fail: {r:?}");
            assert_eq!(r.status, 0, "{host}: no HTTP answer");
        }
    }
    // The plain listener is unchanged.
    assert_eq!(gw.request("acme.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_reports_certificates_and_redacts_keys_and_secrets() {
    let c = certs();
    let up = Upstream::start("app").await;
    let gw = tls_gateway("").await;
    let mut t = table(1, &up, all_certs(&c));
    t["tenants"][0]["realm"] = json!({
        "issuer": "https://id.acme.test/realms/acme", "audiences": ["acme-api"],
        "client_id": "gw", "client_secret": "very-secret-login-value"
    });
    gw.push_ok(&t).await;
    let (status, summary) = gw.table_info().await;
    assert_eq!(status, 200);
    let names: Vec<&str> = summary["certificates"]
        .as_array()
        .expect("certificates")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["acme", "beta", "www"], "{summary}");
    assert_eq!(
        summary["certificates"][0]["not_after"],
        t["certificates"][0]["not_after"]
    );
    for path in ["/v1/table", "/v1/table?full=1"] {
        let (status, body) = gw.admin_get_json(path).await;
        assert_eq!(status, 200);
        let text = body.to_string();
        assert!(!text.contains("PRIVATE KEY"), "{path}: a key leaked");
        assert!(
            !text.contains("very-secret-login-value"),
            "{path}: a secret leaked"
        );
    }
    let (_, full) = gw.admin_get_json("/v1/table?full=1").await;
    assert_eq!(full["certificates"][1]["key_pem"], "<redacted>");
    assert_eq!(full["tenants"][0]["realm"]["client_secret"], "<redacted>");
    assert_eq!(
        full["certificates"][1]["cert_pem"],
        t["certificates"][1]["cert_pem"]
    );
    // The state file holding the keys is owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(gw.state_dir().join("table.json"))
        .expect("state file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The expiry metric, per certificate.
    let metrics = reqwest::get(gw.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let line = format!(
        "realmgate_certificate_expiry_timestamp_seconds{{certificate=\"www\"}} {}",
        c.www.not_after
    );
    assert!(metrics.contains(&line), "{metrics}");
    // Logs never carry a key.
    assert!(!gw.logs().contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread")]
async fn new_certificates_must_be_valid_now_loaded_ones_do_not_block() {
    let c = certs();
    let up = Upstream::start("app").await;
    let gw = tls_gateway("").await;
    gw.push_ok(&table(1, &up, all_certs(&c))).await;
    let expired =
        c.ca.leaf_with(&["acme.test"], Validity::Expired, KeyKind::EcdsaP256);
    let later =
        c.ca.leaf_with(&["new.beta.test"], Validity::NotYet, KeyKind::EcdsaP256);
    for (certificates, name) in [
        (
            vec![entry(&expired, "acme-old", &["acme.test"])],
            "acme-old",
        ),
        (
            {
                let mut v = all_certs(&c);
                v.push(entry(&later, "later", &["new.beta.test"]));
                v
            },
            "later",
        ),
    ] {
        let (status, body) = gw.push(&table(2, &up, certificates)).await;
        assert_eq!(status, 422, "{body}");
        assert!(body.to_string().contains(name), "{name}: {body}");
    }
    // Still version 1, still serving its certificates.
    assert_eq!(gw.table_info().await.1["version"], 1);
    let r = curl(gw.tls_addr(), "acme.test", "/", &c.ca_file, false).await;
    assert_eq!(r.status, 200, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_client_hellos_and_wrong_protocols_get_clear_ends_and_serving_goes_on() {
    let c = certs();
    let up = Upstream::start("app").await;
    let gw = tls_gateway("  client:\n    header_read_timeout_ms: 1000\n").await;
    gw.push_ok(&table(1, &up, all_certs(&c))).await;
    let tls = gw.tls_addr();
    let wait = Duration::from_secs(15);
    // A well-formed ClientHello for a served name gets a ServerHello: the probe is sound.
    let ok = probe(
        tls,
        &client_hello(Some(b"acme.test")),
        Duration::from_secs(2),
    )
    .await;
    assert!(ok.is_server_hello(), "{ok:?}");
    // No SNI, an IP literal, a name nobody serves: an alert, then the connection closes.
    for sni in [None, Some(&b"127.0.0.1"[..]), Some(&b"unknown.test"[..])] {
        let p = probe(tls, &client_hello(sni), wait).await;
        assert!(p.closed, "{sni:?}: left open");
        assert!(p.is_alert(), "{sni:?}: {p:?}");
    }
    // Garbage, plain HTTP on the TLS port: closed (with an alert at most), never a hang.
    let garbage: Vec<u8> = (0..10_000).map(|_| fastrand::u8(..)).collect();
    for (what, bytes) in [
        ("garbage", garbage),
        (
            "plain HTTP",
            b"GET / HTTP/1.1\r\nHost: acme.test\r\n\r\n".to_vec(),
        ),
    ] {
        let p = probe(tls, &bytes, wait).await;
        assert!(p.closed, "{what}: left open");
        assert!(p.bytes.is_empty() || p.is_alert(), "{what}: {p:?}");
    }
    // A TLS record on the plain port: a 400 or a close.
    let p = probe(gw.listen_addr(), &client_hello(Some(b"acme.test")), wait).await;
    assert!(p.closed, "ClientHello on the plain port: left open");
    let text = String::from_utf8_lossy(&p.bytes);
    assert!(
        p.bytes.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    // A slow handshake (half a ClientHello, then silence) is cut at the head deadline.
    let hello = client_hello(Some(b"acme.test"));
    let p = probe(tls, &hello[..hello.len() / 2], wait).await;
    assert!(p.closed, "a stalled handshake was left open");
    // Through it all, both listeners serve.
    let r = curl(tls, "acme.test", "/", &c.ca_file, true).await;
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(gw.request("acme.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fallback_certificate_answers_unknown_names_when_configured() {
    let c = certs();
    let fb = c.ca.leaf(&["fallback.test"]);
    let dir = TempDir::new("tls-fallback");
    let cert = dir.write("fb.crt", fb.cert_pem.clone());
    let key = dir.write("fb.key", fb.key_pem.clone());
    let up = Upstream::start("app").await;
    let gw = tls_gateway(&format!(
        "  tls_fallback_certificate:\n    cert_file: \"{}\"\n    key_file: \"{}\"\n",
        cert.display(),
        key.display()
    ))
    .await;
    gw.push_ok(&table(1, &up, all_certs(&c))).await;
    let tls = gw.tls_addr();
    for sni in [None, Some(&b"unknown.test"[..])] {
        let p = probe(tls, &client_hello(sni), Duration::from_secs(2)).await;
        assert!(p.is_server_hello(), "{sni:?}: {p:?}");
    }
    // The fallback's own name completes the handshake; no tenant has it.
    let r = curl(tls, "fallback.test", "/", &c.ca_file, false).await;
    assert_eq!(r.exit, 0, "{}", r.stderr);
    assert_ne!(r.status, 200, "no tenant serves fallback.test");
    // A table certificate still wins for its names.
    let r = curl(tls, "acme.test", "/", &c.ca_file, false).await;
    assert_eq!(r.status, 200, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_swap_under_load_fails_no_request() {
    let c = certs();
    let up = Upstream::start("app").await;
    let gw = tls_gateway("").await;
    let a = c.ca.leaf(&["acme.test"]);
    let b = c.ca.leaf(&["acme.test"]);
    let version = |v: u64| {
        let m = if v % 2 == 1 { &a } else { &b };
        table(v, &up, vec![entry(m, "acme", &["acme.test"])])
    };
    gw.push_ok(&version(1)).await;
    let tls = gw.tls_addr();
    let kept = https_client(&c.ca.pem, &["acme.test"], tls, false);
    let fresh = https_client(&c.ca.pem, &["acme.test"], tls, true);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for client in [kept.clone(), kept, fresh.clone(), fresh.clone()] {
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        let url = format!("https://acme.test:{}/load", tls.port());
        loops.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("{e:?}")),
                }
            }
            failures
        }));
    }
    for v in 2..=21 {
        gw.push_ok(&version(v)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for l in loops {
        failures.extend(l.await.expect("load loop"));
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        done.load(Ordering::Relaxed) > 20,
        "too little load to mean anything"
    );
    // Version 21 (odd) serves `a`: a new handshake sees it.
    let r = fresh
        .get(format!("https://acme.test:{}/after", tls.port()))
        .send()
        .await
        .expect("after the swaps");
    assert_eq!(peer_fingerprint(&r), Some(pem_fingerprint(&a.cert_pem)));
    gw.push_ok(&version(22)).await;
    let r = fresh
        .get(format!("https://acme.test:{}/after", tls.port()))
        .send()
        .await
        .expect("after the last swap");
    assert_eq!(peer_fingerprint(&r), Some(pem_fingerprint(&b.cert_pem)));
}

#[test]
fn certificate_files_and_the_control_channel_are_checked_at_start() {
    use realmgate_e2e::{free_addrs, realmgate_bin, run_to_completion};
    let ca = TestCa::new("start CA");
    let (a, b) = (ca.leaf(&["a.test"]), ca.leaf(&["b.test"]));
    let dir = TempDir::new("tls-start");
    let cert = dir.write("a.crt", a.cert_pem.clone());
    let wrong_key = dir.write("b.key", b.key_pem.clone());
    let missing = dir.join("missing.crt");
    let token = dir.write("token", "start-token-0123456789\n");
    let addrs = free_addrs(3);
    let cases = [
        (
            format!(
                "  tls_fallback_certificate: {{cert_file: \"{}\", key_file: \"{}\"}}\n",
                missing.display(),
                wrong_key.display()
            ),
            missing.display().to_string(),
        ),
        (
            format!(
                "  tls_fallback_certificate: {{cert_file: \"{}\", key_file: \"{}\"}}\n",
                cert.display(),
                wrong_key.display()
            ),
            wrong_key.display().to_string(),
        ),
        (
            format!(
                "  admin_tls: {{cert_file: \"{}\", key_file: \"{}\"}}\n",
                cert.display(),
                wrong_key.display()
            ),
            wrong_key.display().to_string(),
        ),
        (
            "  control_url: http://192.0.2.10:9090\n".to_owned(),
            "non-loopback".to_owned(),
        ),
    ];
    for (i, (yaml, named)) in cases.iter().enumerate() {
        let conf = dir.write(
            &format!("c{i}.yaml"),
            format!(
                "gateway:\n  listen: \"{}\"\n  admin_listen: \"{}\"\n  tls_listen: [\"{}\"]\n  admin_token_file: \"{}\"\n  state_dir: \"{}\"\n{yaml}",
                addrs[0],
                addrs[1],
                addrs[2],
                token.display(),
                dir.path().display()
            ),
        );
        let run = run_to_completion(
            &realmgate_bin(),
            &["--conf".into(), conf.into()],
            Duration::from_secs(20),
        );
        assert!(!run.timed_out, "case {i}: the gateway started serving");
        assert_eq!(run.code, Some(2), "case {i}: {}", run.output());
        assert!(
            run.output().contains(named.as_str()),
            "case {i}: {}",
            run.output()
        );
        assert!(!run.output().contains("PRIVATE KEY"), "case {i}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tls_listen_flag_adds_a_tls_listener() {
    use realmgate_e2e::{eventually, free_addrs, Gateway, Launch};
    let c = certs();
    let up = Upstream::start("app").await;
    let dir = TempDir::new("tls-flag");
    let addrs = free_addrs(3);
    let token = "flag-token-0123456789";
    let token_file = dir.write("token", format!("{token}\n"));
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let args = vec![
        "--listen".into(),
        addrs[0].to_string().into(),
        "--admin-listen".into(),
        addrs[1].to_string().into(),
        "--admin-token-file".into(),
        token_file.into(),
        "--state-dir".into(),
        state.clone().into(),
        "--tls-listen".into(),
        addrs[2].to_string().into(),
    ];
    let gw = Gateway::launch(Launch {
        dir,
        args,
        listen: addrs[0],
        admin: addrs[1],
        token: Some(token.to_owned()),
        state_dir: state,
    })
    .await;
    gw.push_ok(&table(1, &up, all_certs(&c))).await;
    let ca_file = c.ca_file.clone();
    let tls = addrs[2];
    eventually(Duration::from_secs(10), "the --tls-listen listener", || {
        let ca_file = ca_file.clone();
        async move {
            let r = curl(tls, "acme.test", "/", &ca_file, true).await;
            (r.status == 200 && r.http_version == "2").then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_serves_https_with_admin_tls() {
    use realmgate_e2e::{eventually, free_addrs, realmgate_bin, Proc};
    let c = certs();
    let up = Upstream::start("app").await;
    let admin_cert = c.ca.leaf(&["admin.test"]);
    let dir = TempDir::new("tls-admin");
    let cert = dir.write("admin.crt", admin_cert.cert_pem.clone());
    let key = dir.write("admin.key", admin_cert.key_pem.clone());
    let token = "admin-tls-token-0123456789";
    let token_file = dir.write("token", format!("{token}\n"));
    let addrs = free_addrs(2);
    let conf = dir.write(
        "c.yaml",
        format!(
            "gateway:\n  listen: \"{}\"\n  admin_listen: \"{}\"\n  admin_token_file: \"{}\"\n  state_dir: \"{}\"\n  admin_tls: {{cert_file: \"{}\", key_file: \"{}\"}}\n",
            addrs[0],
            addrs[1],
            token_file.display(),
            dir.path().display(),
            cert.display(),
            key.display()
        ),
    );
    let proc = Proc::spawn(
        "realmgate",
        &realmgate_bin(),
        &["--conf".into(), conf.into()],
        dir.path(),
    );
    let https = https_client(&c.ca.pem, &["admin.test"], addrs[1], false);
    let base = format!("https://admin.test:{}", addrs[1].port());
    eventually(Duration::from_secs(30), "the HTTPS admin listener", || {
        let (https, url) = (https.clone(), format!("{base}/healthz"));
        async move {
            let r = https.get(url).send().await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    // A table push (it carries secrets) over HTTPS, then the redacted GET.
    let t = table(1, &up, all_certs(&c));
    let r = https
        .put(format!("{base}/v1/table"))
        .bearer_auth(token)
        .json(&t)
        .send()
        .await
        .expect("push over https");
    assert_eq!(r.status(), 200, "{}", proc.logs());
    let full: Value = https
        .get(format!("{base}/v1/table?full=1"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get over https")
        .json()
        .await
        .expect("JSON");
    assert_eq!(full["certificates"][0]["key_pem"], "<redacted>");
    // Plain HTTP on the admin port gets no answer.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    assert!(plain
        .get(format!("http://{}/healthz", addrs[1]))
        .send()
        .await
        .is_err());
}
